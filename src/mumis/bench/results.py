"""Result rows: one per (method, task, dataset, model, seed), each carrying its provenance."""
from __future__ import annotations

import functools
import hashlib
import json
import math
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from rich.console import Console
from rich.table import Table

from mumis.data import atomic_write_text


@dataclass
class ResultRow:
    method: str
    task: str
    dataset: str
    model: str
    seed: int
    fa: float  # forget accuracy (%), on D_f
    ra: float  # retain accuracy (%), on D_r
    ta: float  # test accuracy (%), forgotten class excluded for class tasks
    mia: float  # SalUn MIA-efficacy (%)
    avg_gap: float  # mean |Δ| of fa, ra, ta, mia against the retrain row
    wall_s: float  # training time for original/retrain, unlearning time for methods
    forgotten_test_acc: float = math.nan
    avg_gap_no_mia: float = math.nan  # mean |Δ| of fa, ra, ta only, as MU-Mis's Table 1 (v4) computes it
    steps: Optional[int] = None
    stop_reason: Optional[str] = None
    config_hash: str = ""
    split_hash: str = ""
    forget_hash: str = ""
    peak_mem_mb: float = math.nan  # see mumis.runtime.peak_memory_mb
    git_sha: Optional[str] = None
    versions: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def config_hash(obj: dict) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def git_sha() -> Optional[str]:
    """The checkout's commit, asked once per process (every result row records it)."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                              cwd=Path(__file__).parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def write_json(obj, path: str | Path) -> Path:
    atomic_write_text(Path(path), json.dumps(obj, indent=1, default=str))
    return Path(path)


def write_rows(rows: list[ResultRow], path: str | Path) -> Path:
    return write_json([asdict(r) for r in rows], path)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def print_table(rows: list[ResultRow], console: Console | None = None, title: str = "") -> None:
    """The paper's layout: one row per method, retrain first as the reference."""
    table = Table(title=title)
    columns = ("Method", "FA", "RA", "TA", "MIA", "Avg. Gap", "Gap w/o MIA", "Forgotten TA", "Wall s", "Steps", "Stop")
    for col in columns:
        table.add_column(col, justify="left" if col in ("Method", "Stop") else "right")
    for r in rows:
        table.add_row(r.method, *(_fmt(v) for v in (r.fa, r.ra, r.ta, r.mia, r.avg_gap, r.avg_gap_no_mia,
                                                    r.forgotten_test_acc, r.wall_s, r.steps, r.stop_reason)))
    (console or Console()).print(table)

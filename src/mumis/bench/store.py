"""The results database: one SQLite file, one committed transaction per finished cell.

A cell's rows (one per task step) and its artifacts are written in the same transaction as the cell's "done"
mark, so a run killed at any point leaves either the whole cell or nothing of it; rerunning the grid skips every
cell whose key is present and recomputes nothing that finished. Failures are recorded with their traceback and
retried on the next run.
"""
from __future__ import annotations

import json
import math
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Optional

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    key TEXT PRIMARY KEY, grid TEXT, label TEXT, spec TEXT NOT NULL, wall_s REAL, finished_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS rows (
    cell_key TEXT NOT NULL REFERENCES cells(key), step INTEGER NOT NULL,
    method TEXT, task TEXT, task_kind TEXT, dataset TEXT, model TEXT, seed INTEGER,
    fa REAL, ra REAL, ta REAL, mia REAL, avg_gap REAL, wall_s REAL, peak_mem_mb REAL,
    config_hash TEXT, split_hash TEXT, git_sha TEXT, data TEXT NOT NULL,
    PRIMARY KEY (cell_key, step));
CREATE TABLE IF NOT EXISTS artifacts (
    cell_key TEXT NOT NULL REFERENCES cells(key), name TEXT NOT NULL, payload TEXT NOT NULL,
    PRIMARY KEY (cell_key, name));
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY, grid TEXT, label TEXT, spec TEXT, error TEXT, traceback TEXT, failed_at TEXT);
"""
_ROW_COLUMNS = ("method", "task", "task_kind", "dataset", "model", "seed", "fa", "ra", "ta", "mia", "avg_gap", "wall_s",
                "peak_mem_mb", "config_hash", "split_hash", "git_sha")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _jsonable(value):
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None  # JSON has no NaN; None reads back as "missing"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # NumPy / torch scalars
        return _jsonable(value.item())
    return value


class ResultStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def done_keys(self) -> set[str]:
        return {k for (k,) in self._db.execute("SELECT key FROM cells")}

    def write_cell(self, key: str, spec: dict, rows: list[dict], grid: str = "", label: str = "",
                   artifacts: Optional[dict] = None, wall_s: float = math.nan) -> None:
        """Rows (one per step) + artifacts + the done mark, atomically. A cell already present is an error."""
        with self._db:  # one transaction: commit on success, roll back on any exception
            self._db.execute("INSERT INTO cells VALUES (?, ?, ?, ?, ?, ?)",
                             (key, grid, label, json.dumps(_jsonable(spec), sort_keys=True), wall_s, _now()))
            for row in rows:
                row = _jsonable(row)
                self._db.execute(
                    f"INSERT INTO rows VALUES (?, ?, {', '.join('?' * len(_ROW_COLUMNS))}, ?)",
                    (key, row.get("step", 1), *(row.get(c) for c in _ROW_COLUMNS), json.dumps(row, sort_keys=True)),
                )
            for name, payload in (artifacts or {}).items():
                self._db.execute("INSERT INTO artifacts VALUES (?, ?, ?)", (key, name, json.dumps(_jsonable(payload))))
            self._db.execute("DELETE FROM failures WHERE key = ?", (key,))

    def record_failure(self, key: str, spec: dict, error: str, traceback: str, grid: str = "", label: str = "") -> None:
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?, ?, ?)",
                             (key, grid, label, json.dumps(_jsonable(spec), sort_keys=True), error, traceback, _now()))

    def rows(self, grid: Optional[str] = None) -> list[dict]:
        """Every stored row as its full dict (the ``data`` column), optionally of one grid; a row of a cell measured on
        a split held out from the training pool also carries its cell's ``holdout`` share."""
        query = "SELECT r.data, c.spec FROM rows r JOIN cells c ON c.key = r.cell_key"
        args: Iterable = ()
        if grid:
            query, args = query + " WHERE c.grid = ?", (grid,)
        out = []
        for data, spec in self._db.execute(query + " ORDER BY c.finished_at, r.step", args):
            row, holdout = json.loads(data), json.loads(spec).get("holdout")
            out.append(row if holdout is None else {**row, "holdout": holdout})
        return out

    def artifacts(self, name: str) -> list[tuple[dict, dict]]:
        """(cell spec, payload) for every artifact called ``name``."""
        query = "SELECT c.spec, a.payload FROM artifacts a JOIN cells c ON c.key = a.cell_key WHERE a.name = ?"
        return [(json.loads(s), json.loads(p)) for s, p in self._db.execute(query, (name,))]

    def failures(self) -> list[dict]:
        cols = ("key", "grid", "label", "spec", "error", "traceback", "failed_at")
        return [dict(zip(cols, r)) for r in self._db.execute(f"SELECT {', '.join(cols)} FROM failures")]

    def count(self, table: str) -> int:
        if table not in ("cells", "rows", "artifacts", "failures"):
            raise ValueError(table)
        return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

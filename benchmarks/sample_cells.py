"""Where sample requests stand, cell by cell: the variants grid's random-10 % and sub-class cells against the target
"Avg. Gap ≤ 1.0 and a per-example LiRA AUC within 0.05 of the retrained model's, on every seed".

    python benchmarks/sample_cells.py              # a table on the terminal
    python benchmarks/sample_cells.py --markdown   # the same rows as a Markdown table (docs/research/)

Reads the committed results only (``results/mumis_variants.jsonl`` and the per-example report's database), so it
runs in a second. Per cell: doing nothing (the original model), what ``method="auto"`` runs for a sample request
(its label in ``src/mumis/methods/auto_table.json``) per seed, that run's per-example AUC minus the retrain's where
the per-example attack was run, the closest configuration the grid found (mean over seeds), and on how many seeds
the auto choice meets the target. A "–" is a cell or a measurement the committed results do not have.
"""
from __future__ import annotations

import argparse
import json
import sqlite3
from collections import defaultdict
from pathlib import Path
from statistics import mean

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results" / "mumis_variants.jsonl"
PER_EXAMPLE = ROOT / "docs" / "report-demo" / "per-example" / "per_example.sqlite"
# every per-example run and how its split is named: the demo's shares the variants grid's references; Fashion-MNIST's
# train their own (8 epochs), on the official split and on one whose held-out data is 20 % of the training images
PER_EXAMPLE_RUNS = ((PER_EXAMPLE, ""), (ROOT / "docs" / "report-fmnist" / "per-example" / "per_example.sqlite", ""),
                    (ROOT / "docs" / "report-fmnist" / "per-example-pool" / "per_example.sqlite", ", held out from the pool"))
AUTO_TABLE = ROOT / "src" / "mumis" / "methods" / "auto_table.json"
GAP, AUC = 1.0, 0.05  # the target
MODELS = ("small_cnn", "resnet_small", "resnet_wide")
COLUMNS = ("cell", "doing nothing", "auto: Avg. Gap per seed", "auto: AUC − retrain's per seed", "best found (mean)",
           "target met")
RUN_COLUMNS = ("cell (per-example run)", "seeds", "doing nothing: Avg. Gap", "doing nothing: AUC − retrain's",
               "auto: Avg. Gap", "auto: AUC − retrain's", "target met")


def auto_label() -> str:
    """The grid label of what ``auto`` runs for a sample request with every piece of data it can use."""
    choices = json.loads(AUTO_TABLE.read_text())["choices"]
    return [c for c in choices if c["request"] == "samples" and c.get("method")][-1]["label"]


def auc_deltas(path: Path) -> dict:
    """(dataset, model, task, seed) → the auto method's LiRA AUC minus the retrained model's, from the report DB."""
    if not path.is_file():
        return {}
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT method, task_kind, dataset, model, seed, data FROM rows").fetchall()
    auc = {(m, t, d, mo, s): json.loads(data).get("lira_auc") for m, t, d, mo, s, data in rows}
    return {(d, mo, t, s): value - auc[("retrain", t, d, mo, s)] for (m, t, d, mo, s), value in auc.items()
            if m == "newton (auto)" and value is not None and auc.get(("retrain", t, d, mo, s)) is not None}


def _cell_order(cell: tuple) -> tuple:
    """(dataset, model, task[, split]) cells by task, then dataset, then model from the smallest, then split."""
    dataset, model, task, *split = cell
    return task, dataset, MODELS.index(model) if model in MODELS else len(MODELS), model, *split


def run_rows(paths) -> list[tuple[str, ...]]:
    """Per cell of each per-example run, both figures of doing nothing and of ``auto`` from that run's own rows (one
    reference pair per seed), so cells whose references differ from the variants grid's are still judged."""
    cells = defaultdict(lambda: defaultdict(dict))  # (dataset, model, task, split) → seed → method → (gap, auc)
    for path, split in paths:
        if not path.is_file():
            continue
        with sqlite3.connect(path) as db:
            for method, task, dataset, model, seed, gap, data in db.execute(
                    "SELECT method, task_kind, dataset, model, seed, avg_gap, data FROM rows"):
                if task in ("random", "sub_class"):
                    cells[(dataset, model, task, split)][seed][method] = (gap, json.loads(data).get("lira_auc"))
    out = []
    for cell in sorted(cells, key=_cell_order):
        seeds = sorted(s for s, m in cells[cell].items() if {"retrain", "original", "newton (auto)"} <= set(m))
        if not seeds:
            continue
        nothing, ours = (_figures(cells[cell], seeds, m) for m in ("original", "newton (auto)"))
        met = sum(1 for g, d in zip(*ours) if g <= GAP and d is not None and abs(d) <= AUC)
        out.append((f"{cell[0]} × {cell[1]}, {cell[2].replace('_', '-')}{cell[3]}", _joined(seeds, "d"),
                    _joined(nothing[0], ".2f"), _joined(nothing[1], "+.3f"), _joined(ours[0], ".2f"),
                    _joined(ours[1], "+.3f"), f"{met} of {len(seeds)}"))
    return out


def _figures(by_seed: dict, seeds: list, method: str) -> tuple[list, list]:
    """``method``'s Avg. Gap per seed and its AUC minus the retrain's (None where either AUC is missing)."""
    gaps = [by_seed[s][method][0] for s in seeds]
    aucs = [(by_seed[s][method][1], by_seed[s]["retrain"][1]) for s in seeds]
    return gaps, [None if a is None or r is None else a - r for a, r in aucs]


def _joined(values, fmt: str) -> str:
    return " / ".join("–" if v is None else format(v, fmt) for v in values)


def cell_rows(results: list[dict], deltas: dict, label: str) -> list[tuple[str, ...]]:
    gaps = defaultdict(lambda: defaultdict(dict))  # (dataset, model, task) → method → seed → Avg. Gap
    for r in results:
        if r["task"] in ("random", "sub_class"):
            gaps[(r["dataset"], r["model"], r["task"])][r["method"]][r["seed"]] = r["avg_gap"]
    out = []
    for cell in sorted(gaps, key=_cell_order):
        methods = gaps[cell]
        nothing = methods.get("original", {})
        ours = methods.get(label, {})
        seeds = sorted(ours)
        per_seed_delta = [deltas.get((*cell, s)) for s in seeds]
        met = sum(1 for s, d in zip(seeds, per_seed_delta) if ours[s] <= GAP and d is not None and abs(d) <= AUC)
        candidates = [(mean(v.values()), m) for m, v in methods.items() if m != "retrain" and len(v) == len(nothing)]
        best_gap, best = min(candidates)
        out.append((
            f"{cell[0]} × {cell[1]}, {cell[2].replace('_', '-')}",
            f"{mean(nothing.values()):.2f}" if nothing else "–",
            " / ".join(f"{ours[s]:.2f}" for s in seeds) or "–",
            " / ".join("–" if d is None else f"{d:+.3f}" for d in per_seed_delta) or "–",
            f"{best_gap:.2f} ({best})",
            "not run" if not seeds else f"{met} of {len(seeds)}" if any(d is not None for d in per_seed_delta) else
            f"gap on {sum(ours[s] <= GAP for s in seeds)} of {len(seeds)}, AUC not measured",
        ))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table instead")
    args = parser.parse_args()
    label = auto_label()
    results = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    tables = ((f"sample requests per cell: auto runs {label}; target Avg. Gap ≤ {GAP} and |ΔAUC| ≤ {AUC}", COLUMNS,
               cell_rows(results, auc_deltas(PER_EXAMPLE), label)),
              ("each per-example run on its own references, per seed", RUN_COLUMNS, run_rows(PER_EXAMPLE_RUNS)))
    for title, columns, rows in tables:
        if args.markdown:
            print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
            print("\n".join("| " + " | ".join(r) + " |" for r in rows) + "\n")
            continue
        table = Table(title=title)
        for col in columns:
            table.add_column(col, justify="right")
        for r in rows:
            table.add_row(*r)
        Console(width=260).print(table)


if __name__ == "__main__":
    main()

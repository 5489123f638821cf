"""Issue 4's study: MU-Mis variants against the retrain reference, over datasets × models × tasks × seeds.

    python benchmarks/mumis_variants.py --out results/mumis_variants.jsonl            # the committed grid
    python benchmarks/mumis_variants.py --datasets mnist5k --models small_cnn --seeds 0 # one corner of it
    python benchmarks/mumis_variants.py --summary results/mumis_variants.jsonl          # the table only

Every finished cell (dataset, model, task, seed) appends its rows to a JSON-lines file; a rerun computes only the
variants a cell does not have yet, so a killed run resumes and a new variant is added without recomputing the rest. Original and retrain models come from mumis' cache. The summary
prints, per (dataset, model, task, variant), the mean over seeds of FA/RA/TA/MIA, Avg. Gap (4 metrics),
Gap w/o MIA, steps and wall time, plus how many seeds stopped for which reason.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mumis.bench import ExperimentConfig, run_experiment
from mumis.training import TrainRecipe

TASKS = {"full_class": 3, "random": 0.1}
P = {"variant": "paper"}  # every study row below varies the paper's setting unless it says "default"
CLASS_VARIANTS = {  # label → MU-Mis options; "floor" adds the chance-level forget-accuracy safeguard (100/K %)
    # the chosen default (variant="default": target term, classifier layer, curvature step, stop at FA 0), and the
    # same run kept going to 300 steps (≥ 3× past its stop) with no stop rule: does it collapse?
    "default": {},
    "default+300steps": {"stop": "none", "fa_floor": None, "max_steps": 300},
    "paper": {**P},
    "paper+floor": {**P, "floor": True},
    "target_only+floor": {"variant": "target_only", "floor": True},
    "irrelevant_only+floor": {"variant": "irrelevant_only", "floor": True},
    "bounded+floor": {"variant": "bounded", "floor": True},
    "all_classes+floor": {"variant": "all_classes", "floor": True},
    "momentum+floor": {**P, "optimizer": "momentum", "lr": 1e-4, "floor": True},
    "adam+floor": {**P, "optimizer": "adam", "lr": 1e-4, "floor": True},
    "scaled_lr+floor": {**P, "lr_scale": "sensitivity", "lr": 1e-2, "floor": True},
    "bounded+scaled_lr+floor": {"variant": "bounded", "lr_scale": "sensitivity", "lr": 1e-2, "floor": True},
    "head+scaled_lr+floor": {**P, "update": "head", "lr_scale": "sensitivity", "lr": 0.1, "floor": True},
    "head+scaled_lr+floor0": {**P, "update": "head", "lr_scale": "sensitivity", "lr": 0.1, "fa_floor": 0.0},
    "dynamic+floor": {"variant": "dynamic", "floor": True},
    "head+dynamic+scaled_lr+floor0": {"update": "head", "variant": "dynamic", "lr_scale": "sensitivity", "lr": 0.1,
                                      "fa_floor": 0.0},
    "head+dynamic+scaled_lr+75steps": {"update": "head", "variant": "dynamic", "lr_scale": "sensitivity", "lr": 0.1,
                                       "stop": "none", "max_steps": 75},
    # the same run kept going ~3× past where floor0 stops (19–26 steps): does it collapse?
    "head+scaled_lr+75steps": {**P, "update": "head", "lr_scale": "sensitivity", "lr": 0.1, "stop": "none",
                               "max_steps": 75},
    # round 2: the target term alone on the classifier layer (for a class request only row c of the head moves)
    "head+target_only+scaled_lr+floor0": {"update": "head", "variant": "target_only", "lr_scale": "sensitivity",
                                          "lr": 0.1, "fa_floor": 0.0},
    "head+target_only+scaled_lr+300steps": {"update": "head", "variant": "target_only", "lr_scale": "sensitivity",
                                            "lr": 0.1, "stop": "none", "max_steps": 300},
}
RANDOM_VARIANTS = {  # random forgetting: the retrain still classifies most of D_f, so no forget-accuracy floor
    # the default for a request of individual samples: held-out comparison (may stop before the first step)
    "default(samples)": {"request": "samples", "check_every": 1},
    "default+no_stop": {"fa_floor": None, "stop": "none", "max_steps": 300},
    "paper": {**P},
    "bounded": {"variant": "bounded"},
    "bounded+plateau": {"variant": "bounded", "stop": "loss_plateau"},
    "scaled_lr": {**P, "lr_scale": "sensitivity", "lr": 1e-2},
    "bounded+scaled_lr+plateau": {"variant": "bounded", "lr_scale": "sensitivity", "lr": 1e-2, "stop": "loss_plateau"},
    "head+scaled_lr": {**P, "update": "head", "lr_scale": "sensitivity", "lr": 0.1},
    # stop once D_f is classified no better than held-out data (half the test set; declared, never D_r)
    "paper+heldout": {**P, "stop": "heldout", "check_every": 1},
    "scaled_lr+heldout": {**P, "lr_scale": "sensitivity", "lr": 1e-2, "stop": "heldout", "check_every": 1},
    "head+scaled_lr+heldout": {**P, "update": "head", "lr_scale": "sensitivity", "lr": 0.1, "stop": "heldout",
                               "check_every": 1},
    "head+bounded+scaled_lr+plateau": {"update": "head", "variant": "bounded", "lr_scale": "sensitivity", "lr": 0.1,
                                       "stop": "loss_plateau"},
    "head+target_only+curv.05+heldout_loss": {"lr": 0.05, "fa_floor": None, "stop": "heldout_loss", "check_every": 1},
    "paper+curv.01+heldout_loss": {**P, "lr_scale": "curvature", "lr": 0.01, "stop": "heldout_loss", "check_every": 1},
}


def _methods(task: str, skip: set, only: list | None = None, num_classes: int = 10) -> tuple:
    variants = CLASS_VARIANTS if task == "full_class" else RANDOM_VARIANTS
    out = []
    for label, options in variants.items():
        if label in skip or (only and label not in only):
            continue
        options = dict(options)
        if options.pop("floor", False):
            options["fa_floor"] = 100.0 / num_classes
        out.append((label, "mumis", tuple(sorted(options.items()))))
    return tuple(out)


def run_grid(args) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = defaultdict(set)  # cell → row labels already written (a rerun adds only new variants)
    if out.is_file():
        for line in out.read_text().splitlines():
            row = json.loads(line)
            done[tuple(row["cell"])].add(row["method"])
    console = Console(width=140)
    for dataset in args.datasets:
        for model in args.models:
            for task in args.tasks:
                for seed in args.seeds:
                    cell = (dataset, model, task, seed)
                    methods = _methods(task, done[cell], args.variants)
                    if not methods:
                        continue
                    cfg = ExperimentConfig(dataset=dataset, model=model, task=task, target=TASKS[task], seed=seed,
                                           recipe=TrainRecipe(epochs=args.epochs), methods=methods)
                    console.print(f"[bold]cell[/] {cell}")
                    with tempfile.TemporaryDirectory() as tmp:
                        rows = run_experiment(cfg, tmp, args.cache_dir, show_progress=False, console=console)
                    with out.open("a") as f:
                        for r in rows:
                            if r.method in done[cell]:
                                continue
                            f.write(json.dumps({"cell": list(cell), **asdict(r)}) + "\n")


def summarise(path: str, markdown: bool = False) -> None:
    latest = {}  # one row per (cell, label): a cell rerun for new variants writes its reference rows again
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
        latest[(tuple(r["cell"]), r["method"])] = r
    groups = defaultdict(list)
    for r in latest.values():
        groups[(r["dataset"], r["model"], r["task"], r["method"])].append(r)
    table = Table(title=f"MU-Mis variants vs retrain (mean over seeds) — {path}")
    for col in ("dataset", "model", "task", "variant", "n", "FA", "RA", "TA", "MIA", "Avg. Gap", "Gap w/o MIA",
                "steps", "wall s", "stop reasons"):
        table.add_column(col, justify="left" if col in ("dataset", "model", "task", "variant", "stop reasons") else "right")
    mean = lambda rows, k: statistics.fmean(float(r[k]) for r in rows)  # noqa: E731
    for key in sorted(groups, key=lambda k: (k[0], k[1], k[2], k[3] not in ("retrain", "original"), k[3])):
        rows = groups[key]
        steps = [r["steps"] for r in rows if r["steps"] is not None]
        reasons = Counter(r["stop_reason"] for r in rows if r["stop_reason"])
        table.add_row(*key, str(len(rows)), *(f"{mean(rows, k):.2f}" for k in ("fa", "ra", "ta", "mia", "avg_gap", "avg_gap_no_mia")),
                      f"{statistics.fmean(steps):.0f}" if steps else "–", f"{mean(rows, 'wall_s'):.2f}",
                      ", ".join(f"{k}×{v}" for k, v in reasons.items()) or "–")
    if markdown:  # the same rows as a markdown table, for docs/mumis-variants.md
        headers = [c.header for c in table.columns]
        cells = [c._cells for c in table.columns]
        print("| " + " | ".join(headers) + " |")
        print("|" + "---|" * len(headers))
        for row in zip(*cells):
            print("| " + " | ".join(row) + " |")
        return
    Console(width=200).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="results/mumis_variants.jsonl")
    parser.add_argument("--datasets", nargs="+", default=["mnist5k"])
    parser.add_argument("--models", nargs="+", default=["small_cnn", "resnet_small"])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--variants", nargs="+", help="run only these variant labels (default: all)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--summary", help="only print the table of an existing results file")
    parser.add_argument("--markdown", action="store_true", help="print the summary as a markdown table")
    args = parser.parse_args()
    if args.summary:
        summarise(args.summary, args.markdown)
        return
    run_grid(args)
    summarise(args.out)


if __name__ == "__main__":
    main()

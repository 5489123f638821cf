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
CLASS_VARIANTS = {  # label → MU-Mis options; the class-forgetting safeguard (chance-level FA floor) is added below
    "paper": {},
    "paper+floor": {"floor": True},
    "target_only+floor": {"variant": "target_only", "floor": True},
    "irrelevant_only+floor": {"variant": "irrelevant_only", "floor": True},
    "bounded+floor": {"variant": "bounded", "floor": True},
    "all_classes+floor": {"variant": "all_classes", "floor": True},
    "momentum+floor": {"optimizer": "momentum", "lr": 1e-4, "floor": True},
    "adam+floor": {"optimizer": "adam", "lr": 1e-4, "floor": True},
    "scaled_lr+floor": {"lr_scale": "sensitivity", "lr": 1e-2, "floor": True},
    "bounded+scaled_lr+floor": {"variant": "bounded", "lr_scale": "sensitivity", "lr": 1e-2, "floor": True},
    "head+scaled_lr+floor": {"update": "head", "lr_scale": "sensitivity", "lr": 0.1, "floor": True},
    "head+scaled_lr+floor0": {"update": "head", "lr_scale": "sensitivity", "lr": 0.1, "fa_floor": 0.0},
    "dynamic+floor": {"variant": "dynamic", "floor": True},
    "head+dynamic+scaled_lr+floor0": {"update": "head", "variant": "dynamic", "lr_scale": "sensitivity", "lr": 0.1,
                                      "fa_floor": 0.0},
    "head+dynamic+scaled_lr+75steps": {"update": "head", "variant": "dynamic", "lr_scale": "sensitivity", "lr": 0.1,
                                       "stop": "none", "max_steps": 75},
    # the same run kept going ~3× past where floor0 stops (19–26 steps): does it collapse?
    "head+scaled_lr+75steps": {"update": "head", "lr_scale": "sensitivity", "lr": 0.1, "stop": "none", "max_steps": 75},
}
RANDOM_VARIANTS = {  # random forgetting: the retrain still classifies most of D_f, so no forget-accuracy floor
    "paper": {},
    "bounded": {"variant": "bounded"},
    "bounded+plateau": {"variant": "bounded", "stop": "loss_plateau"},
    "scaled_lr": {"lr_scale": "sensitivity", "lr": 1e-2},
    "bounded+scaled_lr+plateau": {"variant": "bounded", "lr_scale": "sensitivity", "lr": 1e-2, "stop": "loss_plateau"},
    "head+scaled_lr": {"update": "head", "lr_scale": "sensitivity", "lr": 0.1},
    # stop once D_f is classified no better than held-out data (half the test set; declared, never D_r)
    "paper+heldout": {"stop": "heldout", "check_every": 1},
    "scaled_lr+heldout": {"lr_scale": "sensitivity", "lr": 1e-2, "stop": "heldout", "check_every": 1},
    "head+scaled_lr+heldout": {"update": "head", "lr_scale": "sensitivity", "lr": 0.1, "stop": "heldout", "check_every": 1},
    "head+bounded+scaled_lr+plateau": {"update": "head", "variant": "bounded", "lr_scale": "sensitivity", "lr": 0.1,
                                       "stop": "loss_plateau"},
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


def summarise(path: str) -> None:
    groups = defaultdict(list)
    for line in Path(path).read_text().splitlines():
        r = json.loads(line)
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
    args = parser.parse_args()
    if args.summary:
        summarise(args.summary)
        return
    run_grid(args)
    summarise(args.out)


if __name__ == "__main__":
    main()

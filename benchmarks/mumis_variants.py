"""MU-Mis variants against the retrain reference, over datasets × models × tasks × seeds.
(The variants study: docs/research/mumis-variants.md.)

    python benchmarks/mumis_variants.py --out results/mumis_variants.jsonl            # the committed grid (PLAN)
    python benchmarks/mumis_variants.py --datasets mnist5k --models small_cnn --seeds 0 # one group of your own
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

import mumis.experimental  # noqa: F401 — registers mumis_study, the method every variant row runs
from _cell import task_setup
from mumis.bench import ExperimentConfig, run_experiment
from mumis.training import TrainRecipe

TASKS = ("full_class", "sub_class", "random")


P = {"variant": "paper"}  # every study row below varies the paper's setting unless it says "default"
CLASS_VARIANTS = {  # label → MU-Mis options; "floor" adds the chance-level forget-accuracy safeguard (100/K %)
    # the chosen default (variant="default": target term, classifier layer, curvature step, stop at FA 0), and the
    # same run kept going to 300 steps (≥ 3× past its stop) with no stop rule: does it collapse?
    "default": {},
    "default+300steps": {"stop": "none", "fa_floor": None, "max_steps": 300},
    # where the default ends at its 500-step cap (Fashion-MNIST ResNets), 3× past it
    "default+1500steps": {"stop": "none", "fa_floor": None, "max_steps": 1500},
    # the same with heavy-ball momentum: is the cap slow convergence or the objective's fixed point?
    "default+momentum": {"optimizer": "momentum"},
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
    # the target term alone on the classifier layer (for a class request only row c of the head moves)
    "head+target_only+scaled_lr+floor0": {"update": "head", "variant": "target_only", "lr_scale": "sensitivity",
                                          "lr": 0.1, "fa_floor": 0.0},
    "head+target_only+scaled_lr+300steps": {"update": "head", "variant": "target_only", "lr_scale": "sensitivity",
                                            "lr": 0.1, "stop": "none", "max_steps": 300},
}
RANDOM_VARIANTS = {  # random and sub-class forgetting (sample requests): the retrain still classifies most of D_f,
    # so no forget-accuracy floor
    # the first default for a request of individual samples: held-out accuracy comparison (may stop before the
    # first step); every option pinned, so the label keeps meaning what its rows ran
    "default(samples)": {"request": "samples", "stop": "heldout", "fa_floor": None, "lr": 0.5, "check_every": 1},
    # the same steps at a tenth of the step size, stopped once a confidence attack calls as large a share of
    # D_f as of held-out data unseen (threshold fixed at the start); the held-out accuracy guard stays. The default
    # for sample requests now (the label pins it all the same)
    "samples+membership": {"request": "samples", "stop": "membership", "lr": 0.05, "check_every": 1},
    # not a MU-Mis option but the method `newton` — one Newton step that removes D_f from the classifier
    # layer's optimum, curvature from the held-out set, damping = the training weight decay (methods/newton.py)
    "newton": {"method": "newton"},
    # the same when the user states the training weight decay wrong by 2× either way (recipe: 5e-4)
    "newton(wd/2)": {"method": "newton", "weight_decay": 2.5e-4},
    "newton(2wd)": {"method": "newton", "weight_decay": 1e-3},
    # the K-FAC step on every conv/linear layer, scanned up from 1/64 until the membership rule or the
    # held-out guard stops it (newton's layers="all")
    "newton(all_layers)": {"method": "newton_study", "layers": "all", "keep_class_losses": False, "match_accuracy": False,
                          "curvature": "kfac"},
    # the same step projected so that each class's mean held-out loss is unchanged to first order
    "newton(all_layers+class_losses)": {"method": "newton_study", "layers": "all", "reproject": False, "match_accuracy": False,
                                       "curvature": "kfac"},
    # the projection re-done at every scale of the scan (constraints on the even half of the held-out set,
    # stop rule on the odd half)
    "newton(all_layers+reproject)": {"method": "newton_study", "layers": "all", "reproject": True, "match_accuracy": False,
                                    "curvature": "kfac"},
    # either all-layer scan also stopped once D_f's accuracy is down to held-out accuracy; the second was
    # layers="all"'s default before EK-FAC
    "newton(all_layers+class_losses+match_acc)": {"method": "newton_study", "layers": "all", "reproject": False,
                                                  "match_accuracy": True, "curvature": "kfac"},
    "newton(all_layers+reproject+match_acc)": {"method": "newton_study", "layers": "all", "reproject": True,
                                               "match_accuracy": True, "curvature": "kfac"},
    # the same on a finer scan (2^(1/4) apart instead of √2)
    "newton(all_layers+reproject+match_acc+fine)": {"method": "newton_study", "layers": "all", "reproject": True,
                                                    "match_accuracy": True, "scan_resolution": 4, "curvature": "kfac"},
    # the same with EK-FAC curvature (K-FAC's eigenvectors, each eigen-direction's curvature refit):
    # layers="all"'s default
    "newton(all_layers+reproject+match_acc+ekfac)": {"method": "newton_study", "layers": "all", "reproject": True,
                                                     "match_accuracy": True, "curvature": "ekfac"},
    # the EK-FAC default on the finer scan
    "newton(all_layers+reproject+match_acc+ekfac+fine)": {"method": "newton_study", "layers": "all", "reproject": True,
                                                          "match_accuracy": True, "curvature": "ekfac",
                                                          "scan_resolution": 4},
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

_STUDY = ["paper", "paper+floor", "target_only+floor", "irrelevant_only+floor", "bounded+floor", "all_classes+floor",
          "momentum+floor", "adam+floor", "scaled_lr+floor", "bounded+scaled_lr+floor", "head+scaled_lr+floor",
          "head+scaled_lr+floor0", "dynamic+floor", "head+dynamic+scaled_lr+floor0", "head+dynamic+scaled_lr+75steps",
          "head+scaled_lr+75steps"]
_TARGET_ONLY = ["head+target_only+scaled_lr+floor0", "head+target_only+scaled_lr+300steps"]
_LOSS_STOPS = ["head+target_only+curv.05+heldout_loss", "paper+curv.01+heldout_loss"]
# the first variants tried on random requests, named one by one: "every RANDOM_VARIANTS label" would grow with
# each new label and ask for rows the file does not have
_RANDOM_STUDY = ["default(samples)", "default+no_stop", "paper", "bounded", "bounded+plateau", "scaled_lr",
                 "bounded+scaled_lr+plateau", "head+scaled_lr", "paper+heldout", "scaled_lr+heldout",
                 "head+scaled_lr+heldout", "head+bounded+scaled_lr+plateau"]
_DEFAULT = ["default", "default+300steps"]
_SAMPLES = ["default(samples)", "paper"]  # sample requests: the default (held-out stop) against the paper's method
_REPROJECT_OR_MATCH_ACC = ["newton(all_layers+reproject)", "newton(all_layers+class_losses+match_acc)",
                           "newton(all_layers+reproject+match_acc)", "newton(all_layers+reproject+match_acc+fine)"]
_EKFAC = ["newton(all_layers+reproject+match_acc+ekfac)"]
# Everything results/mumis_variants.jsonl holds: (datasets, models, tasks, seeds, variant labels). Running the script
# with no selection works through this plan (a rerun computes only the rows the output file does not have yet).
PLAN = (
    (["mnist5k"], ["small_cnn", "resnet_small"], ["full_class"], [0, 1, 2], _DEFAULT + _STUDY),
    (["mnist5k"], ["small_cnn", "resnet_small"], ["full_class"], [0], _TARGET_ONLY),
    (["mnist5k"], ["small_cnn", "resnet_small"], ["random"], [0, 1, 2], _RANDOM_STUDY),
    (["mnist5k"], ["small_cnn", "resnet_small"], ["random"], [0], _LOSS_STOPS),
    (["mnist5k"], ["resnet_wide"], ["full_class"], [0, 1, 2], _DEFAULT + ["paper", "paper+floor", "head+scaled_lr+floor0"]),
    (["fashion_mnist"], ["small_cnn"], ["full_class"], [0, 1, 2], _DEFAULT + ["paper", "paper+floor", "head+scaled_lr+floor0"]),
    (["fashion_mnist"], ["small_cnn"], ["full_class"], [0], ["adam+floor", "head+scaled_lr+floor",
                                                               "head+dynamic+scaled_lr+floor0", "default+momentum"]
     + _TARGET_ONLY),
    (["fashion_mnist"], ["resnet_small"], ["full_class"], [0, 1, 2], _DEFAULT + ["paper+floor", "default+1500steps"]),
    (["fashion_mnist"], ["resnet_small"], ["full_class"], [0], ["default+momentum"]),
    # the committed rows of this group ran on an NVIDIA H200 (each reference pair: ~25 CPU-minutes here)
    (["fashion_mnist"], ["resnet_wide"], ["full_class"], [0, 1, 2], _DEFAULT + ["paper+floor"]),
    # the rest of the study's grid for sample requests (sub-class on the super-class views)
    (["mnist5k"], ["small_cnn", "resnet_small", "resnet_wide"], ["sub_class"], [0, 1, 2], _SAMPLES),
    (["mnist5k"], ["resnet_wide"], ["random"], [0, 1, 2], _SAMPLES),
    (["fashion_mnist"], ["small_cnn"], ["random"], [0, 1, 2], _SAMPLES + ["samples+membership"]),
    (["mnist5k"], ["small_cnn", "resnet_small", "resnet_wide"], ["sub_class", "random"], [0, 1, 2], ["samples+membership"]),
    # the Newton removal step on every sample-request cell that has references
    (["mnist5k"], ["small_cnn", "resnet_small", "resnet_wide"], ["sub_class", "random"], [0, 1, 2], ["newton"]),
    (["fashion_mnist"], ["small_cnn"], ["random"], [0, 1, 2], ["newton"]),
    (["mnist5k"], ["small_cnn"], ["sub_class", "random"], [0, 1, 2], ["newton(wd/2)", "newton(2wd)"]),
    (["fashion_mnist"], ["small_cnn"], ["random"], [0, 1, 2], ["newton(wd/2)", "newton(2wd)"]),
    # Sneaker inside "footwear" (fashion_mnist_super), the small CNN
    (["fashion_mnist"], ["small_cnn"], ["sub_class"], [0, 1, 2], _SAMPLES + ["samples+membership", "newton"]),
    # Fashion-MNIST × resnet_small, random 10 % (6,000 samples); the committed rows ran on an NVIDIA H200
    (["fashion_mnist"], ["resnet_small"], ["random"], [0, 1, 2], _SAMPLES + ["samples+membership", "newton"]),
    # and Sneaker inside "footwear" on it (this CPU: each reference pair ~16 min)
    (["fashion_mnist"], ["resnet_small"], ["sub_class"], [0, 1, 2], _SAMPLES + ["samples+membership", "newton"]),
    # newton on every layer, on the sample-request cells whose references this CPU has
    (["mnist5k"], ["small_cnn", "resnet_small", "resnet_wide"], ["sub_class", "random"], [0, 1, 2], ["newton(all_layers)"]),
    (["fashion_mnist"], ["small_cnn"], ["sub_class", "random"], [0, 1, 2], ["newton(all_layers)"]),
    (["fashion_mnist"], ["resnet_small"], ["sub_class"], [0, 1, 2], ["newton(all_layers)"]),
    # the projected all-layer step on the same cells
    (["mnist5k"], ["small_cnn", "resnet_small", "resnet_wide"], ["sub_class", "random"], [0, 1, 2],
     ["newton(all_layers+class_losses)"]),
    (["fashion_mnist"], ["small_cnn"], ["sub_class", "random"], [0, 1, 2], ["newton(all_layers+class_losses)"]),
    (["fashion_mnist"], ["resnet_small"], ["sub_class"], [0, 1, 2], ["newton(all_layers+class_losses)"]),
    # the re-projected scan and the forget-accuracy stop, on the same cells (Fashion-MNIST × resnet_small
    # random: results/fashion_mnist_resnet_small_random_cpu.jsonl, CPU references)
    (["mnist5k"], ["small_cnn", "resnet_small", "resnet_wide"], ["sub_class", "random"], [0, 1, 2],
     _REPROJECT_OR_MATCH_ACC),
    (["fashion_mnist"], ["small_cnn"], ["sub_class", "random"], [0, 1, 2], _REPROJECT_OR_MATCH_ACC),
    (["fashion_mnist"], ["resnet_small"], ["sub_class"], [0, 1, 2], _REPROJECT_OR_MATCH_ACC),
    # the same default with EK-FAC curvature, on the same cells (and the CPU-reference file)
    (["mnist5k"], ["small_cnn", "resnet_small", "resnet_wide"], ["sub_class", "random"], [0, 1, 2], _EKFAC),
    (["fashion_mnist"], ["small_cnn"], ["sub_class", "random"], [0, 1, 2], _EKFAC),
    (["fashion_mnist"], ["resnet_small"], ["sub_class"], [0, 1, 2], _EKFAC),
    (["mnist5k"], ["resnet_small", "resnet_wide"], ["random"], [0, 1, 2], ["newton(all_layers+reproject+match_acc+ekfac+fine)"]),
    # random 10 % on Fashion-MNIST × resnet_wide, the grid's last sample-request cell. Seed 0 ran on an
    # NVIDIA H100, seed 1 on this CPU (a reference pair: 70 min here); seed 2 on this CPU against
    # references trained on an H100
    (["fashion_mnist"], ["resnet_wide"], ["random"], [0, 1, 2], _SAMPLES + ["samples+membership", "newton"] + _EKFAC),
    (["fashion_mnist"], ["resnet_wide"], ["random"], [1], ["newton(all_layers+reproject+match_acc+ekfac+fine)"]),
    # Sneaker inside "footwear" on Fashion-MNIST × resnet_wide (seeds 1, 2 on an NVIDIA H100, seed 0 on
    # this CPU)
    (["fashion_mnist"], ["resnet_wide"], ["sub_class"], [0, 1, 2], _SAMPLES + ["samples+membership", "newton"] + _EKFAC),
)


def _variants_for(task: str) -> dict:
    """A class request's variants, or the sample-request ones (sub-class and random)."""
    return CLASS_VARIANTS if task == "full_class" else RANDOM_VARIANTS


def _methods(task: str, skip: set, only: list | None = None, num_classes: int = 10) -> tuple:
    out = []
    for label, options in _variants_for(task).items():
        if label in skip or (only and label not in only):
            continue
        options = dict(options)
        if options.pop("floor", False):
            options["fa_floor"] = 100.0 / num_classes
        method = options.pop("method", "mumis_study")  # the study's method: every variant is one option of it
        out.append((label, method, tuple(sorted(options.items()))))
    return tuple(out)


def run_grid(args, datasets, models, tasks, seeds, variants) -> None:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = defaultdict(set)  # cell → row labels already written (a rerun adds only new variants)
    if out.is_file():
        for line in out.read_text().splitlines():
            row = json.loads(line)
            done[tuple(row["cell"])].add(row["method"])
    console = Console(width=140)
    for dataset in datasets:
        for model in models:
            for task in tasks:
                for seed in seeds:
                    cell = (dataset, model, task, seed)
                    methods = _methods(task, done[cell], variants)
                    if not methods:
                        continue
                    view, target = task_setup(dataset, task)
                    cfg = ExperimentConfig(dataset=view, model=model, task=task, target=target, seed=seed,
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
    if markdown:  # the same rows as a markdown table, for docs/research/mumis-variants.md
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
    # no selection: the whole PLAN; any selection: that one group (unset parts: mnist5k, small_cnn + resnet_small,
    # every task, seeds 0 1 2, every variant of the task)
    parser.add_argument("--datasets", nargs="+")
    parser.add_argument("--models", nargs="+")
    parser.add_argument("--tasks", nargs="+", choices=TASKS)
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--variants", nargs="+", help="run only these variant labels (default: all)")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--summary", help="only print the table of an existing results file")
    parser.add_argument("--markdown", action="store_true", help="print the summary as a markdown table")
    args = parser.parse_args()
    if args.summary:
        summarise(args.summary, args.markdown)
        return
    selection = (args.datasets, args.models, args.tasks, args.seeds, args.variants)
    if any(part is not None for part in selection):
        default = (["mnist5k"], ["small_cnn", "resnet_small"], list(TASKS), [0, 1, 2], None)
        groups = [tuple(d if part is None else part for part, d in zip(selection, default))]
    else:
        groups = PLAN
    for _, _, tasks, _, variants in groups:  # a mistyped label would otherwise select nothing, silently
        known = {label for task in tasks for label in _variants_for(task)}
        if variants and set(variants) - known:
            parser.error(f"unknown variant label(s) {sorted(set(variants) - known)} for tasks {tasks}; see CLASS_VARIANTS "
                         "and RANDOM_VARIANTS at the top of this script")
    for group in groups:
        run_grid(args, *group)
    summarise(args.out)


if __name__ == "__main__":
    main()

"""Does the features layer still encode what was forgotten? A linear probe on the penultimate features.

    python benchmarks/representation_probe.py                      # the demo: mnist5k × small_cnn, seed 0
    python benchmarks/representation_probe.py --seeds 0 1 2

For a class request (class 3) and a random 10 % request, per model — the original, the method ``auto`` serves the
request with (MU-Mis's default moves only the classifier layer; all-layer ``newton`` moves every layer) and the
retrained model — prints the probe's accuracy on D_f (``metrics.linear_probe_accuracy``: a logistic regression on the
standardised penultimate features, fit on data never trained on: the test split with every class), next to the
model's own forget accuracy. A head-only class forgetting leaves the features as trained: the question is how far
the original's probe on D_f is from the retrained model's, whose features never saw the class.
"""
from __future__ import annotations

import argparse

from rich.console import Console
from rich.table import Table

from mumis.bench.grid import Cell
from mumis.bench.references import default_cache_dir
from mumis.bench.runner import GroupContext
from mumis.data import concat_datasets, parse_task
from mumis.methods import grant, quiet_method, run_method
from mumis.metrics import accuracy, linear_probe_accuracy
from mumis.training import TrainRecipe

SERVED = {"full_class": ("mumis", {}), "random": ("newton", {"layers": "all"})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    console = Console(width=140)
    table = Table(title=f"Linear probe on the penultimate features — {args.dataset} × {args.model}")
    for col in ("task", "seed", "model", "forget acc (its head)", "probe acc on D_f", "probe − retrain's"):
        table.add_column(col, justify="left" if col in ("task", "model") else "right")
    for kind, target in (("full_class", 3), ("random", 0.1)):
        for seed in args.seeds:
            cell = Cell(dataset=args.dataset, model=args.model, task=parse_task({"kind": kind, "target": target}),
                        seed=seed, role="retrain", recipe=TrainRecipe(epochs=args.epochs))
            ctx = GroupContext.prepare(cell, default_cache_dir(), None)
            step = ctx.steps[0]
            task = step.evaluation
            unseen = task.test if task.test_forgotten is None else concat_datasets(task.test, task.test_forgotten)
            name, options = SERVED[kind]
            method = quiet_method(name, **options)
            data = grant(method, forget=step.request.forget, **({"heldout": step.request.heldout} if name == "newton" else {}),
                         train_size=len(task.split.train))
            served = run_method(method, ctx.original, data, task.num_classes).model
            models = {"original": ctx.original, f"{name} ({kind})": served, "retrain": ctx.retrains[0][0]}
            probes = {label: linear_probe_accuracy(m, unseen, task.forget) for label, m in models.items()}
            for label, m in models.items():
                table.add_row(kind, str(seed), label, f"{accuracy(m, task.forget):.2f}", f"{probes[label]:.2f}",
                              f"{probes[label] - probes['retrain']:+.2f}")
    console.print(table)


if __name__ == "__main__":
    main()

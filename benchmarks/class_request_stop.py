"""A class request stops when it is done: the default MU-Mis with and without its stall rule, against the retrain.

    python benchmarks/class_request_stop.py                                  # Fashion-MNIST × resnet_small, Dress
    python benchmarks/class_request_stop.py --dataset mnist5k --model small_cnn --target 3 --epochs 20   # the demo

Prints, in one run, per variant: steps, stop reason, unlearning wall time, that time as a share of the retrain's
training time, and Avg. Gap to the retrained model. References come from mumis' model cache (trained on first use).
"""
from __future__ import annotations

import argparse
import tempfile

from rich.console import Console
from rich.table import Table

from mumis.bench import ExperimentConfig, run_experiment
from mumis.training import TrainRecipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--model", default="resnet_small")
    parser.add_argument("--target", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    console = Console(width=140)
    table = Table(title=f"class request {args.target} on {args.dataset} × {args.model}")
    for col in ("seed", "variant", "steps", "stop", "wall s", "% of retrain", "Avg. Gap"):
        table.add_column(col, justify="right")
    for seed in args.seeds:
        cfg = ExperimentConfig(dataset=args.dataset, model=args.model, task="full_class", target=args.target, seed=seed,
                               recipe=TrainRecipe(epochs=args.epochs),
                               methods=(("stall rule (default)", "mumis", ()),
                                        ("no stall rule", "mumis", (("stall_passes", None),))))
        with tempfile.TemporaryDirectory() as tmp:
            rows = run_experiment(cfg, tmp, show_progress=False, console=console)
        retrain = rows[0]
        for r in rows[2:]:
            table.add_row(str(seed), r.method, str(r.steps), r.stop_reason, f"{r.wall_s:.1f}",
                          f"{100 * r.wall_s / retrain.wall_s:.2f}", f"{r.avg_gap:.2f}")
    console.print(table)


if __name__ == "__main__":
    main()

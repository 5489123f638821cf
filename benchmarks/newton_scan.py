"""Where `newton`'s all-layer scan could stop and where its rules stop it: the product's path, every scale measured.

    python benchmarks/newton_scan.py --model resnet_small --task sub_class --seeds 0 1 2
    python benchmarks/newton_scan.py --model resnet_small --task random --seeds 0

The path is the one `newton(layers="all")` walks (EK-FAC step from the held-out set, re-projected at every scale so
that each class's mean held-out loss stays; methods/newton.py), but every stop rule is off: all 13 scales from 1/64
to the full step are taken and scored against the retrained model. Per scale: Avg. Gap, FA / TA / MIA, the rule
half's held-out accuracy (marked where the guard would stop), the shares of D_f and held-out data below the
membership threshold t* (the `membership` rule fires at the first scale where the first reaches the second), and
the 10 % / 50 % quantiles of D_f's true-class confidence against those of the unseen samples most like D_f — for a
sub-class request, the test samples of the forgotten sub-class (no rule may read them: an oracle of what a held-out
set "like D_f" would show); for a random one, the rule's held-out half. The retrained model's quantiles head each
seed's table: where the retrain leaves D_f less confident than even unseen data like it, no comparison against
unseen data under the model being unlearned can find the retrain's point.
"""
from __future__ import annotations

import argparse
import copy
import statistics

import torch
from rich.console import Console
from rich.table import Table

from _cell import confidence_and_accuracy, sample_cell, task_setup
from mumis.methods.kfac import class_loss_gradients, layer_matrix, project_out, removal_direction, set_layers, weight_layers
from mumis.methods.newton import scan_scales
from mumis.methods.stopping import accuracy_tolerance, membership_threshold
from mumis.metrics import avg_gap, evaluate
from mumis.training import TrainRecipe

QUANTILES = (0.1, 0.5)


def quantiles(conf: torch.Tensor) -> str:
    return " / ".join(f"{float(conf.quantile(q)):.4f}" for q in QUANTILES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="resnet_small")
    parser.add_argument("--task", choices=("random", "sub_class"), default="sub_class")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20, help="the references' training recipe")
    args = parser.parse_args()
    weight_decay = TrainRecipe(epochs=args.epochs).weight_decay
    dataset = task_setup(args.dataset, args.task)[0]
    console = Console(width=170)
    summary = []
    for seed in args.seeds:
        task, train_size, original, retrain = sample_cell(args.dataset, args.model, args.task, seed, args.epochs)
        model, reference = copy.deepcopy(original), evaluate(retrain, task)
        heldout = task.heldout  # as newton splits it: constraints on the even half, the rules on the odd half
        constraints, rule = heldout.subset(range(0, len(heldout), 2)), heldout.subset(range(1, len(heldout), 2))
        like = task.test_forgotten if args.task == "sub_class" else rule
        step, inverse = removal_direction(model, task.forget, heldout, train_size, weight_decay, weight_decay,
                                          128, corrected=True)
        conf_f, _ = confidence_and_accuracy(model, task.forget)
        conf_h, acc_before = confidence_and_accuracy(model, rule)
        threshold = membership_threshold(conf_f, conf_h)
        floor = acc_before - accuracy_tolerance(acc_before, len(conf_h))
        like_name = "test samples of the sub-class" if args.task == "sub_class" else "held-out (rule half)"
        table = Table(title=f"{dataset} × {args.model}, {args.task}, seed {seed}: retrain Avg. Gap 0, MIA "
                            f"{reference['mia']:.2f}; retrain's D_f q10 / q50 {quantiles(confidence_and_accuracy(retrain, task.forget)[0])}, "
                            f"{like_name} {quantiles(confidence_and_accuracy(retrain, like)[0])}")
        for col in ("scale", "Avg. Gap", "FA", "TA", "MIA", "held-out acc", "D_f / held-out below t*",
                    "D_f q10 / q50", f"{like_name} q10 / q50", "rules that hold (→ the stop)"):
            table.add_column(col, justify="right")
        position, reached = {m: layer_matrix(m) for m in weight_layers(model)}, 0.0
        gaps, picked, previous = {}, None, 0.0  # picked: where newton's rules stop (the same order as the product)
        for scale in (0.0, *scan_scales(2)):
            if scale:
                increment = project_out(step, class_loss_gradients(model, constraints, 128), inverse)
                position = {m: position[m] + (scale - reached) * d for m, d in increment.items()}
                reached = scale
                set_layers(model, position)
            conf_f, forget_accuracy = confidence_and_accuracy(model, task.forget)
            conf_h, accuracy = confidence_and_accuracy(model, rule)
            result = evaluate(model, task)
            gaps[scale] = avg_gap(result, reference)
            below_f, below_h = (100.0 * float((c < threshold).double().mean()) for c in (conf_f, conf_h))
            marks = [name for name, hit in (("guard", accuracy < floor), ("membership", below_f >= below_h),
                                            ("forget accuracy", forget_accuracy <= accuracy)) if hit]
            if picked is None and marks:
                picked = previous if marks[0] == "guard" else scale
                marks[0] = "→ " + marks[0]
            previous = scale
            conf_like = conf_h if like is rule else confidence_and_accuracy(model, like)[0]
            table.add_row(f"{scale:.4f}", f"{gaps[scale]:.2f}", *(f"{result[k]:.1f}" for k in ("fa", "ta", "mia")),
                          f"{accuracy:.1f}", f"{below_f:.1f} / {below_h:.1f}", quantiles(conf_f),
                          quantiles(conf_like), ", ".join(marks))
        console.print(table)
        best = min(gaps, key=gaps.get)
        picked = reached if picked is None else picked
        summary.append((seed, gaps[0.0], picked, gaps[picked], best, gaps[best]))
    for seed, nothing, picked, picked_gap, best, best_gap in summary:
        console.print(f"seed {seed}: doing nothing {nothing:.2f}; newton's rules stop at scale {picked:.4f}: {picked_gap:.2f}; "
                      f"best scale {best:.4f} (picking it needs the retrain): {best_gap:.2f}")
    console.print(f"mean: doing nothing {statistics.fmean(s[1] for s in summary):.2f}, newton's rules "
                  f"{statistics.fmean(s[3] for s in summary):.2f}, best scale {statistics.fmean(s[5] for s in summary):.2f}")


if __name__ == "__main__":
    main()

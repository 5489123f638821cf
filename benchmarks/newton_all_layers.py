"""The Newton removal step on every conv and linear layer (K-FAC curvature), per step scale.
(The variants study, docs/research/mumis-variants.md: "a Newton step on every layer (K-FAC)".)

    python benchmarks/newton_all_layers.py [--dataset mnist5k] [--model resnet_small] [--task random|sub_class]
                                           [--seeds 0 1 2] [--scales 1 0.14 0.1 0.08 0.06 0.04 0.03 0.02]
                                           [--damping 5e-4] [--curvature heldout retain] [--keep-class-losses]

``newton`` takes one Newton step on the classifier layer; on the ResNets the forget samples are memorised inside
the features and that step is ≈ 0. This measures the step of ``methods/kfac.py`` on every ``nn.Conv2d`` and
``nn.Linear`` (BatchNorm frozen): Δθ_l = n_f / (n − n_f) · (A_l ⊗ G_l / T_l + γI)⁻¹ r_l, r_l the mean
cross-entropy gradient over D_f (+ λθ on linear layers), γ = the damping (default: the training weight decay),
curvature from the held-out set (what a method may read) or from D_r (an oracle no retain-free method has);
``--keep-class-losses``: projected so that each class's mean loss over that set is unchanged to first order (part of
``newton``'s default for ``layers="all"``).

For each step scale: the Avg. Gap to the reference retrain, held-out accuracy, and the share of D_f / held-out
data below the one-threshold membership attack's threshold t* (``stopping.membership_threshold``). Marked: the
scale each held-out rule would pick — ``guard`` = the largest that keeps held-out accuracy within two standard
errors, ``membership`` = the smallest at which as large a share of D_f as of held-out data is below t*, ``both``
= the smaller of the two (what ``newton`` with ``layers="all"`` does, on its own grid of scales). The summary
gives each rule's Avg. Gap per seed, the best scale's (which needs the retrain to pick) and the original's.
"""
from __future__ import annotations

import argparse
import copy
import statistics
from collections import defaultdict

from rich.console import Console
from rich.table import Table
from torch import nn

from _cell import confidence_and_accuracy, sample_cell, task_setup
from mumis.methods.kfac import apply_step, kfac_removal_step, layer_matrix, weight_layers
from mumis.methods.stopping import accuracy_tolerance, membership_threshold
from mumis.metrics import avg_gap, evaluate
from mumis.training import TrainRecipe


def _moved(model: nn.Module, step: dict, scale: float) -> nn.Module:
    new = copy.deepcopy(model).eval()
    layers = dict(zip(weight_layers(model), weight_layers(new)))
    start = {layers[m]: layer_matrix(m) for m in step}
    apply_step(new, start, {layers[m]: d for m, d in step.items()}, scale)
    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="resnet_small")
    parser.add_argument("--task", choices=("random", "sub_class"), default="random",
                        help="random 10 %%, or the fine class of mumis_variants.py's sub-class cells on the super-class view")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--scales", nargs="+", type=float, default=[1, 0.14, 0.1, 0.08, 0.06, 0.04, 0.03, 0.02])
    parser.add_argument("--damping", nargs="+", type=float, default=None, help="default: the recipe's weight decay")
    parser.add_argument("--curvature", nargs="+", choices=("heldout", "retain"), default=["heldout"],
                        help="'retain' is an oracle (reads D_r): what the step would do with the true curvature")
    parser.add_argument("--keep-class-losses", action="store_true",
                        help="project the step so that each class's mean loss over the curvature set stays")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    recipe = TrainRecipe(epochs=args.epochs)
    dampings = args.damping or [recipe.weight_decay]
    console = Console(width=200)
    dataset = task_setup(args.dataset, args.task)[0]
    projected = ", per-class losses kept" if args.keep_class_losses else ""
    table = Table(title=f"K-FAC Newton removal on every layer{projected}, {dataset} × {args.model}, {args.task}: Avg. Gap to retrain")
    picked = defaultdict(list)  # rule → Avg. Gap of its pick, per (seed, curvature, damping)
    for col in ("seed", "curvature", "damping", "scale", "Avg. Gap", "FA", "RA", "TA", "MIA", "held-out acc",
                "D_f / held-out below t*", "rule picks"):
        table.add_column(col, justify="right")
    for seed in args.seeds:
        task, train_size, original, retrain = sample_cell(args.dataset, args.model, args.task, seed, args.epochs)
        reference = evaluate(retrain, task)
        start = evaluate(original, task)
        table.add_row(str(seed), "–", "–", "0 (original)", f"{avg_gap(start, reference):.2f}",
                      *(f"{start[k]:.2f}" for k in ("fa", "ra", "ta", "mia")), "", "", "")
        table.add_row(str(seed), "–", "–", "retrain", "0.00", *(f"{reference[k]:.2f}" for k in ("fa", "ra", "ta", "mia")),
                      "", "", "")
        conf_f, _ = confidence_and_accuracy(original, task.forget)
        conf_h, acc_h = confidence_and_accuracy(original, task.heldout)
        threshold, tolerance = membership_threshold(conf_f, conf_h), accuracy_tolerance(acc_h, len(conf_h))
        for source in args.curvature:
            curvature = task.heldout if source == "heldout" else task.retain
            for damping in dampings:
                step = kfac_removal_step(original, task.forget, curvature, train_size, damping, recipe.weight_decay,
                                         keep_class_losses=args.keep_class_losses)
                rows = []
                for scale in sorted(args.scales):
                    moved = _moved(original, step, scale)
                    cf, _ = confidence_and_accuracy(moved, task.forget)
                    ch, acc = confidence_and_accuracy(moved, task.heldout)
                    share_f, share_h = 100 * float((cf < threshold).double().mean()), 100 * float((ch < threshold).double().mean())
                    rows.append((scale, evaluate(moved, task), acc, share_f, share_h))
                within = [r[0] for r in rows if r[2] >= acc_h - tolerance]
                guard = max(within) if within else 0.0
                membership = next((r[0] for r in rows if r[3] >= r[4]), None)
                both = min(guard, membership) if membership is not None else guard
                gaps = {0.0: avg_gap(start, reference), **{r[0]: avg_gap(r[1], reference) for r in rows}}
                for rule, scale in (("guard", guard), ("membership", membership), ("both", both)):
                    picked[rule].append(gaps[scale] if scale is not None else gaps[0.0])
                picked["best scale (needs the retrain)"].append(min(gaps.values()))
                picked["original"].append(gaps[0.0])
                for scale, result, acc, share_f, share_h in rows:
                    picks = [name for name, s in (("guard", guard), ("membership", membership), ("both", both)) if s == scale]
                    table.add_row(str(seed), source, f"{damping:g}", f"{scale:g}", f"{avg_gap(result, reference):.2f}",
                                  *(f"{result[k]:.2f}" for k in ("fa", "ra", "ta", "mia")), f"{acc:.2f}",
                                  f"{share_f:.1f} / {share_h:.1f}", ", ".join(picks))
        console.log(f"seed {seed} done")
    console.print(table)
    console.print("guard: the largest scale keeping held-out accuracy within two standard errors; membership: the smallest "
                  "scale with as large a share of D_f as of held-out data below the attack threshold t* (none: the original); "
                  "both: the smaller of the two.")
    for rule, gaps in picked.items():
        console.print(f"{rule}: Avg. Gap {' / '.join(f'{g:.2f}' for g in gaps)}, mean {statistics.fmean(gaps):.2f}")


if __name__ == "__main__":
    main()

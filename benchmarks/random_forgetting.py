"""What separates a random forget set from unseen data, measured against the retrain reference.
(The variants study, docs/research/mumis-variants.md: "random forgetting — where the signal is".)

    python benchmarks/random_forgetting.py [--dataset mnist5k] [--model small_cnn] [--seeds 0 1 2] [--epochs 20]

Per seed (original and retrain come from mumis' model cache, trained on first use):
1. noise floor: a second retrain from another initialisation, its Avg. Gap to the reference retrain, next to
   the original's;
2. where the signal sits: original loss and target-class input sensitivity of the forget samples the retrain gets
   wrong vs the rest, and D_f vs held-out mean target sensitivity;
3. held-out quantile matching: every forget sample gets the held-out loss at its own rank as a target and the
   classifier layer is trained (SGD) to raise each sample's loss up to it; Avg. Gap after ≤ 300 steps;
4. tail matching: the same targets, but only the samples whose target loss exceeds τ move (the upper tail,
   where a model that never saw them would be unsure or wrong: 7–83 of 400 samples here), on the classifier layer
   or on every weight, small fixed steps, ≤ 1,000 steps; Avg. Gap per configuration.
"""
from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

from mumis.bench.experiment import cell_data, cell_references
from mumis.bench.references import default_cache_dir
from mumis.metrics import avg_gap, evaluate
from mumis.models import classifier_head, create_model, logit_sensitivity
from mumis.runtime import seed_everything
from mumis.training import TrainRecipe, fit


@torch.no_grad()
def _losses(model, data):
    x, y = data.tensors()
    logits = model(x)
    return F.cross_entropy(logits, y, reduction="none"), logits.argmax(1) == y


TAIL = ((0.05, "head", 1e-3), (0.7, "head", 1e-3), (0.05, "all", 1e-4), (0.7, "all", 1e-4))  # (τ, weights, lr)


def quantile_match(original, forget, heldout, lr: float = 0.5, max_steps: int = 300, tail: float | None = None,
                   update: str = "head"):
    """Raise each forget sample's loss to the held-out loss at its rank (only where that target exceeds ``tail``)."""
    lf, _ = _losses(original, forget)
    lh, _ = _losses(original, heldout)
    targets = torch.quantile(lh, (lf.argsort().argsort().float() + 0.5) / len(lf))
    model = copy.deepcopy(original).eval()
    x, y = forget.tensors()
    opt = torch.optim.SGD((classifier_head(model, x[:1]) if update == "head" else model).parameters(), lr=lr)
    if tail is not None:
        chosen = (targets > tail) & (targets > lf)
        x, y, targets, lf = x[chosen], y[chosen], targets[chosen], lf[chosen]
    steps = 0
    while steps < max_steps and len(targets):
        objective = torch.relu(targets - F.cross_entropy(model(x), y, reduction="none")).mean()
        if objective.item() < 1e-3 * float(targets.mean()):
            break
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
        steps += 1
    return model, int((targets > lf).sum()), steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    cache, recipe = default_cache_dir(), TrainRecipe(epochs=args.epochs)
    table = Table(title=f"Random 10 % forgetting, {args.dataset} × {args.model}: Avg. Gap to the reference retrain")
    for col in ("seed", "retrain (other init)", "original", "quantile match", "below target", "steps",
                "orig loss: retrain-wrong / rest", "orig sens: retrain-wrong / rest", "sens D_f / held-out",
                *(f"tail τ={t} {u} lr {lr:g}" for t, u, lr in TAIL)):
        table.add_column(col, justify="right")
    for seed in args.seeds:
        cell = cell_data(args.dataset, "random", 0.1, seed, cache)
        task, train = cell.task, cell.train
        original, _, retrain, _ = cell_references(cell, args.model, recipe, seed, cache)
        reference = evaluate(retrain, task)
        seed_everything(seed + 100)
        other = create_model(args.model, task.num_classes, train.in_channels)
        fit(other, task.retain, recipe, seed=seed + 100, show_progress=False)
        matched, below, steps = quantile_match(original, task.forget, task.heldout)
        tails = [quantile_match(original, task.forget, task.heldout, lr, 1000, t, u) for t, u, lr in TAIL]

        lf, _ = _losses(original, task.forget)
        _, retrain_right = _losses(retrain, task.forget)
        x, y = task.forget.tensors()
        xh, yh = task.heldout.tensors()
        sens, sens_h = logit_sensitivity(original, x, y), logit_sensitivity(original, xh, yh)
        wrong = ~retrain_right
        table.add_row(str(seed), *(f"{avg_gap(evaluate(m, task), reference):.2f}" for m in (other, original, matched)),
                      f"{below}/{len(lf)}", str(steps), f"{lf[wrong].mean():.3f} / {lf[~wrong].mean():.3f}",
                      f"{sens[wrong].mean():.3f} / {sens[~wrong].mean():.3f}", f"{sens.mean():.3f} / {sens_h.mean():.3f}",
                      *(f"{avg_gap(evaluate(m, task), reference):.2f} ({n} moved)" for m, n, _ in tails))
    Console(width=260).print(table)


if __name__ == "__main__":
    main()

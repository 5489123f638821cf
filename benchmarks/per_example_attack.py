"""Does the per-example attack see what the population attack misses? Original vs retrained model on a random request.

    python benchmarks/per_example_attack.py                       # mnist5k × small_cnn, random 10 %, 16 shadows
    python benchmarks/per_example_attack.py --shadows 8 --epochs 12

Prints, in one run, for the original and the retrained model: the population attack (SalUn's MIA-efficacy: the share
of D_f called unseen) and the per-example LiRA attack (online and offline: AUC and TPR at 1 % / 0.1 % FPR of D_f
against never-seen test samples). A retrained model never saw D_f, so its per-example AUC is the ≈ 0.5 reference.
Shadows and references come from mumis' model cache (trained on first use, through the one training loop).
"""
from __future__ import annotations

import argparse

import numpy as np
from rich.console import Console
from rich.table import Table

from mumis.bench.experiment import persisted_split
from mumis.bench.references import default_cache_dir, trained_reference
from mumis.bench.shadows import per_example_attack, shadow_confidences, shadow_pool, train_shadows
from mumis.data import load_dataset, random_fraction, task_from_views
from mumis.metrics import evaluate
from mumis.training import TrainRecipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--shadows", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cache, recipe = default_cache_dir(), TrainRecipe(epochs=args.epochs)
    bundle = load_dataset(args.dataset)
    split = persisted_split(bundle, args.seed, cache)
    train, test = split.materialise(bundle)
    forget = random_fraction(train, split, args.fraction, seed=args.seed)
    task = task_from_views(train, test, split, forget)
    original, _, _ = trained_reference("original", train, args.model, split, recipe, args.seed, cache, test=test)
    retrain, _, _ = trained_reference("retrain", task.retain, args.model, split, recipe, args.seed, cache,
                                      forget_sha=forget.sha256, test=test)
    pool = shadow_pool(train, test)
    shadows, masks = train_shadows(pool, args.model, split, recipe, args.shadows, args.seed, cache)
    phis = shadow_confidences(shadows, pool)
    positives, negatives = forget.indices, np.arange(len(train), len(pool))
    table = Table(title=f"{args.dataset} × {args.model}, random {args.fraction:.0%} (|D_f| = {len(positives)}), "
                        f"{args.shadows} shadows, seed {args.seed}")
    for col in ("model", "population MIA (% of D_f unseen)", "LiRA online AUC", "TPR@1%", "TPR@0.1%",
                "LiRA offline AUC", "TPR@1%", "TPR@0.1%"):
        table.add_column(col, justify="right")
    for name, model in (("original", original), ("retrain", retrain)):
        online = per_example_attack(model, pool, positives, negatives, phis, masks, online=True)
        offline = per_example_attack(model, pool, positives, negatives, phis, masks, online=False)
        table.add_row(name, f"{evaluate(model, task)['mia']:.2f}",
                      *(f"{d[k]:.3f}" for d in (online, offline) for k in ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr")))
    Console(width=160).print(table)


if __name__ == "__main__":
    main()

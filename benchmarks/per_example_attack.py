"""Does the per-example attack see what the population attack misses — on a random request, and on the samples
the model remembers most?

    python benchmarks/per_example_attack.py                       # mnist5k × small_cnn, 10 %, 16 shadows
    python benchmarks/per_example_attack.py --shadows 8 --epochs 12

Two forget sets of the same size: a random 10 % of every class, and the 10 % of every class with the highest
memorisation score (mean φ over the shadows that trained on a sample minus over those that did not; RULI's argument
that random samples understate the risk). Prints, in one run, for the original model, the retrained model and the
method ``auto`` serves a sample request with (given held-out data and the training-set size): Avg. Gap to the
retrained model, the population attack (SalUn's MIA-efficacy: the share of D_f called unseen) and the per-example
LiRA attack (online and offline: AUC and TPR at 1 % / 0.1 % FPR of D_f against never-seen test samples). A retrained
model never saw D_f, so its per-example AUC is the reference. Shadows and references come from mumis' model cache
(trained on first use, through the one training loop).
"""
from __future__ import annotations

import numpy as np
from rich.console import Console
from rich.table import Table

from _cell import cell_parser
from mumis.bench.experiment import apply_method, persisted_split
from mumis.bench.references import default_cache_dir, trained_reference
from mumis.bench.shadows import per_example_attack, shadow_reference
from mumis.data import load_dataset, most_memorised, random_fraction, task_from_views
from mumis.methods import quiet_method
from mumis.methods.auto import resolve
from mumis.metrics import avg_gap, evaluate
from mumis.metrics.lira import memorisation_scores
from mumis.training import TrainRecipe


def main() -> None:
    parser = cell_parser(__doc__)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--shadows", type=int, default=16)
    args = parser.parse_args()
    cache, recipe = default_cache_dir(), TrainRecipe(epochs=args.epochs)
    bundle = load_dataset(args.dataset)
    split = persisted_split(bundle, args.seed, cache)
    train, test = split.materialise(bundle)
    original, _, _ = trained_reference("original", train, args.model, split, recipe, args.seed, cache, test=test)
    pool, phis, masks = shadow_reference(train, test, args.model, split, recipe, args.shadows, args.seed, cache,
                                         show_progress=True)
    memorised = most_memorised(train, split, memorisation_scores(phis[:, :len(train)], masks[:, :len(train)]),
                               args.fraction)
    negatives = np.arange(len(train), len(pool))
    choice = resolve("auto", "samples", {"forget", "heldout", "train_size"})
    table = Table(title=f"{args.dataset} × {args.model}, {args.fraction:.0%} of every class, {args.shadows} shadows, "
                        f"seed {args.seed}; auto → {choice.method} {choice.options}")
    for col in ("forget set", "model", "Avg. Gap", "population MIA (% of D_f unseen)", "LiRA online AUC", "TPR@1%",
                "TPR@0.1%", "LiRA offline AUC", "TPR@1%", "TPR@0.1%"):
        table.add_column(col, justify="right")
    for label, forget in (("random", random_fraction(train, split, args.fraction, seed=args.seed)),
                          ("most memorised", memorised)):
        task = task_from_views(train, test, split, forget)
        retrain, _, _ = trained_reference("retrain", task.retain, args.model, split, recipe, args.seed, cache,
                                          forget_sha=forget.sha256, test=test)
        served = apply_method(quiet_method(choice.method, **choice.options), original, task)[0].model
        reference = evaluate(retrain, task)
        for name, model in (("original", original), ("retrain", retrain), (f"auto ({choice.method})", served)):
            metrics = evaluate(model, task)
            online = per_example_attack(model, pool, forget.indices, negatives, phis, masks, online=True)
            offline = per_example_attack(model, pool, forget.indices, negatives, phis, masks, online=False)
            table.add_row(f"{label} (|D_f| = {len(forget.indices)})", name, f"{avg_gap(metrics, reference):.2f}",
                          f"{metrics['mia']:.2f}",
                          *(f"{d[k]:.3f}" for d in (online, offline) for k in ("auc", "tpr_at_1pct_fpr", "tpr_at_0.1pct_fpr")))
    Console(width=180).print(table)

if __name__ == "__main__":
    main()

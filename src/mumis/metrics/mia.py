"""MIA-efficacy as the SalUn / ℓ1-sparse line computes it (Unlearn-Sparse ``evaluation/SVC_MIA.py``).

Given the unlearned model, the retain set D_r, the test set D_t (for full-class forgetting, without the
forgotten class) and the forget set D_f:

1. features: the softmax confidence of the true class, p_y(x) = softmax(f(x))_y, model in eval mode;
2. shadow "in" = the first |D_t| samples of D_r in dataset order, shadow "out" = all of D_t;
3. fit ``SVC(C=3, gamma="auto", kernel="rbf")`` on in (label 1) vs out (label 0), no scaling or weighting;
4. predict on D_f:   MIA-efficacy = 100 · (1 − mean_{x ∈ D_f} ŷ(x)) = 100 · TN / |D_f|,

the share of forget samples the attack calls non-members. Higher = more forget samples look unseen; the
retrain model is the reference (about 100 for full-class forgetting, well below for random forgetting).
"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.svm import SVC
from torch import nn

from mumis.data import ImageDataset
from mumis.metrics.accuracy import predict_logits


def true_class_confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """p_y = softmax(logits)_y per sample."""
    return torch.softmax(logits.double(), dim=1).gather(1, labels.view(-1, 1)).squeeze(1).numpy()


def mia_efficacy_from_confidence(shadow_in: np.ndarray, shadow_out: np.ndarray, target: np.ndarray) -> float:
    """Steps 3–4 on precomputed confidences (so golden-value tests need no model)."""
    x = np.concatenate([shadow_in, shadow_out]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(shadow_in)), np.zeros(len(shadow_out))])
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return 100.0 * (1.0 - attack.predict(target.reshape(-1, 1)).mean())


def mia_efficacy(model: nn.Module, retain: ImageDataset, test: ImageDataset, forget: ImageDataset) -> float:
    """SalUn-exact MIA-efficacy (%) of ``model`` on ``forget``; see the module docstring for the formula."""
    shadow_in = retain.subset(np.arange(min(len(test), len(retain))))
    conf = [true_class_confidence(predict_logits(model, d), d.labels) for d in (shadow_in, test, forget)]
    return mia_efficacy_from_confidence(*conf)


def stratified_shadow_indices(retain_labels: np.ndarray, test_labels: np.ndarray, seed: int = 0,
                              max_per_side: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """(shadow-in positions in D_r, shadow-out positions in D_t) for :func:`mia_efficacy_stratified`."""
    rng = np.random.default_rng(seed)
    out_idx = rng.permutation(len(test_labels))[: min(len(test_labels), max_per_side)]
    in_idx = []
    for c, count in zip(*np.unique(test_labels[out_idx], return_counts=True)):
        pool = np.flatnonzero(retain_labels == c)
        in_idx.append(rng.choice(pool, size=min(count, len(pool)), replace=False))
    return (np.concatenate(in_idx) if in_idx else np.zeros(0, dtype=np.int64)), out_idx


def mia_efficacy_stratified(
    model: nn.Module, retain: ImageDataset, test: ImageDataset, forget: ImageDataset, seed: int = 0, max_per_side: int = 5000,
) -> float:
    """MIA-efficacy (%) with a seeded, class-stratified shadow set instead of SalUn's first-n slice.

    Same attack and score as :func:`mia_efficacy`, but shadow "out" = ``min(|D_t|, max_per_side)`` test samples
    drawn at random, and shadow "in" = the same number of retain samples drawn at random **with the test draw's class
    proportions** (the first-n slice follows dataset order, which for some datasets is sorted by class). The cap
    keeps the RBF-SVC fit affordable on 10k-sample test sets.
    """
    in_idx, out_idx = stratified_shadow_indices(retain.labels.numpy(), test.labels.numpy(), seed, max_per_side)
    shadow_in, shadow_out = retain.subset(in_idx), test.subset(out_idx)
    conf = [true_class_confidence(predict_logits(model, d), d.labels) for d in (shadow_in, shadow_out, forget)]
    return mia_efficacy_from_confidence(*conf)


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Cross-entropy ℓ_i = −log softmax(f(x_i))_{y_i}, clipped to [−100, 100] as the SCRUB / challenge code does."""
    loss = torch.nn.functional.cross_entropy(logits.double(), labels, reduction="none")
    return loss.clamp(-100, 100).numpy()


def loss_mia_from_losses(forget_loss: np.ndarray, test_loss: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated accuracy (%) of a logistic regression telling forget from test samples by their loss.

    Both sets are cut to the smaller size by a seeded random draw, then ``folds``-fold stratified CV accuracy of
    ``LogisticRegression`` on the loss (forget = 1, test = 0). 50 = indistinguishable; the retrain model is the
    reference (for a random forget set its value is ~50; for a forgotten class the test side should come from
    the same class, see :func:`loss_mia`).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    rng = np.random.default_rng(seed)
    n = min(len(forget_loss), len(test_loss))
    if n < folds:
        return float("nan")
    x = np.concatenate([rng.choice(forget_loss, n, replace=False), rng.choice(test_loss, n, replace=False)]).reshape(-1, 1)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return 100.0 * float(cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy").mean())


def loss_mia(model: nn.Module, forget: ImageDataset, test: ImageDataset, seed: int = 0) -> float:
    """Loss-based MIA (NeurIPS 2023 unlearning-challenge style), in percent; see :func:`loss_mia_from_losses`.

    ``test`` should be the unseen samples that are comparable to D_f: the whole test set for random requests,
    the forgotten class's test samples for class requests."""
    losses = [per_sample_loss(predict_logits(model, d), d.labels) for d in (forget, test)]
    return loss_mia_from_losses(*losses, seed=seed)

"""Per-example membership inference: the likelihood-ratio attack (LiRA; Carlini et al., "Membership Inference
Attacks From First Principles", 2022), as used to audit unlearning per sample (U-LiRA; Hayes et al. 2024).

A population attack (``mia.py``) puts one threshold on all samples; LiRA calibrates each sample against shadow
models trained with it (IN) and without it (OUT):

1. shadows: S models, each trained on a random half of the training pool, so every sample is IN for about S/2 of them;
2. per sample i and model m, the logit-scaled confidence  φ_m(i) = log( p_y / (1 − p_y) ) = f_y − log Σ_{k≠y} e^{f_k};
3. per sample, Gaussian fits over the shadows:  φ(i) | IN ~ N(μ_in(i), σ_in(i)²),  φ(i) | OUT ~ N(μ_out(i), σ_out(i)²);
4. the score of the model under test on sample i
   * online:  Λ(i) = log N(φ(i); μ_in, σ_in²) − log N(φ(i); μ_out, σ_out²)   (large: looks like a member),
   * offline: Λ(i) = (φ(i) − μ_out) / σ_out   (only OUT shadows; the one-sided test's statistic);
5. AUC and TPR at a fixed FPR of the scores of the forget set (positives) against never-seen samples (negatives).

For unlearning the forget set should score like never-seen data: the retrained model's AUC (≈ 0.5) is the reference.
The shadows' σ are pooled across samples where a sample has too few IN or OUT shadows (the paper's "global variance").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from mumis.data import ImageDataset
from mumis.metrics.accuracy import predict_logits


def scaled_confidence(logits: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """φ = log(p_y / (1 − p_y)) = f_y − logsumexp_{k≠y} f_k per sample, computed without forming p_y (stable at
    confidences that round to 1 in float32)."""
    logits = logits.double()
    true = logits.gather(1, labels.view(-1, 1)).squeeze(1)
    others = logits.scatter(1, labels.view(-1, 1), float("-inf"))
    return (true - torch.logsumexp(others, dim=1)).numpy()


def _gaussian_fit(phis: np.ndarray, mask: np.ndarray, min_count: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample mean and standard deviation of ``phis`` (S × N) over the shadows where ``mask`` (S × N) is True; a
    sample with fewer than ``min_count`` such shadows takes the pooled σ (and the pooled μ if it has none)."""
    count = mask.sum(0)
    values = np.where(mask, phis, 0.0)
    mu = values.sum(0) / np.maximum(count, 1)
    var = (np.where(mask, (phis - mu) ** 2, 0.0)).sum(0) / np.maximum(count - 1, 1)
    pooled_sd = math.sqrt(float(var[count >= min_count].mean())) if (count >= min_count).any() else 1.0
    pooled_mu = float(phis[mask].mean()) if mask.any() else 0.0
    sd = np.where(count >= min_count, np.sqrt(var), pooled_sd)
    mu = np.where(count >= 1, mu, pooled_mu)
    return mu, np.maximum(sd, 1e-6)


def _log_normal(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd) - 0.5 * math.log(2 * math.pi)


def lira_scores(target: np.ndarray, shadow_phis: np.ndarray, shadow_in: np.ndarray, online: bool = True) -> np.ndarray:
    """Step 4 for N samples: ``target`` (N) = φ under the model under test, ``shadow_phis`` (S × N) = φ under each
    shadow, ``shadow_in`` (S × N, bool) = whether the sample trained that shadow."""
    return scores_from_fits(target, gaussian_fits(shadow_phis, shadow_in), online)


def gaussian_fits(shadow_phis: np.ndarray, shadow_in: np.ndarray) -> tuple[np.ndarray, ...]:
    """(μ_in, σ_in, μ_out, σ_out) per sample: what :func:`lira_scores` compares a model with. They depend on the
    shadows alone, so a reference computes them once for every model it judges."""
    return (*_gaussian_fit(shadow_phis, shadow_in), *_gaussian_fit(shadow_phis, ~shadow_in))


def scores_from_fits(target: np.ndarray, fits: tuple[np.ndarray, ...], online: bool = True) -> np.ndarray:
    """Online: log N(φ; μ_in, σ_in) − log N(φ; μ_out, σ_out); offline: (φ − μ_out) / σ_out, per sample."""
    mu_in, sd_in, mu_out, sd_out = fits
    if not online:
        return (target - mu_out) / sd_out
    return _log_normal(target, mu_in, sd_in) - _log_normal(target, mu_out, sd_out)


def roc_auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative) + ½ P(tie) — the Mann–Whitney form of the AUC."""
    pos, neg = np.asarray(positive, float), np.asarray(negative, float)
    ranks = _average_ranks(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2  # 1-based average rank of the tie group
            start = end
    return ranks


def tpr_at_fpr(positive: np.ndarray, negative: np.ndarray, fpr: float) -> float:
    """The share of positives scored above the threshold that lets at most ``fpr`` of the negatives through:
    threshold = the ⌈(1 − fpr)·M⌉-th smallest negative score (strictly above it counts)."""
    neg = np.sort(np.asarray(negative, float))
    k = min(len(neg) - 1, max(0, math.ceil((1.0 - fpr) * len(neg)) - 1))
    return float((np.asarray(positive, float) > neg[k]).mean())


def attack_summary(forget_scores: np.ndarray, unseen_scores: np.ndarray) -> dict:
    """AUC and TPR at 1 % and 0.1 % FPR of the forget set's scores against never-seen samples' scores."""
    return {"auc": roc_auc(forget_scores, unseen_scores),
            "tpr_at_1pct_fpr": tpr_at_fpr(forget_scores, unseen_scores, 0.01),
            "tpr_at_0.1pct_fpr": tpr_at_fpr(forget_scores, unseen_scores, 0.001)}


def shadow_memberships(n_samples: int, n_shadows: int, seed: int = 0) -> np.ndarray:
    """S × N booleans: shadow s trains on sample i. Each shadow takes a random half; with an even S the halves are
    paired (shadow 2j+1 takes the complement of shadow 2j), so every sample is IN for exactly S/2 shadows."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_shadows):
        if s % 2 == 1:
            rows.append(~rows[-1])
        else:
            row = np.zeros(n_samples, dtype=bool)
            row[rng.permutation(n_samples)[: n_samples // 2]] = True
            rows.append(row)
    return np.stack(rows)


def memorisation_scores(shadow_phis: np.ndarray, shadow_in: np.ndarray) -> np.ndarray:
    """Per sample, how much training on it lifts its own fit: mem(i) = mean_{s: IN} φ_s(i) − mean_{s: OUT} φ_s(i)
    (Feldman & Zhang's memorisation estimate, on the logit-scaled confidence). Large for atypical samples a model
    fits only when it sees them — the samples RULI argues a random forget set under-represents; ≈ 0 for samples
    every model fits from the rest of the data."""
    return _gaussian_fit(shadow_phis, shadow_in)[0] - _gaussian_fit(shadow_phis, ~shadow_in)[0]


def calibrated_scores(target: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Without shadows (serving a request): offline LiRA with one global OUT distribution, fitted on samples the
    model never trained on — z(i) = (φ(i) − mean_ref φ) / std_ref φ. Large z: sample i is fitted like training data."""
    return (np.asarray(target, float) - float(np.mean(reference))) / max(float(np.std(reference)), 1e-6)


def member_like_share(scores: np.ndarray, reference_scores: np.ndarray, quantile: float = 0.95) -> float:
    """% of ``scores`` above the ``quantile`` of the never-seen samples' scores: ≈ 100·(1 − quantile) for samples the
    model treats like unseen data, up to 100 for samples it still fits like training data."""
    return 100.0 * float((np.asarray(scores) > np.quantile(reference_scores, quantile)).mean())


@dataclass
class PerExampleReference:
    """What the per-example attack on one task step compares a model against: the shadow ``pool`` (every sample
    the shadows could train on), each pool sample's φ under each shadow (S × N), the shadows' memberships (S × N), and
    the pool positions of D_f (``positives``) and of never-seen samples (``negatives``)."""

    pool: ImageDataset
    shadow_phis: np.ndarray
    shadow_in: np.ndarray
    positives: np.ndarray
    negatives: np.ndarray
    fits: tuple = field(init=False, repr=False)  # gaussian_fits over the whole pool (its pooled σ as lira_scores')

    def __post_init__(self):
        self.fits = gaussian_fits(self.shadow_phis, self.shadow_in)

    def attack(self, model: nn.Module, online: bool = True) -> dict:
        """LiRA scores of ``model``: AUC and TPR at 1 % / 0.1 % FPR of D_f against the never-seen samples, and D_f's
        per-sample ``scores`` (for a figure or a manifest). Only those two parts of the pool go through the model;
        the rest (the retain set, most of it) shapes only the shadows' fits."""
        used = np.concatenate([self.positives, self.negatives])
        phi = scaled_confidence(predict_logits(model, self.pool.subset(used)), self.pool.labels[used])
        scores = scores_from_fits(phi, tuple(f[used] for f in self.fits), online)
        positive, negative = scores[: len(self.positives)], scores[len(self.positives):]
        return {**attack_summary(positive, negative), "scores": positive}

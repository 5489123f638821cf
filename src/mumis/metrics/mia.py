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

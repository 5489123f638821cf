"""Representation check: does a model's penultimate layer still encode what was forgotten?"""
from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from mumis.data import ImageDataset, iter_batches
from mumis.models.head import capture_features
from mumis.runtime import borrowed, device


@torch.no_grad()
def penultimate_features(model: nn.Module, data: ImageDataset, batch_size: int = 512) -> np.ndarray:
    """φ(x) for every sample: the input of the model's linear classifier head (eval mode), as float64 (N × d)."""
    dev = device()
    with borrowed(model, dev), capture_features(model, data.batch(torch.arange(1))[0].to(dev)) as captured:
        for x, _ in iter_batches(data, batch_size):
            model(x.to(dev))
    return torch.cat(captured).double().cpu().numpy()


def linear_probe_accuracy(model: nn.Module, fit_on: ImageDataset, evaluate_on: ImageDataset, seed: int = 0) -> float:
    """Accuracy (%) of a linear probe on the model's penultimate features:

        probe = argmin_{W,b} mean_{(x,y) ∈ fit_on} CE(W φ̂(x) + b, y) + ‖W‖²/(2C·n),   C = 1 (scikit-learn's default),
        acc   = 100 · mean_{(x,y) ∈ evaluate_on} 1[argmax_k (W φ̂(x) + b)_k = y],

    φ̂ = φ standardised with ``fit_on``'s mean and deviation. The model's own head is not used: the probe asks
    whether the features still separate the classes, whatever the head now says. Fit it on data that holds every
    class the evaluation set has (for a class request, not the retain set, which lacks the forgotten class; the
    held-out split does)."""
    scaler = StandardScaler().fit(penultimate_features(model, fit_on))
    probe = LogisticRegression(max_iter=2000, random_state=seed)
    probe.fit(scaler.transform(penultimate_features(model, fit_on)), fit_on.labels.numpy())
    predicted = probe.predict(scaler.transform(penultimate_features(model, evaluate_on)))
    return 100.0 * float((predicted == evaluate_on.labels.numpy()).mean())

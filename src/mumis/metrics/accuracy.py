"""Accuracy and softmax outputs of a classifier on an :class:`~mumis.data.ImageDataset`."""
from __future__ import annotations

import torch
from torch import nn

from mumis.data import ImageDataset, iter_batches
from mumis.runtime import borrowed, device


@torch.no_grad()
def predict_logits(model: nn.Module, data: ImageDataset, batch_size: int = 512) -> torch.Tensor:
    """Logits for every sample (model in eval mode, no augmentation), on the CPU. The model is handed back on its own
    device and in its own train/eval mode."""
    dev = device()
    with borrowed(model, dev):
        outs = [model(x.to(dev)).float().cpu() for x, _ in iter_batches(data, batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, data.num_classes)


def accuracy(model: nn.Module, data: ImageDataset | None, batch_size: int = 512) -> float:
    """Top-1 accuracy in percent: 100 · (1/N) Σ_i 1[argmax_k f_k(x_i) = y_i]. NaN for an empty or missing set."""
    if data is None or len(data) == 0:
        return float("nan")
    logits = predict_logits(model, data, batch_size)
    return 100.0 * (logits.argmax(1) == data.labels).float().mean().item()

"""Accuracy and softmax outputs of a classifier on an :class:`~mumis.data.ImageDataset`."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from mumis.data import ImageDataset, iter_batches
from mumis.runtime import borrowed, device


# Inference batches: on a CPU 128 kept activations in cache (small_cnn and resnet_small on 4,000 MNIST digits: 0.6–0.9
# s against 1.1–1.5 s at 512); an accelerator wants large batches.
CPU_BATCH, ACCELERATOR_BATCH = 128, 512


@torch.no_grad()
def predict_logits(model: nn.Module, data: ImageDataset, batch_size: Optional[int] = None,
                   memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """Logits for every sample (model in eval mode, no augmentation), on the CPU. The model is handed back on its own
    device and in its own train/eval mode. ``batch_size``: by default 128 on a CPU and 512 on an accelerator;
    ``memory_format``: the layout image batches (N, C, H, W) are fed in (the model's weights are left as
    they are)."""
    dev = device()
    batch_size = batch_size or (CPU_BATCH if dev.type == "cpu" else ACCELERATOR_BATCH)
    layout = {"memory_format": memory_format} if data.images.dim() == 4 else {}
    with borrowed(model, dev):
        outs = [model(x.to(dev, **layout)).float().cpu() for x, _ in iter_batches(data, batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, data.num_classes)


def accuracy(model: nn.Module, data: ImageDataset | None, batch_size: Optional[int] = None) -> float:
    """Top-1 accuracy in percent: 100 · (1/N) Σ_i 1[argmax_k f_k(x_i) = y_i]. NaN for an empty or missing set."""
    if data is None or len(data) == 0:
        return float("nan")
    logits = predict_logits(model, data, batch_size)
    return 100.0 * (logits.argmax(1) == data.labels).float().mean().item()

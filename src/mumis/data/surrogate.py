"""Surrogate data: images from *another* dataset, reshaped to look like a task's inputs (SCAR's out-of-distribution
data). It is never the retain set: it comes from a different source, chosen explicitly by the user."""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from mumis.data.dataset import ImageDataset


def as_surrogate(source: ImageDataset, like: ImageDataset, size: int, seed: int = 0) -> ImageDataset:
    """``size`` images drawn from ``source`` (without replacement, from ``seed``), resized to ``like``'s height and
    width, converted to its channel count (grey ↔ RGB) and normalised with its statistics. Labels are unknown and
    set to −1: a method that needs labels for them must take them from the model."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(source), generator=generator)[: min(size, len(source))]
    images = source.images[index].float()
    c, h, w = like.images.shape[1:]
    if images.shape[2:] != (h, w):
        images = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False)
    if images.shape[1] != c:  # via grey: RGB → grey, or grey replicated into every channel
        images = images.mean(1, keepdim=True).expand(-1, c, -1, -1)
    images = images.round().clamp(0, 255).to(torch.uint8).contiguous()
    return replace(like, images=images, labels=torch.full((len(images),), -1, dtype=torch.long), fine_labels=None)

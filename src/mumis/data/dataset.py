"""In-memory image datasets: all the data this toolkit needs fits in RAM, so batches are tensor slices."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Optional, Sequence

import numpy as np
import torch


@dataclass(frozen=True)
class ImageDataset(torch.utils.data.Dataset):
    """Images (N×C×H×W) with labels. uint8 images come out normalised with ``mean``/``std``; floating-point images
    are taken as already prepared model inputs and come out unchanged (how a user's own tensors enter, see
    :func:`mumis.unlearn`).

    ``fine_labels`` is set for datasets with a class hierarchy (CIFAR-20 keeps the CIFAR-100 fine label),
    so sub-class forget sets can be built. Models always see normalised inputs, and MU-Mis takes its
    input gradients with respect to that normalised tensor.
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fine_labels: Optional[torch.Tensor] = None
    fine_classes: Optional[tuple[str, ...]] = None

    def __post_init__(self):
        if self.images.dim() != 4 or not (self.images.dtype == torch.uint8 or self.images.is_floating_point()):
            raise ValueError("ImageDataset.images must be a uint8 or floating-point tensor shaped N×C×H×W")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index):
        x, y = self.batch(torch.as_tensor([index]))
        return x[0], y[0]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return self.images.shape[1]

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        if images.is_floating_point():
            return images.float()
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return (images.float() / 255.0 - mean) / std

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float inputs and labels for the given positions."""
        return self.normalise(self.images[index]), self.labels[index]

    def subset(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> "ImageDataset":
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64))
        fine = None if self.fine_labels is None else self.fine_labels[idx]
        return replace(self, images=self.images[idx], labels=self.labels[idx], fine_labels=fine)

    def to(self, device: torch.device) -> "ImageDataset":
        """The same dataset held on ``device`` (batches are then sliced there, with no host-to-device copy)."""
        fine = None if self.fine_labels is None else self.fine_labels.to(device)
        return replace(self, images=self.images.to(device), labels=self.labels.to(device), fine_labels=fine)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch(torch.arange(len(self)))

    def with_labels(self, labels: torch.Tensor) -> "ImageDataset":
        """The same images under other labels (random relabelling, per-sample flags)."""
        return replace(self, labels=torch.as_tensor(labels, dtype=torch.long), fine_labels=None)


def concat_datasets(*parts: ImageDataset) -> ImageDataset:
    """One dataset holding the samples of ``parts`` in order (same image shape and normalisation)."""
    first = parts[0]
    if any(p.images.shape[1:] != first.images.shape[1:] or p.mean != first.mean for p in parts):
        raise ValueError("concat_datasets needs parts with the same image shape and normalisation")
    return replace(first, images=torch.cat([p.images for p in parts]), labels=torch.cat([p.labels for p in parts]),
                   fine_labels=None)


def iter_batches(
    data: ImageDataset, batch_size: int, shuffle: bool = False, generator: Optional[torch.Generator] = None,
    with_index: bool = False,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield (x, y) CPU batches — (x, y, positions) with ``with_index`` — in an order drawn from ``generator``,
    so runs repeat exactly."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        yield (*data.batch(index), index) if with_index else data.batch(index)


def iter_rank_batches(data: ImageDataset, batch_size: int, seed: int, epoch: int, rank: int, world_size: int
                      ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's (x, y) batches of one epoch under data-parallel training: :class:`DistributedSampler` draws one
    permutation per (seed, epoch), the same on every rank, and hands each rank every ``world_size``-th sample
    (padding with repeats so all ranks take the same number of steps)."""
    sampler = torch.utils.data.DistributedSampler(range(len(data)), num_replicas=world_size, rank=rank, shuffle=True,
                                                  seed=seed)
    sampler.set_epoch(epoch)
    order = torch.tensor(list(sampler), dtype=torch.long)
    for start in range(0, len(order), batch_size):
        yield data.batch(order[start : start + batch_size])


@dataclass(frozen=True)
class DatasetBundle:
    """What a dataset loader returns: the training pool and, where the dataset has one, its official test set."""

    name: str
    train: ImageDataset
    test: Optional[ImageDataset]

    def fingerprint(self) -> str:
        """SHA-256 of the sizes and labels: a split made for one version of the data refuses another."""
        import hashlib

        h = hashlib.sha256()
        for part in (self.train, self.test):
            if part is None:
                h.update(b"none")
                continue
            h.update(str(tuple(part.images.shape)).encode())
            h.update(part.labels.numpy().astype(np.int64).tobytes())
        return h.hexdigest()

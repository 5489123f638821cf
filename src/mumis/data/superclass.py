"""Super-class views: the same images labelled by a coarser class, the original label kept as the fine one.

Sub-class forgetting (the paper's CIFAR-20 task) removes one fine class while its super-class stays a training
label: a retrained model still calls much of the forgotten fine class by its super-class name. CIFAR-20 has its
official grouping; for the datasets reachable without a download we document our own:

- ``fashion_mnist_super``: tops = {T-shirt/top, Pullover, Coat, Shirt}, footwear = {Sandal, Sneaker, Ankle boot},
  other = {Trouser, Dress, Bag} (garment function; e.g. forget Sneaker inside footwear).
- ``mnist5k_super``: round = {0, 6, 8, 9} (a closed loop at the bottom), straight = {1, 4, 7} (straight strokes),
  curved = {2, 3, 5} (open curves) — a shape grouping; e.g. forget 3 inside curved.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from mumis.data.dataset import DatasetBundle, ImageDataset
from mumis.data.registry import load_dataset, register_dataset

FASHION_SUPERCLASSES = {"tops": (0, 2, 4, 6), "footwear": (5, 7, 9), "other": (1, 3, 8)}
MNIST_SUPERCLASSES = {"round": (0, 6, 8, 9), "straight": (1, 4, 7), "curved": (2, 3, 5)}

# The super-class view of each flat dataset: what a sub-class task on that dataset trains on.
SUPERCLASS_VIEWS = {"fashion_mnist": "fashion_mnist_super", "mnist5k": "mnist5k_super", "cifar100": "cifar20"}


def superclass_view(dataset: str) -> str:
    """The dataset a sub-class task on ``dataset`` uses: itself when it already has fine labels' parents."""
    return SUPERCLASS_VIEWS.get(dataset, dataset)


def coarsen(data: ImageDataset, groups: dict[str, tuple[int, ...]]) -> ImageDataset:
    """Relabel ``data`` by ``groups`` (name → fine classes); every fine class must be in exactly one group."""
    members = sorted(c for g in groups.values() for c in g)
    if members != list(range(data.num_classes)):
        raise ValueError(f"the groups must cover classes 0..{data.num_classes - 1} exactly once, got {members}")
    to_coarse = torch.empty(data.num_classes, dtype=torch.long)
    for k, fine in enumerate(groups.values()):
        to_coarse[list(fine)] = k
    return replace(data, labels=to_coarse[data.labels], classes=tuple(groups), fine_labels=data.labels.clone(),
                   fine_classes=data.classes)


def _coarsened(name: str, source: str, groups: dict, data_dir: Optional[Path], verify: bool) -> DatasetBundle:
    flat = load_dataset(source, data_dir, verify)
    test = None if flat.test is None else coarsen(flat.test, groups)
    return DatasetBundle(name, coarsen(flat.train, groups), test)


@register_dataset("fashion_mnist_super")
def fashion_mnist_super(data_dir: Optional[Path], verify: bool) -> DatasetBundle:
    """Fashion-MNIST labelled tops / footwear / other; the ten garment classes are the fine labels."""
    return _coarsened("fashion_mnist_super", "fashion_mnist", FASHION_SUPERCLASSES, data_dir, verify)


@register_dataset("mnist5k_super")
def mnist5k_super(data_dir: Optional[Path], verify: bool) -> DatasetBundle:
    """mnist5k labelled round / straight / curved; the ten digits are the fine labels."""
    return _coarsened("mnist5k_super", "mnist5k", MNIST_SUPERCLASSES, data_dir, verify)

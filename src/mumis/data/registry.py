"""Datasets by name: ``@register_dataset("name")`` on a loader, ``load_dataset("name")`` to get it."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from mumis.data.dataset import DatasetBundle
from mumis.registry import Registry

Loader = Callable[[Optional[Path], bool], DatasetBundle]
_LOADERS: Registry[Loader] = Registry("dataset")


def register_dataset(name: str):
    def decorate(loader: Loader) -> Loader:
        return _LOADERS.add(name, loader)

    return decorate


def list_datasets() -> list[str]:
    return _LOADERS.names()


def load_dataset(name: str, data_dir: str | Path | None = None, verify: bool = True) -> DatasetBundle:
    """Load a registered dataset. ``data_dir`` is where user-supplied files live (CIFAR, SVHN, Fashion-MNIST).

    ``verify`` checks the official files' MD5 sums where the dataset publishes them. Nothing is ever
    downloaded: a missing file raises :class:`MumisError` saying where to put it.
    """
    loader = _LOADERS.get(name)
    return loader(Path(data_dir) if data_dir else None, verify)

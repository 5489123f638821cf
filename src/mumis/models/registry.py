"""Models by name: ``@register_model`` on a factory, ``create_model(name, num_classes, in_channels)`` to build one."""
from __future__ import annotations

from typing import Callable

from torch import nn

from mumis.errors import MumisError
from mumis.registry import Registry

_FACTORIES: Registry[Callable[..., nn.Module]] = Registry("model")


def register_model(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a factory ``(num_classes, in_channels) -> nn.Module`` under its function name."""
    return _FACTORIES.add(factory.__name__, factory)


def list_models() -> list[str]:
    return _FACTORIES.names()


def create_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """Build a registered architecture with freshly initialised weights (seed torch first for repeatability)."""
    factory = _FACTORIES.get(name)
    if num_classes < 2:
        raise MumisError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
    return factory(num_classes=num_classes, in_channels=in_channels)

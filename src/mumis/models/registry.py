"""Models by name: ``@register_model`` on a factory, ``create_model(name, num_classes, in_channels)`` to build one."""
from __future__ import annotations

from typing import Callable

from torch import nn

from mumis.errors import MumisError

_FACTORIES: dict[str, Callable[..., nn.Module]] = {}


def register_model(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a factory ``(num_classes, in_channels) -> nn.Module`` under its function name."""
    if factory.__name__ in _FACTORIES:
        raise ValueError(f"model {factory.__name__!r} is registered twice")
    _FACTORIES[factory.__name__] = factory
    return factory


def list_models() -> list[str]:
    return sorted(_FACTORIES)


def create_model(name: str, num_classes: int, in_channels: int = 3) -> nn.Module:
    """Build a registered architecture with freshly initialised weights (seed torch first for repeatability)."""
    if name not in _FACTORIES:
        raise MumisError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    if num_classes < 2:
        raise MumisError(f"a classifier needs at least 2 classes, got num_classes={num_classes}")
    return _FACTORIES[name](num_classes=num_classes, in_channels=in_channels)

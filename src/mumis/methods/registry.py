"""Methods by name: ``@register`` on the class, ``get_method(name, **options)`` to build one."""
from __future__ import annotations

from mumis.errors import MumisError
from mumis.methods.base import UnlearningMethod

_METHODS: dict[str, type[UnlearningMethod]] = {}


def register(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    if cls.name in _METHODS:
        raise ValueError(f"method {cls.name!r} is registered twice")
    _METHODS[cls.name] = cls
    return cls


def list_methods() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str, **options) -> UnlearningMethod:
    if name not in _METHODS:
        raise MumisError(f"unknown method {name!r}; choose one of: {', '.join(list_methods())}")
    return _METHODS[name](**options)

"""Methods by name: ``@register`` on the class, ``get_method(name, **options)`` to build one."""
from __future__ import annotations

from mumis.methods.base import UnlearningMethod
from mumis.registry import Registry

_METHODS: Registry[type[UnlearningMethod]] = Registry("method")


def register(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    return _METHODS.add(cls.name, cls)


def list_methods() -> list[str]:
    return _METHODS.names()


def get_method(name: str, **options) -> UnlearningMethod:
    return _METHODS.get(name)(**options)

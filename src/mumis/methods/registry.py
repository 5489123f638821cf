"""Methods by name: ``@register`` on the class, ``get_method(name, **options)`` to build one."""
from __future__ import annotations

from dataclasses import fields

from mumis.methods.base import UnlearningMethod
from mumis.registry import Registry

_METHODS: Registry[type[UnlearningMethod]] = Registry("method")


def register(cls: type[UnlearningMethod]) -> type[UnlearningMethod]:
    return _METHODS.add(cls.name, cls)


def list_methods() -> list[str]:
    return _METHODS.names()


def get_method(name: str, **options) -> UnlearningMethod:
    return _METHODS.get(name)(**options)


def method_options(name: str) -> frozenset[str]:
    """The option names a method accepts (the fields of its Config dataclass)."""
    return frozenset(f.name for f in fields(_METHODS.get(name).Config))


def quiet_method(name: str, **options) -> UnlearningMethod:
    """``get_method`` with progress bars off, for methods that have them."""
    extra = {"show_progress": False} if "show_progress" in method_options(name) else {}
    return get_method(name, **options, **extra)

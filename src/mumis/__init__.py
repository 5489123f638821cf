"""mumis: machine unlearning without the remaining data. ``mumis.unlearn(model, forget)`` is the entry point.

The entry point is imported on first use, so ``mumis --help`` and other light commands start without loading torch."""
__version__ = "0.1.0"

__all__ = ["UnlearnResult", "__version__", "unlearn"]


def __getattr__(name: str):
    if name in ("unlearn", "UnlearnResult"):
        from mumis import api

        return getattr(api, name)
    raise AttributeError(f"module 'mumis' has no attribute {name!r}")

"""mumis: machine unlearning without the remaining data. ``mumis.unlearn(model, forget)`` is the entry point."""
__version__ = "0.1.0"

from mumis.api import UnlearnResult, unlearn  # noqa: E402

__all__ = ["UnlearnResult", "__version__", "unlearn"]

"""Device, precision and seeding: decided here and nowhere else.

Every module asks :func:`device` for where tensors live instead of calling ``.cuda()``; tests and the CLI
can pin the choice with ``MUMIS_DEVICE=cpu``. Precision is float32 throughout: MU-Mis differentiates
through an input gradient (double backprop), where half precision loses the small second-order terms.
"""
from __future__ import annotations

import os
import random
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

DTYPE = torch.float32


def device() -> torch.device:
    """The one device every computation uses (``MUMIS_DEVICE`` overrides the automatic choice)."""
    choice = os.environ.get("MUMIS_DEVICE")
    if choice:
        return torch.device(choice)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@contextmanager
def double_backprop_kernels():
    """Kernels that can be differentiated twice. PyTorch's fused attention kernels (flash / memory-efficient SDPA)
    have no double backward, so MU-Mis on an attention model (ViT-style) runs attention in the reference "math"
    implementation inside this block; other layers are unaffected."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([SDPBackend.MATH]):
        yield


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for data order (kept apart from model init)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # Deterministic kernels where they exist; warn (not fail) on the few CUDA ops that have none.
    torch.use_deterministic_algorithms(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def reset_peak_memory() -> None:
    """Start a new peak-memory window (CUDA only: a process's peak resident set size cannot be reset)."""
    if device().type == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_memory_mb() -> float:
    """Peak memory since :func:`reset_peak_memory`: the CUDA allocator's peak on a GPU; on the CPU, the
    process's peak resident set size so far (an upper bound for the phase just measured)."""
    if device().type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


@dataclass
class Stopwatch:
    seconds: float = 0.0


@contextmanager
def stopwatch():
    """``with stopwatch() as sw: ...`` then ``sw.seconds``; synchronises CUDA so GPU time is counted."""
    sw = Stopwatch()
    if device().type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    try:
        yield sw
    finally:
        if device().type == "cuda":
            torch.cuda.synchronize()
        sw.seconds = time.perf_counter() - start


def versions() -> dict[str, str]:
    """Library versions recorded in every result row."""
    import sklearn

    from mumis import __version__

    return {
        "mumis": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "python": sys.version.split()[0],
    }

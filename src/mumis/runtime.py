"""Device, precision, memory layout and seeding: decided here and nowhere else.

Every module asks :func:`device` for where tensors live instead of calling ``.cuda()``; tests and the CLI
can pin the choice with ``MUMIS_DEVICE=cpu``. Training may take the GPU fast path (:func:`fast_path`: autocast,
channels_last, data held on the device, ``torch.compile``); MU-Mis and every metric stay float32 in the
contiguous layout (:data:`DOUBLE_BACKPROP_LAYOUT`): MU-Mis differentiates through an input gradient (double
backprop), where half precision loses the small second-order terms.
"""
from __future__ import annotations

import os
import random
import resource
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

DTYPE = torch.float32
# MU-Mis's double backward runs in this layout and in float32. benchmarks/scaling.py, 2-core CPU, batch 64:
# channels_last took 1.09–1.20× the contiguous step; bf16 autocast took 0.52–1.23× the float32 step but moved the
# weight gradient by 4.6–9.6 % (relative L2) — too much for steps sized by the objective's curvature. On an H100 the
# same: channels_last 1.03–1.09×, bf16 0.45–0.70× with 4.8–8.1 % gradient error (resnet_small, ResNet-18).
DOUBLE_BACKPROP_LAYOUT = torch.contiguous_format
_ON_DEVICE_MAX_BYTES = 2 * 2**30  # datasets up to this size live on the GPU for the whole run (as airbench does)
_COMPILE_MIN_STEPS = 2000  # below this, compiling costs more than it saves


@dataclass(frozen=True)
class FastPath:
    """How the training loop runs on this device. Each switch has an environment override, ``MUMIS_AMP``
    (off|bf16|fp16), ``MUMIS_CHANNELS_LAST`` (0|1), ``MUMIS_COMPILE`` (off|auto|a torch.compile backend, e.g.
    inductor), ``MUMIS_DATA_ON_DEVICE`` (0|1); unset means the automatic choice: everything on for a GPU,
    everything off for a CPU, where each of these paths still runs, only more slowly."""

    amp: str = "off"
    channels_last: bool = False
    compile: str = "off"  # "off", "auto" (compile long runs only) or a backend name
    data_on_device: bool = False

    @property
    def amp_dtype(self) -> Optional[torch.dtype]:
        return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.amp]

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def compile_backend(self, total_steps: int) -> Optional[str]:
        """The torch.compile backend for a run of ``total_steps``, or None to run eagerly."""
        if self.compile == "off" or (self.compile == "auto" and total_steps < _COMPILE_MIN_STEPS):
            return None
        return "inductor" if self.compile == "auto" else self.compile

    def keep_on_device(self, nbytes: int) -> bool:
        return self.data_on_device and nbytes <= _ON_DEVICE_MAX_BYTES


def _flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    if value not in ("0", "1"):
        raise ValueError(f"{name}={value!r}: use 0 or 1")
    return value == "1"


def fast_path() -> FastPath:
    """The training fast path for :func:`device` (see :class:`FastPath`)."""
    gpu = device().type == "cuda"
    amp = os.environ.get("MUMIS_AMP") or (("bf16" if torch.cuda.is_bf16_supported() else "fp16") if gpu else "off")
    if amp not in ("off", "bf16", "fp16"):
        raise ValueError(f"MUMIS_AMP={amp!r}: use off, bf16 or fp16")
    return FastPath(amp=amp, channels_last=_flag("MUMIS_CHANNELS_LAST", gpu),
                    compile=os.environ.get("MUMIS_COMPILE") or ("auto" if gpu else "off"),
                    data_on_device=_flag("MUMIS_DATA_ON_DEVICE", gpu))


def device() -> torch.device:
    """The one device every computation uses (``MUMIS_DEVICE`` overrides the automatic choice)."""
    choice = os.environ.get("MUMIS_DEVICE")
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():  # under torchrun each process drives the GPU of its local rank (LOCAL_RANK)
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


@contextmanager
def double_backprop_kernels():
    """Kernels for MU-Mis's double backward, decided here for every caller.

    * Attention: PyTorch's fused kernels (flash / memory-efficient SDPA) have no double backward, so attention runs
      in the reference "math" implementation inside this block; other layers are unaffected.
    * Precision: true float32. On Ampere and later GPUs PyTorch lets convolutions (and, if a user enabled it,
      matrix products) run in TF32, which keeps 10 mantissa bits; the bf16 measurement above (8 bits: 4.6–9.6 %
      gradient error) says the second-order terms need more, so TF32 is switched off for the block and restored
      after it (training keeps its own setting). A no-op on the CPU. ``MUMIS_DOUBLE_BACKPROP_TF32=1`` keeps TF32
      on instead: on an H100 (benchmarks/scaling.py, batch 64, paper objective) the step took 0.43× (ResNet-18)
      and 0.61× (resnet_small) of the float32 step, and moved the weight gradient by 2.3 % and 1.1 % (relative L2)
      — a speed a user may choose, not a default: no unlearning result has been measured with it.
    """
    from torch.nn.attention import SDPBackend, sdpa_kernel

    tf32 = _flag("MUMIS_DOUBLE_BACKPROP_TF32", False)  # read before anything changes, so a bad value changes nothing
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def cache_root() -> Path:
    """Where mumis keeps what it makes once and reuses (reference models, splits, pretrained backbones):
    ``$MUMIS_CACHE``, default ``~/.cache/mumis``."""
    return Path(os.environ.get("MUMIS_CACHE", Path.home() / ".cache" / "mumis"))


def set_deterministic(mode: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms(mode, warn_only=...)`` without its first-call import of
    ``torch._inductor`` (1.7 s on a 2-core CPU, a sixth of a sample request) just to copy the flag into inductor's
    config, which only ``torch.compile`` reads: mumis compiles nothing. Once inductor is loaded (the caller compiles),
    the public call keeps its config in step."""
    if "torch._inductor.config" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
    else:
        torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator for data order (kept apart from model init)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    # Deterministic kernels where they exist; warn (not fail) on the few CUDA ops that have none.
    set_deterministic(True, warn_only=True)
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.benchmark = False
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


@contextmanager
def isolated_global_state():
    """Within the block, seed and switch freely; on the way out the process's Python, NumPy and torch (CPU and CUDA)
    random states, the deterministic-algorithms flag and cuDNN's benchmark flag are what they were. A library call
    that seeds for reproducibility wraps itself in this, so the caller's random streams and flags never change."""
    saved_random, saved_numpy, saved_torch = random.getstate(), np.random.get_state(), torch.get_rng_state()
    saved_cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        random.setstate(saved_random)
        np.random.set_state(saved_numpy)
        torch.set_rng_state(saved_torch)
        if saved_cuda is not None:
            torch.cuda.set_rng_state_all(saved_cuda)
        set_deterministic(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark


@contextmanager
def borrowed(model: torch.nn.Module, to: Optional[torch.device] = None):
    """Use ``model`` on ``to`` (default: the run's device) in eval mode; hand it back on its own device and in its
    own train/eval mode. For reading a caller's model without moving or switching it."""
    param = next(iter(model.parameters()), None)
    home = param.device if param is not None else None
    was_training = model.training
    model.to(to or device()).eval()
    try:
        yield model
    finally:
        if home is not None:
            model.to(home)
        model.train(was_training)


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
    """Library versions recorded in every result row, and the device the row ran on (its wall time and peak memory
    mean nothing without it; a CUDA build of torch alone does not say whether a GPU was used)."""
    import sklearn

    from mumis import __version__

    return {
        "mumis": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "python": sys.version.split()[0],
        "device": device_name(),
    }


def device_name() -> str:
    """``cpu`` or the GPU's name: what result rows and checkpoint sidecars record as where they were computed."""
    dev = device()
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else dev.type

"""Data-parallel training under ``torchrun``: the process group, this process's rank, and who writes files.

``torchrun --nproc-per-node N`` starts N copies of a command and sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; everything here reads those and nothing else, so a plain ``python``/``mumis`` run is a world of
one and takes none of these paths. The backend follows the device: NCCL on GPUs, gloo on CPUs (what the tests use).
"""
from __future__ import annotations

import gc
import os
from contextlib import contextmanager

import torch
import torch.distributed as dist


def world_size() -> int:
    """How many processes train together (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's index on its node: which GPU it drives."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0 alone writes checkpoints, prints and draws progress bars."""
    return rank() == 0


def active() -> bool:
    """A process group with more than one member is up: the training loop shards data and syncs gradients."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextmanager
def process_group():
    """Join the torchrun job for the duration of the block (a no-op for a single process)."""
    if world_size() == 1 or (dist.is_available() and dist.is_initialized()):
        yield
        return
    from mumis.runtime import device  # runtime imports nothing of this module: no cycle

    backend = "nccl" if device().type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device())
    dist.init_process_group(backend=backend)
    try:
        yield
        dist.barrier()  # nobody leaves (and tears the group down) while rank 0 still writes
    finally:
        # DistributedDataParallel sits in a reference cycle and its reducer holds the group: left to the collector, it
        # can be freed during interpreter shutdown, where gloo's teardown aborts the process (SIGABRT after a
        # finished run). Collect it now, while the interpreter is whole, so the group dies here.
        gc.collect()
        dist.destroy_process_group()

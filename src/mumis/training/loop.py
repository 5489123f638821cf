"""The one training loop. Pre-training, the retrain reference and every fine-tuning method call :func:`fit`."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from mumis import distributed
from mumis.data import ImageDataset, iter_batches, iter_rank_batches
from mumis.errors import MumisError
from mumis.progress import progress_bar
from mumis.runtime import DOUBLE_BACKPROP_LAYOUT, device, fast_path, isolated_global_state, seed_everything, stopwatch
from mumis.training.recipe import TrainRecipe

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


@dataclass
class FitReport:
    wall_s: float
    steps: int
    final_loss: float


def _optimizer(recipe: TrainRecipe, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; use 'sgd' or 'adam'")


def _epoch_batches(data: ImageDataset, batch_size: int, seed: int, generator: torch.Generator):
    """A function epoch -> batches: the whole shuffled set in one process, this rank's shard under torchrun
    (the global batch stays ``batch_size``: each of the N ranks takes ``batch_size / N``)."""
    if not distributed.active():
        return math.ceil(len(data) / batch_size), lambda epoch: iter_batches(data, batch_size, shuffle=True, generator=generator)
    world = distributed.world_size()
    if batch_size % world:
        raise MumisError(f"batch size {batch_size} does not split over {world} processes; use a multiple of {world}")
    per_rank = batch_size // world
    return (math.ceil(math.ceil(len(data) / world) / per_rank),
            lambda epoch: iter_rank_batches(data, per_rank, seed, epoch, distributed.rank(), world))


def fit(
    model: nn.Module,
    data: ImageDataset,
    recipe: TrainRecipe,
    seed: int = 0,
    loss_fn: LossFn = cross_entropy_loss,
    description: str = "train",
    show_progress: bool = True,
    on_step: Optional[Callable[[int, torch.optim.Optimizer], Optional[bool]]] = None,
    params: Optional[Iterable[nn.Parameter]] = None,
    freeze_norm: bool = False,
) -> FitReport:
    """Train ``model`` in place on ``data``; shuffling comes from ``seed`` so CPU runs repeat bit for bit.

    ``loss_fn(model, x, y)`` makes the loop reusable (cross-entropy for training, other objectives for
    fine-tuning methods); ``on_step(step, optimizer)`` runs after each optimiser step (e.g. to re-apply a
    weight mask) and ends training early by returning True; ``params`` limits what the optimiser moves
    (default: every parameter); ``freeze_norm`` keeps the model in eval mode, so BatchNorm statistics are not
    overwritten by the data of this loop.

    Under ``torchrun`` (see :mod:`mumis.distributed`) the same loop trains with DistributedDataParallel: each
    rank sees its shard of every epoch and gradients are averaged, so the result matches one process with the
    same global batch. On a GPU it takes the fast path of :func:`mumis.runtime.fast_path`.

    The loop seeds what it draws from ``seed``; the caller's random streams and deterministic flags are restored on
    the way out (:func:`mumis.runtime.isolated_global_state`).
    """
    with isolated_global_state():
        return _fit(model, data, recipe, seed, loss_fn, description, show_progress, on_step, params, freeze_norm)


def _fit(model, data, recipe, seed, loss_fn, description, show_progress, on_step, params, freeze_norm) -> FitReport:
    generator = seed_everything(seed)
    dev, fast = device(), fast_path()
    model.to(dev, memory_format=fast.memory_format).train(not freeze_norm)
    params = list(model.parameters()) if params is None else list(params)
    opt = _optimizer(recipe, params)
    if fast.keep_on_device(data.images.nbytes):
        data = data.to(dev)
    per_epoch, epoch_batches = _epoch_batches(data, recipe.batch_size, seed, generator)
    total = per_epoch * recipe.epochs
    warmup = int(recipe.warmup_epochs * per_epoch)
    net = DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None) if distributed.active() else model
    backend = fast.compile_backend(total)
    net = torch.compile(net, backend=backend) if backend else net
    scaler = torch.amp.GradScaler(dev.type, enabled=fast.amp == "fp16")  # bf16 needs no loss scaling
    step, last, stop = 0, float("nan"), False
    show_progress = show_progress and distributed.is_main()
    with stopwatch() as sw, progress_bar(description, total, show_progress) as advance:
        for epoch in range(recipe.epochs):
            for x, y in epoch_batches(epoch):
                for group in opt.param_groups:
                    group["lr"] = recipe.lr * recipe.lr_factor(step, total, warmup, per_epoch)
                x = x.to(dev, non_blocking=True, memory_format=fast.memory_format)
                with torch.autocast(dev.type, dtype=fast.amp_dtype, enabled=fast.amp_dtype is not None):
                    loss = loss_fn(net, x, y.to(dev, non_blocking=True))
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                stop = on_step is not None and bool(on_step(step, opt))
                step += 1
                last = loss.item()
                advance(f"epoch {epoch + 1}/{recipe.epochs} loss {last:.3f}")
                if stop:
                    break
            if stop:
                break
    model.to(memory_format=DOUBLE_BACKPROP_LAYOUT).eval()  # what every later consumer (metrics, MU-Mis) expects
    return FitReport(wall_s=sw.seconds, steps=step, final_loss=last)

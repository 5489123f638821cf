"""The one training loop. Pre-training, the retrain reference and every fine-tuning method call :func:`fit`."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mumis.data import ImageDataset, iter_batches
from mumis.progress import progress_bar
from mumis.runtime import device, seed_everything, stopwatch
from mumis.training.recipe import TrainRecipe

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


@dataclass
class FitReport:
    wall_s: float
    steps: int
    final_loss: float


def _lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    raise ValueError(f"unknown schedule {schedule!r}; use 'cosine' or 'constant'")


def _optimizer(recipe: TrainRecipe, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r}; use 'sgd' or 'adam'")


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
    """
    generator = seed_everything(seed)
    dev = device()
    model.to(dev).train(not freeze_norm)
    params = list(model.parameters()) if params is None else list(params)
    opt = _optimizer(recipe, params)
    per_epoch = math.ceil(len(data) / recipe.batch_size)
    total = per_epoch * recipe.epochs
    warmup = int(recipe.warmup_epochs * per_epoch)
    step, last, stop = 0, float("nan"), False
    with stopwatch() as sw, progress_bar(description, total, show_progress) as advance:
        for epoch in range(recipe.epochs):
            for x, y in iter_batches(data, recipe.batch_size, shuffle=True, generator=generator):
                for group in opt.param_groups:
                    group["lr"] = recipe.lr * _lr_factor(step, total, warmup, recipe.schedule)
                loss = loss_fn(model, x.to(dev), y.to(dev))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                stop = on_step is not None and bool(on_step(step, opt))
                step += 1
                last = loss.item()
                advance(f"epoch {epoch + 1}/{recipe.epochs} loss {last:.3f}")
                if stop:
                    break
            if stop:
                break
    model.eval()
    return FitReport(wall_s=sw.seconds, steps=step, final_loss=last)

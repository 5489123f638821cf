"""What the fine-tuning baselines share: their loop options, frozen teachers, re-initialisation, distillation.

Every baseline that trains calls :func:`mumis.training.fit` — the one loop of the toolkit — with a constant-lr
recipe built from its options (the baselines' official code uses a constant lr over their few epochs).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mumis.runtime import device
from mumis.training import TrainRecipe


@dataclass(frozen=True)
class LoopOptions:
    """Options of a baseline that fine-tunes; each method's Config subclasses this with its paper's defaults."""

    epochs: int = 10
    lr: float = 0.01
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    show_progress: bool = True

    def recipe(self, optimizer: str = "sgd", epochs: int | None = None, lr: float | None = None,
               batch_size: int | None = None) -> TrainRecipe:
        return TrainRecipe(
            epochs=self.epochs if epochs is None else epochs, batch_size=batch_size or self.batch_size,
            lr=self.lr if lr is None else lr, momentum=self.momentum, weight_decay=self.weight_decay,
            schedule="constant", warmup_epochs=0.0, optimizer=optimizer,
        )


def frozen_copy(model: nn.Module) -> nn.Module:
    """A teacher: an eval-mode copy whose weights never receive gradients."""
    teacher = copy.deepcopy(model).to(device()).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def reinitialise(model: nn.Module, seed: int) -> nn.Module:
    """Reset every layer that knows how (``reset_parameters``), from ``seed``: the architecture, untrained."""
    torch.manual_seed(seed)
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    for module in model.modules():  # BatchNorm running statistics back to their initial values too
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
    return model


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Batch mean of KL(p_teacher ‖ p_student) on temperature-softened softmaxes, times T² (Hinton et al.)."""
    log_p_student = F.log_softmax(student_logits / temperature, dim=1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1)
    return kl.mean() * temperature**2


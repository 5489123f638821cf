"""``scrub``: SCRUB (Kurmanji et al., NeurIPS'23) — alternate max-steps that push the student away from the original
(teacher) on D_f and min-steps that keep it close to the teacher and correct on D_r."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from mumis.methods.base import DataRole, GrantedData, MethodResult, Space, UnlearningMethod
from mumis.methods.common import LoopOptions, distillation_kl, frozen_copy
from mumis.methods.registry import register
from mumis.training import fit


@dataclass(frozen=True)
class ScrubConfig(LoopOptions):
    # meghdadk/SCRUB small-scale notebook: sgda_epochs 3, msteps 2, sgda_learning_rate 5e-4, SGD momentum 0.9,
    # weight decay 5e-4, kd_T 4, gamma 0.99 (CE weight), alpha 0.001 (KL weight), retain batch 128, forget batch 32.
    epochs: int = 3
    max_epochs: int = 2  # "msteps": the first epochs that start with a max-step pass over D_f
    lr: float = 5e-4
    forget_batch_size: int = 32
    temperature: float = 4.0
    gamma: float = 0.99
    alpha: float = 0.001


@register
class Scrub(UnlearningMethod):
    """Each epoch: (while epoch < ``max_epochs``) one pass over D_f maximising KL(teacher ‖ student), then one pass
    over D_r minimising γ CE + α KL(teacher ‖ student). Both passes are calls of the shared loop, so the SGD
    momentum restarts at each pass (the reference keeps one optimiser); its SWA smoothing is not used."""

    name = "scrub"
    search_space = {"lr": Space(5e-5, 5e-3, source="SCRUB small-scale notebook: sgda_learning_rate 5e-4"),
                    "epochs": Space(1, 6, log=False, integer=True, source="the same: sgda_epochs 3")}
    needs = frozenset({DataRole.FORGET, DataRole.RETAIN})
    Config = ScrubConfig

    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        cfg = self.config
        teacher = frozen_copy(model)
        T = cfg.temperature

        def max_loss(student, x, y):
            return -distillation_kl(student(x), teacher(x), T)

        def min_loss(student, x, y):
            logits = student(x)
            return cfg.gamma * F.cross_entropy(logits, y) + cfg.alpha * distillation_kl(logits, teacher(x), T)

        steps = 0
        for epoch in range(cfg.epochs):
            if epoch < cfg.max_epochs:
                steps += fit(model, data.forget, cfg.recipe(epochs=1, batch_size=cfg.forget_batch_size),
                             seed=cfg.seed + epoch, loss_fn=max_loss, description=f"SCRUB max {epoch + 1}",
                             show_progress=cfg.show_progress).steps
            steps += fit(model, data.retain, cfg.recipe(epochs=1), seed=cfg.seed + epoch, loss_fn=min_loss,
                         description=f"SCRUB min {epoch + 1}", show_progress=cfg.show_progress).steps
        return MethodResult(model=model.eval(), stop_reason="epochs", steps=steps)

"""``bad_teacher``: competent / incompetent teacher distillation (Chundawat et al., AAAI'23, "Can bad teaching
induce forgetting?")."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from mumis.data import concat_datasets
from mumis.methods.base import DataRole, GrantedData, MethodResult, Space, UnlearningMethod
from mumis.methods.common import LoopOptions, distillation_kl, frozen_copy, reinitialise
from mumis.methods.registry import register
from mumis.training import fit


@dataclass(frozen=True)
class BadTeacherConfig(LoopOptions):
    # vikram2000b/bad-teaching-unlearning (as run by the SSD code): 1 epoch, Adam lr 1e-4, batch 256, KL temperature 1,
    # 30 % of D_r mixed with all of D_f.
    epochs: int = 1
    lr: float = 1e-4
    batch_size: int = 256
    weight_decay: float = 0.0
    retain_fraction: float = 0.3
    temperature: float = 1.0


@register
class BadTeacher(UnlearningMethod):
    """The student (a copy of the model) matches the *incompetent* teacher — the same architecture at random
    initialisation — on D_f, and the *competent* teacher — the original model — on a random share of D_r."""

    name = "bad_teacher"
    search_space = {"lr": Space(1e-5, 1e-3, source="bad-teaching-unlearning: Adam lr 1e-4"),
                    "epochs": Space(1, 5, log=False, integer=True, source="the same: 1 epoch")}
    needs = frozenset({DataRole.FORGET, DataRole.RETAIN})
    Config = BadTeacherConfig

    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        cfg = self.config
        competent = frozen_copy(model)
        incompetent = frozen_copy(reinitialise(copy.deepcopy(model), cfg.seed + 1))
        generator = torch.Generator().manual_seed(cfg.seed)
        retain = data.retain
        keep = torch.randperm(len(retain), generator=generator)[: max(1, int(cfg.retain_fraction * len(retain)))]
        # the label is a flag here: 1 = forget sample (incompetent teacher), 0 = retain sample (competent teacher)
        mixed = concat_datasets(data.forget.with_labels(torch.ones(len(data.forget), dtype=torch.long)),
                                retain.subset(keep.sort().values).with_labels(torch.zeros(len(keep), dtype=torch.long)))

        def loss_fn(student, x, is_forget):
            with torch.no_grad():
                target = torch.where(is_forget.view(-1, 1).bool(), incompetent(x), competent(x))
            return distillation_kl(student(x), target, cfg.temperature)

        report = fit(model, mixed, cfg.recipe(optimizer="adam"), seed=cfg.seed, loss_fn=loss_fn,
                     description="bad teacher", show_progress=cfg.show_progress)
        return MethodResult(model=model.eval(), stop_reason="epochs", steps=report.steps)

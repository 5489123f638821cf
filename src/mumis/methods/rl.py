"""``rl``: random labels — relabel D_f with wrong classes and fine-tune on it together with D_r (Golatkar et al.;
the RL baseline of SalUn, Fan et al. ICLR'24)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from mumis.data import ImageDataset, concat_datasets
from mumis.methods.base import DataRole, GrantedData, MethodResult, Space, UnlearningMethod
from mumis.methods.common import LoopOptions
from mumis.methods.registry import register
from mumis.models import random_other_classes
from mumis.training import fit


def relabelled_union(forget: ImageDataset, retain: ImageDataset, num_classes: int, seed: int) -> ImageDataset:
    """D_f under one random wrong label per sample (drawn once), followed by D_r under its true labels."""
    wrong = random_other_classes(forget.labels, num_classes, torch.Generator().manual_seed(seed))
    return concat_datasets(forget.with_labels(wrong), retain)


@dataclass(frozen=True)
class RandomLabelConfig(LoopOptions):
    # Unlearn-Saliency Classification/README.md runs RL (SalUn's base) with ``--unlearn_epochs 10 --unlearn_lr 0.1``;
    # SGD momentum 0.9, weight decay 5e-4. Our choice where the code is not ours to copy: the wrong labels are drawn
    # from the K−1 other classes (never the true one) once, and D_f and D_r are shuffled into one set, as the
    # reference does for CIFAR-100 (for CIFAR-10 it alternates a D_f pass and a D_r pass).
    epochs: int = 10
    lr: float = 0.1


@register
class RandomLabel(UnlearningMethod):
    """Cross-entropy fine-tuning on (D_f with random wrong labels) ∪ D_r, through the shared loop."""

    name = "rl"
    search_space = {"lr": Space(1e-3, 1e-1, source="Unlearn-Saliency README: --unlearn_lr 0.1 (the top of the range)"),
                    "epochs": Space(1, 10, log=False, integer=True, source="Unlearn-Saliency README: 10 epochs")}
    needs = frozenset({DataRole.FORGET, DataRole.RETAIN})
    Config = RandomLabelConfig

    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        return self._fine_tune(model, data, num_classes)

    def _fine_tune(self, model: nn.Module, data: GrantedData, num_classes: int,
                   on_step: Optional[Callable] = None, info: Optional[dict] = None) -> MethodResult:
        cfg = self.config
        union = relabelled_union(data.forget, data.retain, num_classes, cfg.seed)
        report = fit(model, union, cfg.recipe(), seed=cfg.seed, description=self.name, show_progress=cfg.show_progress,
                     on_step=on_step)
        return MethodResult(model=model.eval(), stop_reason="epochs", steps=report.steps, info=info or {})

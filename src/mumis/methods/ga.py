"""``ga``: gradient ascent on the forget set (NegGrad; Thudi et al., Golatkar et al.)."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from mumis.methods.base import DataRole, GrantedData, MethodResult, Space, UnlearningMethod
from mumis.methods.common import LoopOptions
from mumis.methods.registry import register
from mumis.training import fit


def ascent_loss(model, x, y):
    return -F.cross_entropy(model(x), y)


@dataclass(frozen=True)
class GradientAscentConfig(LoopOptions):
    # Unlearn-Saliency Classification/README.md: ``--unlearn GA --unlearn_lr 0.0001 --unlearn_epochs 5``.
    epochs: int = 5
    lr: float = 1e-4


@register
class GradientAscent(UnlearningMethod):
    """Maximise the cross-entropy of D_f with the shared loop (train mode, as the reference code runs it).

    Its known failure mode is kept, not tuned away: the loss is unbounded, so with a larger step or more epochs
    the model collapses on every class. With the reference's lr 1e-4 on a small D_f it can instead barely move.
    """

    name = "ga"
    search_space = {"lr": Space(1e-5, 1e-3, source="Unlearn-Saliency README: --unlearn_lr 0.0001"),
                    "epochs": Space(1, 10, log=False, integer=True, source="Unlearn-Saliency README: 5 epochs")}
    needs = frozenset({DataRole.FORGET})
    Config = GradientAscentConfig

    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        cfg = self.config
        report = fit(model, data.forget, cfg.recipe(), seed=cfg.seed, loss_fn=ascent_loss, description="GA",
                     show_progress=cfg.show_progress)
        return MethodResult(model=model.eval(), stop_reason="epochs", steps=report.steps,
                            info={"final_loss": report.final_loss})

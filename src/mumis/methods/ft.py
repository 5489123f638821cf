"""``ft``: fine-tune on the retain set and rely on catastrophic forgetting of D_f (Golatkar et al. / Warnecke et al.)."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mumis.methods.base import DataRole, GrantedData, MethodResult, Space, UnlearningMethod
from mumis.methods.common import LoopOptions
from mumis.methods.registry import register
from mumis.training import fit


@dataclass(frozen=True)
class FineTuneConfig(LoopOptions):
    # OPTML-Group/Unlearn-Saliency Classification/README.md: ``--unlearn FT --unlearn_lr 0.01 --unlearn_epochs 10``;
    # SGD momentum 0.9, weight decay 5e-4 (its arg_parser). Batch 128 = the papers' table (the code's default is 256,
    # a difference its authors confirmed on the Unlearn-Sparse tracker).
    epochs: int = 10
    lr: float = 0.01


@register
class FineTune(UnlearningMethod):
    """Cross-entropy fine-tuning on D_r only; never reads D_f. Forgetting is whatever the retain data overwrites."""

    name = "ft"
    search_space = {"lr": Space(1e-3, 1e-1, source="Unlearn-Saliency README: --unlearn_lr 0.01"),
                    "epochs": Space(1, 10, log=False, integer=True, source="Unlearn-Saliency README: 10 epochs")}
    needs = frozenset({DataRole.RETAIN})
    Config = FineTuneConfig

    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        cfg = self.config
        report = fit(model, data.retain, cfg.recipe(), seed=cfg.seed, description="FT", show_progress=cfg.show_progress)
        return MethodResult(model=model.eval(), stop_reason="epochs", steps=report.steps)

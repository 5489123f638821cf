"""``l1_sparse``: fine-tuning on D_r with an ℓ1 penalty on the weights (Jia et al., "Model sparsity can simplify
machine unlearning", NeurIPS'23 — ``FT_prune`` in OPTML-Group/Unlearn-Sparse)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mumis.methods.base import DataRole, GrantedData, MethodResult, Space, UnlearningMethod
from mumis.methods.common import LoopOptions
from mumis.methods.registry import register
from mumis.training import fit


@dataclass(frozen=True)
class L1SparseConfig(LoopOptions):
    # Unlearn-Saliency / Unlearn-Sparse READMEs: ``--unlearn FT_prune --unlearn_lr 0.01 --unlearn_epochs 10
    # --alpha ${alpha}``; the READMEs leave α open. 5e-4 is our choice (the ℓ1 norm is summed over all weights, so
    # α scales with the model's size); the penalty decays linearly to 0 over the epochs as in the reference.
    epochs: int = 10
    lr: float = 0.01
    alpha: float = 5e-4


@register
class L1Sparse(UnlearningMethod):
    """Minimise CE(D_r) + α_e ‖w‖₁ with α_e = α (1 − e / E) in epoch e of E, through the shared loop."""

    name = "l1_sparse"
    search_space = {"lr": Space(1e-3, 1e-1, source="Unlearn-Sparse README: --unlearn_lr 0.01"),
                    "epochs": Space(1, 10, log=False, integer=True, source="Unlearn-Sparse README: 10 epochs"),
                    "alpha": Space(1e-5, 1e-2, source="the README leaves α open; ours: 5e-4")}
    needs = frozenset({DataRole.RETAIN})
    Config = L1SparseConfig

    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        cfg = self.config
        steps_per_epoch = math.ceil(len(data.retain) / cfg.batch_size)
        done = [0]

        def loss_fn(m, x, y):
            epoch = done[0] // steps_per_epoch
            alpha = cfg.alpha * (1.0 - epoch / cfg.epochs)
            l1 = torch.cat([p.abs().flatten() for p in m.parameters()]).sum()
            return F.cross_entropy(m(x), y) + alpha * l1

        def count(step, optimizer):
            done[0] = step + 1

        report = fit(model, data.retain, cfg.recipe(), seed=cfg.seed, loss_fn=loss_fn, on_step=count,
                     description="l1-sparse", show_progress=cfg.show_progress)
        return MethodResult(model=model.eval(), stop_reason="epochs", steps=report.steps)

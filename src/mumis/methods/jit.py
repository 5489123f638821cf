"""``jit``: JiT, zero-shot unlearning by Lipschitz smoothing around the forget samples (Foster et al., "Zero-shot
machine unlearning at scale via Lipschitz regularization")."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mumis.methods.base import DataRole, GrantedData, MethodResult, Space, UnlearningMethod
from mumis.methods.common import LoopOptions
from mumis.methods.registry import register
from mumis.training import fit


@dataclass(frozen=True)
class JiTConfig(LoopOptions):
    # jwf40/Information-Theoretic-Unlearning, VGG-16 settings: lr 3e-4, noise std ("lipschitz_weighting") 0.5,
    # 25 noise samples, plain SGD, one pass over D_f in batches of 128.
    epochs: int = 1
    lr: float = 3e-4
    momentum: float = 0.0
    weight_decay: float = 0.0
    noise_std: float = 0.5
    noise_samples: int = 25


def lipschitz_loss(model: nn.Module, x: torch.Tensor, noise_std: float, samples: int) -> torch.Tensor:
    """Σ_i mean_n ‖f(x_i) − f(x̃_i)‖ / ‖x_i − x̃_i‖ with x̃ = clamp(x + N(0, σ²), min x, max x); f(x̃) is a constant."""
    out = model(x)
    lo, hi = x.min(), x.max()
    total = out.new_zeros(())
    for _ in range(samples):
        noisy = torch.clamp(x + noise_std * torch.randn_like(x), lo, hi)
        with torch.no_grad():
            out_noisy = model(noisy)
        ratio = (out - out_noisy).flatten(1).norm(dim=1) / (x - noisy).flatten(1).norm(dim=1).clamp_min(1e-12)
        total = total + ratio.sum()
    return total / samples


@register
class JiT(UnlearningMethod):
    """Minimise the local Lipschitz estimate of the outputs at each x ∈ D_f, forget data only. BatchNorm statistics
    stay frozen (eval mode): the noisy inputs would otherwise overwrite them."""

    name = "jit"
    search_space = {"lr": Space(3e-5, 3e-3, source="Information-Theoretic-Unlearning (VGG-16): lr 3e-4"),
                    "noise_std": Space(0.05, 2.0, source="the same: lipschitz_weighting 0.5")}
    needs = frozenset({DataRole.FORGET})
    Config = JiTConfig

    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        cfg = self.config
        report = fit(model, data.forget, cfg.recipe(), seed=cfg.seed, freeze_norm=True, description="JiT",
                     loss_fn=lambda m, x, y: lipschitz_loss(m, x, cfg.noise_std, cfg.noise_samples),
                     show_progress=cfg.show_progress)
        return MethodResult(model=model.eval(), stop_reason="epochs", steps=report.steps)

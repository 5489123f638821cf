"""``ssd``: Selective Synaptic Dampening (Foster et al., AAAI'24) — shrink the weights far more important to D_f than
to the whole training set; no gradient step at all."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mumis.data import concat_datasets, iter_batches
from mumis.methods.base import DataRole, GrantedData, MethodResult, Space, UnlearningMethod
from mumis.methods.registry import register
from mumis.runtime import device


@dataclass(frozen=True)
class SSDConfig:
    # if-loops/selective-synaptic-dampening defaults for ResNet-18: selection weighting α = 10, dampening constant
    # λ = 1, exponent 1, updates bounded by 1 (weights only shrink).
    alpha: float = 10.0  # select weights with importance on D_f > α × importance on D
    dampening: float = 1.0  # λ: multiply a selected weight by min(λ · I_D / I_f, 1)
    batch_size: int = 128


def importances(model: nn.Module, data, batch_size: int) -> dict[str, torch.Tensor]:
    """Diagonal Fisher estimate per weight: the mean over mini-batches of (∂ CE(batch) / ∂w)²."""
    dev = device()
    out = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    batches = 0
    for x, y in iter_batches(data, batch_size):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x.to(dev)), y.to(dev)).backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                out[n] += p.grad.detach() ** 2
        batches += 1
    model.zero_grad(set_to_none=True)
    return {n: v / max(1, batches) for n, v in out.items()}


@register
class SSD(UnlearningMethod):
    """Importances on D_f and on the full training set D = D_r ∪ D_f (so it needs D_r); then, for weights with
    I_f > α I_D, w ← w · min(λ I_D / I_f, 1). Model in eval mode throughout.

    Its known failure mode is kept: applied in sequence, the multiplicative dampening compounds and utility decays.
    """

    name = "ssd"
    search_space = {"alpha": Space(0.1, 100.0, source="Foster et al. (ResNet-18): α = 10"),
                    "dampening": Space(0.1, 10.0, source="Foster et al.: λ = 1")}
    needs = frozenset({DataRole.FORGET, DataRole.RETAIN})
    Config = SSDConfig

    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        cfg = self.config
        model.to(device()).eval()
        forget_importance = importances(model, data.forget, cfg.batch_size)
        full_importance = importances(model, concat_datasets(data.retain, data.forget), cfg.batch_size)
        selected = 0
        with torch.no_grad():
            for n, p in model.named_parameters():
                i_f, i_d = forget_importance[n], full_importance[n]
                where = i_f > cfg.alpha * i_d
                factor = (cfg.dampening * i_d / i_f.clamp_min(1e-30)).clamp(max=1.0)
                p[where] = p[where] * factor[where]
                selected += int(where.sum())
        return MethodResult(model=model.eval(), stop_reason="dampened", steps=0, info={"dampened_weights": selected})

"""How far an unlearned model's predictions on D_f are from the retrained model's (the paper's Fig. 7).

With p = softmax of the retrained model and q = softmax of the unlearned one, per sample x ∈ D_f:

    KL(p ‖ q)(x) = Σ_k p_k(x) · (log p_k(x) − log q_k(x))
    JS(p, q)(x)  = ½ KL(p ‖ m) + ½ KL(q ‖ m),   m = ½ (p + q)

both averaged over D_f, natural log, with a 1e-20 floor inside the logs (as the co-author's ``js_div.py``).
0 = the same outputs as the retrained model; JS ≤ log 2.
"""
from __future__ import annotations

import torch
from torch import nn

from mumis.data import ImageDataset
from mumis.metrics.accuracy import predict_logits

_FLOOR = 1e-20


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> float:
    """Mean over rows of KL(p ‖ q) for row-stochastic ``p`` and ``q``."""
    p, q = p.double(), q.double()
    return (p * (p.clamp_min(_FLOOR).log() - q.clamp_min(_FLOOR).log())).sum(1).mean().item()


def js_divergence(p: torch.Tensor, q: torch.Tensor) -> float:
    """Mean over rows of the Jensen–Shannon divergence of ``p`` and ``q``."""
    m = 0.5 * (p.double() + q.double())
    return 0.5 * kl_divergence(p, m) + 0.5 * kl_divergence(q, m)


def divergence_to_reference(model: nn.Module, reference: nn.Module, data: ImageDataset) -> dict[str, float]:
    """``{"kl": KL(reference ‖ model), "js": JS(reference, model)}`` averaged over ``data``."""
    p = torch.softmax(predict_logits(reference, data), 1)
    q = torch.softmax(predict_logits(model, data), 1)
    return {"kl": kl_divergence(p, q), "js": js_divergence(p, q)}

"""benchmarks/newton_all_layers.py (round 7's K-FAC measurement): its curvature factors are exact where K-FAC is
exact — one sample through a linear softmax model — and its step solves the damped Kronecker system."""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import newton_all_layers as script  # noqa: E402


def test_kfac_factors_match_the_cross_entropy_hessian_for_one_sample():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4)).double()
    x = torch.randn(1, 6, dtype=torch.float64)
    (A, G, positions), = script.kfac_factors(model, x).values()
    layer = model[1]
    theta = torch.cat([layer.weight.detach(), layer.bias.detach()[:, None]], 1)  # 4 × 7

    def ce(flat):  # the label does not matter: for logits linear in θ the Hessian is Jᵀ(diag p − p pᵀ)J either way
        t = flat.view(4, 7)
        return F.cross_entropy(x @ t[:, :6].T + t[:, 6], torch.tensor([0]))

    hessian = torch.autograd.functional.hessian(ce, theta.flatten())
    v = torch.randn(4, 7, dtype=torch.float64)
    quadratic_exact = v.flatten() @ hessian @ v.flatten()
    quadratic_kfac = torch.trace(v.T @ G @ v @ A) / positions
    assert positions == 1
    assert torch.allclose(quadratic_kfac, quadratic_exact, rtol=1e-8)


def test_removal_step_solves_the_damped_kronecker_system():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).double().eval()
    x = torch.randn(20, 1, 6, 6, dtype=torch.float64)
    y = torch.randint(0, 2, (20,))

    class Forget:
        def tensors(self):
            return x[:5], y[:5]

    damping, train_size = 1e-2, 50
    factors = script.kfac_factors(model, x[5:])
    step = script.kfac_removal_step(model, Forget(), x[5:], train_size, damping, weight_decay=0.0)
    model.zero_grad()
    F.cross_entropy(model(x[:5]), y[:5]).backward()
    for layer, (A, G, positions) in factors.items():
        rhs = script._as_matrix(layer, layer.weight.grad, layer.bias.grad if layer.bias is not None else None)
        applied = G @ step[layer] @ A / positions + damping * step[layer]  # (A ⊗ G / T + γI) Δθ
        assert torch.allclose(applied, rhs * 5 / (train_size - 5), atol=1e-10)

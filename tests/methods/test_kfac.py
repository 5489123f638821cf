"""methods/kfac.py, the all-layer Newton step's curvature: exact where K-FAC is exact (one sample through a linear
softmax model), and the step solves the damped Kronecker system it claims to."""
import torch
import torch.nn.functional as F
from torch import nn

from mumis.data import ImageDataset
from mumis.methods.kfac import apply_step, as_matrix, kfac_factors, kfac_removal_step, layer_matrix, weight_layers


def _images(n: int, side: int, seed: int) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    return ImageDataset(torch.randint(0, 256, (n, 1, side, side), dtype=torch.uint8, generator=g),
                        torch.randint(0, 2, (n,), generator=g), ("a", "b"), (0.5,), (0.25,))


def test_kfac_factors_equal_the_cross_entropy_hessian_for_one_sample():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).double().eval()
    data = _images(1, 2, 0)
    (A, G, positions), = kfac_factors(model, data).values()
    x = data.tensors()[0].double().flatten(1)

    def ce(flat):  # the label does not matter: for logits linear in θ the Hessian is Jᵀ(diag p − p pᵀ)J either way
        t = flat.view(2, 5)
        return F.cross_entropy(x @ t[:, :4].T + t[:, 4], torch.tensor([0]))

    layer = model[1]
    hessian = torch.autograd.functional.hessian(ce, layer_matrix(layer).flatten())
    v = torch.randn(2, 5, dtype=torch.float64)
    assert positions == 1
    assert torch.allclose(torch.trace(v.T @ G @ v @ A), v.flatten() @ hessian @ v.flatten(), rtol=1e-8)


def test_removal_step_solves_the_damped_kronecker_system_and_applies_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).double().eval()
    forget, heldout = _images(5, 6, 1), _images(15, 6, 2)
    damping, train_size, wd = 1e-2, 50, 1e-3
    factors = kfac_factors(model, heldout)
    step = kfac_removal_step(model, forget, heldout, train_size, damping, wd)
    x, y = forget.tensors()
    model.zero_grad()
    F.cross_entropy(model(x.double()), y).backward()
    start = {}
    for layer, (A, G, positions) in factors.items():
        theta = layer_matrix(layer)
        rhs = as_matrix(layer.weight.grad, layer.bias.grad if layer.bias is not None else None)
        if isinstance(layer, nn.Linear):  # the stationarity term: linear layers only
            rhs = rhs + wd * theta
        applied = G @ step[layer] @ A / positions + damping * step[layer]  # (A ⊗ G / T + γI) Δθ
        assert torch.allclose(applied, rhs * 5 / (train_size - 5), atol=1e-10)
        start[layer] = theta
    apply_step(model, start, step, 0.5)
    for layer in weight_layers(model):
        moved = layer_matrix(layer)
        assert torch.allclose(moved, start[layer] + 0.5 * step[layer])

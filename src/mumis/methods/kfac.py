"""K-FAC curvature and the Newton removal step on every conv and linear layer (``newton`` with ``layers="all"``).

Per layer l with weight matrix θ_l (out × in, a bias as one more input column), K-FAC (Martens & Grosse 2015;
Grosse & Martens 2016 for convolutions) approximates the Gauss-Newton matrix of the mean cross-entropy by

    F_l ≈ A_l ⊗ G_l / T_l,   A_l = Σ_{n,t} a aᵀ / N,   G_l = Σ_{n,t} g gᵀ / N,

a = the layer's input patch at position t, g = the gradient of sample n's cross-entropy at the layer's output there,
taken in exact expectation over the model's own predictive distribution (one backward per class, weighted by √p_k),
T_l = the number of positions (1 for a linear layer). (F_l + γI)⁻¹ comes from the eigendecompositions of A_l and G_l.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from mumis.data import ImageDataset, iter_batches
from mumis.runtime import device


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The layers the all-layer step moves: every ``nn.Conv2d`` and ``nn.Linear`` (BatchNorm and the like stay)."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def as_matrix(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """[W | b] with W flattened to out × (in · k · k) (the layout of a layer's step; also for its gradients)."""
    w = weight.reshape(weight.shape[0], -1)
    return torch.cat([w, bias[:, None]], 1) if bias is not None else w


def layer_matrix(layer: nn.Module) -> torch.Tensor:
    """A float64 copy of the layer's current [W | b] (a copy even for a float64 layer: it is the start a scan returns to)."""
    return as_matrix(layer.weight.detach(), layer.bias.detach() if layer.bias is not None else None).to(torch.float64, copy=True)


def _input_rows(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The vectors the layer's weight multiplies, one row per (sample, position), with a 1 appended for a bias."""
    if isinstance(layer, nn.Conv2d):
        patches = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)  # N, C·k·k, T
        x = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    if layer.bias is not None:
        x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)
    return x


def kfac_factors(model: nn.Module, data: ImageDataset, batch_size: int = 500) -> dict:
    """layer → (A, G, T) over ``data`` (module docstring), in float64; the model as it is (eval mode expected)."""
    layers = weight_layers(model)
    inputs, grads, positions = {}, {}, {}

    def record(layer, args, output):  # the layer's input now, the gradient at its output during the backward
        inputs[layer] = args[0].detach()
        positions[layer] = output.shape[2] * output.shape[3] if output.dim() == 4 else 1
        output.register_hook(lambda g: grads.__setitem__(layer, g.detach()))

    A = {m: 0.0 for m in layers}
    G = {m: 0.0 for m in layers}
    hooks = [m.register_forward_hook(record) for m in layers]
    try:
        for x, _ in iter_batches(data, batch_size):
            with torch.enable_grad():
                logits = model(x.to(device(), next(model.parameters()).dtype))
                prob = torch.softmax(logits.detach().double(), 1)
                for m in layers:
                    rows = _input_rows(m, inputs[m]).double()
                    A[m] = A[m] + rows.T @ rows
                for k in range(logits.shape[1]):
                    labels = torch.full((len(logits),), k, device=logits.device)
                    loss = (prob[:, k].sqrt().to(logits.dtype) * F.cross_entropy(logits, labels, reduction="none")).sum()
                    model.zero_grad(set_to_none=True)
                    loss.backward(retain_graph=k < logits.shape[1] - 1)
                    for m in layers:
                        g = grads[m]
                        g = (g.permute(0, 2, 3, 1).reshape(-1, g.shape[1]) if g.dim() == 4 else g).double()
                        G[m] = G[m] + g.T @ g
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)
    return {m: (A[m] / len(data), G[m] / len(data), positions[m]) for m in layers}


def kfac_removal_step(model: nn.Module, forget: ImageDataset, curvature: ImageDataset, train_size: int, damping: float,
                      weight_decay: float, batch_size: int = 500) -> dict:
    """layer → Δθ_l = n_f / (n − n_f) · (F_l + γI)⁻¹ r_l, with F_l the K-FAC curvature over ``curvature`` and r_l the
    mean cross-entropy gradient over ``forget`` — plus λθ on linear layers only: the original minimises
    mean CE + (λ/2)‖θ‖², but convolutions followed by BatchNorm are scale-invariant and do not satisfy
    mean_D ∇CE = −λθ, so the stationarity term is left out for them."""
    factors = kfac_factors(model, curvature, batch_size)
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        for x, y in iter_batches(forget, batch_size):
            logits = model(x.to(device(), next(model.parameters()).dtype))
            (F.cross_entropy(logits, y.to(device()), reduction="sum") / len(forget)).backward()
    n_f = len(forget)
    step = {}
    for m, (A, G, positions) in factors.items():
        rhs = as_matrix(m.weight.grad, m.bias.grad if m.bias is not None else None).double()
        if isinstance(m, nn.Linear):
            rhs = rhs + weight_decay * layer_matrix(m)
        sa, qa = torch.linalg.eigh(A)
        sg, qg = torch.linalg.eigh(G)
        scaled = (qg.T @ rhs @ qa) / (sg.clamp(min=0)[:, None] * sa.clamp(min=0)[None, :] / positions + damping)
        step[m] = (qg @ scaled @ qa.T) * (n_f / (train_size - n_f))
    model.zero_grad(set_to_none=True)
    return step


@torch.no_grad()
def apply_step(model: nn.Module, start: dict, step: dict, scale: float) -> None:
    """Set every layer of ``step`` to start + scale · Δθ (``start``: layer → its [W | b] before any step)."""
    for m, delta in step.items():
        theta = (start[m] + scale * delta).to(m.weight.dtype)
        if m.bias is not None:
            m.bias.copy_(theta[:, -1])
            theta = theta[:, :-1]
        m.weight.copy_(theta.reshape(m.weight.shape))

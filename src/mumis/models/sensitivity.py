"""Input sensitivity of single logits: ‖∇x f_j(x)‖ per sample, the quantity MU-Mis reads and moves.

Sample i's logit depends only on x_i when nothing mixes samples (BatchNorm in eval mode), so the gradient
of Σ_i f_{j_i}(x_i) with respect to the batch gives every per-sample input gradient in one backward pass.
"""
from __future__ import annotations

import torch
from torch import nn


def _has_batch_coupling(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())


def logit_input_gradients(
    model: nn.Module, x: torch.Tensor, classes: torch.Tensor, create_graph: bool = False, logits: torch.Tensor | None = None
) -> torch.Tensor:
    """∇x f_{classes[i]}(x_i) for every sample, shaped like ``x``.

    ``x`` must require grad when ``logits`` (already computed from it) are passed in, which lets callers share
    one forward pass between several gradients. With ``create_graph`` the result is differentiable with
    respect to the weights (double backprop).
    """
    if _has_batch_coupling(model):
        raise RuntimeError("put BatchNorm layers in eval mode: in train mode they mix samples of a batch")
    if logits is None:
        x = x.detach().requires_grad_(True)
        logits = model(x)
    picked = logits.gather(1, classes.view(-1, 1)).sum()
    (grad,) = torch.autograd.grad(picked, x, create_graph=create_graph, retain_graph=True)
    return grad


def squared_norms(grad: torch.Tensor) -> torch.Tensor:
    """Per-sample squared Frobenius norm of an input-gradient batch."""
    return grad.flatten(1).pow(2).sum(1)


@torch.enable_grad()
def logit_sensitivity(model: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Per-sample ‖∇x f_{classes[i]}(x_i)‖_F (un-squared), without a graph to the weights."""
    return squared_norms(logit_input_gradients(model, x, classes)).sqrt().detach()


def random_other_classes(labels: torch.Tensor, num_classes: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """One class c' ≠ c per sample, uniform over the K−1 others: (c + U{1..K−1}) mod K."""
    shift = torch.randint(1, num_classes, labels.shape, generator=generator, device="cpu").to(labels.device)
    return (labels + shift) % num_classes

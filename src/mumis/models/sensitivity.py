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


# A double-backprop pass keeps each float32 activation about five times: the forward value, the input-gradient
# graph built with create_graph, and the backward through it. benchmarks/scaling.py measured 2.8–5.0× the forward
# activations per sample on the CPU (small_cnn, resnet_small, resnet18, batches 64–256); 5 is the safe end.
DOUBLE_BACKPROP_COPIES = 5


@torch.no_grad()
def activation_bytes_per_sample(model: nn.Module, sample_shape: tuple[int, ...]) -> int:
    """Bytes of every leaf module's float32 output for one input of ``sample_shape`` (C×H×W)."""
    total = []
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(lambda _m, _i, out: total.append(out.numel() if torch.is_tensor(out) else 0))
             for m in leaves]
    try:
        param = next(model.parameters())
        model(torch.zeros(1, *sample_shape, device=param.device, dtype=param.dtype))
    finally:
        for h in hooks:
            h.remove()
    return 4 * (sum(total) + int(torch.Size(sample_shape).numel()))


def double_backprop_chunk(model: nn.Module, sample_shape: tuple[int, ...], budget_bytes: float) -> int:
    """How many samples one double-backprop pass may hold within ``budget_bytes`` (at least 1)."""
    per_sample = DOUBLE_BACKPROP_COPIES * activation_bytes_per_sample(model, sample_shape)
    return max(1, int(budget_bytes // per_sample))


def chunked_gradients(chunk_loss, n: int, chunk: int, params: list[nn.Parameter]) -> tuple[float, list[torch.Tensor]]:
    """(mean loss, its gradient in ``params``) over ``n`` samples, computed ``chunk`` samples at a time.

    ``chunk_loss(sl)`` returns the mean loss of the samples in slice ``sl``; weighting each chunk by its share of
    ``n`` gives the same mean and the same gradient as one pass over all ``n``, while only one chunk's
    double-backprop graph is alive at a time — memory follows ``chunk``, not ``n``.
    """
    value, grads = 0.0, [torch.zeros_like(p) for p in params]
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        loss = chunk_loss(slice(start, stop))
        if stop - start != n:  # one chunk = the whole batch: no reweighting, bit for bit the unchunked step
            loss = loss * ((stop - start) / n)
        parts = torch.autograd.grad(loss, params, allow_unused=True)
        for g, part in zip(grads, parts):
            if part is not None:
                g += part
        value += loss.item()
    return value, grads

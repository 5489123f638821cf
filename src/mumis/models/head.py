"""The classifier head of any model — the layer that produces its logits — and the features that feed it.

The head is found from the model's own forward pass, not from the order its modules were registered in: among the
layers that can map features to logits (an ``nn.Linear``, or a 1×1 ``nn.Conv2d`` followed by global pooling, as in
NiN/SqueezeNet), it is the last one to run whose output has one channel per class. A 1×1 convolution is a linear
head applied at every position, so its filter for class c plays the role of a linear head's row c.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from mumis.errors import MumisError


def _could_be_head(module: nn.Module) -> bool:
    return isinstance(module, nn.Linear) or (
        isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1) and module.groups == 1)


def _traced(model: nn.Module, example: torch.Tensor, modules: list[nn.Module]
            ) -> tuple[torch.Tensor, list[tuple[nn.Module, torch.Tensor]]]:
    """The model's output on ``example`` in eval mode, without gradients, and (module, output) for every run of one
    of ``modules``, in the order they ran. The model's train/eval mode is restored."""
    ran: list[tuple[nn.Module, torch.Tensor]] = []
    hooks = [m.register_forward_hook(lambda mod, args, out: ran.append((mod, out))) for m in modules]
    was_training = model.training
    try:
        with torch.no_grad():
            logits = model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return logits, ran


def classifier_head(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The layer that produces ``model``'s logits, traced on ``example`` (a batch of inputs on the model's device):
    the last ``nn.Linear`` (N × K output) or 1×1 ``nn.Conv2d`` (K output channels) to run, K = the number of logits."""
    logits, ran = _traced(model, example, [m for m in model.modules() if _could_be_head(m)])
    k = logits.shape[1]
    heads = [mod for mod, out in ran if out.shape[1] == k and (out.dim() == 2 or isinstance(mod, nn.Conv2d))]
    if not heads:
        raise MumisError(f"this model has no layer that maps features to its {k} logits (an nn.Linear, or a 1×1 "
                         "nn.Conv2d before global pooling), so there is no classifier head to move; for MU-Mis pass "
                         "update='all' (every layer moves)")
    return heads[-1]


@contextmanager
def capture_features(model: nn.Module, example: torch.Tensor) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward pass of ``model`` appends the input of its (linear) classifier head."""
    head = classifier_head(model, example)
    if not isinstance(head, nn.Linear):
        raise MumisError(f"this method reads the features of a linear classifier head, and this model's logits come "
                         f"from a {type(head).__name__}; use a method that moves every layer (e.g. mumis)")
    captured: list[torch.Tensor] = []
    handle = head.register_forward_pre_hook(lambda module, args: captured.append(args[0].flatten(1)))
    try:
        yield captured
    finally:
        handle.remove()


def head_gives_logits(model: nn.Module, head: nn.Module, example: torch.Tensor) -> bool:
    """Whether ``model``'s output on ``example`` is exactly ``head``'s output (nothing runs after the head), so that
    the logits are a function of the head's input alone. False for a 1×1-convolution head (global pooling follows)."""
    if not isinstance(head, nn.Linear):
        return False
    logits, seen = _traced(model, example, [head])
    return len(seen) == 1 and seen[0][1].shape == logits.shape and torch.equal(seen[0][1], logits)

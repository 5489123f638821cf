"""The classifier head of any model: its last ``nn.Linear``, and the features that feed it."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from mumis.errors import MumisError


def classifier_head(model: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` of ``model`` (in module order): the layer that maps features to logits."""
    heads = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not heads:
        raise MumisError("this operation needs an nn.Linear classifier layer (the model's last nn.Linear) and this "
                         "model has none; for MU-Mis use update='all'")
    return heads[-1]


@contextmanager
def capture_features(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """Within the block, every forward pass of ``model`` appends the (flattened) input of its classifier head."""
    captured: list[torch.Tensor] = []
    handle = classifier_head(model).register_forward_pre_hook(lambda module, args: captured.append(args[0].flatten(1)))
    try:
        yield captured
    finally:
        handle.remove()

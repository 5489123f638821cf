"""``original``: the model as trained, unchanged — the "do nothing" row every table starts from."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mumis.methods.base import GrantedData, MethodResult, UnlearningMethod
from mumis.methods.registry import register


@dataclass(frozen=True)
class OriginalConfig:
    pass


@register
class Original(UnlearningMethod):
    """Returns the model untouched; reads no data at all."""

    name = "original"
    needs = frozenset()
    Config = OriginalConfig

    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        return MethodResult(model=model.eval(), stop_reason="unchanged", steps=0)

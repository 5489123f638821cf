"""``boundary_shrink``: Boundary Unlearning's shrink variant (Chen et al., CVPR'23) — relabel every forget sample with
the class its nearest adversarial neighbour falls into, and fine-tune on those labels."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mumis.methods.base import DataRole, GrantedData, MethodResult, Space, UnlearningMethod
from mumis.methods.common import LoopOptions, frozen_copy
from mumis.methods.registry import register
from mumis.training import fit


@dataclass(frozen=True)
class BoundaryShrinkConfig(LoopOptions):
    # TY-LEE-KR/Boundary-Unlearning-Code ``boundary_shrink``: SGD lr 1e-5, momentum 0.9, 10 epochs ("poison_epoch"),
    # neighbour search = L∞ PGD on the original model with bound 0.1, step 8/255, 5 iterations, no random start.
    epochs: int = 10
    lr: float = 1e-5
    weight_decay: float = 0.0
    bound: float = 0.1  # L∞ radius in pixel units ([0, 1] images); divided by the data's std for normalised inputs
    attack_step: float = 8 / 255
    attack_iters: int = 5


def nearest_other_class(model: nn.Module, x: torch.Tensor, y: torch.Tensor, bound, step, iters: int) -> torch.Tensor:
    """The class the original model gives a point found by L∞ PGD that pushes x away from its label y."""
    x_adv = x.detach().clone()
    for _ in range(iters):
        x_adv.requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        x_adv = x_adv.detach() + step * grad.sign()
        x_adv = torch.max(torch.min(x_adv, x + bound), x - bound)
    with torch.no_grad():
        return model(x_adv).argmax(1)


@register
class BoundaryShrink(UnlearningMethod):
    """Fine-tune on (x, neighbour label) for x ∈ D_f; labels are recomputed per batch from the frozen original.

    It reads only D_f: Boundary Shrink needs no retain data, although the paper groups it with the remaining-data
    baselines. Where the attack cannot leave the class in ``attack_iters`` steps, the "neighbour" label is the
    true label and that sample is not pushed anywhere, as in the reference.
    """

    name = "boundary_shrink"
    search_space = {"lr": Space(1e-6, 1e-3, source="Boundary-Unlearning-Code: lr 1e-5"),
                    "epochs": Space(1, 10, log=False, integer=True, source="the same: 10 poison epochs")}
    needs = frozenset({DataRole.FORGET})
    Config = BoundaryShrinkConfig

    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        cfg = self.config
        original = frozen_copy(model)
        scale = 1.0 / torch.tensor(data.forget.std).view(1, -1, 1, 1)  # pixel units → normalised units
        flipped = []

        def loss_fn(m, x, y):
            s = scale.to(x.device)
            neighbour = nearest_other_class(original, x, y, cfg.bound * s, cfg.attack_step * s, cfg.attack_iters)
            flipped.append((neighbour != y).float().mean().item())
            return F.cross_entropy(m(x), neighbour)

        report = fit(model, data.forget, cfg.recipe(), seed=cfg.seed, loss_fn=loss_fn, description="boundary shrink",
                     show_progress=cfg.show_progress)
        return MethodResult(model=model.eval(), stop_reason="epochs", steps=report.steps,
                            info={"share_relabelled": sum(flipped) / max(1, len(flipped))})

"""Relearn time: how quickly fine-tuning on D_f brings the forgotten samples back.

A model that only *hides* D_f (suppressed logits, intact features) relearns it in a few steps; a model that never
learnt it (the retrained one) needs as many as learning it afresh. Relearn time is therefore read against the
retrained model's value, not as "higher is better".

    relearn_steps = min { t ≥ 0 : FA(θ_t) ≥ FA_target − threshold },

θ_0 = the model, θ_{t+1} = one SGD step (lr, momentum 0.9, no weight decay, batch ``batch_size``, BatchNorm in
train mode) on cross-entropy over shuffled D_f, FA measured on (up to ``max_eval``) D_f samples after every step.
NaN when the target is not reached within ``max_steps`` (the row then reads "> max_steps").
"""
from __future__ import annotations

import copy
import math

import numpy as np
from torch import nn

from mumis.data import ImageDataset
from mumis.metrics.accuracy import accuracy
from mumis.training import TrainRecipe, fit


def relearn_steps(
    model: nn.Module, forget: ImageDataset, target_fa: float, threshold: float = 5.0, lr: float = 0.01,
    batch_size: int = 32, max_steps: int = 200, max_eval: int = 512, seed: int = 0,
) -> float:
    """Steps of fine-tuning on ``forget`` until its accuracy is within ``threshold`` points of ``target_fa``
    (the original model's FA). The model passed in is not modified."""
    probe = forget.subset(np.random.default_rng(seed).permutation(len(forget))[:max_eval])
    goal = target_fa - threshold
    net = copy.deepcopy(model)
    if accuracy(net, probe) >= goal:
        return 0.0
    reached: list[int] = []

    def check(step, _optimizer):
        if accuracy(net, probe) >= goal:
            reached.append(step + 1)
            return True
        net.train()  # accuracy() leaves the model in eval mode
        return step + 1 >= max_steps

    epochs = math.ceil(max_steps / math.ceil(len(forget) / batch_size))
    recipe = TrainRecipe(epochs=epochs, batch_size=batch_size, lr=lr, momentum=0.9, weight_decay=0.0,
                         schedule="constant", warmup_epochs=0.0)
    fit(net, forget, recipe, seed=seed, show_progress=False, on_step=check)
    return float(reached[0]) if reached else float("nan")

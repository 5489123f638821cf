"""The paper's input-sensitivity diagnostics (Figs. 1–4) on a set of samples.

Per sample x with label c, for a model f with K logits (BatchNorm in eval mode):

    target      s_c(x)   = ‖∇x f_c(x)‖_F
    irrelevant  s_¬c(x)  = (1/(K−1)) Σ_{c'≠c} ‖∇x f_c'(x)‖_F      (the all-classes average of Fig. 3)
    full        s(x)     = ‖∇x f(x)‖_F = sqrt(Σ_k ‖∇x f_k(x)‖²_F)  (Fig. 2)

and, between two models on the same samples, the share of samples whose value rises, Δ = s_after − s_before > 0
(the paper's "Δ rise and fall" ratios; its gap is s_c − s_¬c).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from mumis.data import ImageDataset, iter_batches
from mumis.models.sensitivity import logit_input_gradients, squared_norms
from mumis.runtime import device

PROFILE_KEYS = ("target", "irrelevant", "full")


def probe_samples(data: ImageDataset, max_samples: int = 512, seed: int = 0) -> ImageDataset:
    """A seeded subsample of ``data`` (all of it when small): the same samples for every model compared."""
    if len(data) <= max_samples:
        return data
    return data.subset(np.sort(np.random.default_rng(seed).permutation(len(data))[:max_samples]))


@torch.enable_grad()
def sensitivity_profile(model: nn.Module, data: ImageDataset, batch_size: int = 128) -> dict[str, np.ndarray]:
    """Per-sample target, irrelevant and full input sensitivity (see the module docstring) as NumPy arrays."""
    model.eval()
    dev = device()
    model.to(dev)
    parts = {k: [] for k in PROFILE_KEYS}
    for x, y in iter_batches(data, batch_size):
        x = x.to(dev).requires_grad_(True)
        y = y.to(dev)
        logits = model(x)
        k = logits.shape[1]
        per_class = torch.stack([
            squared_norms(logit_input_gradients(model, x, torch.full_like(y, j), logits=logits)).detach()
            for j in range(k)
        ], 1)  # N × K squared norms
        norms = per_class.sqrt()
        target = norms.gather(1, y.view(-1, 1)).squeeze(1)
        parts["target"].append(target.cpu())
        parts["irrelevant"].append(((norms.sum(1) - target) / (k - 1)).cpu())
        parts["full"].append(per_class.sum(1).sqrt().cpu())
    return {k: torch.cat(v).numpy().astype(np.float64) for k, v in parts.items()}


def rise_fractions(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> dict[str, float]:
    """Percent of samples whose target, irrelevant and gap (target − irrelevant) sensitivity rose from
    ``before`` to ``after`` (the complement fell or stayed)."""
    gap_before = before["target"] - before["irrelevant"]
    gap_after = after["target"] - after["irrelevant"]
    return {
        "target_up": 100.0 * float(np.mean(after["target"] > before["target"])),
        "irrelevant_up": 100.0 * float(np.mean(after["irrelevant"] > before["irrelevant"])),
        "gap_up": 100.0 * float(np.mean(gap_after > gap_before)),
    }

"""The training recipe: one typed, serialisable record shared by pre-training and the retrain reference."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainRecipe:
    epochs: int = 8  # passes over the training set
    batch_size: int = 128
    lr: float = 0.05  # peak learning rate of SGD
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # "cosine" (to 0 over all steps), "constant", or "multistep" (× gamma at each milestone)
    warmup_epochs: float = 0.5  # linear warm-up; stabilises BatchNorm nets at the first steps
    optimizer: str = "sgd"  # "sgd" (with ``momentum``) or "adam" (Bad Teacher's optimiser)
    milestones: tuple[int, ...] = ()  # epochs where "multistep" multiplies the rate by ``gamma`` (PyTorch's MultiStepLR)
    gamma: float = 0.1

    def __post_init__(self):
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        if self.schedule not in ("cosine", "constant", "multistep"):
            raise ValueError(f"unknown schedule {self.schedule!r}; use 'cosine', 'constant' or 'multistep'")
        if self.schedule == "multistep" and not self.milestones:
            raise ValueError("schedule 'multistep' needs milestones (epochs), e.g. milestones = [60, 120, 160]")

    def lr_factor(self, step: int, total: int, warmup: int, per_epoch: int) -> float:
        """The learning-rate multiplier at optimiser step ``step`` of ``total`` (linear warm-up first)."""
        if step < warmup:
            return (step + 1) / warmup
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "multistep":
            return self.gamma ** sum(step >= m * per_epoch for m in self.milestones)
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.schedule != "multistep":  # recipes written before these fields existed keep their hash (and cache keys)
            del out["milestones"], out["gamma"]
        else:
            out["milestones"] = list(self.milestones)
        return out

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

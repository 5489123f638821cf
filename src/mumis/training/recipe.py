"""The training recipe: one typed, serialisable record shared by pre-training and the retrain reference."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class TrainRecipe:
    epochs: int = 8  # passes over the training set
    batch_size: int = 128
    lr: float = 0.05  # peak learning rate of SGD
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # "cosine" (to 0 over all steps) or "constant"
    warmup_epochs: float = 0.5  # linear warm-up; stabilises BatchNorm nets at the first steps
    optimizer: str = "sgd"  # "sgd" (with ``momentum``) or "adam" (Bad Teacher's optimiser)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

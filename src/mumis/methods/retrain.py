"""``retrain``: the gold standard — the same architecture, re-initialised and trained on D_r alone."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from mumis.methods.base import DataRole, GrantedData, MethodResult, UnlearningMethod
from mumis.methods.common import reinitialise
from mumis.methods.registry import register
from mumis.training import TrainRecipe, fit

_DEFAULT = TrainRecipe()


@dataclass(frozen=True)
class RetrainConfig:
    # The training recipe (mumis.training.TrainRecipe's defaults); set it to the original model's recipe,
    # as the benchmark does, so the retrain differs from the original only in its data.
    epochs: int = _DEFAULT.epochs
    batch_size: int = _DEFAULT.batch_size
    lr: float = _DEFAULT.lr
    momentum: float = _DEFAULT.momentum
    weight_decay: float = _DEFAULT.weight_decay
    schedule: str = _DEFAULT.schedule
    warmup_epochs: float = _DEFAULT.warmup_epochs
    seed: int = 0  # initialisation and batch order
    show_progress: bool = True


@register
class Retrain(UnlearningMethod):
    """Re-initialise every layer from ``seed`` and train on the retain set with the shared loop (exact unlearning)."""

    name = "retrain"
    needs = frozenset({DataRole.RETAIN})
    Config = RetrainConfig

    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        cfg = self.config
        recipe = TrainRecipe(epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, momentum=cfg.momentum,
                             weight_decay=cfg.weight_decay, schedule=cfg.schedule, warmup_epochs=cfg.warmup_epochs)
        reinitialise(model, cfg.seed)
        report = fit(model, data.retain, recipe, seed=cfg.seed, description="retrain", show_progress=cfg.show_progress)
        return MethodResult(model=model.eval(), stop_reason="epochs", steps=report.steps)

"""The training loop, its recipe, and checkpoints (used by pre-training, the retrain reference and fine-tuning methods)."""
from mumis.training.checkpoint import (
    CheckpointMeta,
    load_checkpoint,
    load_weights,
    nonfinite_tensors,
    read_meta,
    save_checkpoint,
    sidecar_path,
)
from mumis.training.loop import FitReport, cross_entropy_loss, fit
from mumis.training.recipe import TrainRecipe

__all__ = [
    "CheckpointMeta", "FitReport", "TrainRecipe", "cross_entropy_loss", "fit",
    "load_checkpoint", "load_weights", "nonfinite_tensors", "read_meta", "save_checkpoint", "sidecar_path",
]

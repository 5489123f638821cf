"""The original model and the retrain reference, trained once through the one loop and cached.

The cache key is (dataset, model, recipe, split hash, forget-set hash, seed): change any of them and the
model is retrained; change none and the cached checkpoint is loaded (strictly) instead.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

from torch import nn

from mumis.data import ImageDataset, Split
from mumis.metrics import accuracy
from mumis.models import create_model
from mumis.runtime import cache_root, device_name, seed_everything
from mumis.training import CheckpointMeta, TrainRecipe, fit, load_checkpoint, save_checkpoint


def default_cache_dir() -> Path:
    return cache_root()


def reference_key(dataset: str, model: str, recipe: TrainRecipe, split_sha: str, forget_sha: Optional[str], seed: int) -> str:
    parts = dict(dataset=dataset, model=model, recipe=recipe.to_dict(), split=split_sha, forget=forget_sha, seed=seed)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def trained_reference(
    role: str, data: ImageDataset, architecture: str, split: Split, recipe: TrainRecipe, seed: int,
    cache_dir: Path, forget_sha: Optional[str] = None, show_progress: bool = True, test: Optional[ImageDataset] = None,
) -> tuple[nn.Module, CheckpointMeta, bool]:
    """Train (or load from cache) the ``role`` model ("original" on D, "retrain" on D_r). Returns (model, meta, cached)."""
    key = reference_key(split.dataset, architecture, recipe, split.sha256, forget_sha, seed)
    path = Path(cache_dir) / "models" / f"{role}-{split.dataset}-{architecture}-{key}.safetensors"
    if path.is_file():
        model, meta = load_checkpoint(path)
        meta.check_split(split)
        return model, meta, True
    seed_everything(seed)  # the initial weights depend on the seed alone, not on what ran before
    model = create_model(architecture, data.num_classes, data.in_channels)
    report = fit(model, data, recipe, seed=seed, description=f"{role} ({architecture})", show_progress=show_progress)
    meta = CheckpointMeta(
        architecture=architecture, num_classes=data.num_classes, in_channels=data.in_channels, dataset=split.dataset,
        classes=list(data.classes), split_sha256=split.sha256, role=role, seed=seed, forget_sha256=forget_sha,
        recipe=recipe.to_dict(), wall_s=report.wall_s, device=device_name(),
        accuracies={"train": accuracy(model, data), **({"test": accuracy(model, test)} if test is not None else {})},
    )
    save_checkpoint(path, model, meta)
    return model, meta, False

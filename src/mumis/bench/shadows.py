"""Shadow models for the per-example attack (:mod:`mumis.metrics.lira`), trained through the one training loop and
cached like the references, so a grid pays for them once.

The shadow pool is the split's training set and its test set together: every sample — the forget set and the
never-seen test samples the attack compares it with — is IN for half of the shadows and OUT for the other half.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from torch import nn

from mumis.bench.references import trained_reference
from mumis.data import ImageDataset, Split, concat_datasets
from mumis.metrics.accuracy import predict_logits
from mumis.metrics.lira import PerExampleReference, scaled_confidence, shadow_memberships
from mumis.progress import progress_bar
from mumis.training import TrainRecipe


def shadow_pool(train: ImageDataset, test: ImageDataset) -> ImageDataset:
    """Positions 0..len(train)-1 are the training set, the rest the test set."""
    return concat_datasets(train, test)


def train_shadows(pool: ImageDataset, architecture: str, split: Split, recipe: TrainRecipe, n_shadows: int,
                  seed: int, cache_dir: Path, show_progress: bool = True) -> tuple[list[nn.Module], np.ndarray]:
    """``n_shadows`` models, each trained on a random half of ``pool`` (cached by split, recipe, seed and the half),
    and the S × N membership matrix."""
    masks = shadow_memberships(len(pool), n_shadows, seed)
    models = []
    with progress_bar(f"shadows ({architecture})", n_shadows, show_progress) as advance:
        for s, mask in enumerate(masks):
            members = np.flatnonzero(mask)
            half = hashlib.sha256(members.astype(np.int64).tobytes()).hexdigest()
            model, _, _ = trained_reference(f"shadow{s}", pool.subset(members), architecture, split, recipe,
                                            seed * 1000 + s, cache_dir, forget_sha=half, show_progress=False)
            models.append(model)
            advance()
    return models, masks


def shadow_confidences(models: list[nn.Module], pool: ImageDataset) -> np.ndarray:
    """S × N logit-scaled confidences φ of every pool sample under every shadow."""
    return np.stack([scaled_confidence(predict_logits(m, pool), pool.labels) for m in models])


def per_example_attack(model: nn.Module, pool: ImageDataset, positives: np.ndarray, negatives: np.ndarray,
                       shadow_phis: np.ndarray, masks: np.ndarray, online: bool = True) -> dict:
    """LiRA scores of ``model`` on the pool and their AUC / TPR at low FPR for ``positives`` (pool positions, e.g. the
    forget set) against ``negatives`` (never-seen samples, e.g. the test part of the pool); ``scores`` are the
    positives' per-sample scores, for a figure or a manifest."""
    return PerExampleReference(pool, shadow_phis, masks, positives, negatives).attack(model, online)


def shadow_reference(train: ImageDataset, test: ImageDataset, architecture: str, split: Split, recipe: TrainRecipe,
                     n_shadows: int, seed: int, cache_dir: Path, show_progress: bool = False
                     ) -> tuple[ImageDataset, np.ndarray, np.ndarray]:
    """The pool (train ∪ test), every pool sample's φ under each of ``n_shadows`` cached shadows, and the
    memberships: what every task step of a (dataset, split, recipe, seed) shares."""
    pool = shadow_pool(train, test)
    models, masks = train_shadows(pool, architecture, split, recipe, n_shadows, seed, cache_dir, show_progress)
    return pool, shadow_confidences(models, pool), masks


def step_reference(shared: tuple[ImageDataset, np.ndarray, np.ndarray], forget_positions: np.ndarray,
                   train_size: int) -> PerExampleReference:
    """The reference of one task step: D_f (positions in the split's training set = pool positions) against the
    test part of the pool, which no model of the grid trained on."""
    pool, phis, masks = shared
    return PerExampleReference(pool, phis, masks, np.asarray(forget_positions), np.arange(train_size, len(pool)))

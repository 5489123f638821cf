"""The held-out curvature of one model, kept on disk between deletion requests served from that model.

Requests in a row are served from the chain's first model for every sample forgotten so far (mumis.serving), so each
request estimates the same EK-FAC curvature of the same held-out set on the same weights — about half of ``newton``'s
time on the small CNN. :class:`CurvatureCache` keeps the result, the per-layer eigenbases and eigenvalues of
:class:`~mumis.methods.kfac.DampedInverse`, in float64 as computed, so a request that finds it gets bit-for-bit the
step it would have computed. The key hashes everything the numbers depend on: every parameter and buffer of the
model (names, dtypes, shapes, bytes), the curvature data (images, labels, normalisation), the kind of curvature, the
batch size, the device type and torch's version. A file is named by its key; an unreadable or mismatched one is a
miss and is written again. A file holds an in × in and an out × out eigenbasis per layer (float64: 1.4 MB for the
small CNN, 5.3 MB for resnet_small, 21 MB for resnet_wide); the most recently used files are kept up to ``max_bytes``
together (the newest always).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mumis.data import ImageDataset
from mumis.runtime import device

FORMAT = 1  # bump when what a file holds, or how it is computed, changes


def _update(h, tensor: torch.Tensor) -> None:
    t = tensor.detach().cpu().contiguous()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


def curvature_key(model: nn.Module, data: ImageDataset, corrected: bool, batch_size: int) -> str:
    """sha256 of what the curvature of ``model`` over ``data`` depends on (module docstring)."""
    h = hashlib.sha256(f"mumis-curvature v{FORMAT} corrected={corrected} batch={batch_size} "
                       f"torch={torch.__version__} device={device().type}".encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        _update(h, tensor)
    for tensor in (data.images, data.labels, torch.tensor(data.mean + data.std, dtype=torch.float64)):
        _update(h, tensor)
    return h.hexdigest()


class CurvatureCache:
    """Files ``<key>.safetensors`` in ``folder``, one per (model, curvature data, settings); see the module docstring."""

    def __init__(self, folder: Path, max_bytes: int = 1 << 30):
        self.folder, self.max_bytes = Path(folder), max_bytes

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def load(self, key: str, layers: list[nn.Module]) -> Optional[dict]:
        """layer → (Q_A, Q_G, Λ) as saved under ``key``, or None (no file, unreadable, or not these layers)."""
        path = self.path(key)
        try:
            tensors = load_file(path)
        except Exception:  # missing or damaged: computed and written again
            return None
        eigen = {}
        for i, m in enumerate(layers):
            try:
                qa, qg, lam = (_stored(tensors, f"{i}.{part}") for part in ("qa", "qg", "lambda"))
            except KeyError:
                return None
            rows, cols = m.weight.shape[0], m.weight[0].numel() + (m.bias is not None)
            if qa.shape != (cols, cols) or qg.shape != (rows, rows) or lam.shape != (rows, cols):
                return None
            eigen[m] = (qa.to(device()), qg.to(device()), lam.to(device()))
        if len(tensors) != 3 * len(layers):
            return None
        try:
            os.utime(path)  # most recently used
        except FileNotFoundError:  # dropped by another process meanwhile: the tensors are loaded already
            pass
        return eigen

    def save(self, key: str, layers: list[nn.Module], eigen: dict) -> None:
        """Write ``eigen`` (layer → (Q_A, Q_G, Λ)) under ``key`` atomically, then drop the least recently used files
        beyond ``max_bytes``."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = dict(_storable(f"{i}.{part}", t) for i, m in enumerate(layers)
                       for part, t in zip(("qa", "qg", "lambda"), eigen[m]))
        partial = self.path(key).with_suffix(f".{os.getpid()}.partial")
        try:
            save_file(tensors, partial, metadata={"format": str(FORMAT), "key": key})
            partial.replace(self.path(key))
        finally:
            partial.unlink(missing_ok=True)
        total = 0
        for path, _, size in sorted(_listing(self.folder), key=lambda entry: entry[1], reverse=True):
            total += size
            if total > self.max_bytes and path != self.path(key):
                path.unlink(missing_ok=True)


def _storable(name: str, tensor: torch.Tensor) -> tuple[str, torch.Tensor]:
    """A file holds contiguous tensors; an eigenbasis comes out of ``eigh`` column-major, so it is stored transposed
    (name + ".T") and read back as the same column-major view: a product's rounding depends on the layout, and the
    step must be the one computed without the cache, bit for bit."""
    tensor = tensor.detach().cpu()
    if not tensor.is_contiguous() and tensor.mT.is_contiguous():
        return f"{name}.T", tensor.mT
    return name, tensor.contiguous()


def _stored(tensors: dict, name: str) -> torch.Tensor:
    return tensors[f"{name}.T"].mT if f"{name}.T" in tensors else tensors[name]


def _listing(folder: Path) -> list[tuple[Path, float, int]]:
    entries = []
    for path in folder.glob("*.safetensors"):
        try:
            stat = path.stat()
        except FileNotFoundError:  # another process dropped it meanwhile
            continue
        entries.append((path, stat.st_mtime, stat.st_size))
    return entries

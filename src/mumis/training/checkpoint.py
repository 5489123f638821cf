"""Checkpoints: weights in safetensors (no pickle), everything else in a JSON sidecar, loading strict.

``model.safetensors`` + ``model.json``. The sidecar names the architecture, classes, dataset, split and
forget-set hashes, recipe, accuracies and wall time, so a checkpoint rebuilds its own model and refuses a
split it was not trained on.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from mumis.data import Split
from mumis.data.splits import publish_mode
from mumis.errors import MumisError
from mumis.models import create_model
from mumis.schema import INT, NUMBER, OBJECT, POSITIVE_INT, STR, bounded_int, check_fields, list_of, optional, read_json

SIDECAR_SCHEMA = {
    "architecture": STR, "num_classes": bounded_int(1, 100_000), "in_channels": bounded_int(1, 1024), "dataset": STR,
    "classes": list_of(STR), "split_sha256": STR, "role": STR, "seed": INT, "forget_sha256": optional(STR),
    "recipe": OBJECT, "method": optional(OBJECT), "accuracies": OBJECT, "wall_s": NUMBER, "processes": POSITIVE_INT,
    "device": optional(STR),
}
# fields with a default: sidecars written before they existed still load
SIDECAR_OPTIONAL = ("seed", "forget_sha256", "recipe", "method", "accuracies", "wall_s", "processes", "device")


@dataclass
class CheckpointMeta:
    architecture: str
    num_classes: int
    in_channels: int
    dataset: str
    classes: list[str]
    split_sha256: str
    role: str  # "original", "retrain" or "unlearned"
    seed: int = 0
    forget_sha256: Optional[str] = None  # the forget set a retrain excluded or an unlearning removed
    recipe: dict = field(default_factory=dict)
    method: Optional[dict] = None  # for unlearned models: name, config, stop reason
    accuracies: dict = field(default_factory=dict)
    wall_s: float = 0.0
    processes: int = 1  # how many data-parallel processes trained it (torchrun)
    # where it was trained: "cpu" or the GPU's name (None: a checkpoint written before the field). ``wall_s`` means
    # nothing without it, and a cached reference may be scored on another machine than the one that trained it
    device: Optional[str] = None

    def check_split(self, split: Split) -> None:
        if self.dataset != split.dataset:
            raise MumisError(f"the checkpoint was trained on {self.dataset!r} but the split is of {split.dataset!r}; "
                             "pass the split file the checkpoint was trained with.")
        if self.split_sha256 != split.sha256:
            raise MumisError(
                f"the checkpoint was trained on split {self.split_sha256[:12]}…, but the split given is "
                f"{split.sha256[:12]}…; evaluating or unlearning it on other samples would be meaningless. "
                "Pass the split file the checkpoint was trained with."
            )


def sidecar_path(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def nonfinite_tensors(state: dict) -> list[str]:
    """Names of the floating-point tensors in a state dict that hold a NaN or an infinity, in order."""
    import torch

    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def save_checkpoint(path: str | Path, model: nn.Module, meta: CheckpointMeta) -> Path:
    """Write weights and sidecar atomically (temporary files, then rename). Non-finite weights are never written."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise MumisError(f"checkpoint paths end in .safetensors, got {path}")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = nonfinite_tensors(state)
    if bad:
        raise MumisError(f"not writing {path}: {len(bad)} of {len(state)} tensors hold NaN or infinite values (first: "
                         f"{bad[0]!r}); the run that produced them diverged — try a smaller learning rate.")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    side_fd, side_tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{sidecar_path(path).name}.", suffix=".tmp")
    os.close(side_fd)
    renamed = False
    try:
        save_file(state, tmp, metadata={"mumis_sidecar": sidecar_path(path).name})
        Path(side_tmp).write_text(json.dumps(asdict(meta), indent=2))
        publish_mode(tmp)
        publish_mode(side_tmp)
        # both files are complete before either takes its name: an interruption leaves the old pair or nothing new
        os.replace(side_tmp, sidecar_path(path))
        renamed = True
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        Path(side_tmp).unlink(missing_ok=True)
        if renamed and not path.is_file():
            sidecar_path(path).unlink(missing_ok=True)
        raise
    return path


def read_meta(path: str | Path) -> CheckpointMeta:
    side = sidecar_path(path)
    if not Path(path).is_file():
        raise MumisError(f"checkpoint {path} does not exist")
    if not side.is_file():
        raise MumisError(f"checkpoint {path} has no sidecar {side}; mumis checkpoints are written by `mumis train`.")
    fix = "a sidecar is written by `mumis train` (or mumis.training.save_checkpoint); restore it from there."
    payload = read_json(side, fix)
    check_fields(payload, SIDECAR_SCHEMA, str(side), fix, optional_fields=SIDECAR_OPTIONAL)
    return CheckpointMeta(**payload)


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Strictly load safetensors weights into ``model``: missing, unexpected or mis-shaped tensors are errors."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise MumisError(f"{path} is not a readable safetensors file ({err})") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [k for k in set(own) & set(state) if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        details = "; ".join(
            f"{label}: {', '.join(keys[:5])}{' …' if len(keys) > 5 else ''}"
            for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)) if keys
        )
        raise MumisError(f"{path} does not match the model ({details}). Use the architecture it was saved from.")
    bad = nonfinite_tensors(state)
    if bad:
        raise MumisError(f"{path}: tensor {bad[0]!r} holds NaN or infinite values ({len(bad)} of {len(state)} tensors "
                         "do); the checkpoint is corrupt or its training diverged — restore a good copy or retrain it.")
    model.load_state_dict(state, strict=True)
    return model


def load_checkpoint(path: str | Path) -> tuple[nn.Module, CheckpointMeta]:
    """Rebuild the architecture named in the sidecar and load the weights strictly."""
    meta = read_meta(path)
    model = create_model(meta.architecture, meta.num_classes, meta.in_channels)
    load_weights(model, path)
    return model.eval(), meta

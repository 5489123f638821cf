"""The Python entry point for a real deletion request: ``mumis.unlearn(model, forget)``.

```python
import mumis
result = mumis.unlearn(model, (x, y), request="class")                 # every sample of a class: MU-Mis
result = mumis.unlearn(model, (x, y), heldout=(xh, yh), train_size=N)   # a person's samples: what measured best
result.model, result.request, result.method, result.why                # the unlearned copy; what ran and why
result.forget_acc_before, result.forget_acc_after, result.stop_reason, result.wall_s
```

``forget`` may be an :class:`~mumis.data.ImageDataset`, a ``(x, y)`` pair of tensors (x: N×C×H×W model inputs,
already normalised as the model expects), a ``torch.utils.data.DataLoader`` or any map-style dataset yielding
``(x, y)``. A method reads only the data it declares: MU-Mis's class request runs with the forget set alone.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch import nn

from mumis.data import ImageDataset, iter_batches
from mumis.errors import MumisError
from mumis.methods import get_method, grant, method_options, raise_if_diverged, run_method
from mumis.methods.auto import infer_request, resolve
from mumis.metrics import accuracy
from mumis.models.sensitivity import logit_sensitivity
from mumis.runtime import borrowed, device, isolated_global_state, stopwatch


@dataclass
class UnlearnResult:
    model: nn.Module
    method: str
    options: dict
    stop_reason: str
    steps: int
    forget_acc_before: float  # % of D_f classified as its label
    forget_acc_after: float
    sensitivity_before: float  # mean ‖∇x f_y(x)‖ over D_f (the quantity MU-Mis suppresses)
    sensitivity_after: float
    wall_s: float  # the method's run time
    data_read: list[str] = field(default_factory=list)
    trace: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    request: str = ""  # "class" or "samples": what the run treated the forget set as
    why: str = ""  # why this request kind and this method


def as_dataset(data: Any, what: str = "forget") -> ImageDataset:
    """An :class:`ImageDataset` from a dataset, an ``(x, y)`` pair, a DataLoader or a map-style dataset."""
    if isinstance(data, ImageDataset):
        return data
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
    elif isinstance(data, torch.utils.data.DataLoader) or isinstance(data, torch.utils.data.Dataset):
        pairs = list(data) if isinstance(data, torch.utils.data.DataLoader) else [data[i] for i in range(len(data))]
        if not pairs:
            raise MumisError(f"the {what} set is empty: there is nothing to unlearn.")
        batched = isinstance(data, torch.utils.data.DataLoader)
        xs = [torch.as_tensor(p[0]) for p in pairs]
        ys = [torch.as_tensor(p[1]).view(-1) for p in pairs]
        x = torch.cat(xs) if batched else torch.stack(xs)
        y = torch.cat(ys)
    else:
        raise MumisError(f"{what} must be an ImageDataset, an (x, y) pair of tensors, a DataLoader or a dataset of "
                         f"(x, y) pairs; got {type(data).__name__}")
    if len(y) == 0:
        raise MumisError(f"the {what} set is empty: there is nothing to unlearn.")
    if x.dim() != 4:
        raise MumisError(f"{what} inputs must be images shaped N×C×H×W, got shape {tuple(x.shape)}")
    if len(x) != len(y):
        raise MumisError(f"{what} has {len(x)} inputs but {len(y)} labels")
    if y.is_floating_point():
        raise MumisError(f"{what} labels must be integer class indices, got {y.dtype}")
    x = x.float()  # user tensors are model inputs as given, never re-normalised (see ImageDataset)
    if not torch.isfinite(x).all():
        raise MumisError(f"{what} inputs contain NaN or inf values; clean the data before unlearning")
    channels = x.shape[1]
    return ImageDataset(x.contiguous(), y.long(), tuple(str(k) for k in range(int(y.max()) + 1)), (0.0,) * channels,
                        (1.0,) * channels)


def _num_classes(model: nn.Module, data: ImageDataset, what: str) -> int:
    """Run one sample through the model: a shape the model cannot take, or labels beyond its logits, fail here."""
    x, y = data.batch(torch.arange(min(2, len(data))))
    try:
        with torch.no_grad(), borrowed(model):
            logits = model(x.to(device()))
    except RuntimeError as err:
        raise MumisError(f"the {what} inputs (shape {tuple(data.images.shape[1:])} per sample) do not fit the model: "
                         f"{str(err).splitlines()[0]}. Pass inputs shaped and normalised like its training data.") from None
    if logits.dim() != 2:
        raise MumisError(f"the model returns outputs of shape {tuple(logits.shape)}; a classifier returns N×K logits")
    k = logits.shape[1]
    bad = data.labels[(data.labels < 0) | (data.labels >= k)]
    if len(bad):
        raise MumisError(f"{what} labels {sorted(set(bad.tolist()))[:10]} are out of range: the model has {k} classes (0..{k - 1})")
    return k


def _mean_target_sensitivity(model: nn.Module, data: ImageDataset, limit: int = 512) -> float:
    part = data.subset(range(min(limit, len(data))))
    with borrowed(model):
        values = [logit_sensitivity(model, x.to(device()), y.to(device())) for x, y in iter_batches(part, 128)]
    return float(torch.cat(values).mean())


def unlearn(model: nn.Module, forget: Any, method: str = "auto", *, request: Optional[str] = None, heldout: Any = None,
            retain: Any = None, train_size: Optional[int] = None, inplace: bool = False, **options) -> UnlearnResult:
    """Serve a deletion request: unlearn ``forget`` from ``model``.

    ``request``: ``"class"`` (forget every sample of the class(es) — a retrained model never predicts them) or
    ``"samples"`` (forget just these samples — a retrained model still classifies most of them like unseen data).
    Left out, a forget set with several labels is a sample request, and one with a single label is refused with a
    line that asks which it is (four photos of one person's digit 3 are not the class 3).

    ``method="auto"`` picks the method and options that measured closest to a retrained model for the request kind
    and the data given (:mod:`mumis.methods.auto`): the forget set, ``heldout`` (samples of the same distribution
    the model never trained on), ``train_size`` (how many samples it was trained on), ``retain``. A method named
    explicitly runs with ``options`` (its Config fields). A method is handed only the data it declares.

    The model is not modified unless ``inplace=True``, and never moved off its device or out of its train/eval mode;
    the process's random streams are left as they were. A run whose weights end non-finite raises
    :class:`MumisError` naming the step and leaves the model untouched."""
    if not isinstance(model, nn.Module):
        raise MumisError(f"model must be a torch nn.Module, got {type(model).__name__}")
    data = as_dataset(forget, "forget")
    num_classes = _num_classes(model, data, "forget")
    extra = {role: as_dataset(value, role) for role, value in (("retain", retain), ("heldout", heldout)) if value is not None}
    for role, value in extra.items():
        _num_classes(model, value, role)
    if train_size is not None and (not isinstance(train_size, int) or train_size <= len(data)):
        raise MumisError(f"train_size={train_size!r} must be an integer above the {len(data)} forget samples (it counts "
                         "every sample the model was trained on, the forget set included)")
    kind, why_kind = infer_request(data.labels.tolist(), request)
    held = {"forget", *extra, *(["train_size"] if train_size is not None else [])}
    name, chosen, why = dataclasses.astuple(resolve(method, kind, held, options))
    if "train_size" in method_options(name) and train_size is not None:
        chosen.setdefault("train_size", train_size)
    unlearner = get_method(name, **chosen)
    offered = {"forget": data, **extra}
    granted = grant(unlearner, train_size=train_size,
                    **{role: offered.get(role.value) for role in unlearner.needs if role.value in offered})
    with isolated_global_state():
        before_acc, before_sens = accuracy(model, data), _mean_target_sensitivity(model, data)
        with stopwatch() as sw:
            result = run_method(unlearner, model, granted, num_classes)
        raise_if_diverged(result, name, "the model was not changed")
        unlearned = result.model.eval()
        after_acc, after_sens = accuracy(unlearned, data), _mean_target_sensitivity(unlearned, data)
    if inplace:
        model.load_state_dict(unlearned.state_dict())
        unlearned = model
    return UnlearnResult(
        model=unlearned, method=name, options=copy.deepcopy(unlearner.config_dict()), stop_reason=result.stop_reason,
        steps=result.steps, forget_acc_before=before_acc, forget_acc_after=after_acc,
        sensitivity_before=before_sens, sensitivity_after=after_sens, wall_s=sw.seconds,
        data_read=sorted(granted.reads), trace=result.trace, info=result.info, request=kind,
        why=f"{why_kind}; {why}",
    )

"""The method interface: a method declares the data it needs, and the framework grants exactly that.

A method receives a :class:`GrantedData`, which holds only the roles in its ``needs``; reading any other
role raises :class:`DataAccessError`, and :func:`grant` refuses outright to hand a method data it did not
declare. So a retain-free method cannot receive retain data by accident, by convention or by a forgotten
flag: the data never reaches it, and every read is logged in ``GrantedData.reads`` for the run manifest.
"""
from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from enum import Enum
from typing import Any, ClassVar, Optional

from torch import nn

from mumis.data import ImageDataset
from mumis.errors import MumisError


class DataRole(str, Enum):
    FORGET = "forget"  # the samples of the deletion request
    RETAIN = "retain"  # the rest of the training set (what remaining-data-free methods never see)
    HELDOUT = "heldout"  # data never trained on (a validation split), e.g. for a stop rule
    SURROGATE = "surrogate"  # auxiliary out-of-distribution data, given explicitly


class DataAccessError(MumisError):
    """A method asked for data it did not declare."""


class GrantedData:
    """The datasets one method run may read: exactly the roles the method declared — plus one count that is not
    data: ``train_size``, how many samples trained the model (|D_r| + |D_f|), where the caller knows it."""

    def __init__(self, method: str, datasets: dict[DataRole, ImageDataset], train_size: Optional[int] = None):
        self._method = method
        self._datasets = dict(datasets)
        self.train_size = train_size
        self.reads: set[str] = set()

    def __getattr__(self, name: str) -> ImageDataset:
        if name.startswith("_"):
            raise AttributeError(name)
        role = DataRole(name) if name in DataRole._value2member_map_ else None
        if role is None:
            raise AttributeError(name)
        if role not in self._datasets:
            raise DataAccessError(f"method {self._method!r} was not granted {role.value!r} data (it did not declare it)")
        self.reads.add(role.value)
        return self._datasets[role]

    @property
    def roles(self) -> frozenset[str]:
        return frozenset(r.value for r in self._datasets)


@dataclass
class MethodResult:
    model: nn.Module
    stop_reason: str
    steps: int
    trace: list[dict] = field(default_factory=list)  # one row per check: step, loss, sensitivities, forget acc
    info: dict = field(default_factory=dict)  # method-specific facts worth recording (e.g. starting sensitivities)


@dataclass(frozen=True)
class Space:
    """One option's tuning range, declared next to the method's Config: ``low``..``high``, sampled on a log scale
    (``log``) or linearly, as an integer (``integer``) or a float; ``source`` says where the range's centre comes
    from (the paper's or the official code's value)."""

    low: float
    high: float
    log: bool = True
    integer: bool = False
    source: str = ""

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and self.low <= value <= self.high


class UnlearningMethod(ABC):
    """Subclass, set ``name``, ``needs`` and ``Config`` (a dataclass of hyperparameters), implement ``run``.
    ``search_space`` names the options ``mumis tune`` searches, with their ranges.

    ``run`` receives its own deep copy of the model, so the caller's model is never changed.
    """

    name: ClassVar[str]
    needs: ClassVar[frozenset[DataRole]] = frozenset({DataRole.FORGET})
    Config: ClassVar[type]
    search_space: ClassVar[dict[str, Space]] = {}

    def __init__(self, config: Any = None, **overrides):
        base = config if config is not None else self.Config()
        known = {f.name for f in fields(self.Config)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise MumisError(f"method {self.name!r} has no option(s) {unknown}; its options are {sorted(known)}")
        self.config = replace(base, **overrides)

    @property
    def retain_free(self) -> bool:
        return DataRole.RETAIN not in self.needs

    def config_dict(self) -> dict:
        return asdict(self.config) if is_dataclass(self.config) else dict(self.config)

    @abstractmethod
    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        """Unlearn ``data.forget`` from ``model`` (already a private copy) and return the result."""


_HINTS = {
    DataRole.RETAIN: "It is not remaining-data-free: run it where the retain set is available, or pick a "
                     "retain-free method (mumis, ga, jit, boundary_shrink).",
    DataRole.SURROGATE: "Give another dataset's images as surrogate data (CLI: --surrogate DATASET; "
                        "benchmark: ExperimentConfig(surrogate=...)).",
}


def grant(method: UnlearningMethod, *, train_size: Optional[int] = None, **datasets: Optional[ImageDataset]) -> GrantedData:
    """Build the data a method may read. Data the method did not declare is refused, never passed along.
    ``train_size`` (a count, not data: |D_r| + |D_f|) is handed to every method that reads it."""
    given = {DataRole(k): v for k, v in datasets.items() if v is not None}
    extra = sorted(r.value for r in set(given) - set(method.needs))
    if extra:
        raise DataAccessError(
            f"method {method.name!r} does not use {', '.join(extra)} data "
            f"({'it is remaining-data-free' if method.retain_free else 'it did not declare it'}); do not pass it."
        )
    missing = sorted(r.value for r in set(method.needs) - set(given))
    if missing:
        hints = "".join(f" {_HINTS[r]}" for r in sorted(set(method.needs) - set(given)) if r in _HINTS)
        raise MumisError(f"method {method.name!r} needs {', '.join(missing)} data, which was not given.{hints}")
    if DataRole.FORGET in given and len(given[DataRole.FORGET]) == 0:
        raise MumisError("the forget set is empty: there is nothing to unlearn.")
    return GrantedData(method.name, given, train_size)


def run_method(method: UnlearningMethod, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
    """Run ``method`` on a deep copy of ``model``."""
    return method.run(copy.deepcopy(model), data, num_classes)


def raise_if_diverged(result: MethodResult, method: str, unchanged: str) -> None:
    """A run that ended on a non-finite or exploding loss (``stop_reason == "diverged"``) or with a non-finite weight
    or buffer is an error for a caller serving a request: name the step (or the tensor), and say what was left
    unchanged."""
    from mumis.training.checkpoint import nonfinite_tensors

    bad = nonfinite_tensors(result.model.state_dict())
    if result.stop_reason == "diverged" or bad:
        where = f"; {bad[0]!r} holds NaN or infinite values" if bad else ""
        raise MumisError(f"{method} diverged at step {result.steps + 1} (non-finite or exploding loss{where}); "
                         f"{unchanged}. Try a smaller step (e.g. the MU-Mis default, or a lower lr).")

"""The paper's four task kinds as objects: each turns a split into its forget set(s) and evaluation views.

- ``full_class``: every training sample of one class (``target`` = the class);
- ``sub_class``: every training sample of one fine class, its super-class staying a label (``target`` = the fine
  class; the task runs on the dataset's super-class view, see :mod:`mumis.data.superclass`);
- ``random``: a stratified ``target`` fraction of the training set (default 10 %);
- ``sequential``: requests ``sequence[0], sequence[1], …`` (classes, or fine classes with ``sequence_of =
  "sub_class"``) served one after another. Step k's method starts from step k−1's model and is given only the k-th
  request; it is scored on everything forgotten so far, against a retrain without all of it.

A task yields :class:`TaskStep` objects (one for the single-request kinds): the request a method receives and the
cumulative views it is scored on. Retrain references are trained by the benchmark from ``step.evaluation.retain``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from mumis.data.dataset import ImageDataset
from mumis.data.splits import ForgetSet, Split, build_forget_set, merge_requests
from mumis.data.superclass import superclass_view
from mumis.data.task import TaskData, task_from_views
from mumis.errors import MumisError

TASK_KINDS = ("full_class", "sub_class", "random", "sequential")


@dataclass(frozen=True)
class TaskSpec:
    kind: str = "full_class"
    target: float = 3  # the class, the fine class, or the fraction (unused by sequential)
    sequence: tuple[int, ...] = ()  # sequential: the requests in order
    sequence_of: str = "full_class"  # sequential: the kind of each request (full_class | sub_class)

    def __post_init__(self):
        if self.kind not in TASK_KINDS:
            raise MumisError(f"unknown task kind {self.kind!r}; choose one of: {', '.join(TASK_KINDS)}")
        if self.kind == "sequential":
            if len(self.sequence) < 1:
                raise MumisError("a sequential task needs a non-empty `sequence` of classes (or fine classes)")
            if self.sequence_of not in ("full_class", "sub_class"):
                raise MumisError(f"sequence_of must be full_class or sub_class, not {self.sequence_of!r}")
            if len(set(self.sequence)) != len(self.sequence):
                raise MumisError(f"a sequential task names each class once; got {list(self.sequence)}")
        object.__setattr__(self, "sequence", tuple(int(c) for c in self.sequence))

    @property
    def label(self) -> str:
        """Short name for tables: full_class=3, random=0.1, sequential(full_class)=3,7,1."""
        if self.kind == "sequential":
            return f"sequential({self.sequence_of})=" + ",".join(map(str, self.sequence))
        target = f"{self.target:g}" if isinstance(self.target, float) else str(self.target)
        return f"{self.kind}={target}"

    @property
    def needs_fine_labels(self) -> bool:
        return self.kind == "sub_class" or (self.kind == "sequential" and self.sequence_of == "sub_class")

    def dataset_for(self, dataset: str) -> str:
        """The dataset this task trains on when a grid names ``dataset``: its super-class view for sub-class tasks."""
        return superclass_view(dataset) if self.needs_fine_labels else dataset

    def to_dict(self) -> dict:
        return asdict(self)

    def requests(self, train: ImageDataset, split: Split, seed: int) -> list[ForgetSet]:
        if self.kind == "sequential":
            return [build_forget_set(self.sequence_of, train, split, c, seed=seed) for c in self.sequence]
        return [build_forget_set(self.kind, train, split, self.target, seed=seed)]

    def steps(self, train: ImageDataset, test: ImageDataset, split: Split, seed: int) -> list["TaskStep"]:
        requests = self.requests(train, split, seed)
        return [TaskStep.make(k + 1, requests[: k + 1], train, test, split) for k in range(len(requests))]


@dataclass(frozen=True)
class TaskStep:
    index: int  # 1-based position in the sequence (1 for single-request tasks)
    request: TaskData  # what a method is given: forget = this step's request, retain = everything still kept
    evaluation: TaskData  # what it is scored on: forget = everything forgotten so far

    @classmethod
    def make(cls, index: int, requests: list[ForgetSet], train: ImageDataset, test: ImageDataset, split: Split) -> "TaskStep":
        evaluation = task_from_views(train, test, split, merge_requests(requests))
        latest = requests[-1]
        request = replace(evaluation, forget=train.subset(latest.indices), forget_set=latest)
        return cls(index, request, evaluation)

    @property
    def forget_set(self) -> ForgetSet:
        return self.evaluation.forget_set


def parse_task(entry: dict | str, default_fraction: float = 0.1) -> TaskSpec:
    """A grid file's task entry: ``"random"`` or ``{kind = "full_class", target = 3}`` or
    ``{kind = "sequential", sequence = [3, 7, 1]}``."""
    if isinstance(entry, str):
        entry = {"kind": entry}
    entry = dict(entry)
    kind = entry.get("kind", "full_class")
    if kind == "random":
        entry.setdefault("target", default_fraction)
    unknown = set(entry) - {"kind", "target", "sequence", "sequence_of"}
    if unknown:
        raise MumisError(f"unknown task key(s) {sorted(unknown)}; a task takes kind, target, sequence, sequence_of")
    if "sequence" in entry:
        entry["sequence"] = tuple(entry["sequence"])
    return TaskSpec(**entry)


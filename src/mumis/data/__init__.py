"""Datasets, splits and forget sets (the bottom layer: imports nothing else from mumis)."""
from mumis.data import sources as _sources  # noqa: F401  (registers the loaders)
from mumis.data import superclass as _superclass  # noqa: F401  (registers the super-class views)
from mumis.data.dataset import DatasetBundle, ImageDataset, concat_datasets, iter_batches, iter_rank_batches
from mumis.data.registry import list_datasets, load_dataset, register_dataset
from mumis.data.splits import (
    FORGET_REQUESTS,
    ForgetSet,
    Split,
    atomic_write_text,
    build_forget_set,
    explicit_ids,
    full_class,
    make_split,
    merge_requests,
    most_memorised,
    random_fraction,
    sub_class,
)
from mumis.data.superclass import superclass_view
from mumis.data.surrogate import as_surrogate
from mumis.data.task import TaskData, build_task, task_from_views
from mumis.data.tasks import TASK_KINDS, TaskSpec, TaskStep, parse_task

__all__ = [
    "DatasetBundle", "ImageDataset", "as_surrogate", "concat_datasets", "iter_batches", "iter_rank_batches", "list_datasets", "load_dataset", "register_dataset",
    "ForgetSet", "Split", "TaskData", "build_task", "task_from_views", "FORGET_REQUESTS", "atomic_write_text", "build_forget_set", "explicit_ids", "full_class", "make_split", "merge_requests", "most_memorised", "random_fraction", "sub_class",
    "TASK_KINDS", "TaskSpec", "TaskStep", "parse_task", "superclass_view",
]

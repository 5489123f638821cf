"""Datasets, splits and forget sets (the bottom layer: imports nothing else from mumis)."""
from mumis.data import sources as _sources  # noqa: F401  (registers the loaders)
from mumis.data.dataset import DatasetBundle, ImageDataset, concat_datasets, iter_batches
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
    random_fraction,
    sub_class,
)
from mumis.data.surrogate import as_surrogate
from mumis.data.task import TaskData, build_task, task_from_views

__all__ = [
    "DatasetBundle", "ImageDataset", "as_surrogate", "concat_datasets", "iter_batches", "list_datasets", "load_dataset", "register_dataset",
    "ForgetSet", "Split", "TaskData", "build_task", "task_from_views", "FORGET_REQUESTS", "atomic_write_text", "build_forget_set", "explicit_ids", "full_class", "make_split", "random_fraction", "sub_class",
]

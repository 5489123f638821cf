"""An unlearning task made concrete: the forget, retain and test views of one split and forget set."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from mumis.data.dataset import DatasetBundle, ImageDataset
from mumis.data.splits import ForgetSet, Split


@dataclass(frozen=True)
class TaskData:
    forget: ImageDataset  # D_f
    retain: ImageDataset  # D_r = train \ D_f
    test: ImageDataset  # D_t, without the forgotten class/sub-class for class tasks
    test_forgotten: Optional[ImageDataset]  # test samples of the forgotten class/sub-class (class tasks)
    split: Split
    forget_set: ForgetSet

    @property
    def num_classes(self) -> int:
        return self.test.num_classes

    @property
    def heldout(self) -> ImageDataset:
        """Data the model never trained on, for methods that declare a ``heldout`` need (e.g. a stop rule):
        every other test sample (positions 0, 2, 4, …). TA stays on the whole test set, so a method that reads
        this half saw one number per check about it — disclosed wherever such a method is reported."""
        return self.test.subset(range(0, len(self.test), 2))


def build_task(bundle: DatasetBundle, split: Split, forget_set: ForgetSet) -> TaskData:
    """Check that the split fits the data and the forget set fits the split, then cut the views."""
    train, test = split.materialise(bundle)
    return task_from_views(train, test, split, forget_set)


def task_from_views(train: ImageDataset, test: ImageDataset, split: Split, forget_set: ForgetSet) -> TaskData:
    """The same, for callers that already hold ``split.materialise(bundle)`` (no second copy of the images)."""
    forget_set.check_split(split)
    forget, retain = forget_set.partition(train)
    test_kept, test_gone = forget_set.test_partition(test)
    return TaskData(forget, retain, test_kept, test_gone, split, forget_set)

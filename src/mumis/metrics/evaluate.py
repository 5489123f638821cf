"""All the numbers of one result row for a model on one unlearning task."""
from __future__ import annotations

from torch import nn

from mumis.data import TaskData
from mumis.metrics.accuracy import accuracy
from mumis.metrics.mia import mia_efficacy


def evaluate(model: nn.Module, task: TaskData) -> dict[str, float]:
    """FA, RA, TA, MIA-efficacy and (class tasks) the forgotten class's test accuracy, all in percent.

    FA = accuracy on D_f (forget-train); RA = accuracy on D_r (retain-train); TA = accuracy on the test set,
    without the forgotten class or sub-class for class tasks (its accuracy is ``forgotten_test_acc``).
    """
    return {
        "fa": accuracy(model, task.forget),
        "ra": accuracy(model, task.retain),
        "ta": accuracy(model, task.test),
        "mia": mia_efficacy(model, task.retain, task.test, task.forget),
        "forgotten_test_acc": accuracy(model, task.test_forgotten),
    }

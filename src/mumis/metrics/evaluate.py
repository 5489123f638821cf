"""All the numbers of one result row for a model on one unlearning task."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from mumis.data import TaskData
from mumis.metrics.accuracy import predict_logits
from mumis.metrics.mia import mia_efficacy_from_confidence, true_class_confidence


def task_logits(model: nn.Module, task: TaskData) -> dict[str, Optional[torch.Tensor]]:
    """The model's logits on D_f, D_r, D_t and (class tasks) the forgotten class's test samples: each dataset goes
    through the model once, and every metric of a row is derived from these."""
    gone = task.test_forgotten
    return {"forget": predict_logits(model, task.forget), "retain": predict_logits(model, task.retain),
            "test": predict_logits(model, task.test),
            "test_forgotten": predict_logits(model, gone) if gone is not None and len(gone) else None}


def _accuracy(logits: Optional[torch.Tensor], labels) -> float:
    if logits is None or len(logits) == 0:
        return float("nan")
    return 100.0 * (logits.argmax(1) == labels).float().mean().item()


def evaluate(model: nn.Module, task: TaskData, logits: Optional[dict] = None) -> dict[str, float]:
    """FA, RA, TA, MIA-efficacy and (class tasks) the forgotten class's test accuracy, all in percent.

    FA = accuracy on D_f (forget-train); RA = accuracy on D_r (retain-train); TA = accuracy on the test set,
    without the forgotten class or sub-class for class tasks (its accuracy is ``forgotten_test_acc``); MIA = SalUn's
    MIA-efficacy (:mod:`mumis.metrics.mia`: shadow "in" = the first |D_t| samples of D_r). ``logits`` from
    :func:`task_logits` may be passed to avoid a second forward pass.
    """
    logits = logits or task_logits(model, task)
    f, r, t = logits["forget"], logits["retain"], logits["test"]
    conf = {k: true_class_confidence(v, d.labels) for k, v, d in (("f", f, task.forget), ("r", r, task.retain), ("t", t, task.test))}
    return {
        "fa": _accuracy(f, task.forget.labels),
        "ra": _accuracy(r, task.retain.labels),
        "ta": _accuracy(t, task.test.labels),
        "mia": float(mia_efficacy_from_confidence(conf["r"][: min(len(task.test), len(task.retain))], conf["t"], conf["f"])),
        "forgotten_test_acc": _accuracy(logits["test_forgotten"], task.test_forgotten.labels
                                        if task.test_forgotten is not None else None),
    }


def forget_metrics(model: nn.Module, task: TaskData) -> dict[str, float]:
    """FA and MIA-efficacy exactly as :func:`evaluate` computes them, from only the data they read: D_f, D_t and the
    first |D_t| samples of D_r (the attack's shadow "in" set) — what a deletion manifest records before and after."""
    n = min(len(task.test), len(task.retain))
    f, r, t = (predict_logits(model, d) for d in (task.forget, task.retain.subset(range(n)), task.test))
    return {"fa": _accuracy(f, task.forget.labels),
            "mia": float(mia_efficacy_from_confidence(true_class_confidence(r, task.retain.labels[:n]),
                                                      true_class_confidence(t, task.test.labels),
                                                      true_class_confidence(f, task.forget.labels)))}

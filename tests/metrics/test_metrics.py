"""Golden values on fixed synthetic inputs."""
import numpy as np
import pytest
import torch
from torch import nn

from mumis.data import ImageDataset
from mumis.metrics import (
    accuracy,
    avg_gap,
    mia_efficacy,
    mia_efficacy_from_confidence,
    true_class_confidence,
)


class _FixedLogits(nn.Module):
    """Returns a stored logit row per sample: the sample's first pixel holds its row index."""

    def __init__(self, logits):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(logits, dtype=torch.float32))

    def forward(self, x):
        return self.table[x[:, 0, 0, 0].round().long()]


def _indexed_dataset(labels, offset=0):
    n = len(labels)
    images = torch.zeros(n, 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(offset, offset + n, dtype=torch.uint8)
    return ImageDataset(images, torch.as_tensor(labels), ("a", "b", "c"), (0.0,), (1 / 255,))


def test_accuracy_golden():
    logits = [[2, 1, 0], [0, 3, 1], [0, 0, 5], [4, 0, 0]]
    data = _indexed_dataset([0, 1, 1, 2])
    assert accuracy(_FixedLogits(logits), data) == pytest.approx(50.0)
    assert np.isnan(accuracy(_FixedLogits(logits), None))


def test_true_class_confidence_golden():
    conf = true_class_confidence(torch.tensor([[0.0, 0.0], [np.log(3.0), 0.0]]), torch.tensor([0, 0]))
    assert conf == pytest.approx([0.5, 0.75])


def test_mia_efficacy_golden_on_separable_confidences():
    members = np.linspace(0.97, 1.0, 40)  # shadow "in": confident
    non_members = np.linspace(0.0, 0.03, 40)  # shadow "out": not
    targets = np.array([0.99, 0.985, 0.98, 0.01])  # three look like members, one does not
    assert mia_efficacy_from_confidence(members, non_members, targets) == pytest.approx(25.0)
    assert mia_efficacy_from_confidence(members, non_members, np.array([0.0, 0.02])) == pytest.approx(100.0)


def test_mia_efficacy_uses_first_test_sized_slice_of_retain():
    # logits row i → softmax confidence of class 0; retain rows 0..9 confident, rows 10.. unconfident (unused)
    conf_logit = lambda p: [np.log(p / (1 - p)), 0.0, -50.0]  # noqa: E731  (p_0 ≈ p with class 2 negligible)
    rows = [conf_logit(0.99)] * 10 + [conf_logit(0.01)] * 10 + [conf_logit(0.02)] * 10 + [conf_logit(0.98)] * 2
    model = _FixedLogits(rows)
    retain = _indexed_dataset([0] * 20, offset=0)  # rows 0..19
    test = _indexed_dataset([0] * 10, offset=20)  # rows 20..29
    forget = _indexed_dataset([0] * 2, offset=30)  # rows 30..31: member-like
    assert mia_efficacy(model, retain, test, forget) == pytest.approx(0.0)


def test_avg_gap_golden():
    row = {"fa": 10.0, "ra": 90.0, "ta": 80.0, "mia": 50.0}
    ref = {"fa": 0.0, "ra": 95.0, "ta": 85.0, "mia": 100.0}
    assert avg_gap(row, ref) == pytest.approx((10 + 5 + 5 + 50) / 4)
    assert avg_gap(row, ref, keys=("fa", "ra", "ta")) == pytest.approx(20 / 3)
    assert avg_gap(ref, ref) == 0.0

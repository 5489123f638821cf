"""Golden values on fixed synthetic inputs, for every metric of the evaluation suite."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from mumis.data import ImageDataset
from mumis.metrics import (
    accuracy,
    avg_gap,
    evaluate,
    forget_metrics,
    js_divergence,
    kl_divergence,
    loss_mia_from_losses,
    mean_ci,
    mia_efficacy,
    mia_efficacy_from_confidence,
    mia_efficacy_stratified,
    per_sample_loss,
    relearn_steps,
    rise_fractions,
    sensitivity_profile,
    tow,
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


def test_kl_and_js_golden():
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    q = torch.tensor([[0.25, 0.75], [1.0, 0.0]])
    kl_row0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kl_divergence(p, q) == pytest.approx(kl_row0 / 2)
    assert kl_divergence(p, p) == 0.0
    js_row0 = 0.5 * (0.5 * math.log(0.5 / 0.375) + 0.5 * math.log(0.5 / 0.625)) + 0.5 * (
        0.25 * math.log(0.25 / 0.375) + 0.75 * math.log(0.75 / 0.625))
    assert js_divergence(p[:1], q[:1]) == pytest.approx(js_row0)
    assert js_divergence(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])) == pytest.approx(math.log(2))


def test_tow_golden():
    ref = {"fa": 0.0, "ra": 100.0, "ta": 90.0}
    assert tow(ref, ref) == 1.0
    assert tow({"fa": 10.0, "ra": 95.0, "ta": 90.0}, ref) == pytest.approx(0.9 * 0.95)
    assert tow({"fa": 100.0, "ra": 100.0, "ta": 90.0}, ref) == 0.0


def test_mean_ci_golden():
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0
    assert half == pytest.approx(4.302652729911275 / math.sqrt(3))  # t_{0.975, 2} · s / √3 with s = 1
    assert mean_ci([5.0])[0] == 5.0 and math.isnan(mean_ci([5.0])[1])
    assert all(math.isnan(v) for v in mean_ci([]))
    assert mean_ci([1.0, float("nan"), 3.0])[0] == 2.0


def test_per_sample_loss_and_loss_mia_golden():
    loss = per_sample_loss(torch.tensor([[0.0, 0.0], [2.0, 0.0]]), torch.tensor([0, 1]))
    assert loss == pytest.approx([math.log(2), 2 + math.log(1 + math.exp(-2))])
    separable = loss_mia_from_losses(np.full(50, 0.01) + np.linspace(0, 0.01, 50), np.full(50, 3.0) + np.linspace(0, 1, 50))
    assert separable == pytest.approx(100.0)
    same = np.linspace(0, 1, 200)
    assert loss_mia_from_losses(same, same.copy()) == pytest.approx(50.0, abs=15)
    assert math.isnan(loss_mia_from_losses(np.ones(3), np.ones(3)))


def test_stratified_mia_draws_shadow_in_with_the_test_class_mix():
    # retain rows 0..9: class 0 at p = 0.5; rows 10..19: class 1, confident. test rows 20..29: class 1 at p = 0.5.
    # forget rows 30..31: class 1, confident (member-like). SalUn's first-n slice takes the class-0 rows as
    # shadow "in" (p = 0.5, like the test rows): no signal. The stratified draw takes class-1 retain rows
    # (the test set's class mix): confident = member, so both forget rows are called members → efficacy 0.
    rows = [[0.0, 0.0]] * 10 + [[-5.0, 5.0]] * 10 + [[0.0, 0.0]] * 10 + [[-5.0, 5.0]] * 2
    retain = _indexed_dataset([0] * 10 + [1] * 10)
    test = _indexed_dataset([1] * 10, offset=20)
    forget = _indexed_dataset([1, 1], offset=30)
    model = _FixedLogits(rows)
    assert mia_efficacy_stratified(model, retain, test, forget, seed=0) == pytest.approx(0.0)
    assert mia_efficacy_stratified(model, retain, test, forget, seed=3) == pytest.approx(0.0)


class _Linear(nn.Module):
    def __init__(self, weight):
        super().__init__()
        self.fc = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(weight)

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_sensitivity_profile_golden_on_a_linear_model():
    # f(x) = W x  ⇒  ∇x f_k = W_k for every x: target ‖W_c‖, irrelevant = mean of the other rows' norms, full ‖W‖_F
    weight = torch.tensor([[3.0, 4.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 2.0]])
    data = _indexed_dataset([0, 1, 2])
    profile = sensitivity_profile(_Linear(weight), data)
    assert profile["target"] == pytest.approx([5.0, 1.0, 2.0])
    assert profile["irrelevant"] == pytest.approx([1.5, 3.5, 3.0])
    assert profile["full"] == pytest.approx([math.sqrt(30)] * 3)


def test_rise_fractions_golden():
    before = {"target": np.array([1.0, 2.0, 3.0, 4.0]), "irrelevant": np.array([1.0, 1.0, 1.0, 1.0])}
    after = {"target": np.array([2.0, 1.0, 3.0, 5.0]), "irrelevant": np.array([0.5, 2.0, 1.0, 1.0])}
    assert rise_fractions(before, after) == {"target_up": 50.0, "irrelevant_up": 25.0, "gap_up": 50.0}


def test_relearn_steps(digits_task, digits_model):
    forget = digits_task.forget
    assert relearn_steps(digits_model, forget, target_fa=100.0) == 0.0  # already knows D_f
    blank = _Linear(torch.zeros(10, 64))
    steps = relearn_steps(blank, forget, target_fa=100.0, threshold=5.0, max_steps=100)
    assert 1 <= steps <= 100
    assert math.isnan(relearn_steps(blank, forget, target_fa=200.0, max_steps=3))  # unreachable → NaN
    assert (blank.fc.weight == 0).all()  # the model passed in is not modified


def test_forget_metrics_are_evaluates_fa_and_mia_from_less_data(digits_model, digits_task):
    full = evaluate(digits_model, digits_task)
    assert forget_metrics(digits_model, digits_task) == {"fa": full["fa"], "mia": full["mia"]}

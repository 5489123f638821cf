"""The representation probe against scikit-learn run by hand, and what it can and cannot see."""
import copy

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from mumis.data import concat_datasets
from mumis.metrics import linear_probe_accuracy, penultimate_features


def test_probe_is_logistic_regression_on_the_standardised_head_inputs(digits_task):
    fit_on, evaluate_on = digits_task.test, digits_task.forget
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).eval()  # the head's input is the (normalised) image
    x_fit, y_fit = fit_on.tensors()
    x_eval, y_eval = evaluate_on.tensors()
    assert np.allclose(penultimate_features(model, fit_on), x_fit.flatten(1).double().numpy())
    scaler = StandardScaler().fit(x_fit.flatten(1).double().numpy())
    by_hand = LogisticRegression(max_iter=2000, random_state=0).fit(scaler.transform(x_fit.flatten(1).double().numpy()),
                                                                    y_fit.numpy())
    expected = 100.0 * (by_hand.predict(scaler.transform(x_eval.flatten(1).double().numpy())) == y_eval.numpy()).mean()
    assert linear_probe_accuracy(model, fit_on, evaluate_on) == pytest.approx(expected)


def test_a_head_only_change_leaves_the_probe_where_it_was(digits_model, digits_task):
    """Forgetting a class by moving only its head row: the head now misclassifies it, the features do not."""
    c = int(digits_task.forget.labels[0])
    edited = copy.deepcopy(digits_model)
    head = [m for m in edited.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        head.bias[c] -= 1e3  # class c is never predicted any more
    unseen = concat_datasets(digits_task.test, digits_task.test_forgotten)  # every class, never trained on
    before = linear_probe_accuracy(digits_model, unseen, digits_task.forget)
    after = linear_probe_accuracy(edited, unseen, digits_task.forget)
    assert after == before > 90.0
    assert (edited(digits_task.forget.tensors()[0]).argmax(1) == c).sum() == 0

"""The shared machinery of MU-Mis runs: logits read from cached features when only the head moves, and checks
that then cost nothing, so a class request stops at the first step that reaches its floor."""
import copy

import torch

from mumis.methods import get_method, grant, run_method
from mumis.methods.forget_descent import ForgetDescent
from mumis.metrics.accuracy import predict_logits


def test_cached_logits_follow_the_moving_head(digits_model, digits_task):
    model = copy.deepcopy(digits_model)
    run = ForgetDescent(model, digits_task.forget, 10, "head", 64, seed=0, memory_budget_mb=256)
    assert run.checks_are_free
    before = run.logits(digits_task.forget)
    assert torch.allclose(before, predict_logits(model, digits_task.forget), atol=1e-5)
    with torch.no_grad():  # move the head: the cached features stay valid, the logits must follow
        for p in run.weights:
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    after = run.logits(digits_task.forget)
    assert not torch.allclose(after, before, atol=1e-3)
    assert torch.allclose(after, predict_logits(model, digits_task.forget), atol=1e-4)
    assert torch.allclose(run.logits(digits_task.test), predict_logits(model, digits_task.test), atol=1e-4)


def test_checks_are_not_free_when_every_layer_moves(digits_model, digits_task):
    run = ForgetDescent(copy.deepcopy(digits_model), digits_task.forget, 10, "all", 64, seed=0, memory_budget_mb=256)
    assert not run.checks_are_free


def test_a_class_request_stops_at_the_first_step_that_reaches_its_floor(digits_model, digits_task):
    """With free checks the default looks after every step; made to look only at its step cap, it overshoots."""
    method = get_method("mumis", show_progress=False)
    result = run_method(method, digits_model, grant(method, forget=digits_task.forget), 10)
    steps = [row["step"] for row in result.trace]
    assert steps == list(range(result.steps + 1)) and result.stop_reason == "fa_floor"
    assert all(row["forget_acc"] > 0 for row in result.trace[:-1]) and result.trace[-1]["forget_acc"] == 0
    # the sensitivities cost backprops: measured at the start and for the model handed back, not in between
    assert [("target" in row) for row in result.trace] == [True] + [False] * (len(steps) - 2) + [True]
    late = get_method("mumis", show_progress=False, check_every=1000, max_steps=result.steps + 5)
    overshoot = run_method(late, digits_model, grant(late, forget=digits_task.forget), 10)
    assert [row["step"] for row in overshoot.trace] == [0, result.steps + 5]

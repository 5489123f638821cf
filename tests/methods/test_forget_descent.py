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


def test_a_descent_step_is_the_sgd_step_bit_for_bit(digits_model, digits_task):
    """w ← w − lr·g without torch.optim is SGD without momentum or weight decay, to the last bit."""
    ours = ForgetDescent(copy.deepcopy(digits_model), digits_task.forget, 10, "all", 64, seed=0, memory_budget_mb=256)
    theirs = copy.deepcopy(ours.weights)
    grads = [torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) for i, p in enumerate(theirs)]
    ours.descend(grads, 0.37)
    optimizer = torch.optim.SGD(theirs, lr=0.37)
    for p, g in zip(theirs, grads):
        p.grad = g
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(ours.weights, theirs))


def test_a_class_request_does_not_import_the_compiler(tmp_path):
    """torch.optim's first use imports torch._dynamo (1.7 s on 2 cores, longer than the request itself): a fresh
    process that serves a class request never pays it."""
    import subprocess
    import sys
    script = (
        "import sys, torch\n"
        "from sklearn.datasets import load_digits\n"
        "import mumis\n"
        "from mumis.models import create_model\n"
        "x, y = load_digits(return_X_y=True)\n"
        "x = torch.tensor(x[y == 3][:40] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)\n"
        "torch.manual_seed(0)\n"
        "model = create_model('small_cnn', 10, 1)\n"
        "mumis.unlearn(model, (x, torch.full((len(x),), 3)), request='class', max_steps=3, show_progress=False)\n"
        "assert 'torch._dynamo' not in sys.modules, 'torch._dynamo was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]

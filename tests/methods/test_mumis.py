import copy
import dataclasses
import math

import pytest
import torch
from torch import nn

from mumis.bench.experiment import apply_method
from mumis.data import ImageDataset
from mumis.errors import MumisError
from mumis.methods import DataAccessError, DataRole, get_method, grant, mumis_loss, run_method
from mumis.methods.forget_descent import sharpest_curvature
from mumis.methods.mumis import VARIANTS, MuMis, MuMisConfig, _ForgetAccuracy
from mumis.methods.stopping import DipRecoverRule, accuracy_tolerance, membership_threshold
from mumis.metrics import accuracy
from mumis.models import classifier_head, create_model


def _naive_loss(model, x, y, other):
    """Per-sample autograd, one sample at a time: the definition, with no batching trick."""
    terms = []
    for i in range(len(x)):
        xi = x[i : i + 1].clone().requires_grad_(True)
        out = model(xi)[0]
        (gc,) = torch.autograd.grad(out[y[i]], xi, create_graph=True)
        (go,) = torch.autograd.grad(out[other[i]], xi, create_graph=True)
        terms.append(gc.pow(2).sum() - go.pow(2).sum())
    return torch.stack(terms).mean()


@pytest.mark.parametrize("arch", ["small_cnn", "resnet_small"])
def test_loss_and_weight_gradient_match_per_sample_autograd(arch):
    torch.manual_seed(0)
    model = create_model(arch, 5, 1).double()
    for m in model.modules():  # give BatchNorm non-trivial statistics, then freeze it as MU-Mis does
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(6, 1, 12, 12, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    other = torch.tensor([1, 2, 3, 4, 0, 3])
    fast, target_sq, other_sq = mumis_loss(model, x, y, other)
    slow = _naive_loss(model, x, y, other)
    assert torch.allclose(fast, slow, rtol=1e-10, atol=1e-12)
    params = list(model.parameters())
    # The last layer's bias does not move input gradients, so it gets no gradient from either form.
    g_fast = torch.autograd.grad(fast, params, allow_unused=True)
    g_slow = torch.autograd.grad(slow, params, allow_unused=True)
    for a, b in zip(g_fast, g_slow):
        assert (a is None) == (b is None)
        if a is not None:
            assert torch.allclose(a, b, rtol=1e-8, atol=1e-12)
    assert (target_sq >= 0).all() and (other_sq >= 0).all()


def test_batchnorm_in_train_mode_is_refused():
    model = create_model("small_cnn", 3, 1).train()
    with pytest.raises(RuntimeError, match="eval mode"):
        mumis_loss(model, torch.randn(2, 1, 8, 8), torch.tensor([0, 1]), torch.tensor([1, 2]))


# ----------------------------------------------------------------------------- the stop rule
def _first_fire(values, delta=0.9):
    rule = DipRecoverRule(delta)
    for i, v in enumerate(values):
        if rule.update(v):
            return i
    return None


def test_rule_fires_after_dip_and_recovery():
    assert _first_fire([1.0, 0.8, 0.6, 0.7, 0.85, 0.95, 1.1]) == 5


def test_rule_never_fires_without_a_dip():
    assert _first_fire([1.0, 1.05, 1.2, 1.5, 3.0]) is None  # rises from the first step
    assert _first_fire([1.0, 1.0, 1.0]) is None


def test_rule_does_not_fire_at_step_zero_or_while_falling():
    assert _first_fire([1.0]) is None
    assert _first_fire([1.0, 0.9, 0.8, 0.7]) is None


def test_rule_ignores_a_shallow_dip():
    # a 2 % dip and a noisy uptick is not the paper's dip-and-recovery: it must reach below δ·S0 first
    assert _first_fire([1.0, 0.99, 0.98, 0.985, 1.0, 1.2]) is None
    assert _first_fire([1.0, 0.99, 0.98, 0.985, 1.0, 1.2], delta=1.1) == 5


def test_rule_waits_for_delta():
    assert _first_fire([1.0, 0.5, 0.6, 0.7, 0.8]) is None  # rising but still below 0.9·S0
    assert _first_fire([1.0, 0.5, 0.6, 0.7, 0.8], delta=0.75) == 4


# ----------------------------------------------------------------------------- behaviour on real data
def _run(model, task, **options):
    options.setdefault("variant", "paper")  # these tests pin down the paper's method and its variations
    method = get_method("mumis", show_progress=False, **options)
    return run_method(method, model, grant(method, forget=task.forget), task.num_classes)


def test_mumis_forgets_a_class_on_digits_and_keeps_the_rest(digits_model, digits_task):
    before = {k: accuracy(digits_model, getattr(digits_task, k)) for k in ("forget", "retain", "test")}
    result = _run(digits_model, digits_task, variant="default")
    after = {k: accuracy(result.model, getattr(digits_task, k)) for k in ("forget", "retain", "test")}
    assert before["forget"] > 90
    assert after["forget"] <= 20, (before, after, result.stop_reason)
    assert after["retain"] >= before["retain"] - 15 and after["test"] >= before["test"] - 15
    assert result.trace[0]["step"] == 0 and result.trace[0]["forget_acc"] == pytest.approx(before["forget"])
    assert {"target", "irrelevant", "loss", "forget_acc"} <= set(result.trace[-1])
    assert result.stop_reason == "fa_floor"


def test_the_stall_rule_compares_passes_not_steps():
    """Forget accuracy that falls one point every 5 steps never stays still for a whole 4-step pass when read once
    per pass; read step by step it would look stalled at step 9. It stops falling at step 20: stalled at 24."""
    rule = _ForgetAccuracy(floor=0.0, stall_passes=1.0, per_pass=4)
    fired = [(t, rule({"step": t, "forget_acc": 50.0 - min(t, 20) // 5})) for t in range(40)]
    assert [(t, r) for t, r in fired if r][0] == (24, "fa_stalled")
    assert _ForgetAccuracy(floor=47.0, stall_passes=1.0, per_pass=4)({"step": 0, "forget_acc": 50.0}) is None
    floor = _ForgetAccuracy(floor=47.0, stall_passes=1.0, per_pass=4)
    assert [t for t in range(40) if floor({"step": t, "forget_acc": 50.0 - min(t, 20) // 5})][0] == 15  # every step


def test_a_class_request_does_not_wait_for_the_last_sample_in_a_thousand():
    """Forget accuracy as a Fashion-MNIST class request read it (6,000 samples, 94 steps a pass): one sample stayed in
    the class from step 24 on. The default stops at the first reading within 0.1 points of the retrain's 0 % — one
    sample is 0.017 % — where waiting for 0 % ran until the stall rule, 188 steps; two in a thousand is not done."""
    readings = {0: 92.6, 6: 17.5, 12: 0.95, 16: 0.23, 18: 0.067, 24: 0.017}
    default = _ForgetAccuracy(MuMisConfig().fa_floor, MuMisConfig().stall_passes, per_pass=94)
    assert [t for t, fa in readings.items() if default({"step": t, "forget_acc": fa})] == [18, 24]
    exact = _ForgetAccuracy(0.0, 1.0, per_pass=94)
    fired = [(t, exact({"step": t, "forget_acc": readings[max(k for k in readings if k <= t)]})) for t in range(300)]
    assert [(t, r) for t, r in fired if r][0] == (188, "fa_stalled")
    assert _ForgetAccuracy(MuMisConfig().fa_floor, None, 94)({"step": 5, "forget_acc": 0.2}) is None


def test_a_class_request_stops_one_pass_after_forget_accuracy_stops_falling(digits_model, digits_task):
    """A floor that cannot be reached stands in for a few stubborn samples: the run ends on the stall rule, one pass
    over D_f after the last pass that lowered forget accuracy, not at the step cap — checked after every step, the
    stall still compares passes, so a pause within a pass does not end a decline."""
    result = get_method("mumis", fa_floor=-1.0, max_steps=500, check_every=1, show_progress=False)
    result = run_method(result, digits_model, grant(result, forget=digits_task.forget), 10)
    per_pass = math.ceil(len(digits_task.forget) / 64)
    assert [row["step"] for row in result.trace] == list(range(result.steps + 1))
    best, last_drop = result.trace[0]["forget_acc"], 0
    for row in result.trace[per_pass::per_pass]:  # the first check of each pass
        if row["forget_acc"] < best:
            best, last_drop = row["forget_acc"], row["step"]
    assert result.stop_reason == "fa_stalled" and result.steps == last_drop + per_pass < 500
    off = get_method("mumis", fa_floor=-1.0, max_steps=40, check_every=1, stall_passes=None, show_progress=False)
    assert run_method(off, digits_model, grant(off, forget=digits_task.forget), 10).stop_reason == "max_steps"


def test_mumis_never_mutates_the_callers_model(digits_model, digits_task):
    state = copy.deepcopy(digits_model.state_dict())
    _run(digits_model, digits_task, max_steps=3)
    for k, v in digits_model.state_dict().items():
        assert torch.equal(v, state[k])


def test_max_steps_cap_is_respected(digits_model, digits_task):
    result = _run(digits_model, digits_task, max_steps=4, check_every=1, delta=0.0)
    assert result.steps <= 4
    assert result.stop_reason in {"max_steps", "dip_recover"}
    capped = _run(digits_model, digits_task, max_steps=2, check_every=1, delta=5.0)
    assert capped.steps == 2 and capped.stop_reason == "max_steps"


def test_divergence_returns_last_good_weights(digits_model, digits_task):
    result = _run(digits_model, digits_task, lr=50.0, check_every=1, max_steps=200)
    assert result.stop_reason == "diverged"
    assert all(math.isfinite(p.abs().max().item()) for p in result.model.parameters())
    restored = result.info["restored_step"]
    assert restored == result.trace[-1]["step"]
    assert result.steps >= restored


# ----------------------------------------------------------------------------- the retain-free guarantee
class _Tripwire(ImageDataset):
    """A retain set that fails the test on any read of its samples."""

    def batch(self, index):
        raise AssertionError("retain data was read")

    def subset(self, index):
        raise AssertionError("retain data was read")


def test_mumis_cannot_be_given_retain_data(digits_task):
    method = get_method("mumis")
    with pytest.raises(DataAccessError, match="remaining-data-free"):
        grant(method, forget=digits_task.forget, retain=digits_task.retain)
    data = grant(method, forget=digits_task.forget)
    with pytest.raises(DataAccessError, match="not granted 'retain'"):
        data.retain  # noqa: B018 — asking is already an error


def test_mumis_never_reads_retain_data(digits_model, digits_task):
    """The task passed to the framework holds a retain set that explodes on any read; MU-Mis runs anyway."""
    r = digits_task.retain
    task = dataclasses.replace(digits_task, retain=_Tripwire(r.images, r.labels, r.classes, r.mean, r.std))
    with pytest.raises(AssertionError, match="retain data was read"):
        task.retain.batch(torch.arange(2))  # the tripwire works
    method = get_method("mumis", show_progress=False, max_steps=6, check_every=2)
    result, data, _ = apply_method(method, digits_model, task)
    assert data.reads == {"forget"} and data.roles == {"forget"}
    assert result.steps > 0


def test_mumis_works_on_a_users_own_module(digits_task):
    """Any nn.Module classifier: here a plain MLP with no BatchNorm, built and trained by the user."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 10))
    x, y = digits_task.retain.tensors()
    fx, fy = digits_task.forget.tensors()
    x, y = torch.cat([x, fx]), torch.cat([y, fy])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    result = _run(model, digits_task, max_steps=30, check_every=5)
    assert result.steps > 0 and result.trace[-1]["forget_acc"] <= result.trace[0]["forget_acc"]
    assert all(torch.isfinite(p).all() for p in result.model.parameters())


def test_chunked_full_batch_step_matches_the_unchunked_one(digits_model, digits_task):
    """A memory budget splits a batch into chunks; the gradients add up to the same step."""
    runs = {chunk: _run(digits_model, digits_task, batch_size=4096, chunk_size=chunk, max_steps=3) for chunk in (0, 16)}
    assert runs[16].info["chunk_size"] == 16 and runs[0].info["chunk_size"] == len(digits_task.forget)
    for (name, a), b in zip(runs[0].model.state_dict().items(), runs[16].model.state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), name
    assert runs[0].steps == runs[16].steps == 3


def test_chunk_size_follows_the_memory_budget(digits_model, digits_task):
    chunks = [_run(digits_model, digits_task, variant="default", batch_size=4096, memory_budget_mb=mb, max_steps=2)
              .info["chunk_size"] for mb in (0.5, 512)]
    assert 1 <= chunks[0] < chunks[1] <= len(digits_task.forget)


# ----------------------------------------------------------------------------- the default, and sample requests
def test_head_only_update_leaves_the_features_bit_identical(digits_model, digits_task):
    result = _run(digits_model, digits_task, update="head", lr_scale="curvature", lr=0.1, max_steps=4, check_every=2,
                  delta=5.0)
    head = [m for m in result.model.modules() if isinstance(m, nn.Linear)][-1]
    head_ids = {id(p) for p in head.parameters()}
    for (name, p), q in zip(result.model.named_parameters(), digits_model.parameters()):
        if id(p) not in head_ids:
            assert torch.equal(p, q), name
    original_head = [m for m in digits_model.modules() if isinstance(m, nn.Linear)][-1]
    assert not torch.equal(head.weight, original_head.weight)  # (the bias gets no gradient: it does not move ∇x f)
    assert all(p.requires_grad for p in result.model.parameters())  # handed back as a normal model
    with pytest.raises(MumisError, match="no layer that maps features to its 10 logits"):
        conv_only = nn.Sequential(nn.Conv2d(1, 10, 8), nn.Flatten())
        _run(conv_only, digits_task, update="head")


def test_curvature_estimate_is_exact_on_a_quadratic():
    """Power iteration with finite-difference Hessian-vector products recovers λ_max of ½ wᵀAw (= max eig of A)."""
    torch.manual_seed(0)
    q = torch.linalg.qr(torch.randn(6, 6))[0]
    a = q @ torch.diag(torch.tensor([9.0, 4.0, 2.0, 1.0, 0.5, 0.1])) @ q.T
    w = nn.Parameter(torch.randn(6))
    before = w.detach().clone()
    lam = sharpest_curvature(lambda: torch.autograd.grad(0.5 * w @ a @ w, [w]), [w], iters=60)
    assert lam == pytest.approx(9.0, rel=1e-2)
    assert torch.equal(w.detach(), before)  # weights restored bit for bit


def _default(model, task, **options):
    method = get_method("mumis", show_progress=False, **options)
    return run_method(method, model, grant(method, forget=task.forget), task.num_classes)


def test_default_moves_only_the_forgotten_class_row_and_never_hurts_other_classes(digits_model, digits_task):
    """Class request: only row c of the head moves, so no retained sample can lose its prediction; run far past the
    stop (no floor, 20× the steps) the objective is a bounded quadratic and the model still does not collapse."""
    c = int(digits_task.forget.labels[0])
    result = _default(digits_model, digits_task)
    assert result.stop_reason == "fa_floor" and accuracy(result.model, digits_task.forget) == 0.0
    assert result.info["lr"] == pytest.approx(0.5 / result.info["curvature"])
    example = digits_task.forget.tensors()[0][:1]
    head0, head1 = classifier_head(digits_model, example), classifier_head(result.model, example)
    rows = [k for k in range(10) if not torch.equal(head0.weight[k], head1.weight[k])]
    assert rows == [c] and torch.equal(head0.bias, head1.bias)
    before = digits_model(digits_task.retain.tensors()[0]).argmax(1)
    after = result.model(digits_task.retain.tensors()[0]).argmax(1)
    y = digits_task.retain.labels
    assert not ((before == y) & (after != y)).any()  # nobody who was right became wrong
    long = _default(digits_model, digits_task, fa_floor=None, max_steps=20 * max(result.steps, 1))
    assert accuracy(long.model, digits_task.retain) >= accuracy(digits_model, digits_task.retain)
    assert accuracy(long.model, digits_task.forget) == 0.0


def test_samples_request_defaults_to_the_membership_stop_unless_the_caller_chose():
    """request="samples" takes SAMPLE_REQUEST_DEFAULTS for each option the caller left alone and always the membership
    stop (the only one that reads a held-out set); what the caller set — by keyword, variant or config — stays."""
    default = get_method("mumis", show_progress=False, request="samples").config
    assert (default.stop, default.lr, default.check_every) == ("membership", 0.05, 1)
    chosen = get_method("mumis", request="samples", lr=0.5, check_every=4).config
    assert (chosen.stop, chosen.lr, chosen.check_every) == ("membership", 0.5, 4)
    replaced = get_method("mumis", request="samples", stop="dip_recover", lr=0.2).config
    assert (replaced.stop, replaced.lr, replaced.check_every) == ("membership", 0.2, 1)
    paper = get_method("mumis", request="samples", variant="paper").config
    assert (paper.stop, paper.lr, paper.objective) == ("membership", 1e-3, "paper")  # the preset's step stays
    from_config = MuMis(MuMisConfig(request="samples", lr=0.3)).config
    assert (from_config.stop, from_config.lr) == ("membership", 0.3)
    assert get_method("mumis", request="class").config.stop == "forget_acc"  # class requests are untouched


def test_presets_and_option_validation():
    default, paper = get_method("mumis").config, get_method("mumis", variant="paper").config
    assert (default.objective, default.update, default.lr_scale, default.stop) == ("target_only", "head", "curvature", "forget_acc")
    assert (paper.objective, paper.update, paper.lr_scale, paper.lr, paper.stop) == ("paper", "all", "fixed", 1e-3, "dip_recover")
    assert set(VARIANTS) == {"default", "paper"}  # the study's ablations live in mumis.experimental
    with pytest.raises(MumisError, match="unknown MU-Mis variant"):
        get_method("mumis", variant="bounded")
    with pytest.raises(MumisError, match="is not one of"):
        get_method("mumis", objective="all_classes")
    with pytest.raises(MumisError, match="request='everything' is not one of"):
        get_method("mumis", request="everything")


def test_samples_request_stops_and_restores_when_heldout_accuracy_drops(digits_model, digits_task):
    """A step size that wrecks the model: held-out accuracy falls below its start minus the tolerance, the run ends
    with ``heldout_drop`` and returns the weights of the last check that passed (here: the original ones)."""
    members = digits_task.retain.subset(range(0, 300, 3))
    heldout = digits_task.test
    method = get_method("mumis", show_progress=False, request="samples", update="all", lr_scale="fixed", lr=50.0,
                        check_every=1, max_steps=50)
    result = run_method(method, digits_model, grant(method, forget=members, heldout=heldout), 10)
    assert result.stop_reason == "heldout_drop"
    start = result.trace[0]["heldout_acc"]
    assert result.trace[-1]["heldout_acc"] < start - result.info["heldout_tolerance"]
    assert accuracy(result.model, heldout) >= start - result.info["heldout_tolerance"] - 1e-6
    assert result.info["restored_step"] == result.trace[-2]["step"]


def test_accuracy_tolerance_is_two_standard_errors_in_points():
    assert accuracy_tolerance(90.0, 100) == pytest.approx(6.0)  # 200 · √(0.9 · 0.1 / 100)
    assert accuracy_tolerance(50.0, 10_000) == pytest.approx(1.0)
    assert 0 < accuracy_tolerance(100.0, 500) < 1e-3  # a perfect score still gets a (tiny) positive tolerance


def test_membership_threshold_maximises_balanced_attack_accuracy():
    member = torch.tensor([0.90, 0.95, 0.99, 0.999], dtype=torch.float64)
    nonmember = torch.tensor([0.30, 0.80, 0.92, 0.97], dtype=torch.float64)
    # ½(P_m(≥t) + P_n(<t)) peaks at 0.75 for t ∈ {0.90, 0.95, 0.99}: the smallest is chosen
    assert membership_threshold(member, nonmember) == pytest.approx(0.90)
    separated = membership_threshold(torch.tensor([0.9, 0.95]), torch.tensor([0.1, 0.5]))
    assert separated == pytest.approx(0.9)  # every member at or above, every non-member below


def test_membership_stop_declares_heldout_and_stops_once_forget_looks_unseen(digits_model, digits_task):
    """stop='membership': the threshold is fixed at the start, the run stops once D_f's share below it reaches the
    held-out share, or the held-out accuracy guard ends it; the held-out set is declared, retain data never read."""
    method = get_method("mumis", show_progress=False, request="samples", stop="membership", lr=0.05, check_every=1,
                        max_steps=60)
    assert method.needs == {DataRole.FORGET, DataRole.HELDOUT} and method.config.stop == "membership"
    members = digits_task.retain.subset(range(0, 300, 3))
    result = run_method(method, digits_model, grant(method, forget=members, heldout=digits_task.test), 10)
    first, last = result.trace[0], result.trace[-1]
    assert 0.0 < result.info["membership_threshold"] <= 1.0
    assert first["forget_below"] < first["heldout_below"]  # members start more confident than unseen data
    assert result.stop_reason in ("membership", "heldout_drop", "max_steps")
    if result.stop_reason == "membership":
        assert last["forget_below"] >= last["heldout_below"] and result.steps > 0
    tol = result.info["heldout_tolerance"]
    assert accuracy(result.model, digits_task.test) >= first["heldout_acc"] - tol - 1e-6

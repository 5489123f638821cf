"""Issue 4's variants: each objective against a per-sample definition, each stop rule on synthetic traces."""
import dataclasses

import pytest
import torch
from torch import nn

from mumis.errors import MumisError
from mumis.methods import DataRole, get_method, grant, mumis_loss, run_method
from mumis.methods.mumis import VARIANTS, MuMis, MuMisConfig, sharpest_curvature
from mumis.methods.stopping import HeldoutMatchRule, NeverRule, PlateauRule, accuracy_tolerance, membership_threshold
from mumis.metrics.accuracy import accuracy
from mumis.models import classifier_head, create_model


def _per_sample_sq(model, x, cls):
    out = []
    for i in range(len(x)):
        xi = x[i : i + 1].clone().requires_grad_(True)
        (g,) = torch.autograd.grad(model(xi)[0, cls[i]], xi)
        out.append(g.pow(2).sum())
    return torch.stack(out)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(1)
    model = create_model("small_cnn", 4, 1).double().eval()
    x = torch.randn(5, 1, 10, 10, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 1])
    other = torch.tensor([2, 3, 0, 1, 0])
    t = _per_sample_sq(model, x, y)
    o = _per_sample_sq(model, x, other)
    return model, x, y, other, t, o


def test_target_only(setup):
    model, x, y, other, t, _ = setup
    loss, _, other_sq = mumis_loss(model, x, y, other, "target_only")
    assert torch.allclose(loss, t.mean()) and other_sq is None


def test_irrelevant_only(setup):
    model, x, y, other, _, o = setup
    loss, _, _ = mumis_loss(model, x, y, other, "irrelevant_only")
    assert torch.allclose(loss, -o.mean())


def test_bounded_clips_each_sample_at_its_bound(setup):
    model, x, y, other, t, o = setup
    bound = o.detach() * torch.tensor([0.5, 2.0, 0.5, 2.0, 1.0], dtype=torch.float64)
    loss, _, _ = mumis_loss(model, x, y, other, "bounded", bound=bound)
    assert torch.allclose(loss, (t - torch.minimum(o, bound)).mean())
    # a clipped sample's irrelevant term carries no gradient: raising it further is not rewarded
    params = [p for p in model.parameters()]
    clipped = mumis_loss(model, x[:1], y[:1], other[:1], "bounded", bound=bound[:1])[0]
    target = mumis_loss(model, x[:1], y[:1], other[:1], "target_only")[0]
    for a, b in zip(torch.autograd.grad(clipped, params, allow_unused=True), torch.autograd.grad(target, params, allow_unused=True)):
        assert (a is None and b is None) or torch.allclose(a, b)


def test_all_classes_averages_every_other_class(setup):
    model, x, y, other, t, _ = setup
    others = torch.stack([_per_sample_sq(model, x, (y + s) % 4) for s in range(1, 4)]).mean(0)
    loss, _, _ = mumis_loss(model, x, y, other, "all_classes", num_classes=4)
    assert torch.allclose(loss, (t - others).mean())


def test_unknown_objective(setup):
    model, x, y, other, _, _ = setup
    with pytest.raises(ValueError, match="unknown objective"):
        mumis_loss(model, x, y, other, "nope")


def test_plateau_rule():
    rule = PlateauRule(patience=2, tol=0.01)
    fired = [rule.update(v) for v in [10.0, 8.0, 6.0, 5.99, 5.98, 5.97]]
    assert fired == [False, False, False, False, True, True]
    assert not any(PlateauRule(2, 0.01).update(v) for v in [10, 9, 8, 7, 6, 5])
    assert not any(NeverRule().update(v) for v in range(100))
    rule = HeldoutMatchRule()
    assert [rule.update(m) for m in (-1, 2, 0)] == [False, False, True]  # t = 0 never fires
    assert HeldoutMatchRule(tolerance=1.0, at_start=True).update(0.5)  # already within τ: stop before any step


def test_presets_and_option_validation():
    default, paper = get_method("mumis").config, get_method("mumis", variant="paper").config
    assert (default.objective, default.update, default.lr_scale, default.fa_floor) == ("target_only", "head", "curvature", 0.0)
    assert (paper.objective, paper.update, paper.lr_scale, paper.lr, paper.stop, paper.fa_floor) == (
        "paper", "all", "fixed", 1e-3, "dip_recover", None)
    assert get_method("mumis", variant="bounded").config.objective == "bounded"
    assert get_method("mumis", variant="bounded").config.update == "all"  # ablations vary the paper's setting
    assert get_method("mumis", variant="bounded", objective="paper").config.objective == "paper"
    assert set(VARIANTS) >= {"paper", "target_only", "irrelevant_only", "bounded", "all_classes"}
    with pytest.raises(MumisError, match="unknown MU-Mis variant"):
        get_method("mumis", variant="nope")
    with pytest.raises(MumisError, match="is not one of"):
        get_method("mumis", optimizer="lbfgs")
    with pytest.raises(MumisError, match="request='everything' is not one of"):
        get_method("mumis", request="everything")


def _run(model, task, **options):
    options.setdefault("variant", "paper")  # these tests pin down the paper's method and its variations
    method = get_method("mumis", show_progress=False, **options)
    return run_method(method, model, grant(method, forget=task.forget), task.num_classes)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_moves_the_sensitivities_it_targets(variant, digits_model, digits_task):
    result = _run(digits_model, digits_task, variant=variant, stop="none", max_steps=6, check_every=3,
                  lr_scale="sensitivity", lr=0.01)
    first, last = result.trace[0], result.trace[-1]
    assert result.stop_reason == "max_steps" and result.steps == 6
    if variant == "irrelevant_only":  # the OC ablation only raises the irrelevant sensitivity
        assert last["irrelevant"] > first["irrelevant"]
    else:
        assert last["target"] < first["target"]
        assert last["forget_acc"] <= first["forget_acc"]


def test_stop_none_runs_to_the_cap_and_plateau_stops_a_bounded_run(digits_model, digits_task):
    capped = _run(digits_model, digits_task, stop="none", max_steps=6, check_every=2)
    assert capped.stop_reason == "max_steps" and capped.steps == 6
    plateau = _run(digits_model, digits_task, variant="bounded", stop="loss_plateau", patience=2, plateau_tol=0.5,
                   check_every=2, max_steps=200)
    assert plateau.stop_reason == "loss_plateau" and plateau.steps < 200


def test_scaled_step_size_divides_by_the_starting_sensitivity(digits_model, digits_task):
    result = _run(digits_model, digits_task, lr_scale="sensitivity", lr=0.02, max_steps=1)
    t0_sq = result.trace[0]["target_sq"]
    assert result.info["lr"] == pytest.approx(0.02 / t0_sq)
    adam = _run(digits_model, digits_task, optimizer="adam", lr_scale="sensitivity", lr=1e-4, max_steps=1)
    assert adam.info["lr"] == 1e-4  # Adam is invariant to the gradient's scale already


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_optimisers_take_steps(optimizer, digits_model, digits_task):
    result = _run(digits_model, digits_task, optimizer=optimizer, lr=1e-4 if optimizer != "sgd" else 1e-3,
                  max_steps=3, check_every=3, stop="none")
    assert result.steps == 3
    moved = any(not torch.equal(a, b) for a, b in zip(result.model.state_dict().values(), digits_model.state_dict().values()))
    assert moved


def test_head_only_update_leaves_the_features_bit_identical(digits_model, digits_task):
    result = _run(digits_model, digits_task, update="head", lr_scale="sensitivity", lr=0.1, max_steps=4, check_every=2,
                  stop="none")
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


def test_heldout_rule_fires_when_forget_accuracy_reaches_heldout_accuracy():
    from mumis.methods.stopping import HeldoutMatchRule

    rule = HeldoutMatchRule()
    assert [rule.update(m) for m in [-1.0, 3.0, 1.0, 0.0, -2.0]] == [False, False, False, True, True]


def test_heldout_stop_declares_and_uses_only_heldout_beyond_forget(digits_model, digits_task):
    from mumis.bench.experiment import apply_method
    from mumis.methods import DataAccessError, DataRole

    method = get_method("mumis", stop="heldout", check_every=1, max_steps=40, show_progress=False)
    assert method.needs == {DataRole.FORGET, DataRole.HELDOUT} and method.retain_free
    with pytest.raises(MumisError, match="needs heldout"):
        grant(method, forget=digits_task.forget)
    with pytest.raises(DataAccessError):
        grant(method, forget=digits_task.forget, heldout=digits_task.heldout, retain=digits_task.retain)
    result, data, _ = apply_method(method, digits_model, digits_task)
    assert data.reads == {"forget", "heldout"}
    assert "heldout_acc" in result.trace[-1]
    if result.stop_reason == "heldout":
        assert result.trace[-1]["forget_acc"] <= result.trace[-1]["heldout_acc"]
    assert not set(digits_task.heldout.images.flatten(1).sum(1).tolist()) - set(digits_task.test.images.flatten(1).sum(1).tolist())


def test_dynamic_weights_switch_terms_off_per_sample(setup):
    model, x, y, other, t, o = setup
    bound = o.detach() * torch.tensor([0.5, 2.0, 0.5, 2.0, 1.0], dtype=torch.float64)
    loss, _, _ = mumis_loss(model, x, y, other, "dynamic", bound=bound)
    expected = ((t > o).double() * t - (o < bound).double() * o).mean()
    assert torch.allclose(loss, expected)
    # every irrelevant term already at its bound: only samples whose target sensitivity is still on top pull
    at_bound, _, _ = mumis_loss(model, x, y, other, "dynamic", bound=0.5 * o.detach())
    assert torch.allclose(at_bound, ((t > o).double() * t).mean())


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
    stop (stop='none', 20× the steps) the objective is a bounded quadratic and the model still does not collapse."""
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
    long = _default(digits_model, digits_task, stop="none", fa_floor=None, max_steps=20 * max(result.steps, 1))
    assert accuracy(long.model, digits_task.retain) >= accuracy(digits_model, digits_task.retain)
    assert accuracy(long.model, digits_task.forget) == 0.0


def test_samples_request_defaults_to_the_membership_stop_unless_the_caller_chose():
    """request="samples" takes SAMPLE_REQUEST_DEFAULTS (round 12) for each option the caller left alone; a stop rule
    that reads no held-out set is replaced; what the caller set — by keyword, variant or config object — stays."""
    default = get_method("mumis", show_progress=False, request="samples").config
    assert (default.stop, default.lr, default.check_every) == ("membership", 0.05, 1)
    assert get_method("mumis", request="samples", stop="membership", lr=0.05, check_every=1).config == \
        dataclasses.replace(default, show_progress=True)  # the grid's samples+membership rows are this default
    chosen = get_method("mumis", request="samples", stop="heldout", lr=0.5, check_every=4).config
    assert (chosen.stop, chosen.lr, chosen.check_every) == ("heldout", 0.5, 4)
    replaced = get_method("mumis", request="samples", stop="loss_plateau", lr=0.2).config
    assert (replaced.stop, replaced.lr, replaced.check_every) == ("membership", 0.2, 1)
    paper = get_method("mumis", request="samples", variant="paper").config
    assert (paper.stop, paper.lr, paper.objective) == ("membership", 1e-3, "paper")  # the preset's step stays
    from_config = MuMis(MuMisConfig(request="samples", lr=0.3)).config
    assert (from_config.stop, from_config.lr) == ("membership", 0.3)
    assert get_method("mumis", request="class").config.stop == "loss_plateau"  # class requests are untouched


def test_samples_request_needs_heldout_data_and_may_change_nothing(digits_model, digits_task):
    """Individual samples that the model already classifies like unseen data: stop before the first step."""
    method = get_method("mumis", show_progress=False, request="samples", stop="heldout", lr=0.5, check_every=0)
    assert method.needs == {DataRole.FORGET, DataRole.HELDOUT} and method.config.stop == "heldout"
    with pytest.raises(MumisError, match="needs heldout"):
        grant(method, forget=digits_task.forget)
    test = digits_task.test
    looks_unseen = test.subset(range(1, len(test), 2))  # classified exactly like the held-out half
    heldout = test.subset(range(0, len(test), 2))
    result = run_method(method, digits_model, grant(method, forget=looks_unseen, heldout=heldout), 10)
    assert result.steps == 0 and result.stop_reason == "heldout" and result.info["heldout_tolerance"] > 0
    for a, b in zip(digits_model.state_dict().values(), result.model.state_dict().values()):
        assert torch.equal(a, b)
    members = digits_task.retain.subset(range(0, 300, 3))  # training samples (100 % accuracy vs 98–99 % held out)
    result = run_method(method, digits_model, grant(method, forget=members, heldout=digits_task.test), 10)
    # either the forget samples come to look unseen, or held-out accuracy starts to fall first (the guard): the
    # run never ends with the model worse on unseen data than the sampling error allows
    assert result.stop_reason in ("heldout", "heldout_drop") and result.steps < 20
    tol, start = result.info["heldout_tolerance"], result.trace[0]["heldout_acc"]
    assert accuracy(result.model, digits_task.test) >= start - tol - 1e-6
    if result.stop_reason == "heldout":
        assert result.trace[-1]["forget_acc"] - result.trace[-1]["heldout_acc"] <= tol


def test_heldout_loss_rule_watches_the_loss_margin(digits_model, digits_task):
    """stop='heldout_loss' declares a held-out set and stops once mean forget loss ≥ mean held-out loss."""
    method = get_method("mumis", show_progress=False, stop="heldout_loss", fa_floor=None, check_every=1,
                        max_steps=40, lr=0.5)
    assert DataRole.HELDOUT in method.needs
    result = run_method(method, digits_model, grant(method, forget=digits_task.forget, heldout=digits_task.test), 10)
    first, last = result.trace[0], result.trace[-1]
    assert first["heldout_loss"] > first["forget_loss"]  # members start with the lower loss
    if result.stop_reason == "heldout_loss":
        assert last["forget_loss"] >= last["heldout_loss"]
    else:
        assert result.stop_reason == "max_steps" and result.steps == 40


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

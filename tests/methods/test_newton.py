"""``newton``: its gradient, Hessian product and solver against autograd / dense algebra, the step against an exact
retrain of a linear model, and its behaviour on a trained CNN (forget loss up, held-out accuracy kept, D_r unread)."""
import copy

import pytest
import torch
import torch.nn.functional as F

import mumis.methods.newton as newton_module
from mumis.errors import MumisError
import mumis.experimental  # noqa: F401 — registers newton_study
from mumis.methods import DataRole, get_method, grant, run_method
from mumis.methods.kfac import class_loss_gradients, inner, layer_matrix, weight_layers
from mumis.methods.stopping import label_confidence, less_accurate_than_heldout
from mumis.metrics.accuracy import predict_logits
from mumis.models import create_model
from mumis.training import TrainRecipe, fit
from mumis.methods.newton import (
    ce_gradient,
    ce_hessian_product,
    conjugate_gradients,
    head_features,
    removal_step,
    scan_scales,
)


def _problem(n=120, d=4, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, k, (n,), generator=g)
    centres = torch.randn(k, d, generator=g, dtype=torch.float64) * 1.5
    z = centres[y] + torch.randn(n, d, generator=g, dtype=torch.float64)
    return torch.cat([z, torch.ones(n, 1, dtype=torch.float64)], 1), y


def _mean_ce(theta, z, y):
    return F.cross_entropy(z @ theta.T, y)


def test_gradient_and_hessian_product_match_autograd():
    z, y = _problem()
    theta = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grad = torch.autograd.functional.jacobian(lambda t: _mean_ce(t, z, y), theta)
    assert torch.allclose(ce_gradient(theta, z, y), grad, atol=1e-12)
    hessian = torch.autograd.functional.hessian(lambda t: _mean_ce(t, z, y), theta).reshape(15, 15)
    v = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(ce_hessian_product(theta, z)(v).reshape(-1), hessian @ v.reshape(-1), atol=1e-12)


def test_conjugate_gradients_solves_a_positive_definite_system():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(8, 8, dtype=torch.float64, generator=g)
    spd = a @ a.T + 0.1 * torch.eye(8, dtype=torch.float64)
    b = torch.randn(8, dtype=torch.float64, generator=g)
    x, iterations, residual = conjugate_gradients(lambda v: spd @ v, b, tol=1e-10, max_iter=100)
    assert torch.allclose(x, torch.linalg.solve(spd, b), atol=1e-8)
    assert iterations <= 20 and residual <= 1e-10


def _fit(theta, z, y, wd, iters=30):
    """The exact optimum of mean CE + (wd/2)‖θ‖² (Newton's method; the objective is strictly convex)."""
    for _ in range(iters):
        h = torch.autograd.functional.hessian(lambda t: _mean_ce(t, z, y), theta).reshape(theta.numel(), -1)
        grad = ce_gradient(theta, z, y) + wd * theta
        theta = theta - torch.linalg.solve(h + wd * torch.eye(theta.numel(), dtype=h.dtype), grad.reshape(-1)).reshape(theta.shape)
    return theta


def test_removal_step_lands_on_the_retrained_optimum_when_the_curvature_is_the_retain_sets():
    """Golden case: a linear softmax model trained to its exact optimum on D; one step with D_r's own Hessian lands
    within a few % of the model retrained on D_r, from ~10× farther away."""
    z, y = _problem(n=400, seed=3)
    wd = 1e-2
    theta_d = _fit(torch.zeros(3, 5, dtype=torch.float64), z, y, wd)
    forget = torch.arange(0, 400, 10)  # a random-like 10 %
    keep = torch.ones(400, dtype=torch.bool)
    keep[forget] = False
    theta_r = _fit(theta_d, z[keep], y[keep], wd)
    step, info = removal_step(theta_d, z[forget], y[forget], z[keep], 400, wd)
    assert info["cg_residual"] <= 1e-8
    assert (theta_d + step - theta_r).norm() < 0.05 * (theta_d - theta_r).norm()
    with pytest.raises(MumisError, match="train_size"):
        removal_step(theta_d, z[forget], y[forget], z[keep], 40, wd)


def _members_request(digits_task):
    """100 training samples as the request, and the training-set size (D_r + D_f)."""
    members = digits_task.retain.subset(range(0, 300, 3))
    return members, len(digits_task.retain) + len(digits_task.forget)


def test_newton_raises_forget_loss_keeps_heldout_accuracy_and_reads_only_what_it_declares(digits_model, digits_task):
    method = get_method("newton")
    assert method.needs == {DataRole.FORGET, DataRole.HELDOUT} and method.retain_free
    members, n = _members_request(digits_task)
    data = grant(method, forget=members, heldout=digits_task.test, train_size=n)
    result = run_method(method, digits_model, data, 10)
    assert data.reads == {"forget", "heldout"}
    assert result.stop_reason in ("newton_step", "heldout_drop") and result.info["cg_residual"] <= 1e-8

    def loss(model, d):
        x, y = d.tensors()
        with torch.no_grad():
            return float(F.cross_entropy(model.eval()(x), y))

    assert loss(result.model, members) > loss(digits_model, members)
    assert result.info["heldout_acc_after"] >= result.info["heldout_acc_before"] - result.info["heldout_tolerance"]
    # only the classifier layer moved
    before, after = digits_model.state_dict(), result.model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith(next(iter(moved)).rsplit(".", 1)[0]) for k in moved)


def test_newton_without_a_training_set_size_says_what_to_pass(digits_model, digits_task):
    method = get_method("newton")
    data = grant(method, forget=digits_task.forget, heldout=digits_task.test)
    with pytest.raises(MumisError, match="train_size=N"):
        run_method(method, digits_model, data, 10)


def test_head_features_append_the_constant_feature(digits_model, digits_task):
    z, y = head_features(digits_model, digits_task.forget.subset(range(5)), 4)
    assert z.dtype == torch.float64 and torch.all(z[:, -1] == 1) and len(y) == 5


@pytest.mark.parametrize("reproject,match_accuracy,curvature", [(False, False, "kfac"), (True, False, "kfac"),
                                                                (False, True, "kfac"), (None, None, "kfac"),
                                                                (None, None, None)])
def test_all_layer_newton_scans_up_to_its_stop_and_reads_only_what_it_declares(digits_model, digits_task, reproject,
                                                                               match_accuracy, curvature):
    switches = {"reproject": reproject, "match_accuracy": match_accuracy, "curvature": curvature}
    # the product's newton runs the settings that measured best; the study's newton_study varies them
    method = (get_method("newton", layers="all") if set(switches.values()) == {None}
              else get_method("newton_study", layers="all", **switches))
    members, n = _members_request(digits_task)
    data = grant(method, forget=members, heldout=digits_task.test, train_size=n)
    result = run_method(method, digits_model, data, 10)
    assert data.reads == {"forget", "heldout"}
    info = result.info
    assert info["keep_class_losses"] is True
    assert info["curvature"] == (curvature or "ekfac")
    if reproject is None:  # the product's settings: both on
        reproject = match_accuracy = True
    assert (info["reproject"], info["match_accuracy"]) == (reproject, match_accuracy)
    # re-projecting, the stop rule reads the odd half of the held-out set only (the constraints use the even half)
    assert info["rule_heldout_size"] == (len(digits_task.test) // 2 if reproject else len(digits_task.test))
    scan = info["scan"]
    assert result.stop_reason in ("membership", "heldout_drop", "newton_step", "forget_accuracy")
    assert result.steps == len(scan) - 1 and (result.stop_reason == "forget_accuracy") <= match_accuracy
    scales = [row["scale"] for row in scan]
    assert scales == sorted(scales) and info["step_scale"] in scales
    before = scan[0]["heldout_acc"]
    # every scale before the last was within the guard and not yet at the membership target
    for row in scan[1:-1]:
        assert row["heldout_acc"] >= before - info["heldout_tolerance"] and row["forget_below"] < row["heldout_below"]
        assert not match_accuracy or row["forget_acc"] > row["heldout_acc"]
    last = scan[-1]
    if result.stop_reason == "forget_accuracy":
        assert last["forget_acc"] <= last["heldout_acc"] and info["step_scale"] == last["scale"]
    if result.stop_reason == "membership":
        assert last["forget_below"] >= last["heldout_below"] and info["step_scale"] == last["scale"]
    if result.stop_reason == "heldout_drop":
        assert last["heldout_acc"] < before - info["heldout_tolerance"] and info["step_scale"] == scan[-2]["scale"]
    # the weights are the chosen scale's, and more than the classifier layer moved (when a step was taken)
    changed = {k for k, v in digits_model.state_dict().items() if not torch.equal(v, result.model.state_dict()[k])}
    assert (info["step_scale"] > 0) == bool(changed)
    if info["step_scale"] > 0:
        assert len({k.rsplit(".", 1)[0] for k in changed}) > 1


def test_newton_rejects_an_unknown_layers_option_when_it_is_built():
    with pytest.raises(MumisError, match="layers='last_two'"):
        get_method("newton", layers="last_two")


def test_reprojected_path_keeps_each_class_loss_of_the_constraint_half_at_every_point(digits_model, digits_task,
                                                                                    monkeypatch):
    """Each increment of the re-projected scan is orthogonal to the class-loss gradients of the even held-out half
    taken where the increment starts — not to those at the start (the path bends), not to the odd half's."""
    members, n = _members_request(digits_task)
    even, odd = (digits_task.test.subset(range(i, len(digits_task.test), 2)) for i in (0, 1))

    def run(scales):
        monkeypatch.setattr(newton_module, "scan_scales", lambda _: scales)
        method = get_method("newton", layers="all", guard=False)
        result = run_method(method, digits_model, grant(method, forget=members, heldout=digits_task.test, train_size=n), 10)
        assert result.steps == len(scales) and result.info["step_scale"] == scales[-1]  # tiny scales: no stop
        return result.model

    points = [copy.deepcopy(digits_model).eval(), run((0.01,)), run((0.01, 0.03))]
    thetas = [{i: layer_matrix(m) for i, m in enumerate(weight_layers(p))} for p in points]
    for model, here, there in zip(points, thetas, thetas[1:]):
        increment = {i: there[i] - here[i] for i in here}
        assert _norm(increment) > 0
        assert max(_cosines(model, increment, even)) < 1e-3  # held to the float32 rounding of the weights
        assert max(_cosines(model, increment, odd)) > 1e-2  # the odd half (the stop rule's) is not constrained
    # the second increment is not the first one's direction: the path bends
    first = {i: thetas[1][i] - thetas[0][i] for i in thetas[0]}
    second = {i: thetas[2][i] - thetas[1][i] for i in thetas[0]}
    assert inner(first, second) / (_norm(first) * _norm(second)) < 1 - 1e-6


def _cosines(model, increment: dict, half) -> list[float]:
    """|cos| between ``increment`` and each class-loss gradient of ``half`` at ``model`` (where the increment starts)."""
    layers = weight_layers(model)
    gradients = [{i: c[m] for i, m in enumerate(layers)} for c in class_loss_gradients(model, half)]
    return [abs(inner(c, increment)) / (_norm(c) * _norm(increment)) for c in gradients]


def _norm(d: dict) -> float:
    return inner(d, d) ** 0.5


def test_reprojecting_on_a_one_sample_heldout_set_says_what_to_do(digits_model, digits_task):
    members, n = _members_request(digits_task)
    method = get_method("newton", layers="all")
    data = grant(method, forget=members, heldout=digits_task.test.subset([0]), train_size=n)
    with pytest.raises(MumisError, match="larger held-out set"):
        run_method(method, digits_model, data, 10)


def test_scan_scales_run_from_a_64th_to_the_full_step_at_the_chosen_resolution():
    coarse, fine = scan_scales(2), scan_scales(4)
    assert len(coarse) == 13 and len(fine) == 25 and coarse[0] == fine[0] == 1 / 64 and coarse[-1] == fine[-1] == 1.0
    for scales, ratio in ((coarse, 2 ** 0.5), (fine, 2 ** 0.25)):
        assert all(abs(b / a - ratio) < 1e-12 for a, b in zip(scales, scales[1:]))


@pytest.mark.parametrize("layers", ["head", "all"])
def test_a_spent_heldout_budget_leaves_no_room_to_lose_heldout_accuracy(digits_model, digits_task, layers):
    """heldout_spent ≥ the tolerance: the guard's floor is the current held-out accuracy itself."""
    members, n = _members_request(digits_task)
    free, spent = (get_method("newton", layers=layers, heldout_spent=s) for s in (0.0, 1e9))
    runs = [run_method(m, digits_model, grant(m, forget=members, heldout=digits_task.test, train_size=n), 10).info
            for m in (free, spent)]
    assert runs[0]["heldout_floor"] == pytest.approx(runs[0]["heldout_acc_before"] - runs[0]["heldout_tolerance"])
    assert runs[1]["heldout_floor"] == runs[1]["heldout_acc_before"]
    assert runs[1]["heldout_acc_after"] >= runs[1]["heldout_acc_before"]


def test_a_forget_set_classified_worse_than_heldout_data_is_scanned_to_the_guard(digits_bundle, digits_split,
                                                                                  digits_task):
    """The training samples a model (two epochs: it still gets some training samples wrong) is least sure of are
    classified worse than unseen data: both stop rules read held-out data as what D_f should look like, and would
    stop before the first step. The scan then runs until the held-out guard stops it (or the full step), and the
    model moves; a random request keeps both rules."""
    train, _ = digits_split.materialise(digits_bundle)
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1)
    fit(model, train, TrainRecipe(epochs=2, batch_size=64, lr=0.05), seed=0, show_progress=False)  # conftest's, shorter
    model.eval()
    retain = digits_task.retain
    confidence = label_confidence(predict_logits(model, retain), retain.labels)
    hard = retain.subset(torch.argsort(confidence)[:40])
    n = len(digits_task.retain) + len(digits_task.forget)
    method = get_method("newton", layers="all")
    result = run_method(method, copy.deepcopy(model), grant(method, forget=hard, heldout=digits_task.test,
                                                            train_size=n), 10)
    info, scan = result.info, result.info["scan"]
    assert info["atypical_forget_set"] is True
    assert scan[0]["forget_acc"] < scan[0]["heldout_acc"]  # "forget accuracy down to held-out accuracy" already holds
    assert result.stop_reason in ("heldout_drop", "newton_step") and info["step_scale"] > 0
    for row in scan[1:-1]:
        assert row["heldout_acc"] >= info["heldout_floor"]
    if result.stop_reason == "heldout_drop":
        assert scan[-1]["heldout_acc"] < info["heldout_floor"] and info["step_scale"] == scan[-2]["scale"]
    else:
        assert info["step_scale"] == 1.0 and len(scan) == len(scan_scales(2)) + 1
    assert scan[-1]["forget_acc"] < scan[0]["forget_acc"]
    members, _ = _members_request(digits_task)
    typical = run_method(method, copy.deepcopy(model), grant(method, forget=members, heldout=digits_task.test,
                                                             train_size=n), 10)
    assert typical.info["atypical_forget_set"] is False


def test_less_accurate_than_heldout_means_beyond_two_standard_errors_of_the_difference():
    # 90 % of 400 vs 95 % of 250: the difference's standard error is √(.09/400 + .0475/250) = 2.04 points
    assert less_accurate_than_heldout(90.0, 400, 95.0, 250)          # 5.0 > 4.07
    assert not less_accurate_than_heldout(92.0, 400, 95.0, 250)      # 3.0 < 2 · √(.0736/400 + .0475/250) = 3.87
    assert not less_accurate_than_heldout(95.0, 40, 97.2, 250)       # 2 of 40 wrong: within the noise of 40 samples
    assert not less_accurate_than_heldout(100.0, 10, 90.0, 100)      # more accurate: never
    assert less_accurate_than_heldout(0.0, 10, 100.0, 10)            # both certain: any difference counts

"""methods/kfac.py, the all-layer Newton step's curvature: exact where K-FAC is exact (one sample through a linear
softmax model), the step solves the damped Kronecker system it claims to, and the projected step keeps each class's
held-out loss to first order while staying the nearest such step in the K-FAC metric."""
import torch
import torch.nn.functional as F
from torch import nn

from mumis.data import ImageDataset
from mumis.methods.kfac import (
    DampedInverse,
    apply_step,
    as_matrix,
    corrected_eigenvalues,
    inner,
    kfac_factors,
    kfac_removal_step,
    layer_matrix,
    mean_loss_gradient,
    weight_layers,
)


def _images(n: int, side: int, seed: int) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    return ImageDataset(torch.randint(0, 256, (n, 1, side, side), dtype=torch.uint8, generator=g),
                        torch.randint(0, 2, (n,), generator=g), ("a", "b"), (0.5,), (0.25,))


def _damped_kronecker(A: torch.Tensor, G: torch.Tensor, positions: int, damping: float, x: torch.Tensor) -> torch.Tensor:
    """(A ⊗ G / T + γI) x for a layer's x in the [W | b] layout: what the step's solve must invert."""
    return G @ x @ A / positions + damping * x


def test_kfac_factors_equal_the_cross_entropy_hessian_for_one_sample():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).double().eval()
    data = _images(1, 2, 0)
    (A, G, positions), = kfac_factors(model, data).values()
    x = data.tensors()[0].double().flatten(1)

    def ce(flat):  # the label does not matter: for logits linear in θ the Hessian is Jᵀ(diag p − p pᵀ)J either way
        t = flat.view(2, 5)
        return F.cross_entropy(x @ t[:, :4].T + t[:, 4], torch.tensor([0]))

    layer = model[1]
    hessian = torch.autograd.functional.hessian(ce, layer_matrix(layer).flatten())
    v = torch.randn(2, 5, dtype=torch.float64)
    assert positions == 1
    assert torch.allclose(torch.trace(v.T @ G @ v @ A), v.flatten() @ hessian @ v.flatten(), rtol=1e-8)


def _exact_fisher(model: nn.Module, layer: nn.Module, data: ImageDataset) -> torch.Tensor:
    """mean_n Σ_k p_nk vec(∇_layer CE(x_n, k)) vec(·)ᵀ by per-sample autograd, in the [W | b] layout (row-major)."""
    x = data.tensors()[0].double()
    fisher = 0.0
    for n in range(len(x)):
        logits = model(x[n:n + 1])
        prob = torch.softmax(logits.detach(), 1)[0]
        for k in range(logits.shape[1]):
            weight, bias = torch.autograd.grad(F.cross_entropy(logits, torch.tensor([k])), (layer.weight, layer.bias),
                                               retain_graph=True)
            g = as_matrix(weight, bias).flatten()
            fisher = fisher + prob[k] * torch.outer(g, g)
    return fisher / len(x)


def test_ekfac_eigenvalues_are_the_exact_fisher_diagonal_in_the_kfac_eigenbasis():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 3 * 3, 3)).double().eval()
    data = _images(6, 5, 4)
    factors = kfac_factors(model, data)
    inverse = DampedInverse(factors, 0.1).refit_eigenvalues(model, data)
    for layer in weight_layers(model):
        qa, qg, eigenvalues = inverse.eigen[layer]
        basis = torch.kron(qg, qa)  # vec(Q_Gᵀ M Q_A) = (Q_G ⊗ Q_A)ᵀ vec(M) for row-major vec
        exact = torch.diagonal(basis.T @ _exact_fisher(model, layer, data) @ basis).view_as(eigenvalues)
        assert torch.allclose(eigenvalues, exact, rtol=1e-8, atol=1e-12)
        if isinstance(layer, nn.Conv2d):  # where K-FAC's product of the factors' eigenvalues is not exact
            A, G, positions = factors[layer]
            kfac = torch.linalg.eigvalsh(G)[:, None] * torch.linalg.eigvalsh(A)[None, :] / positions
            assert not torch.allclose(kfac, exact, rtol=1e-2)
    # the inverse solves with the refit eigenvalues: (Q Λ Qᵀ + γ) (inverse g) = g
    g = {m: torch.randn_like(layer_matrix(m)) for m in weight_layers(model)}
    solved = inverse(g)
    for m, (qa, qg, eigenvalues) in inverse.eigen.items():
        back = qg @ ((qg.T @ solved[m] @ qa) * (eigenvalues + 0.1)) @ qa.T
        assert torch.allclose(back, g[m], atol=1e-10)
    # batches split the samples without changing the sums
    small_batches = corrected_eigenvalues(model, data, {m: e[:2] for m, e in inverse.eigen.items()}, batch_size=4)
    assert all(torch.allclose(small_batches[m], inverse.eigen[m][2], rtol=1e-10) for m in inverse.eigen)


def test_removal_step_solves_the_damped_kronecker_system_and_applies_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=False), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).double().eval()
    forget, heldout = _images(5, 6, 1), _images(15, 6, 2)
    damping, train_size, wd = 1e-2, 50, 1e-3
    factors = kfac_factors(model, heldout)
    step = kfac_removal_step(model, forget, heldout, train_size, damping, wd)
    x, y = forget.tensors()
    model.zero_grad()
    F.cross_entropy(model(x.double()), y).backward()
    start = {}
    for layer, (A, G, positions) in factors.items():
        theta = layer_matrix(layer)
        rhs = as_matrix(layer.weight.grad, layer.bias.grad if layer.bias is not None else None)
        if isinstance(layer, nn.Linear):  # the stationarity term: linear layers only
            rhs = rhs + wd * theta
        applied = _damped_kronecker(A, G, positions, damping, step[layer])
        assert torch.allclose(applied, rhs * 5 / (train_size - 5), atol=1e-10)
        start[layer] = theta
    apply_step(model, start, step, 0.5)
    for layer in weight_layers(model):
        moved = layer_matrix(layer)
        assert torch.allclose(moved, start[layer] + 0.5 * step[layer])


def _flat(d: dict) -> torch.Tensor:
    return torch.cat([v.flatten() for v in d.values()])


def test_projected_step_keeps_each_class_loss_and_is_the_nearest_such_step():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 2)).double().eval()
    forget, heldout = _images(6, 6, 1), _images(20, 6, 2)
    args = (model, forget, heldout, 60, 1e-2, 1e-3)
    free, kept = kfac_removal_step(*args), kfac_removal_step(*args, keep_class_losses=True)
    classes = [mean_loss_gradient(model, heldout.subset(torch.nonzero(heldout.labels == k).squeeze(1))) for k in (0, 1)]
    for c in classes:  # the constraint is real (the free step moves each class's loss) and the projection meets it
        assert abs(inner(c, free)) > 1e-3 * _flat(c).norm() * _flat(free).norm()
        assert abs(inner(c, kept)) < 1e-9 * _flat(c).norm() * _flat(free).norm()
    # nearest in the metric M = F + γI: M (Δ − Δ') lies in the span of the constraints
    factors = kfac_factors(model, heldout)
    metric = {m: _damped_kronecker(A, G, t, 1e-2, free[m] - kept[m]) for m, (A, G, t) in factors.items()}
    basis = torch.stack([_flat(c) for c in classes], 1)
    target = _flat(metric)
    coefficients = torch.linalg.lstsq(basis, target[:, None]).solution
    assert torch.allclose(basis @ coefficients[:, 0], target, atol=1e-10 * float(target.norm()) + 1e-14)
    assert float((_flat(free) - _flat(kept)).norm()) > 0


def test_damped_inverse_inverts_the_damped_kronecker_product():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(9, 3)).double().eval()
    factors = kfac_factors(model, _images(8, 3, 3))
    inverse = DampedInverse(factors, 0.05)
    g = {m: torch.randn(3, 10, dtype=torch.float64) for m in factors}
    for m, (A, G, t) in factors.items():
        solved = inverse(g)[m]
        assert torch.allclose(_damped_kronecker(A, G, t, 0.05, solved), g[m], atol=1e-10)


def test_kfac_and_ekfac_equal_curvlinops_on_every_layer():
    """The maintained reference (curvlinops-for-pytorch: type-2 Fisher, "expand" for convolutions, weight and bias
    as one block) applies the same K-FAC and EK-FAC operators, to float64 precision, on a conv + linear model with
    biases and one without. benchmarks/kfac_curvlinops.py measures the two for speed."""
    from curvlinops import EKFACLinearOperator, KFACLinearOperator
    torch.manual_seed(0)
    data = _images(12, 6, 5)
    g = torch.Generator().manual_seed(1)
    for bias in (True, False):
        model = nn.Sequential(nn.Conv2d(1, 3, 3, bias=bias), nn.ReLU(), nn.Conv2d(3, 2, 2, stride=2), nn.Flatten(),
                              nn.Linear(2 * 2 * 2, 3, bias=bias)).double().eval()
        factors = kfac_factors(model, data, batch_size=5)
        inverse = DampedInverse(factors, 0.0).refit_eigenvalues(model, data, batch_size=5)
        params = [p for m in weight_layers(model) for p in (m.weight, m.bias) if p is not None]
        loader = [(x.double(), y) for x, y in (data.batch(torch.arange(0, 5)), data.batch(torch.arange(5, 12)))]
        theirs = {cls: cls(model, nn.CrossEntropyLoss(), params, loader, fisher_type="type-2", kfac_approx="expand",
                           separate_weight_and_bias=False, check_deterministic=False)
                  for cls in (KFACLinearOperator, EKFACLinearOperator)}
        for layer in weight_layers(model):
            V = torch.randn(layer_matrix(layer).shape, generator=g, dtype=torch.float64)
            vec = [torch.zeros_like(p) for p in params]
            at = {id(p): i for i, p in enumerate(params)}
            vec[at[id(layer.weight)]] = V[:, : layer.weight[0].numel()].reshape(layer.weight.shape)
            if layer.bias is not None:
                vec[at[id(layer.bias)]] = V[:, -1]
            A, G, positions = factors[layer]
            qa, qg, eigenvalues = inverse.eigen[layer]
            for cls, ours in ((KFACLinearOperator, G @ V @ A / positions),
                              (EKFACLinearOperator, qg @ (eigenvalues * (qg.T @ V @ qa)) @ qa.T)):
                out = theirs[cls] @ vec
                reference = as_matrix(out[at[id(layer.weight)]],
                                      out[at[id(layer.bias)]] if layer.bias is not None else None)
                assert torch.allclose(ours, reference, rtol=1e-9, atol=1e-12), (cls.__name__, layer, bias)

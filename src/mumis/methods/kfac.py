"""K-FAC curvature and the Newton removal step on every conv and linear layer (``newton`` with ``layers="all"``).

Per layer l with weight matrix θ_l (out × in, a bias as one more input column), K-FAC (Martens & Grosse 2015;
Grosse & Martens 2016 for convolutions) approximates the Gauss-Newton matrix of the mean cross-entropy by

    F_l ≈ A_l ⊗ G_l / T_l,   A_l = Σ_{n,t} a aᵀ / N,   G_l = Σ_{n,t} g gᵀ / N,

a = the layer's input patch at position t, g = the gradient of sample n's cross-entropy at the layer's output there,
taken in exact expectation over the model's own predictive distribution (one backward per class, weighted by √p_k),
T_l = the number of positions (1 for a linear layer). (F_l + γI)⁻¹ comes from the eigendecompositions of A_l and G_l
(:class:`DampedInverse`). EK-FAC (George et al. 2018; ``newton``'s default: it measured closer than K-FAC on the ResNets) keeps those eigenvectors
and refits the curvature along each of them from per-sample gradients (:func:`corrected_eigenvalues`), exact on the
diagonal of the Fisher in that basis where K-FAC's product of the factors' eigenvalues is not.
:func:`project_out` keeps chosen losses unchanged to first order (each class's mean held-out loss, so unseen data is not what the step moves).

The operators equal curvlinops-for-pytorch's KFAC / EKFAC (type-2 Fisher, "expand") to float64 precision
(tests/methods/test_kfac.py). They stay here because they measured faster and more accurate in float32 on the
demo's held-out set (``benchmarks/kfac_curvlinops.py --dtype float32``: EK-FAC 2.51 s against 5.46 s, K-FAC 1.07 s
against 2.09 s; curvlinops sums the first convolution's input factor in float32, 3.5e-3 off float64), without
curvlinops' seven dependencies.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from mumis.data import ImageDataset, iter_batches
from mumis.methods.kfac_cache import CurvatureCache, curvature_key
from mumis.runtime import device

CURVATURE_BATCH = 100  # the curvature's batches: on a CPU the per-sample backwards were a third faster than at 500


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The layers the all-layer step moves: every ``nn.Conv2d`` and ``nn.Linear`` (BatchNorm and the like stay)."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def as_matrix(weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """[W | b] with W flattened to out × (in · k · k) (the layout of a layer's step; also for its gradients)."""
    w = weight.reshape(weight.shape[0], -1)
    return torch.cat([w, bias[:, None]], 1) if bias is not None else w


def layer_matrix(layer: nn.Module) -> torch.Tensor:
    """A float64 copy of the layer's current [W | b] (a copy even for a float64 layer: it is the start a scan returns to)."""
    return as_matrix(layer.weight.detach(), layer.bias.detach() if layer.bias is not None else None).to(torch.float64, copy=True)


def _input_rows(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The vectors the layer's weight multiplies, one row per (sample, position), with a 1 appended for a bias."""
    if isinstance(layer, nn.Conv2d):
        patches = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)  # N, C·k·k, T
        x = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    if layer.bias is not None:
        x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], 1)
    return x


def _predictive_backwards(model: nn.Module, data: ImageDataset, batch_size: int, on_batch, on_class) -> None:
    """The loop both curvatures share: for every batch, ``on_batch(layer inputs)`` once, then one backward per class k
    of √p_k · CE(·, k) (the exact expectation over the model's predictive distribution) and ``on_class(output
    gradients)`` for each. The backwards stop at the layers' outputs: no weight gradient is formed (on the small CNN
    that halves their time). Inputs and gradients: layer → tensor in the model's dtype (the callbacks convert);
    eval mode expected."""
    layers = weight_layers(model)
    inputs, outputs = {}, {}

    def record(layer, args, output):  # the layer's input, and its output, where the gradients are taken
        inputs[layer], outputs[layer] = args[0].detach(), output

    hooks = [m.register_forward_hook(record) for m in layers]
    try:
        for x, _ in iter_batches(data, batch_size):
            with torch.enable_grad():
                x = x.to(device(), next(model.parameters()).dtype).requires_grad_(True)  # frozen weights too
                logits = model(x)
                prob = torch.softmax(logits.detach().double(), 1)
                on_batch(inputs)
                for k in range(logits.shape[1]):
                    labels = torch.full((len(logits),), k, device=logits.device)
                    loss = (prob[:, k].sqrt().to(logits.dtype) * F.cross_entropy(logits, labels, reduction="none")).sum()
                    found = torch.autograd.grad(loss, [outputs[m] for m in layers],
                                                retain_graph=k < logits.shape[1] - 1)
                    on_class({m: g.detach() for m, g in zip(layers, found)})
    finally:
        for h in hooks:
            h.remove()
        model.zero_grad(set_to_none=True)


def _output_rows(g: torch.Tensor) -> torch.Tensor:
    """Output gradients as rows (N·T × out), the layout of :func:`_input_rows`, in the model's dtype."""
    return g.permute(0, 2, 3, 1).reshape(-1, g.shape[1]) if g.dim() == 4 else g


def kfac_factors(model: nn.Module, data: ImageDataset, batch_size: int = 100) -> dict:
    """layer → (A, G, T) over ``data`` (module docstring), in float64; the model as it is (eval mode expected). A is
    formed in float64 (once per batch); each class's G product in the model's dtype (ten per batch: most of the
    time), summed in float64. Batches of 100: on a CPU the backwards per sample were a third faster than at 500."""
    layers = weight_layers(model)
    A = {m: 0.0 for m in layers}
    G = {m: 0.0 for m in layers}
    positions = {}

    def on_batch(inputs):  # once per batch, in float64: a first convolution's patches sum badly in float32 (1e-4)
        for m in layers:
            rows = _input_rows(m, inputs[m]).double()
            A[m] = A[m] + rows.T @ rows
            positions[m] = len(rows) // len(inputs[m])

    def on_class(grads):
        for m in layers:
            g = _output_rows(grads[m])
            G[m] = G[m] + (g.T @ g).double()

    _predictive_backwards(model, data, batch_size, on_batch, on_class)
    return {m: (A[m] / len(data), G[m] / len(data), positions[m]) for m in layers}


def corrected_eigenvalues(model: nn.Module, data: ImageDataset, eigen: dict, batch_size: int = 100) -> dict:
    """EK-FAC (George et al. 2018): layer → Λ (out × in), the Fisher's diagonal in K-FAC's eigenbasis Q_G ⊗ Q_A,

        Λ = mean_n Σ_k p_nk (Q_Gᵀ ∇_θ CE(x_n, k) Q_A)²   (elementwise square; per-sample gradients, positions summed),

    in place of K-FAC's s_G s_Aᵀ / T. Same eigenvectors, but each eigen-direction gets the curvature the data really
    have along it (K-FAC's product of the factors' eigenvalues assumes inputs and output gradients independent).
    ``eigen``: layer → (Q_A, Q_G)."""
    layers = weight_layers(model)
    total = {m: 0.0 for m in layers}
    rotated = {}

    def on_batch(inputs):  # the inputs' coordinates in Q_A, once per batch (they do not depend on the class)
        for m in layers:
            rows = _input_rows(m, inputs[m])
            rotated[m] = (rows @ eigen[m][0].to(rows.dtype)).reshape(len(inputs[m]), -1, rows.shape[1])

    def on_class(grads):  # per-sample products in the model's dtype, their squares summed in float64
        for m in layers:
            g = _output_rows(grads[m])
            g = (g @ eigen[m][1].to(g.dtype)).reshape(len(rotated[m]), -1, g.shape[1])
            total[m] = total[m] + (torch.einsum("nto,nti->noi", g, rotated[m]).double() ** 2).sum(0)

    _predictive_backwards(model, data, batch_size, on_batch, on_class)
    return {m: total[m] / len(data) for m in layers}


def mean_loss_gradient(model: nn.Module, data: ImageDataset, batch_size: int = 500) -> dict:
    """layer → ∂/∂θ_l of mean_{data} CE, in the [W | b] layout, float64 (the model as it is, eval mode expected)."""
    model.zero_grad(set_to_none=True)
    with torch.enable_grad():
        for x, y in iter_batches(data, batch_size):
            logits = model(x.to(device(), next(model.parameters()).dtype))
            (F.cross_entropy(logits, y.to(device()), reduction="sum") / len(data)).backward()
    grads = {m: as_matrix(m.weight.grad, m.bias.grad if m.bias is not None else None).double().clone()
             for m in weight_layers(model)}
    model.zero_grad(set_to_none=True)
    return grads


class DampedInverse:
    """g ↦ (F_l + γI)⁻¹ g_l per layer, F_l = A_l ⊗ G_l / T_l from :func:`kfac_factors`, through the eigendecompositions
    of A_l and G_l (computed once): (F + γI)⁻¹ g = Q_G [(Q_Gᵀ g Q_A) / (Λ + γ)] Q_Aᵀ, Λ = s_G s_Aᵀ / T until
    :meth:`refit_eigenvalues` replaces it with EK-FAC's."""

    def __init__(self, factors: dict, damping: float):
        self.damping = damping
        self.from_cache = False  # True when the eigenbases and eigenvalues were read back (fitted_inverse)
        self.eigen = {}
        for m, (A, G, positions) in factors.items():
            sa, qa = torch.linalg.eigh(A)
            sg, qg = torch.linalg.eigh(G)
            self.eigen[m] = (qa, qg, sg.clamp(min=0)[:, None] * sa.clamp(min=0)[None, :] / positions)

    @classmethod
    def from_eigen(cls, eigen: dict, damping: float) -> "DampedInverse":
        """The inverse from eigenbases and eigenvalues computed before (layer → (Q_A, Q_G, Λ); see kfac_cache)."""
        inverse = cls({}, damping)
        inverse.eigen = dict(eigen)
        inverse.from_cache = True
        return inverse

    def refit_eigenvalues(self, model: nn.Module, data: ImageDataset, batch_size: int = 100) -> "DampedInverse":
        """Λ ← :func:`corrected_eigenvalues` over ``data`` (EK-FAC), same eigenvectors; returns self."""
        refit = corrected_eigenvalues(model, data, {m: (qa, qg) for m, (qa, qg, _) in self.eigen.items()}, batch_size)
        self.eigen = {m: (qa, qg, refit[m]) for m, (qa, qg, _) in self.eigen.items()}
        return self

    def __call__(self, grads: dict) -> dict:
        out = {}
        for m, (qa, qg, curvature) in self.eigen.items():
            out[m] = qg @ ((qg.T @ grads[m] @ qa) / (curvature + self.damping)) @ qa.T
        return out


def inner(a: dict, b: dict) -> float:
    """Σ_l ⟨a_l, b_l⟩ over the layers of two per-layer dicts (the Frobenius inner product of the whole parameter)."""
    return sum(float((a[m] * b[m]).sum()) for m in a)


def fitted_inverse(model: nn.Module, data: ImageDataset, damping: float, corrected: bool = False,
                   cache: Optional[CurvatureCache] = None) -> DampedInverse:
    """(F + γI)⁻¹ with F the K-FAC curvature of ``model`` over ``data`` — EK-FAC's eigenvalues when ``corrected`` —
    read from ``cache`` (:mod:`mumis.methods.kfac_cache`) when this model and data were seen before, else computed
    (and written there)."""
    layers = weight_layers(model)
    key = curvature_key(model, data, corrected, CURVATURE_BATCH) if cache is not None else None
    eigen = cache.load(key, layers) if cache is not None else None
    if eigen is not None:
        return DampedInverse.from_eigen(eigen, damping)
    inverse = DampedInverse(kfac_factors(model, data, CURVATURE_BATCH), damping)
    if corrected:  # in batches of 100: the per-sample gradients take N × out × in per layer
        inverse.refit_eigenvalues(model, data, CURVATURE_BATCH)
    if cache is not None:
        cache.save(key, layers, inverse.eigen)
    return inverse


def removal_direction(model: nn.Module, forget: ImageDataset, curvature: ImageDataset, train_size: int, damping: float,
                      weight_decay: float, batch_size: int = 500, corrected: bool = False,
                      cache: Optional[CurvatureCache] = None) -> tuple[dict, DampedInverse]:
    """The unprojected step of :func:`kfac_removal_step` and the damped inverse it was solved with (the re-projected
    scan of ``newton`` projects this one direction again at every scale, in the same metric). ``corrected``: EK-FAC's
    eigenvalues (:func:`corrected_eigenvalues`) instead of K-FAC's; ``cache``: see :func:`fitted_inverse`."""
    inverse = fitted_inverse(model, curvature, damping, corrected, cache)
    rhs = mean_loss_gradient(model, forget, batch_size)
    for m in rhs:
        if isinstance(m, nn.Linear):
            rhs[m] = rhs[m] + weight_decay * layer_matrix(m)
    n_f = len(forget)
    return {m: d * (n_f / (train_size - n_f)) for m, d in inverse(rhs).items()}, inverse


def class_loss_gradients(model: nn.Module, data: ImageDataset, batch_size: int = 500) -> list[dict]:
    """c_k = ∇ mean_{data, y = k} CE for every class k present in ``data`` (the model as it is): the constraints of
    the projected step."""
    labels = data.labels
    return [mean_loss_gradient(model, data.subset(torch.nonzero(labels == k).squeeze(1)), batch_size)
            for k in torch.unique(labels).tolist()]


def kfac_removal_step(model: nn.Module, forget: ImageDataset, curvature: ImageDataset, train_size: int, damping: float,
                      weight_decay: float, batch_size: int = 500, keep_class_losses: bool = False,
                      corrected: bool = False) -> dict:
    """layer → Δθ_l = n_f / (n − n_f) · (F_l + γI)⁻¹ r_l, with F_l the K-FAC curvature over ``curvature`` and r_l the
    mean cross-entropy gradient over ``forget`` — plus λθ on linear layers only: the original minimises
    mean CE + (λ/2)‖θ‖², but convolutions followed by BatchNorm are scale-invariant and do not satisfy
    mean_D ∇CE = −λθ, so the stationarity term is left out for them.

    ``keep_class_losses``: the step is projected so that, to first order, each class's mean cross-entropy over
    ``curvature`` stays where it is — the step nearest Δ in the damped K-FAC metric M = F + γI with Cᵀ Δ' = 0,

        Δ' = Δ − P C (Cᵀ P C)⁻¹ Cᵀ Δ,   P = M⁻¹,  C = [c_1 … c_K],  c_k = ∇ mean_{curvature, y = k} CE,

    (classes with no sample in ``curvature`` give no constraint). A retrained model classifies unseen data as the
    original does (its test accuracy per class is the same); what the unconstrained step does to them is damage
    shared by all data, not D_f's contribution (docs/research/mumis-variants.md).
    """
    step, inverse = removal_direction(model, forget, curvature, train_size, damping, weight_decay, batch_size, corrected)
    if keep_class_losses:
        step = project_out(step, class_loss_gradients(model, curvature, batch_size), inverse)
    return step


def project_out(step: dict, constraints: list[dict], inverse: DampedInverse) -> dict:
    """Δ − P C (Cᵀ P C)⁻¹ Cᵀ Δ (P = ``inverse``, C's columns = ``constraints``): Δ's nearest point in the metric
    P⁻¹ on which every constraint's first-order change ⟨c_k, Δ'⟩ is zero. Least squares for (Cᵀ P C) so that
    linearly dependent constraints do no harm."""
    preconditioned = [inverse(c) for c in constraints]
    gram = torch.tensor([[inner(c, pc) for pc in preconditioned] for c in constraints], dtype=torch.float64)
    coefficients = torch.linalg.lstsq(gram, torch.tensor([inner(c, step) for c in constraints], dtype=torch.float64)[:, None],
                                      driver="gelsd").solution[:, 0]
    return {m: d - sum(float(a) * pc[m] for a, pc in zip(coefficients, preconditioned)) for m, d in step.items()}


def apply_step(model: nn.Module, start: dict, step: dict, scale: float) -> None:
    """Set every layer of ``step`` to start + scale · Δθ (``start``: layer → its [W | b] before any step)."""
    set_layers(model, {m: start[m] + scale * delta for m, delta in step.items()})


@torch.no_grad()
def set_layers(model: nn.Module, theta: dict) -> None:
    """Set every layer of ``theta`` (layer → [W | b], any float dtype) as its weight and bias."""
    for m, matrix in theta.items():
        matrix = matrix.to(m.weight.dtype)
        if m.bias is not None:
            m.bias.copy_(matrix[:, -1])
            matrix = matrix[:, :-1]
        m.weight.copy_(matrix.reshape(m.weight.shape))

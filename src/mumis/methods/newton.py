"""``newton``: take D_f's contribution out of the classifier layer with one Newton step on the retain objective,
curvature from a held-out set — influence-function removal (Koh & Liang 2017; Guo et al. 2020) made
remaining-data-free: the first rule measured here to beat doing nothing on random requests."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from mumis.data import ImageDataset, iter_batches
from mumis.errors import MumisError
from mumis.methods.base import DataRole, GrantedData, MethodResult, UnlearningMethod
from mumis.methods.kfac import (
    class_loss_gradients,
    kfac_removal_step,
    layer_matrix,
    project_out,
    removal_direction,
    set_layers,
    weight_layers,
)
from mumis.methods.kfac_cache import CurvatureCache
from mumis.methods.registry import register
from mumis.methods.stopping import (
    accuracy_tolerance,
    label_confidence,
    less_accurate_than_heldout,
    membership_threshold,
)
from mumis.metrics.accuracy import predict_logits
from mumis.models import classifier_head
from mumis.models.head import capture_features
from mumis.runtime import device


@dataclass(frozen=True)
class NewtonConfig:
    # How many samples the model was trained on (D_r + D_f). None: taken from the request (the benchmark and the
    # CLI know it from the split); the Python API needs it passed.
    train_size: Optional[int] = None
    # λ of the original's training objective mean CE + (λ/2)‖θ‖²: PyTorch's SGD ``weight_decay`` (mumis' recipe:
    # 5e-4). It is both the damping of the Hessian and the stationarity term; set it to how the model was trained.
    weight_decay: float = 5e-4
    cg_tol: float = 1e-8  # conjugate gradients: stop at ‖residual‖ ≤ tol · ‖right-hand side‖
    cg_max_iter: int = 2000
    batch_size: int = 128  # inference and loss-gradient batches (a CPU keeps 128 in cache; results do not depend on it)
    guard: bool = True  # halve the step (≤ 5 times) while held-out accuracy falls by more than two standard errors
    # Held-out accuracy (points) that earlier requests in this model's history already cost: the guard allows only
    # what is left of the two standard errors, so a chain of requests cannot add up its sampling errors. `mumis
    # forget` sets it from the manifests of the models the input came from.
    heldout_spent: float = 0.0
    # "head": the exact step on the classifier layer (above). "all": a K-FAC step on every conv and linear layer,
    # taken only as far as a scan over scan_scales() allows (see Newton); for ResNets that memorise D_f in the features.
    layers: str = "head"
    # A folder where the all-layer step keeps the held-out curvature of the model it starts from, for the next
    # request served from that same model (bit-for-bit the same step; mumis.methods.kfac_cache). `mumis forget`
    # sets it to the cache folder; None: computed every time, nothing written.
    curvature_cache: Optional[str] = None


@dataclass(frozen=True)
class ScanSettings:
    """How the all-layer step is built and scanned. The product runs the settings that measured closest to retrain
    (docs/research/mumis-variants.md); the study's ``newton_study`` (mumis.experimental) varies them.

    * ``keep_class_losses``: project the step so that each class's mean held-out loss is unchanged to first order
      (the part of the step that moves unseen data too is damage, not D_f's contribution).
    * ``reproject``: project again at every scale of the scan, with the class losses' gradients at the weights
      reached so far (the path bends where a fixed projection stops holding); the constraints then use the even half
      of the held-out set and the stop rule the odd half — on the same samples the constraints would blind the guard.
    * ``match_accuracy``: also stop at the first scale where D_f's accuracy is no higher than held-out accuracy (a
      retrained model classifies D_f like any unseen data).
    * ``curvature``: "ekfac" — K-FAC's eigenvectors with each eigen-direction's curvature refit from per-sample
      gradients (George et al. 2018), closer to retrain on the ResNets than "kfac" (A ⊗ G per layer) for about
      twice the time.
    * ``resolution``: scales per doubling of the step in the scan from 1/64 to 1 (2: √2 apart, 13 scales).
    """

    keep_class_losses: bool = True
    reproject: bool = True
    match_accuracy: bool = True
    curvature: str = "ekfac"
    resolution: int = 2


def scan_scales(per_doubling: int) -> tuple[float, ...]:
    """The all-layer step's scan: 2^(-k/per_doubling) from 1/64 up to the full Newton step (which collapses a
    ResNet)."""
    return tuple(2.0 ** (-k / per_doubling) for k in range(6 * per_doubling, -1, -1))


@torch.no_grad()
def head_features(model: nn.Module, data: ImageDataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[z, 1] for every sample (z = the classifier layer's input, eval mode) in float64, and the labels."""
    dev = device()
    with capture_features(model, data.batch(torch.arange(1))[0].to(dev)) as captured:
        for x, _ in iter_batches(data, batch_size):
            model(x.to(dev))
    z = torch.cat(captured).double()
    return torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype, device=z.device)], 1), data.labels.to(z.device)


def ce_gradient(theta: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """∂/∂θ of mean_i CE(θ [z_i; 1], y_i) = mean_i (p_i − e_{y_i}) [z_i; 1]ᵀ, for θ = [W | b] (K × (d+1))."""
    residual = torch.softmax(z @ theta.T, 1)
    residual[torch.arange(len(y)), y] -= 1.0
    return residual.T @ z / len(z)


def ce_hessian_product(theta: torch.Tensor, z: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """v ↦ H v for H = mean_i (diag p_i − p_i p_iᵀ) ⊗ [z_i; 1][z_i; 1]ᵀ, the Hessian of the mean CE in θ (it does not
    depend on the labels), without forming H (K(d+1))²."""
    p = torch.softmax(z @ theta.T, 1)

    def product(v: torch.Tensor) -> torch.Tensor:
        u = z @ v.T  # n × K: how v changes each logit
        return (p * (u - (p * u).sum(1, keepdim=True))).T @ z / len(z)

    return product


def conjugate_gradients(apply: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, tol: float,
                        max_iter: int) -> tuple[torch.Tensor, int, float]:
    """Solve A x = b for a symmetric positive definite A given as x ↦ A x. Returns (x, iterations, relative residual)."""
    x = torch.zeros_like(b)
    r = b.clone()
    d = r.clone()
    rr, bb = float((r * r).sum()), float((b * b).sum())
    it = 0
    while it < max_iter and rr > tol**2 * bb:
        ad = apply(d)
        alpha = rr / float((d * ad).sum())
        x += alpha * d
        r -= alpha * ad
        rr, rr_old = float((r * r).sum()), rr
        d = r + (rr / rr_old) * d
        it += 1
    return x, it, math.sqrt(rr / max(bb, 1e-300))


def removal_step(theta: torch.Tensor, z_forget: torch.Tensor, y_forget: torch.Tensor, z_curv: torch.Tensor,
                 train_size: int, weight_decay: float, tol: float = 1e-8, max_iter: int = 2000) -> tuple[torch.Tensor, dict]:
    """Δθ = n_f / (n − n_f) · (H + λI)⁻¹ (g_f + λθ): one Newton step from θ on the retain objective.

    The original θ minimises L_D(θ) = mean_D CE + (λ/2)‖θ‖², so mean_D ∇CE = −λθ, and the retain objective
    L_r = mean_{D_r} CE + (λ/2)‖θ‖² has gradient −n_f/(n − n_f) · (g_f + λθ) at θ, with g_f = mean_{D_f} ∇CE: the
    forget samples' deviation from the training average (for a random D_f the typical part cancels, what is left is
    what is special about these samples). Its Hessian is approximated by the mean CE Hessian H over ``z_curv`` (a
    held-out set stands in for D_r) plus λI. Returns Δθ and the solver's facts.
    """
    n_f = len(z_forget)
    if train_size <= n_f:
        raise MumisError(f"train_size={train_size} must exceed the {n_f} forget samples (it counts D_r + D_f); pass the "
                         "number of samples the model was trained on")
    rhs = (ce_gradient(theta, z_forget, y_forget) + weight_decay * theta) * (n_f / (train_size - n_f))
    hessian = ce_hessian_product(theta, z_curv)
    step, iterations, residual = conjugate_gradients(lambda v: hessian(v) + weight_decay * v, rhs, tol, max_iter)
    return step, {"cg_iterations": iterations, "cg_residual": residual, "step_norm": float(step.norm()),
                  "theta_norm": float(theta.norm())}


def _logit_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * float((logits.argmax(1) == labels).double().mean())


def _accuracy(theta: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> float:
    return _logit_accuracy(z @ theta.T, y)


def _losses(theta: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cross_entropy(z @ theta.T, y, reduction="none")


@register
class Newton(UnlearningMethod):
    """One Newton step that removes D_f from the classifier layer's optimum, for requests of individual samples.

    θ ← θ + n_f/(n − n_f) · (H_h + λI)⁻¹ (g_f + λθ) on the last ``nn.Linear`` (θ = [W | b]): g_f the mean
    cross-entropy gradient over D_f, H_h the mean cross-entropy Hessian over the declared held-out set (never
    trained on: the stand-in for D_r's), λ the weight decay the model was trained with, n the training-set size
    (see :func:`removal_step`). The system is solved by conjugate gradients without forming H. The rest of the
    network is unchanged, in eval mode.

    Guard: the held-out set (its features are already computed) must not lose more accuracy than two standard
    errors, less what earlier requests in the model's history spent (``heldout_spent``); otherwise the step is
    halved, up to five times, and then the original is returned (``stop_reason="heldout_drop"``).

    * **Data**: D_f and a held-out set (``needs = {forget, heldout}``); never the retain set.
    * **Where it works** (docs/research/mumis-variants.md): when the forget samples' individuality sits in the
      classifier layer (the small CNN: random 10 % and sub-class below 1.0 Avg. Gap). On the ResNets here the
      forget samples are fit perfectly inside the features (training loss ≈ 0), g_f ≈ 0 and the step is ≈ 0:
      the model is handed back nearly unchanged. Not meant for class requests (use MU-Mis).
    * ``layers="all"``: the same removal step on every conv and linear layer with EK-FAC curvature from the
      held-out set (:mod:`mumis.methods.kfac`; damping = λ; the λθ term on linear layers only, since convolutions
      behind BatchNorm are scale-invariant), projected so that each class's mean held-out loss does not move to first
      order (:class:`ScanSettings`). The full step collapses a ResNet — even with D_r's own curvature — so it is
      scanned up from 1/64 of it in steps of √2, re-projected at every scale, and stops at the first scale where the
      one-threshold confidence attack (threshold fixed at the start from D_f vs held-out) calls as large a share of
      D_f as of held-out data unseen (``stop_reason="membership"``) or D_f's accuracy is no higher than held-out
      accuracy (``"forget_accuracy"``), or keeps the previous scale once held-out accuracy falls by more than two
      standard errors (``"heldout_drop"``). Both stop rules take held-out data as what D_f should look like once
      unseen. When D_f is classified worse than held-out data beyond sampling noise at the start
      (:func:`~mumis.methods.stopping.less_accurate_than_heldout`: samples the model fits only because it saw them,
      which a retrained model classifies worse still), they would stop before the first step, so the scan instead
      runs to the guard: the largest scale that keeps held-out accuracy (docs/research/hard-samples.md).
    """

    name = "newton"
    needs = frozenset({DataRole.FORGET, DataRole.HELDOUT})
    Config = NewtonConfig

    def __init__(self, config: Optional[NewtonConfig] = None, **overrides):
        super().__init__(config, **overrides)
        if self.config.layers not in ("head", "all"):  # at construction, like MU-Mis's options: before any data loads
            raise MumisError(f"newton: layers={self.config.layers!r} is not one of 'head', 'all'")

    @property
    def scan(self) -> ScanSettings:
        """How the all-layer step is built and scanned (see ScanSettings)."""
        return ScanSettings()

    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        cfg = self.config
        train_size = cfg.train_size or data.train_size
        if train_size is None:
            raise MumisError("method 'newton' needs the number of samples the model was trained on (D_r + D_f): pass "
                             "train_size=N (CLI: --option train_size=N); the benchmark takes it from the split")
        model.to(device()).eval()
        if cfg.layers == "all":
            return self._all_layers(model, data, train_size)
        head = classifier_head(model, data.forget.batch(torch.arange(1))[0].to(device()))
        z_f, y_f = head_features(model, data.forget, cfg.batch_size)
        z_h, y_h = head_features(model, data.heldout, cfg.batch_size)
        theta = torch.cat([head.weight.detach(), head.bias.detach()[:, None]], 1).double() if head.bias is not None \
            else head.weight.detach().double()
        if head.bias is None:  # no bias: the appended constant feature has no weight to move
            z_f, z_h = z_f[:, :-1], z_h[:, :-1]
        step, info = removal_step(theta, z_f, y_f, z_h, train_size, cfg.weight_decay, cfg.cg_tol, cfg.cg_max_iter)

        before = _accuracy(theta, z_h, y_h)
        tolerance = accuracy_tolerance(before, len(y_h))
        floor = before - max(tolerance - cfg.heldout_spent, 0.0)
        scale, reason = 1.0, "newton_step"
        while cfg.guard and _accuracy(theta + scale * step, z_h, y_h) < floor:
            scale /= 2
            if scale < 1 / 32:
                scale, reason = 0.0, "heldout_drop"
                break
        final = theta + scale * step
        with torch.no_grad():
            head.weight.copy_(final[:, : head.weight.shape[1]])
            if head.bias is not None:
                head.bias.copy_(final[:, -1])
        heldout_losses = _losses(final, z_h, y_h)
        info.update(step_scale=scale, train_size=train_size, heldout_acc_before=before,
                    heldout_acc_after=_accuracy(final, z_h, y_h), heldout_tolerance=tolerance, heldout_floor=floor,
                    forget_loss_after=float(_losses(final, z_f, y_f).mean()),
                    heldout_loss_after=float(heldout_losses.mean()),
                    heldout_loss_se=float(heldout_losses.std() / math.sqrt(len(y_h))))
        return MethodResult(model=model, stop_reason=reason, steps=1 if scale else 0, info=info)

    def _all_layers(self, model: nn.Module, data: GrantedData, train_size: int) -> MethodResult:
        """The K-FAC step on every conv and linear layer (methods/kfac.py), scanned up from 1/64 of it: stop at the
        first scale where a confidence attack calls as large a share of D_f as of held-out data unseen (the
        threshold t* is fixed at the start) or, with ``match_accuracy``, where D_f's accuracy is down to held-out
        accuracy; keep the previous scale once held-out accuracy falls by more than two standard errors. With
        ``reproject`` the step is projected again at every scale (see the config)."""
        cfg, scan_settings = self.config, self.scan
        start = {m: layer_matrix(m) for m in weight_layers(model)}
        inverse = None
        heldout, corrected = data.heldout, scan_settings.curvature == "ekfac"
        if scan_settings.reproject:
            if len(heldout) < 2:
                raise MumisError(f"newton: the all-layer step splits the held-out set in two (constraints, stop rule) and "
                                 f"needs at least 2 samples, got {len(heldout)}; pass a larger held-out set")
            constraint_set = heldout.subset(range(0, len(heldout), 2))
            heldout = heldout.subset(range(1, len(heldout), 2))
            cache = CurvatureCache(Path(cfg.curvature_cache)) if cfg.curvature_cache else None
            step, inverse = removal_direction(model, data.forget, data.heldout, train_size, cfg.weight_decay,
                                              cfg.weight_decay, cfg.batch_size, corrected=corrected, cache=cache)
        else:
            step = kfac_removal_step(model, data.forget, heldout, train_size, cfg.weight_decay, cfg.weight_decay,
                                     cfg.batch_size, keep_class_losses=scan_settings.keep_class_losses,
                                     corrected=corrected)

        def advance(position: dict, scale: float, reached: float) -> dict:
            """The weights at ``scale``: start + scale · Δ, or, re-projecting, the last point plus the step projected
            at it, times the distance to go."""
            if not scan_settings.reproject:
                return {m: start[m] + scale * d for m, d in step.items()}
            increment = project_out(step, class_loss_gradients(model, constraint_set, cfg.batch_size), inverse)
            return {m: position[m] + (scale - reached) * d for m, d in increment.items()}

        def measure() -> tuple[torch.Tensor, torch.Tensor, float, float]:
            """True-class confidences of D_f and of the (rule's) held-out set, held-out and D_f accuracy (%)."""
            forget, held = (predict_logits(model, d, cfg.batch_size) for d in (data.forget, heldout))
            return (label_confidence(forget, data.forget.labels), label_confidence(held, heldout.labels),
                    _logit_accuracy(held, heldout.labels), _logit_accuracy(forget, data.forget.labels))

        conf_f, conf_h, before, forget_accuracy = measure()
        threshold = membership_threshold(conf_f, conf_h)
        tolerance = accuracy_tolerance(before, len(conf_h))
        floor = before - max(tolerance - cfg.heldout_spent, 0.0)
        below = lambda conf: 100.0 * float((conf < threshold).double().mean())  # noqa: E731
        # D_f classified worse than held-out data beyond noise: held-out data is no picture of it once unseen, so
        # neither stop rule applies and only the guard stops the scan
        atypical = less_accurate_than_heldout(forget_accuracy, len(conf_f), before, len(conf_h))

        def looks_unseen() -> Optional[str]:
            """Why D_f now looks like unseen data (the scan's last row), or None."""
            if atypical:
                return None
            _, accuracy, forget_below, heldout_below, forget_acc = scan[-1]
            if forget_below >= heldout_below:
                return "membership"
            if scan_settings.match_accuracy and forget_acc <= accuracy:
                return "forget_accuracy"
            return None

        scan = [(0.0, before, below(conf_f), below(conf_h), forget_accuracy)]
        chosen, reason, accepted = 0.0, "newton_step", start
        if why := looks_unseen():  # D_f already looks unseen: nothing to do
            reason = why
        else:
            for scale in scan_scales(scan_settings.resolution):
                position = advance(accepted, scale, chosen)
                set_layers(model, position)
                conf_f, conf_h, accuracy, forget_accuracy = measure()
                scan.append((scale, accuracy, below(conf_f), below(conf_h), forget_accuracy))
                if cfg.guard and accuracy < floor:
                    reason = "heldout_drop"
                    break
                chosen, accepted = scale, position
                if why := looks_unseen():
                    reason = why
                    break
        set_layers(model, accepted)
        info = {"layers": "all", "curvature": scan_settings.curvature,
                "keep_class_losses": scan_settings.keep_class_losses, "reproject": scan_settings.reproject,
                "match_accuracy": scan_settings.match_accuracy,
                "curvature_from_cache": bool(inverse is not None and inverse.from_cache),
                "atypical_forget_set": atypical,
                "step_scale": chosen, "train_size": train_size, "membership_threshold": threshold,
                "heldout_acc_before": before, "heldout_tolerance": tolerance, "heldout_floor": floor,
                "heldout_acc_after": next(row[1] for row in scan if row[0] == chosen), "rule_heldout_size": len(heldout),
                "step_norm": float(sum(float((d ** 2).sum()) for d in step.values()) ** 0.5),
                "moved_norm": float(sum(float(((accepted[m] - start[m]) ** 2).sum()) for m in start) ** 0.5),
                "scan": [dict(zip(("scale", "heldout_acc", "forget_below", "heldout_below", "forget_acc"), row)) for row in scan]}
        return MethodResult(model=model, stop_reason=reason, steps=len(scan) - 1, info=info)

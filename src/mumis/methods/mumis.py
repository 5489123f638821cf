"""MU-Mis: remaining-data-free unlearning by suppressing sample contribution (arXiv 2402.15109).

Training makes the logit of a sample's own class c sensitive to its input. MU-Mis shrinks that sensitivity
and raises the sensitivity of an irrelevant class c' on the forget set, by minimising

    L(D_f; w) = 1/N_f Σ_{x ∈ D_f} ( ‖∇x f_c(x; w)‖²_F − ‖∇x f_c'(x; w)‖²_F )

over the weights (double backprop), then stops when the irrelevant-class sensitivity, after dipping,
recovers past δ of its starting value (:class:`~mumis.methods.stopping.DipRecoverRule`).
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mumis.data import iter_batches
from mumis.errors import MumisError
from mumis.methods.base import DataRole, GrantedData, MethodResult, UnlearningMethod
from mumis.methods.registry import register
from mumis.methods.stopping import (
    DipRecoverRule,
    HeldoutMatchRule,
    NeverRule,
    PlateauRule,
    accuracy_tolerance,
    label_confidence,
    membership_threshold,
)
from mumis.metrics.accuracy import predict_logits
from mumis.models import (
    chunked_gradients,
    classifier_head,
    double_backprop_chunk,
    logit_input_gradients,
    random_other_classes,
    squared_norms,
)
from mumis.progress import progress_bar
from mumis.runtime import DOUBLE_BACKPROP_LAYOUT, device, double_backprop_kernels

OBJECTIVES = ("paper", "target_only", "irrelevant_only", "bounded", "all_classes", "dynamic")
OPTIMIZERS = ("sgd", "momentum", "adam")
STOP_RULES = ("dip_recover", "loss_plateau", "heldout", "heldout_loss", "membership", "none")
HELDOUT_STOPS = ("heldout", "heldout_loss", "membership")  # stop rules that read a declared held-out set


def mumis_loss(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, other: torch.Tensor, objective: str = "paper",
    bound: Optional[torch.Tensor] = None, num_classes: Optional[int] = None,
) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """The MU-Mis objective on one batch: (loss, per-sample ‖∇x f_c‖², per-sample ‖∇x f_c'‖² or None).

    Raw logits; one forward pass feeds every input gradient, each kept differentiable for the weights.

    * ``paper``:           mean( ‖∇f_c‖² − ‖∇f_c'‖² ),  c' = ``other`` (one irrelevant class per sample).
    * ``target_only``:     mean( ‖∇f_c‖² )  — the paper's TC ablation (Table A12).
    * ``irrelevant_only``: mean( −‖∇f_c'‖² ) — the paper's OC ablation.
    * ``bounded``:         mean( ‖∇f_c‖² − min(‖∇f_c'‖², b) ), b = ``bound``: each sample's pre-unlearning
      ‖∇f_c'‖² for the same c'. The irrelevant term may recover what it had, never more, so the loss is bounded below.
    * ``all_classes``:     mean( ‖∇f_c‖² − 1/(K−1) Σ_{c'≠c} ‖∇f_c'‖² ) instead of one random c' (K−1 gradients).
    * ``dynamic``:         mean( α_c ‖∇f_c‖² − α_c' ‖∇f_c'‖² ) with per-sample indicator weights (our design for
      the paper's App. F.4, whose rule is not published): α_c = 1[‖∇f_c‖² > ‖∇f_c'‖²] (stop suppressing a sample
      once its target sensitivity is below the irrelevant one) and α_c' = 1[‖∇f_c'‖² < b] (recover the irrelevant
      sensitivity up to its pre-unlearning value b, as ``bounded``). A sample that satisfies both stops pulling.
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")
    x = x.detach().requires_grad_(True)
    logits = model(x)

    def sq(classes):
        return squared_norms(logit_input_gradients(model, x, classes, create_graph=True, logits=logits))

    target_sq = sq(y)
    if objective == "target_only":
        return target_sq.mean(), target_sq, None
    if objective == "all_classes":
        k = num_classes or logits.shape[1]
        other_sq = torch.stack([sq((y + shift) % k) for shift in range(1, k)]).mean(0)
    else:
        other_sq = sq(other)
    if objective == "dynamic":
        weight_target = (target_sq > other_sq).detach().to(target_sq.dtype)
        weight_other = (other_sq < bound).detach().to(other_sq.dtype)
        return (weight_target * target_sq - weight_other * other_sq).mean(), target_sq, other_sq
    irrelevant = torch.minimum(other_sq, bound) if objective == "bounded" else other_sq
    if objective == "irrelevant_only":
        return (-irrelevant).mean(), target_sq, other_sq
    return (target_sq - irrelevant).mean(), target_sq, other_sq


# Named bundles of options; explicit options override a preset's. "default" is the configuration that measured closest
# to retrain on the variants grid (docs/research/mumis-variants.md): the target term on the classifier layer with a curvature-scaled step. "paper" is the
# method as published, and the paper's ablations and our objectives are variations of the paper's setting.
PAPER = {"objective": "paper", "update": "all", "lr_scale": "fixed", "lr": 1e-3, "stop": "dip_recover", "fa_floor": None}
VARIANTS: dict[str, dict] = {
    "default": {},
    "paper": PAPER,
    "target_only": {**PAPER, "objective": "target_only"},
    "irrelevant_only": {**PAPER, "objective": "irrelevant_only"},
    "bounded": {**PAPER, "objective": "bounded"},
    "all_classes": {**PAPER, "objective": "all_classes"},
    "dynamic": {**PAPER, "objective": "dynamic"},
}
REQUESTS = ("class", "samples")


@dataclass(frozen=True)
class MuMisConfig:
    # a preset of the options below (see VARIANTS): "default" = the fields' defaults; "paper" = the paper's method
    variant: str = "default"
    # what is being deleted: "class" (every sample of a class — the retrained model has forget accuracy 0, so the
    # run ends at ``fa_floor``) or "samples" (a set of individual samples — the retrained model still classifies them
    # like unseen data: the run needs a held-out set and stops, possibly before the first step, once a confidence
    # attack calls as large a share of D_f as of held-out data unseen — see SAMPLE_REQUEST_DEFAULTS). On sample
    # requests the method ``newton`` (methods/newton.py) measured closer to a retrained model (docs/research/mumis-variants.md)
    request: str = "class"
    objective: str = "target_only"  # paper | target_only | irrelevant_only | bounded | all_classes | dynamic
    optimizer: str = "sgd"  # sgd | momentum (SGD, 0.9) | adam
    lr: float = 0.5  # step size, in the unit ``lr_scale`` says (the paper variant: 1e-3, fixed)
    # fixed | sensitivity: SGD step = lr / (starting mean ‖∇x f_c‖² over D_f) | curvature: SGD step = lr / λ_max, the
    # largest |eigenvalue| of the objective's Hessian in the moving weights at the start (lr = 1: a Newton step
    # along the sharpest direction), measured on one batch of D_f — scale-free in the model and the data
    lr_scale: str = "curvature"
    update: str = "head"  # which weights move: all | head (the last nn.Linear only; the features stay as trained)
    batch_size: int = 64  # mini-batches over D_f (the paper does not say; full batch is batch_size ≥ |D_f|)
    # memory: a batch whose double-backprop graph would not fit ``memory_budget_mb`` is processed in chunks (the
    # gradients are accumulated: the same step), so peak memory follows the budget, not |D_f| or the batch size;
    # ``chunk_size`` > 0 sets the chunk directly
    memory_budget_mb: float = 1024.0
    chunk_size: int = 0
    # dip_recover (the paper's rule) | loss_plateau | heldout (forget accuracy down to held-out accuracy) |
    # heldout_loss (mean forget loss up to the mean held-out loss) | membership (as large a share of D_f as of held-out
    # data below the confidence threshold that best separated them at the start: D_f looks unseen to a confidence
    # attack; docs/research/mumis-variants.md, with lr 0.05) | none (safeguards only)
    stop: str = "loss_plateau"
    delta: float = 0.9  # dip_recover: stop once the irrelevant sensitivity is back above δ·S_0 after a dip (Fig. 4)
    patience: int = 3  # loss_plateau: checks without a relative improvement of ``plateau_tol``
    plateau_tol: float = 0.01
    max_steps: int = 500  # safeguard: optimiser steps at most
    check_every: int = 0  # steps between checks of the stop rule; 0 = once per pass over D_f (Algorithm 1)
    monitor_classes: int = 3  # irrelevant classes per sample in the fixed panel that measures S(D_f)
    monitor_size: int = 1024  # sensitivities are measured on this many forget samples (fixed); accuracy on all
    explode_factor: float = 50.0  # divergence: |batch loss| above this × the starting mean ‖∇x f_c‖²
    fa_floor: Optional[float] = 0.0  # class requests: stop once forget accuracy (%) is at or below this (None: off)
    # class requests: stop once forget accuracy has not fallen for this many passes over D_f (a few stubborn samples
    # must not run the step cap; None: off)
    stall_passes: Optional[float] = 1.0
    seed: int = 0  # draws of c' and the batch order
    show_progress: bool = True


# A request for individual samples, unless the caller chose otherwise (docs/research/mumis-variants.md): the
# membership stop at a tenth of the class-request step, checked after every step. Measured on every sample-request
# cell of the grid it is no worse than the paper's method anywhere; the held-out accuracy match (the earlier default,
# ``stop="heldout"``) was worse than the paper's method — which hands back the original there — on the
# Fashion-MNIST sub-class cells, where the retrained model is the original to within 0.1 point.
SAMPLE_REQUEST_DEFAULTS = {"stop": "membership", "lr": 0.05, "check_every": 1}


def _chosen_options(config: Any, variant: str, overrides: dict) -> set[str]:
    """The options the caller set: the overrides, the variant's preset, and a passed config's non-default fields."""
    chosen = set(overrides) | set(VARIANTS[variant])
    if config is not None:
        default = MuMisConfig()
        chosen |= {f.name for f in dataclasses.fields(MuMisConfig) if getattr(config, f.name) != getattr(default, f.name)}
    return chosen


def _sample_request_defaults(cfg: MuMisConfig, chosen: set[str]) -> MuMisConfig:
    """Individual samples: a retrained model still classifies most of them, so forget accuracy → 0 is the wrong
    target. A held-out comparison decides (and may decide that nothing needs to change); each option the caller did
    not set takes its sample-request default, and a stop rule that reads no held-out set is replaced."""
    updates = {k: v for k, v in SAMPLE_REQUEST_DEFAULTS.items() if k not in chosen}
    if cfg.stop not in HELDOUT_STOPS:
        updates["stop"] = SAMPLE_REQUEST_DEFAULTS["stop"]
    return dataclasses.replace(cfg, **updates)


@register
class MuMis(UnlearningMethod):
    """MU-Mis: suppress the forget samples' contribution, read as input sensitivity, from the forget set alone.

    **Default (``variant="default"``, the closest to retrain on the variants grid — docs/research/mumis-variants.md)**: minimise the paper's *target*
    term mean ‖∇x f_c(x)‖² over D_f in the weights of the classifier layer only, with SGD steps of ``lr / λ_max``
    (λ_max: the objective's sharpest curvature, measured at the start — no learning rate to tune per model), until
    forget accuracy reaches ``fa_floor`` (0 %, a retrained model's forget accuracy on a class it never saw). For a
    class request only row c of the head moves, so no other class's prediction can get worse and the objective is a
    bounded quadratic: running past the stop cannot collapse the model. Departures from the paper: no irrelevant
    term (it is the unbounded part that collapses small models), head only, curvature step, forget-accuracy stop.
    For requests of individual samples (``request="samples"``) it needs a held-out set, see ``MuMisConfig``.

    **Paper (``variant="paper"``)**: the published method, with the choices it leaves open made explicit:

    * **Data**: the forget set only (``needs = {forget}``); the framework never grants it anything else.
    * **Input space**: gradients are taken with respect to the tensor the model receives (normalised pixels).
    * **c'**: one irrelevant class per sample, drawn uniformly from the K−1 others at every loss evaluation.
    * **BatchNorm / dropout**: the whole model stays in eval mode. Train-mode BatchNorm would couple the
      samples of a batch inside the input gradient and overwrite the running statistics with forget-only ones.
    * **Optimiser**: SGD, no momentum, no weight decay, mini-batches of ``batch_size`` over D_f.
    * **Variants** (the variants study; ``variant="paper"`` is the method above): other objectives
      (:func:`mumis_loss`), optimisers, a step size scaled by the starting sensitivity, and other stop rules —
      each one option of this class, none of them reading anything but D_f.
    * **Monitor** S(D_f): the mean over D_f of ‖∇x f_c'(x)‖_F (un-squared), over a *fixed* panel of
      ``monitor_classes`` irrelevant classes per sample drawn once before unlearning, so that successive
      checks compare the same quantity rather than fresh random draws. Checked every ``check_every`` steps.
    * **Stop reasons**: ``dip_recover`` (the paper's rule), ``fa_floor`` (optional), ``fa_stalled`` (class requests:
      forget accuracy has fallen, then not again for ``stall_passes`` passes over D_f), ``max_steps``, ``heldout``,
      ``heldout_loss``, ``membership`` (a confidence attack calls as large a share of D_f as of held-out data
      unseen), ``heldout_drop`` (sample requests: held-out accuracy fell by more than its sampling error; the last
      passing check's weights are returned), and
      ``diverged`` (a non-finite or exploding loss or statistic), which restores the weights of the last
      healthy check.

    The trace starts with the pre-unlearning target and irrelevant sensitivities (step 0). The rule assumes the
    target one starts above the irrelevant one (``info["target_above_irrelevant"]``); where it does not, or where
    the irrelevant sensitivity rises from the first step, the rule cannot fire and a safeguard ends the run.
    """

    name = "mumis"
    Config = MuMisConfig

    @property
    def needs(self) -> frozenset[DataRole]:
        """D_f only — plus a held-out set (never trained on) for a stop rule that reads one (``HELDOUT_STOPS``);
        never the retain set."""
        extra = {DataRole.HELDOUT} if self.config.stop in HELDOUT_STOPS else set()
        return frozenset({DataRole.FORGET, *extra})

    def __init__(self, config: Any = None, **overrides):
        variant = overrides.get("variant", getattr(config, "variant", "default"))
        if variant not in VARIANTS:
            raise MumisError(f"unknown MU-Mis variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
        # explicit fields win over the preset: a passed config's non-default fields, then keyword options
        explicit = _chosen_options(config, "default", {}) if config is not None else set()
        preset = {k: v for k, v in VARIANTS[variant].items() if k not in explicit}
        super().__init__(config, **{**preset, **overrides})
        if self.config.request not in REQUESTS:
            raise MumisError(f"MU-Mis option request={self.config.request!r} is not one of {REQUESTS}")
        if self.config.request == "samples":
            self.config = _sample_request_defaults(self.config, chosen=_chosen_options(config, variant, overrides))
        for option, allowed in (("objective", OBJECTIVES), ("optimizer", OPTIMIZERS), ("stop", STOP_RULES),
                                ("lr_scale", ("fixed", "sensitivity", "curvature")), ("update", ("all", "head"))):
            if getattr(self.config, option) not in allowed:
                raise MumisError(f"MU-Mis option {option}={getattr(self.config, option)!r} is not one of {allowed}")

    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        with double_backprop_kernels():  # attention layers: a kernel with a double backward
            return self._run(model, data, num_classes)

    def _run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        cfg = self.config
        dev = device()
        forget = data.forget
        model.to(dev, memory_format=DOUBLE_BACKPROP_LAYOUT).eval()
        trainable = _trainable_parameters(model, cfg.update, forget.batch(torch.arange(1))[0].to(dev))
        for p in model.parameters():
            p.requires_grad_(False)
        for p in trainable:
            p.requires_grad_(True)
        generator = torch.Generator().manual_seed(cfg.seed)
        y_all = forget.labels  # inputs are normalised batch by batch: D_f is never held as one float tensor
        panel = _fixed_panel(y_all, num_classes, cfg.monitor_classes, generator)
        aside = torch.Generator().manual_seed(cfg.seed + 1)  # draws that leave the c' / batch-order stream untouched
        watched = torch.randperm(len(y_all), generator=aside)[: cfg.monitor_size].sort().values
        check_every = cfg.check_every or math.ceil(len(forget) / cfg.batch_size)
        fits = cfg.chunk_size or double_backprop_chunk(model, tuple(forget.images.shape[1:]), cfg.memory_budget_mb * 2**20)
        chunk = min(cfg.batch_size, fits, len(forget))  # the passes that go batch by batch never hold more than a batch

        heldout = data.heldout if cfg.stop in HELDOUT_STOPS else None
        threshold = None
        if cfg.stop == "membership":  # fixed at the starting weights, where D_f are members and held-out data are not
            threshold = membership_threshold(*(label_confidence(predict_logits(model, d, 4 * chunk), d.labels)
                                               for d in (forget, heldout)))

        def monitor() -> dict:
            stats = _forget_statistics(model, forget, panel, watched, chunk, dev, threshold)
            if heldout is not None:
                logits = predict_logits(model, heldout, 4 * chunk)
                stats["heldout_acc"] = 100.0 * (logits.argmax(1) == heldout.labels).float().mean().item()
                stats["heldout_loss"] = F.cross_entropy(logits, heldout.labels).item()
                if threshold is not None:  # share (%) below the membership threshold; D_f's comes with its statistics
                    confidence = label_confidence(logits, heldout.labels)
                    stats["heldout_below"] = 100.0 * float((confidence < threshold).double().mean())
            return stats

        stats = monitor()
        trace = [{"step": 0, "loss": _objective_from_statistics(cfg.objective, stats), **stats}]
        info = {
            "chunk_size": chunk,
            "target_sensitivity_0": stats["target"],
            "irrelevant_sensitivity_0": stats["irrelevant"],
            "target_above_irrelevant": stats["target"] > stats["irrelevant"],
        }
        if threshold is not None:
            info["membership_threshold"] = threshold
        rule = _stop_rule(cfg)
        heldout_floor = None
        if cfg.request == "samples" and heldout is not None:
            # "no better than unseen data" up to the sampling error of the held-out accuracy (two standard errors)
            tolerance = accuracy_tolerance(stats["heldout_acc"], len(heldout))
            if cfg.stop == "heldout":
                rule = HeldoutMatchRule(tolerance=tolerance, at_start=True)
            info["heldout_tolerance"] = tolerance
            # Utility guard: a retrained model classifies unseen data as well as the original does, so held-out
            # accuracy falling by more than its sampling error means the steps are damaging the model (they can
            # drag forget and held-out accuracy down together, and the match rule would never fire): stop and
            # return the last checked weights that passed.
            heldout_floor = stats["heldout_acc"] - tolerance
        start_reason = cfg.stop if rule.update(_rule_input(cfg, trace[0])) else None
        explode_at = cfg.explode_factor * max(stats["target_sq"], 1e-12)
        good_state = copy.deepcopy(model.state_dict())
        bound = _squared_sensitivity_table(model, forget, num_classes, chunk, dev) if cfg.objective in ("bounded", "dynamic") else None

        def batch_gradients(index: torch.Tensor, other: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
            """The objective's mean and gradient over the samples ``index`` (with irrelevant classes ``other``),
            inputs loaded and graphs built one chunk at a time."""
            b = None if bound is None else bound[index, other.cpu()].to(dev)

            def chunk_loss(sl: slice) -> torch.Tensor:
                x, y = (t.to(dev) for t in forget.batch(index[sl]))
                return mumis_loss(model, x, y, other[sl], cfg.objective, bound=None if b is None else b[sl],
                                  num_classes=num_classes)[0]

            return chunked_gradients(chunk_loss, len(index), fits, trainable)

        lr = cfg.lr
        if cfg.optimizer != "adam" and cfg.lr_scale == "sensitivity":
            lr = cfg.lr / max(stats["target_sq"], 1e-12)
        elif cfg.optimizer != "adam" and cfg.lr_scale == "curvature":
            first = torch.randperm(len(y_all), generator=aside)[: 4 * cfg.batch_size]
            other0 = random_other_classes(y_all[first].to(dev), num_classes, aside)
            info["curvature"] = sharpest_curvature(lambda: batch_gradients(first, other0)[1], trainable)
            lr = cfg.lr / max(info["curvature"], 1e-12)
        info["lr"] = lr
        opt = _optimizer(cfg.optimizer, trainable, lr)

        step, reason, losses = 0, start_reason, []
        per_pass = math.ceil(len(forget) / cfg.batch_size)
        best_fa, best_step = trace[0]["forget_acc"], 0  # the stall rule: the lowest forget accuracy so far, and when
        with progress_bar("MU-Mis", None, cfg.show_progress) as advance:  # it stops on a rule, not at the cap
            while reason is None:
                order = torch.randperm(len(y_all), generator=generator)
                for index in order.split(cfg.batch_size):
                    other = random_other_classes(y_all[index].to(dev), num_classes, generator)
                    loss, grads = batch_gradients(index, other)
                    if not math.isfinite(loss) or abs(loss) > explode_at:
                        reason = "diverged"
                        break
                    for p, g in zip(trainable, grads):
                        p.grad = g
                    opt.step()
                    step += 1
                    losses.append(loss)
                    advance(f"loss {losses[-1]:+.3f}")
                    if step % check_every == 0 or step == cfg.max_steps:
                        stats = monitor()
                        if not all(math.isfinite(v) for v in stats.values()):
                            reason = "diverged"
                            break
                        trace.append({"step": step, "loss": sum(losses) / len(losses), **stats})
                        losses = []
                        if heldout_floor is not None and stats["heldout_acc"] < heldout_floor:
                            reason = "heldout_drop"
                            break
                        good_state = copy.deepcopy(model.state_dict())
                        if stats["forget_acc"] < best_fa:
                            best_fa, best_step = stats["forget_acc"], step
                        if cfg.fa_floor is not None and stats["forget_acc"] <= cfg.fa_floor:
                            reason = "fa_floor"
                        elif (cfg.request == "class" and cfg.fa_floor is not None and cfg.stall_passes is not None
                              and best_step > 0 and step - best_step >= cfg.stall_passes * per_pass):
                            reason = "fa_stalled"
                        elif rule.update(_rule_input(cfg, trace[-1])):
                            reason = cfg.stop
                        elif step >= cfg.max_steps:
                            reason = "max_steps"
                        if reason:
                            break
        if reason in ("diverged", "heldout_drop"):
            model.load_state_dict(good_state)
            info["restored_step"] = trace[-2]["step"] if reason == "heldout_drop" else trace[-1]["step"]
        if isinstance(rule, DipRecoverRule):
            info["irrelevant_dipped"] = rule.dipped
        for p in model.parameters():
            p.requires_grad_(True)
        return MethodResult(model=model.eval(), stop_reason=reason, steps=step, trace=trace, info=info)


def _objective_from_statistics(objective: str, stats: dict) -> float:
    """The objective at the starting weights, from the monitor's panel (bounded = paper there: min(b, b) = b)."""
    if objective == "target_only":
        return stats["target_sq"]
    if objective == "irrelevant_only":
        return -stats["irrelevant_sq"]
    return stats["target_sq"] - stats["irrelevant_sq"]


def _stop_rule(cfg: MuMisConfig):
    if cfg.stop == "membership":  # D_f may already look unseen: then nothing changes
        return HeldoutMatchRule(at_start=True)
    if cfg.stop in HELDOUT_STOPS:
        return HeldoutMatchRule()
    if cfg.stop == "dip_recover":
        return DipRecoverRule(cfg.delta)
    if cfg.stop == "loss_plateau":
        return PlateauRule(cfg.patience, cfg.plateau_tol)
    return NeverRule()


def _rule_input(cfg: MuMisConfig, row: dict) -> float:
    """What the stop rule watches: the irrelevant sensitivity (dip_recover), the objective (loss_plateau), the
    forget accuracy's margin over held-out accuracy (heldout), or the held-out loss's margin over the mean forget
    loss (heldout_loss: members have the lower loss until unlearning makes them look unseen)."""
    if cfg.stop == "heldout":
        return row["forget_acc"] - row["heldout_acc"]
    if cfg.stop == "heldout_loss":
        return row["heldout_loss"] - row["forget_loss"]
    if cfg.stop == "membership":
        return row["heldout_below"] - row["forget_below"]
    return row["loss"] if cfg.stop == "loss_plateau" else row["irrelevant"]


def _trainable_parameters(model: nn.Module, update: str, example: torch.Tensor) -> list[nn.Parameter]:
    if update == "all":
        return list(model.parameters())
    return list(classifier_head(model, example).parameters())


def _optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    return torch.optim.SGD(params, lr=lr, momentum=0.9 if name == "momentum" else 0.0)


@torch.no_grad()
def _squared_sensitivity_table(model, forget, num_classes, batch_size, dev) -> torch.Tensor:
    """‖∇x f_k(x_i)‖² for every forget sample i and class k (N × K), at the weights unlearning starts from."""
    rows = []
    for x, _ in iter_batches(forget, batch_size):
        with torch.enable_grad():
            x = x.to(dev).requires_grad_(True)
            logits = model(x)
            rows.append(torch.stack([
                squared_norms(logit_input_gradients(model, x, torch.full((len(x),), k, device=dev), logits=logits)).detach()
                for k in range(num_classes)
            ], dim=1).cpu())
    return torch.cat(rows)


def sharpest_curvature(grad_fn, params: list[nn.Parameter], iters: int = 20, rtol: float = 1e-3) -> float:
    """|λ|_max of the Hessian of a loss in ``params``, given ``grad_fn()`` → the loss's gradient (one tensor per
    parameter) at the current weights: power iteration on finite-difference Hessian-vector products,
    Hv ≈ (∇L(w + εv) − ∇L(w)) / ε, which needs only the gradients MU-Mis already computes (exact for a quadratic
    objective, such as the target term on the classifier layer). It stops once an iteration changes the estimate by
    less than ``rtol`` of it (on the demo: 10 of 20 iterations, 0.013 % from the 20-iteration value), or after
    ``iters``. The weights are restored bit for bit."""
    saved = [p.detach().clone() for p in params]
    g0 = [g.detach() for g in grad_fn()]
    generator = torch.Generator().manual_seed(0)
    v = [torch.randn(p.shape, generator=generator).to(p.device) for p in params]
    norm = math.sqrt(sum(float((t * t).sum()) for t in v))
    v = [t / norm for t in v]
    scale = math.sqrt(sum(float((p * p).sum()) for p in saved)) or 1.0
    eps, lam = 1e-3 * scale, 0.0
    for _ in range(iters):
        with torch.no_grad():
            for p, s0, t in zip(params, saved, v):
                p.copy_(s0 + eps * t)
        g1 = grad_fn()
        with torch.no_grad():
            for p, s0 in zip(params, saved):
                p.copy_(s0)
        hv = [(b.detach() - a) / eps for a, b in zip(g0, g1)]
        previous, lam = lam, sum(float((h * t).sum()) for h, t in zip(hv, v))
        norm = math.sqrt(sum(float((h * h).sum()) for h in hv))
        if norm == 0.0:
            return 0.0
        v = [h / norm for h in hv]
        if abs(lam - previous) <= rtol * abs(lam):
            break
    return abs(lam)


def _fixed_panel(labels: torch.Tensor, num_classes: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``size`` distinct irrelevant classes per sample (N × size), drawn once: c' = (c + s) mod K, s ∈ 1..K−1."""
    size = max(1, min(size, num_classes - 1))
    shifts = torch.stack([torch.randperm(num_classes - 1, generator=generator)[:size] + 1 for _ in range(len(labels))])
    return (labels.view(-1, 1) + shifts) % num_classes


@torch.no_grad()
def _forget_statistics(model, forget, panel, watched, batch_size, dev, threshold: Optional[float] = None) -> dict:
    """Mean target and irrelevant sensitivities (and their squares) over the ``watched`` forget samples, and
    forget accuracy and loss over all of D_f — plus, given a membership ``threshold``, the share (%) of D_f whose
    true-class confidence is below it (``forget_below``), from the same forward pass."""
    correct, loss_sum, below = 0, 0.0, 0
    for x, y in iter_batches(forget, 4 * batch_size):  # batch by batch: nothing here grows with |D_f|
        logits = model(x.to(dev)).float().cpu()
        correct += int((logits.argmax(1) == y).sum())
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        if threshold is not None:
            below += int((label_confidence(logits, y) < threshold).sum())
    forget_acc = 100.0 * correct / len(forget)
    forget_loss = loss_sum / len(forget)
    watched_data, panel = forget.subset(watched), panel[watched]
    sums = dict(target=0.0, irrelevant=0.0, target_sq=0.0, irrelevant_sq=0.0)
    for start, (x, y) in zip(range(0, len(watched_data), batch_size), iter_batches(watched_data, batch_size)):
        sl = slice(start, start + batch_size)
        with torch.enable_grad():
            x = x.to(dev).requires_grad_(True)
            y = y.to(dev)
            logits = model(x)
            t_sq = squared_norms(logit_input_gradients(model, x, y, logits=logits)).detach()
            o_sq = torch.stack([
                squared_norms(logit_input_gradients(model, x, panel[sl, j].to(dev), logits=logits)).detach()
                for j in range(panel.shape[1])
            ])
        sums["target"] += t_sq.sqrt().sum().item()
        sums["target_sq"] += t_sq.sum().item()
        sums["irrelevant"] += o_sq.sqrt().mean(0).sum().item()
        sums["irrelevant_sq"] += o_sq.mean(0).sum().item()
    out = {k: v / len(watched_data) for k, v in sums.items()}
    out["forget_acc"] = forget_acc
    out["forget_loss"] = forget_loss
    if threshold is not None:
        out["forget_below"] = 100.0 * below / len(forget)
    return out

"""MU-Mis as studied: every variant of the variants grid (docs/research/mumis-variants.md), one option each.

The product's ``mumis`` (methods/mumis.py) is the paper's method and the default that this study chose. This method,
``mumis_study``, keeps everything else the study measured, so the committed table reproduces: the paper's ablations
and our objectives (:func:`study_loss`), optimisers, a step scaled by the starting sensitivity, and the stop rules
that lost (loss plateau, held-out accuracy or loss match). Import ``mumis.experimental`` to register it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from mumis.data import iter_batches
from mumis.errors import MumisError
from mumis.methods.base import DataRole, GrantedData, MethodResult, UnlearningMethod
from mumis.methods.forget_descent import ForgetDescent
from mumis.methods.mumis import non_default_fields
from mumis.methods.registry import register
from mumis.methods.stopping import (
    DipRecoverRule,
    HeldoutMatchRule,
    NeverRule,
    PlateauRule,
    accuracy_tolerance,
)
from mumis.models import logit_input_gradients, squared_norms
from mumis.progress import progress_bar
from mumis.runtime import double_backprop_kernels

OBJECTIVES = ("paper", "target_only", "irrelevant_only", "bounded", "all_classes", "dynamic")
OPTIMIZERS = ("sgd", "momentum", "adam")
STOP_RULES = ("dip_recover", "loss_plateau", "heldout", "heldout_loss", "membership", "none")
HELDOUT_STOPS = ("heldout", "heldout_loss", "membership")  # stop rules that read a declared held-out set


def study_loss(
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
class MuMisStudyConfig:
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
    fa_floor: Optional[float] = 0.1  # class requests: stop once forget accuracy (%) is at or below this (None: off)
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
    return set(overrides) | set(VARIANTS[variant]) | non_default_fields(config)


def _sample_request_defaults(cfg: MuMisStudyConfig, chosen: set[str]) -> MuMisStudyConfig:
    """Individual samples: a retrained model still classifies most of them, so forget accuracy → 0 is the wrong
    target. A held-out comparison decides (and may decide that nothing needs to change); each option the caller did
    not set takes its sample-request default, and a stop rule that reads no held-out set is replaced."""
    updates = {k: v for k, v in SAMPLE_REQUEST_DEFAULTS.items() if k not in chosen}
    if cfg.stop not in HELDOUT_STOPS:
        updates["stop"] = SAMPLE_REQUEST_DEFAULTS["stop"]
    return dataclasses.replace(cfg, **updates)


@register
class MuMisStudy(UnlearningMethod):
    """MU-Mis with every option the variants study measured (see the module docstring and ``MuMisStudyConfig``).

    ``variant="default"`` here is the default *as the study ran it* (with the loss-plateau rule beside the
    forget-accuracy floor, which never fired on the grid); the product's ``mumis`` is the method to use. Stop reasons
    are the product's plus ``loss_plateau``, ``heldout`` and ``heldout_loss``. The trace and ``info`` carry the same
    fields, and ``info["target_above_irrelevant"]`` says whether the paper's rule could fire at all.
    """

    name = "mumis_study"
    Config = MuMisStudyConfig

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
        explicit = non_default_fields(config)
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
        run = ForgetDescent(model, data.forget, num_classes, cfg.update, cfg.batch_size, cfg.seed, cfg.memory_budget_mb,
                            cfg.chunk_size, cfg.monitor_classes, cfg.monitor_size)
        forget, chunk = run.forget, run.chunk
        check_every = cfg.check_every or run.per_pass
        heldout = data.heldout if cfg.stop in HELDOUT_STOPS else None
        threshold = None
        if cfg.stop == "membership":  # fixed at the starting weights, where D_f are members and held-out data are not
            threshold = run.membership_threshold(heldout)

        stats = run.monitor(threshold, heldout)
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
            heldout_floor = stats["heldout_acc"] - tolerance  # the utility guard: see the product's membership stop
        start_reason = cfg.stop if rule.update(_rule_input(cfg, trace[0])) else None
        explode_at = cfg.explode_factor * max(stats["target_sq"], 1e-12)
        good_state = run.snapshot()
        bound = (_squared_sensitivity_table(run.model, forget, num_classes, chunk, run.dev)
                 if cfg.objective in ("bounded", "dynamic") else None)

        def loss(x, y, other, rows):
            b = None if bound is None else bound[rows, other.cpu()].to(run.dev)
            return study_loss(run.model, x, y, other, cfg.objective, bound=b, num_classes=num_classes)[0]

        lr = cfg.lr
        if cfg.optimizer != "adam" and cfg.lr_scale == "sensitivity":
            lr = cfg.lr / max(stats["target_sq"], 1e-12)
        elif cfg.optimizer != "adam" and cfg.lr_scale == "curvature":
            info["curvature"] = run.curvature(loss, batches=4, rtol=1e-3)  # as the study measured it
            lr = cfg.lr / max(info["curvature"], 1e-12)
        info["lr"] = lr
        opt = _optimizer(cfg.optimizer, run.weights, lr)

        step, reason, losses = 0, start_reason, []
        best_fa, best_step = trace[0]["forget_acc"], 0  # the stall rule: the lowest forget accuracy so far, and when
        with progress_bar("MU-Mis (study)", None, cfg.show_progress) as advance:
            for index in run.batches():
                if reason is not None:
                    break
                value, grads = run.gradients(loss, index, run.irrelevant_classes(index))
                if not math.isfinite(value) or abs(value) > explode_at:
                    reason = "diverged"
                    break
                run.apply(opt, grads)
                step += 1
                losses.append(value)
                advance(f"loss {value:+.3f}")
                if step % check_every and step != cfg.max_steps:
                    continue
                stats = run.monitor(threshold, heldout)
                if not all(math.isfinite(v) for v in stats.values()):
                    reason = "diverged"
                    break
                trace.append({"step": step, "loss": sum(losses) / len(losses), **stats})
                losses = []
                if heldout_floor is not None and stats["heldout_acc"] < heldout_floor:
                    reason = "heldout_drop"
                    break
                good_state = run.snapshot()
                if stats["forget_acc"] < best_fa:
                    best_fa, best_step = stats["forget_acc"], step
                if cfg.fa_floor is not None and stats["forget_acc"] <= cfg.fa_floor:
                    reason = "fa_floor"
                elif (cfg.request == "class" and cfg.fa_floor is not None and cfg.stall_passes is not None
                      and best_step > 0 and step - best_step >= cfg.stall_passes * run.per_pass):
                    reason = "fa_stalled"
                elif rule.update(_rule_input(cfg, trace[-1])):
                    reason = cfg.stop
                elif step >= cfg.max_steps:
                    reason = "max_steps"
        if reason in ("diverged", "heldout_drop"):
            run.model.load_state_dict(good_state)
            info["restored_step"] = trace[-2]["step"] if reason == "heldout_drop" else trace[-1]["step"]
        if isinstance(rule, DipRecoverRule):
            info["irrelevant_dipped"] = rule.dipped
        return MethodResult(model=run.finish(), stop_reason=reason, steps=step, trace=trace, info=info)


def _objective_from_statistics(objective: str, stats: dict) -> float:
    """The objective at the starting weights, from the monitor's panel (bounded = paper there: min(b, b) = b)."""
    if objective == "target_only":
        return stats["target_sq"]
    if objective == "irrelevant_only":
        return -stats["irrelevant_sq"]
    return stats["target_sq"] - stats["irrelevant_sq"]


def _stop_rule(cfg: MuMisStudyConfig):
    if cfg.stop == "membership":  # D_f may already look unseen: then nothing changes
        return HeldoutMatchRule(at_start=True)
    if cfg.stop in HELDOUT_STOPS:
        return HeldoutMatchRule()
    if cfg.stop == "dip_recover":
        return DipRecoverRule(cfg.delta)
    if cfg.stop == "loss_plateau":
        return PlateauRule(cfg.patience, cfg.plateau_tol)
    return NeverRule()


def _rule_input(cfg: MuMisStudyConfig, row: dict) -> float:
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

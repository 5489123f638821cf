"""MU-Mis: remaining-data-free unlearning by suppressing sample contribution (arXiv 2402.15109).

Training makes the logit of a sample's own class c sensitive to its input. MU-Mis shrinks that sensitivity and
raises the sensitivity of an irrelevant class c' on the forget set, by minimising (double backprop, raw logits)

    L(D_f; w) = 1/N_f Σ_{x ∈ D_f} ( ‖∇x f_c(x; w)‖²_F − ‖∇x f_c'(x; w)‖²_F )

with SGD over mini-batches of D_f (Algorithm 1), and stops when the irrelevant-class sensitivity, after dipping,
recovers past δ of its start (:class:`~mumis.methods.stopping.DipRecoverRule`). That is ``variant="paper"``.

The default departs from it where the variants grid measured it closer to a retrained model
(docs/design.md, docs/research/mumis-variants.md): the target term alone, on the classifier layer only, a step
of ``lr / λ_max`` (the objective's sharpest curvature: no learning rate to tune per model), and a stop once forget
accuracy reaches the retrain's 0 % (within one sample in a thousand) or stops falling.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from mumis.errors import MumisError
from mumis.methods.base import DataRole, GrantedData, MethodResult, Space, UnlearningMethod
from mumis.methods.forget_descent import ForgetDescent
from mumis.methods.registry import register
from mumis.methods.stopping import DipRecoverRule, HeldoutMatchRule, accuracy_tolerance
from mumis.models import logit_input_gradients, squared_norms
from mumis.progress import progress_bar
from mumis.runtime import double_backprop_kernels

OBJECTIVES = ("paper", "target_only")
STOPS = ("dip_recover", "forget_acc", "membership")
REQUESTS = ("class", "samples")
EXPLODE_FACTOR = 50.0  # divergence: |batch loss| above this × the starting mean ‖∇x f_c‖²


def mumis_loss(model: nn.Module, x: torch.Tensor, y: torch.Tensor, other: torch.Tensor, objective: str = "paper"
               ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """The MU-Mis objective on one batch: (loss, per-sample ‖∇x f_c‖², per-sample ‖∇x f_c'‖² or None).

    * ``paper``:       mean( ‖∇x f_c(x)‖² − ‖∇x f_c'(x)‖² ), c' = ``other``, one irrelevant class per sample;
    * ``target_only``: mean( ‖∇x f_c(x)‖² ) — the paper's TC ablation (Table A12), the default's objective.

    One forward pass feeds every input gradient, each kept differentiable for the weights."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; choose one of {OBJECTIVES}")
    x = x.detach().requires_grad_(True)
    logits = model(x)
    target = squared_norms(logit_input_gradients(model, x, y, create_graph=True, logits=logits))
    if objective == "target_only":
        return target.mean(), target, None
    irrelevant = squared_norms(logit_input_gradients(model, x, other, create_graph=True, logits=logits))
    return (target - irrelevant).mean(), target, irrelevant


PAPER = {"objective": "paper", "update": "all", "lr_scale": "fixed", "lr": 1e-3, "stop": "dip_recover"}
VARIANTS: dict[str, dict] = {"default": {}, "paper": PAPER}
# A request for individual samples: a retrained model still classifies most of them, so forget accuracy → 0 is the
# wrong target. Unless the caller chose otherwise, the run stops once a confidence attack calls as large a share of
# D_f as of held-out data unseen (possibly before the first step), at a tenth of the class-request step, checked
# after every step. On the variants grid this is no better than doing nothing: ``method="auto"`` serves sample
# requests with ``newton`` instead (docs/choosing-a-method.md).
SAMPLE_REQUEST_DEFAULTS = {"stop": "membership", "lr": 0.05, "check_every": 1}


@dataclass(frozen=True)
class MuMisConfig:
    variant: str = "default"  # "paper": the published method (PAPER); explicit fields below win over it
    request: str = "class"  # "class" (every sample of a class) | "samples" (individual samples; needs held-out data)
    objective: str = "target_only"  # paper | target_only (see mumis_loss)
    update: str = "head"  # which weights move: head (the classifier layer; the features stay as trained) | all
    lr: float = 0.5  # step size, in the unit ``lr_scale`` says
    lr_scale: str = "curvature"  # curvature: step = lr / λ_max of the objective at the start | fixed: step = lr
    batch_size: int = 64  # mini-batches over D_f (the paper does not say; full batch is batch_size ≥ |D_f|)
    # dip_recover (the paper's) | forget_acc (forget accuracy at ``fa_floor``, or stalled for ``stall_passes`` passes
    # over D_f: a few stubborn samples must not run the step cap) | membership (see SAMPLE_REQUEST_DEFAULTS)
    stop: str = "forget_acc"
    delta: float = 0.9  # dip_recover: the irrelevant sensitivity back above δ·S_0 after a dip below it (Fig. 4)
    # forget_acc: stop at or below this forget accuracy (%): one sample in a thousand still in the class, 0.1 points
    # from the retrain's 0 % — waiting for the last one costs a pass or more over D_f (None: never)
    fa_floor: Optional[float] = 0.1
    stall_passes: Optional[float] = 1.0  # forget_acc: ... or this many passes after it last fell (None: never)
    # steps between checks of the stop rule; 0 = after every step where a check is free (only the head moves and it
    # makes the logits: its input features are cached), else once per pass over D_f (Algorithm 1)
    check_every: int = 0
    max_steps: int = 500  # safeguard: optimiser steps at most
    # a batch whose double-backprop graph would not fit the budget is processed in chunks (the same step), so peak
    # memory follows the budget, not |D_f| or the batch size; ``chunk_size`` > 0 sets the chunk directly
    memory_budget_mb: float = 1024.0
    chunk_size: int = 0
    seed: int = 0  # draws of c' and the batch order
    show_progress: bool = True


@register
class MuMis(UnlearningMethod):
    """MU-Mis from the forget set alone (plus held-out data for a sample request's stop); see the module docstring.

    Stop reasons: ``dip_recover``, ``fa_floor``, ``fa_stalled``, ``membership``, ``max_steps``, ``heldout_drop``
    (sample requests: held-out accuracy fell by more than two standard errors; the last passing check's weights are
    returned) and ``diverged`` (a non-finite or exploding loss or statistic; the last healthy check's weights are
    returned). The trace starts with the sensitivities and forget accuracy at the start (step 0).
    """

    name = "mumis"
    Config = MuMisConfig
    # tuned for ``variant="paper"`` only: the default's point is to need no tuning (its step comes from the curvature)
    search_space = {"lr": Space(1e-5, 1e-1, source="the paper: SGD lr 1e-3"),
                    "delta": Space(0.5, 1.0, log=False, source="the paper: δ = 0.9 (Fig. 4)")}

    @property
    def needs(self) -> frozenset[DataRole]:
        """D_f only — plus a held-out set (never trained on) for the membership stop; never the retain set."""
        return frozenset({DataRole.FORGET, *({DataRole.HELDOUT} if self.config.stop == "membership" else ())})

    def __init__(self, config: Any = None, **overrides):
        variant = overrides.get("variant", getattr(config, "variant", "default"))
        if variant not in VARIANTS:
            raise MumisError(f"unknown MU-Mis variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
        explicit = set(overrides) | non_default_fields(config)  # explicit fields win over the preset
        super().__init__(config, **{**{k: v for k, v in VARIANTS[variant].items() if k not in explicit}, **overrides})
        cfg = self.config
        if cfg.request == "samples":  # each option the caller (or the preset) did not set takes its sample default
            chosen = explicit | set(VARIANTS[variant])
            updates = {k: v for k, v in SAMPLE_REQUEST_DEFAULTS.items() if k not in chosen or k == "stop"}
            self.config = cfg = dataclasses.replace(cfg, **updates)
        for option, allowed in (("request", REQUESTS), ("objective", OBJECTIVES), ("stop", STOPS),
                                ("lr_scale", ("fixed", "curvature")), ("update", ("all", "head"))):
            if getattr(cfg, option) not in allowed:
                raise MumisError(f"MU-Mis option {option}={getattr(cfg, option)!r} is not one of {allowed}")

    def run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        with double_backprop_kernels():  # attention layers: a kernel with a double backward
            return self._run(model, data, num_classes)

    def _run(self, model: nn.Module, data: GrantedData, num_classes: int) -> MethodResult:
        cfg = self.config
        # the input sensitivities on a fixed sample of D_f: the paper's stop reads them at every check; otherwise they
        # only describe the run, at its start and its stop
        watched = 1024 if cfg.stop == "dip_recover" else 128
        run = ForgetDescent(model, data.forget, num_classes, cfg.update, cfg.batch_size, cfg.seed,
                            cfg.memory_budget_mb, cfg.chunk_size, monitor_size=watched)
        stop = self._stop_rule(run, data)

        def loss(x, y, other, rows):
            return mumis_loss(run.model, x, y, other, cfg.objective)[0]

        row = {"step": 0, **run.monitor(stop.threshold, stop.heldout)}
        row["loss"] = row["target_sq"] - (row["irrelevant_sq"] if cfg.objective == "paper" else 0.0)
        reason = stop(row)  # a sample request's D_f may already look unseen: then nothing changes
        trace, info = [row], {"chunk_size": run.chunk, "target_sensitivity_0": row["target"],
                              "irrelevant_sensitivity_0": row["irrelevant"], **stop.info}
        lr = cfg.lr
        if cfg.lr_scale == "curvature":
            info["curvature"] = run.curvature(loss)
            lr = cfg.lr / max(info["curvature"], 1e-12)
        info["lr"] = lr
        explode_at, good, step, losses = EXPLODE_FACTOR * max(row["target_sq"], 1e-12), run.snapshot(), 0, []
        # a check that only reads logits is free when only the head moves (cached features): then after every step
        every_check_measures = stop.reads_sensitivities or not run.checks_are_free
        check_every = cfg.check_every or (run.per_pass if every_check_measures else 1)
        with progress_bar("MU-Mis", None, cfg.show_progress) as advance:
            for index in run.batches():  # Algorithm 1: mini-batches of D_f, one pass after another
                if reason is not None:
                    break
                value, grads = run.gradients(loss, index, run.irrelevant_classes(index))  # a fresh c' per sample
                if not math.isfinite(value) or abs(value) > explode_at:
                    reason = "diverged"
                    break
                run.descend(grads, lr)  # SGD: no momentum, no weight decay
                step, losses = step + 1, losses + [value]
                advance(f"loss {value:+.3f}")
                if step % check_every and step < cfg.max_steps:
                    continue
                stats = run.monitor(stop.threshold, stop.heldout, sensitivities=every_check_measures)
                if not all(math.isfinite(v) for v in stats.values()):
                    reason = "diverged"
                    break
                trace.append({"step": step, "loss": sum(losses) / len(losses), **stats})
                losses = []
                reason = stop(trace[-1]) or ("max_steps" if step >= cfg.max_steps else None)
                if reason != "heldout_drop":
                    good = run.snapshot()
        returned = trace[-2] if reason == "heldout_drop" else trace[-1]  # the check whose weights are handed back
        if reason in ("diverged", "heldout_drop"):
            run.model.load_state_dict(good)
            info["restored_step"] = returned["step"]
        if "target" not in returned:  # the trace ends with the sensitivities of the model handed back
            returned.update(run.sensitivities())
        if isinstance(stop, _DipRecover):
            info["irrelevant_dipped"] = stop.rule.dipped
        return MethodResult(model=run.finish(), stop_reason=reason, steps=step, trace=trace, info=info)

    def _stop_rule(self, run: ForgetDescent, data: GrantedData):
        cfg = self.config
        if cfg.stop == "dip_recover":
            return _DipRecover(cfg.delta)
        if cfg.stop == "membership":
            return _Membership(run, data.heldout)
        return _ForgetAccuracy(cfg.fa_floor, cfg.stall_passes, run.per_pass)


class _Stop:
    """A stop rule: fed each check's statistics (step 0 first), it returns the reason to stop, or None."""

    threshold: Optional[float] = None  # what the monitor must also measure: a membership threshold and held-out data
    heldout = None
    reads_sensitivities = False  # whether every check must measure the input sensitivities (they cost backprops)
    info: dict = {}


class _DipRecover(_Stop):
    """The paper's rule on the irrelevant sensitivity S(D_f) (:class:`DipRecoverRule`)."""

    reads_sensitivities = True

    def __init__(self, delta: float):
        self.rule = DipRecoverRule(delta)

    def __call__(self, row: dict) -> Optional[str]:
        return "dip_recover" if self.rule.update(row["irrelevant"]) else None


class _ForgetAccuracy(_Stop):
    """A class request is done when the retrained model's forget accuracy (0 %) is reached, up to ``fa_floor`` (read
    at every check), or when forget accuracy has fallen and then not fallen again for ``stall_passes`` passes over D_f
    (``fa_stalled``). The stall compares the first check of each pass with the best such reading before it: a slow
    steady decline that pauses within a pass is not a stall."""

    def __init__(self, floor: Optional[float], stall_passes: Optional[float], per_pass: int):
        self.floor, self.per_pass = floor, per_pass
        self.stall_steps = None if stall_passes is None else stall_passes * per_pass
        self.best, self.best_step, self.pass_read = math.inf, 0, 0

    def __call__(self, row: dict) -> Optional[str]:
        if row["step"] == 0 or self.floor is None:
            self.best = min(self.best, row["forget_acc"])
            return None
        if row["forget_acc"] <= self.floor:
            return "fa_floor"
        if row["step"] // self.per_pass == self.pass_read:  # not the first check of a new pass
            return None
        self.pass_read = row["step"] // self.per_pass
        if row["forget_acc"] < self.best:
            self.best, self.best_step = row["forget_acc"], row["step"]
        elif self.stall_steps is not None and self.best_step > 0 and row["step"] - self.best_step >= self.stall_steps:
            return "fa_stalled"
        return None


class _Membership(_Stop):
    """A sample request is done once as large a share of D_f as of held-out data falls below the true-class
    confidence that best separated them at the start (they look unseen to that attack) — possibly at step 0. A
    held-out accuracy below its start minus two standard errors means the steps damage the model: ``heldout_drop``."""

    def __init__(self, run: ForgetDescent, heldout):
        self.heldout = heldout
        self.threshold = run.membership_threshold(heldout)
        self.rule, self.floor, self.info = HeldoutMatchRule(at_start=True), None, {"membership_threshold": self.threshold}

    def __call__(self, row: dict) -> Optional[str]:
        if self.floor is None:
            self.info["heldout_tolerance"] = accuracy_tolerance(row["heldout_acc"], len(self.heldout))
            self.floor = row["heldout_acc"] - self.info["heldout_tolerance"]
        elif row["heldout_acc"] < self.floor:
            return "heldout_drop"
        return "membership" if self.rule.update(row["heldout_below"] - row["forget_below"]) else None


def non_default_fields(config: Any) -> set[str]:
    """The fields of a config dataclass that differ from its class's defaults (none for ``None``)."""
    if config is None:
        return set()
    default = type(config)()
    return {f.name for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(default, f.name)}

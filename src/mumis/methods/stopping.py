"""Stop rules that read only forget-set (and declared held-out) statistics. Pure state machines and functions, so
they are tested on synthetic traces."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from mumis.metrics.mia import true_class_confidence


def accuracy_tolerance(accuracy: float, n: int) -> float:
    """Two standard errors of an accuracy measured on ``n`` samples, in points: 200 · √(a (1 − a) / n), a = accuracy / 100.

    The sample-request guards allow a held-out accuracy to fall by this much (sampling noise), not more."""
    a = accuracy / 100.0
    return 200.0 * math.sqrt(max(a * (1 - a), 1e-12) / n)


def less_accurate_than_heldout(forget_accuracy: float, n_forget: int, heldout_accuracy: float, n_heldout: int) -> bool:
    """Is D_f classified worse than held-out data beyond sampling noise — by more than two standard errors of the
    difference, 200 · √(a_f (1 − a_f) / n_f + a_h (1 − a_h) / n_h) points (a = accuracy / 100)?

    A random sample of the training set is not (a model is at least as accurate on data it trained on); samples a
    model fits only because it saw them (the most memorised) are, and a retrained model classifies them worse still."""
    a_f, a_h = forget_accuracy / 100.0, heldout_accuracy / 100.0
    noise = 200.0 * math.sqrt(max(a_f * (1 - a_f), 1e-12) / n_forget + max(a_h * (1 - a_h), 1e-12) / n_heldout)
    return heldout_accuracy - forget_accuracy > noise


@dataclass
class DipRecoverRule:
    """MU-Mis's stop rule (paper §3.3, Fig. 4 with δ = 0.9).

    Track the irrelevant-class sensitivity S_t of D_f, its start S_0 and its running minimum ε_t = min_{τ≤t} S_τ.
    Fire at the first t with

        ε_t < min(δ, 1) · S_0   (it has dipped below the threshold)   and   S_t > δ · S_0   (and recovered past it).

    S_t > δ·S_0 > ε_t implies S_t > ε_t, the paper's "above its running minimum" condition. Requiring the dip to
    reach below δ·S_0 is our reading of "recovered past δ·S_0": with any dip at all counting, a δ < 1 rule fires
    on the first noisy uptick of a curve that dipped by 1 %, which is what small 10-class models show (their
    irrelevant sensitivity dips a few percent at most, or rises from the first step). Such runs never fire this
    rule; a safeguard ends them, and the method reports which.
    """

    delta: float = 0.9
    start: float = field(default=math.nan, init=False)
    running_min: float = field(default=math.inf, init=False)

    def update(self, value: float) -> bool:
        """Feed the next S_t (the first call gives S_0); True when the rule fires."""
        if math.isnan(self.start):
            self.start = value
            self.running_min = value
            return False
        self.running_min = min(self.running_min, value)
        return self.dipped and value > self.delta * self.start

    @property
    def dipped(self) -> bool:
        return self.running_min < min(self.delta, 1.0) * self.start


@dataclass
class PlateauRule:
    """Fire when the watched value (the objective) has not improved by a relative ``tol`` for ``patience`` checks:

        fire at t  if  min_{τ≤t} v_τ > best_{t−patience} − tol·|best_{t−patience}|   (t ≥ patience),

    where best_s = min_{τ≤s} v_τ. Meant for bounded objectives; the paper's loss is unbounded below and keeps falling.
    """

    patience: int = 3
    tol: float = 0.01
    history: list = field(default_factory=list, init=False)

    def update(self, value: float) -> bool:
        self.history.append(value)
        if len(self.history) <= self.patience:
            return False
        before = min(self.history[: -self.patience])
        recent = min(self.history[-self.patience :])
        return recent > before - self.tol * abs(before)


@dataclass
class NeverRule:
    """No stop rule: only the safeguards (step cap, divergence, forget-accuracy floor) end the run."""

    def update(self, value: float) -> bool:
        return False


@dataclass
class HeldoutMatchRule:
    """Fire once the forget set is classified no better than data the model never saw:

        fire at t ≥ 1 (t ≥ 0 with ``at_start``)  if  FA_t − A^heldout_t ≤ τ,

    fed with the margin m_t = FA_t − A^heldout_t (accuracies in %, both measured on the current weights). For random
    forgetting this is the retrained model's signature: it classifies D_f about as well as unseen data. It needs a
    declared held-out set, never the retain set. By default the value at t = 0 is never a reason to stop; with
    ``at_start`` a forget set that already looks unseen (within τ, e.g. the held-out accuracy's sampling error)
    ends the run before any step — the model is returned unchanged.
    """

    tolerance: float = 0.0
    at_start: bool = False
    seen: int = field(default=0, init=False)

    def update(self, margin: float) -> bool:
        self.seen += 1
        return (self.seen > 1 or self.at_start) and margin <= self.tolerance


def label_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """softmax(f(x))_y per sample in float64, as the MIA metric computes it (well-fit samples sit within 1e-7 of 1):
    what the membership threshold and the stop rules that use it compare."""
    return torch.from_numpy(true_class_confidence(logits, labels))


def membership_threshold(member: torch.Tensor, nonmember: torch.Tensor) -> float:
    """The true-class confidence that best tells members from non-members (a one-feature membership attack):

        t* = argmax_t  ½ · ( P_member(p_y ≥ t) + P_nonmember(p_y < t) ),

    over the observed values t (the smallest maximiser). Fed with the forget set's confidences at the starting
    weights (members: the model trained on them) and a held-out set's (never trained on). The ``membership`` stop
    then fires once as large a share of D_f as of held-out data falls below t — D_f looks unseen to that attack.
    """
    candidates = torch.unique(torch.cat([member, nonmember]))  # sorted
    members_at_or_above = 1.0 - torch.searchsorted(member.sort().values, candidates).double() / len(member)
    nonmembers_below = torch.searchsorted(nonmember.sort().values, candidates).double() / len(nonmember)
    return float(candidates[torch.argmax(members_at_or_above + nonmembers_below)])

"""The evaluation suite: every number a benchmark row carries, for one model on one task step."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from mumis.data import TaskData
from mumis.metrics.accuracy import accuracy, predict_logits
from mumis.metrics.divergence import js_divergence, kl_divergence
from mumis.metrics.evaluate import evaluate, task_logits
from mumis.metrics.lira import PerExampleReference
from mumis.metrics.mia import (
    loss_mia_from_losses,
    mia_efficacy_from_confidence,
    per_sample_loss,
    stratified_shadow_indices,
    true_class_confidence,
)
from mumis.metrics.relearn import relearn_steps
from mumis.metrics.sensitivity import probe_samples, rise_fractions, sensitivity_profile


@dataclass(frozen=True)
class SuiteOptions:
    seed: int = 0  # the stratified MIA's and the loss MIA's draws, relearn's data order
    relearn: bool = True
    relearn_threshold: float = 5.0  # points below the original model's FA that count as "relearnt"
    relearn_lr: float = 0.01
    relearn_max_steps: int = 200
    sensitivity_samples: int = 512  # D_f samples the sensitivity diagnostics read (a seeded subsample)
    mia_cap: int = 5000  # per-side cap of the stratified MIA's shadow sets
    # the per-example attack (LiRA online; metrics/lira.py) with this many shadow models, trained once per dataset,
    # split, recipe and seed and cached like the references (0: off)
    shadows: int = 0

    def to_dict(self) -> dict:
        """The options; ``shadows`` only when on, so that grids written before it keep their cell keys."""
        return {k: v for k, v in asdict(self).items() if not (k == "shadows" and v == 0)}


@dataclass
class SuiteContext:
    """What the suite compares against, computed once per task step: the retrained model's softmax on D_f, the
    original model's FA on D_f and its sensitivity profile on the probe samples."""

    reference_probs: Optional[torch.Tensor]
    original_fa: float
    original_profile: dict
    probe: object  # the D_f samples of the sensitivity diagnostics
    per_example: Optional[PerExampleReference] = None  # the per-example attack's shadows (SuiteOptions.shadows)

    @classmethod
    def build(cls, task: TaskData, original: nn.Module, reference: Optional[nn.Module], options: SuiteOptions) -> "SuiteContext":
        probe = probe_samples(task.forget, options.sensitivity_samples, options.seed)
        probs = None if reference is None else torch.softmax(predict_logits(reference, task.forget), 1)
        return cls(probs, accuracy(original, task.forget), sensitivity_profile(original, probe), probe)


def evaluate_suite(model: nn.Module, task: TaskData, context: SuiteContext, options: SuiteOptions = SuiteOptions()) -> dict:
    """FA, RA, TA, MIA (SalUn-exact) and forgotten-class TA (as :func:`~mumis.metrics.evaluate`), plus

    - ``mia_stratified``: MIA-efficacy with a seeded, class-stratified shadow set;
    - ``mia_loss``: loss-based LR MIA accuracy, D_f vs unseen comparable samples (the forgotten class's test
      samples for class tasks, the test set otherwise); 50 = indistinguishable;
    - ``kl`` / ``js``: divergence of this model's softmax on D_f from the retrained model's (Fig. 7);
    - ``relearn_steps``: fine-tuning steps on D_f until FA is within the threshold of the original's FA;
    - ``target_sens`` / ``irrelevant_sens`` / ``full_sens``: mean input sensitivity on the probe samples, and
      ``target_up`` / ``irrelevant_up`` / ``gap_up``: % of them that rose against the original model;
    - with the context's shadows: ``lira_auc``, ``lira_tpr_1pct`` (online LiRA, D_f against never-seen test samples)
      and ``lira_scores`` (D_f's per-sample scores, 3 decimals).

    Each dataset goes through the model once; every number is derived from those logits (the anchors' advice:
    cache logits, reuse them for every attack feature).
    """
    forget, retain, test = task.forget, task.retain, task.test
    logits = task_logits(model, task)
    out = evaluate(model, task, logits)
    lf, lt, lg = logits["forget"], logits["test"], logits["test_forgotten"]
    gone = task.test_forgotten if lg is not None else None
    conf_r = true_class_confidence(logits["retain"], retain.labels)
    conf_t, conf_f = true_class_confidence(lt, test.labels), true_class_confidence(lf, forget.labels)
    in_idx, out_idx = stratified_shadow_indices(retain.labels.numpy(), test.labels.numpy(), options.seed, options.mia_cap)
    out["mia_stratified"] = float(mia_efficacy_from_confidence(conf_r[in_idx], conf_t[out_idx], conf_f))
    unseen_logits, unseen = (lg, gone) if gone is not None else (lt, test)
    out["mia_loss"] = loss_mia_from_losses(per_sample_loss(lf, forget.labels), per_sample_loss(unseen_logits, unseen.labels), options.seed)
    if context.reference_probs is not None:
        probs = torch.softmax(lf, 1)
        out["kl"] = kl_divergence(context.reference_probs, probs)
        out["js"] = js_divergence(context.reference_probs, probs)
    if options.relearn:
        out["relearn_steps"] = relearn_steps(model, forget, context.original_fa, options.relearn_threshold,
                                             options.relearn_lr, max_steps=options.relearn_max_steps, seed=options.seed)
    profile = sensitivity_profile(model, context.probe)
    out.update({f"{k}_sens": float(np.mean(v)) for k, v in profile.items()})
    out.update(rise_fractions(context.original_profile, profile))
    if context.per_example is not None:
        attack = context.per_example.attack(model)
        out.update(lira_auc=attack["auc"], lira_tpr_1pct=attack["tpr_at_1pct_fpr"],
                   lira_scores=[round(float(v), 3) for v in attack["scores"]])
    return out

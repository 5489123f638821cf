"""Metrics: plain functions, each with its formula in the docstring."""
from mumis.metrics.accuracy import accuracy, predict_logits
from mumis.metrics.aggregate import mean_ci, tow
from mumis.metrics.divergence import divergence_to_reference, js_divergence, kl_divergence
from mumis.metrics.evaluate import evaluate, forget_metrics
from mumis.metrics.gap import GAP_KEYS, avg_gap
from mumis.metrics.mia import (
    loss_mia,
    loss_mia_from_losses,
    mia_efficacy,
    mia_efficacy_from_confidence,
    mia_efficacy_stratified,
    per_sample_loss,
    true_class_confidence,
)
from mumis.metrics.probe import linear_probe_accuracy, penultimate_features
from mumis.metrics.relearn import relearn_steps
from mumis.metrics.sensitivity import probe_samples, rise_fractions, sensitivity_profile
from mumis.metrics.suite import SuiteContext, SuiteOptions, evaluate_suite

__all__ = [
    "GAP_KEYS", "SuiteContext", "SuiteOptions", "accuracy", "avg_gap", "divergence_to_reference", "evaluate",
    "evaluate_suite", "forget_metrics", "js_divergence", "kl_divergence", "linear_probe_accuracy", "loss_mia", "loss_mia_from_losses", "mean_ci", "mia_efficacy",
    "mia_efficacy_from_confidence", "mia_efficacy_stratified", "penultimate_features", "per_sample_loss", "predict_logits", "probe_samples",
    "relearn_steps", "rise_fractions", "sensitivity_profile", "tow", "true_class_confidence",
]

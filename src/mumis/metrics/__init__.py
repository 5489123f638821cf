"""Metrics: plain functions, each with its formula in the docstring."""
from mumis.metrics.accuracy import accuracy, predict_logits
from mumis.metrics.evaluate import evaluate
from mumis.metrics.gap import GAP_KEYS, avg_gap
from mumis.metrics.mia import mia_efficacy, mia_efficacy_from_confidence, true_class_confidence

__all__ = [
    "GAP_KEYS", "accuracy", "avg_gap", "evaluate", "mia_efficacy", "mia_efficacy_from_confidence",
    "predict_logits", "true_class_confidence",
]

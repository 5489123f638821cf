"""Aggregates over metrics and over seeds."""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np


def tow(row: Mapping[str, float], reference: Mapping[str, float], keys: Sequence[str] = ("fa", "ra", "ta")) -> float:
    """Tug-of-War (RUM): ToW = Π_{m ∈ keys} (1 − |m − m_retrain| / 100), accuracies in percent.

    1 = the retrained model's accuracies exactly; 0 = some accuracy is 100 points off."""
    return float(np.prod([1.0 - abs(float(row[k]) - float(reference[k])) / 100.0 for k in keys]))


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of the two-sided Student-t confidence interval): t_{(1+c)/2, n−1} · s / √n.

    NaNs are dropped; one value gives a half-width of NaN (no spread to estimate), no value gives (NaN, NaN)."""
    from scipy.stats import t

    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(x) == 0:
        return float("nan"), float("nan")
    if len(x) == 1:
        return float(x[0]), float("nan")
    half = t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(half)

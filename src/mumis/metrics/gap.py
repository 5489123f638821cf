"""Avg. Gap: how far an unlearned model's numbers are from the retrained model's."""
from __future__ import annotations

from typing import Mapping, Sequence

GAP_KEYS = ("fa", "ra", "ta", "mia")


def avg_gap(row: Mapping[str, float], reference: Mapping[str, float], keys: Sequence[str] = GAP_KEYS) -> float:
    """Avg. Gap = (1/|keys|) Σ_{m ∈ keys} |m − m_retrain|, in points (accuracies and MIA in percent).

    The default keys are FA, RA, TA and MIA-efficacy, as SalUn reports it. MU-Mis's own Table 1 (v4) averages
    FA, RA and TA only: pass ``keys=("fa", "ra", "ta")`` to compare with it. Lower is better; 0 = retrain.
    """
    return sum(abs(float(row[k]) - float(reference[k])) for k in keys) / len(keys)

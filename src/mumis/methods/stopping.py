"""Stop rules that read only forget-set statistics. Pure state machines, so they are tested on synthetic traces."""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class DipRecoverRule:
    """MU-Mis's stop rule (paper §3.3, Fig. 4 with δ = 0.9).

    Track the irrelevant-class sensitivity S_t of D_f, its start S_0 and its running minimum ε_t = min_{τ≤t} S_τ.
    Fire at the first t with

        ε_t < S_0   (it has dipped)   and   S_t > ε_t   (it is rising again)   and   S_t > δ · S_0.

    The dip condition is ours: without it a δ < 1 rule fires at the first check whenever S rises from the
    start, which is what small 10-class models do. Such a run never fires this rule and ends on a safeguard.
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
        dipped = self.running_min < self.start
        return dipped and value > self.running_min and value > self.delta * self.start

    @property
    def dipped(self) -> bool:
        return self.running_min < self.start

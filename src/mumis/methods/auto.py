"""``method="auto"``: the method and options that measured closest to a retrained model for the request kind and the
data the caller holds, read from ``auto_table.json`` (regenerated from the committed results by
``benchmarks/auto_table.py``; how it scores is written in the table itself).

Request kinds: ``"class"`` (every training sample of one or more classes — a retrained model has forget accuracy 0)
and ``"samples"`` (individual samples, e.g. one person's — a retrained model still classifies most of them like
unseen data). :func:`infer_request` says which a forget set is where that cannot be wrong.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Optional

from mumis.errors import MumisError

REQUESTS = ("class", "samples")
DATA_LEVELS = ("forget", "heldout", "train_size")  # what a caller may hold, in the order the table adds them


@dataclass(frozen=True)
class Choice:
    method: str
    options: dict = field(default_factory=dict)
    why: str = ""


@lru_cache(maxsize=1)
def auto_table() -> dict:
    return json.loads(resources.files("mumis.methods").joinpath("auto_table.json").read_text())


def infer_request(labels: list[int], request: Optional[str]) -> tuple[str, str]:
    """(request kind, why). Mixed labels are never a class request; one label is a class request only when the
    caller says so — otherwise the call asks, in one line."""
    distinct = sorted(set(labels))
    if request is not None:
        if request not in REQUESTS:
            raise MumisError(f"request={request!r} is not one of {REQUESTS}: 'class' forgets whole classes, 'samples' "
                             "forgets just the given samples")
        return request, f"request={request!r} as given"
    if len(distinct) > 1:
        return "samples", f"the {len(labels)} samples have {len(distinct)} different labels, so they are not a class"
    raise MumisError(f"all {len(labels)} forget samples have label {distinct[0]}: say request='class' to forget class "
                     f"{distinct[0]} entirely, or request='samples' to forget only these samples (CLI: --class or --ids)")


def choose(request: str, held: set[str]) -> Choice:
    """The table's entry for ``request`` at the richest data level ``held`` covers; a MumisError naming what to pass
    when no method measured better than leaving the model unchanged with that data."""
    rows = [r for r in auto_table()["choices"] if r["request"] == request and set(r["data"]) <= held]
    row = max(rows, key=lambda r: len(r["data"]))
    if row["method"] is None:
        richer = [r for r in auto_table()["choices"] if r["request"] == request and r["method"] is not None]
        hint = ""
        if richer:
            need = sorted(set(min(richer, key=lambda r: len(r["data"]))["data"]) - held)
            names = {"heldout": "heldout= (samples of the same distribution the model never trained on)",
                     "train_size": "train_size= (how many samples the model was trained on)"}
            hint = " Pass " + " and ".join(names.get(n, n) for n in need) + " to let one run."
        raise MumisError(f"for a {request} request with only {', '.join(sorted(held))}, no method measured closer to a "
                         f"retrained model than leaving the model unchanged.{hint}")
    why = (f"auto: {row['method']} ({row['label']}) measured closest to retrain for {request} requests with "
           f"{' + '.join(row['data'])}: mean Avg. Gap {row['mean_gap']:.2f} vs {row['original_gap']:.2f} for doing "
           f"nothing, over {row['cells']} of {row['of_cells']} grid cells")
    return Choice(row["method"], dict(row["options"]), why)


def resolve(method: str, request: str, held: set[str], options: Optional[dict] = None) -> Choice:
    """The method to run and its options: the table's choice for ``method="auto"``, else the method as named; the
    caller's ``options`` win, and a method that tells classes from samples (an option ``request``) is told which."""
    from mumis.methods.registry import method_options

    if method == "auto":
        choice = choose(request, held)
        chosen, why = {**choice.options, **(options or {})}, choice.why
        method = choice.method
    else:
        chosen, why = dict(options or {}), f"method {method!r} as given"
    if "request" in method_options(method):
        chosen.setdefault("request", request)
    return Choice(method, chosen, why)

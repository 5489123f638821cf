"""Which way of serving sample requests one after another stays closest to a retrain? (docs/research/requests-in-a-row.md)

    python benchmarks/requests_in_a_row.py                  # mnist5k × small_cnn, 20 requests of 40 ids, seeds 0 1 2

Per seed: a split, an original (12 epochs) and two retrains (without the first 5 requests' samples, without all 20
requests'), trained through the CLI like `benchmarks/request_lifecycle.py`. Then the same 20 requests are served by
each way below, in process, and the model after 5 and after 20 requests is scored against its retrain:

* ``first model`` — what `mumis forget` does: request k runs `newton` (every layer, as ``auto`` picks it) on the
  chain's first model for the union of requests 1..k.
* ``in turn`` — request k runs `newton` (every layer) on the output of request k−1, the held-out guard budgeted over
  the chain (``heldout_spent``): how requests were served before.
* ``head in turn`` — the head-only Newton step on the output of request k−1 (its one full step, budgeted guard).
* ``head in turn, accuracy kept`` — the head-only step, scaled back (2^(−i/4) from 1 down to 1/64) to the largest
  scale at which D_f's accuracy is still at least held-out accuracy: study-only, it does nothing on the ResNets
  (their forget samples are memorised inside the features).

Prints, per way and request count, the mean Avg. Gap over seeds (each seed's in brackets), FA, MIA, RA / TA drift
against the retrain, and the mean seconds one request's method took.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
import sys
import tempfile

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from request_lifecycle import _run  # noqa: E402

WAYS = ("doing nothing", "first model", "in turn", "head in turn", "head in turn, accuracy kept")


def head_step_accuracy_kept(model, task, train_size: int):
    """The head-only Newton step scaled back to the largest scale 2^(-i/4) ≥ 1/64 at which D_f's accuracy is still
    at least held-out accuracy (0 when even 1/64 is too far)."""
    from mumis.methods.newton import _accuracy, head_features, removal_step
    from mumis.models import classifier_head

    head = classifier_head(model, task.forget.batch(torch.arange(1))[0])
    theta = torch.cat([head.weight.detach(), head.bias.detach()[:, None]], 1).double()
    z_f, y_f = head_features(model, task.forget, 128)
    z_h, y_h = head_features(model, task.heldout, 128)
    step, _ = removal_step(theta, z_f, y_f, z_h, train_size, 5e-4)
    kept = 0.0
    for scale in (2.0 ** (-i / 4) for i in range(24, -1, -1)):
        if _accuracy(theta + scale * step, z_f, y_f) < _accuracy(theta + scale * step, z_h, y_h):
            break
        kept = scale
    final = theta + kept * step
    with torch.no_grad():
        head.weight.copy_(final[:, :-1])
        head.bias.copy_(final[:, -1])
    return model


def one_seed(seed: int, args, rows: list) -> None:
    from mumis.bench.experiment import apply_method
    from mumis.data import Split, explicit_ids, load_dataset, task_from_views
    from mumis.methods import get_method
    from mumis.metrics import avg_gap, evaluate
    from mumis.training import load_checkpoint

    marks = (5, args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _run("split", "mnist5k", "--out", d / "work", "--seed", seed)
        _run("train", "--split", d / "work/split.json", "--out", d / "original.safetensors", "--epochs", args.epochs,
             "--seed", seed)
        split = Split.load(d / "work/split.json")
        chosen = np.random.default_rng(seed).choice(split.train, size=args.requests * args.ids, replace=False)
        for k in marks:
            (d / f"ids{k}.txt").write_text("\n".join(map(str, chosen[: k * args.ids])))
            _run("split", "mnist5k", "--out", d / f"r{k}", "--seed", seed, "--forget-ids", d / f"ids{k}.txt")
            _run("train", "--split", d / f"r{k}/split.json", "--forget", d / f"r{k}/forget.json", "--out",
                 d / f"retrain{k}.safetensors", "--epochs", args.epochs, "--seed", seed)
        original, _ = load_checkpoint(d / "original.safetensors")
        retrains = {k: load_checkpoint(d / f"retrain{k}.safetensors")[0] for k in marks}
    train, test = split.materialise(load_dataset("mnist5k"))
    n = len(split.train)
    task_of = lambda ids: task_from_views(train, test, split, explicit_ids(split, ids.tolist()))  # noqa: E731
    scored = {k: task_of(chosen[: k * args.ids]) for k in marks}
    refs = {k: evaluate(retrains[k], scored[k]) for k in marks}

    def score(way: str, k: int, model, seconds: list) -> None:
        m = evaluate(model, scored[k])
        rows.append({"seed": seed, "way": way, "k": k, "gap": avg_gap(m, refs[k]), "fa": m["fa"], "mia": m["mia"],
                     "ra_drift": m["ra"] - refs[k]["ra"], "ta_drift": m["ta"] - refs[k]["ta"],
                     "s": float(np.mean(seconds)) if seconds else 0.0})

    for k in marks:
        score("doing nothing", k, original, [])
    for way in WAYS[1:]:
        model, spent, seconds = copy.deepcopy(original), 0.0, []
        for k in range(1, args.requests + 1):
            request = chosen[(k - 1) * args.ids: k * args.ids]
            start = time.perf_counter()
            if way == "first model":
                if k not in marks:
                    continue  # request k's output depends on nothing but the union: only the scored ones run
                result, _, _ = apply_method(get_method("newton", layers="all", train_size=n), copy.deepcopy(original),
                                            task_of(chosen[: k * args.ids]))
                model = result.model
            elif way == "head in turn, accuracy kept":
                model = head_step_accuracy_kept(model, task_of(request), n - (k - 1) * args.ids)
            else:
                options = {"layers": "all"} if way == "in turn" else {}
                result, _, _ = apply_method(get_method("newton", train_size=n - (k - 1) * args.ids,
                                                       heldout_spent=spent, **options), model, task_of(request))
                model, info = result.model, result.info
                spent = max(spent + info["heldout_acc_before"] - info["heldout_acc_after"], 0.0)
            seconds.append(time.perf_counter() - start)
            if k in marks:
                score(way, k, model, seconds)
        print(f"seed {seed}: {way} done", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--ids", type=int, default=40, help="ids per request")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args()
    rows: list = []
    for seed in args.seeds:
        one_seed(seed, args, rows)
    table = Table(title=f"mnist5k × small_cnn: requests of {args.ids} random training ids, seeds {args.seeds}")
    for col in ("way", "requests", "Avg. Gap", "per seed", "FA", "MIA", "RA drift", "TA drift", "s / request"):
        table.add_column(col, justify="right")
    for k in (5, args.requests):
        for way in WAYS:
            mine = [r for r in rows if r["way"] == way and r["k"] == k]
            mean = {key: float(np.mean([r[key] for r in mine])) for key in ("gap", "fa", "mia", "ra_drift", "ta_drift", "s")}
            table.add_row(way, str(k), f"{mean['gap']:.2f}", " ".join(f"{r['gap']:.2f}" for r in mine),
                          f"{mean['fa']:.2f}", f"{mean['mia']:.2f}", f"{mean['ra_drift']:+.2f}",
                          f"{mean['ta_drift']:+.2f}", f"{mean['s']:.1f}")
    Console(width=150).print(table)


if __name__ == "__main__":
    main()

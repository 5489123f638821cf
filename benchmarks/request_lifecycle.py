"""Requests in a row, as a model owner serves them through the command line: does the model drift?

    python benchmarks/request_lifecycle.py                      # 5 requests of 40 random training ids on mnist5k
    python benchmarks/request_lifecycle.py --requests 20        # the 20-request version

Runs `mumis split`, `mumis train`, then N × (`mumis forget --ids` from the previous output, `mumis verify`), then
trains the retrain reference without everything forgotten (`mumis split --forget-ids` + `mumis train --forget`), and
prints, in one run: per request the method `auto` chose, its stop, the held-out accuracy earlier requests had spent
and what this one cost (each request gets only what is left of one budget), the wall time of the whole `forget`
command and of `verify`; at the end FA / RA / TA / MIA and Avg. Gap to that retrain for the last model and for doing nothing.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

MUMIS = str(Path(sys.executable).parent / "mumis")


def _run(*args) -> tuple[str, float]:
    start = time.perf_counter()
    done = subprocess.run([MUMIS, *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"mumis {' '.join(map(str, args))} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--ids-per-request", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from mumis.data import Split, explicit_ids, load_dataset, task_from_views
    from mumis.metrics import avg_gap, evaluate
    from mumis.training import load_checkpoint

    console = Console(width=140)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _run("split", args.dataset, "--out", d / "work", "--seed", args.seed)
        _, train_s = _run("train", "--split", d / "work/split.json", "--out", d / "model0.safetensors",
                          "--epochs", args.epochs, "--seed", args.seed)
        split = Split.load(d / "work/split.json")
        rng = np.random.default_rng(args.seed)
        chosen = rng.choice(split.train, size=args.requests * args.ids_per_request, replace=False)
        per_request = Table(title=f"{args.requests} requests of {args.ids_per_request} ids on {args.dataset} "
                                  f"(original trained in {train_s:.0f} s)")
        for col in ("request", "method (auto)", "stop", "held-out spent before", "held-out cost", "forget s", "verify s"):
            per_request.add_column(col, justify="right")
        for k in range(args.requests):
            ids = d / f"request{k + 1}.txt"
            ids.write_text("\n".join(str(i) for i in chosen[k * args.ids_per_request:(k + 1) * args.ids_per_request]))
            _, forget_s = _run("forget", "--model", d / f"model{k}.safetensors", "--data", d / "work/split.json",
                               "--ids", ids, "--out", d / f"model{k + 1}.safetensors")
            _, verify_s = _run("verify", d / f"model{k + 1}.manifest.json")
            manifest = json.loads((d / f"model{k + 1}.manifest.json").read_text())
            cost = manifest["stop"].get("heldout_cost")
            per_request.add_row(str(k + 1), manifest["method"]["name"], manifest["stop"]["reason"],
                                f"{manifest['method']['options'].get('heldout_spent', 0.0):.2f}",
                                "–" if cost is None else f"{cost:+.2f}", f"{forget_s:.1f}", f"{verify_s:.1f}")
        console.print(per_request)
        (d / "all.txt").write_text("\n".join(map(str, chosen)))
        _run("split", args.dataset, "--out", d / "all", "--seed", args.seed, "--forget-ids", d / "all.txt")
        _, retrain_s = _run("train", "--split", d / "all/split.json", "--forget", d / "all/forget.json",
                            "--out", d / "retrain.safetensors", "--epochs", args.epochs, "--seed", args.seed)
        bundle = load_dataset(args.dataset)
        train, test = split.materialise(bundle)
        task = task_from_views(train, test, split, explicit_ids(split, chosen.tolist()))
        scores = {name: evaluate(load_checkpoint(d / f"{stem}.safetensors")[0], task)
                  for name, stem in (("retrain", "retrain"), ("doing nothing", "model0"),
                                     (f"after {args.requests} requests", f"model{args.requests}"))}
    table = Table(title=f"against a retrain without all {len(chosen)} samples ({retrain_s:.0f} s)")
    for col in ("model", "FA", "RA", "TA", "MIA", "Avg. Gap", "RA drift", "TA drift"):
        table.add_column(col, justify="right")
    ref = scores["retrain"]
    for name, m in scores.items():
        table.add_row(name, *(f"{m[k]:.2f}" for k in ("fa", "ra", "ta", "mia")), f"{avg_gap(m, ref):.2f}",
                      f"{m['ra'] - ref['ra']:+.2f}", f"{m['ta'] - ref['ta']:+.2f}")
    console.print(table)


if __name__ == "__main__":
    main()

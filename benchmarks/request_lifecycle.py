"""Requests in a row, as a model owner serves them through the command line: does the model drift?

    python benchmarks/request_lifecycle.py                      # 5 requests of 40 random training ids on mnist5k
    python benchmarks/request_lifecycle.py --requests 20        # the 20-request version
    python benchmarks/request_lifecycle.py --seeds 0 1 2        # the same on three splits / originals / id draws

Per seed: runs `mumis split`, `mumis train`, then N × (`mumis forget --ids` from the previous output, `mumis
verify`), then trains the retrain reference without everything forgotten (`mumis split --forget-ids` + `mumis train
--forget`), and prints, in one run: per request the method `auto` chose, its stop, which model it ran on (a request
on a model that earlier requests produced runs on the chain's first model for every sample forgotten so far) and how
many samples that removed, whether `newton`'s held-out curvature of that model was computed or read back from the
cache (an earlier request of the chain computed it), the wall time of the whole `forget` command and of `verify`;
then FA / RA / TA / MIA and Avg. Gap to that retrain for the last model, for doing nothing and for a second retrain
from another seed (how far two retrains without the same samples are from each other: the noise floor of the
comparison), and with several seeds their means.
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
OTHER_SEED = 1000  # the noise-floor retrain's seed, offset from the reference's


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
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    console = Console(width=140)
    finals = [lifecycle(args, seed, console) for seed in args.seeds]
    if len(finals) > 1:
        summary = Table(title=f"mean over seeds {args.seeds}")
        for col in ("model", "Avg. Gap", "per seed", "RA drift", "TA drift", "forget s (mean)"):
            summary.add_column(col, justify="right")
        for name in finals[0]:
            rows = [f[name] for f in finals]
            summary.add_row(name, f"{np.mean([r['gap'] for r in rows]):.2f}",
                            " ".join(f"{r['gap']:.2f}" for r in rows),
                            f"{np.mean([r['ra_drift'] for r in rows]):+.2f}",
                            f"{np.mean([r['ta_drift'] for r in rows]):+.2f}",
                            "–" if rows[0]["forget_s"] is None else f"{np.mean([r['forget_s'] for r in rows]):.1f}")
        console.print(summary)


def lifecycle(args, seed: int, console: Console) -> dict:
    """One seed's lifecycle; returns per model (retrain, doing nothing, after N requests) its gap and drifts."""
    from mumis.data import Split, explicit_ids, load_dataset, task_from_views
    from mumis.metrics import avg_gap, evaluate
    from mumis.training import load_checkpoint

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        _run("split", args.dataset, "--out", d / "work", "--seed", seed)
        _, train_s = _run("train", "--split", d / "work/split.json", "--out", d / "model0.safetensors",
                          "--epochs", args.epochs, "--seed", seed)
        split = Split.load(d / "work/split.json")
        rng = np.random.default_rng(seed)
        chosen = rng.choice(split.train, size=args.requests * args.ids_per_request, replace=False)
        per_request = Table(title=f"seed {seed}: {args.requests} requests of {args.ids_per_request} ids on "
                                  f"{args.dataset} (original trained in {train_s:.0f} s)")
        forget_times = []
        for col in ("request", "method (auto)", "stop", "ran on", "samples removed", "curvature", "held-out cost",
                    "forget s", "verify s"):
            per_request.add_column(col, justify="right")
        for k in range(args.requests):
            ids = d / f"request{k + 1}.txt"
            ids.write_text("\n".join(str(i) for i in chosen[k * args.ids_per_request:(k + 1) * args.ids_per_request]))
            _, forget_s = _run("forget", "--model", d / f"model{k}.safetensors", "--data", d / "work/split.json",
                               "--ids", ids, "--out", d / f"model{k + 1}.safetensors")
            _, verify_s = _run("verify", d / f"model{k + 1}.manifest.json")
            manifest = json.loads((d / f"model{k + 1}.manifest.json").read_text())
            cost = manifest["stop"].get("heldout_cost")
            served = manifest["method"].get("served_from")
            forget_times.append(forget_s)
            per_request.add_row(str(k + 1), manifest["method"]["name"], manifest["stop"]["reason"],
                                Path(served["path"]).name if served else f"model{k}.safetensors",
                                str(served["forget_count"] if served else manifest["request"]["count"]),
                                {True: "read", False: "computed"}.get(manifest["stop"].get("curvature_from_cache"), "–"),
                                "–" if cost is None else f"{cost:+.2f}", f"{forget_s:.1f}", f"{verify_s:.1f}")
        console.print(per_request)
        (d / "all.txt").write_text("\n".join(map(str, chosen)))
        _run("split", args.dataset, "--out", d / "all", "--seed", seed, "--forget-ids", d / "all.txt")
        _, retrain_s = _run("train", "--split", d / "all/split.json", "--forget", d / "all/forget.json",
                            "--out", d / "retrain.safetensors", "--epochs", args.epochs, "--seed", seed)
        # the noise floor: the same retrain from another initialisation and data order is this far from the reference
        _run("train", "--split", d / "all/split.json", "--forget", d / "all/forget.json",
             "--out", d / "retrain2.safetensors", "--epochs", args.epochs, "--seed", seed + OTHER_SEED)
        bundle = load_dataset(args.dataset)
        train, test = split.materialise(bundle)
        task = task_from_views(train, test, split, explicit_ids(split, chosen.tolist()))
        scores = {name: evaluate(load_checkpoint(d / f"{stem}.safetensors")[0], task)
                  for name, stem in (("retrain", "retrain"), ("doing nothing", "model0"),
                                     (f"after {args.requests} requests", f"model{args.requests}"),
                                     ("another retrain (noise floor)", "retrain2"))}
    table = Table(title=f"seed {seed}: against a retrain without all {len(chosen)} samples ({retrain_s:.0f} s)")
    for col in ("model", "FA", "RA", "TA", "MIA", "Avg. Gap", "RA drift", "TA drift"):
        table.add_column(col, justify="right")
    ref = scores["retrain"]
    final = {}
    for name, m in scores.items():
        final[name] = {"gap": avg_gap(m, ref), "ra_drift": m["ra"] - ref["ra"], "ta_drift": m["ta"] - ref["ta"],
                       "forget_s": float(np.mean(forget_times)) if name.startswith("after") else None}
        table.add_row(name, *(f"{m[k]:.2f}" for k in ("fa", "ra", "ta", "mia")), f"{final[name]['gap']:.2f}",
                      f"{final[name]['ra_drift']:+.2f}", f"{final[name]['ta_drift']:+.2f}")
    console.print(table)
    return {name: row for name, row in final.items() if name != "retrain"}  # the retrain is the reference (all 0)


if __name__ == "__main__":
    main()

"""The paper's scale in one budgeted run: ResNet-18 on Fashion-MNIST (the ``paper_fmnist`` grid) and the GPU step
timings, written under one folder that comes back from a GPU machine whole.

    python benchmarks/paper_scale.py --out $OUT --budget-s 540          # on the GPU machine
    python benchmarks/paper_scale.py --out /tmp/rehearsal --tiny         # the same script on a CPU, in about a minute

Parts, in order, each inside the budget (the grid is resumable: a rerun with the same --out continues where the
last one stopped, reusing every trained model in ``OUT/cache``):

1. ``OUT/scaling.json``: ``benchmarks/scaling.py`` — a training step with the fast path on and off, the MU-Mis step
   (published objective and default) against it, the chunked double backward at 1×/4×/16× D_f.
2. ``OUT/paper_fmnist.sqlite``: the grid, cell by cell (every row records the device it ran on, and reference rows
   the device their model was trained on). The grid runs in a child process that is stopped at the budget, so a
   cut-off run still leaves every finished cell and model behind.
3. ``OUT/report/``: ``mumis report``'s tables and figures (the published method's sensitivity traces included), and
   ``OUT/summary.json`` / ``OUT/summary.md``: each method's unlearning time as a share of its retrain's training
   time, the reached test accuracy of the shortened schedule, and where everything ran.

``--tiny`` keeps every part and every task kind but shrinks the data (mnist5k), the model (small_cnn), the epochs and
the method budgets, so the exact script is rehearsed on a CPU before any GPU time is spent.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRID = "paper_fmnist"


def tiny_spec(spec):
    """The rehearsal grid: every task kind and method of ``spec`` on mnist5k × small_cnn, seconds per cell."""
    from mumis.metrics import SuiteOptions
    from mumis.training import TrainRecipe

    keep, tasks = set(), []
    for t in spec.tasks:  # one task of each kind (the first), so every code path runs once
        if t.task.kind not in keep:
            keep.add(t.task.kind)
            tasks.append(dataclasses.replace(t, datasets=()))
    budgets = {"rl": 1, "salun": 1, "ft": 1}
    methods = tuple(dataclasses.replace(m, options=tuple(sorted({**dict(m.options), "epochs": budgets[m.name]}.items())))
                    if m.name in budgets else
                    dataclasses.replace(m, options=tuple(sorted({**dict(m.options), "max_steps": 30}.items())))
                    if m.name == "mumis" else m for m in spec.methods)
    return dataclasses.replace(spec, name=f"{spec.name}-tiny", datasets=("mnist5k",), models=("small_cnn",),
                               tasks=tuple(tasks), methods=methods,
                               recipe=TrainRecipe(epochs=2, batch_size=128, lr=0.05, warmup_epochs=0.5),
                               suite=SuiteOptions(relearn_max_steps=20, sensitivity_samples=64, mia_cap=500))


def _run_grid(spec, db: str, cache: str) -> None:  # the child process
    from mumis.bench.runner import run_grid

    outcome = run_grid(spec, db, cache, show_progress=False)
    print(f"grid: {outcome.finished} cells run, {outcome.skipped} already done, {len(outcome.failed)} failed", flush=True)
    for line in outcome.failed:
        print(f"failed: {line}", flush=True)


def run_grid_within(spec, db: Path, cache: Path, seconds: float) -> bool:
    """Run the grid in a child process; stop it after ``seconds``. True when it finished."""
    child = mp.get_context("spawn").Process(target=_run_grid, args=(spec, str(db), str(cache)))
    child.start()
    child.join(max(seconds, 1.0))
    if child.is_alive():
        child.terminate()
        child.join(30)
        print(f"grid: stopped at the budget ({seconds:.0f} s); finished cells are in {db}, rerun to continue", flush=True)
        return False
    if child.exitcode != 0:
        raise RuntimeError(f"the grid process exited with code {child.exitcode}")
    return True


def summarise(db: Path) -> dict:
    """Per (task, method): unlearning time / retrain time; per reference: where it was trained and its accuracy."""
    from mumis.bench.report import latest_rows
    from mumis.bench.store import ResultStore

    with ResultStore(db) as store:
        rows = latest_rows(store.rows())
    retrain_s = {(r["dataset"], r["task"], r["seed"], r["step"]): r["wall_s"] for r in rows if r["method"] == "retrain"}
    out = {"rows": [], "devices": sorted({str(r["versions"].get("device")) for r in rows})}
    for r in rows:
        ref = retrain_s.get((r["dataset"], r["task"], r["seed"], r["step"]))
        out["rows"].append({
            "task": r["task"], "dataset": r["dataset"], "step": r["step"], "method": r["method"], "seed": r["seed"],
            "avg_gap": r["avg_gap"], "ta": r["ta"], "wall_s": r["wall_s"], "device": r["versions"].get("device"),
            "trained_on": r["versions"].get("trained_on"),
            "share_of_retrain": (r["wall_s"] / ref) if ref and r["method"] not in ("retrain", "original") else None,
        })
    return out


def summary_markdown(summary: dict, budget_note: str) -> str:
    lines = [f"Devices: {', '.join(summary['devices'])}. {budget_note}", "",
             "| task | step | method | Avg. Gap | TA | time (s) | share of retrain | ran on | model trained on |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        share = "–" if r["share_of_retrain"] is None else f"{100 * r['share_of_retrain']:.2f} %"
        lines.append(f"| {r['task']} | {r['step']} | {r['method']} | {r['avg_gap']:.2f} | {r['ta']:.2f} | {r['wall_s']:.2f} "
                     f"| {share} | {r['device']} | {r['trained_on'] or '–'} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="everything goes here (bring it back whole)")
    parser.add_argument("--budget-s", type=float, default=540, help="wall-clock budget for all parts together")
    parser.add_argument("--tiny", action="store_true", help="the CPU rehearsal: same parts, tiny data and model")
    parser.add_argument("--skip-scaling", action="store_true", help="leave out part 1")
    args = parser.parse_args(argv)
    start = time.monotonic()
    left = lambda: args.budget_s - (time.monotonic() - start)  # noqa: E731
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MUMIS_CACHE", str(args.out / "cache"))

    from mumis.bench.grid import load_grid
    from mumis.bench.report import write_report
    from mumis.runtime import device_name, versions

    spec = load_grid(GRID)
    spec = tiny_spec(spec) if args.tiny else spec
    (args.out / "device.json").write_text(json.dumps({"device": device_name(), "versions": versions(),
                                                       "grid": spec.to_dict(), "tiny": args.tiny}, indent=1, default=str))
    if not args.skip_scaling:  # part 1: about a tenth of the budget
        cmd = [sys.executable, str(HERE / "scaling.py"), "--json", str(args.out / "scaling.json")]
        cmd += ["--models", "small_cnn", "--repeats", "2", "--skip-memory"] if args.tiny else ["--models", "resnet18"]
        try:
            subprocess.run(cmd, check=True, timeout=max(30.0, 0.15 * args.budget_s))
        except (subprocess.TimeoutExpired, subprocess.CalledProcessError) as err:
            print(f"scaling: {err}; the grid still runs", flush=True)
    reserve = 20 if args.tiny else 60  # the report and summary after the grid
    finished = run_grid_within(spec, args.out / f"{GRID}.sqlite", Path(os.environ["MUMIS_CACHE"]), left() - reserve)
    write_report(args.out / f"{GRID}.sqlite", args.out / "report", f"{spec.name}: ResNet-18 on Fashion-MNIST")
    summary = summarise(args.out / f"{GRID}.sqlite")
    summary["grid_finished"] = finished
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    note = "The grid finished." if finished else "The grid was stopped at the budget: rerun with the same --out to finish it."
    (args.out / "summary.md").write_text(summary_markdown(summary, note))
    print(summary_markdown(summary, note), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

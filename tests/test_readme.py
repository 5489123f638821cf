"""Every command in the README's code blocks is accounted for: run here as written, run as written by another test,
run as written by a long test (``pytest -m long``, left out of the default run; ``.ci/run-long`` runs it on a clean
clone), or — where it needs a GPU, several GPUs or a cluster — exercised by a named test on a smaller input through
the same code. A README command added or changed without a line here fails the first test."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
MUMIS = str(Path(sys.executable).parent / "mumis")

# command → how it is run: "here" (below, as written), "as written: <test>", or "smaller: <test> (why)"
ACCOUNTED = {
    "python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/mumis demo":
        "here: the install is .ci/run's on a clean clone; `mumis demo` runs below as written",
    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest":
        "as written: .ci/run (this suite)",
    "mumis split mnist5k --out work": "as written: tests/serving/test_requests.py::test_readme_deletion_request_example_runs_as_written",
    "mumis train --split work/split.json --out work/model.safetensors --epochs 3": "as written: (same test)",
    'printf "7\\n42\\n2024\\n4321\\n" > work/request.txt': "as written: (same test)",
    "mumis forget --model work/model.safetensors --data work/split.json --ids work/request.txt "
    "--out work/forgot.safetensors": "as written: (same test)",
    "mumis verify work/forgot.manifest.json": "as written: (same test)",
    "mumis demo --methods all": "here: as written, on the references the main job's test trained (about 2 minutes)",
    "mumis bench demo": "as written: test_the_benchmark_and_tuning_commands_run_as_written (long: about 45 minutes); "
                        "tests/bench/test_resume.py, test_bench_cli.py run the same code on tiny grids in every run",
    "mumis report runs/bench/demo.sqlite": "here: on the committed demo database, as written; the long test runs it "
                                           "on the database `mumis bench demo` wrote",
    "mumis tune all demo --trials 8 --save tuned": "as written: (the same long test: 24 studies of 8 trials, about 55 minutes); "
                                                   "tests/bench/test_tuning.py runs the same code on a tiny grid",
    "torchrun --standalone --nproc-per-node 4 -m mumis.cli train --split runs/x/split.json --out runs/x/original.safetensors":
        "here: as written, 4 gloo processes on the CPU, after `mumis split mnist5k --out runs/x` (about 35 s)",
    "mumis bench cifar100_full --data-dir /shared/data --cache-dir /shared/mumis-cache --executor ray --address auto --gpus-per-cell 1":
        "smaller: tests/bench/test_ray_executor.py (a local Ray instance, a tiny grid; no GPU or CIFAR here)",
    "python benchmarks/paper_scale.py --out OUT --budget-s 540":
        "smaller: tests/bench/test_paper_scale.py (the --tiny rehearsal; the real run needs a GPU)",
}


def readme_commands() -> list[str]:
    """Every command line in the README's ```bash blocks (comments stripped), and the inline `python benchmarks/…`
    commands of the text."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    commands += [c for c in re.findall(r"`(python benchmarks/[^`]+)`", README) if c not in commands]
    return commands


def test_every_readme_command_is_accounted_for():
    commands = readme_commands()
    assert len(commands) >= 10
    assert set(commands) == set(ACCOUNTED), (
        f"new or changed README commands: {sorted(set(commands) - set(ACCOUNTED))}; "
        f"no longer in the README: {sorted(set(ACCOUNTED) - set(commands))}")


def _run(line: str, cwd: Path, env: dict, timeout: int) -> subprocess.CompletedProcess:
    command = re.sub(r"^(\.venv/bin/)?mumis ", MUMIS + " ", line)
    done = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def demo_cache(tmp_path_factory) -> Path:
    """One model cache for the demo commands: the main job starts from it empty, `--methods all` reuses its models."""
    return tmp_path_factory.mktemp("demo-cache")


def test_the_main_job_runs_as_written_and_forgets_the_class(tmp_path, demo_cache):
    """The README's main job after its install, in an empty folder with an empty model cache (about a minute)."""
    main = next(c for c in readme_commands() if c.endswith("mumis demo"))
    env = {**os.environ, "MUMIS_DEVICE": "cpu", "MUMIS_CACHE": str(demo_cache)}
    done = _run(main.split("&&")[-1].strip(), tmp_path, env, timeout=900)
    assert "MU-Mis read only ['forget'] data" in done.stdout
    rows = {r["method"]: r for r in json.loads((tmp_path / "runs/demo/results.json").read_text())}
    assert rows["mumis"]["fa"] == 0 and rows["mumis"]["avg_gap"] <= 1.0 and rows["original"]["fa"] > 90
    assert (tmp_path / "runs/demo/trace-mumis.png").stat().st_size > 0


def test_the_demo_with_every_method_runs_as_written(tmp_path, demo_cache):
    """Every registered method on the demo's class request, each handed only the data it declares (SCAR is left out,
    with a line, where its surrogate data is not installed)."""
    from mumis.cli import DEMO_SURROGATES, _loadable
    from mumis.methods import get_method, list_methods

    line = next(c for c in readme_commands() if c.endswith("--methods all"))
    done = _run(line, tmp_path, {**os.environ, "MUMIS_DEVICE": "cpu", "MUMIS_CACHE": str(demo_cache)},
                timeout=1200)
    rows = {r["method"]: r for r in json.loads((tmp_path / "runs/demo/results.json").read_text())}
    # the demo runs in a fresh process: the study methods that other tests register in this one are not there
    expected = [m for m in list_methods() if m not in ("retrain", "original")
                and not type(get_method(m)).__module__.startswith("mumis.experimental")
                and (m != "scar" or _loadable(DEMO_SURROGATES["default"]))]
    assert sorted(rows) == sorted(["retrain", "original", *expected]) and len(expected) >= 12
    for name in expected:
        assert ("retain" in rows[name]["extra"]["data_read"]) == (not get_method(name).retain_free), name
        assert f"{name}: read " in done.stdout
    assert rows["mumis"]["fa"] == 0 and rows["mumis"]["avg_gap"] <= 1.0 and rows["mumis"]["extra"]["data_read"] == ["forget"]


def test_the_report_command_runs_as_written_on_the_committed_demo_database(tmp_path):
    (tmp_path / "runs/bench").mkdir(parents=True)
    shutil.copy(ROOT / "docs/report-demo/demo.sqlite", tmp_path / "runs/bench/demo.sqlite")
    line = next(c for c in readme_commands() if c.startswith("mumis report"))
    _run(line, tmp_path, {**os.environ, "MUMIS_DEVICE": "cpu"}, timeout=600)
    report = (tmp_path / "runs/bench/demo/report.md").read_text()
    assert "## mnist5k · small_cnn · full_class=3" in report and "| mumis |" in report


def test_the_torchrun_command_runs_as_written_with_four_processes(tmp_path):
    """The scaling-out command, as written, on the CPU (gloo): four processes train one model; rank 0 alone writes it."""
    line = next(c for c in readme_commands() if c.startswith("torchrun"))
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "MUMIS_DEVICE": "cpu",
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
    _run("mumis split mnist5k --out runs/x", tmp_path, env, timeout=300)
    assert torchrun.exists() or shutil.which("torchrun", path=env["PATH"])
    done = _run(line, tmp_path, env, timeout=900)
    assert done.stdout.count("model →") == 1 and "on 4 process(es)" in done.stdout
    assert sorted(p.name for p in (tmp_path / "runs/x").iterdir()) == ["original.json", "original.safetensors", "split.json"]
    meta = json.loads((tmp_path / "runs/x/original.json").read_text())
    assert meta["processes"] == 4 and meta["accuracies"]["test"] > 90


@pytest.mark.long
def test_the_benchmark_and_tuning_commands_run_as_written(tmp_path):
    """The README's benchmark block and its tuning command, as written and in the README's order, in an empty folder
    with an empty model cache (about 100 minutes on 2 cores): `mumis bench demo` runs every cell of the preset — the
    same cells the committed demo report was made from — `mumis report` reads what it wrote, and `mumis tune all demo
    --trials 8 --save tuned` runs a full study per tunable method and task kind and writes the package's recipe.
    The recipe file is restored afterwards (the committed one is what the shipped grids read); how far the fresh
    numbers are from the committed ones is printed (``-s``), not asserted: the committed tables reproduce from the
    commit each row records."""
    import sqlite3

    from mumis.bench.grid import load_grid
    from mumis.bench.tuning import TuneSettings, stored_summaries, tunable
    from mumis.methods.recipes import recipe_path

    env = {**os.environ, "MUMIS_DEVICE": "cpu", "MUMIS_CACHE": str(tmp_path / "cache")}
    bench, report = (next(c for c in readme_commands() if c.startswith(p)) for p in ("mumis bench demo", "mumis report"))
    done = _run(bench, tmp_path, env, timeout=4 * 3600)
    assert "0 already in" in done.stdout
    spec = load_grid("demo")
    with sqlite3.connect(tmp_path / "runs/bench/demo.sqlite") as fresh:
        keys = {k for (k,) in fresh.execute("SELECT key FROM cells")}
        assert keys == {c.key for c in spec.cells()}
        assert fresh.execute("SELECT COUNT(*) FROM failures").fetchone() == (0,)
        rows = fresh.execute("SELECT cell_key, step, method, task_kind, seed, fa, avg_gap FROM rows").fetchall()
    mumis_full = [r for r in rows if r[2] == "mumis" and r[3] == "full_class"]
    assert len(mumis_full) == len(spec.seeds) and all(fa == 0 and gap <= 1.0 for *_, fa, gap in mumis_full)
    with sqlite3.connect(ROOT / "docs/report-demo/demo.sqlite") as committed:
        before = {(k, i): g for k, i, g in committed.execute("SELECT cell_key, step, avg_gap FROM rows")}
    diffs = sorted((abs(g - before[(k, i)]), m, t, s) for k, i, m, t, s, _, g in rows if (k, i) in before)
    print(f"\nbench demo: {len(rows)} rows, {len(diffs)} with a committed counterpart; |Avg. Gap − committed|: "
          f"median {diffs[len(diffs) // 2][0]:.3f}, max {diffs[-1][0]:.3f} ({diffs[-1][1]}, {diffs[-1][2]}, seed "
          f"{diffs[-1][3]}); identical: {sum(d == 0 for d, *_ in diffs)}")
    _run(report, tmp_path, env, timeout=900)
    text = (tmp_path / "runs/bench/demo/report.md").read_text()
    assert "## mnist5k · small_cnn · full_class=3" in text and "| mumis |" in text

    tune = next(c for c in readme_commands() if c.startswith("mumis tune"))
    shipped = recipe_path("tuned")
    kept = shipped.read_bytes()
    try:
        _run(tune, tmp_path, env, timeout=4 * 3600)
        saved = json.loads(shipped.read_text())
    finally:
        shipped.write_bytes(kept)
    today = {(e["method"], e["task"]): e for e in saved["entries"] if e["tuning"].get("storage") == "runs/tuning.sqlite3"}
    tuned = [e for e in spec.methods if tunable(e) is None]
    summaries = stored_summaries(spec, tuned, f"sqlite:///{tmp_path / 'runs/tuning.sqlite3'}",
                                 TuneSettings(trials=8, budget=1.0, seed=100))
    assert len(summaries) == len(tuned) * len(spec.tasks) and len(tuned) >= 5
    for cell, summary in summaries:  # every study ran its 8 trials; one with a finished trial is in the recipe
        assert summary["complete"] + summary["over_budget"] >= 8, summary
        assert ((cell.method.name, cell.task.kind) in today) == (summary["complete"] > 0), summary
        assert cell.seed == 100 and cell.seed not in spec.seeds
    committed = {(e["method"], e["task"]): e for e in json.loads(kept)["entries"] if e["family"] == "mnist"}
    print("tune all demo: best gap now / committed: " + "; ".join(
        f"{m} {k} {e['tuning']['best_gap']:.2f}/{committed[(m, k)]['tuning']['best_gap']:.2f}"
        for (m, k), e in sorted(today.items()) if (m, k) in committed))

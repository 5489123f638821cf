"""Tuning against retrain: the same trial budget per method, a recipe that reproduces its tuning score, and a study
that resumes after kill -9 with no trial lost or run twice."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from mumis.bench.grid import parse_grid
from mumis.bench.runner import GroupContext, run_cell
from mumis.bench.tuning import (
    TuneSettings,
    recipe_entry,
    stored_summaries,
    study_name,
    tunable,
    tune_grid,
    tuning_cells,
)
from mumis.errors import MumisError
from mumis.methods.recipes import dataset_family, load_recipe, save_entry

GRID = """
name = "tune-tiny"
datasets = ["digits"]
models = ["small_cnn"]
seeds = [0]

[recipe]
epochs = 2
batch_size = 64

[[tasks]]
kind = "full_class"
target = 1

[[methods]]
name = "{method}"

[[methods]]
name = "mumis"

[suite]
relearn_max_steps = 20
sensitivity_samples = 64
"""


def _spec(method="ga"):
    return parse_grid(GRID.format(method=method), "tune-tiny.toml")


def test_tuning_runs_the_budget_saves_a_recipe_and_the_recipe_reproduces_its_score(tmp_path):
    spec = _spec()
    storage = f"sqlite:///{tmp_path / 'studies.sqlite3'}"
    # time is not what this test checks: a budget no trial can exceed, so a busy machine prunes nothing here
    settings = TuneSettings(trials=4, seed=100, budget=1e6)
    (cell, summary), = tune_grid(spec, [spec.methods[0]], storage, settings, tmp_path / "cache", show_progress=False)
    study = optuna.load_study(study_name=study_name(cell), storage=storage)
    states = [t.state for t in study.trials]
    assert sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states) == 4
    assert study.trials[0].user_attrs["default"] and study.trials[0].params == {"lr": 1e-4, "epochs": 5}
    assert summary["best_gap"] <= summary["default_gap"]  # the default is one of the trials
    # a second call with the same budget runs nothing more; the stored summary is the one tuning returned
    tune_grid(spec, [spec.methods[0]], storage, settings, tmp_path / "cache", show_progress=False)
    assert len(optuna.load_study(study_name=study_name(cell), storage=storage).trials) == 4
    assert stored_summaries(spec, list(spec.methods[:1]), storage, settings) == [(cell, summary)]
    from mumis.bench.report import tuning_section  # the report's section: one row per study, cost beside the scores
    row = next(line for line in tuning_section(tmp_path / "studies.sqlite3") if line.startswith("| ga · digits"))
    assert f"| 4 | 0 | {summary['default_gap']:.2f} | {summary['best_gap']:.2f} |" in row

    path = save_entry(tmp_path / "mine.json", recipe_entry(cell, summary, storage, settings))
    recipe = load_recipe(path)
    assert recipe.version == 1 and recipe.options("ga", {}, "full_class", "digits") == summary["best_params"]
    # the recipe, run through a grid entry on the tuning seed, gives back the tuning-time score
    tuned_spec = parse_grid(GRID.format(method="ga") + f'\n[[methods]]\nname = "ga"\nlabel = "ga (tuned)"\n'
                            f'recipe = "{path}"\n', "t.toml")
    tuned = [c for c in dataclasses.replace(tuned_spec, seeds=(100,)).cells() if c.label == "ga (tuned)"][0]
    assert {k: dict(tuned.method.options)[k] for k in summary["best_params"]} == summary["best_params"]
    rows, _ = run_cell(tuned, GroupContext.prepare(tuned, tmp_path / "cache", None))
    assert rows[0]["avg_gap"] == pytest.approx(summary["best_gap"], abs=1e-9)
    save_entry(path, recipe_entry(cell, summary, storage, settings))  # the same key again: replaced, version bumped
    again = load_recipe(path)
    assert again.version == 2 and len(again.entries) == 1


def test_what_cannot_be_tuned_says_why():
    spec = _spec()
    assert "not tuned" in tunable(spec.methods[1])  # MU-Mis's default needs no tuning
    assert tunable(dataclasses.replace(spec.methods[1], options=(("variant", "paper"),))) is None
    with pytest.raises(MumisError, match="tuning seed 0 is one of the grid's reported seeds"):
        tuning_cells(spec, spec.methods[0], seed=0)
    with pytest.raises(MumisError, match="is malformed"):
        load_recipe(Path(__file__))  # not a recipe at all
    with pytest.raises(MumisError, match="no recipe 'nope'"):
        load_recipe("nope")
    assert dataset_family("mnist5k_super") == dataset_family("mnist5k") == "mnist"


def test_a_missing_recipe_entry_is_an_error_not_a_default(tmp_path):
    spec = _spec()
    path = save_entry(tmp_path / "r.json", recipe_entry(tuning_cells(spec, spec.methods[0], 100)[0], {
        "study": "s", "best_params": {"lr": 1e-3, "epochs": 2}, "best_gap": 1.0, "default_gap": 2.0, "cost_s": 1.0},
        "sqlite://", TuneSettings()))
    with pytest.raises(MumisError, match="has no entry for ga × random × digits"):
        load_recipe(path).options("ga", {}, "random", "digits")


def test_a_killed_tuning_run_resumes_with_no_trial_lost_or_run_twice(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(GRID.format(method="ft"))
    storage = tmp_path / "studies.sqlite3"
    url = f"sqlite:///{storage}"
    mumis = str(Path(sys.executable).parent / "mumis")
    command = [mumis, "tune", "ft", str(grid), "--trials", "5", "--storage", str(storage), "--cache-dir",
               str(tmp_path / "cache"), "--no-progress"]
    env = {**os.environ, "MUMIS_DEVICE": "cpu"}
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    name = "ft | digits | small_cnn | full_class=1 | seed 100"
    killed_number = None
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        try:
            trials = optuna.load_study(study_name=name, storage=url).trials
        except (KeyError, Exception):  # not created yet (or the database is mid-write)
            time.sleep(0.2)
            continue
        running = [t for t in trials if t.state == TrialState.RUNNING and t.number >= 1]
        if running:  # a trial is cut off in the middle: kill -9 now
            killed_number = running[0].number
            os.kill(first.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    first.wait(timeout=60)
    assert killed_number is not None, "the first run finished before a trial could be cut off"
    study = optuna.load_study(study_name=name, storage=url)
    cut = study.trials[killed_number]
    assert cut.state == TrialState.RUNNING  # what a kill -9 leaves behind
    finished_before = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)

    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    trials = optuna.load_study(study_name=name, storage=url).trials
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 5 and finished_before < 5  # the budget, no more, no less
    assert trials[killed_number].state == TrialState.FAIL  # the cut-off trial is not counted ...
    rerun = [t for t in finished if t.user_attrs.get("requeued_from") == killed_number]
    assert len(rerun) == 1 and rerun[0].params == cut.params  # ... and its options ran again, once
    params = [json.dumps(t.params, sort_keys=True) for t in finished]
    assert len(set(params)) == len(params)  # no trial ran twice


def test_a_trial_running_far_past_its_budget_is_stopped_there(tmp_path, monkeypatch):
    """A trial whose options make the method run on (a tiny learning rate up to a step cap) is stopped once it is
    well past its budget and pruned, instead of being judged after it finishes; SIGALRM is as it was after."""
    import mumis.bench.tuning as tuning

    spec = _spec()
    storage = f"sqlite:///{tmp_path / 'studies.sqlite3'}"
    real_run_cell = tuning.run_cell
    calls = []

    def slow_run_cell(cell, ctx):
        calls.append(cell)
        if len(calls) == 2:  # the second trial never ends by itself
            while True:
                time.sleep(0.05)
        return real_run_cell(cell, ctx)

    monkeypatch.setattr(tuning, "run_cell", slow_run_cell)
    limits = []
    real_time_limit = tuning.time_limit
    # the runaway trial's limit shortened to half a second (the real one: twice the budget and a margin)
    monkeypatch.setattr(tuning, "time_limit", lambda seconds: limits.append(seconds) or real_time_limit(
        0.5 if len(limits) == 2 else seconds))
    handler = signal.getsignal(signal.SIGALRM)
    start = time.perf_counter()
    (cell, summary), = tune_grid(spec, [spec.methods[0]], storage, TuneSettings(trials=3, seed=100, budget=1e6),
                                 tmp_path / "cache", show_progress=False)
    assert time.perf_counter() - start < 120
    study = optuna.load_study(study_name=study_name(cell), storage=storage)
    assert [t.state for t in study.trials] == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.COMPLETE]
    assert study.trials[1].user_attrs["stopped_at_budget"] and summary["over_budget"] == 1
    retrain_s = study.trials[0].user_attrs["retrain_s"]
    assert limits[0] == pytest.approx(2 * 1e6 * retrain_s + 30)  # asked for: twice the budget and a margin
    assert signal.getsignal(signal.SIGALRM) == handler and signal.getitimer(signal.ITIMER_REAL)[0] == 0


def test_time_limit_raises_in_its_block_and_leaves_no_timer():
    from mumis.bench.tuning import OverBudget, time_limit

    with pytest.raises(OverBudget):
        with time_limit(0.2):
            time.sleep(5)
    with time_limit(5):
        pass
    assert signal.getitimer(signal.ITIMER_REAL)[0] == 0


def test_a_pool_holdout_grid_tunes_in_its_own_studies():
    spec = _spec()
    [official] = tuning_cells(spec, spec.methods[0], seed=7)
    [pooled] = tuning_cells(dataclasses.replace(spec, holdout=0.2), spec.methods[0], seed=7)
    assert study_name(official) == "ga | digits | small_cnn | full_class=1 | seed 7"  # stored studies keep their name
    assert study_name(pooled) == study_name(official) + " | holdout 0.2" and pooled.holdout == 0.2

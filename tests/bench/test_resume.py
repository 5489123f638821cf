"""The results database: one row per cell and step, resumable after a crash, failures recorded and retried."""
import sqlite3

import pytest

import mumis.bench.runner as runner
from mumis.bench.runner import run_grid
from mumis.bench.store import ResultStore


def _expected_rows(spec):
    return sum(len(c.task.sequence) or 1 for c in spec.cells())


def test_completed_grid_has_one_row_per_cell_and_step(tiny_grid, tiny_db):
    db, _ = tiny_db
    with ResultStore(db) as store:
        assert store.count("cells") == len(tiny_grid.cells())
        assert store.count("rows") == _expected_rows(tiny_grid)
        rows = store.rows()
    seq = [r for r in rows if r["task_kind"] == "sequential" and r["method"] == "ga"]
    assert sorted(r["step"] for r in seq) == [1, 2]
    assert seq[-1]["forget_size"] > seq[0]["forget_size"]  # scored on everything forgotten so far
    retrain = [r for r in rows if r["method"] == "retrain"]
    assert all(r["avg_gap"] == 0.0 and r["kl"] == 0.0 for r in retrain)
    row = next(r for r in rows if r["method"] == "mumis-fast" and r["task_kind"] == "full_class")
    for key in ("fa", "ra", "ta", "mia", "mia_stratified", "mia_loss", "kl", "js", "relearn_steps", "tow", "target_up",
                "config_hash", "split_hash", "forget_hash", "versions", "wall_s", "peak_mem_mb", "trace"):
        assert key in row, key
    assert row["data_read"] == ["forget"]


def test_killed_grid_resumes_without_recomputing_or_duplicating(tiny_grid, tiny_db, tmp_path, monkeypatch):
    _, cache = tiny_db  # reuse the trained references; the database is new
    db = tmp_path / "crash.sqlite"
    real, calls = runner.run_cell, []

    def crashing(cell, ctx):
        calls.append(cell.key)
        if len(calls) == 6:  # the sequential ga cell: its first step is computed, then the process "dies"
            raise KeyboardInterrupt
        return real(cell, ctx)

    monkeypatch.setattr(runner, "run_cell", crashing)
    with pytest.raises(KeyboardInterrupt):
        run_grid(tiny_grid, db, cache, show_progress=False)
    with ResultStore(db) as store:
        assert store.count("cells") == 5 and store.count("rows") == 1 + 1 + 1 + 1 + 2  # the 4 full-class cells + original(seq)
    finished_before = set(calls[:5])

    calls.clear()
    outcome = run_grid(tiny_grid, db, cache, show_progress=False)
    assert outcome.skipped == 5 and outcome.finished == 3 and not outcome.failed
    assert not finished_before & set(calls)  # nothing that finished ran again
    with ResultStore(db) as store:
        assert store.count("cells") == len(tiny_grid.cells())
        assert store.count("rows") == _expected_rows(tiny_grid)
    dupes = sqlite3.connect(db).execute("SELECT cell_key, step, COUNT(*) FROM rows GROUP BY cell_key, step HAVING COUNT(*) > 1").fetchall()
    assert dupes == []


def test_a_failing_cell_is_recorded_and_only_it_is_retried(tiny_grid, tiny_db, tmp_path, monkeypatch):
    _, cache = tiny_db
    db = tmp_path / "fail.sqlite"
    real = runner.run_cell

    def flaky(cell, ctx):
        if cell.label == "ga" and cell.task.kind == "full_class":
            raise RuntimeError("simulated failure")
        return real(cell, ctx)

    monkeypatch.setattr(runner, "run_cell", flaky)
    outcome = run_grid(tiny_grid, db, cache, show_progress=False)
    assert len(outcome.failed) == 1 and "simulated failure" in outcome.failed[0]
    with ResultStore(db) as store:
        (failure,) = store.failures()
        assert "RuntimeError" in failure["traceback"] and failure["label"] == "ga"
        assert store.count("cells") == len(tiny_grid.cells()) - 1

    monkeypatch.setattr(runner, "run_cell", real)
    retried = []
    monkeypatch.setattr(runner, "run_cell", lambda cell, ctx: retried.append(cell.label) or real(cell, ctx))
    outcome = run_grid(tiny_grid, db, cache, show_progress=False)
    assert retried == ["ga"] and outcome.finished == 1 and not outcome.failed
    with ResultStore(db) as store:
        assert store.failures() == [] and store.count("cells") == len(tiny_grid.cells())

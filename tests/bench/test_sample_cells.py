"""benchmarks/sample_cells.py: the per-cell sample-request table counts a seed as meeting the target only when both
its Avg. Gap and its per-example AUC are within bounds, and the research log's table is what it prints."""
import importlib.util
import io
import json
import sqlite3
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("sample_cells_script", ROOT / "benchmarks" / "sample_cells.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _row(method, seed, gap, task="random"):
    return {"dataset": "d", "model": "small_cnn", "task": task, "method": method, "seed": seed, "avg_gap": gap,
            "cell": ["d", "small_cnn", task, seed]}


def test_a_seed_meets_the_target_only_with_both_gap_and_auc(tmp_path):
    sc = _script()
    results = [_row("original", s, 2.0) for s in range(3)] + [_row("retrain", s, 0.0) for s in range(3)]
    results += [_row("auto", 0, 0.5), _row("auto", 1, 0.9), _row("auto", 2, 1.2), _row("other", 0, 0.1),
                _row("other", 1, 0.1)]  # "other" lacks a seed: never the best found
    db = tmp_path / "r.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE rows (method, task_kind, dataset, model, seed, data)")
        for method, seed, auc in (("retrain", 0, 0.50), ("newton (auto)", 0, 0.54), ("retrain", 1, 0.50),
                                  ("newton (auto)", 1, 0.57), ("retrain", 2, 0.50), ("newton (auto)", 2, 0.50)):
            con.execute("INSERT INTO rows VALUES (?, 'random', 'd', 'small_cnn', ?, ?)",
                        (method, seed, json.dumps({"lira_auc": auc})))
    deltas = sc.auc_deltas(db)
    assert {k: round(v, 3) for k, v in deltas.items()} == {("d", "small_cnn", "random", 0): 0.04,
                                                           ("d", "small_cnn", "random", 1): 0.07,
                                                           ("d", "small_cnn", "random", 2): 0.0}
    [row] = sc.cell_rows(results, deltas, "auto")
    assert row[1:3] == ("2.00", "0.50 / 0.90 / 1.20")
    assert row[4] == "0.87 (auto)"  # seed 1's AUC and seed 2's gap miss
    assert row[5] == "1 of 3"
    assert sc.auc_deltas(tmp_path / "absent.sqlite") == {}
    [unmeasured] = sc.cell_rows(results, {}, "auto")
    assert unmeasured[5] == "gap on 2 of 3, AUC not measured"
    assert sc.cell_rows([_row("original", 0, 2.0)], {}, "auto")[0][5] == "not run"


def test_a_per_example_run_is_judged_on_its_own_references(tmp_path):
    sc = _script()
    db = tmp_path / "run.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE rows (method, task_kind, dataset, model, seed, avg_gap, data)")
        for method, seed, gap, auc in (("retrain", 0, 0.0, 0.50), ("original", 0, 1.5, 0.56),
                                       ("newton (auto)", 0, 0.8, 0.53), ("retrain", 1, 0.0, 0.51),
                                       ("original", 1, 1.1, 0.52), ("newton (auto)", 1, 1.2, 0.51),
                                       ("retrain", 2, 0.0, 0.50), ("original", 2, 1.0, 0.55)):  # seed 2: auto not run
            con.execute("INSERT INTO rows VALUES (?, 'random', 'd', 'small_cnn', ?, ?, ?)",
                        (method, seed, gap, json.dumps({"lira_auc": auc})))
        con.execute("INSERT INTO rows VALUES ('original', 'full_class', 'd', 'small_cnn', 0, 0.1, '{}')")
    row = ("d × small_cnn, random", "0 / 1", "1.50 / 1.10", "+0.060 / +0.010", "0.80 / 1.20", "+0.030 / +0.000",
           "1 of 2")
    assert sc.run_rows([(db, ""), (tmp_path / "absent.sqlite", "")]) == [row]
    # the same cell measured on another split is its own row, named by that split, never merged with the first
    assert sc.run_rows([(db, ""), (db, ", pool")]) == [row, (row[0] + ", pool", *row[1:])]


def test_the_research_log_table_is_what_the_script_prints(monkeypatch):
    sc = _script()
    monkeypatch.setattr("sys.argv", ["sample_cells.py", "--markdown"])
    out = io.StringIO()
    with redirect_stdout(out):
        sc.main()
    grid, runs = [t.splitlines() for t in out.getvalue().strip().split("\n\n")]
    assert len(grid) == 2 + 12  # header, rule, the grid's twelve sample-request cells
    assert len(runs) >= 2 + 6  # the demo's six per-example cells, and Fashion-MNIST's where run
    printed = grid + runs
    doc = (ROOT / "docs" / "research" / "sample-request-cells.md").read_text().splitlines()
    assert [line for line in doc if line.startswith("| ")] == [p for p in printed if p.startswith("| ")]

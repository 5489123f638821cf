"""`mumis report`: the paper's table layout and readable PNG figures."""
from mumis.bench.report import trace_row, write_report


def test_report_tables_have_the_paper_layout_and_figures_exist(tiny_db, tmp_path):
    db, _ = tiny_db
    path = write_report(db, tmp_path / "report", title="tiny")
    text = path.read_text()
    assert text.startswith("# tiny")
    assert "devices ['cpu']." in text.splitlines()[2]  # where the rows ran: their times mean nothing without it
    assert "## digits · small_cnn · full_class=1" in text
    assert "## digits · small_cnn · sequential(full_class)=1,7 (after request 2 of 2)" in text
    header = "| Method | FA | RA | TA | MIA | Avg. Gap | Time (s) | seeds |"
    assert header in text
    table = text.split(header)[1].strip().splitlines()
    assert table[1].startswith("| **retrain** | 0.00 |") and table[2].startswith("| original |")
    assert "| Gap w/o MIA |" in text and "LiRA" not in text  # no shadow models in this grid: no empty attack columns
    figures = sorted(p.name for p in (tmp_path / "report" / "figures").glob("*.png"))
    assert "sensitivity-digits-small_cnn.png" in figures and "delta-digits-small_cnn.png" in figures
    assert any(f.startswith("sequential-") for f in figures) and any(f.startswith("trace-") for f in figures)
    for name in figures:
        png = (tmp_path / "report" / "figures" / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
        assert f"figures/{name}" in text


def test_trace_figure_shows_the_default_run_whatever_finished_first():
    """A cell with "mumis (paper)" finished before "mumis" (a grid rerun after a default changed): the figure still
    shows the default-labelled run, lowest seed first; no MU-Mis trace, no figure."""
    rows = [{"method": "mumis (paper)", "method_name": "mumis", "seed": 0, "trace": [{"step": 0}]},
            {"method": "mumis", "method_name": "mumis", "seed": 2, "trace": [{"step": 0}]},
            {"method": "mumis", "method_name": "mumis", "seed": 1, "trace": [{"step": 0}]},
            {"method": "ft", "method_name": "ft", "seed": 0}]
    chosen = trace_row(rows)
    assert (chosen["method"], chosen["seed"]) == ("mumis", 1)
    assert trace_row(rows[:1])["method"] == "mumis (paper)"
    assert trace_row(rows[3:]) is None


def test_figures_leave_the_callers_matplotlib_alone(tmp_path):
    """Drawing a trace neither imports pyplot nor switches the backend of the process that called it."""
    import subprocess
    import sys
    code = (
        "import sys, matplotlib\n"
        "raw = lambda: dict.__getitem__(matplotlib.rcParams, 'backend')  # reading rcParams['backend'] resolves it\n"
        "before = raw()\n"
        "from mumis.bench.plots import plot_trace\n"
        "import mumis.bench.report\n"
        "rows = [{'step': 0, 'forget_acc': 90.0, 'loss': 1.0, 'target': 2.0, 'irrelevant': 1.0},\n"
        "        {'step': 1, 'forget_acc': 0.0, 'loss': 0.5}]\n"
        f"plot_trace(rows, 'fa_floor', {str(tmp_path / 'trace.png')!r})\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
        "assert raw() == before, (before, raw())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "trace.png").stat().st_size > 0


SHADOW_GRID = """
name = "shadows"
datasets = ["digits"]
models = ["small_cnn"]
seeds = [0]

[recipe]
epochs = 3
batch_size = 64

[[tasks]]
kind = "random"
target = 0.1

[[methods]]
name = "newton"

[suite]
relearn = false
sensitivity_samples = 32
shadows = 4
"""


def test_the_per_example_attack_runs_in_a_grid_and_reports_a_column_a_figure_and_a_table(tmp_path):
    import math

    from mumis.bench.grid import parse_grid
    from mumis.bench.runner import run_grid
    from mumis.bench.store import ResultStore
    from mumis.metrics import SuiteOptions

    assert "shadows" not in SuiteOptions().to_dict()  # grids without the attack keep their cell keys
    grid = parse_grid(SHADOW_GRID, "shadows.toml")
    run_grid(grid, tmp_path / "s.sqlite", tmp_path / "cache", show_progress=False)
    with ResultStore(tmp_path / "s.sqlite") as store:
        rows = {r["method"]: r for r in store.rows()}
    assert set(rows) == {"retrain", "original", "newton"}
    for r in rows.values():
        assert 0.0 <= r["lira_auc"] <= 1.0 and 0.0 <= r["lira_tpr_1pct"] <= 1.0
        assert len(r["lira_scores"]) == r["forget_size"] and all(math.isfinite(v) for v in r["lira_scores"])
    assert rows["original"]["lira_scores"] != rows["retrain"]["lira_scores"]
    assert len(list((tmp_path / "cache" / "models").glob("shadow*-digits-*.safetensors"))) == 4
    report = write_report(tmp_path / "s.sqlite", tmp_path / "report").read_text()
    assert "| LiRA AUC | LiRA TPR@1% |" in report
    assert "## Per-example attack across the grid" in report
    line = next(ln for ln in report.splitlines() if ln.startswith("| digits · small_cnn · random"))
    assert line.count("|") == 5 and f"{rows['retrain']['lira_auc']:.3f}" in line
    assert (tmp_path / "report" / "figures" / "per-example-digits-small_cnn-random0.1.png").stat().st_size > 0


def test_a_cell_measured_on_two_splits_is_two_cells_in_the_report(run_synthetic_grid, tmp_path, capsys):
    from rich.console import Console

    from mumis.bench.report import print_gap_summary
    from mumis.bench.store import ResultStore

    db = tmp_path / "both.sqlite"
    run_synthetic_grid(db, tmp_path / "cache")
    run_synthetic_grid(db, tmp_path / "cache", holdout=0.2)
    with ResultStore(db) as store:
        rows = store.rows()
    assert sorted(str(r.get("holdout")) for r in rows) == ["0.2"] * 3 + ["None"] * 3
    report = write_report(db, tmp_path / "report").read_text()
    headings = [ln for ln in report.splitlines() if ln.startswith("## synthetic")]
    assert sorted(headings) == ["## synthetic · small_cnn · random=0.1", "## synthetic · small_cnn · random=0.1 · holdout=0.2"]
    assert report.count("| original |") == 2 * 2  # two tables per cell, one cell per split: never averaged together
    print_gap_summary(db, Console(width=200, file=None))
    printed = capsys.readouterr().out
    assert "holdout=0.2" in printed

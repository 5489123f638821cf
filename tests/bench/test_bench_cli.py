"""`mumis bench` and `mumis report` from the command line."""
from typer.testing import CliRunner

from mumis.cli import app

runner = CliRunner()


def test_bench_then_report_from_the_cli(tmp_path, tiny_db, tiny_grid_text):
    _, cache = tiny_db
    grid = tmp_path / "tiny.toml"
    grid.write_text(tiny_grid_text)
    db = tmp_path / "out" / "tiny.sqlite"
    args = ["bench", str(grid), "--db", str(db), "--cache-dir", str(cache), "--no-progress"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "8 cells run, 0 already done, 0 failed" in first.output and "Avg. Gap to retrain" in first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "0 cells run, 8 already done" in again.output
    shown = runner.invoke(app, ["report", str(db), "--out", str(tmp_path / "rep")])
    assert shown.exit_code == 0, shown.output
    assert (tmp_path / "rep" / "report.md").is_file()


def test_bench_and_report_refuse_bad_input(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('datasets = ["digits"]\nmodels = ["small_cnn"]\ntasks = ["random"]\nmethods = [{name = "nope"}]')
    result = runner.invoke(app, ["bench", str(bad), "--db", str(tmp_path / "x.sqlite")])
    assert result.exit_code == 2 and "unknown method" in " ".join(result.output.split())
    assert not (tmp_path / "x.sqlite").exists()
    result = runner.invoke(app, ["bench", "no-such-preset"])
    assert result.exit_code == 2 and "presets: cifar100_full, demo, fmnist, paper, paper_fmnist, paper_vit" in " ".join(result.output.split())
    result = runner.invoke(app, ["report", str(tmp_path / "missing.sqlite")])
    assert result.exit_code == 2 and "does not exist" in " ".join(result.output.split())  # rich wraps long paths

"""`--executor ray` on a local Ray instance: same rows as the local executor, failures recorded, resumable."""
import pytest

from mumis.bench.grid import parse_grid
from mumis.bench.runner import run_grid
from mumis.bench.store import ResultStore

ray = pytest.importorskip("ray", reason="Ray executor tests need `pip install 'mumis[ray]'`")

FAILING = """
[[methods]]
name = "ga"
label = "ga-broken"
options = { lr = -1.0 }
"""


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_grid_matches_local_records_failures_and_resumes(local_ray, tiny_grid_text, tiny_db, tmp_path):
    local_db, cache = tiny_db  # the same grid run by the local executor, references cached
    spec = parse_grid(tiny_grid_text + FAILING, "tiny.toml")
    db = tmp_path / "ray.sqlite"
    outcome = run_grid(spec, db, cache, show_progress=False, executor="ray")
    broken = [c for c in spec.cells() if c.label == "ga-broken"]
    assert outcome.finished == len(spec.cells()) - len(broken) and len(outcome.failed) == len(broken) == 2
    with ResultStore(db) as store:
        failures = store.failures()
        assert {f["label"] for f in failures} == {"ga-broken"}
        assert all("ga.py" in f["traceback"] and "Invalid learning rate" in f["error"] for f in failures)  # the worker's traceback
        ray_rows = {(r["cell_key"], r["step"]): r for r in store.rows()}
    with ResultStore(local_db) as store:
        local_rows = {(r["cell_key"], r["step"]): r for r in store.rows()}
    assert set(ray_rows) == set(local_rows)  # every cell of the local run, one row per cell and step
    for key, row in local_rows.items():  # deterministic CPU runs: the workers computed the same numbers
        for metric in ("fa", "ra", "ta", "mia", "avg_gap"):
            assert ray_rows[key][metric] == pytest.approx(row[metric]), (row["method"], metric)

    again = run_grid(spec, db, cache, show_progress=False, executor="ray")  # only the failed cells are retried
    assert again.skipped == len(spec.cells()) - 2 and again.finished == 0 and len(again.failed) == 2


def test_unknown_executor_is_refused(tiny_grid, tmp_path):
    from mumis.errors import MumisError

    with pytest.raises(MumisError, match="unknown executor"):
        run_grid(tiny_grid, tmp_path / "x.sqlite", tmp_path, show_progress=False, executor="dask")

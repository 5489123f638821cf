"""A tiny grid (digits, 2 epochs, one seed) shared by the benchmark tests."""
import pytest

from mumis.bench.grid import parse_grid

TINY_GRID = """
name = "tiny"
datasets = ["digits"]
models = ["small_cnn"]
seeds = [0]

[recipe]
epochs = 2
batch_size = 64

[[tasks]]
kind = "full_class"
target = 1

[[tasks]]
kind = "sequential"
sequence = [1, 7]

[[methods]]
name = "ga"

[[methods]]
name = "mumis"
label = "mumis-fast"
options = { max_steps = 20 }

[suite]
relearn_max_steps = 20
sensitivity_samples = 64
"""


@pytest.fixture
def tiny_grid_text():
    return TINY_GRID


@pytest.fixture
def tiny_grid():
    return parse_grid(TINY_GRID, "tiny.toml")


@pytest.fixture(scope="session")
def tiny_db(tmp_path_factory):
    """The tiny grid run once to completion: (database path, model cache)."""
    from mumis.bench.runner import run_grid

    root = tmp_path_factory.mktemp("tinygrid")
    run_grid(parse_grid(TINY_GRID, "tiny.toml"), root / "tiny.sqlite", root / "cache", show_progress=False)
    return root / "tiny.sqlite", root / "cache"


SYNTHETIC_GRID = """{holdout}
name = "synthetic"
datasets = ["synthetic"]
models = ["small_cnn"]
[recipe]
epochs = 1
batch_size = 32
[[tasks]]
kind = "random"
target = 0.1
[[methods]]
name = "ga"
options = {{ epochs = 1 }}
[suite]
relearn_max_steps = 2
sensitivity_samples = 8
"""


@pytest.fixture
def run_synthetic_grid(marked_bundle, monkeypatch):
    """Run a one-cell grid on the marked synthetic bundle (an official test set of 9s, a pool of 1s), optionally with
    ``holdout``: ``run(db, cache, holdout=None) -> GridOutcome``."""
    from mumis.bench import runner

    monkeypatch.setattr(runner, "load_dataset", lambda name, data_dir=None: marked_bundle)

    def run(db, cache, holdout=None):
        spec = parse_grid(SYNTHETIC_GRID.format(holdout="" if holdout is None else f"holdout = {holdout}"))
        return runner.run_grid(spec, db, cache, show_progress=False)
    return run

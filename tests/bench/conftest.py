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

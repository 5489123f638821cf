"""benchmarks/heldout_shift.py's cell: the held-out data comes from the training pool, never from the official test
set, so D_f, D_r and held-out data share one distribution."""
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import heldout_shift  # noqa: E402


def test_the_heldout_set_is_a_stratified_share_of_the_training_pool(marked_bundle):
    cell = heldout_shift.training_pool_cell(marked_bundle, seed=0)
    assert cell.split.test_from == "holdout"
    assert len(np.intersect1d(cell.split.train, cell.split.test)) == 0
    assert len(cell.split.train) + len(cell.split.test) == 200
    assert (cell.test.images == cell.train.images[0]).all()  # no official test image (value 9) anywhere
    assert np.bincount(cell.test.labels.numpy()).tolist() == [10, 10, 10, 10]  # 20 % of each class's 50
    assert len(cell.task.forget) == 16 and len(cell.task.retain) == 144  # a random 10 % of the 160 kept
    assert len(cell.task.heldout) == 20

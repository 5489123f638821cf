"""The in-process executor: which split a grid's cells are measured on."""
import sqlite3

import pytest

from mumis.data import make_split


@pytest.mark.parametrize("holdout", [None, 0.2])
def test_a_grid_measures_on_the_official_test_set_or_on_its_holdout_share_of_the_pool(
        holdout, marked_bundle, run_synthetic_grid, tmp_path):
    outcome = run_synthetic_grid(tmp_path / "r.sqlite", tmp_path / "cache", holdout)
    assert outcome.failed == [] and outcome.finished == 3
    expected = make_split(marked_bundle, 0) if holdout is None else make_split(marked_bundle, 0, holdout, from_pool=True)
    with sqlite3.connect(tmp_path / "r.sqlite") as db:
        assert {h for (h,) in db.execute("SELECT split_hash FROM rows")} == {expected.sha256}
    assert expected.test_from == ("official" if holdout is None else "holdout")
    if holdout is not None:  # 20 % of each class of the pool held out; the official test images are never read
        assert len(expected.test) == 40 and len(expected.train) == 160
        assert [p.name.split("-")[2] for p in (tmp_path / "cache" / "splits").iterdir()] == ["holdout0.2"]

"""run_experiment on a cell the caller has already built: the same rows, and a cell of another config refused."""
import pytest

from mumis.bench import ExperimentConfig, run_experiment
from mumis.bench.experiment import cell_data
from mumis.training import TrainRecipe

CFG = ExperimentConfig(dataset="digits", model="small_cnn", task="full_class", target=1, seed=0,
                       recipe=TrainRecipe(epochs=1), methods=(("ga", (("epochs", 1),)),))


def test_a_prebuilt_cell_gives_the_rows_of_a_cell_built_inside(tmp_path):
    cache = tmp_path / "cache"
    inside = run_experiment(CFG, tmp_path / "a", cache_dir=cache, show_progress=False)
    given = run_experiment(CFG, tmp_path / "b", cache_dir=cache, show_progress=False,
                           cell=cell_data(CFG.dataset, CFG.task, CFG.target, CFG.seed, cache))
    assert [r.method for r in given] == [r.method for r in inside] == ["retrain", "original", "ga"]
    for a, b in zip(inside, given):
        assert (a.split_hash, a.forget_hash) == (b.split_hash, b.forget_hash)
        assert (a.fa, a.ra, a.ta) == (b.fa, b.ra, b.ta)
    assert (tmp_path / "b" / "forget.json").read_bytes() == (tmp_path / "a" / "forget.json").read_bytes()


@pytest.mark.parametrize("other", [dict(seed=1), dict(target=2), dict(task="random", target=0.1)])
def test_a_cell_of_another_config_is_refused(tmp_path, other):
    cell = cell_data(CFG.dataset, other.get("task", CFG.task), other.get("target", CFG.target),
                     other.get("seed", CFG.seed), tmp_path)
    with pytest.raises(ValueError, match="build it with cell_data for this config"):
        run_experiment(CFG, tmp_path / "out", cache_dir=tmp_path, show_progress=False, cell=cell)
    assert not (tmp_path / "out").exists()


def test_persisted_splits_of_other_holdout_shares_do_not_share_a_file(tmp_path, digits_bundle):
    from mumis.bench.experiment import persisted_split
    first = persisted_split(digits_bundle, 0, tmp_path, 0.2)
    other = persisted_split(digits_bundle, 0, tmp_path, 0.3)
    again = persisted_split(digits_bundle, 0, tmp_path, 0.2)
    assert round(len(other.test) / len(digits_bundle.train), 2) == 0.3 and other.sha256 != first.sha256
    assert again.sha256 == first.sha256 and len(list((tmp_path / "splits").iterdir())) == 2

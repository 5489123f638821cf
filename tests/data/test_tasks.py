"""Task kinds: super-class views, forget sets per step, cumulative sequential views."""
import numpy as np
import pytest

from mumis.data import ForgetSet, TaskSpec, full_class, load_dataset, make_split, merge_requests, parse_task
from mumis.data.superclass import MNIST_SUPERCLASSES, coarsen
from mumis.errors import MumisError


@pytest.fixture(scope="module")
def digits_views():
    bundle = load_dataset("digits")
    split = make_split(bundle, seed=0)
    train, test = split.materialise(bundle)
    return split, train, test


def test_coarsen_maps_fine_to_super_and_keeps_fine(digits_views):
    _, train, _ = digits_views
    coarse = coarsen(train, MNIST_SUPERCLASSES)
    assert coarse.classes == ("round", "straight", "curved")
    assert coarse.fine_classes == train.classes
    assert (coarse.fine_labels == train.labels).all()
    for k, fine in enumerate(MNIST_SUPERCLASSES.values()):
        assert set(train.labels[coarse.labels == k].tolist()) == set(fine)
    with pytest.raises(ValueError, match="cover classes"):
        coarsen(train, {"a": (0, 1), "b": (2,)})


def test_mnist5k_super_is_registered_and_sub_class_task_runs_on_it():
    assert TaskSpec("sub_class", 3).dataset_for("mnist5k") == "mnist5k_super"
    assert TaskSpec("sub_class", 3).dataset_for("cifar20") == "cifar20"
    assert TaskSpec("full_class", 3).dataset_for("mnist5k") == "mnist5k"
    bundle = load_dataset("mnist5k_super")
    split = make_split(bundle, seed=0)
    train, test = split.materialise(bundle)
    (step,) = TaskSpec("sub_class", 3).steps(train, test, split, seed=0)
    assert (step.evaluation.forget.fine_labels == 3).all() and (step.evaluation.forget.labels == 2).all()
    assert (step.evaluation.retain.fine_labels != 3).all()
    assert (step.evaluation.retain.labels == 2).any()  # the super-class stays a label
    assert (step.evaluation.test_forgotten.fine_labels == 3).all()


def test_single_request_task_has_one_step_whose_request_is_its_evaluation(digits_views):
    split, train, test = digits_views
    for spec in (TaskSpec("full_class", 1), TaskSpec("random", 0.1)):
        (step,) = spec.steps(train, test, split, seed=0)
        assert step.index == 1
        assert len(step.request.forget) == len(step.evaluation.forget)
        assert step.request.forget_set.sha256 == step.evaluation.forget_set.sha256
    (step,) = TaskSpec("random", 0.1).steps(train, test, split, seed=0)
    assert len(step.evaluation.forget) == pytest.approx(0.1 * len(train), abs=10)
    assert step.evaluation.test_forgotten is None


def test_sequential_steps_are_cumulative(digits_views):
    split, train, test = digits_views
    steps = TaskSpec("sequential", sequence=(1, 7, 4)).steps(train, test, split, seed=0)
    assert [s.index for s in steps] == [1, 2, 3]
    sizes = [int((train.labels == c).sum()) for c in (1, 7, 4)]
    assert [len(s.request.forget) for s in steps] == sizes
    assert [len(s.evaluation.forget) for s in steps] == list(np.cumsum(sizes))
    last = steps[-1].evaluation
    assert set(last.forget.labels.tolist()) == {1, 7, 4}
    assert not np.isin(last.retain.labels.numpy(), [1, 7, 4]).any()
    assert not np.isin(last.test.labels.numpy(), [1, 7, 4]).any()  # TA excludes every forgotten class
    assert set(last.test_forgotten.labels.tolist()) == {1, 7, 4}
    # the request a method receives at step 3 is class 4 only, while D_r already excludes 1 and 7
    assert set(steps[2].request.forget.labels.tolist()) == {4}
    assert not np.isin(steps[2].request.retain.labels.numpy(), [1, 7, 4]).any()


def test_merged_forget_set_round_trips_and_old_files_keep_their_hash(digits_views, tmp_path):
    split, train, _ = digits_views
    one = full_class(train, split, 1)
    assert "forgotten_classes" not in one.content()  # unset later fields stay out of the hash
    merged = merge_requests([one, full_class(train, split, 7)])
    merged.save(tmp_path / "m.json")
    back = ForgetSet.load(tmp_path / "m.json")
    assert back.forgotten_classes == [1, 7] and back.sha256 == merged.sha256
    assert merge_requests([one]) is one


def test_bad_task_specs_are_refused():
    with pytest.raises(MumisError, match="unknown task kind"):
        TaskSpec("everything")
    with pytest.raises(MumisError, match="non-empty"):
        TaskSpec("sequential")
    with pytest.raises(MumisError, match="each class once"):
        TaskSpec("sequential", sequence=(1, 1))
    with pytest.raises(MumisError, match="unknown task key"):
        parse_task({"kind": "random", "fraction": 0.1})
    assert parse_task("random").target == 0.1
    assert parse_task({"kind": "sequential", "sequence": [3, 7]}).label == "sequential(full_class)=3,7"

import json

import numpy as np
import pytest

from mumis.data import (
    ForgetSet,
    Split,
    build_task,
    explicit_ids,
    full_class,
    make_split,
    most_memorised,
    random_fraction,
    sub_class,
)
from mumis.errors import MumisError


def test_split_is_deterministic_and_disjoint(digits_bundle):
    a, b = make_split(digits_bundle, seed=0), make_split(digits_bundle, seed=0)
    assert a.sha256 == b.sha256
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
    assert not set(a.train) & set(a.test)
    assert len(a.train) + len(a.test) == len(digits_bundle.train)
    assert make_split(digits_bundle, seed=1).sha256 != a.sha256


def test_holdout_is_stratified(digits_bundle):
    split = make_split(digits_bundle, seed=0, holdout_fraction=0.2)
    labels = digits_bundle.train.labels.numpy()
    share = np.bincount(labels[split.test], minlength=10) / np.bincount(labels, minlength=10)
    assert np.all(np.abs(share - 0.2) < 0.01)


def test_from_pool_holds_out_training_images_even_with_an_official_test_set(marked_bundle):
    bundle = marked_bundle
    official = make_split(bundle, seed=0)
    assert official.test_from == "official" and len(official.train) == 200 and len(official.test) == 40
    split = make_split(bundle, seed=0, holdout_fraction=0.25, from_pool=True)
    assert split.test_from == "holdout" and split.sha256 != official.sha256
    assert not set(split.train) & set(split.test) and len(split.train) + len(split.test) == 200
    train, test = split.materialise(bundle)
    assert (test.images == 1).all()  # training-pool images only, never an official test image (value 9)
    assert np.bincount(test.labels.numpy()).tolist() == [12, 12, 12, 12]  # round(0.25 × 50) of each class
    with pytest.raises(MumisError, match="holdout_fraction must be in"):
        make_split(bundle, seed=0, holdout_fraction=1.0, from_pool=True)


def test_split_roundtrip_and_tamper_detection(digits_bundle, tmp_path):
    split = make_split(digits_bundle, seed=0)
    path = split.save(tmp_path / "split.json")
    assert Split.load(path).sha256 == split.sha256
    payload = json.loads(path.read_text())
    payload["train"][0], payload["test"][0] = payload["test"][0], payload["train"][0]
    path.write_text(json.dumps(payload))
    with pytest.raises(MumisError, match="modified"):
        Split.load(path)


def test_split_refuses_other_data(digits_bundle):
    from mumis.data import load_dataset

    split = make_split(digits_bundle, seed=0)
    with pytest.raises(MumisError, match="made for dataset"):
        split.materialise(load_dataset("mnist5k"))


def test_forget_set_must_match_split(digits_bundle, tmp_path):
    split0, split1 = make_split(digits_bundle, seed=0), make_split(digits_bundle, seed=1)
    train0, _ = split0.materialise(digits_bundle)
    forget = full_class(train0, split0, 4)
    forget.save(tmp_path / "f.json")
    assert ForgetSet.load(tmp_path / "f.json").sha256 == forget.sha256
    with pytest.raises(MumisError, match="forget set was drawn from split"):
        build_task(digits_bundle, split1, forget)


def test_full_class_builder_and_task_views(digits_task):
    assert (digits_task.forget.labels == 1).all()
    assert (digits_task.retain.labels != 1).all()
    assert (digits_task.test.labels != 1).all()
    assert (digits_task.test_forgotten.labels == 1).all()


def test_forget_class_out_of_range(digits_bundle, digits_split):
    train, _ = digits_split.materialise(digits_bundle)
    with pytest.raises(MumisError, match="out of range"):
        full_class(train, digits_split, 10)


def test_random_fraction_stratified(digits_bundle, digits_split):
    train, _ = digits_split.materialise(digits_bundle)
    fs = random_fraction(train, digits_split, 0.1, seed=0, stratified=True)
    counts = np.bincount(train.labels.numpy()[fs.indices], minlength=10)
    assert counts.min() >= 13 and counts.max() <= 15
    plain = random_fraction(train, digits_split, 0.1, seed=0, stratified=False)
    assert abs(len(plain.indices) - round(0.1 * len(train))) == 0
    assert random_fraction(train, digits_split, 0.1, seed=0).sha256 == fs.sha256


def test_empty_requests_are_errors(digits_bundle, digits_split):
    train, _ = digits_split.materialise(digits_bundle)
    with pytest.raises(MumisError, match="empty"):
        random_fraction(train, digits_split, 0.0001)
    with pytest.raises(MumisError, match="empty"):
        explicit_ids(digits_split, [])


def test_explicit_ids_map_pool_ids_to_train_positions(digits_split):
    pool_ids = digits_split.train[[5, 7, 9]]
    fs = explicit_ids(digits_split, pool_ids)
    assert list(fs.indices) == [5, 7, 9]
    with pytest.raises(MumisError, match="not in this split's training set"):
        explicit_ids(digits_split, [int(digits_split.test[0])])


def test_sub_class_needs_fine_labels(digits_bundle, digits_split):
    train, _ = digits_split.materialise(digits_bundle)
    with pytest.raises(MumisError, match="no fine labels"):
        sub_class(train, digits_split, 0)


def test_most_memorised_takes_each_classs_highest_scores(digits_bundle, digits_split):
    train, _ = digits_split.materialise(digits_bundle)
    labels = train.labels.numpy()
    scores = np.random.default_rng(0).normal(size=len(train))
    fs = most_memorised(train, digits_split, scores, 0.1)
    assert fs.request == "memorised" and fs.params["fraction"] == 0.1
    for c in range(10):
        group = np.flatnonzero(labels == c)
        chosen = np.intersect1d(fs.indices, group)
        assert len(chosen) == round(0.1 * len(group))
        assert scores[chosen].min() > scores[np.setdiff1d(group, chosen)].max()
    assert fs.sha256 != most_memorised(train, digits_split, -scores, 0.1).sha256
    with pytest.raises(MumisError, match="one per training sample"):
        most_memorised(train, digits_split, scores[:-1], 0.1)
    with pytest.raises(MumisError, match="one per training sample"):
        most_memorised(train, digits_split, np.where(np.arange(len(train)) == 3, np.nan, scores), 0.1)

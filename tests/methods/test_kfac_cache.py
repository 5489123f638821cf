"""methods/kfac_cache.py: a cached curvature is the computed one bit for bit, is found only for the same model, data
and settings, never stands in for a damaged file, and the folder stays within its size; ``newton`` with a cache
folder hands back the model it hands back without one."""
import copy
import os

import pytest
import torch
from torch import nn

import mumis.methods.kfac as kfac
from mumis.data import ImageDataset
from mumis.methods import get_method, grant, run_method
from mumis.methods.kfac import fitted_inverse, weight_layers
from mumis.methods.kfac_cache import CurvatureCache, curvature_key


def _images(n: int, seed: int) -> ImageDataset:
    g = torch.Generator().manual_seed(seed)
    return ImageDataset(torch.randint(0, 256, (n, 1, 6, 6), dtype=torch.uint8, generator=g),
                        torch.randint(0, 3, (n,), generator=g), ("a", "b", "c"), (0.5,), (0.25,))


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3, bias=False)).eval()


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(x, y) for m in a for x, y in zip(a[m], b[m]))


def _refuse_to_compute(monkeypatch):
    """From here on, computing a curvature fails: what follows must come from the cache."""
    def refuse(*args, **kwargs):
        raise AssertionError("the curvature was computed again")
    monkeypatch.setattr(kfac, "kfac_factors", refuse)
    monkeypatch.setattr(kfac, "corrected_eigenvalues", refuse)


@pytest.mark.parametrize("corrected", [False, True])
def test_a_cached_curvature_is_the_computed_one_bit_for_bit(tmp_path, monkeypatch, corrected):
    model, data, cache = _model(), _images(40, 1), CurvatureCache(tmp_path)
    computed = fitted_inverse(model, data, 1e-3, corrected)  # no cache: nothing written
    assert list(tmp_path.iterdir()) == []
    stored = fitted_inverse(model, data, 1e-3, corrected, cache)
    assert _same(computed.eigen, stored.eigen) and len(list(tmp_path.iterdir())) == 1
    _refuse_to_compute(monkeypatch)
    again = fitted_inverse(model, data, 0.5, corrected, cache)  # the damping is applied, not stored
    assert _same(computed.eigen, again.eigen) and again.damping == 0.5
    grads = {m: torch.randn_like(kfac.layer_matrix(m)) for m in weight_layers(model)}
    computed.damping = 0.5
    assert all(torch.equal(again(grads)[m], computed(grads)[m]) for m in grads)


def test_the_key_follows_every_weight_buffer_sample_and_setting():
    model, data = _model(), _images(40, 1)
    key = curvature_key(model, data, True, 100)
    assert key == curvature_key(copy.deepcopy(model), _images(40, 1), True, 100)
    moved = copy.deepcopy(model)
    with torch.no_grad():
        moved[3].weight[0, 0] += 1e-7
    bn = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 3)).eval()
    bn_moved = copy.deepcopy(bn)
    bn_moved[1].running_mean += 1e-3  # a buffer, not a parameter
    relabelled = _images(40, 1)
    relabelled.labels[0] = (relabelled.labels[0] + 1) % 3
    others = {curvature_key(moved, data, True, 100), curvature_key(model, _images(40, 2), True, 100),
              curvature_key(model, relabelled, True, 100), curvature_key(model, data, False, 100),
              curvature_key(model, data, True, 50), curvature_key(bn, data, True, 100),
              curvature_key(bn_moved, data, True, 100)}
    assert key not in others and len(others) == 7


def test_another_model_misses_and_a_damaged_file_is_computed_again(tmp_path):
    data, cache = _images(40, 1), CurvatureCache(tmp_path)
    first, second = _model(0), _model(1)
    fitted_inverse(first, data, 1e-3, True, cache)
    assert not _same(fitted_inverse(second, data, 1e-3, True, cache).eigen,
                     fitted_inverse(first, data, 1e-3, True, cache).eigen)
    assert len(list(tmp_path.iterdir())) == 2
    path = cache.path(curvature_key(first, data, True, kfac.CURVATURE_BATCH))
    path.write_bytes(path.read_bytes()[:100])  # cut short
    assert cache.load(curvature_key(first, data, True, kfac.CURVATURE_BATCH), weight_layers(first)) is None
    rewritten = fitted_inverse(first, data, 1e-3, True, cache)
    assert _same(rewritten.eigen, fitted_inverse(first, data, 1e-3, True).eigen)
    assert cache.load(curvature_key(first, data, True, kfac.CURVATURE_BATCH), weight_layers(first)) is not None


def test_the_folder_keeps_the_most_recently_used_files_within_its_size(tmp_path):
    data = _images(20, 1)
    size = None
    for seed in range(3):
        fitted_inverse(_model(seed), data, 1e-3, False, CurvatureCache(tmp_path))
        newest = max(tmp_path.iterdir(), key=lambda p: p.stat().st_mtime_ns)
        size = newest.stat().st_size
        for i, p in enumerate(sorted(tmp_path.iterdir(), key=lambda p: p != newest)):
            os.utime(p, (1e9 - i, 1e9 - i))  # the newest file is the most recent, the others older in turn
    assert len(list(tmp_path.iterdir())) == 3
    key0 = curvature_key(_model(0), data, False, kfac.CURVATURE_BATCH)
    CurvatureCache(tmp_path).load(key0, weight_layers(_model(0)))  # used now: the most recent
    cache = CurvatureCache(tmp_path, max_bytes=2 * size)
    fitted_inverse(_model(3), data, 1e-3, False, cache)
    kept = {p.name for p in tmp_path.iterdir()}
    assert kept == {cache.path(key0).name, cache.path(curvature_key(_model(3), data, False, kfac.CURVATURE_BATCH)).name}
    tiny = CurvatureCache(tmp_path, max_bytes=1)  # the file just written always stays
    fitted_inverse(_model(4), data, 1e-3, False, tiny)
    assert [p.name for p in tmp_path.iterdir()] == [tiny.path(curvature_key(_model(4), data, False,
                                                                             kfac.CURVATURE_BATCH)).name]


def test_newton_with_a_cache_folder_hands_back_the_same_model(tmp_path, digits_model, digits_task, monkeypatch):
    forget = digits_task.forget
    n = len(digits_task.retain) + len(forget)
    plain = get_method("newton", layers="all")
    cached = get_method("newton", layers="all", curvature_cache=str(tmp_path))
    expected = run_method(plain, copy.deepcopy(digits_model), grant(plain, forget=forget, heldout=digits_task.test,
                                                                    train_size=n), 10)
    first = run_method(cached, copy.deepcopy(digits_model), grant(cached, forget=forget, heldout=digits_task.test,
                                                                  train_size=n), 10)
    _refuse_to_compute(monkeypatch)
    second = run_method(cached, copy.deepcopy(digits_model), grant(cached, forget=forget, heldout=digits_task.test,
                                                                   train_size=n), 10)
    assert (expected.info["curvature_from_cache"], first.info["curvature_from_cache"],
            second.info["curvature_from_cache"]) == (False, False, True)
    for result in (first, second):
        assert result.stop_reason == expected.stop_reason and result.info["scan"] == expected.info["scan"]
        assert all(torch.equal(v, result.model.state_dict()[k]) for k, v in expected.model.state_dict().items())
    assert len(list(tmp_path.iterdir())) == 1

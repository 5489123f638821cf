import json

import pytest
import torch

from mumis.errors import MumisError
from mumis.models import create_model
from mumis.training import (
    CheckpointMeta,
    TrainRecipe,
    fit,
    load_checkpoint,
    load_weights,
    save_checkpoint,
    sidecar_path,
)


def _meta(split, **kw):
    return CheckpointMeta(architecture="small_cnn", num_classes=10, in_channels=1, dataset="digits",
                          classes=[str(i) for i in range(10)], split_sha256=split.sha256, role="original", **kw)


def test_fit_is_deterministic_and_learns(digits_bundle, digits_split):
    train, test = digits_split.materialise(digits_bundle)
    states = []
    for _ in range(2):
        torch.manual_seed(0)
        model = create_model("small_cnn", 10, 1)
        fit(model, train, TrainRecipe(epochs=2, batch_size=64), seed=3, show_progress=False)
        states.append(model.state_dict())
    for k in states[0]:
        assert torch.equal(states[0][k], states[1][k]), k
    from mumis.metrics import accuracy

    assert accuracy(model, test) > 80


def test_checkpoint_roundtrip(tmp_path, digits_model, digits_split):
    path = save_checkpoint(tmp_path / "m.safetensors", digits_model, _meta(digits_split, accuracies={"ta": 97.0}))
    model, meta = load_checkpoint(path)
    assert meta.split_sha256 == digits_split.sha256 and meta.accuracies == {"ta": 97.0}
    for k, v in digits_model.state_dict().items():
        assert torch.equal(v, model.state_dict()[k])
    assert json.loads(sidecar_path(path).read_text())["architecture"] == "small_cnn"
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def test_strict_load_rejects_other_architectures(tmp_path, digits_model, digits_split):
    path = save_checkpoint(tmp_path / "m.safetensors", digits_model, _meta(digits_split))
    with pytest.raises(MumisError, match="does not match the model"):
        load_weights(create_model("resnet_small", 10, 1), path)
    with pytest.raises(MumisError, match="shape mismatch"):
        load_weights(create_model("small_cnn", 7, 1), path)


def test_garbage_and_pickles_are_refused(tmp_path, digits_model, digits_split):
    bad = tmp_path / "bad.safetensors"
    torch.save(digits_model.state_dict(), bad)  # a pickle, not safetensors
    sidecar_path(bad).write_text(json.dumps(_meta(digits_split).__dict__))
    with pytest.raises(MumisError, match="not a readable safetensors file"):
        load_checkpoint(bad)
    with pytest.raises(MumisError, match="has no sidecar"):
        (tmp_path / "lonely.safetensors").write_bytes(b"x")
        load_checkpoint(tmp_path / "lonely.safetensors")
    with pytest.raises(MumisError, match="end in .safetensors"):
        save_checkpoint(tmp_path / "m.pt", digits_model, _meta(digits_split))

"""The command line end to end on tiny real data, and its answers to bad input."""
import hashlib
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from mumis.cli import app

runner = CliRunner()
ROW_KEYS = {"method", "task", "dataset", "model", "seed", "fa", "ra", "ta", "mia", "avg_gap", "wall_s"}


def _run(*args, ok=True):
    result = runner.invoke(app, [str(a) for a in args])
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """split + forget set + original + retrain checkpoints for digits, made through the CLI."""
    d = tmp_path_factory.mktemp("cli")
    _run("split", "digits", "--out", d, "--forget-class", 2)
    for name, extra in (("original", []), ("retrain", ["--forget", d / "forget.json"])):
        _run("train", "--split", d / "split.json", "--out", d / f"{name}.safetensors", "--epochs", 3, "--batch-size", 64, *extra)
    return d


def test_demo_tiny_preset(tmp_path):
    out = tmp_path / "demo"
    result = _run("demo", "--preset", "tiny", "--out", out, "--cache-dir", tmp_path / "cache", "--no-progress")
    assert "retrain" in result.output and "mumis" in result.output
    rows = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in rows] == ["retrain", "original", "mumis"]
    for r in rows:
        assert ROW_KEYS <= set(r)
        assert r["split_hash"] and r["forget_hash"] and r["config_hash"] and r["versions"]["torch"]
        assert r["versions"]["device"] == "cpu"  # the tests pin MUMIS_DEVICE=cpu; a GPU row names the card
    retrain, original, mumis = rows
    assert retrain["avg_gap"] == 0 and retrain["fa"] == 0
    assert original["fa"] > 90
    # reference rows also say where their model (and its wall time) was trained; a method row has no such model
    assert retrain["versions"]["trained_on"] == original["versions"]["trained_on"] == "cpu"
    assert "trained_on" not in mumis["versions"]
    assert mumis["fa"] < original["fa"] and mumis["extra"]["data_read"] == ["forget"]
    assert (out / "trace-mumis.png").stat().st_size > 10_000
    # a second run into the same folder must be asked for; it reuses the cached models (same recorded training time)
    refused = _run("demo", "--preset", "tiny", "--out", out, "--cache-dir", tmp_path / "cache", "--no-progress", ok=False)
    assert refused.exit_code == 2 and "--overwrite" in refused.output
    _run("demo", "--preset", "tiny", "--out", out, "--cache-dir", tmp_path / "cache", "--no-progress", "--overwrite")
    again = json.loads((out / "results.json").read_text())
    assert again[0]["wall_s"] == retrain["wall_s"] and again[1]["wall_s"] == original["wall_s"]


def test_forget_eval_and_the_original_checkpoint_is_untouched(workdir):
    ckpt = workdir / "original.safetensors"
    before = (_sha(ckpt), _sha(ckpt.with_suffix(".json")))
    out = workdir / "unlearned.safetensors"
    result = _run("forget", ckpt, "--split", workdir / "split.json", "--forget", workdir / "forget.json",
                  "--out", out, "--trace", "--option", "max_steps=20", "--option", "fa_floor=10")
    assert "read ['forget'] data" in result.output
    assert (_sha(ckpt), _sha(ckpt.with_suffix(".json"))) == before
    assert out.is_file() and out.with_suffix(".trace.png").is_file()
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["role"] == "unlearned" and meta["method"]["name"] == "mumis" and meta["device"] == "cpu"
    trained = json.loads(ckpt.with_suffix(".json").read_text())
    assert trained["accuracies"]["train"] > 90 and trained["accuracies"]["test"] > 80 and trained["device"] == "cpu"
    table = _run("eval", ckpt, out, "--split", workdir / "split.json", "--forget", workdir / "forget.json",
                 "--reference", workdir / "retrain.safetensors").output
    assert "unlearned" in table and "Avg. Gap" in table


def test_forget_refuses_to_overwrite_its_input(workdir):
    ckpt = workdir / "original.safetensors"
    result = _run("forget", ckpt, "--split", workdir / "split.json", "--forget", workdir / "forget.json",
                  "--out", ckpt, ok=False)
    assert result.exit_code == 2 and "never overwrites" in " ".join(result.output.split())


@pytest.mark.parametrize("args,message", [
    (["split", "nope", "--out", "{d}/x"], "unknown dataset 'nope'"),
    (["split", "digits", "--out", "{d}/x", "--forget-class", "12"], "out of range"),
    (["split", "digits", "--out", "{d}/x", "--forget-random", "0.0001"], "forget set is empty"),
    (["split", "digits", "--out", "{d}/x", "--holdout", "1.5"], "--holdout must be a fraction between 0 and 1"),
    (["split", "digits", "--out", "{d}/x", "--holdout", "nan"], "--holdout must be a fraction between 0 and 1"),
    (["train", "--split", "{d}/split.json", "--out", "{d}/x.safetensors", "--model", "nope"], "unknown model 'nope'"),
    (["forget", "{d}/original.safetensors", "--split", "{d}/split.json", "--forget", "{d}/forget.json",
      "--out", "{d}/x.safetensors", "--method", "nope"], "unknown method 'nope'"),
    (["forget", "{d}/original.safetensors", "--split", "{d}/split.json", "--forget", "{d}/forget.json",
      "--out", "{d}/x.safetensors", "--option", "learning_rate=1"], "bad --option"),
    (["forget", "{d}/original.safetensors", "--split", "{d}/split.json", "--forget", "{d}/forget.json",
      "--out", "{d}/x.safetensors", "--method", "newton", "--option", "guard=maybe"], "guard takes"),
    (["forget", "{d}/original.safetensors", "--split", "{d}/split.json", "--forget", "{d}/forget.json",
      "--out", "{d}/x.safetensors", "--method", "scar"], "needs surrogate data"),
    (["demo", "--preset", "tiny", "--out", "{d}/x", "--methods", "mumis,nope"], "unknown method(s) ['nope']"),
    (["demo", "--preset", "tiny", "--out", "{d}/x", "--methods", "retrain"], "always the table's first rows"),
])
def test_bad_input_gives_a_clear_error_and_writes_nothing(workdir, args, message):
    result = _run(*[a.format(d=workdir) for a in args], ok=False)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (workdir / "x.safetensors").exists() and not (workdir / "x").exists()


def test_split_holdout_draws_the_test_set_from_the_training_pool(tmp_path):
    from mumis.data import ForgetSet, Split, load_dataset
    from mumis.data.sources import DEBIAN_FASHION_MNIST

    if not (DEBIAN_FASHION_MNIST / "train-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    _run("split", "fashion_mnist", "--out", tmp_path, "--holdout", 0.2, "--forget-random", 0.1)
    split, forget = Split.load(tmp_path / "split.json"), ForgetSet.load(tmp_path / "forget.json")
    assert split.test_from == "holdout" and (len(split.train), len(split.test)) == (48000, 12000)
    assert not set(split.train.tolist()) & set(split.test.tolist()) and len(forget.indices) == 4800
    labels = load_dataset("fashion_mnist").train.labels.numpy()
    assert np.bincount(labels[split.test]).tolist() == [1200] * 10
    held_out_id = tmp_path / "ids.txt"
    held_out_id.write_text(f"{int(split.test[0])}\n")  # a held-out training image: the model never saw it
    result = _run("split", "fashion_mnist", "--out", tmp_path / "x", "--holdout", 0.2, "--forget-ids", held_out_id,
                  ok=False)
    assert result.exit_code == 2 and "not in this split's training set" in " ".join(result.output.split())
    assert not (tmp_path / "x").exists()


def test_split_hash_mismatch_is_refused(workdir):
    other = workdir / "other"
    _run("split", "digits", "--out", other, "--seed", 1, "--forget-class", 2)
    result = _run("forget", workdir / "original.safetensors", "--split", other / "split.json", "--forget",
                  other / "forget.json", "--out", workdir / "x.safetensors", ok=False)
    assert result.exit_code == 2 and "trained on split" in " ".join(result.output.split())
    result = _run("eval", workdir / "original.safetensors", "--split", workdir / "split.json", "--forget",
                  other / "forget.json", ok=False)
    assert result.exit_code == 2 and "forget set was drawn from split" in " ".join(result.output.split())


def test_checkpoint_that_does_not_match_its_model_is_refused(workdir, tmp_path):
    ckpt = tmp_path / "wrong.safetensors"
    ckpt.write_bytes((workdir / "original.safetensors").read_bytes())
    meta = json.loads((workdir / "original.json").read_text())
    meta["architecture"] = "resnet_small"
    ckpt.with_suffix(".json").write_text(json.dumps(meta))
    result = _run("eval", ckpt, "--split", workdir / "split.json", "--forget", workdir / "forget.json", ok=False)
    assert result.exit_code == 2 and "does not match the model" in " ".join(result.output.split())


@pytest.mark.parametrize("method,extra,reads", [
    ("ft", ["--option", "epochs=1"], "['retain']"),
    ("salun", ["--option", "epochs=1"], "['forget', 'retain']"),
    ("scar", ["--surrogate", "mnist5k", "--surrogate-size", "300", "--option", "epochs=1"], "['forget', 'surrogate']"),
    ("newton", [], "['forget', 'heldout']"),  # the training-set size comes from the split
])
def test_forget_runs_any_registered_method(workdir, method, extra, reads):
    out = workdir / f"{method}.safetensors"
    result = _run("forget", workdir / "original.safetensors", "--split", workdir / "split.json", "--forget",
                  workdir / "forget.json", "--out", out, "--method", method, *extra)
    assert f"read {reads} data" in result.output and out.is_file()
    assert json.loads(out.with_suffix(".json").read_text())["method"]["name"] == method


def test_demo_with_several_methods(tmp_path):
    out = tmp_path / "demo"
    _run("demo", "--preset", "tiny", "--out", out, "--cache-dir", tmp_path / "cache", "--no-progress",
         "--methods", "ga,ssd,mumis")
    rows = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in rows] == ["retrain", "original", "ga", "ssd", "mumis"]
    assert rows[2]["extra"]["data_read"] == ["forget"] and rows[3]["extra"]["data_read"] == ["forget", "retain"]


def test_the_command_line_starts_without_loading_torch():
    """`mumis --help` answers at once: nothing heavy is imported before a command needs it."""
    import subprocess
    import sys

    code = "import sys, mumis.cli; print('torch' in sys.modules, 'sklearn' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]


def test_forget_takes_a_methods_options_from_a_tuned_recipe(workdir, tmp_path):
    """--recipe fills in the tuned options for the request kind and the split's dataset family; --option wins; a
    recipe without an entry for the request is one clear error and writes nothing."""
    from mumis.methods.recipes import RecipeEntry, save_entry

    recipe = save_entry(tmp_path / "mine.json", RecipeEntry("ga", {}, "full_class", "digits", {"lr": 3e-4, "epochs": 2},
                                                            {"study": "test"}))
    out = tmp_path / "ga.safetensors"
    result = _run("forget", workdir / "original.safetensors", "--split", workdir / "split.json", "--class", 2,
                  "--method", "ga", "--recipe", recipe, "--option", "epochs=1", "--out", out)
    assert "options from recipe" in result.output
    manifest = json.loads(out.with_name("ga.manifest.json").read_text())
    assert manifest["method"]["options"]["lr"] == 3e-4 and manifest["method"]["options"]["epochs"] == 1
    missing = _run("forget", workdir / "original.safetensors", "--split", workdir / "split.json", "--ids",
                   _ids(tmp_path, workdir), "--method", "ga", "--recipe", recipe, "--out", tmp_path / "x.safetensors", ok=False)
    said = " ".join(missing.output.split())
    assert missing.exit_code == 2 and "has no entry for ga × random × digits" in said
    assert not (tmp_path / "x.safetensors").exists()


def _ids(tmp_path, workdir):
    path = tmp_path / "ids.txt"
    train = json.loads((workdir / "split.json").read_text())["train"]
    path.write_text("\n".join(str(i) for i in train[:10]) + "\n")
    return path

"""Serving a deletion request from the CLI: the hostile-input table, the audit manifest, atomic outputs."""
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import mumis.methods.kfac as kfac
from mumis.cli import app
from mumis.data import Split
from mumis.models import create_model
from mumis.training import load_checkpoint, read_meta, save_checkpoint

runner = CliRunner()


def _sha(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """digits split + an original checkpoint, through the CLI."""
    d = tmp_path_factory.mktemp("request")
    assert runner.invoke(app, ["split", "digits", "--out", str(d)]).exit_code == 0
    result = runner.invoke(app, ["train", "--split", str(d / "split.json"), "--out", str(d / "model.safetensors"),
                                 "--epochs", "3", "--batch-size", "64"])
    assert result.exit_code == 0, result.output
    split = Split.load(d / "split.json")
    (d / "ids.txt").write_text("\n".join(str(i) for i in split.train[:12]) + "\n")
    return d


def _forget(work, tmp_path, *extra, out_name="out/new.safetensors"):
    out = tmp_path / out_name
    args = ["forget", "--model", str(work / "model.safetensors"), "--data", str(work / "split.json"), "--out", str(out), *extra]
    return runner.invoke(app, args), out


def _assert_refused(result, out, work, message, sha_before):
    text = " ".join(result.output.split())
    assert result.exit_code != 0, result.output
    assert re.search(message, text), text
    assert not out.exists() and not out.with_suffix(".manifest.json").exists() and not out.with_suffix(".json").exists()
    assert _sha(work / "model.safetensors") == sha_before  # the input is untouched


def _variant_checkpoint(work, tmp_path, **changes):
    """A copy of the original checkpoint whose sidecar says something else (architecture, classes, channels)."""
    meta = read_meta(work / "model.safetensors")
    for k, v in changes.items():
        setattr(meta, k, v)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "variant.safetensors"
    if "in_channels" in changes:
        save_checkpoint(path, create_model(meta.architecture, meta.num_classes, meta.in_channels), meta)
    else:
        shutil.copy(work / "model.safetensors", path)
        path.with_suffix(".json").write_text(json.dumps(meta.__dict__))
    return path


def _ids_file(tmp_path, ids):
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "request.txt"
    path.write_text("\n".join(map(str, ids)))
    return path


def test_hostile_input_table(work, tmp_path):
    """Each row: a clear error naming the problem, exit status ≠ 0, no output file, the input untouched."""
    sha = _sha(work / "model.safetensors")
    split = Split.load(work / "split.json")
    model, data = work / "model.safetensors", work / "split.json"
    cases = [  # (name, --model, --data, request arguments, expected message)
        ("wrong channels", _variant_checkpoint(work, tmp_path / "a", in_channels=3), data, ["--class", "2"], "3-channel inputs"),
        ("label out of range", model, data, ["--class", "12"], "out of range"),
        ("empty forget set", model, data, ["--ids", _ids_file(tmp_path / "e", [])], "names no sample ids"),
        ("ids not in the training split", model, data, ["--ids", _ids_file(tmp_path / "f", [int(split.test[0])])],
         "not in this split's training set"),
        ("whole training set", model, data, ["--ids", _ids_file(tmp_path / "g", split.train.tolist())], "whole training set"),
        ("another architecture", _variant_checkpoint(work, tmp_path / "b", architecture="resnet_small"), data,
         ["--class", "2"], "does not match the model"),
        ("another class count", _variant_checkpoint(work, tmp_path / "c", num_classes=5), data, ["--class", "2"],
         "does not match the model"),
        ("split-hash mismatch", model, "digits:1", ["--class", "2"], "trained on split"),
        ("not an integer id", model, data, ["--ids", _ids_file(tmp_path / "h", ["7", "x1"])], "is not a sample id"),
        ("two requests at once", model, data, ["--class", "2", "--ids", work / "ids.txt"], "exactly one forget request"),
        ("unknown method", model, data, ["--class", "2", "--method", "nope"], "unknown method"),
    ]
    for name, ckpt, spec, request, message in cases:
        out = tmp_path / name.replace(" ", "_") / "new.safetensors"
        result = runner.invoke(app, ["forget", "--model", str(ckpt), "--data", str(spec), "--out", str(out),
                                     *(str(a) for a in request)])
        _assert_refused(result, out, work, message, sha)


def _refused_model(work, tmp_path, model, message):
    sha = _sha(work / "model.safetensors")
    out = tmp_path / "o" / "n.safetensors"
    result = runner.invoke(app, ["forget", "--model", str(model), "--data", str(work / "split.json"), "--class", "2",
                                 "--out", str(out)])
    _assert_refused(result, out, work, message, sha)


def test_truncated_checkpoint_is_refused(work, tmp_path):
    bad = tmp_path / "truncated.safetensors"
    data = (work / "model.safetensors").read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    shutil.copy(work / "model.json", bad.with_suffix(".json"))
    _refused_model(work, tmp_path, bad, "not a readable safetensors file")


def test_pickle_checkpoint_is_refused_with_conversion_advice(work, tmp_path):
    import torch

    pt = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, pt)
    _refused_model(work, tmp_path, pt, "never unpickles .* save_file")


def test_unwritable_output_directory_is_refused_before_any_work(work, tmp_path):
    sha = _sha(work / "model.safetensors")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result, out = _forget(work, tmp_path, "--class", "2", out_name="a-file/sub/new.safetensors")
    _assert_refused(result, out, work, "is a file, not a directory", sha)
    if Path("/proc").is_dir():  # not writable even for root
        result = runner.invoke(app, ["forget", "--model", str(work / "model.safetensors"), "--data", str(work / "split.json"),
                                     "--class", "2", "--out", "/proc/mumis-test/new.safetensors"])
        assert result.exit_code == 2 and "cannot write" in " ".join(result.output.split())


def test_existing_output_needs_overwrite_and_is_left_alone(work, tmp_path):
    sha = _sha(work / "model.safetensors")
    out = tmp_path / "exists.safetensors"
    out.write_bytes(b"precious")
    result = runner.invoke(app, ["forget", "--model", str(work / "model.safetensors"), "--data", str(work / "split.json"),
                                 "--class", "2", "--out", str(out)])
    assert result.exit_code == 2 and "already exists" in " ".join(result.output.split()) and out.read_bytes() == b"precious"
    assert _sha(work / "model.safetensors") == sha


def test_divergence_writes_nothing_and_names_the_step(work, tmp_path):
    sha = _sha(work / "model.safetensors")
    result, out = _forget(work, tmp_path, "--class", "2", "--option", "variant=paper", "--option", "lr=1000000",
                          "--option", "fa_floor=none")
    _assert_refused(result, out, work, r"diverged at step \d+", sha)


def test_duplicate_ids_are_dropped_with_a_warning_and_the_manifest_verifies(work, tmp_path):
    ids = (work / "ids.txt").read_text().split()
    request = _ids_file(tmp_path, ids + ids[:3])
    result, out = _forget(work, tmp_path, "--ids", request)
    assert result.exit_code == 0, result.output
    assert "3 duplicate id(s) dropped" in " ".join(result.output.split())
    manifest = json.loads(out.with_suffix(".manifest.json").read_text())
    assert manifest["request"]["count"] == len(ids) and manifest["request"]["duplicates_dropped"] == 3
    assert manifest["method"]["request"] == "samples"  # ids are a sample request, served by what measured best for one
    assert manifest["method"]["name"] == "newton" and manifest["method"]["why"].startswith("auto: newton")
    assert manifest["input"]["sha256"] == _sha(work / "model.safetensors")
    assert manifest["output"]["sha256"] == _sha(out)
    assert manifest["method"]["data_read"] == ["forget", "heldout"]
    for key in ("before", "after"):
        assert set(manifest[key]) == {"fa", "mia"}
    assert manifest["stop"]["reason"] and manifest["wall_s"] > 0 and manifest["versions"]["torch"]
    evidence = manifest["evidence"]  # per sample: how far each is still fitted like training data
    assert len(evidence["after"]["scores"]) == len(ids) and 0 <= evidence["after"]["member_like"] <= 100
    verified = runner.invoke(app, ["verify", str(out.with_suffix(".manifest.json"))])
    assert verified.exit_code == 0 and "all checks passed" in verified.output
    assert "member-like share" in verified.output and "per-sample scores" in verified.output
    with open(out, "ab") as f:  # tamper with the output
        f.write(b"\0")
    tampered = runner.invoke(app, ["verify", str(out.with_suffix(".manifest.json"))])
    assert tampered.exit_code == 1 and "NO" in tampered.output


def test_class_request_manifest_round_trips(work, tmp_path):
    result, out = _forget(work, tmp_path, "--class", "2")
    assert result.exit_code == 0, result.output
    manifest = json.loads(out.with_suffix(".manifest.json").read_text())
    assert manifest["request"]["kind"] == "class" and manifest["after"]["fa"] < manifest["before"]["fa"]
    assert runner.invoke(app, ["verify", str(out.with_suffix(".manifest.json"))]).exit_code == 0


def test_interrupt_while_writing_leaves_no_partial_output(work, tmp_path, monkeypatch):
    import mumis.serving.requests as requests

    req = requests.prepare_request(None, work / "model.safetensors", str(work / "split.json"), None, None, 2, None,
                                   tmp_path / "o" / "n.safetensors", False, "mumis", {"show_progress": False}, None, 0, None)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(requests, "atomic_write_text", interrupted)  # the manifest write, after the checkpoint
    with pytest.raises(KeyboardInterrupt):
        requests.serve_request(req)
    leftovers = list((tmp_path / "o").iterdir()) if (tmp_path / "o").exists() else []
    assert leftovers == []  # no checkpoint, no sidecar, no manifest, no temporary file


def test_readme_deletion_request_example_runs_as_written(tmp_path):
    """The README's five-line deletion-request example, line by line, in an empty directory."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("## Serving a deletion request")[1].split("```bash")[1].split("```")[0]
    lines = [ln for ln in block.strip().splitlines() if ln.strip()]
    assert len(lines) == 5
    mumis_bin = str(Path(sys.executable).parent / "mumis")
    env = {**os.environ, "MUMIS_DEVICE": "cpu", "MUMIS_CACHE": str(tmp_path / "cache")}
    for line in lines:
        command = re.sub(r"^mumis ", mumis_bin + " ", line)
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    assert "all checks passed" in done.stdout
    # then the README's Python block, in the same folder, on data a user of that split would have
    python = readme.split("From Python, on any `nn.Module` classifier:")[1].split("```python")[1].split("```")[0]
    script = tmp_path / "readme_python.py"
    script.write_text(_README_DATA + python)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    request, method = done.stdout.strip().splitlines()[-1].split()[:2]  # the print; progress lines come before it
    assert (request, method) == ("samples", "newton")


_README_DATA = """
from mumis.data import Split, load_dataset
split = Split.load("work/split.json")
train, test = split.materialise(load_dataset(split.dataset))
x_class, y_class = train.subset((train.labels == 3).nonzero().flatten()).tensors()
x_person, y_person = train.subset(range(0, len(train), 100)).tensors()  # 40 samples, every class
x_val, y_val = test.tensors()
n_train = len(train)
"""


def test_csv_id_file_with_header_is_read(work, tmp_path):
    ids = (work / "ids.txt").read_text().split()[:5]
    request = tmp_path / "request.csv"
    request.write_text("sample_id,reason\n" + "".join(f"{i},gdpr\n" for i in ids))
    result, out = _forget(work, tmp_path, "--ids", request)
    assert result.exit_code == 0, result.output
    manifest = json.loads(out.with_suffix(".manifest.json").read_text())
    assert manifest["request"]["count"] == 5 and manifest["request"]["file_sha256"] == _sha(request)


def test_requests_in_a_row_run_on_the_first_model_for_everything_forgotten(work, tmp_path, monkeypatch):
    """A second sample request on a model that a first one produced runs on the first model, for both requests'
    samples: its output is exactly what one request for all of them would give, and the manifest says so. The
    first model's held-out curvature is computed once, by the first request, and read back by the others."""
    monkeypatch.setenv("MUMIS_CACHE", str(tmp_path / "cache"))
    split = Split.load(work / "split.json")
    first, out1 = _forget(work, tmp_path, "--ids", str(_ids_file(tmp_path / "a", split.train[:12])),
                          out_name="one/first.safetensors")
    assert first.exit_code == 0, first.output
    manifest1 = json.loads(out1.with_suffix(".manifest.json").read_text())
    assert "served_from" not in manifest1["method"] and len(manifest1["request"]["positions"]) == 12
    assert manifest1["method"]["name"] == "newton" and manifest1["method"]["options"]["layers"] == "all"
    assert manifest1["method"]["options"]["curvature_cache"] == str(tmp_path / "cache" / "curvature")
    assert len(list((tmp_path / "cache" / "curvature").iterdir())) == 1
    assert manifest1["stop"]["curvature_from_cache"] is False
    assert manifest1["stop"]["atypical_forget_set"] is False  # 12 training samples of a model that fits them all

    def refuse(*args, **kwargs):
        raise AssertionError("the first model's curvature was computed again")
    monkeypatch.setattr(kfac, "kfac_factors", refuse)
    monkeypatch.setattr(kfac, "corrected_eigenvalues", refuse)
    out2 = tmp_path / "two" / "second.safetensors"
    second = runner.invoke(app, ["forget", "--model", str(out1), "--data", str(work / "split.json"), "--out", str(out2),
                                 "--ids", str(_ids_file(tmp_path / "b", split.train[8:24]))])  # 4 ids asked again
    assert second.exit_code == 0, second.output
    assert "the model before this chain's 1 earlier request(s), for all 24 samples" in " ".join(second.output.split())
    manifest2 = json.loads(out2.with_suffix(".manifest.json").read_text())
    served = manifest2["method"]["served_from"]
    assert served["sha256"] == _sha(work / "model.safetensors") and served["earlier_requests"] == 1
    assert served["forget_count"] == 24 and manifest2["request"]["count"] == 16
    assert manifest2["stop"]["curvature_from_cache"] is True
    assert manifest2["input"]["sha256"] == _sha(out1)
    assert runner.invoke(app, ["verify", str(out2.with_suffix(".manifest.json"))]).exit_code == 0
    at_once, out3 = _forget(work, tmp_path, "--ids", str(_ids_file(tmp_path / "c", split.train[:24])),
                            out_name="three/at_once.safetensors")
    assert at_once.exit_code == 0, at_once.output
    two_steps, _ = load_checkpoint(out2)
    one_step, _ = load_checkpoint(out3)
    for (name, a), b in zip(two_steps.state_dict().items(), one_step.state_dict().values()):
        assert torch.equal(a, b), name
    sha_first = _sha(work / "model.safetensors")
    onto_first = runner.invoke(app, ["forget", "--model", str(out2), "--data", str(work / "split.json"), "--out",
                                     str(work / "model.safetensors"), "--overwrite", "--ids",
                                     str(_ids_file(tmp_path / "d", split.train[30:34]))])
    assert onto_first.exit_code == 2 and "the first model of this chain" in " ".join(onto_first.output.split())
    assert _sha(work / "model.safetensors") == sha_first
    from mumis.serving.audit import request_chain
    assert [body["output"]["sha256"] for body in request_chain(out2, split.sha256)] == [_sha(out2), _sha(out1)]
    assert request_chain(out2, "0" * 64) == []  # another split: nothing comparable further back


def test_without_the_first_model_requests_in_a_row_share_one_heldout_budget(work, tmp_path):
    """When the chain's first model is gone, a request runs on the model it is given: newton's guard allows only what
    is left of the two standard errors after what the earlier request cost, and the model's training-set size is
    the split's less what the earlier request removed (both read from its manifest)."""
    split = Split.load(work / "split.json")
    root = tmp_path / "root" / "model.safetensors"
    root.parent.mkdir()
    for suffix in (".safetensors", ".json"):
        shutil.copy(work / f"model{suffix}", root.with_suffix(suffix))
    first = runner.invoke(app, ["forget", "--model", str(root), "--data", str(work / "split.json"), "--out",
                                str(tmp_path / "one.safetensors"), "--ids",
                                str(_ids_file(tmp_path / "a", split.train[:12]))])
    assert first.exit_code == 0, first.output
    manifest1 = json.loads((tmp_path / "one.manifest.json").read_text())
    cost = manifest1["stop"]["heldout_cost"]
    assert manifest1["method"]["name"] == "newton" and isinstance(cost, float)
    root.unlink()
    out2 = tmp_path / "two.safetensors"
    second = runner.invoke(app, ["forget", "--model", str(tmp_path / "one.safetensors"), "--data",
                                 str(work / "split.json"), "--out", str(out2), "--ids",
                                 str(_ids_file(tmp_path / "b", split.train[12:24]))])
    assert second.exit_code == 0, second.output
    manifest2 = json.loads(out2.with_suffix(".manifest.json").read_text())
    assert "served_from" not in manifest2["method"]
    assert manifest2["method"]["options"]["curvature_cache"] is None  # a model no later request starts from
    assert manifest2["method"]["options"]["heldout_spent"] == pytest.approx(max(cost, 0.0))
    assert manifest2["method"]["options"]["train_size"] == len(split.train) - 12
    assert "1 earlier request(s) on this model removed 12 samples and cost" in " ".join(second.output.split())

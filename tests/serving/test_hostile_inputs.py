"""Hostile inputs a new user could give any command, case by case: one clear error line, exit status 2, every input
file byte-identical, and nothing new left behind. A verification that finds an edited manifest field exits 1 and names
the field."""
import hashlib
import json
import math
import shutil
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from mumis.cli import app
from mumis.data.splits import _digest
from mumis.serving.audit import manifest_text

runner = CliRunner()


def _tree(folder: Path) -> dict:
    """Every file under ``folder`` (hidden temporary files included) → its SHA-256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _cli(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A split, a forget set, a trained checkpoint and a served request's manifest (digits, through the CLI)."""
    d = tmp_path_factory.mktemp("hostile")
    assert _cli("split", "digits", "--out", d, "--forget-class", 2).exit_code == 0
    result = _cli("train", "--split", d / "split.json", "--out", d / "model.safetensors", "--epochs", 2, "--batch-size", 64)
    assert result.exit_code == 0, result.output
    split = json.loads((d / "split.json").read_text())
    (d / "ids.txt").write_text("\n".join(str(i) for i in split["train"][:8]) + "\n")
    result = _cli("forget", d / "model.safetensors", "--data", d / "split.json", "--ids", d / "ids.txt",
                  "--out", d / "served.safetensors")
    assert result.exit_code == 0, result.output
    return d


@pytest.fixture
def work(base, tmp_path):
    """A private copy of the base folder, so every case can plant its own hostile file."""
    d = tmp_path / "w"
    shutil.copytree(base, d)
    # the manifest names absolute paths: re-point them at the copy and seal it again, as its owner could after a move
    moved = json.loads((d / "served.manifest.json").read_text().replace(str(base), str(d)))
    del moved["digest"]
    (d / "served.manifest.json").write_text(manifest_text(moved, str))
    return d


# ------------------------------------------------------------------------------------------------ hostile files
def _rehashed(path: Path, **changes) -> Path:
    """A copy of an index file with fields changed and its self-hash recomputed (so only content checks can catch it)."""
    payload = json.loads(path.read_text())
    payload.update(changes)
    body = {k: v for k, v in payload.items() if k not in ("kind", "sha256")}
    payload["sha256"] = _digest(body)
    out = path.with_name("hostile-" + path.name)
    out.write_text(json.dumps(payload))
    return out


def _sidecar_variant(d: Path, **changes) -> Path:
    ckpt = d / "variant.safetensors"
    shutil.copy(d / "model.safetensors", ckpt)
    meta = json.loads((d / "model.json").read_text())
    meta.update(changes)
    ckpt.with_suffix(".json").write_text(json.dumps(meta))
    return ckpt


def _poisoned(d: Path, value: float) -> Path:
    state = load_file(str(d / "model.safetensors"))
    name = sorted(k for k, v in state.items() if v.is_floating_point())[3]
    state[name].view(-1)[0] = value
    ckpt = d / "poisoned.safetensors"
    save_file(state, str(ckpt))
    shutil.copy(d / "model.json", ckpt.with_suffix(".json"))
    return ckpt


def _file(d: Path, name: str, data: bytes) -> Path:
    (d / name).write_bytes(data)
    return d / name


def _manifest_edit(d: Path, edit) -> Path:
    path = d / "served.manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))
    return path


def _forget(d, *request, ckpt=None, data=None, out=None):
    return ("forget", ckpt or d / "model.safetensors", "--data", data or d / "split.json", *request,
            "--out", out or d / "new" / "x.safetensors")


def _train(d, *extra, split=None, out=None):
    return ("train", "--split", split or d / "split.json", "--out", out or d / "new" / "t.safetensors",
            "--epochs", 1, "--batch-size", 64, *extra)


def _split_ids(d, name, data):
    return ("split", "digits", "--out", d / "new", "--forget-ids", _file(d, name, data))


BIG = str(2**70).encode()
CASES = {  # name: (arguments from the work folder, a phrase of the expected one-line message)
    "forget --out over the split's name": (lambda d: _forget(d, "--class", 2, out=d / "split.safetensors"), "which is the input"),
    "train --out over the split's name": (lambda d: _train(d, out=d / "split.safetensors"), "which is the input"),
    "forget --out whose sidecar exists": (lambda d: (_file(d, "other.json", b"{}"),
                                                     _forget(d, "--class", 2, out=d / "other.safetensors"))[1], "already exists"),
    "forget --out whose manifest exists": (lambda d: (_file(d, "o.manifest.json", b"{}"),
                                                      _forget(d, "--class", 2, out=d / "o.safetensors"))[1], "already exists"),
    "forget --trace over an existing trace": (lambda d: (_file(d, "tr.trace.png", b"png"),
                                                         _forget(d, "--class", 2, "--trace", out=d / "tr.safetensors"))[1], "already exists"),
    "forget --out is a directory": (lambda d: ((d / "adir.safetensors").mkdir(),
                                               _forget(d, "--class", 2, out=d / "adir.safetensors"))[1], "is a directory"),
    "forget --out equal to the checkpoint": (lambda d: _forget(d, "--class", 2, out=d / "model.safetensors"), "which is the input"),
    "NaN weight": (lambda d: _forget(d, "--class", 2, ckpt=_poisoned(d, math.nan)), "holds NaN or infinite"),
    "inf weight": (lambda d: _forget(d, "--class", 2, ckpt=_poisoned(d, math.inf)), "holds NaN or infinite"),
    "train --lr nan": (lambda d: _train(d, "--lr", "nan"), "--lr must be a finite number"),
    "train --lr 0": (lambda d: _train(d, "--lr", 0), "--lr must be a finite number"),
    "train --lr 1e6 diverges": (lambda d: _train(d, "--lr", 1e6), "training diverged"),
    "train --batch-size 0": (lambda d: _train(d, "--batch-size", 0), "--batch-size must be at least 1"),
    "train --epochs 0": (lambda d: _train(d, "--epochs", 0), "--epochs must be at least 1"),
    "train --epochs -1": (lambda d: _train(d, "--epochs", -1), "--epochs must be at least 1"),
    "train over an existing checkpoint": (lambda d: _train(d, out=d / "model.safetensors"), "already exists"),
    "id 2**70": (lambda d: _forget(d, "--ids", _file(d, "big.txt", BIG)), "too large to be a sample id"),
    "id 2**70 in a CSV": (lambda d: _forget(d, "--ids", _file(d, "big.csv", b"id\n" + BIG + b"\n")), "too large"),
    "ids not UTF-8": (lambda d: _forget(d, "--ids", _file(d, "latin.txt", b"12\n\xff\xfe3\n")), "is not UTF-8 text"),
    "ids with a NUL byte": (lambda d: _forget(d, "--ids", _file(d, "nul.csv", b"id\n1\x002\n")), "NUL"),
    "id 1_000": (lambda d: _forget(d, "--ids", _file(d, "under.txt", b"1_000\n")), "is not a sample id"),
    "id in Arabic-Indic digits": (lambda d: _forget(d, "--ids", _file(d, "arabic.txt", "٧\n".encode())), "is not a sample id"),
    "id -1": (lambda d: _forget(d, "--ids", _file(d, "neg.txt", b"-1\n")), "is not a sample id"),
    "id beyond the dataset": (lambda d: _forget(d, "--ids", _file(d, "far.txt", b"999999\n")), "not in this split's training set"),
    "split --forget-ids with a word": (lambda d: _split_ids(d, "word.txt", b"3\nseven\n"), "is not a sample id"),
    "split --forget-ids 2**70": (lambda d: _split_ids(d, "big2.txt", BIG), "too large"),
    "split --forget-ids not UTF-8": (lambda d: _split_ids(d, "bin.txt", b"\x80\x81"), "is not UTF-8"),
    "split over an existing split": (lambda d: ("split", "digits", "--out", d), "already exists"),
    "sidecar num_classes '10'": (lambda d: _forget(d, "--class", 2, ckpt=_sidecar_variant(d, num_classes="10")),
                                 "field 'num_classes' must be an integer"),
    "sidecar num_classes 10**12": (lambda d: _forget(d, "--class", 2, ckpt=_sidecar_variant(d, num_classes=10**12)),
                                   "field 'num_classes' must be an integer from 1"),
    "sidecar seed 'abc'": (lambda d: _forget(d, "--class", 2, ckpt=_sidecar_variant(d, seed="abc")), "field 'seed' must be"),
    "sidecar is a JSON list": (lambda d: (_file(d, "model.json", b"[1, 2]"), _forget(d, "--class", 2))[1], "must be a JSON object"),
    "sidecar of another dataset": (lambda d: _forget(d, "--class", 2, ckpt=_sidecar_variant(d, dataset="mnist5k")),
                                   "trained on 'mnist5k' but the split is of 'digits'"),
    "split is a JSON list": (lambda d: _forget(d, "--class", 2, data=_file(d, "list.json", b"[1, 2, 3]")), "is not a split file"),
    "split id beyond the dataset": (lambda d: _train(d, split=_rehashed(
        d / "split.json", train=json.loads((d / "split.json").read_text())["train"] + [10**6])), "names sample 1000000"),
    "split with a duplicate training id": (lambda d: _forget(d, "--class", 2, data=_rehashed(
        d / "split.json", train=json.loads((d / "split.json").read_text())["train"][:1] * 2)), "more than once"),
    "split id in train and test": (lambda d: _forget(d, "--class", 2, data=_rehashed(
        d / "split.json", train=sorted(json.loads((d / "split.json").read_text())["train"]
                                       + json.loads((d / "split.json").read_text())["test"][:1]))), "share samples"),
    "split id -1": (lambda d: _forget(d, "--class", 2, data=_rehashed(d / "split.json", train=[-1, 0, 1])),
                    "field 'train' must be a list of sample index"),
    "split with an empty training set": (lambda d: _train(d, split=_rehashed(d / "split.json", train=[])), "'train' is empty"),
    "split seed 'abc'": (lambda d: _train(d, split=_rehashed(d / "split.json", seed="abc")), "field 'seed' must be an integer"),
    "forget set beyond the split": (lambda d: _forget(d, "--forget", _rehashed(
        d / "forget.json", indices=[10**6])), "names position 1000000"),
    "manifest: a string where a number belongs": (lambda d: ("verify", _manifest_edit(
        d, lambda m: m["before"].update(fa="99"))), "field 'before.fa' must be a finite number"),
    "manifest: a missing key": (lambda d: ("verify", _manifest_edit(d, lambda m: m.pop("stop"))), "field 'stop' is missing"),
    "manifest: a JSON list": (lambda d: ("verify", _file(d, "served.manifest.json", b"[]")), "not a mumis audit manifest"),
    "grid: seeds are words": (lambda d: ("bench", _file(d, "g.toml", b'datasets=["digits"]\nmodels=["small_cnn"]\n'
                                                                   b'tasks=["full_class"]\nmethods=[{name="ga"}]\nseeds=["a"]\n'),
                                         "--db", d / "new" / "g.sqlite"), "seeds must be a list of integers"),
    "report over an existing report": (lambda d: (_file(d, "r.sqlite", b""), (d / "r").mkdir(), _file(d / "r", "report.md", b"#"),
                                                  ("report", d / "r.sqlite"))[-1], "already exists"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hostile_input_is_one_clear_line_with_exit_2_and_touches_nothing(work, name):
    make_args, message = CASES[name]
    args = make_args(work)  # plants the hostile file(s) first
    before = _tree(work)
    result = _cli(*args)
    text = " ".join(result.output.split())
    assert result.exit_code == 2, f"{name}: exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    assert text.count("error:") == 1 and "Traceback" not in text, text
    assert message in text.split("error:")[1], text  # the one error line names the problem (a progress bar may precede it)
    assert _tree(work) == before  # every input byte-identical, no output and no temporary file left behind


@pytest.mark.parametrize("field,edit", [
    ("before.fa", lambda m: m["before"].update(fa=m["before"]["fa"] - 50)),
    ("method.options.lr", lambda m: m["method"]["options"].update(lr=123.0)),
    ("stop.steps", lambda m: m["stop"].update(steps=m["stop"]["steps"] + 1)),
    ("request.count", lambda m: m["request"].update(count=1)),
    ("evidence.after.member_like", lambda m: m["evidence"]["after"].update(member_like=42.0)),
])
def test_verify_names_an_edited_manifest_field_and_exits_1(work, field, edit):
    assert _cli("verify", work / "served.manifest.json").exit_code == 0
    _manifest_edit(work, edit)
    result = _cli("verify", work / "served.manifest.json")
    text = " ".join(result.output.split())
    assert result.exit_code == 1 and f"'{field}'" in text and "verification failed" in text, text


def test_verify_recomputes_forget_metrics_before_from_the_input(work):
    result = _cli("verify", work / "served.manifest.json")
    assert result.exit_code == 0 and "FA before" in result.output and "MIA before" in result.output


def test_ids_with_a_byte_order_mark_are_read(work):
    ids = (work / "ids.txt").read_bytes()
    bom = _file(work, "excel.csv", b"\xef\xbb\xbfsample_id\r\n" + ids.replace(b"\n", b"\r\n"))
    result = _cli(*_forget(work, "--ids", bom))
    assert result.exit_code == 0, result.output
    manifest = json.loads((work / "new" / "x.manifest.json").read_text())
    assert manifest["request"]["count"] == len(ids.split())

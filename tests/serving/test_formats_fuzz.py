"""Property-based tests (Hypothesis) for every file format a command reads: arbitrary bytes and arbitrary JSON never
raise anything but MumisError — the one error the CLI turns into a clear line and exit status 2."""
import json

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mumis.data import ForgetSet, Split
from mumis.data.splits import _digest
from mumis.errors import MumisError
from mumis.serving.audit import load_manifest, manifest_text, parse_ids
from mumis.training import read_meta

# derandomized: the same examples on every run, so CI stays deterministic (raise max_examples locally to search more)
FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture])
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def _only_mumis_errors(call):
    try:
        return call()
    except MumisError:
        return None


# ------------------------------------------------------------------------------------------------ the id parser
@FUZZ
@given(data=st.binary(max_size=200), csv_format=st.booleans())
@example(data=b"\xef\xbb\xbf12\n7\n", csv_format=False)
@example(data=str(2**70).encode(), csv_format=True)
def test_ids_parser_on_arbitrary_bytes(data, csv_format):
    parsed = _only_mumis_errors(lambda: parse_ids(data, "ids.txt", csv_format))
    if parsed is not None:
        ids, dropped = parsed
        assert ids and all(type(i) is int and 0 <= i < 10**18 for i in ids) and dropped >= 0
        assert len(set(ids)) == len(ids)


@FUZZ
@given(ids=st.lists(st.integers(0, 10**17), min_size=1, max_size=20), bom=st.booleans(),
       sep=st.sampled_from(["\n", "\r\n", " ", "\t"]))
def test_ids_parser_reads_back_what_was_written(ids, bom, sep):
    data = (b"\xef\xbb\xbf" if bom else b"") + sep.join(map(str, ids)).encode()
    parsed, dropped = parse_ids(data, "ids.txt")
    assert parsed == list(dict.fromkeys(ids)) and dropped == len(ids) - len(set(ids))
    as_csv, _ = parse_ids(("sample_id\n" + "\n".join(f"{i},why" for i in ids)).encode(), "ids.csv", csv_format=True)
    assert as_csv == parsed


@FUZZ
@given(token=st.text(min_size=1, max_size=6).filter(lambda t: not any(c.isspace() for c in t)
                                                    and not (t.isascii() and t.isdigit())))
def test_ids_parser_refuses_anything_but_ascii_digits(token):
    with pytest.raises(MumisError):
        parse_ids(f"1\n{token}\n".encode(), "ids.txt")


# ------------------------------------------------------------------------------------------------ JSON loaders
def _write(tmp_path, name, data: bytes):
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.fixture(scope="module")
def valid(tmp_path_factory, digits_bundle):
    from mumis.data import full_class, make_split

    d = tmp_path_factory.mktemp("formats")
    split = make_split(digits_bundle, seed=0)
    train, _ = split.materialise(digits_bundle)
    return {"split": json.loads(split.save(d / "split.json").read_text()),
            "forget": json.loads(full_class(train, split, 3).save(d / "forget.json").read_text())}


def _rehash(payload: dict) -> dict:
    body = {k: v for k, v in payload.items() if k not in ("kind", "sha256")}
    try:
        return {**payload, "sha256": _digest(body)}
    except (TypeError, ValueError):  # NaN-free canonical JSON is what a real file would hold
        return payload


@FUZZ
@given(data=st.binary(max_size=120))
def test_split_and_forget_loaders_on_arbitrary_bytes(tmp_path, data):
    path = _write(tmp_path, "f.json", data)
    _only_mumis_errors(lambda: Split.load(path))
    _only_mumis_errors(lambda: ForgetSet.load(path))


@FUZZ
@given(which=st.sampled_from(["split", "forget"]), field=st.text(max_size=12) | st.sampled_from(
    ["dataset", "seed", "test_from", "train", "test", "indices", "params", "request", "split_sha256",
     "forgotten_class", "forgotten_classes", "data_fingerprint", "kind", "sha256"]), value=json_values,
       drop=st.booleans())
def test_split_and_forget_loaders_on_arbitrary_json_fields(tmp_path, valid, which, field, value, drop):
    """A valid file with one field replaced by (or emptied of) arbitrary JSON, re-hashed so that the schema and
    content checks, not the hash, must catch it."""
    payload = dict(valid[which])
    if drop:
        payload.pop(field, None)
    else:
        payload[field] = value
    path = _write(tmp_path, "f.json", json.dumps(_rehash(payload)).encode())
    loader = Split if which == "split" else ForgetSet
    _only_mumis_errors(lambda: loader.load(path))


@FUZZ
@given(value=json_values)
def test_loaders_on_arbitrary_json_documents(tmp_path, value):
    text = json.dumps(value).encode()
    path = _write(tmp_path, "doc.json", text)
    for loader in (Split.load, ForgetSet.load, load_manifest):
        _only_mumis_errors(lambda loader=loader: loader(path))
    _write(tmp_path, "m.safetensors", b"")
    _write(tmp_path, "m.json", text)
    _only_mumis_errors(lambda: read_meta(tmp_path / "m.safetensors"))


SIDECAR = {"architecture": "small_cnn", "num_classes": 10, "in_channels": 1, "dataset": "digits",
           "classes": [str(i) for i in range(10)], "split_sha256": "0" * 64, "role": "original", "seed": 0,
           "forget_sha256": None, "recipe": {}, "method": None, "accuracies": {}, "wall_s": 1.0, "processes": 1,
           "device": "cpu"}


@FUZZ
@given(field=st.sampled_from(sorted(SIDECAR)) | st.text(max_size=10), value=json_values, drop=st.booleans())
def test_sidecar_loader_on_arbitrary_fields(tmp_path, field, value, drop):
    meta = dict(SIDECAR)
    if drop:
        meta.pop(field, None)
    else:
        meta[field] = value
    _write(tmp_path, "m.safetensors", b"")
    _write(tmp_path, "m.json", json.dumps(meta).encode())
    loaded = _only_mumis_errors(lambda: read_meta(tmp_path / "m.safetensors"))
    if loaded is not None:  # what loads is what the code downstream may rely on
        assert type(loaded.num_classes) is int and 1 <= loaded.num_classes <= 100_000 and type(loaded.seed) is int


def _manifest() -> dict:
    body = {"mumis_manifest": 2, "created": "2026-01-01T00:00:00+00:00",
            "input": {"path": "/m.safetensors", "sha256": "a" * 64},
            "data": {"spec": "/split.json", "dataset": "digits", "split_sha256": "b" * 64},
            "request": {"kind": "ids", "path": "/ids.txt", "file_sha256": "c" * 64, "ids_sha256": "d" * 64, "count": 3,
                        "duplicates_dropped": 0, "forget_sha256": "e" * 64},
            "output": {"path": "/o.safetensors", "sha256": "f" * 64, "sidecar_sha256": "0" * 64},
            "method": {"name": "mumis", "options": {"lr": 0.05}, "data_read": ["forget"], "request": "samples",
                       "why": "auto"},
            "evaluation_read": ["forget", "retain", "test"], "stop": {"reason": "membership", "steps": 3, "trace": []},
            "before": {"fa": 100.0, "mia": 10.0}, "after": {"fa": 90.0, "mia": 20.0}, "wall_s": 1.5,
            "evidence": {"calibration": "x", "before": {"member_like": 50.0},
                         "after": {"member_like": 5.0, "scores": [0.1, -1.2]}},
            "versions": {"torch": "2"}, "git_sha": None}
    return json.loads(manifest_text(body, str))


def test_the_fuzzed_manifest_template_is_valid(tmp_path):
    assert load_manifest(_write(tmp_path, "m.json", json.dumps(_manifest()).encode()))["request"]["count"] == 3


@FUZZ
@given(section=st.sampled_from(["input", "data", "request", "output", "method", "stop", "before", "after", "digest",
                                "evidence"]),
       field=st.text(max_size=10) | st.sampled_from(["path", "sha256", "kind", "count", "class", "fa", "steps",
                                                      "options", "fields", "body_sha256", "spec"]),
       value=json_values, drop=st.booleans())
@example(section="request", field="kind", value=[], drop=False)  # once a TypeError (an unhashable kind)
def test_manifest_loader_on_arbitrary_fields(tmp_path, section, field, value, drop):
    manifest = _manifest()
    if drop:
        manifest[section].pop(field, None)
    else:
        manifest[section][field] = value
    path = _write(tmp_path, "m.json", json.dumps(manifest).encode())
    loaded = _only_mumis_errors(lambda: load_manifest(path))
    if loaded is not None:  # verify reads these without further checks
        assert isinstance(loaded["before"]["fa"], (int, float)) and isinstance(loaded["request"]["forget_sha256"], str)

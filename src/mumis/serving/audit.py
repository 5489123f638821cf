"""Serving a deletion request safely: the request files, checks on every input, and the audit manifest.

The manifest (JSON, written beside the new checkpoint) makes a deletion auditable after the fact: SHA-256 of the
input checkpoint, of the forget-id file (and of the canonical sorted id list), of the output checkpoint and its
sidecar; the method, its options and the package versions; the stop trace; forget accuracy and MIA before and
after; the wall time. Its last field, ``digest``, seals the rest: the SHA-256 of the body and one digest per field,
so ``mumis verify`` names any field edited after the fact (it is tamper-evident against edits, not a signature:
whoever can rewrite the file can recompute the digests — the recomputed metrics and file hashes still hold).
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from mumis.data import DatasetBundle, Split, load_dataset, make_split
from mumis.errors import MumisError
from mumis.outputs import plan_outputs
from mumis.schema import (
    ANY_LIST,
    BOOL,
    INDEX,
    INT,
    NUMBER,
    OBJECT,
    SHA256,
    STR,
    Kind,
    check_fields,
    list_of,
    one_of,
    optional,
    read_json,
)

MANIFEST_VERSION = 2  # 2: the body is sealed by ``digest`` and carries per-sample evidence
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")
_ID = re.compile(r"[0-9]{1,18}")  # ASCII digits only: int() would also take '1_000' and other scripts' digits


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def ids_sha256(ids: list[int]) -> str:
    """Hash of the canonical request: the sorted, de-duplicated ids, one per line."""
    return hashlib.sha256("\n".join(str(i) for i in sorted(set(ids))).encode()).hexdigest()


def refuse_pickle(path: Path) -> None:
    """Pickle-based checkpoints (torch.save) can run code when loaded: mumis never opens them."""
    head = b""
    if path.is_file():
        with open(path, "rb") as f:  # four bytes tell pickle / zip from safetensors; no need to read the weights
            head = f.read(4)
    if path.suffix.lower() in _PICKLE_SUFFIXES or head[:2] == b"PK" or head[:1] == b"\x80":
        raise MumisError(
            f"{path} looks like a pickle / torch.save checkpoint; mumis never unpickles files (loading one can run "
            "arbitrary code). Convert it once, where you trust the file: `python -c \"import torch; from "
            "safetensors.torch import save_file; save_file(torch.load('model.pt', weights_only=True), "
            "'model.safetensors')\"`, then write its sidecar with mumis.training.save_checkpoint (or retrain with "
            "`mumis train`).")


def parse_ids(data: bytes, source: str, csv_format: bool = False) -> tuple[list[int], int]:
    """Training-pool ids from the bytes of a request file: UTF-8 (a byte-order mark is fine), whitespace-separated
    text, or CSV (first column; a header row is skipped). An id is written with the ASCII digits 0-9 only. Duplicates
    are dropped (the caller reports how many). Returns (ids in first-seen order, dropped); anything else is one
    MumisError naming the file, the entry and the fix. Whether each id is in the split is the split's check."""
    fix = "write one sample id (digits 0-9) per line, as UTF-8 text or CSV"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise MumisError(f"{source} is not UTF-8 text (bad byte at offset {err.start}); {fix}") from None
    if "\x00" in text:
        raise MumisError(f"{source} contains NUL characters, so it is not a text file; {fix}")
    if csv_format:
        try:
            rows = [r for r in csv.reader(io.StringIO(text)) if r and r[0].strip()]
        except csv.Error as err:
            raise MumisError(f"{source} is not readable CSV ({err}); {fix}") from None
        if rows and not _ID.fullmatch(rows[0][0].strip()):
            rows = rows[1:]  # header
        tokens = [r[0].strip() for r in rows]
    else:
        tokens = text.split()
    ids = []
    for k, token in enumerate(tokens):
        if not _ID.fullmatch(token):
            shown = token if len(token) <= 24 else token[:21] + "…"
            what = "is too large to be a sample id" if token.isascii() and token.isdigit() else "is not a sample id"
            raise MumisError(f"{source}: entry {k + 1} ({shown!r}) {what}; {fix}")
        ids.append(int(token))
    if not ids:
        raise MumisError(f"{source} names no sample ids: the forget set would be empty; {fix}")
    unique = list(dict.fromkeys(ids))
    return unique, len(ids) - len(unique)


def read_ids(path: Path) -> tuple[list[int], int]:
    """:func:`parse_ids` on a file (``.csv``: CSV, anything else: whitespace-separated text)."""
    if not path.is_file():
        raise MumisError(f"ids file {path} does not exist")
    return parse_ids(path.read_bytes(), str(path), csv_format=path.suffix.lower() == ".csv")


def resolve_data(spec: str, data_dir: Optional[Path]) -> tuple[DatasetBundle, Split]:
    """``--data``: a split file written by `mumis split`, or ``DATASET[:SEED]`` (that dataset's default split)."""
    path = Path(spec)
    if path.suffix == ".json":
        split = Split.load(path)
        return load_dataset(split.dataset, data_dir), split
    name, _, seed = spec.partition(":")
    if seed and not _ID.fullmatch(seed):
        raise MumisError(f"--data {spec!r}: the part after ':' must be a seed (digits 0-9)")
    bundle = load_dataset(name, data_dir)
    return bundle, make_split(bundle, int(seed) if seed else 0)


def output_files(out: Path, trace: bool = False) -> list[Path]:
    """Every file serving a request writes: checkpoint, sidecar, manifest, and the trace's JSON and PNG."""
    files = [out, out.with_suffix(".json"), manifest_path(out)]
    if trace:
        stem = out.with_suffix(".trace")
        files += [stem.with_name(stem.name + ".json"), stem.with_name(stem.name + ".png")]
    return files


def check_output(out: Path, inputs: list[Optional[Path]], overwrite: bool, trace: bool = False) -> list[Path]:
    """Everything about the outputs that can fail, checked before any work is done; returns the planned files."""
    if out.suffix != ".safetensors":
        raise MumisError(f"--out must end in .safetensors, got {out}")
    return plan_outputs(output_files(out, trace), inputs, overwrite)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def manifest_path(out: Path) -> Path:
    return out.with_suffix(".manifest.json")


# ------------------------------------------------------------------------------------------------ the manifest
def _canonical(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()


def _leaves(value, prefix: str = "") -> dict[str, object]:
    """Dotted field name → value, down to every non-object value (a list is one field)."""
    if isinstance(value, dict) and value:
        out = {}
        for k, v in value.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): value}


def seal(body: dict) -> dict:
    """The ``digest`` field for a manifest body (everything but ``digest``, as it reads back from JSON)."""
    fields = {name: hashlib.sha256(_canonical(v)).hexdigest()[:16] for name, v in _leaves(body).items()}
    return {"body_sha256": hashlib.sha256(_canonical(body)).hexdigest(), "fields": fields}


def edited_fields(manifest: dict) -> list[str]:
    """Fields of the body that no longer match the digest written last ([] when the body is as sealed)."""
    body = {k: v for k, v in manifest.items() if k != "digest"}
    recorded, now_sealed = manifest["digest"], seal(body)
    if recorded["body_sha256"] == now_sealed["body_sha256"]:
        return []
    before, after = recorded["fields"], now_sealed["fields"]
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    return changed or ["digest"]  # the body hashes differently but every field matches: the digest itself was edited


def manifest_text(body: dict, default) -> str:
    """The manifest file's text: the body as it will read back from JSON, then its ``digest``."""
    body = json.loads(json.dumps(body, default=default))
    return json.dumps({**body, "digest": seal(body)}, indent=1)


_METRICS = {"fa": NUMBER, "mia": NUMBER}
MANIFEST_SCHEMA = {
    "mumis_manifest": Kind(f"the manifest version {MANIFEST_VERSION}", lambda v: v == MANIFEST_VERSION),
    "created": STR,
    "input": {"path": STR, "sha256": SHA256},
    "data": {"spec": STR, "dataset": STR, "split_sha256": SHA256},
    "request": {"kind": one_of("ids", "class", "forget_file"), "forget_sha256": SHA256, "count": INT, "path": STR,
                "file_sha256": SHA256, "ids_sha256": SHA256, "duplicates_dropped": INT, "class": INT,
                "positions": list_of(INDEX)},
    "output": {"path": STR, "sha256": SHA256, "sidecar_sha256": SHA256},
    "method": {"name": STR, "options": OBJECT, "data_read": list_of(STR), "request": one_of("class", "samples"),
               "why": STR,
               # a sample request on a model that earlier sample requests produced runs on the chain's first model,
               # for every sample forgotten so far (see ``request_chain``)
               "served_from": {"path": STR, "sha256": SHA256, "earlier_requests": INT, "forget_count": INT,
                               "forget_sha256": SHA256}},
    "evaluation_read": list_of(STR),
    # heldout_cost: points of held-out accuracy the request cost (methods that guard it), which later requests on
    # the output budget against; curvature_from_cache: newton read its held-out curvature back (an earlier request
    # on the same model computed it) instead of computing it; atypical_forget_set: D_f was classified worse than
    # held-out data beyond noise, so newton's scan ran to its held-out guard
    "stop": {"reason": STR, "steps": INT, "trace": ANY_LIST, "heldout_cost": optional(NUMBER),
             "curvature_from_cache": BOOL, "atypical_forget_set": BOOL},
    "before": _METRICS, "after": _METRICS,
    "evidence": {"calibration": STR, "before": {"member_like": NUMBER},
                 "after": {"member_like": NUMBER, "scores": list_of(NUMBER)}},
    "wall_s": NUMBER, "versions": OBJECT, "git_sha": optional(STR),
    "digest": {"body_sha256": SHA256, "fields": OBJECT},
}
# the request fields each kind of request does not have
_NOT_IN = {"class": ("path", "file_sha256", "ids_sha256", "duplicates_dropped", "positions"), "ids": ("class",),
           "forget_file": ("class", "ids_sha256", "duplicates_dropped")}


def load_manifest(path: Path) -> dict:
    """Read and schema-check an audit manifest: a malformed one is one MumisError (exit 2), never a KeyError."""
    fix = "pass the manifest `mumis forget` wrote (serve the request again if it is lost)."
    if not path.is_file():
        raise MumisError(f"manifest {path} does not exist")
    manifest = read_json(path, fix)
    if not isinstance(manifest, dict) or "mumis_manifest" not in manifest:
        raise MumisError(f"{path} is not a mumis audit manifest; {fix}")
    if manifest["mumis_manifest"] != MANIFEST_VERSION:
        raise MumisError(f"{path} is a version {str(manifest['mumis_manifest'])[:20]!r} manifest; this mumis verifies "
                         f"version {MANIFEST_VERSION} (sealed by a digest): serve the request again to get one.")
    request = manifest.get("request")
    kind = request.get("kind") if isinstance(request, dict) else None
    absent = _NOT_IN.get(kind, ()) if isinstance(kind, str) else ()
    for key in absent:
        if key in request:
            raise MumisError(f"{path}: field 'request.{key}' does not belong to a {kind!r} request; {fix}")
    return check_fields(manifest, MANIFEST_SCHEMA, str(path), fix, optional_fields=tuple(
        [f"request.{k}" for k in absent] + ["request.ids_sha256", "request.duplicates_dropped", "request.positions",
                                           "method.served_from", "stop.heldout_cost", "stop.curvature_from_cache",
                                           "stop.atypical_forget_set"]))


def request_chain(checkpoint: Path, split_sha256: str, limit: int = 10_000) -> list[dict]:
    """The manifests of the deletion requests that produced ``checkpoint``, newest first: each model's manifest names
    the model it came from; the walk follows them while the manifest is as sealed, matches the file it describes and
    names the same split (nothing further back is comparable)."""
    chain, seen = [], set()
    path = Path(checkpoint)
    while len(chain) < limit:
        manifest = manifest_path(path)
        if not manifest.is_file() or manifest.resolve() in seen:
            break
        seen.add(manifest.resolve())
        try:
            body = load_manifest(manifest)
        except MumisError:
            break  # an unreadable or older manifest: the history before it is unknown
        if (edited_fields(body) or body["output"]["sha256"] != file_sha256(path)
                or body["data"]["split_sha256"] != split_sha256):
            break
        chain.append(body)
        path = Path(body["input"]["path"])
    return chain


def heldout_spent(chain: list[dict]) -> float:
    """Points of held-out accuracy the requests of a :func:`request_chain` cost: the sum of each request's
    ``stop.heldout_cost`` (a request that raised held-out accuracy refunds it; the total is at least 0)."""
    return max(sum(body["stop"].get("heldout_cost") or 0.0 for body in chain), 0.0)


def forgotten_before(chain: list[dict]) -> int:
    """How many training samples the requests of a :func:`request_chain` removed: the distinct positions of its sample
    requests plus the size of its class requests."""
    positions = {p for body in chain for p in body["request"].get("positions", [])}
    return len(positions) + sum(body["request"]["count"] for body in chain if body["request"]["kind"] == "class")

"""Serving a deletion request safely: request files, checks on every input, and the audit manifest.

The manifest (JSON, written beside the new checkpoint) makes a deletion auditable after the fact: SHA-256 of the
input checkpoint, of the forget-id file (and of the canonical sorted id list), of the output checkpoint and its
sidecar; the method, its options and the package versions; the stop trace; forget accuracy and MIA before and
after; the wall time. ``mumis verify MANIFEST`` re-hashes the files and recomputes the forget metrics.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from mumis.data import DatasetBundle, Split, load_dataset, make_split
from mumis.errors import MumisError

MANIFEST_VERSION = 1
_PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt")


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


def read_ids(path: Path) -> tuple[list[int], int]:
    """Training-pool ids from a text file (whitespace separated) or a CSV file (first column; a header row is
    skipped). Duplicates are dropped (the caller reports how many). Returns (ids in first-seen order, dropped)."""
    if not path.is_file():
        raise MumisError(f"--ids file {path} does not exist")
    text = path.read_text()
    if path.suffix.lower() == ".csv":
        rows = [r for r in csv.reader(io.StringIO(text)) if r and r[0].strip()]
        if rows and not rows[0][0].strip().lstrip("-").isdigit():
            rows = rows[1:]  # header
        tokens = [r[0].strip() for r in rows]
    else:
        tokens = text.split()
    ids = []
    for k, token in enumerate(tokens):
        try:
            ids.append(int(token))
        except ValueError:
            raise MumisError(f"{path}: entry {k + 1} ({token!r}) is not an integer sample id") from None
    if not ids:
        raise MumisError(f"{path} names no sample ids: the forget set would be empty")
    unique = list(dict.fromkeys(ids))
    return unique, len(ids) - len(unique)


def resolve_data(spec: str, data_dir: Optional[Path]) -> tuple[DatasetBundle, Split]:
    """``--data``: a split file written by `mumis split`, or ``DATASET[:SEED]`` (that dataset's default split)."""
    path = Path(spec)
    if path.suffix == ".json":
        split = Split.load(path)
        return load_dataset(split.dataset, data_dir), split
    name, _, seed = spec.partition(":")
    try:
        seed_value = int(seed) if seed else 0
    except ValueError:
        raise MumisError(f"--data {spec!r}: the part after ':' must be a seed (an integer)") from None
    bundle = load_dataset(name, data_dir)
    return bundle, make_split(bundle, seed_value)


def check_output(out: Path, inputs: list[Path], overwrite: bool) -> None:
    """Everything about the output that can fail, checked before any work is done."""
    if out.suffix != ".safetensors":
        raise MumisError(f"--out must end in .safetensors, got {out}")
    for path in inputs:
        if path is not None and out.resolve() == path.resolve():
            raise MumisError(f"--out must differ from the input {path}: mumis never overwrites its inputs")
    if out.exists() and not overwrite:
        raise MumisError(f"{out} already exists; pass --overwrite to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise MumisError(f"cannot write {out}: {existing} is a file, not a directory; choose another --out")
    try:  # a real write probe: permission bits say nothing for root or read-only mounts
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".mumis-write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise MumisError(f"cannot write to {parent} ({err.strerror}); choose a writable --out") from None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def manifest_path(out: Path) -> Path:
    return out.with_suffix(".manifest.json")


def load_manifest(path: Path) -> dict:
    if not path.is_file():
        raise MumisError(f"manifest {path} does not exist")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise MumisError(f"{path} is not valid JSON ({err})") from None
    if manifest.get("mumis_manifest") != MANIFEST_VERSION:
        raise MumisError(f"{path} is not a mumis audit manifest (version {MANIFEST_VERSION})")
    return manifest

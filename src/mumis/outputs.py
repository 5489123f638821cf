"""Every file a command will write, planned and checked before any work starts.

A command lists its outputs (a checkpoint brings its sidecar, a deletion its manifest and trace files) and its
inputs; :func:`plan_outputs` refuses the plan, in one line, if an output is an input (by name, through a symlink or
as a hard link), already exists without ``overwrite``, is a directory, or lies where nothing can be written. The
writes themselves stay atomic (temporary file, then rename), so a refused or failed run leaves every file as it was.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Optional

from mumis.errors import MumisError


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _writable_dir(path: Path, flag: str) -> None:
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise MumisError(f"cannot write into {path}: {existing} is a file, not a directory; choose another {flag}")
    try:  # a real write probe: permission bits say nothing for root or read-only mounts
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".mumis-write-probe.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise MumisError(f"cannot write to {path} ({err.strerror}); choose a writable {flag}") from None


def plan_outputs(outputs: Iterable[Path], inputs: Iterable[Optional[Path]] = (), overwrite: bool = False,
                 flag: str = "--out") -> list[Path]:
    """Check every planned output against the inputs and the file system; return the outputs."""
    outputs = [Path(p) for p in outputs]
    inputs = [Path(p) for p in inputs if p is not None]
    for out in outputs:
        for source in inputs:
            if _same_file(out, source):
                raise MumisError(f"{flag} would write {out}, which is the input {source}: mumis never overwrites its "
                                 f"inputs; choose another {flag}")
        if out.is_dir():
            raise MumisError(f"{out} is a directory, but {flag} would write a file there; choose another {flag}")
        if (out.exists() or out.is_symlink()) and not overwrite:
            raise MumisError(f"{out} already exists; pass --overwrite to replace it (or choose another {flag})")
    for parent in dict.fromkeys(out.parent for out in outputs):
        _writable_dir(parent, flag)
    return outputs


def plan_folder(folder: Path, names: Iterable[str], inputs: Iterable[Optional[Path]] = (), overwrite: bool = False,
                flag: str = "--out") -> list[Path]:
    """The same plan for a command that writes named files into one folder."""
    if folder.exists() and not folder.is_dir():
        raise MumisError(f"{flag} {folder} is a file, not a folder; choose another {flag}")
    return plan_outputs([folder / n for n in names], inputs, overwrite, flag)

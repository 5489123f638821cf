"""One schema check for every JSON file mumis reads (split, forget set, checkpoint sidecar, audit manifest).

A file that is not what its reader expects fails with one line naming the file, the field and the fix — never a
``KeyError`` or ``TypeError`` from deep inside the code that would have used the field. Kinds are plain predicates
with a description for the message; a spec maps field names to kinds, or to a nested spec for a JSON object.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Mapping, Union

from mumis.errors import MumisError

INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Kind:
    describe: str
    accepts: Callable[[object], bool]


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


INT = Kind("an integer", lambda v: _is_int(v) and abs(v) <= INT64_MAX)
POSITIVE_INT = Kind("an integer ≥ 1", lambda v: _is_int(v) and 1 <= v <= INT64_MAX)
INDEX = Kind("a sample index (an integer ≥ 0)", lambda v: _is_int(v) and 0 <= v <= INT64_MAX)
NUMBER = Kind("a finite number", lambda v: (_is_int(v) or isinstance(v, float)) and math.isfinite(v))
STR = Kind("a string", lambda v: isinstance(v, str))
BOOL = Kind("true or false", lambda v: isinstance(v, bool))
OBJECT = Kind("a JSON object", lambda v: isinstance(v, dict))
ANY_LIST = Kind("a list", lambda v: isinstance(v, list))
SHA256 = Kind("a SHA-256 hex digest", lambda v: isinstance(v, str) and len(v) == 64
              and all(c in "0123456789abcdef" for c in v))


def bounded_int(low: int, high: int) -> Kind:
    """An integer in [low, high]: a sidecar's class count sizes a layer, so a huge one must fail here, not in malloc."""
    return Kind(f"an integer from {low} to {high}", lambda v: _is_int(v) and low <= v <= high)


def optional(kind: Kind) -> Kind:
    return Kind(f"{kind.describe} or null", lambda v: v is None or kind.accepts(v))


def list_of(kind: Kind) -> Kind:
    return Kind(f"a list of {kind.describe.removeprefix('a ').removeprefix('an ')}s",
                lambda v: isinstance(v, list) and all(kind.accepts(x) for x in v))


def one_of(*values) -> Kind:
    return Kind(f"one of {', '.join(map(repr, values))}", lambda v: isinstance(v, str) and v in values)


Spec = Mapping[str, Union[Kind, "Spec"]]


def read_json(path, fix: str):
    """Parse a JSON file (UTF-8, a byte-order mark allowed); anything unreadable is one MumisError naming the file."""
    import json

    try:
        return json.loads(path.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError:
        raise MumisError(f"{path} is not UTF-8 text; {fix}") from None
    except (json.JSONDecodeError, RecursionError) as err:
        raise MumisError(f"{path} is not valid JSON ({str(err)[:80]}); {fix}") from None


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def check_fields(payload, spec: Spec, source: str, fix: str, optional_fields: tuple[str, ...] = (),
                 allow_unknown: bool = False, _prefix: str = "") -> dict:
    """Check ``payload`` (parsed JSON) against ``spec``; return it unchanged, or raise one :class:`MumisError`
    naming ``source``, the dotted field and ``fix``. Nested specs are checked recursively."""
    where = f"field {_prefix.rstrip('.')!r}" if _prefix else "the top level"
    if not isinstance(payload, dict):
        raise MumisError(f"{source}: {where} must be a JSON object, got {type(payload).__name__}; {fix}")
    for name, kind in spec.items():
        dotted = _prefix + name
        if name not in payload:
            if dotted in optional_fields:
                continue
            raise MumisError(f"{source}: field {dotted!r} is missing; {fix}")
        value = payload[name]
        if isinstance(kind, Kind):
            if not kind.accepts(value):
                raise MumisError(f"{source}: field {dotted!r} must be {kind.describe}, got {_shown(value)}; {fix}")
        else:
            check_fields(value, kind, source, fix, optional_fields, allow_unknown, dotted + ".")
    if not allow_unknown:
        unknown = sorted(set(payload) - set(spec), key=str)
        if unknown:
            raise MumisError(f"{source}: unknown field {_prefix + str(unknown[0])!r}; {fix}")
    return payload


def hint_kind(hint) -> Kind | None:
    """The kind for a dataclass field's type hint (int, float, str, bool, Optional/tuple of those); None: unchecked."""
    import types
    import typing

    args = [a for a in typing.get_args(hint) if a is not type(None)]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        inner = hint_kind(args[0])
        return optional(inner) if inner else None
    if origin in (tuple, list) and args:
        inner = hint_kind(args[0])
        return list_of(inner) if inner else None
    return {int: INT, float: NUMBER, str: STR, bool: BOOL, dict: OBJECT}.get(hint)

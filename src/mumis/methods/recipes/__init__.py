"""Tuned configurations: for a method × request task kind × dataset family, the options a tuning study
(``mumis tune``) found closest to a retrained model. A recipe file is versioned JSON; ``tuned.json`` ships with the
package and is loaded by name (``recipe = "tuned"`` on a grid's [[methods]] entry, ``mumis forget --recipe tuned``).
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mumis.errors import MumisError

RECIPE_DIR = Path(__file__).parent
FORMAT = "mumis-recipe"


def dataset_family(dataset: str) -> str:
    """The family a recipe is keyed by: a dataset and its super-class view share one; the MNIST subsets are "mnist"."""
    name = dataset.removesuffix("_super")
    if name in ("mnist", "mnist5k"):
        return "mnist"
    if name in ("cifar10", "cifar100"):
        return "cifar"
    return name


@dataclass(frozen=True)
class RecipeEntry:
    method: str
    base: dict  # the options the method ran with besides the tuned ones (e.g. {"variant": "paper"})
    task: str  # the grid's task kind: full_class | sub_class | random | sequential
    family: str
    options: dict  # the tuned options
    tuning: dict = field(default_factory=dict)  # study, storage, trials, best and default gap, cost, commit

    def matches(self, method: str, base: dict, task: str, family: str) -> bool:
        given = {k: v for k, v in base.items() if k not in self.options}
        return (self.method, self.task, self.family) == (method, task, family) and given == self.base


@dataclass(frozen=True)
class Recipe:
    name: str
    version: int
    entries: tuple[RecipeEntry, ...]

    def options(self, method: str, base: dict, task: str, dataset: str) -> dict:
        """The tuned options for ``method`` (run with ``base``) on ``task`` and ``dataset``'s family; a missing
        entry is an error, never a silent default."""
        family = dataset_family(dataset)
        for entry in self.entries:
            if entry.matches(method, base, task, family):
                return dict(entry.options)
        have = sorted({_describe(e.method, e.base, e.task, e.family) for e in self.entries})
        raise MumisError(f"recipe {self.name!r} has no entry for {_describe(method, base, task, family)}; tune it "
                         f"(mumis tune {method} GRID --save {self.name}) or run without the recipe; it has: "
                         f"{have or 'nothing'}")


def _describe(method: str, base: dict, task: str, family: str) -> str:
    options = f" {json.dumps(base, sort_keys=True)}" if base else ""
    return f"{method}{options} × {task} × {family}"


def recipe_path(name_or_path: str | Path) -> Path:
    """A bare name is a recipe shipped with the package (``tuned`` → recipes/tuned.json); anything else is a path."""
    text = str(name_or_path)
    if "/" not in text and not text.endswith(".json"):
        return RECIPE_DIR / f"{text}.json"
    return Path(text)


def load_recipe(name_or_path: str | Path) -> Recipe:
    path = recipe_path(name_or_path)
    if not path.is_file():
        shipped = sorted(p.stem for p in RECIPE_DIR.glob("*.json"))
        raise MumisError(f"no recipe {str(name_or_path)!r} ({path} does not exist); shipped recipes: {shipped}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        entries = tuple(RecipeEntry(**e) for e in raw["entries"])
        return Recipe(str(name_or_path), int(raw["version"]), entries)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise MumisError(f"recipe {path} is malformed ({err}); regenerate it with mumis tune --save") from None


def save_entry(name_or_path: str | Path, entry: RecipeEntry) -> Path:
    """Add ``entry`` to the recipe file (replacing the one for the same method, base, task and family) and bump the
    file's version; written atomically."""
    path = recipe_path(name_or_path)
    entries: list[Any] = []
    version = 0
    if path.is_file():
        current = load_recipe(path)
        version = current.version
        entries = [e for e in current.entries if not e.matches(entry.method, entry.base, entry.task, entry.family)]
    entries.append(entry)
    entries.sort(key=lambda e: (e.method, json.dumps(e.base, sort_keys=True), e.task, e.family))
    text = json.dumps({"format": FORMAT, "version": version + 1, "entries": [asdict(e) for e in entries]}, indent=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text + "\n")
    os.replace(tmp, path)
    return path

"""A benchmark grid: datasets × models × tasks × methods × seeds, described in a TOML file.

```toml
name = "demo"
datasets = ["mnist5k"]
models = ["small_cnn"]
seeds = [0, 1, 2]

[recipe]                      # the TrainRecipe of every original and retrain model (fields of TrainRecipe)
epochs = 20

[recipes.fashion_mnist]       # optional per-dataset overrides of [recipe]
epochs = 8

[[tasks]]
kind = "full_class"           # full_class | sub_class | random | sequential (see mumis.data.tasks)
target = 3
datasets = ["mnist5k"]        # optional: run this task on these of the grid's datasets only

[[methods]]
name = "mumis"
task_options = { random = { request = "samples" } }   # options added for one task kind only

[[methods]]
name = "ga"
label = "ga (tuned)"
recipe = "tuned"              # the options `mumis tune` found for this task kind and dataset family (methods/recipes)

[suite]                       # fields of mumis.metrics.SuiteOptions
relearn_max_steps = 200
```

A top-level ``holdout = 0.2`` holds out that stratified share of each dataset's training pool as its test set, even
where the dataset has an official test set (the split ``mumis split --holdout`` makes): held-out data drawn like the
training data, which a stop that compares D_f with held-out data needs when the official test set is harder.

Every (dataset, model, task, seed) contributes two reference cells (``original``, ``retrain``) and one cell per
method; a cell's key is the SHA-256 of everything that determines its result, so a grid that is edited and rerun
recomputes only the cells whose configuration changed.
"""
from __future__ import annotations

import hashlib
import json
import tomllib
import typing
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Optional

from mumis.data import TaskSpec, parse_task
from mumis.errors import MumisError
from mumis.methods import method_options
from mumis.methods.recipes import load_recipe
from mumis.metrics import SuiteOptions
from mumis.schema import INT, OBJECT, STR, Kind, hint_kind, list_of
from mumis.training import TrainRecipe

REFERENCE_ROLES = ("original", "retrain")


@dataclass(frozen=True)
class MethodEntry:
    name: str
    label: str = ""  # the row's name (default: the method's name)
    options: tuple = ()  # sorted (key, value) pairs for every task
    task_options: tuple = ()  # (task kind, sorted (key, value) pairs)
    recipe: str = ""  # a tuned recipe (methods/recipes): its options for the task kind and dataset, under these

    def resolved(self, kind: str, dataset: str) -> "MethodEntry":
        """This entry with its recipe's tuned options for (kind, dataset) filled in; explicit options win."""
        if not self.recipe:
            return self
        tuned = load_recipe(self.recipe).options(self.name, self.options_for(kind), kind, dataset)
        return replace(self, options=tuple(sorted({**tuned, **dict(self.options)}.items())))

    def options_for(self, kind: str) -> dict:
        return {**dict(self.options), **dict(dict(self.task_options).get(kind, ()))}

    @property
    def row_label(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class Cell:
    """One unit of work and one entry in the results database: a reference model or a method run."""

    dataset: str  # as the task uses it (sub-class tasks: the super-class view)
    model: str
    task: TaskSpec
    seed: int
    role: str  # "original", "retrain" or "method"
    method: Optional[MethodEntry] = None
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    suite: SuiteOptions = field(default_factory=SuiteOptions)
    holdout: Optional[float] = None  # test share drawn from the training pool; None: the official test set, if any

    @property
    def label(self) -> str:
        return self.method.row_label if self.method else self.role

    @property
    def group(self) -> tuple:
        """Cells sharing data, split, references: (dataset, model, task, seed, recipe, holdout)."""
        return (self.dataset, self.model, json.dumps(self.task.to_dict(), sort_keys=True), self.seed,
                json.dumps(self.recipe.to_dict(), sort_keys=True), self.holdout)

    def describe(self) -> dict:
        out = {"dataset": self.dataset, "model": self.model, "task": self.task.to_dict(), "seed": self.seed,
               "role": self.role, "recipe": self.recipe.to_dict(), "suite": self.suite.to_dict()}
        if self.holdout is not None:  # absent when unused, so the key of every cell on an official split stays put
            out["holdout"] = self.holdout
        if self.method:
            out["method"] = {"name": self.method.name, "label": self.method.row_label,
                             "options": self.method.options_for(self.task.kind)}
        return out

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class GridTask:
    task: TaskSpec
    datasets: tuple[str, ...] = ()  # run on these of the grid's datasets only (empty: all of them)

    def applies_to(self, dataset: str) -> bool:
        return not self.datasets or dataset in self.datasets


@dataclass(frozen=True)
class GridSpec:
    name: str
    datasets: tuple[str, ...]
    models: tuple[str, ...]
    tasks: tuple[GridTask, ...]
    methods: tuple[MethodEntry, ...]
    seeds: tuple[int, ...] = (0,)
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    recipes: tuple = ()  # (dataset, TrainRecipe) overrides
    suite: SuiteOptions = field(default_factory=SuiteOptions)
    data_dir: Optional[str] = None
    holdout: Optional[float] = None  # see the module docstring

    def recipe_for(self, dataset: str) -> TrainRecipe:
        return dict(self.recipes).get(dataset, self.recipe)

    def cells(self) -> list[Cell]:
        """Every cell, grouped so that cells sharing references are adjacent (references first)."""
        out = []
        for dataset in self.datasets:
            for model in self.models:
                for entry in (t for t in self.tasks if t.applies_to(dataset)):
                    task = entry.task
                    for seed in self.seeds:
                        common = dict(dataset=task.dataset_for(dataset), model=model, task=task, seed=seed,
                                      recipe=self.recipe_for(task.dataset_for(dataset)),
                                      suite=SuiteOptions(**{**asdict(self.suite), "seed": seed}), holdout=self.holdout)
                        out += [Cell(role=role, **common) for role in REFERENCE_ROLES]
                        out += [Cell(role="method", method=m.resolved(task.kind, common["dataset"]), **common)
                                for m in self.methods]
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def _typed(cls, table: dict, what: str):
    if not isinstance(table, dict):
        raise MumisError(f"[{what}] must be a table of {cls.__name__} fields, got {table!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(table) - known)
    if unknown:
        raise MumisError(f"unknown key(s) {unknown} in [{what}]; allowed: {sorted(known)}")
    hints = typing.get_type_hints(cls)
    for key, value in table.items():
        kind = hint_kind(hints[key])
        if kind is not None and not kind.accepts(value):
            raise MumisError(f"[{what}] {key} must be {kind.describe}, got {value!r}")
    try:
        return cls(**table)
    except (ValueError, TypeError) as err:
        raise MumisError(f"[{what}]: {err}") from None


def _method_entry(table: dict) -> MethodEntry:
    if not isinstance(table.get("name"), str):
        raise MumisError(f"a [[methods]] entry needs a name (a string); got {table}")
    unknown = sorted(set(table) - {"name", "label", "options", "task_options", "recipe"})
    if unknown:
        raise MumisError(f"unknown key(s) {unknown} in [[methods]] {table['name']!r}; use name, label, options, "
                         "task_options, recipe")
    if not isinstance(table.get("recipe", ""), str):
        raise MumisError(f"method {table['name']!r}: recipe must be a recipe's name (a string), e.g. recipe = \"tuned\"")
    if table.get("recipe"):
        load_recipe(table["recipe"])  # a missing or malformed recipe fails here, before any work
    accepted = method_options(table["name"])  # also rejects an unknown method name
    per_task = table.get("task_options", {})
    if not isinstance(per_task, dict) or not all(isinstance(v, dict) for v in [table.get("options", {}), *per_task.values()]):
        raise MumisError(f"method {table['name']!r}: options and task_options.KIND must be tables of KEY = VALUE")
    if not isinstance(table.get("label", ""), str):
        raise MumisError(f"method {table['name']!r}: label must be a string")
    for opts in [table.get("options", {}), *per_task.values()]:
        bad = sorted(set(opts) - accepted)
        if bad:
            raise MumisError(f"method {table['name']!r} has no option(s) {bad}; its options are {sorted(accepted)}")
    return MethodEntry(table["name"], table.get("label", ""), tuple(sorted(table.get("options", {}).items())),
                       tuple(sorted((k, tuple(sorted(v.items()))) for k, v in per_task.items())), table.get("recipe", ""))


_GRID_KINDS = {
    "name": STR, "datasets": list_of(STR), "models": list_of(STR), "seeds": list_of(INT), "data_dir": STR,
    "holdout": Kind("a fraction in (0, 1), e.g. holdout = 0.2",
                    lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1),
    "tasks": Kind("a list of task tables (or kind names)", lambda v: isinstance(v, list) and all(isinstance(t, (str, dict)) for t in v)),
    "methods": list_of(Kind("a [[methods]] table", lambda v: isinstance(v, dict))),
    "recipe": OBJECT, "recipes": Kind("a table of [recipes.DATASET] tables", lambda v: isinstance(v, dict) and all(isinstance(t, dict) for t in v.values())),
    "suite": OBJECT,
}


def parse_grid(text: str, source: str = "grid") -> GridSpec:
    """A GridSpec from TOML text; every key is checked, so a typo is an error, not a silently ignored setting."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise MumisError(f"{source} is not valid TOML: {err}") from None
    allowed = set(_GRID_KINDS)
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise MumisError(f"unknown key(s) {unknown} in {source}; allowed: {sorted(allowed)}")
    for key, value in raw.items():
        kind = _GRID_KINDS[key]
        if not kind.accepts(value):
            raise MumisError(f"{source}: {key} must be {kind.describe}, got {str(value)[:60]!r}")
    missing = [k for k in ("datasets", "models", "tasks", "methods") if not raw.get(k)]
    if missing:
        raise MumisError(f"{source} must list {', '.join(missing)}")
    recipe = _typed(TrainRecipe, raw.get("recipe", {}), "recipe")
    recipes = tuple((name, _typed(TrainRecipe, {**asdict(recipe), **table}, f"recipes.{name}"))
                    for name, table in sorted(raw.get("recipes", {}).items()))
    return GridSpec(
        name=raw.get("name", Path(source).stem), datasets=tuple(raw["datasets"]), models=tuple(raw["models"]),
        tasks=tuple(_grid_task(t, raw["datasets"]) for t in raw["tasks"]),
        methods=tuple(_method_entry(m) for m in raw["methods"]), seeds=tuple(int(s) for s in raw.get("seeds", [0])),
        recipe=recipe, recipes=recipes, suite=_typed(SuiteOptions, raw.get("suite", {}), "suite"), data_dir=raw.get("data_dir"),
        holdout=float(raw["holdout"]) if "holdout" in raw else None,
    )


def _grid_task(entry, datasets) -> GridTask:
    entry = {"kind": entry} if isinstance(entry, str) else dict(entry)
    only = entry.pop("datasets", [])
    if not list_of(STR).accepts(only):
        raise MumisError(f"task {entry}: datasets must be a list of dataset names, got {only!r}")
    only = tuple(only)
    stray = sorted(set(only) - set(datasets))
    if stray:
        raise MumisError(f"task {entry} names dataset(s) {stray} that the grid does not list in `datasets`")
    return GridTask(parse_task(entry), only)


def preset_names() -> list[str]:
    return sorted(p.name.removesuffix(".toml") for p in resources.files("mumis.bench.presets").iterdir()
                  if p.name.endswith(".toml"))


def load_grid(name_or_path: str | Path) -> GridSpec:
    """A grid file, or the name of a shipped preset (``demo``, ``fmnist``, ``paper``)."""
    path = Path(name_or_path)
    if path.is_file():
        return parse_grid(path.read_text(), str(path))
    if str(name_or_path) in preset_names():
        text = resources.files("mumis.bench.presets").joinpath(f"{name_or_path}.toml").read_text()
        return parse_grid(text, f"preset {name_or_path}")
    raise MumisError(f"{name_or_path} is neither a grid file nor a preset; presets: {', '.join(preset_names())}")

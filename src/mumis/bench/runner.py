"""Run a grid cell by cell into the results database; a rerun resumes where the last run stopped."""
from __future__ import annotations

import itertools
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from rich.console import Console
from torch import nn

from mumis.bench.experiment import apply_method, persisted_split
from mumis.bench.grid import Cell, GridSpec
from mumis.bench.references import default_cache_dir, trained_reference
from mumis.bench.results import config_hash, git_sha
from mumis.bench.shadows import shadow_reference, step_reference
from mumis.bench.store import ResultStore
from mumis.data import TaskStep, load_dataset
from mumis.errors import MumisError
from mumis.methods import quiet_method
from mumis.metrics import SuiteContext, avg_gap, evaluate_suite, sensitivity_profile, tow
from mumis.models import create_model
from mumis.progress import progress_bar
from mumis.runtime import peak_memory_mb, reset_peak_memory, seed_everything, stopwatch, versions


@dataclass
class GroupContext:
    """What every cell of one (dataset, model, task, seed) shares: the task steps, the original model and the
    retrain reference of each step (trained once, cached on disk), and each step's evaluation context."""

    steps: list[TaskStep]
    original: nn.Module
    original_wall_s: float
    retrains: list[tuple[nn.Module, float]]
    suites: list[SuiteContext]
    init_model: nn.Module
    # where each reference was trained (its wall time is a training time measured there): original, then each retrain
    trained_on: list[str] = field(default_factory=list)
    _reference_metrics: dict = field(default_factory=dict)

    @classmethod
    def prepare(cls, cell: Cell, cache_dir: Path, data_dir: Optional[str]) -> "GroupContext":
        bundle = load_dataset(cell.dataset, data_dir)
        split = (persisted_split(bundle, cell.seed, cache_dir) if cell.holdout is None else
                 persisted_split(bundle, cell.seed, cache_dir, cell.holdout, from_pool=True))
        train, test = split.materialise(bundle)
        steps = cell.task.steps(train, test, split, cell.seed)
        original, meta, _ = trained_reference("original", train, cell.model, split, cell.recipe, cell.seed, cache_dir,
                                              show_progress=False, test=test)
        retrains, trained_on = [], [meta.device or "not recorded"]
        for step in steps:
            model, rmeta, _ = trained_reference("retrain", step.evaluation.retain, cell.model, split, cell.recipe, cell.seed,
                                                cache_dir, forget_sha=step.forget_set.sha256, show_progress=False, test=test)
            retrains.append((model, rmeta.wall_s))
            trained_on.append(rmeta.device or "not recorded")
        suites = [SuiteContext.build(s.evaluation, original, r, cell.suite) for s, (r, _) in zip(steps, retrains)]
        if cell.suite.shadows:  # the per-example attack: one set of shadows for every step of the group
            shared = shadow_reference(train, test, cell.model, split, cell.recipe, cell.suite.shadows, cell.seed,
                                      cache_dir)
            for suite, step in zip(suites, steps):
                suite.per_example = step_reference(shared, step.evaluation.forget_set.indices, len(train))
        seed_everything(cell.seed)  # the same initial weights the original model started from
        init = create_model(cell.model, train.num_classes, train.in_channels).eval()
        return cls(steps, original, meta.wall_s, retrains, suites, init, trained_on)

    def reference_metrics(self, k: int, options) -> dict:
        if k not in self._reference_metrics:
            self._reference_metrics[k] = evaluate_suite(self.retrains[k][0], self.steps[k].evaluation, self.suites[k], options)
        return self._reference_metrics[k]


def _row(cell: Cell, step: TaskStep, metrics: dict, reference: dict, wall_s: float, trained_on: str | None = None,
         **extra) -> dict:
    env = versions()
    if trained_on is not None:  # a reference row's wall time is its model's training time, measured where it trained
        env["trained_on"] = trained_on
    return {
        "method": cell.label, "method_name": cell.method.name if cell.method else cell.role, "role": cell.role,
        "task": cell.task.label, "task_kind": cell.task.kind, "dataset": cell.dataset, "model": cell.model,
        "seed": cell.seed, "step": step.index, "forget_size": len(step.evaluation.forget),
        "request_size": len(step.request.forget), **metrics,
        "avg_gap": avg_gap(metrics, reference), "avg_gap_no_mia": avg_gap(metrics, reference, keys=("fa", "ra", "ta")),
        "tow": tow(metrics, reference), "wall_s": wall_s, "peak_mem_mb": peak_memory_mb(), "config_hash": config_hash(cell.describe()),
        "cell_key": cell.key, "split_hash": step.evaluation.split.sha256, "forget_hash": step.forget_set.sha256,
        "git_sha": git_sha(), "versions": env, **extra,
    }


def run_cell(cell: Cell, ctx: GroupContext) -> tuple[list[dict], dict]:
    """The rows (one per task step) and artifacts of one cell."""
    if cell.role == "retrain":
        return [_row(cell, s, ctx.reference_metrics(k, cell.suite), ctx.reference_metrics(k, cell.suite), ctx.retrains[k][1],
                     trained_on=ctx.trained_on[k + 1]) for k, s in enumerate(ctx.steps)], {}
    if cell.role == "original":
        rows = [_row(cell, s, evaluate_suite(ctx.original, s.evaluation, ctx.suites[k], cell.suite),
                     ctx.reference_metrics(k, cell.suite), ctx.original_wall_s, trained_on=ctx.trained_on[0])
                for k, s in enumerate(ctx.steps)]
        probe = ctx.suites[0].probe  # Figs. 2–3: the same D_f samples under the random-init, original and retrained model
        profiles = {"init": sensitivity_profile(ctx.init_model, probe), "original": ctx.suites[0].original_profile,
                    "retrain": sensitivity_profile(ctx.retrains[0][0], probe)}
        return rows, {"sensitivity": {k: {m: v.tolist() for m, v in p.items()} for k, p in profiles.items()}}
    rows, model = [], ctx.original
    for k, step in enumerate(ctx.steps):  # a single-request task has one step; a sequence starts from the last model
        method = quiet_method(cell.method.name, **cell.method.options_for(cell.task.kind))
        seed_everything(cell.seed + k)
        reset_peak_memory()
        result, data, sw = apply_method(method, model, step.request)
        metrics = evaluate_suite(result.model, step.evaluation, ctx.suites[k], cell.suite)
        rows.append(_row(cell, step, metrics, ctx.reference_metrics(k, cell.suite), sw.seconds, steps=result.steps,
                         stop_reason=result.stop_reason, data_read=sorted(data.reads), info=result.info,
                         trace=result.trace, options=method.config_dict()))
        model = result.model
    return rows, {}


@dataclass
class GridOutcome:
    total: int
    skipped: int  # already in the database
    finished: int
    failed: list[str]
    wall_s: float


class CellRecorder:
    """The driver's side of a run: the only writer of the results database, whichever executor computed the cell."""

    def __init__(self, store: ResultStore, grid: str, advance):
        self.store, self.grid, self.advance = store, grid, advance
        self.finished, self.failed = 0, []

    def done(self, cell: Cell, rows: list[dict], artifacts: dict, wall_s: float) -> None:
        self.store.write_cell(cell.key, cell.describe(), rows, self.grid, cell.label, artifacts, wall_s)
        self.finished += 1
        self.advance(f"{cell.dataset} {cell.task.label} seed {cell.seed}: {cell.label}")

    def fail(self, cell: Cell, error: str, trace: str) -> None:
        """Recorded with its traceback; the next run retries it (and only the failed cells)."""
        self.store.record_failure(cell.key, cell.describe(), error, trace, self.grid, cell.label)
        self.failed.append(f"{cell.label} {cell.dataset}/{cell.model}/{cell.task.label}/seed {cell.seed}: {error}")
        self.advance(f"{cell.label} failed")


def timed_cell(cell: Cell, ctx: GroupContext) -> tuple[list[dict], dict, float]:
    with stopwatch() as sw:
        rows, artifacts = run_cell(cell, ctx)
    return rows, artifacts, sw.seconds


def run_local(pending: list[Cell], cache_dir: Path, data_dir: Optional[str], recorder: CellRecorder) -> None:
    """The in-process executor: cells of one (dataset, model, task, seed) group share one prepared context."""
    for _, group in itertools.groupby(pending, key=lambda c: c.group):
        group = list(group)
        try:
            ctx = GroupContext.prepare(group[0], cache_dir, data_dir)
        except Exception as err:  # noqa: BLE001  (a missing dataset fails its cells, not the grid)
            for cell in group:
                recorder.fail(cell, repr(err), traceback.format_exc())
            continue
        for cell in group:
            try:
                rows, artifacts, wall_s = timed_cell(cell, ctx)
            except Exception as err:  # noqa: BLE001  (recorded with its traceback, retried next run)
                recorder.fail(cell, repr(err), traceback.format_exc())
                continue
            recorder.done(cell, rows, artifacts, wall_s)


def run_grid(spec: GridSpec, db: str | Path, cache_dir: str | Path | None = None, show_progress: bool = True,
             console: Console | None = None, executor: str = "local", address: Optional[str] = None,
             cpus_per_cell: float = 1, gpus_per_cell: float = 0) -> GridOutcome:
    """Run every cell of ``spec`` that ``db`` does not hold yet; each finished cell is committed at once.

    ``executor="local"`` runs cells in this process; ``"ray"`` runs each cell as a Ray task asking for
    ``cpus_per_cell``/``gpus_per_cell`` on the cluster at ``address`` (a local Ray instance when None) — see
    :mod:`mumis.bench.ray_executor`. Either way this process alone writes ``db``, so resuming works the same.
    """
    if executor not in ("local", "ray"):
        raise MumisError(f"unknown executor {executor!r}; use 'local' or 'ray'")
    console = console or Console()
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cells = spec.cells()
    with ResultStore(db) as store, stopwatch() as sw:
        done = store.done_keys()
        pending = [c for c in cells if c.key not in done]
        console.print(f"grid [bold]{spec.name}[/]: {len(cells)} cells, {len(cells) - len(pending)} already in {db}, "
                      f"{len(pending)} to run" + (f" on Ray ({address or 'local instance'})" if executor == "ray" else ""))
        with progress_bar(f"grid {spec.name}", len(pending), show_progress) as advance:
            recorder = CellRecorder(store, spec.name, advance)
            if executor == "ray":
                from mumis.bench.ray_executor import run_on_ray

                run_on_ray(pending, cache_dir, spec.data_dir, recorder, address, cpus_per_cell, gpus_per_cell)
            else:
                run_local(pending, cache_dir, spec.data_dir, recorder)
    return GridOutcome(len(cells), len(cells) - len(pending), recorder.finished, recorder.failed, sw.seconds)

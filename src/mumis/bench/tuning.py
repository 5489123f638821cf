"""Tune a method against retrain on a split the reported cells never use: Optuna (TPE, seeded), the search space
declared next to each method's Config (``search_space``), the objective = mean Avg. Gap to the retrained model over
the task's steps, a time budget per trial relative to the retrain's time, the same number of finished trials for
every method. Studies live in SQLite through Optuna's storage: a killed run resumes, and a trial cut off mid-run is
run again with the same options (marked failed, re-queued), so none is lost or counted twice.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from mumis.bench.grid import Cell, GridSpec, MethodEntry
from mumis.bench.results import git_sha
from mumis.bench.runner import GroupContext, run_cell
from mumis.errors import MumisError
from mumis.methods.recipes import RecipeEntry, dataset_family
from mumis.methods.registry import _METHODS
from mumis.progress import progress_bar


@dataclass(frozen=True)
class TuneSettings:
    trials: int = 20  # finished trials per study (complete or over budget), the same for every method
    budget: float = 1.0  # a trial may take at most this × the retrain's wall time on the same cell (over: pruned)
    seed: int = 100  # the tuning split/seed: a seed the grid's reported cells never use
    sampler_seed: int = 0  # TPE's seed
    startup: int = 4  # trials drawn at random before TPE models the rest (Optuna's default, 10, would leave a small
    # budget all random)


@contextmanager
def quiet_optuna():
    """Optuna at warning level inside the block (our progress bar and tables say what happens), as it was after."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield optuna
    finally:
        optuna.logging.set_verbosity(verbosity)


def tunable(entry: MethodEntry) -> Optional[str]:
    """Why ``entry`` cannot be tuned, or None. MU-Mis's default is not tuned: its point is to need no tuning."""
    space = _METHODS.get(entry.name).search_space
    if entry.recipe:
        return f"{entry.row_label!r} already runs the tuned recipe {entry.recipe!r}"
    if not space:
        return f"method {entry.name!r} declares no search space"
    if entry.name == "mumis" and dict(entry.options).get("variant") != "paper":
        return "MU-Mis's default is not tuned (its step comes from the curvature); tune its paper variant: options = {variant = \"paper\"}"
    return None


def tuning_cells(spec: GridSpec, entry: MethodEntry, seed: int) -> list[Cell]:
    """One cell per (dataset, model, task) of the grid for ``entry``, on the tuning seed."""
    if seed in spec.seeds:
        raise MumisError(f"tuning seed {seed} is one of the grid's reported seeds {list(spec.seeds)}; pick another (--seed)")
    tuned = dataclasses.replace(spec, seeds=(seed,), methods=(entry,))
    return [c for c in tuned.cells() if c.role == "method"]


def study_name(cell: Cell) -> str:
    """One study per cell: a cell on a pool hold-out split is another study, never resumed from the official split's."""
    split = "" if cell.holdout is None else f" | holdout {cell.holdout:g}"
    return f"{cell.label} | {cell.dataset} | {cell.model} | {cell.task.label} | seed {cell.seed}{split}"


def _suggest(trial, name: str, space) -> float | int:
    if space.integer:
        return trial.suggest_int(name, int(space.low), int(space.high), log=space.log)
    return trial.suggest_float(name, space.low, space.high, log=space.log)


def _load_study(optuna, cell: Cell, storage: str, settings: TuneSettings):
    from optuna.trial import TrialState

    study = optuna.create_study(study_name=study_name(cell), storage=storage, direction="minimize", load_if_exists=True,
                                sampler=_sampler(optuna, settings, 0))
    trials = study.get_trials(deepcopy=False)
    if not trials:  # the default configuration is one of the trials, where it lies in the space
        space = _METHODS.get(cell.method.name).search_space
        options = _METHODS.get(cell.method.name)(**dict(cell.method.options)).config_dict()
        default = {k: options[k] for k in space}
        if all(s.contains(default[k]) for k, s in space.items()):
            study.enqueue_trial(default, user_attrs={"default": True})
    for t in trials:  # cut off by a kill: run again with the same options
        if t.state == TrialState.RUNNING:
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
            study.enqueue_trial(t.params, user_attrs={"requeued_from": t.number, **{
                k: v for k, v in t.user_attrs.items() if k == "default"}})
    # a fresh sampler stream per resume, so a resumed study does not repeat the first run's draws
    study.sampler = _sampler(optuna, settings, len(trials))
    return study


class OverBudget(BaseException):
    """A trial ran past its time budget (a BaseException: no method's ``except Exception`` may swallow it)."""


@contextmanager
def time_limit(seconds: float):
    """Raise :class:`OverBudget` in the block once ``seconds`` of wall time have passed (a SIGALRM timer), so a
    trial whose options make the method run far past its budget — a tiny learning rate running to a step cap — is
    stopped there instead of after it; the previous SIGALRM handler is restored. Where no such timer can be set
    (no SIGALRM, not the main thread, a timer already running) the block runs unlimited, and the budget is still
    judged on the method's wall time afterwards."""
    import signal
    import threading

    if (not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread()
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):
        yield
        return

    def expire(signum, frame):
        raise OverBudget()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 1e-3))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _sampler(optuna, settings: TuneSettings, offset: int):
    return optuna.samplers.TPESampler(seed=settings.sampler_seed + offset, n_startup_trials=settings.startup)


def finished(study) -> int:
    from optuna.trial import TrialState

    return sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))


def tune_cell(cell: Cell, storage: str, settings: TuneSettings, cache_dir: Path, data_dir: Optional[str] = None,
              advance=None):
    """Run the study for ``cell`` up to ``settings.trials`` finished trials; returns the Optuna study."""
    with quiet_optuna() as optuna:
        return _tune(optuna, cell, storage, settings, cache_dir, data_dir, advance)


def _tune(optuna, cell: Cell, storage: str, settings: TuneSettings, cache_dir: Path, data_dir: Optional[str], advance):
    study = _load_study(optuna, cell, storage, settings)
    trials_left = settings.trials - finished(study)
    if trials_left <= 0:
        return study
    ctx = GroupContext.prepare(cell, cache_dir, data_dir)
    retrain_s = sum(wall for _, wall in ctx.retrains)
    space = _METHODS.get(cell.method.name).search_space
    base = cell.method.options_for(cell.task.kind)

    def objective(trial) -> float:
        params = {name: _suggest(trial, name, s) for name, s in space.items()}
        entry = dataclasses.replace(cell.method, options=tuple(sorted({**base, **params}.items())), task_options=())
        limit = settings.budget * retrain_s
        try:
            # the method's own wall time is judged below; the cell also evaluates, so the run as a whole is stopped
            # only well past the budget, where no trial could finish within it: a runaway, not a close call
            with time_limit(2 * limit + 30):
                rows, _ = run_cell(dataclasses.replace(cell, method=entry), ctx)
        except OverBudget:
            trial.set_user_attr("over_budget", True)
            trial.set_user_attr("stopped_at_budget", True)
            trial.set_user_attr("retrain_s", retrain_s)
            raise optuna.TrialPruned(f"stopped at twice {settings.budget} × the retrain's {retrain_s:.1f} s, plus 30 s"
                                     ) from None
        wall = sum(r["wall_s"] for r in rows)
        trial.set_user_attr("wall_s", wall)
        trial.set_user_attr("retrain_s", retrain_s)
        trial.set_user_attr("metrics", [{k: r[k] for k in ("fa", "ra", "ta", "mia", "avg_gap")} for r in rows])
        gap = statistics.fmean(r["avg_gap"] for r in rows)
        trial.set_user_attr("avg_gap", gap)
        if wall > settings.budget * retrain_s:
            trial.set_user_attr("over_budget", True)
            raise optuna.TrialPruned(f"{wall:.1f} s > {settings.budget} × the retrain's {retrain_s:.1f} s")
        return gap

    callbacks = [lambda study, trial: advance(f"{cell.label} {cell.task.label} trial {trial.number}")] if advance else []
    study.optimize(objective, n_trials=trials_left, callbacks=callbacks)
    return study


def study_summary(study) -> dict:
    """Best and default trial, counts and the tuning cost (sum of the trials' wall times)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    default = next((t for t in trials if t.user_attrs.get("default") and t.state != TrialState.FAIL), None)
    best = min(complete, key=lambda t: t.value) if complete else None
    return {
        "study": study.study_name, "complete": len(complete),
        "over_budget": sum(t.state == TrialState.PRUNED for t in trials),
        "best_gap": best.value if best else None, "best_params": dict(best.params) if best else {},
        "best_wall_s": best.user_attrs.get("wall_s") if best else None,
        "default_gap": default.user_attrs.get("avg_gap") if default else None,
        "retrain_s": best.user_attrs.get("retrain_s") if best else None,
        "cost_s": sum(t.user_attrs.get("wall_s", 0.0) for t in trials),
    }


def recipe_entry(cell: Cell, summary: dict, storage: str, settings: TuneSettings) -> RecipeEntry:
    return RecipeEntry(
        method=cell.method.name, base=dict(cell.method.options_for(cell.task.kind)), task=cell.task.kind,
        family=dataset_family(cell.dataset), options=summary["best_params"],
        tuning={"study": summary["study"], "storage": storage, "dataset": cell.dataset, "model": cell.model,
                "tuning_seed": settings.seed, "trials": settings.trials, "budget": settings.budget,
                "best_gap": summary["best_gap"], "default_gap": summary["default_gap"], "cost_s": summary["cost_s"],
                "git_sha": git_sha(), "date": time.strftime("%Y-%m-%d")})


def tune_grid(spec: GridSpec, entries: list[MethodEntry], storage: str, settings: TuneSettings, cache_dir: Path,
              show_progress: bool = True) -> list[tuple[Cell, dict]]:
    """Tune every entry on every (dataset, model, task) of the grid; returns each study's summary."""
    import optuna

    cells = [c for e in entries for c in tuning_cells(spec, e, settings.seed)]
    trials_left = 0
    for cell in cells:
        try:
            study = optuna.load_study(study_name=study_name(cell), storage=storage)
            trials_left += max(0, settings.trials - finished(study))
        except KeyError:  # no such study yet
            trials_left += settings.trials
    out = []
    with progress_bar("tuning", trials_left, show_progress) as advance:
        for cell in cells:
            study = tune_cell(cell, storage, settings, cache_dir, spec.data_dir, advance)
            out.append((cell, study_summary(study)))
    return out


def stored_summaries(spec: GridSpec, entries: list[MethodEntry], storage: str, settings: TuneSettings
                     ) -> list[tuple[Cell, dict]]:
    """The summary of every study of ``entries`` on the grid that the storage holds, running nothing."""
    with quiet_optuna() as optuna:
        out = []
        for cell in (c for e in entries for c in tuning_cells(spec, e, settings.seed)):
            try:
                out.append((cell, study_summary(optuna.load_study(study_name=study_name(cell), storage=storage))))
            except KeyError:  # not tuned yet
                continue
        return out

"""Grid cells as Ray tasks: `mumis bench GRID --executor ray [--address ADDR]`.

Each (dataset, model, task, seed) group first gets one *prepare* task that trains (or finds) its original and
retrain references in the model cache; the group's cells then run as one Ray task each, with the CPU/GPU request
given, once their prepare task has finished. Prepare tasks that share an original model (same dataset, model, seed
and recipe) are chained, so no two workers train the same model at once. Workers only compute and return rows;
the driver alone writes the results database, so resuming after a crash, skipping finished cells and recording
failures with their traceback behave exactly as with the local executor.

On a cluster, the model cache (``--cache-dir``) and ``--data-dir`` must be paths every node can read and write
(a shared filesystem), and every node needs ``mumis`` installed.
"""
from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Optional

from mumis.bench.grid import Cell
from mumis.bench.runner import CellRecorder, GroupContext, timed_cell
from mumis.errors import MumisError


def _prepare(cell: Cell, cache_dir: Path, data_dir: Optional[str], after=None) -> bool:
    """Train or load every reference model of ``cell``'s group into the cache (``after``: the prepare task this
    one must wait for; Ray resolves it before the call)."""
    GroupContext.prepare(cell, cache_dir, data_dir)
    return True


def _run(cell: Cell, cache_dir: Path, data_dir: Optional[str], ready: bool):
    """One cell's rows, artifacts and wall time (``ready``: its group's prepare task, so the references are cached
    by the time this runs; a failed prepare fails the cell with the prepare's traceback)."""
    return timed_cell(cell, GroupContext.prepare(cell, cache_dir, data_dir))


def _original_key(cell: Cell) -> str:
    return json.dumps([cell.dataset, cell.model, cell.seed, cell.recipe.to_dict(), cell.holdout], sort_keys=True)


def run_on_ray(pending: list[Cell], cache_dir: Path, data_dir: Optional[str], recorder: CellRecorder,
               address: Optional[str] = None, cpus_per_cell: float = 1, gpus_per_cell: float = 0) -> None:
    try:
        import ray
    except ImportError:
        raise MumisError("the Ray executor needs Ray: pip install 'mumis[ray]' (or run without --executor ray)") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    options = {"num_cpus": cpus_per_cell, "num_gpus": gpus_per_cell, "max_retries": 0}
    prepare, run = ray.remote(**options)(_prepare), ray.remote(**options)(_run)
    futures, last_prepare = {}, {}
    try:
        for _, group in itertools.groupby(pending, key=lambda c: c.group):
            group = list(group)
            key = _original_key(group[0])
            ready = prepare.remote(group[0], cache_dir, data_dir, last_prepare.get(key))
            last_prepare[key] = ready
            for cell in group:
                futures[run.remote(cell, cache_dir, data_dir, ready)] = cell
        while futures:
            (finished,), _ = ray.wait(list(futures), num_returns=1)
            cell = futures.pop(finished)
            try:
                rows, artifacts, wall_s = ray.get(finished)
            except ray.exceptions.RayError as err:  # the remote exception, with the worker's traceback in its text
                cause = getattr(err, "cause", None)
                recorder.fail(cell, repr(cause) if cause is not None else type(err).__name__, str(err))
                continue
            recorder.done(cell, rows, artifacts, wall_s)
    finally:
        for ref in futures:  # interrupted: nothing more is computed for a database nobody writes
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()

"""One experiment, end to end: data → split → forget set → original and retrain → each method → metrics."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from rich.console import Console
from torch import nn

from mumis.bench.plots import plot_trace
from mumis.bench.references import default_cache_dir, trained_reference
from mumis.bench.results import ResultRow, config_hash, git_sha, write_json, write_rows
from mumis.data import (
    ForgetSet,
    ImageDataset,
    Split,
    TaskData,
    as_surrogate,
    build_forget_set,
    load_dataset,
    make_split,
    task_from_views,
)
from mumis.methods import DataRole, GrantedData, MethodResult, UnlearningMethod, get_method, grant, quiet_method, run_method
from mumis.metrics import avg_gap, evaluate
from mumis.runtime import Stopwatch, device_name, peak_memory_mb, reset_peak_memory, seed_everything, stopwatch, versions
from mumis.training import CheckpointMeta, TrainRecipe, save_checkpoint


@dataclass(frozen=True)
class ExperimentConfig:
    dataset: str = "mnist5k"
    model: str = "small_cnn"
    task: str = "full_class"  # full_class | sub_class | random
    target: float = 3  # the class, the fine class, or the forget fraction
    seed: int = 0  # split hold-out, model init, data order and the method's draws
    recipe: TrainRecipe = field(default_factory=TrainRecipe)
    # (name, options) or (label, name, options): the label names the row (default: the method's name)
    methods: tuple[tuple, ...] = (("mumis", ()),)
    data_dir: Optional[str] = None
    holdout_fraction: float = 0.2  # test share for datasets without an official test set
    surrogate: Optional[str] = None  # another dataset whose images methods that declare a surrogate need may read
    surrogate_size: int = 5000

    def to_dict(self) -> dict:
        return asdict(self)


def persisted_split(bundle, seed: int, cache_dir: Path, holdout_fraction: float = 0.2, from_pool: bool = False) -> Split:
    """The split for (dataset, seed, hold-out share where the dataset has no official test set or ``from_pool`` asks
    for held-out data from the training pool), made on first use and read back from its index file ever after."""
    test_from = "official" if bundle.test is not None and not from_pool else f"holdout{holdout_fraction:g}"
    path = cache_dir / "splits" / f"{bundle.name}-seed{seed}-{test_from}-{bundle.fingerprint()[:12]}.json"
    if path.is_file():
        return Split.load(path)
    split = make_split(bundle, seed, holdout_fraction, from_pool=from_pool)
    split.save(path)
    return split


@dataclass(frozen=True)
class CellData:
    """One cell's data as every experiment builds it: the persisted split, its train and test views, the forget set
    and the task (D_f, D_r, D_t and the held-out half of the test split)."""

    split: Split
    train: ImageDataset
    test: ImageDataset
    forget_set: ForgetSet
    task: TaskData


def cell_data(dataset: str, task: str, target: float, seed: int, cache_dir: Path | None = None,
              data_dir: Optional[str] = None, holdout_fraction: float = 0.2) -> CellData:
    """Load ``dataset``, read (or make) its split for ``seed`` and build the forget set ``task``=``target`` on it."""
    bundle = load_dataset(dataset, data_dir)
    split = persisted_split(bundle, seed, Path(cache_dir) if cache_dir else default_cache_dir(), holdout_fraction)
    return cell_on_split(bundle, split, task, target, seed)


def cell_on_split(bundle, split: Split, task: str, target: float, seed: int) -> CellData:
    """The cell of forget set ``task``=``target`` on a given ``split`` of ``bundle``."""
    train, test = split.materialise(bundle)
    forget_set = build_forget_set(task, train, split, target, seed=seed)
    return CellData(split, train, test, forget_set, task_from_views(train, test, split, forget_set))


def cell_references(data: CellData, model: str, recipe: TrainRecipe, seed: int, cache_dir: Path | None = None,
                    show_progress: bool = False):
    """(original, its metadata, retrain, its metadata) for the cell, from the model cache (trained on first use)."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    original, original_meta, _ = trained_reference("original", data.train, model, data.split, recipe, seed, cache_dir,
                                                   show_progress=show_progress, test=data.test)
    retrain, retrain_meta, _ = trained_reference("retrain", data.task.retain, model, data.split, recipe, seed,
                                                 cache_dir, forget_sha=data.forget_set.sha256,
                                                 show_progress=show_progress, test=data.test)
    return original, original_meta, retrain, retrain_meta


def _row(name: str, cfg: ExperimentConfig, task: TaskData, metrics: dict, wall_s: float,
         trained: Optional[CheckpointMeta] = None, **extra) -> ResultRow:
    """One result row; a reference row (``trained``: its checkpoint's sidecar) also records where the model was
    trained — its wall time is the training time, which the scoring machine did not measure."""
    env = versions()
    if trained is not None:
        env["trained_on"] = trained.device or "not recorded"
    return ResultRow(
        method=name, task=cfg.task, dataset=cfg.dataset, model=cfg.model, seed=cfg.seed,
        fa=metrics["fa"], ra=metrics["ra"], ta=metrics["ta"], mia=metrics["mia"], avg_gap=math.nan,
        forgotten_test_acc=metrics["forgotten_test_acc"], wall_s=wall_s, split_hash=task.split.sha256,
        forget_hash=task.forget_set.sha256, peak_mem_mb=peak_memory_mb(), git_sha=git_sha(), versions=env,
        **extra,
    )


def apply_method(
    method: UnlearningMethod, model: nn.Module, task: TaskData, surrogate: Optional[ImageDataset] = None,
) -> tuple[MethodResult, GrantedData, Stopwatch]:
    """Run ``method`` on ``task``: the task offers every role it has, the framework grants only the declared ones,
    so a retain-free method never holds a reference to D_r. Returns (result, granted data with its read log, timer)."""
    offered = {DataRole.FORGET: lambda: task.forget, DataRole.RETAIN: lambda: task.retain,
               DataRole.HELDOUT: lambda: task.heldout, DataRole.SURROGATE: lambda: surrogate}
    data = grant(method, train_size=len(task.split.train),
                 **{role.value: offered[role]() for role in method.needs if role in offered})
    with stopwatch() as sw:
        result = run_method(method, model, data, task.num_classes)
    return result, data, sw


def save_unlearned(
    path: Path, result: MethodResult, method: UnlearningMethod, base_meta: CheckpointMeta, task: TaskData,
    metrics: dict, wall_s: float, trace_stem: Optional[Path] = None, title: str = "",
) -> Optional[Path]:
    """Write the unlearned checkpoint, its sidecar derived from the model it came from, and (with ``trace_stem``)
    the stop trace as ``<stem>.json`` and ``<stem>.png``. Returns the PNG's path when one was written."""
    meta = dataclasses.replace(
        base_meta, role="unlearned", forget_sha256=task.forget_set.sha256, wall_s=wall_s, device=device_name(),
        method={"name": method.name, "config": method.config_dict(), "stop_reason": result.stop_reason,
                "steps": result.steps},
        accuracies={k: metrics[k] for k in ("fa", "ra", "ta")},
    )
    save_checkpoint(path, result.model, meta)
    if trace_stem is None or not result.trace:
        return None
    write_json(result.trace, trace_stem.with_name(trace_stem.name + ".json"))
    return plot_trace(result.trace, result.stop_reason, trace_stem.with_name(trace_stem.name + ".png"),
                      delta=getattr(method.config, "delta", None), title=title)


def run_experiment(
    cfg: ExperimentConfig, out_dir: str | Path, cache_dir: str | Path | None = None,
    show_progress: bool = True, console: Console | None = None, cell: CellData | None = None,
) -> list[ResultRow]:
    """Run every method of ``cfg`` against the retrain reference; write rows, checkpoints and trace plots to ``out_dir``.

    ``cell``: the cell's data when the caller has already built it with :func:`cell_data` for this ``cfg`` (not
    rebuilt; a cell of another dataset, seed, request or target is refused)."""
    console = console or Console()
    out_dir, cache_dir = Path(out_dir), Path(cache_dir) if cache_dir else default_cache_dir()
    if cell is None:
        cell = cell_data(cfg.dataset, cfg.task, cfg.target, cfg.seed, cache_dir, cfg.data_dir, cfg.holdout_fraction)
    else:
        given = (cell.split.dataset, cell.split.seed, cell.forget_set.request, cell.forget_set.target)
        if given != (cfg.dataset, cfg.seed, cfg.task, float(cfg.target)):
            raise ValueError(f"the cell given is {given}, the config's {(cfg.dataset, cfg.seed, cfg.task, cfg.target)}: "
                             f"build it with cell_data for this config")
    split, train, forget_set, task = cell.split, cell.train, cell.forget_set, cell.task
    split.save(out_dir / "split.json")
    forget_set.save(out_dir / "forget.json")
    console.print(f"[bold]{cfg.dataset}[/] {cfg.task}={cfg.target}: |D_f|={len(task.forget)}  |D_r|={len(task.retain)}  "
                  f"|D_t|={len(task.test)}  split {split.sha256[:12]}  forget {forget_set.sha256[:12]}")

    base_hash = config_hash({k: v for k, v in cfg.to_dict().items() if k != "methods"})
    rows = []
    original, original_meta, retrain, retrain_meta = cell_references(cell, cfg.model, cfg.recipe, cfg.seed, cache_dir,
                                                                     show_progress)
    rows.append(_row("retrain", cfg, task, evaluate(retrain, task), retrain_meta.wall_s, trained=retrain_meta,
                     config_hash=base_hash))
    rows.append(_row("original", cfg, task, evaluate(original, task), original_meta.wall_s, trained=original_meta,
                     config_hash=base_hash))

    surrogate = None
    if cfg.surrogate:
        surrogate = as_surrogate(load_dataset(cfg.surrogate, cfg.data_dir).train, train, cfg.surrogate_size, cfg.seed)
    for entry in cfg.methods:
        label, name, options = entry if len(entry) == 3 else (entry[0], *entry)
        method = get_method(name, **dict(options)) if show_progress else quiet_method(name, **dict(options))
        seed_everything(cfg.seed)
        reset_peak_memory()
        result, data, sw = apply_method(method, original, task, surrogate)
        metrics = evaluate(result.model, task)
        rows.append(_row(label, cfg, task, metrics, sw.seconds, steps=result.steps, stop_reason=result.stop_reason,
                         config_hash=config_hash({"base": base_hash, "method": name, "options": method.config_dict()}),
                         extra={"data_read": sorted(data.reads), **result.info}))
        save_unlearned(out_dir / f"{label}.safetensors", result, method, original_meta, task, metrics, sw.seconds,
                       trace_stem=out_dir / f"trace-{label}", title=f"{label} on {cfg.dataset} ({cfg.task}={cfg.target})")

    reference = rows[0]
    for r in rows:
        r.avg_gap = avg_gap(asdict(r), asdict(reference))
        r.avg_gap_no_mia = avg_gap(asdict(r), asdict(reference), keys=("fa", "ra", "ta"))
    write_rows(rows, out_dir / "results.json")
    return rows

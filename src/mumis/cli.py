"""The ``mumis`` command line: split, train, forget, eval, demo, bench, tune, report. Thin: every command calls the
library."""
from __future__ import annotations

import dataclasses
import math
import sys
import typing
from functools import wraps
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from mumis.errors import MumisError
from mumis.outputs import plan_folder, plan_outputs

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Machine unlearning without the remaining data.")
# Wide enough for the result table even when stdout is not a terminal (rich falls back to 80 columns).
console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)

# Presets for `mumis demo`: the default is the README's main job; `tiny` runs in seconds for tests.
DEMO_PRESETS = {  # dataset, model, and the TrainRecipe fields of the original and retrain models
    "default": dict(dataset="mnist5k", model="small_cnn", recipe=dict(epochs=20)),
    "tiny": dict(dataset="digits", model="small_cnn", recipe=dict(epochs=3, batch_size=64)),
}
# The shipped grid presets, listed without importing the benchmark code (`mumis --help` must answer at once)
PRESETS = sorted(p.stem for p in (Path(__file__).parent / "bench" / "presets").glob("*.toml"))
# SCAR's out-of-distribution images per preset: clothing for handwritten digits, MNIST digits for the 8×8 ones
DEMO_SURROGATES = {"default": "fashion_mnist", "tiny": "mnist5k"}


def friendly_errors(fn):
    """Bad input → one clear red line and exit status 2, never a traceback."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MumisError as err:
            err_console.print(f"[bold red]error:[/] {err}")
            raise typer.Exit(2) from None

    return wrapper


def parse_options(method: str, pairs: List[str]) -> dict:
    """``--option lr=0.002 --option fa_floor=5`` → typed keyword options for the method's Config."""
    from mumis.methods import get_method
    cls = type(get_method(method))
    hints = typing.get_type_hints(cls.Config)
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or key not in hints:
            raise MumisError(f"bad --option {pair!r}: use KEY=VALUE with KEY one of {sorted(hints)}")
        kind = hints[key]
        base = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
        if raw.lower() in ("none", "null") and type(None) in typing.get_args(kind):
            out[key] = None
        elif base is bool:  # a typo must not read as False
            if raw.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                raise MumisError(f"bad --option {pair!r}: {key} takes true or false")
            out[key] = raw.lower() in ("1", "true", "yes", "on")
        else:
            try:
                out[key] = base(raw)
            except ValueError:
                raise MumisError(f"bad --option {pair!r}: {key} takes a {base.__name__}") from None
    return out


def check_training_options(epochs: int, batch_size: int, lr: float) -> None:
    """The ranges a training run needs, checked at the edge (a zero batch divides by zero, a NaN lr trains NaN)."""
    if epochs < 1:
        raise MumisError(f"--epochs must be at least 1, got {epochs}")
    if batch_size < 1:
        raise MumisError(f"--batch-size must be at least 1, got {batch_size}")
    if not (math.isfinite(lr) and lr > 0):
        raise MumisError(f"--lr must be a finite number above 0, got {lr}")


@app.command("list")
def list_cmd():
    """List the registered datasets, models and methods."""
    from mumis.data import list_datasets
    from mumis.methods import get_method, list_methods
    from mumis.models import list_models
    console.print(f"datasets: {', '.join(list_datasets())}")
    console.print(f"models:   {', '.join(list_models())}")
    methods = [f"{m} ({'retain-free' if get_method(m).retain_free else 'uses retain data'})" for m in list_methods()]
    console.print(f"methods:  {', '.join(methods)}")


@app.command()
@friendly_errors
def split(
    dataset: str = typer.Argument(..., help="a registered dataset name (see `mumis list`)"),
    out: Path = typer.Option(..., help="folder for split.json and forget.json"),
    seed: int = typer.Option(0, help="seed of the hold-out and of random forget sets"),
    holdout: Optional[float] = typer.Option(None, help="hold out this stratified fraction of the training pool as the "
                                                       "test set, even where the dataset has an official one: held-out "
                                                       "data drawn like the training data, which a sample request's "
                                                       "stop compares the forget set with (default: the official test "
                                                       "set, else 0.2 of the pool)"),
    forget_class: Optional[int] = typer.Option(None, help="full-class request: this class"),
    forget_subclass: Optional[int] = typer.Option(None, help="sub-class request: this fine class (cifar20)"),
    forget_random: Optional[float] = typer.Option(None, help="random request: this fraction of the training set"),
    forget_ids: Optional[Path] = typer.Option(None, help="explicit request: a text file of training-pool ids, one per line"),
    data_dir: Optional[Path] = typer.Option(None, help="where user-supplied dataset files live"),
    overwrite: bool = typer.Option(False, help="replace split.json / forget.json in --out if they exist"),
):
    """Make and persist a train/test split (and optionally a forget set) with their SHA-256."""
    from mumis.data import build_forget_set, explicit_ids, load_dataset, make_split
    from mumis.serving import read_ids
    requests = [(k, v) for k, v in (("full_class", forget_class), ("sub_class", forget_subclass), ("random", forget_random)) if v is not None]
    if len(requests) + (forget_ids is not None) > 1:
        raise MumisError("give one forget request: --forget-class, --forget-subclass, --forget-random or --forget-ids")
    if holdout is not None and not 0.0 < holdout < 1.0:
        raise MumisError(f"--holdout must be a fraction between 0 and 1 (e.g. 0.2), got {holdout}")
    names = ["split.json"] + (["forget.json"] if requests or forget_ids is not None else [])
    plan_folder(out, names, [forget_ids], overwrite)
    ids = read_ids(forget_ids)[0] if forget_ids is not None else None
    bundle = load_dataset(dataset, data_dir)
    sp = make_split(bundle, seed) if holdout is None else make_split(bundle, seed, holdout, from_pool=True)
    fs = None
    if ids is not None:
        fs = explicit_ids(sp, ids)
    elif requests:
        train_set, _ = sp.materialise(bundle)
        fs = build_forget_set(requests[0][0], train_set, sp, requests[0][1], seed=seed)
    # Everything is validated before the first file is written: a bad request leaves nothing behind.
    sp.save(out / "split.json")
    console.print(f"split {sp.sha256[:12]}…: {len(sp.train)} train, {len(sp.test)} test ({sp.test_from}) → {out / 'split.json'}")
    if fs is not None:
        fs.save(out / "forget.json")
        console.print(f"forget set {fs.sha256[:12]}…: {len(fs.indices)} samples ({fs.request}) → {out / 'forget.json'}")


@app.command()
@friendly_errors
def train(
    split_file: Path = typer.Option(..., "--split", help="split.json from `mumis split`"),
    out: Path = typer.Option(..., help="checkpoint to write (.safetensors; a .json sidecar goes beside it)"),
    model: str = typer.Option("small_cnn", help="a registered architecture"),
    forget_file: Optional[Path] = typer.Option(None, "--forget", help="train the retrain reference: everything but this forget set"),
    epochs: int = typer.Option(12), batch_size: int = typer.Option(128), lr: float = typer.Option(0.05),
    seed: int = typer.Option(0),
    data_dir: Optional[Path] = typer.Option(None),
    overwrite: bool = typer.Option(False, help="replace --out (and its sidecar) if it exists"),
):
    """Train an original model (or, with --forget, the retrain reference) through the one training loop.

    Under ``torchrun --nproc-per-node N`` the N processes train one model with DistributedDataParallel (global
    batch = --batch-size); rank 0 alone writes the checkpoint."""
    from mumis import distributed
    from mumis.data import ForgetSet, Split, load_dataset
    from mumis.metrics import accuracy
    from mumis.models import create_model
    from mumis.runtime import device_name, seed_everything
    from mumis.training import CheckpointMeta, TrainRecipe, fit, nonfinite_tensors, save_checkpoint, sidecar_path
    check_training_options(epochs, batch_size, lr)
    if out.suffix != ".safetensors":
        raise MumisError(f"--out must end in .safetensors, got {out}")
    plan_outputs([out, sidecar_path(out)], [split_file, forget_file], overwrite)
    sp = Split.load(split_file)
    bundle = load_dataset(sp.dataset, data_dir)
    train_set, test_set = sp.materialise(bundle)
    forget_sha, role = None, "original"
    if forget_file is not None:
        fs = ForgetSet.load(forget_file)
        fs.check_split(sp)
        _, train_set = fs.partition(train_set)
        forget_sha, role = fs.sha256, "retrain"
    recipe = TrainRecipe(epochs=epochs, batch_size=batch_size, lr=lr)
    with distributed.process_group():
        seed_everything(seed)
        net = create_model(model, train_set.num_classes, train_set.in_channels)
        report = fit(net, train_set, recipe, seed=seed, description=f"{role} ({model})")
        if not distributed.is_main():
            return
        bad = nonfinite_tensors(net.state_dict())
        if bad:
            raise MumisError(f"training diverged: {len(bad)} of {len(net.state_dict())} tensors are NaN or infinite after "
                             f"{epochs} epoch(s) at --lr {lr:g} (first: {bad[0]!r}); nothing was written. Try a smaller "
                             f"--lr (the default is 0.05).")
        meta = CheckpointMeta(architecture=model, num_classes=train_set.num_classes, in_channels=train_set.in_channels,
                              dataset=sp.dataset, classes=list(train_set.classes), split_sha256=sp.sha256, role=role,
                              seed=seed, forget_sha256=forget_sha, recipe=recipe.to_dict(), wall_s=report.wall_s,
                              accuracies={"train": accuracy(net, train_set), "test": accuracy(net, test_set)},
                              processes=distributed.world_size(), device=device_name())
        save_checkpoint(out, net, meta)
    console.print(f"{role} model → {out} ({report.wall_s:.1f} s on {meta.processes} process(es); train acc "
                  f"{meta.accuracies['train']:.2f} %, test acc {meta.accuracies['test']:.2f} %)")


def _load_task(checkpoint: Path, split_file: Path, forget_file: Path, data_dir: Optional[Path]):
    from mumis.data import ForgetSet, Split, build_task, load_dataset
    from mumis.training import load_checkpoint
    sp = Split.load(split_file)
    fs = ForgetSet.load(forget_file)
    model, meta = load_checkpoint(checkpoint)
    meta.check_split(sp)
    task = build_task(load_dataset(sp.dataset, data_dir), sp, fs)
    if meta.num_classes != task.num_classes:
        raise MumisError(f"{checkpoint} has {meta.num_classes} classes but {sp.dataset} has {task.num_classes}")
    return model, meta, task


@app.command()
@friendly_errors
def forget(
    checkpoint: Optional[Path] = typer.Argument(None, help="the trained model (.safetensors + .json sidecar); never modified"),
    model_path: Optional[Path] = typer.Option(None, "--model", help="the trained model (same as CHECKPOINT)"),
    data: Optional[str] = typer.Option(None, "--data", help="a split file from `mumis split`, or DATASET[:SEED] for "
                                                             "that dataset's default split"),
    split_file: Optional[Path] = typer.Option(None, "--split", help="a split file (same as --data FILE)"),
    ids: Optional[Path] = typer.Option(None, "--ids", help="the request: training-pool ids, a text or CSV file "
                                                           "(duplicates are dropped with a warning)"),
    forget_class: Optional[int] = typer.Option(None, "--class", help="the request: every training sample of this class"),
    forget_file: Optional[Path] = typer.Option(None, "--forget", help="the request: a forget.json from `mumis split`"),
    out: Path = typer.Option(..., help="the unlearned checkpoint to write (.safetensors)"),
    overwrite: bool = typer.Option(False, help="replace --out (and its manifest) if it exists"),
    method: str = typer.Option("auto", help="auto (what measured closest to retrain for this kind of request) or a "
                                            "registered method (see `mumis list`)"),
    option: List[str] = typer.Option([], help="method option KEY=VALUE, repeatable (e.g. request=samples)"),
    recipe: Optional[str] = typer.Option(None, help="take the method's options from a tuned recipe (e.g. 'tuned', "
                                                    "from `mumis tune --save`); --option values win"),
    trace: bool = typer.Option(False, help="save the stop trace as JSON and a PNG plot beside --out"),
    surrogate: Optional[str] = typer.Option(None, help="a registered dataset whose images serve as surrogate data "
                                                       "(methods that declare a surrogate need, e.g. scar)"),
    surrogate_size: int = typer.Option(5000),
    data_dir: Optional[Path] = typer.Option(None),
):
    """Serve a deletion request: unlearn the named samples, write the new checkpoint and an audit manifest.

    Every input is checked before any work starts; the outputs are written only after the method finished, via
    temporary files, so an error or Ctrl-C leaves no partial output, and the input checkpoint is never touched."""
    from mumis.serving import manifest_path, prepare_request, serve_request
    from mumis.serving.requests import request_kind, resolve_method
    if surrogate_size < 1:
        raise MumisError(f"--surrogate-size must be at least 1, got {surrogate_size}")
    name, chosen, why = resolve_method(method, request_kind(ids, forget_class, forget_file))
    request = prepare_request(checkpoint, model_path, data, split_file, ids, forget_class, forget_file, out, overwrite,
                              name, {**chosen, **parse_options(name, option)}, surrogate, surrogate_size, data_dir,
                              trace=trace, why=why, recipe=recipe)
    if request.request.get("duplicates_dropped"):
        err_console.print(f"[yellow]warning:[/] {ids}: {request.request['duplicates_dropped']} duplicate id(s) dropped; "
                          "each sample is forgotten once")
    result = serve_request(request)
    console.print(f"{result['method']['request']} request → {name}: {request.why}")
    console.print(f"{name}: stopped after {result['stop']['steps']} steps ({result['stop']['reason']}) in "
                  f"{result['wall_s']:.2f} s; read {result['method']['data_read']} data → {out}")
    if result["stop"].get("atypical_forget_set"):
        console.print(f"{name}: the samples are classified worse than held-out data beyond sampling noise (samples the "
                      "model fits only because it saw them), so the step was taken as far as held-out accuracy allows")
    console.print(f"forget accuracy {result['before']['fa']:.2f} → {result['after']['fa']:.2f} %, "
                  f"MIA-efficacy {result['before']['mia']:.2f} → {result['after']['mia']:.2f} %; "
                  f"manifest → {manifest_path(out)}")


@app.command()
@friendly_errors
def verify(
    manifest: Path = typer.Argument(..., help="an audit manifest written by `mumis forget`"),
    data_dir: Optional[Path] = typer.Option(None),
):
    """Re-check an audit manifest: the SHA-256 of every file it names, and the forget metrics of the output."""
    from mumis.serving import verify_manifest
    checks = verify_manifest(manifest, data_dir)
    table = Table(title=f"verify {manifest}")
    for col in ("check", "manifest", "now", "ok"):
        table.add_column(col)
    for name, expected, actual, ok in checks:
        table.add_row(name, str(expected), str(actual), "[green]yes[/]" if ok else "[bold red]NO[/]")
    console.print(table)
    if not all(ok for *_, ok in checks):
        err_console.print("[bold red]verification failed[/]")
        raise typer.Exit(1)
    console.print("[green]all checks passed[/]")


@app.command("eval")
@friendly_errors
def eval_cmd(
    checkpoints: List[Path] = typer.Argument(..., help="one or more checkpoints trained on the same split"),
    split_file: Path = typer.Option(..., "--split"),
    forget_file: Path = typer.Option(..., "--forget"),
    reference: Optional[Path] = typer.Option(None, help="the retrain checkpoint: adds the Avg. Gap column"),
    data_dir: Optional[Path] = typer.Option(None),
):
    """FA, RA, TA, MIA (and Avg. Gap against --reference) for checkpoints on one split and forget set."""
    from mumis.bench import print_table
    from mumis.bench.results import ResultRow
    from mumis.metrics import avg_gap, evaluate
    rows, ref = [], None
    for path in ([reference] if reference else []) + list(checkpoints):
        model, meta, task = _load_task(path, split_file, forget_file, data_dir)
        m = evaluate(model, task)
        ref = ref or (m if reference else None)
        rows.append(ResultRow(method=path.stem, task=task.forget_set.request, dataset=meta.dataset, model=meta.architecture,
                              seed=meta.seed, fa=m["fa"], ra=m["ra"], ta=m["ta"], mia=m["mia"],
                              avg_gap=avg_gap(m, ref) if ref else float("nan"), wall_s=meta.wall_s,
                              avg_gap_no_mia=avg_gap(m, ref, keys=("fa", "ra", "ta")) if ref else float("nan"),
                              forgotten_test_acc=m["forgotten_test_acc"]))
    print_table(rows, console)


@app.command()
@friendly_errors
def demo(
    out: Path = typer.Option(Path("runs/demo"), help="folder for results.json, checkpoints and the trace plot"),
    preset: str = typer.Option("default", help="default (mnist5k, ~1 min) or tiny (digits, seconds)"),
    forget_class: int = typer.Option(3, help="the class the deletion request names"),
    seed: int = typer.Option(0),
    cache_dir: Optional[Path] = typer.Option(None, help="where original/retrain models are cached (default ~/.cache/mumis)"),
    progress: bool = typer.Option(True, help="show progress bars"),
    methods: str = typer.Option("mumis", help="comma-separated registered methods, or 'all' (retrain and original "
                                              "are always the first two rows)"),
    overwrite: bool = typer.Option(False, help="replace the results of an earlier run in --out"),
):
    """Train an original model and the retrain reference, run the methods (MU-Mis by default), print the table."""
    from mumis.bench import ExperimentConfig, print_table, run_experiment
    from mumis.runtime import stopwatch
    from mumis.training import TrainRecipe
    if preset not in DEMO_PRESETS:
        raise MumisError(f"unknown preset {preset!r}; choose one of: {', '.join(DEMO_PRESETS)}")
    names = _demo_methods(methods)
    plan_folder(out, ["split.json", "forget.json", "results.json"] + [
        f"{n}{ext}" for n in names for ext in (".safetensors", ".json")] + [
        f"trace-{n}{ext}" for n in names for ext in (".json", ".png")], [], overwrite)
    entries = tuple((n, ()) for n in names)  # every method at its defaults (MU-Mis: a class request)
    surrogate = DEMO_SURROGATES[preset] if "scar" in names else None
    if surrogate and not _loadable(surrogate):
        console.print(f"[yellow]scar skipped:[/] its surrogate data ({surrogate}) is not available here; "
                      f"`mumis list` shows how to provide it")
        entries, surrogate = tuple(e for e in entries if e[0] != "scar"), None
    setup = DEMO_PRESETS[preset]
    cfg = ExperimentConfig(task="full_class", target=forget_class, seed=seed, methods=entries, surrogate=surrogate,
                           surrogate_size=2000, dataset=setup["dataset"], model=setup["model"],
                           recipe=TrainRecipe(**setup["recipe"]))
    with stopwatch() as sw:
        rows = run_experiment(cfg, out, cache_dir, show_progress=progress, console=console)
    print_table(rows, console, title=f"Full-class forgetting of class {forget_class} on {cfg.dataset} ({cfg.model}, seed {seed})")
    retrain_row = rows[0]
    for r in rows[2:] if len(rows) > 3 else []:
        console.print(f"{r.method}: read {', '.join(r.extra['data_read']) or 'no'} data; {r.wall_s:.2f} s = "
                      f"{100 * r.wall_s / retrain_row.wall_s:.1f} % of the retrain's {retrain_row.wall_s:.1f} s")
    mumis_row = next((r for r in rows if r.method == "mumis"), None)
    if mumis_row is None:
        console.print(f"Rows → {out / 'results.json'}  (total {sw.seconds:.0f} s)")
        return
    console.print(
        f"MU-Mis read only {mumis_row.extra['data_read']} data; stop: {mumis_row.stop_reason} after {mumis_row.steps} steps; "
        f"time {mumis_row.wall_s:.2f} s = {100 * mumis_row.wall_s / retrain_row.wall_s:.1f} % of the retrain's {retrain_row.wall_s:.1f} s.\n"
        f"Input sensitivity of D_f before unlearning: own class {mumis_row.extra['target_sensitivity_0']:.3f}, "
        f"other classes {mumis_row.extra['irrelevant_sensitivity_0']:.3f}; step size {mumis_row.extra['lr']:.3g} "
        f"(chosen from the curvature of the objective; `mumis forget --option variant=paper` runs the published method).\n"
        f"Rows → {out / 'results.json'}; trace plot → {out / 'trace-mumis.png'}  (total {sw.seconds:.0f} s)"
    )


@app.command()
@friendly_errors
def bench(
    grid: str = typer.Argument(..., help="a grid file (TOML) or a shipped preset: " + ", ".join(PRESETS)),
    db: Optional[Path] = typer.Option(None, help="the SQLite results database (default runs/bench/<grid name>.sqlite); "
                                                 "rerunning with the same database resumes the grid"),
    cache_dir: Optional[Path] = typer.Option(None, help="where original/retrain models are cached (default ~/.cache/mumis)"),
    data_dir: Optional[Path] = typer.Option(None, help="where user-supplied dataset files live (overrides the grid's)"),
    progress: bool = typer.Option(True, help="show the progress bar"),
    executor: str = typer.Option("local", help="local (cells in this process) or ray (each cell a Ray task)"),
    address: Optional[str] = typer.Option(None, help="with --executor ray: the cluster to join (e.g. ray://head:10001 "
                                                     "or auto); default: start a local Ray instance"),
    cpus_per_cell: float = typer.Option(1.0, help="with --executor ray: CPUs each cell asks for"),
    gpus_per_cell: float = typer.Option(0.0, help="with --executor ray: GPUs each cell asks for (fractions share a GPU)"),
):
    """Run a benchmark grid; every finished cell is committed at once, so a killed run resumes where it stopped.

    With --executor ray the cells run as Ray tasks (this process alone writes the database); the model cache and
    --data-dir must then be on a filesystem every node shares."""
    from mumis.bench.grid import load_grid
    from mumis.bench.report import print_gap_summary
    from mumis.bench.runner import run_grid
    spec = load_grid(grid)
    if data_dir is not None:
        spec = dataclasses.replace(spec, data_dir=str(data_dir))
    db = db or Path("runs/bench") / f"{spec.name}.sqlite"
    outcome = run_grid(spec, db, cache_dir, show_progress=progress, console=console, executor=executor,
                       address=address, cpus_per_cell=cpus_per_cell, gpus_per_cell=gpus_per_cell)
    print_gap_summary(db, console, title=f"Avg. Gap to retrain (mean over seeds) — grid {spec.name}")
    console.print(f"{outcome.finished} cells run, {outcome.skipped} already done, {len(outcome.failed)} failed, "
                  f"{outcome.wall_s:.0f} s → {db}\nReport: mumis report {db}")
    for line in outcome.failed:
        err_console.print(f"[red]failed:[/] {line}")
    if outcome.failed:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def tune(
    method: str = typer.Argument(..., help="a method of the grid (its name or row label), or 'all' for every tunable one"),
    grid: str = typer.Argument(..., help="a grid file (TOML) or a shipped preset: " + ", ".join(PRESETS)),
    trials: int = typer.Option(20, help="finished trials per study (complete or over budget), the same for every method"),
    budget: float = typer.Option(1.0, help="a trial may take at most this × the retrain's wall time (over: pruned)"),
    seed: int = typer.Option(100, help="the tuning split/seed; must not be one of the grid's reported seeds"),
    task: Optional[str] = typer.Option(None, help="tune on this task kind of the grid only"),
    storage: Path = typer.Option(Path("runs/tuning.sqlite3"), help="the Optuna SQLite storage; rerun to resume"),
    save: Optional[str] = typer.Option(None, help="add the best options to this recipe (a name such as 'tuned' for the "
                                                  "package's recipes/tuned.json, or a .json path)"),
    markdown: Optional[Path] = typer.Option(None, help="also write the summary table as markdown to this file"),
    summary: bool = typer.Option(False, help="run no trials: print (and --markdown) the studies the storage holds"),
    cache_dir: Optional[Path] = typer.Option(None, help="where original/retrain models are cached (default ~/.cache/mumis)"),
    progress: bool = typer.Option(True, help="show the progress bar"),
):
    """Tune methods against retrain with Optuna (TPE): the same number of trials each, on a seed the reported cells
    never use; a killed run resumes from the storage. Open the studies with optuna-dashboard sqlite:///STORAGE."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise MumisError("mumis tune needs Optuna: pip install 'mumis[tune]' (or pip install optuna)") from None
    from mumis.bench.grid import load_grid
    from mumis.bench.references import default_cache_dir
    from mumis.bench.tuning import TuneSettings, recipe_entry, stored_summaries, tunable, tune_grid
    from mumis.methods.recipes import save_entry
    if trials < 1:
        raise MumisError(f"--trials must be at least 1, got {trials}")
    if not (math.isfinite(budget) and budget > 0):
        raise MumisError(f"--budget must be a finite number above 0, got {budget}")
    spec = load_grid(grid)
    if task is not None:
        kinds = sorted({t.task.kind for t in spec.tasks})
        if task not in kinds:
            raise MumisError(f"--task {task!r} is not a task kind of grid {spec.name!r}; it has {kinds}")
        spec = dataclasses.replace(spec, tasks=tuple(t for t in spec.tasks if t.task.kind == task))
    if method == "all":
        entries = [e for e in spec.methods if tunable(e) is None]
        for e in spec.methods:
            if tunable(e) is not None:
                console.print(f"[dim]not tuned: {e.row_label} — {tunable(e)}[/]")
    else:
        entries = [e for e in spec.methods if method in (e.row_label, e.name) and not e.recipe]
        if not entries:
            raise MumisError(f"no method {method!r} in grid {spec.name!r}; it has {[e.row_label for e in spec.methods]}")
        for e in entries:
            if tunable(e) is not None:
                raise MumisError(f"{e.row_label}: {tunable(e)}")
    storage.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{storage.resolve()}"
    settings = TuneSettings(trials=trials, budget=budget, seed=seed)
    if summary:
        results = stored_summaries(spec, entries, url, settings)
    else:
        results = tune_grid(spec, entries, url, settings, Path(cache_dir) if cache_dir else default_cache_dir(),
                            show_progress=progress)
    title = f"Tuning against retrain — grid {spec.name}, seed {seed}, {trials} trials each"
    columns = ("method", "task", "dataset", "model", "done", "over budget", "default gap", "best gap", "best options",
               "best s / retrain s", "tuning s")
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in ("method", "task", "dataset", "model", "best options") else "right")
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    lines = []
    for cell, summary in results:
        ratio = (f"{summary['best_wall_s']:.1f} / {summary['retrain_s']:.1f}" if summary["best_wall_s"] is not None
                 else "–")
        row = (cell.label, cell.task.label, cell.dataset, cell.model, str(summary["complete"]),
               str(summary["over_budget"]), fmt(summary["default_gap"]), fmt(summary["best_gap"]),
               ", ".join(f"{k}={v:.3g}" for k, v in summary["best_params"].items()), ratio, f"{summary['cost_s']:.0f}")
        table.add_row(*row)
        lines.append("| " + " | ".join(row) + " |")
        if save and summary["best_params"]:
            save_entry(save, recipe_entry(cell, summary, str(storage), settings))
    console.print(table)
    if markdown is not None:
        markdown.parent.mkdir(parents=True, exist_ok=True)
        markdown.write_text(f"{title}\n\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
                            + "\n".join(lines) + "\n", encoding="utf-8")
    console.print(f"studies → {storage} (optuna-dashboard {url})" + (f"; recipe → {save}" if save else ""))


@app.command()
@friendly_errors
def report(
    db: Path = typer.Argument(..., help="a results database written by `mumis bench`"),
    out: Optional[Path] = typer.Option(None, help="folder for report.md and figures/ (default: beside the database)"),
    title: str = typer.Option("", help="the report's heading"),
    overwrite: bool = typer.Option(False, help="replace an earlier report (report.md and figures/) in the folder"),
    tuning: Optional[Path] = typer.Option(None, help="add the studies of this `mumis tune` storage (SQLite): each "
                                                     "tuned method's trials, best and default score and cost"),
):
    """Markdown tables in the paper's layout and PNG figures from a results database."""
    from mumis.bench.report import write_report
    if not db.is_file():
        raise MumisError(f"{db} does not exist; run `mumis bench GRID --db {db}` first")
    if tuning is not None and not tuning.is_file():
        raise MumisError(f"--tuning {tuning} does not exist; pass the --storage file `mumis tune` wrote")
    folder = out or db.with_suffix("")
    plan_folder(folder, ["report.md"], [db], overwrite)
    figures = folder / "figures"
    if figures.exists() and not figures.is_dir():
        raise MumisError(f"{figures} is a file, but the report writes its figures there; choose another --out")
    taken = sorted(figures.glob("*.png")) if figures.is_dir() else []
    if taken and not overwrite:
        raise MumisError(f"{figures} already holds {len(taken)} figure(s); pass --overwrite to replace them")
    path = write_report(db, folder, title, tuning)
    console.print(f"report → {path}")


def _loadable(dataset: str) -> bool:
    from mumis.data import load_dataset
    try:
        load_dataset(dataset)
        return True
    except MumisError:
        return False


def _demo_methods(spec: str) -> list[str]:
    """'all' = every registered method except the two reference rows; otherwise a checked comma-separated list."""
    from mumis.methods import list_methods
    known = list_methods()
    if spec.strip() == "all":
        return [m for m in known if m not in ("retrain", "original")]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise MumisError(f"unknown method(s) {unknown or spec!r} for --methods; choose from: all, {', '.join(known)}")
    if set(names) & {"retrain", "original"}:
        raise MumisError("retrain and original are always the table's first rows; leave them out of --methods")
    return names


def main():  # pragma: no cover
    sys.exit(app())


if __name__ == "__main__":  # `torchrun --nproc-per-node N -m mumis.cli train ...`
    main()

"""`mumis report DB`: markdown tables in the paper's layout and the paper's figures, from the results database.

Tables: one per (dataset, model, task); rows = methods with the retrained model first, columns FA / RA / TA / MIA /
Avg. Gap / time, each the mean ± 95 % CI half-width over seeds (Student t; no ± with one seed). A second table per
task holds the rest of the evaluation suite. Sequential tasks are reported at their last step, with the per-step
Avg. Gap and KL as figures (the paper's Figs. 5 and 7).
"""
from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Optional

import numpy as np
from matplotlib.figure import Figure  # a bare Figure: no pyplot, no backend switched in the caller's process

from mumis.bench.plots import fitted_title, plot_trace
from mumis.bench.store import ResultStore
from mumis.data import atomic_write_text
from mumis.metrics import mean_ci

MAIN_COLUMNS = (("FA", "fa"), ("RA", "ra"), ("TA", "ta"), ("MIA", "mia"), ("Avg. Gap", "avg_gap"), ("Time (s)", "wall_s"))
SUITE_COLUMNS = (("Gap w/o MIA", "avg_gap_no_mia"), ("ToW", "tow"), ("MIA strat.", "mia_stratified"),
                 ("Loss-MIA", "mia_loss"), ("KL→rt", "kl"), ("JS→rt", "js"), ("Relearn steps", "relearn_steps"),
                 ("‖∇f_c‖", "target_sens"), ("‖∇f_c'‖", "irrelevant_sens"), ("↑ f_c %", "target_up"),
                 ("↑ f_c' %", "irrelevant_up"), ("↑ gap %", "gap_up"), ("LiRA AUC", "lira_auc"),
                 ("LiRA TPR@1%", "lira_tpr_1pct"))


def _split_parts(holdout: Optional[float]) -> tuple[str, ...]:
    """How a report names a split: nothing for the official one, ``holdout=F`` for a share of the training pool."""
    return () if holdout is None else (f"holdout={holdout:g}",)


def cell_task(row: dict) -> str:
    """The task as a report names its cell: the task's label, and the hold-out share where the cell's held-out data
    came from the training pool (a cell measured on another split is another cell, never averaged with it)."""
    return " · ".join((row["task"], *_split_parts(row.get("holdout"))))


def latest_rows(rows: list[dict]) -> list[dict]:
    """One row per (dataset, model, task, seed, method, step): the most recently finished. A grid edited and rerun
    into the same database keeps the older cells (nothing is deleted), but reports show the current ones."""
    latest = {}
    for r in rows:  # ResultStore.rows() is ordered by finish time
        latest[(r["dataset"], r["model"], cell_task(r), r["seed"], r["method"], r["step"])] = r
    return list(latest.values())


def trace_row(rows: list[dict]) -> Optional[dict]:
    """The MU-Mis row whose trace a cell's figure shows: the default-labelled run (label = method name) before any
    variant (e.g. "mumis (paper)"), then the lowest seed — never whichever the database happened to finish first."""
    traced = [r for r in rows if r["method_name"] == "mumis" and r.get("trace")]
    return min(traced, key=lambda r: (r["method"] != r["method_name"], r["seed"]), default=None)


def _cell(values: list, digits: int = 2) -> str:
    mean, half = mean_ci([v if v is not None else math.nan for v in values])
    if math.isnan(mean):
        return "–"
    return f"{mean:.{digits}f}" if math.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def _method_order(rows: list[dict]) -> list[str]:
    seen = []
    for r in rows:
        if r["method"] not in seen:
            seen.append(r["method"])
    refs = [m for m in ("retrain", "original") if m in seen]
    return refs + [m for m in seen if m not in refs]


def _table(rows: list[dict], columns) -> list[str]:
    """One row per method (mean ± CI over seeds); a column no row has a value for (the per-example attack of a grid
    without shadow models) is left out."""
    columns = [(c, k) for c, k in columns if any(r.get(k) is not None for r in rows)]
    by_method = defaultdict(list)
    for r in rows:
        by_method[r["method"]].append(r)
    lines = ["| Method | " + " | ".join(c for c, _ in columns) + " | seeds |", "|---" * (len(columns) + 2) + "|"]
    for m in _method_order(rows):
        group = by_method[m]
        digits = {"tow": 3, "kl": 3, "js": 3, "relearn_steps": 1, "lira_auc": 3, "lira_tpr_1pct": 3}
        cells = [_cell([r.get(k) for r in group], digits.get(k, 2)) for _, k in columns]
        name = f"**{m}**" if m == "retrain" else m
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(group)} |")
    return lines


def _slug(*parts) -> str:
    return "-".join(str(p) for p in parts).replace(" · ", "-").replace("=", "").replace(",", "_").replace("(", "").replace(")", "").replace("/", "_")


def _fig_sensitivity(profiles: dict, title: str, path: Path) -> Path:
    """Figs. 2–3: full-Jacobian sensitivity of D_f at random init / trained / retrained; target vs irrelevant."""
    fig = Figure(figsize=(14, 3.8))
    axes = fig.subplots(1, 3)
    for role, colour in (("init", "tab:grey"), ("original", "tab:blue"), ("retrain", "tab:green")):
        values = np.asarray(profiles[role]["full"])
        axes[0].hist(np.log10(values + 1e-12), bins=40, alpha=0.6, color=colour, label=role)
    axes[0].set(title="Fig. 2: ‖∇x f‖_F on D_f", xlabel="log10 sensitivity", ylabel="samples")
    axes[0].legend(fontsize=8)
    for ax, role in ((axes[1], "init"), (axes[2], "original")):
        t, o = np.asarray(profiles[role]["target"]), np.asarray(profiles[role]["irrelevant"])
        bins = np.linspace(0, max(t.max(), o.max()) * 1.05, 40)
        ax.hist(t, bins=bins, alpha=0.6, label="target ‖∇x f_c‖")
        ax.hist(o, bins=bins, alpha=0.6, label="irrelevant mean ‖∇x f_c'‖")
        ax.set(title=f"Fig. 3: {role} model", xlabel="sensitivity")
        ax.legend(fontsize=8)
    fitted_title(fig, title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _fig_delta(rows_by_task: dict, title: str, path: Path) -> Path:
    """Fig. 4: % of D_f samples whose sensitivity rose against the original model, per method and task."""
    tasks = list(rows_by_task)
    fig = Figure(figsize=(4.5 * len(tasks), 3.8))
    axes = fig.subplots(1, len(tasks), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        rows = [r for r in rows_by_task[task] if r["method"] != "original"]
        methods = _method_order(rows)
        x = np.arange(len(methods))
        for i, (key, label) in enumerate((("target_up", "‖∇f_c‖"), ("irrelevant_up", "‖∇f_c'‖"), ("gap_up", "gap"))):
            means = [mean_ci([r.get(key) for r in rows if r["method"] == m])[0] for m in methods]
            ax.bar(x + (i - 1) * 0.27, means, 0.27, label=f"{label} rose")
        ax.axhline(50, color="grey", lw=0.6)
        ax.set_xticks(x, methods, rotation=45, ha="right", fontsize=8)
        ax.set(title=task, ylabel="% of D_f samples", ylim=(0, 100))
    axes[0][0].legend(fontsize=7)
    fitted_title(fig, title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def _fig_per_example(rows: list[dict], title: str, path: Path) -> Path:
    """The per-sample LiRA scores of D_f under the retrained model, the original and each method (lowest seed):
    an unlearned model's distribution should sit on the retrained model's, not on the original's."""
    seed = min(r["seed"] for r in rows)
    shown = [r for r in rows if r["seed"] == seed and r.get("lira_scores")]
    everything = np.concatenate([r["lira_scores"] for r in shown])
    low, high = np.percentile(everything, [1, 99])
    bins = np.linspace(low, high, 40)
    fig = Figure(figsize=(7, 3.8))
    ax = fig.subplots()
    for m in _method_order(shown):
        scores = next(r["lira_scores"] for r in shown if r["method"] == m)
        style = {"retrain": dict(color="black", lw=2), "original": dict(color="grey", lw=2, ls="--")}.get(m, {})
        ax.hist(np.clip(scores, low, high), bins, histtype="step", density=True, label=m, **style)
    ax.set(xlabel="LiRA score of a D_f sample (high: looks like a member)", ylabel="density")
    ax.legend(fontsize=7)
    fitted_title(fig, f"{title} (seed {seed})")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def per_example_section(groups: dict) -> list[str]:
    """Markdown lines: every cell's per-example attack (online LiRA AUC of D_f against never-seen test samples,
    mean ± CI over seeds, at the task's last step) side by side, the retrained model's value first."""
    cells = {key: rows for key, rows in groups.items() if any(r.get("lira_auc") is not None for r in rows)}
    if not cells:
        return []
    methods = _method_order([r for rows in cells.values() for r in rows])
    lines = ["## Per-example attack across the grid", "",
             "Online LiRA AUC of D_f against never-seen test samples (0.5: indistinguishable; the retrained model's value "
             "is the target, not 0.5: samples a model fits only when it sees them score below typical unseen ones once "
             "unseen).", "", "| Cell | " + " | ".join(methods) + " |", "|---" * (len(methods) + 1) + "|"]
    for (dataset, model, task), rows in cells.items():
        last = max(r["step"] for r in rows)
        final = [r for r in rows if r["step"] == last]
        values = [_cell([r.get("lira_auc") for r in final if r["method"] == m], 3) for m in methods]
        lines.append(f"| {dataset} · {model} · {task} | " + " | ".join(values) + " |")
    return lines + [""]


def _fig_sequential(rows: list[dict], title: str, path: Path) -> Path:
    """Figs. 5 and 7: Avg. Gap, FA on everything forgotten so far, and KL to the retrained model, per step."""
    fig = Figure(figsize=(14, 3.8))
    axes = fig.subplots(1, 3)
    for m in _method_order(rows):
        if m == "retrain":
            continue
        steps = sorted({r["step"] for r in rows if r["method"] == m})
        for ax, key in zip(axes, ("avg_gap", "fa", "kl")):
            ax.plot(steps, [mean_ci([r.get(key) for r in rows if r["method"] == m and r["step"] == s])[0] for s in steps],
                    "o-", label=m)
    all_steps = sorted({r["step"] for r in rows})
    for ax, t in zip(axes, ("Fig. 5: Avg. Gap to retrain", "FA on all forgotten so far (%)", "Fig. 7: KL(retrain ‖ model) on D_f")):
        ax.set(title=t, xlabel="requests served")
        ax.set_xticks(all_steps)
    axes[0].legend(fontsize=8)
    fitted_title(fig, title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


def write_report(db: str | Path, out_dir: str | Path, title: str = "", tuning: str | Path | None = None) -> Path:
    """Write ``report.md`` and its PNG figures into ``out_dir``; returns the markdown path. ``tuning``: the SQLite
    storage of `mumis tune`, whose studies (best and default score, cost) are added as a section."""
    out_dir = Path(out_dir)
    fig_dir = out_dir / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    with ResultStore(db) as store:
        rows, failures, sensitivity = latest_rows(store.rows()), store.failures(), store.artifacts("sensitivity")
    groups = defaultdict(list)
    for r in rows:
        groups[(r["dataset"], r["model"], cell_task(r))].append(r)
    seeds = sorted({r["seed"] for r in rows})
    lines = [f"# {title or 'mumis benchmark report'}", "",
             f"{len(rows)} result rows from `{Path(db).name}`; seeds {seeds}; git {sorted({str(r.get('git_sha'))[:10] for r in rows})}; "
             f"mumis {sorted({r['versions'].get('mumis') for r in rows})}, torch {sorted({r['versions'].get('torch') for r in rows})}, "
             f"devices {sorted({str(r['versions'].get('device', 'not recorded')) for r in rows})}.",
             "Cells: mean ± 95 % CI half-width over seeds (Student t). Accuracies, MIA and Avg. Gap in percent points; "
             "Avg. Gap = mean |Δ| of FA, RA, TA, MIA against the retrained model of the same seed; time = training time for "
             "retrain/original, unlearning time for methods.", ""]
    if failures:
        lines += [f"**{len(failures)} failed cell(s)** (rerun `mumis bench` to retry them):", ""]
        lines += [f"- {f['label']}: `{f['error'][:200]}`" for f in failures] + [""]
    by_dataset_model = defaultdict(dict)
    for (dataset, model, task), group in groups.items():
        last = max(r["step"] for r in group)
        final = [r for r in group if r["step"] == last]
        kind = group[0]["task_kind"]
        heading = f"## {dataset} · {model} · {task}"
        if kind == "sequential":
            heading += f" (after request {last} of {last})"
        lines += [heading, "", *_table(final, MAIN_COLUMNS), "", "Evaluation suite:", "", *_table(final, SUITE_COLUMNS), ""]
        if kind == "sequential":
            path = _fig_sequential(group, f"{dataset} · {model} · {task}", fig_dir / f"sequential-{_slug(dataset, model, task)}.png")
            lines += [f"![sequential]({path.relative_to(out_dir)})", ""]
        else:
            by_dataset_model[(dataset, model)][task] = final
        if any(r.get("lira_scores") for r in final):
            path = _fig_per_example(final, f"Per-sample LiRA scores of D_f · {dataset} · {model} · {task}",
                                    fig_dir / f"per-example-{_slug(dataset, model, task)}.png")
            lines += [f"![per-example]({path.relative_to(out_dir)})", ""]
        r = trace_row(final)
        if r is not None:
            path = plot_trace(r["trace"], r.get("stop_reason", ""), fig_dir / f"trace-{_slug(dataset, model, task)}.png",
                              title=f"{r['method']} on {dataset} · {model} · {task} (seed {r['seed']}, step {r['step']})")
            lines += [f"![MU-Mis trace]({path.relative_to(out_dir)})", ""]
    lines += per_example_section(groups)
    if by_dataset_model:
        lines += ["## Input-sensitivity diagnostics", ""]
    for (dataset, model), tasks in by_dataset_model.items():
        path = _fig_delta(tasks, f"Fig. 4: Δ rise ratios on D_f ({dataset} · {model})", fig_dir / f"delta-{_slug(dataset, model)}.png")
        lines += [f"![delta]({path.relative_to(out_dir)})", ""]
    for spec, payload in sorted(sensitivity, key=lambda sp: (sp[0]["dataset"], sp[0]["model"], sp[0]["seed"])):
        if spec["seed"] != min(seeds) or spec["task"]["kind"] != "full_class":
            continue
        split = _split_parts(spec.get("holdout"))
        name = " · ".join((spec["dataset"], spec["model"], f"full_class={spec['task']['target']}", *split))
        path = _fig_sensitivity(payload, f"{name} (seed {spec['seed']})",
                                fig_dir / f"sensitivity-{_slug(spec['dataset'], spec['model'], *split)}.png")
        lines += [f"![sensitivity]({path.relative_to(out_dir)})", ""]
    if tuning is not None:
        lines += tuning_section(tuning)
    report = out_dir / "report.md"
    atomic_write_text(report, "\n".join(lines))
    return report


def print_gap_summary(db: str | Path, console=None, title: str = "") -> None:
    """A terminal table: methods × (dataset, model, task), mean Avg. Gap over seeds at each task's last step."""
    from rich.console import Console
    from rich.table import Table

    with ResultStore(db) as store:
        rows = latest_rows(store.rows())
    last = defaultdict(int)
    for r in rows:
        cell = (r["dataset"], r["model"], cell_task(r))
        last[cell] = max(last[cell], r["step"])
    columns = list(last)
    table = Table(title=title)
    table.add_column("Method")
    for dataset, model, task in columns:
        table.add_column(f"{dataset}\n{model}\n{task}", justify="right")
    for m in _method_order(rows):
        cells = []
        for col in columns:
            values = [r["avg_gap"] for r in rows if r["method"] == m and (r["dataset"], r["model"], cell_task(r)) == col
                      and r["step"] == last[col]]
            cells.append(_cell(values) if values else "–")
        table.add_row(m, *cells)
    (console or Console()).print(table)


def tuning_section(storage: str | Path) -> list[str]:
    """Markdown lines: every study of a `mumis tune` storage — trials, default and best Avg. Gap on the tuning seed,
    the best options and the tuning cost (the sum of its trials' wall times)."""
    from mumis.bench.tuning import quiet_optuna, study_summary

    url = f"sqlite:///{Path(storage).resolve()}"
    with quiet_optuna() as optuna:
        studies = [optuna.load_study(study_name=s.study_name, storage=url) for s in optuna.get_all_study_summaries(url)]
        summaries = sorted((study_summary(s) for s in studies), key=lambda x: x["study"])
    fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
    lines = ["## Tuning against retrain", "",
             f"The `(tuned)` rows above run the options these studies found (`{Path(storage).name}`; each on a seed the "
             "rows above never use; Avg. Gap on that seed). Cost = the sum of the study's trial times.", "",
             "| study | trials | over budget | default gap | best gap | best options | cost (s) |", "|---|---|---|---|---|---|---|"]
    for x in summaries:
        options = ", ".join(f"{k}={v:.3g}" for k, v in x["best_params"].items())
        lines.append(f"| {x['study'].replace(' | ', ' · ')} | {x['complete'] + x['over_budget']} | {x['over_budget']} | {fmt(x['default_gap'])} "
                     f"| {fmt(x['best_gap'])} | {options} | {x['cost_s']:.0f} |")
    return lines + [""]

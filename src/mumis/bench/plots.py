"""Figures a person would rather look at than a table. Drawn on a bare ``Figure`` (no pyplot): no backend is
switched and no global figure state is touched in the caller's process, and matplotlib is imported only when a
figure is drawn (serving a request without ``--trace`` never pays for it)."""
from __future__ import annotations

import textwrap
from pathlib import Path


def fitted_title(fig, text: str, fontsize: float = 11.0):
    """``fig.suptitle(text)`` wrapped onto as many lines as the figure's width needs, so a long title (dataset ·
    model · task · seed) is never cut off at the figure's edges. Returns the title's ``Text``."""
    per_line = max(int(fig.get_figwidth() * 72 / (0.6 * fontsize)), 20)  # ≈ 0.6 em per character
    return fig.suptitle(textwrap.fill(text, per_line), fontsize=fontsize)


def plot_trace(trace: list[dict], stop_reason: str, path: str | Path, delta: float | None = None, title: str = "") -> Path:
    """MU-Mis's Fig. 4: forget accuracy, loss, and target/irrelevant sensitivity per step, stop point marked."""
    steps = [r["step"] for r in trace]
    from matplotlib.figure import Figure

    fig = Figure(figsize=(13, 3.6))
    axes = fig.subplots(1, 3)
    axes[0].plot(steps, [r["forget_acc"] for r in trace], "o-", color="tab:red")
    axes[0].set(title="forget accuracy (%)", xlabel="step", ylim=(-2, 102))
    axes[1].plot(steps, [r["loss"] for r in trace], "o-", color="tab:purple")
    axes[1].axhline(0, color="grey", lw=0.6)
    axes[1].set(title="MU-Mis objective on D_f (the run's `objective` option)", xlabel="step")
    measured = [r for r in trace if "target" in r]  # checks that only read logits skip the sensitivities
    axes[2].plot([r["step"] for r in measured], [r["target"] for r in measured], "o-", label="target ‖∇x f_c‖")
    axes[2].plot([r["step"] for r in measured], [r["irrelevant"] for r in measured], "o-", label="irrelevant ‖∇x f_c'‖")
    if delta is not None:
        axes[2].axhline(delta * trace[0]["irrelevant"], ls="--", color="tab:orange", lw=1, label=f"δ·S0 (δ={delta})")
    axes[2].set(title="input sensitivity on D_f", xlabel="step")
    axes[2].legend(fontsize=8)
    for ax in axes:
        ax.axvline(steps[-1], color="black", ls=":", lw=1)
    axes[0].annotate(f"stop: {stop_reason}", (steps[-1], 95), ha="right", fontsize=9)
    fitted_title(fig, title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path

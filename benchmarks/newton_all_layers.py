"""Issue 4, round 7: the Newton removal step on every conv and linear layer, K-FAC curvature — why it stays out.

    python benchmarks/newton_all_layers.py [--dataset mnist5k] [--model resnet_small] [--seeds 0 1 2]
                                           [--scales 1 0.1 0.08 0.06 0.04 0.03 0.02] [--damping 5e-4]
                                           [--curvature heldout retain]

``newton`` (methods/newton.py) takes one Newton step on the classifier layer; on the ResNets the forget samples are
memorised inside the features and the step is ≈ 0. This measures the same step on every ``nn.Conv2d`` and
``nn.Linear``, random 10 % forgetting, BatchNorm frozen (eval mode):

    Δθ_l = n_f / (n − n_f) · (F_l + γI)⁻¹ r_l,      F_l ≈ A_l ⊗ G_l / T_l      (K-FAC; Grosse & Martens 2016)

A_l = Σ_{n,t} a aᵀ / N (input patches a, T_l spatial positions), G_l = Σ_{n,t} g gᵀ / N (output gradients of the
per-sample cross-entropy, exact expectation over the model's own predictive distribution: the Gauss-Newton
matrix's K-FAC form), γ = the damping (default: the training weight decay), r_l = the mean cross-entropy gradient
over D_f, plus γθ on the classifier layer only (the BatchNorm'd convolutions do not satisfy mean_D ∇CE = −λθ).
The damped inverse comes from the eigendecompositions of A_l and G_l. Curvature from the held-out set (what a
method may read) or from D_r (an oracle no retain-free method has). For each step scale the table gives the Avg.
Gap to the reference retrain, held-out accuracy, and the share of D_f / held-out data below the one-threshold
membership attack's threshold t* (``stopping.membership_threshold``); the two held-out rules a method could use
are marked: ``guard`` = the largest scale that keeps held-out accuracy within two standard errors, ``membership`` =
the smallest scale at which as large a share of D_f as of held-out data is below t*. Not a method: it stays a
measurement (docs/mumis-variants.md, round 7).
"""
from __future__ import annotations

import argparse
import copy

import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table
from torch import nn

from mumis.bench.experiment import persisted_split
from mumis.bench.references import default_cache_dir, trained_reference
from mumis.data import build_forget_set, load_dataset, task_from_views
from mumis.methods.stopping import accuracy_tolerance, membership_threshold
from mumis.metrics import avg_gap, evaluate
from mumis.training import TrainRecipe


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _inputs_as_rows(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The vectors the layer's weight multiplies, one row per (sample, position), with a 1 appended for a bias."""
    if isinstance(layer, nn.Conv2d):
        patches = F.unfold(x, layer.kernel_size, layer.dilation, layer.padding, layer.stride)  # N, C·k·k, T
        x = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    if layer.bias is not None:
        x = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1)
    return x


def kfac_factors(model: nn.Module, x: torch.Tensor, batch: int = 500) -> dict:
    """layer → (A, G, T) over the inputs ``x`` (see the module docstring), model in eval mode."""
    layers = _layers(model)
    inputs, grads = {}, {}

    def record(layer, args, output):  # the layer's input now, the gradient at its output during backward
        inputs[layer] = (args[0].detach(), output.shape)
        output.register_hook(lambda g: grads.__setitem__(layer, g.detach()))

    hooks = [m.register_forward_hook(record) for m in layers]
    A = {m: 0.0 for m in layers}
    G = {m: 0.0 for m in layers}
    positions = {}
    try:
        for i in range(0, len(x), batch):
            logits = model(x[i:i + batch])
            prob = torch.softmax(logits, 1).detach()
            for m in layers:
                rows = _inputs_as_rows(m, inputs[m][0])
                A[m] = A[m] + rows.T @ rows
                shape = inputs[m][1]
                positions[m] = shape[2] * shape[3] if len(shape) == 4 else 1
            for k in range(logits.shape[1]):  # E_{y~p} of g gᵀ: one backward per class, weighted by √p_k
                labels = torch.full((len(logits),), k)
                loss = (prob[:, k].sqrt() * F.cross_entropy(logits, labels, reduction="none")).sum()
                model.zero_grad(set_to_none=True)
                loss.backward(retain_graph=k < logits.shape[1] - 1)
                for m in layers:
                    g = grads[m]
                    g = g.permute(0, 2, 3, 1).reshape(-1, g.shape[1]) if g.dim() == 4 else g
                    G[m] = G[m] + g.T @ g
    finally:
        for h in hooks:
            h.remove()
    return {m: (A[m].double() / len(x), G[m].double() / len(x), positions[m]) for m in layers}


def _as_matrix(layer: nn.Module, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    w = weight.reshape(weight.shape[0], -1)
    return torch.cat([w, bias[:, None]], 1) if bias is not None else w


def kfac_removal_step(model: nn.Module, forget, curvature_x: torch.Tensor, train_size: int, damping: float,
                      weight_decay: float) -> dict:
    """layer → Δθ (out × in[+1]) of the K-FAC Newton removal step (module docstring)."""
    factors = kfac_factors(model, curvature_x)
    x, y = forget.tensors()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    n_f = len(y)
    step = {}
    for m, (A, G, positions) in factors.items():
        rhs = _as_matrix(m, m.weight.grad, m.bias.grad if m.bias is not None else None).double()
        if isinstance(m, nn.Linear):  # stationarity of the weight-decayed objective holds here, not behind BatchNorm
            rhs = rhs + weight_decay * _as_matrix(m, m.weight.detach(), m.bias.detach() if m.bias is not None else None).double()
        sa, qa = torch.linalg.eigh(A)
        sg, qg = torch.linalg.eigh(G)
        scaled = (qg.T @ rhs @ qa) / (sg.clamp(min=0)[:, None] * sa.clamp(min=0)[None, :] / positions + damping)
        step[m] = (qg @ scaled @ qa.T) * (n_f / (train_size - n_f))
    model.zero_grad(set_to_none=True)
    return step


def _moved(model: nn.Module, step: dict, scale: float) -> nn.Module:
    new = copy.deepcopy(model).eval()
    with torch.no_grad():
        for old, m in zip(_layers(model), _layers(new)):
            theta = _as_matrix(m, m.weight, m.bias).double() + scale * step[old]
            if m.bias is not None:
                m.bias.copy_(theta[:, -1])
                theta = theta[:, :-1]
            m.weight.copy_(theta.reshape(m.weight.shape))
    return new


@torch.no_grad()
def _confidence(model: nn.Module, data) -> tuple[torch.Tensor, float]:
    x, y = data.tensors()
    logits = model(x)
    return torch.softmax(logits.double(), 1).gather(1, y[:, None]).squeeze(1), 100.0 * float((logits.argmax(1) == y).double().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="resnet_small")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--scales", nargs="+", type=float, default=[1, 0.1, 0.08, 0.06, 0.04, 0.03, 0.02])
    parser.add_argument("--damping", nargs="+", type=float, default=None, help="default: the recipe's weight decay")
    parser.add_argument("--curvature", nargs="+", choices=("heldout", "retain"), default=["heldout"],
                        help="'retain' is an oracle (reads D_r): what the step would do with the true curvature")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    cache, recipe = default_cache_dir(), TrainRecipe(epochs=args.epochs)
    dampings = args.damping or [recipe.weight_decay]
    console = Console(width=200)
    table = Table(title=f"K-FAC Newton removal on every layer, {args.dataset} × {args.model}, random 10 %: Avg. Gap to retrain")
    for col in ("seed", "curvature", "damping", "scale", "Avg. Gap", "FA", "RA", "TA", "MIA", "held-out acc",
                "D_f / held-out below t*", "rule picks"):
        table.add_column(col, justify="right")
    for seed in args.seeds:
        bundle = load_dataset(args.dataset)
        split = persisted_split(bundle, seed, cache)
        train, test = split.materialise(bundle)
        forget_set = build_forget_set("random", train, split, 0.1, seed=seed)
        task = task_from_views(train, test, split, forget_set)
        original, _, _ = trained_reference("original", train, args.model, split, recipe, seed, cache, show_progress=False, test=test)
        retrain, _, _ = trained_reference("retrain", task.retain, args.model, split, recipe, seed, cache,
                                          forget_sha=forget_set.sha256, show_progress=False, test=test)
        original.eval()
        reference = evaluate(retrain, task)
        start = evaluate(original, task)
        table.add_row(str(seed), "–", "–", "0 (original)", f"{avg_gap(start, reference):.2f}",
                      *(f"{start[k]:.2f}" for k in ("fa", "ra", "ta", "mia")), "", "", "")
        table.add_row(str(seed), "–", "–", "retrain", "0.00", *(f"{reference[k]:.2f}" for k in ("fa", "ra", "ta", "mia")),
                      "", "", "")
        conf_f, _ = _confidence(original, task.forget)
        conf_h, acc_h = _confidence(original, task.heldout)
        threshold, tolerance = membership_threshold(conf_f, conf_h), accuracy_tolerance(acc_h, len(conf_h))
        for source in args.curvature:
            curvature_x = (task.heldout if source == "heldout" else task.retain).tensors()[0]
            for damping in dampings:
                step = kfac_removal_step(original, task.forget, curvature_x, len(train), damping, recipe.weight_decay)
                rows = []
                for scale in sorted(args.scales):
                    moved = _moved(original, step, scale)
                    cf, _ = _confidence(moved, task.forget)
                    ch, acc = _confidence(moved, task.heldout)
                    share_f, share_h = 100 * float((cf < threshold).double().mean()), 100 * float((ch < threshold).double().mean())
                    rows.append((scale, evaluate(moved, task), acc, share_f, share_h))
                within = [r[0] for r in rows if r[2] >= acc_h - tolerance]
                guard = max(within) if within else None
                membership = next((r[0] for r in rows if r[3] >= r[4]), None)
                for scale, result, acc, share_f, share_h in rows:
                    picks = [name for name, s in (("guard", guard), ("membership", membership)) if s == scale]
                    table.add_row(str(seed), source, f"{damping:g}", f"{scale:g}", f"{avg_gap(result, reference):.2f}",
                                  *(f"{result[k]:.2f}" for k in ("fa", "ra", "ta", "mia")), f"{acc:.2f}",
                                  f"{share_f:.1f} / {share_h:.1f}", ", ".join(picks))
        console.log(f"seed {seed} done")
    console.print(table)
    console.print("guard: the largest scale keeping held-out accuracy within two standard errors; membership: the smallest "
                  "scale with as large a share of D_f as of held-out data below the attack threshold t*.")


if __name__ == "__main__":
    main()

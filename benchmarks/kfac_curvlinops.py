"""`newton`'s hand-written K-FAC / EK-FAC (methods/kfac.py) against curvlinops-for-pytorch's maintained operators.

    pip install curvlinops-for-pytorch          # not a dependency of mumis: only this comparison reads it
    python benchmarks/kfac_curvlinops.py                          # mnist5k × small_cnn, the demo's original model
    python benchmarks/kfac_curvlinops.py --model resnet_small --samples 500

Both approximate the Fisher (type-2: the exact expectation over the model's predictive distribution) of the mean
cross-entropy over the same held-out samples, per Conv2d / Linear layer with its bias as one more input column
(curvlinops: ``separate_weight_and_bias=False``, ``kfac_approx="expand"``). Prints, in one run, per layer: the
relative difference of the two operators applied to the same random directions (K-FAC and EK-FAC), and the wall
time of each library's factor computation. Agreement to float precision means the two compute the same thing, and
the choice between them is speed and maintenance.
"""
from __future__ import annotations

import time

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

from _cell import cell_parser
from mumis.bench.experiment import persisted_split
from mumis.bench.references import default_cache_dir, trained_reference
from mumis.data import iter_batches, load_dataset
from mumis.methods.kfac import DampedInverse, as_matrix, kfac_factors, weight_layers
from mumis.training import TrainRecipe


def _ours(model: nn.Module, data) -> tuple[dict, dict, float, float]:
    """layer → V ↦ F V for K-FAC and EK-FAC (F V = G V A / T; EK-FAC: Q_G (Λ ∘ Q_Gᵀ V Q_A) Q_Aᵀ) and the times."""
    start = time.perf_counter()
    factors = kfac_factors(model, data)
    kfac_s = time.perf_counter() - start
    start = time.perf_counter()
    inverse = DampedInverse(factors, damping=0.0).refit_eigenvalues(model, data)
    ekfac_s = kfac_s + time.perf_counter() - start
    kfac = {m: (lambda V, A=A, G=G, T=T: G @ V @ A / T) for m, (A, G, T) in factors.items()}
    ekfac = {m: (lambda V, qa=qa, qg=qg, lam=lam: qg @ (lam * (qg.T @ V @ qa)) @ qa.T)
             for m, (qa, qg, lam) in inverse.eigen.items()}
    return kfac, ekfac, kfac_s, ekfac_s


def _curvlinops(cls, model: nn.Module, data, batch_size: int = 500):
    params = [p for m in weight_layers(model) for p in ([m.weight] + ([m.bias] if m.bias is not None else []))]
    loader = [(x.to(params[0].dtype), y) for x, y in iter_batches(data, batch_size)]
    start = time.perf_counter()
    op = cls(model, nn.CrossEntropyLoss(), params, loader, fisher_type="type-2", kfac_approx="expand",
             separate_weight_and_bias=False, check_deterministic=False)
    op.compute_kronecker_factors()
    if hasattr(op, "compute_eigenvalue_correction"):
        op.compute_eigenvalue_correction()
    return op, params, time.perf_counter() - start


def _apply_curvlinops(op, params: list, layer: nn.Module, V: torch.Tensor) -> torch.Tensor:
    """F v for v = V (out × in, [W | b]) on ``layer`` and zero on every other parameter, read back as a matrix."""
    vec = []
    for p in params:
        if p is layer.weight:
            vec.append(V[:, : p[0].numel()].reshape(p.shape))
        elif layer.bias is not None and p is layer.bias:
            vec.append(V[:, -1].reshape(p.shape))
        else:
            vec.append(torch.zeros_like(p))
    out = op @ vec
    position = {id(p): i for i, p in enumerate(params)}
    return as_matrix(out[position[id(layer.weight)]], out[position[id(layer.bias)]] if layer.bias is not None else None)


def main() -> None:
    parser = cell_parser(__doc__)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                        help="float64: differences are the methods', not the rounding's; float32: newton's own dtype")
    args = parser.parse_args()
    from curvlinops import EKFACLinearOperator, KFACLinearOperator

    cache = default_cache_dir()
    bundle = load_dataset(args.dataset)
    split = persisted_split(bundle, args.seed, cache)
    train, test = split.materialise(bundle)
    model, _, _ = trained_reference("original", train, args.model, split, TrainRecipe(epochs=args.epochs), args.seed,
                                    cache, test=test, show_progress=False)
    dtype = getattr(torch, args.dtype)
    model = model.to(dtype).eval()
    data = test.subset(range(min(args.samples, len(test))))
    kfac, ekfac, ours_kfac_s, ours_ekfac_s = _ours(model, data)
    cl_kfac, params, cl_kfac_s = _curvlinops(KFACLinearOperator, model, data)
    cl_ekfac, _, cl_ekfac_s = _curvlinops(EKFACLinearOperator, model, data)

    generator = torch.Generator().manual_seed(0)
    table = Table(title=f"{args.dataset} × {args.model}: K-FAC / EK-FAC of the mean CE's Fisher on {len(data)} "
                        f"held-out samples, mumis vs curvlinops ({args.dtype})")
    for col in ("layer", "shape [W | b]", "K-FAC rel. diff", "EK-FAC rel. diff"):
        table.add_column(col, justify="right")
    for i, layer in enumerate(weight_layers(model)):
        shape = as_matrix(layer.weight, layer.bias).shape
        diffs = []
        for ours, theirs in ((kfac[layer], cl_kfac), (ekfac[layer], cl_ekfac)):
            worst = 0.0
            for _ in range(3):
                V = torch.randn(shape, generator=generator, dtype=torch.float64)
                a, b = ours(V), _apply_curvlinops(theirs, params, layer, V.to(dtype)).double()
                worst = max(worst, float((a - b).norm() / b.norm()))
            diffs.append(f"{worst:.2e}")
        table.add_row(f"{i}: {type(layer).__name__}", "×".join(map(str, shape)), *diffs)
    console = Console(width=140)
    console.print(table)
    console.print(f"factor time (s): K-FAC mumis {ours_kfac_s:.2f} / curvlinops {cl_kfac_s:.2f}; "
                  f"EK-FAC mumis {ours_ekfac_s:.2f} / curvlinops {cl_ekfac_s:.2f}")


if __name__ == "__main__":
    main()

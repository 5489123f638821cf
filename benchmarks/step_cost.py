"""Cost of one MU-Mis step relative to one training step, at equal batch, measured in one run.

    python benchmarks/step_cost.py [--batch 64] [--repeats 10]

For each model (small CNN on 1×28×28, ResNet-18 on 3×32×32) it times a cross-entropy training step
(train mode, forward + backward + SGD update) and a MU-Mis step (eval-mode BatchNorm, forward, two input
gradients with create_graph, backward through them, SGD update) and prints the time and peak-memory ratios.
Each measurement runs in a fresh subprocess so that peak memory (CUDA allocator peak on a GPU, resident set
size growth on the CPU) belongs to that step alone.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import resource
import statistics
import time

MODELS = {"small_cnn": (1, 28), "resnet18": (3, 32)}


def _measure(kind: str, arch: str, batch: int, repeats: int, queue) -> None:
    import torch
    import torch.nn.functional as F

    from mumis.methods import mumis_loss
    from mumis.models import create_model, random_other_classes
    from mumis.runtime import device

    dev = device()
    channels, size = MODELS[arch]
    torch.manual_seed(0)
    model = create_model(arch, 10, channels).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(batch, channels, size, size, device=dev)
    y = torch.randint(0, 10, (batch,), device=dev)
    other = random_other_classes(y, 10, torch.Generator().manual_seed(0))

    def step():
        if kind == "train":
            model.train()
            loss = F.cross_entropy(model(x), y)
        else:
            model.eval()
            loss, _, _ = mumis_loss(model, x, y, other)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    # Memory baseline: model, optimiser and batch exist, no step has run yet.
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    step()  # warm-up (allocations, kernel selection); its memory counts, its time does not
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
    queue.put({"median_s": statistics.median(times), "peak_bytes": max(peak, 0), "device": str(dev)})


def measure(kind: str, arch: str, batch: int, repeats: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(kind, arch, batch, repeats, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    rows = []
    for arch in MODELS:
        train = measure("train", arch, args.batch, args.repeats)
        mumis = measure("mumis", arch, args.batch, args.repeats)
        rows.append({
            "model": arch, "batch": args.batch, "device": train["device"],
            "train_step_ms": 1e3 * train["median_s"], "mumis_step_ms": 1e3 * mumis["median_s"],
            "time_ratio": mumis["median_s"] / train["median_s"],
            "train_peak_mb": train["peak_bytes"] / 2**20, "mumis_peak_mb": mumis["peak_bytes"] / 2**20,
            "memory_ratio": mumis["peak_bytes"] / train["peak_bytes"] if train["peak_bytes"] else float("nan"),
        })
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"One MU-Mis step vs one training step (batch {args.batch}, median of {args.repeats})")
    for col in ("model", "device", "train ms", "MU-Mis ms", "time ×", "train peak MB", "MU-Mis peak MB", "memory ×"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(r["model"], r["device"], f"{r['train_step_ms']:.1f}", f"{r['mumis_step_ms']:.1f}",
                      f"{r['time_ratio']:.2f}", f"{r['train_peak_mb']:.1f}", f"{r['mumis_peak_mb']:.1f}",
                      f"{r['memory_ratio']:.2f}")
    Console(width=120).print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()

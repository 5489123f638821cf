"""What MU-Mis costs next to training, and how its memory scales with the forget set — measured in one run.

    python benchmarks/scaling.py [--batch 64] [--repeats 10] [--chunk 64] [--json out.json]
    python benchmarks/scaling.py --models resnet18 --skip-memory   # one model's step table only (a short GPU lease)

1. **Step cost.** For each model (small CNN and small ResNet on 1×28×28, ResNet-18 on 3×32×32) one cross-entropy
   training step (train mode, forward + backward + SGD update) against one MU-Mis step at the same batch: the
   paper's objective on every weight, and the default's (target term, classifier layer only). Time and peak-memory
   ratios.
2. **Layout and precision.** The paper-objective MU-Mis step in the contiguous layout vs channels_last
   (``runtime.DOUBLE_BACKPROP_LAYOUT`` records the winner on the CPU), and in float32 vs bf16 autocast and vs TF32
   convolutions / matrix products (GPU only; on a CPU the TF32 switch changes nothing): time, and how far each
   weight gradient is from the true-float32 one (relative L2 error). Every MU-Mis step runs inside
   ``runtime.double_backprop_kernels()`` (true float32), as the method does, except where TF32 is switched back on.
3. **Memory-bounded MU-Mis.** The real method (``mumis`` with ``variant="paper"``, one full-batch step over D_f)
   at |D_f| = 1×, 4×, 16× a chunk, once with ``chunk_size`` = the chunk and once without chunking: peak memory
   should stay flat in the first case and grow with |D_f| in the second.

Every measurement runs in a fresh subprocess, so its peak memory (CUDA allocator peak on a GPU; growth of the
resident set size on the CPU) belongs to it alone.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import queue as queue_module
import resource
import statistics
import time
from contextlib import contextmanager

MODELS = {"small_cnn": (1, 28), "resnet_small": (1, 28), "resnet18": (3, 32)}
STEPS = ("train", "mumis_paper", "mumis_default", "mumis_paper_channels_last", "mumis_paper_bf16", "mumis_paper_tf32")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _peak_since(base: int, dev) -> int:
    import torch

    if dev.type == "cuda":
        return max(torch.cuda.max_memory_allocated() - base, 0)
    return max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base, 0)


def _baseline(dev) -> int:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    return _rss_bytes()


def _step_cost(kind: str, arch: str, batch: int, repeats: int, queue) -> None:
    import torch
    import torch.nn.functional as F

    from mumis.methods import mumis_loss
    from mumis.models import classifier_head, create_model, random_other_classes
    from mumis.runtime import device, double_backprop_kernels

    dev = device()
    channels, size = MODELS[arch]
    torch.manual_seed(0)
    layout = torch.channels_last if kind.endswith("channels_last") else torch.contiguous_format
    model = create_model(arch, 10, channels).to(dev, memory_format=layout)
    x = torch.randn(batch, channels, size, size, device=dev).contiguous(memory_format=layout)
    params = list(classifier_head(model, x[:1]).parameters()) if kind == "mumis_default" else list(model.parameters())
    opt = torch.optim.SGD(params, lr=1e-3)
    y = torch.randint(0, 10, (batch,), device=dev)
    other = random_other_classes(y, 10, torch.Generator().manual_seed(0))
    objective = "target_only" if kind == "mumis_default" else "paper"

    @contextmanager
    def precision(reduced: bool):
        """The MU-Mis kernels (true float32), or the reduced precision this step compares against."""
        with double_backprop_kernels():  # set both ways: the float32 baseline ignores MUMIS_DOUBLE_BACKPROP_TF32
            tf32 = reduced and kind.endswith("tf32")
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = tf32
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=reduced and kind.endswith("bf16")):
                yield

    def step():
        opt.zero_grad(set_to_none=True)
        if kind == "train":
            model.train()
            F.cross_entropy(model(x), y).backward()
        else:
            model.eval()
            with precision(reduced=True):  # the double backward runs inside the block
                mumis_loss(model, x, y, other, objective)[0].backward()
        opt.step()

    grad_error = float("nan")
    if kind.endswith(("bf16", "tf32")):  # how much of the gradient the reduced precision keeps, at the start
        model.eval()
        grads = []
        for reduced in (False, True):
            with precision(reduced):
                loss, _, _ = mumis_loss(model, x, y, other, objective)
                parts = torch.autograd.grad(loss, params, allow_unused=True)  # a last-layer bias never reaches ∇x f
            grads.append(torch.cat([(torch.zeros_like(p) if g is None else g).flatten().float() for p, g in zip(params, parts)]))
        grad_error = float((grads[1] - grads[0]).norm() / grads[0].norm())

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    base = _baseline(dev)  # model, optimiser and batch exist; no step has run yet
    step()  # warm-up (allocations, kernel selection): its memory counts, its time does not
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    queue.put({"median_s": statistics.median(times), "peak_bytes": _peak_since(base, dev), "device": str(dev),
               "grad_error": grad_error})


def _chunked_run(size: int, chunk: int, queue) -> None:
    import torch

    from mumis.data import ImageDataset
    from mumis.methods import get_method, grant, run_method
    from mumis.models import create_model
    from mumis.runtime import device

    dev = device()
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1).eval()
    generator = torch.Generator().manual_seed(0)
    forget = ImageDataset(torch.randint(0, 256, (size, 1, 28, 28), dtype=torch.uint8, generator=generator),
                          torch.full((size,), 3), tuple(str(k) for k in range(10)), (0.5,), (0.25,))
    method = get_method("mumis", variant="paper", batch_size=size, chunk_size=chunk, max_steps=1, show_progress=False)
    base = _baseline(dev)  # model and the uint8 forget set exist
    t0 = time.perf_counter()
    result = run_method(method, model, grant(method, forget=forget), 10)
    queue.put({"peak_bytes": _peak_since(base, dev), "seconds": time.perf_counter() - t0,
               "chunk": result.info["chunk_size"], "device": str(dev)})


def _in_subprocess(target, *args) -> dict:
    """Run ``target(*args, queue)`` in a fresh process and return what it put on the queue; a child that dies without
    answering (an exception, the OOM killer) raises here instead of leaving the parent waiting forever."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"measurement {target.__name__}{args} died with exit code {proc.exitcode} "
                                   "(its traceback is above)") from None
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=64, help="chunk size of the memory-bounded runs")
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS), help="step-cost models")
    parser.add_argument("--skip-memory", action="store_true", help="leave out the memory-bounded runs (part 3)")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    steps = {}
    for arch in args.models:  # one line per measurement as it lands, so a run cut short still shows what it measured
        for kind in STEPS:
            steps[(arch, kind)] = m = _in_subprocess(_step_cost, kind, arch, args.batch, args.repeats)
            console.log(f"{arch} {kind}: {1e3 * m['median_s']:.2f} ms, peak {m['peak_bytes'] / 2**20:.0f} MB"
                        + (f", gradient error {m['grad_error']:.2e}" if kind.endswith(("bf16", "tf32")) else ""))
    dev = steps[(args.models[0], "train")]["device"]
    table = Table(title=f"One MU-Mis step vs one training step — batch {args.batch}, median of {args.repeats}, {dev}")
    for col in ("model", "train ms", "MU-Mis paper ms", "× train", "MU-Mis default ms", "× train",
                "train peak MB", "MU-Mis paper peak MB", "× train", "channels_last / contiguous", "bf16 / fp32",
                "bf16 grad error", "tf32 / fp32", "tf32 grad error"):
        table.add_column(col, justify="right")
    rows = []
    for arch in args.models:
        t, p, d, cl, bf, tf = (steps[(arch, k)] for k in STEPS)
        row = {"model": arch, "device": dev, "batch": args.batch, "train_ms": 1e3 * t["median_s"],
               "mumis_paper_ms": 1e3 * p["median_s"], "mumis_default_ms": 1e3 * d["median_s"],
               "paper_time_ratio": p["median_s"] / t["median_s"], "default_time_ratio": d["median_s"] / t["median_s"],
               "train_peak_mb": t["peak_bytes"] / 2**20, "mumis_paper_peak_mb": p["peak_bytes"] / 2**20,
               "memory_ratio": p["peak_bytes"] / t["peak_bytes"] if t["peak_bytes"] else float("nan"),
               "channels_last_ratio": cl["median_s"] / p["median_s"], "bf16_ratio": bf["median_s"] / p["median_s"],
               "bf16_grad_rel_error": bf["grad_error"], "tf32_ratio": tf["median_s"] / p["median_s"],
               "tf32_grad_rel_error": tf["grad_error"]}
        rows.append(row)
        table.add_row(arch, f"{row['train_ms']:.1f}", f"{row['mumis_paper_ms']:.1f}", f"{row['paper_time_ratio']:.2f}",
                      f"{row['mumis_default_ms']:.1f}", f"{row['default_time_ratio']:.2f}", f"{row['train_peak_mb']:.0f}",
                      f"{row['mumis_paper_peak_mb']:.0f}", f"{row['memory_ratio']:.2f}", f"{row['channels_last_ratio']:.2f}",
                      f"{row['bf16_ratio']:.2f}", f"{row['bf16_grad_rel_error']:.3f}", f"{row['tf32_ratio']:.2f}",
                      f"{row['tf32_grad_rel_error']:.4f}")
    console.print(table)
    if args.skip_memory:
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"steps": rows}, f, indent=1)
        return

    chunked = Table(title=f"Memory-bounded MU-Mis: one full-batch step (paper objective, small_cnn 1×28×28), {dev}")
    for col in ("|D_f|", "× chunk", "peak MB, chunk " + str(args.chunk), "peak MB, unchunked", "s, chunked", "s, unchunked"):
        chunked.add_column(col, justify="right")
    memory = []
    for factor in (1, 4, 16):
        size = factor * args.chunk
        bounded = _in_subprocess(_chunked_run, size, args.chunk)
        whole = _in_subprocess(_chunked_run, size, size)
        memory.append({"forget_size": size, "factor": factor, "chunk": bounded["chunk"],
                       "chunked_peak_mb": bounded["peak_bytes"] / 2**20, "unchunked_peak_mb": whole["peak_bytes"] / 2**20,
                       "chunked_s": bounded["seconds"], "unchunked_s": whole["seconds"]})
        m = memory[-1]
        chunked.add_row(str(size), f"{factor}×", f"{m['chunked_peak_mb']:.0f}", f"{m['unchunked_peak_mb']:.0f}",
                        f"{m['chunked_s']:.2f}", f"{m['unchunked_s']:.2f}")
    console.print(chunked)
    first, last = memory[0], memory[-1]
    console.print(f"16× the forget set: peak memory ×{last['chunked_peak_mb'] / max(first['chunked_peak_mb'], 1e-9):.2f} "
                  f"with chunks of {args.chunk}, ×{last['unchunked_peak_mb'] / max(first['unchunked_peak_mb'], 1e-9):.2f} without.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steps": rows, "memory": memory}, f, indent=1)


if __name__ == "__main__":
    main()

"""The moving parts every MU-Mis run shares, so that the method files read like their algorithms: the model on the
device in eval mode with only the chosen weights trainable, seeded mini-batches of D_f and draws of c', gradients of
a double-backprop loss computed within a memory budget, and the monitor that the stop rules read.

When only the classifier head moves and its output is the model's output, the features that feed it never change:
they are computed once per dataset, and every later accuracy or confidence check is one matrix product — so a stop
rule that reads logits can be checked after every step for free."""
from __future__ import annotations

import copy
import math
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from mumis.data import ImageDataset, iter_batches
from mumis.methods.stopping import label_confidence, membership_threshold
from mumis.metrics.accuracy import predict_logits
from mumis.models import (
    chunked_gradients,
    classifier_head,
    double_backprop_chunk,
    head_gives_logits,
    logit_input_gradients,
    random_other_classes,
    squared_norms,
)
from mumis.runtime import DOUBLE_BACKPROP_LAYOUT, device

# The head's input features are computed once per dataset, without gradients. On a 2-core CPU, feeding the batches
# channels_last cut that pass from 1.33 s to 0.95 s (6,000 Fashion-MNIST images, small_cnn; resnet_small 0.83 →
# 0.75 s), 30-45 % of a class request's time; the double backward itself stays contiguous (runtime.py).
FEATURES_LAYOUT = torch.channels_last

# loss(x, y, other, rows) → the mean loss of one chunk: inputs x, labels y, irrelevant classes c', and the chunk's
# row numbers in D_f (for objectives that keep per-sample state)
ChunkLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


class ForgetDescent:
    """Gradient steps on a loss over the forget set, and the statistics that decide when to stop.

    ``update``: ``"head"`` moves only the classifier layer (found from the forward pass, ``models/head.py``),
    ``"all"`` every weight. The whole model stays in eval mode (train-mode BatchNorm would couple the samples of a
    batch inside the input gradient). The monitor measures the target and irrelevant sensitivities on a fixed panel
    of ``monitor_classes`` irrelevant classes for ``monitor_size`` forget samples drawn once (successive checks
    compare the same quantity), and forget accuracy and loss on all of D_f. ``checks_are_free``: only the head moves
    and it produces the logits, so logits come from cached features (module docstring). The caller's model is used
    as given: the framework hands a method a copy.
    """

    def __init__(self, model: nn.Module, forget: ImageDataset, num_classes: int, update: str, batch_size: int,
                 seed: int, memory_budget_mb: float, chunk_size: int = 0, monitor_classes: int = 3,
                 monitor_size: int = 1024):
        self.dev = device()
        self.model = model.to(self.dev, memory_format=DOUBLE_BACKPROP_LAYOUT).eval()
        self.forget, self.num_classes, self.batch_size = forget, num_classes, batch_size
        example = forget.batch(torch.arange(1))[0].to(self.dev)
        self.head = classifier_head(model, example) if update == "head" else None
        self.weights = list(model.parameters()) if update == "all" else list(self.head.parameters())
        self.checks_are_free = self.head is not None and head_gives_logits(model, self.head, example)
        self._features: dict[int, torch.Tensor] = {}  # id(dataset) → its cached head inputs (checks_are_free)
        for p in model.parameters():
            p.requires_grad_(False)
        for p in self.weights:
            p.requires_grad_(True)
        self.labels = forget.labels  # inputs are normalised batch by batch: D_f is never held as one float tensor
        self.generator = torch.Generator().manual_seed(seed)  # c' and the batch order
        self.panel = fixed_panel(self.labels, num_classes, monitor_classes, self.generator)
        self.aside = torch.Generator().manual_seed(seed + 1)  # draws that leave the c' / batch-order stream untouched
        self.watched = torch.randperm(len(forget), generator=self.aside)[:monitor_size].sort().values
        self.fits = chunk_size or double_backprop_chunk(model, tuple(forget.images.shape[1:]), memory_budget_mb * 2**20)
        self.chunk = min(batch_size, self.fits, len(forget))  # passes that go batch by batch never hold more
        self.per_pass = math.ceil(len(forget) / batch_size)

    def batches(self) -> Iterator[torch.Tensor]:
        """Mini-batches of D_f (row numbers), one shuffled pass after another, without end."""
        while True:
            yield from torch.randperm(len(self.labels), generator=self.generator).split(self.batch_size)

    def irrelevant_classes(self, index: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """c' for each sample of ``index``: uniform over the K−1 classes other than its label."""
        return random_other_classes(self.labels[index].to(self.dev), self.num_classes, generator or self.generator)

    def gradients(self, loss: ChunkLoss, index: torch.Tensor, other: torch.Tensor) -> tuple[float, list[torch.Tensor]]:
        """The mean of ``loss`` over the samples ``index`` and its gradient in the moving weights, inputs loaded
        and double-backprop graphs built one chunk at a time (the same step as one pass over the batch)."""

        def chunk_loss(sl: slice) -> torch.Tensor:
            x, y = (t.to(self.dev) for t in self.forget.batch(index[sl]))
            return loss(x, y, other[sl], index[sl])

        return chunked_gradients(chunk_loss, len(index), self.fits, self.weights)

    def curvature(self, loss: ChunkLoss, batches: int = 1, rtol: float = 1e-2) -> float:
        """|λ|_max of ``loss``'s Hessian in the moving weights at the current weights, on ``batches`` mini-batches of
        D_f, to a relative tolerance ``rtol`` (:func:`sharpest_curvature`). One batch at 1 % is within 3 % of four
        batches at 0.1 % on mnist5k × small_cnn and Fashion-MNIST × resnet_small, at a seventh of the cost."""
        first = torch.randperm(len(self.labels), generator=self.aside)[: batches * self.batch_size]
        other = self.irrelevant_classes(first, self.aside)
        return sharpest_curvature(lambda: self.gradients(loss, first, other)[1], self.weights, rtol=rtol)

    def logits(self, data: ImageDataset) -> torch.Tensor:
        """The model's logits on ``data`` (on the CPU): from the cached features when ``checks_are_free``."""
        if not self.checks_are_free:
            return predict_logits(self.model, data, 4 * self.chunk)
        if id(data) not in self._features:
            captured: list[torch.Tensor] = []
            handle = self.head.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
            try:  # a forward pass only: on a CPU the faster layout (see FEATURES_LAYOUT)
                predict_logits(self.model, data, 4 * self.chunk,
                               FEATURES_LAYOUT if self.dev.type == "cpu" else torch.contiguous_format)
            finally:
                handle.remove()
            self._features[id(data)] = torch.cat(captured)
        with torch.no_grad():
            return self.head(self._features[id(data)]).float().cpu()

    def membership_threshold(self, heldout: ImageDataset) -> float:
        """The true-class confidence that best separates D_f (members) from ``heldout`` (never trained on) at the
        current weights (:func:`~mumis.methods.stopping.membership_threshold`)."""
        return membership_threshold(*(label_confidence(self.logits(d), d.labels) for d in (self.forget, heldout)))

    def monitor(self, threshold: Optional[float] = None, heldout: Optional[ImageDataset] = None,
                sensitivities: bool = True) -> dict:
        """Forget accuracy and loss on D_f (and the share below a membership ``threshold``), the same for a held-out
        set if given, and the input sensitivities (:func:`input_sensitivities`) unless ``sensitivities`` is False."""
        stats = logit_statistics(self.logits(self.forget), self.forget.labels, "forget", threshold)
        if heldout is not None:
            stats.update(logit_statistics(self.logits(heldout), heldout.labels, "heldout", threshold))
        if sensitivities:
            stats.update(self.sensitivities())
        return stats

    def sensitivities(self) -> dict:
        return input_sensitivities(self.model, self.forget.subset(self.watched), self.panel[self.watched], self.chunk,
                                   self.dev)

    @torch.no_grad()
    def descend(self, grads: list[torch.Tensor], lr: float) -> None:
        """One plain gradient step, w ← w − lr · g (SGD without momentum or weight decay; no torch.optim, whose first
        use imports torch._dynamo: 1.7 s of a 3-second class request in a fresh process)."""
        for p, g in zip(self.weights, grads):
            p.add_(g, alpha=-lr)

    def apply(self, optimizer: torch.optim.Optimizer, grads: list[torch.Tensor]) -> None:
        for p, g in zip(self.weights, grads):
            p.grad = g
        optimizer.step()

    def snapshot(self) -> dict:
        return copy.deepcopy(self.model.state_dict())

    def finish(self) -> nn.Module:
        for p in self.model.parameters():
            p.requires_grad_(True)
        return self.model.eval()


def sharpest_curvature(grad_fn, params: list[nn.Parameter], iters: int = 20, rtol: float = 1e-3) -> float:
    """|λ|_max of the Hessian of a loss in ``params``, given ``grad_fn()`` → the loss's gradient (one tensor per
    parameter) at the current weights: power iteration on finite-difference Hessian-vector products,
    Hv ≈ (∇L(w + εv) − ∇L(w)) / ε, which needs only the gradients MU-Mis already computes (exact for a quadratic
    objective, such as the target term on the classifier layer). It stops once an iteration changes the estimate by
    less than ``rtol`` of it (on the demo: 10 of 20 iterations, 0.013 % from the 20-iteration value), or after
    ``iters``. The weights are restored bit for bit."""
    saved = [p.detach().clone() for p in params]
    g0 = [g.detach() for g in grad_fn()]
    generator = torch.Generator().manual_seed(0)
    v = [torch.randn(p.shape, generator=generator).to(p.device) for p in params]
    norm = math.sqrt(sum(float((t * t).sum()) for t in v))
    v = [t / norm for t in v]
    scale = math.sqrt(sum(float((p * p).sum()) for p in saved)) or 1.0
    eps, lam = 1e-3 * scale, 0.0
    for _ in range(iters):
        with torch.no_grad():
            for p, s0, t in zip(params, saved, v):
                p.copy_(s0 + eps * t)
        g1 = grad_fn()
        with torch.no_grad():
            for p, s0 in zip(params, saved):
                p.copy_(s0)
        hv = [(b.detach() - a) / eps for a, b in zip(g0, g1)]
        previous, lam = lam, sum(float((h * t).sum()) for h, t in zip(hv, v))
        norm = math.sqrt(sum(float((h * h).sum()) for h in hv))
        if norm == 0.0:
            return 0.0
        v = [h / norm for h in hv]
        if abs(lam - previous) <= rtol * abs(lam):
            break
    return abs(lam)


def fixed_panel(labels: torch.Tensor, num_classes: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """``size`` distinct irrelevant classes per sample (N × size), drawn once: c' = (c + s) mod K, s ∈ 1..K−1."""
    size = max(1, min(size, num_classes - 1))
    shifts = torch.stack([torch.randperm(num_classes - 1, generator=generator)[:size] + 1 for _ in range(len(labels))])
    return (labels.view(-1, 1) + shifts) % num_classes


def logit_statistics(logits: torch.Tensor, labels: torch.Tensor, prefix: str, threshold: Optional[float] = None
                     ) -> dict:
    """``{prefix}_acc`` (%) and ``{prefix}_loss`` (mean cross-entropy) of ``logits`` against ``labels``, and, given a
    membership ``threshold``, ``{prefix}_below``: the share (%) whose true-class confidence is below it."""
    stats = {f"{prefix}_acc": 100.0 * float((logits.argmax(1) == labels).double().mean()),
             f"{prefix}_loss": F.cross_entropy(logits, labels).item()}
    if threshold is not None:
        stats[f"{prefix}_below"] = 100.0 * float((label_confidence(logits, labels) < threshold).double().mean())
    return stats


def input_sensitivities(model: nn.Module, data: ImageDataset, panel: torch.Tensor, batch_size: int, dev) -> dict:
    """Mean target and irrelevant sensitivities over ``data``,

        target = mean_i ‖∇x f_{c_i}(x_i)‖,   irrelevant = mean_i mean_{c' ∈ panel_i} ‖∇x f_{c'}(x_i)‖

    and the same means of the squares, ``target_sq`` / ``irrelevant_sq`` (batch by batch: nothing grows with
    |data|)."""
    sums = dict(target=0.0, irrelevant=0.0, target_sq=0.0, irrelevant_sq=0.0)
    for start, (x, y) in zip(range(0, len(data), batch_size), iter_batches(data, batch_size)):
        sl = slice(start, start + batch_size)
        with torch.enable_grad():
            x = x.to(dev).requires_grad_(True)
            logits = model(x)
            t_sq = squared_norms(logit_input_gradients(model, x, y.to(dev), logits=logits)).detach()
            o_sq = torch.stack([
                squared_norms(logit_input_gradients(model, x, panel[sl, j].to(dev), logits=logits)).detach()
                for j in range(panel.shape[1])
            ])
        sums["target"] += t_sq.sqrt().sum().item()
        sums["target_sq"] += t_sq.sum().item()
        sums["irrelevant"] += o_sq.sqrt().mean(0).sum().item()
        sums["irrelevant_sq"] += o_sq.mean(0).sum().item()
    return {k: v / len(data) for k, v in sums.items()}

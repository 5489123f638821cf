"""The arguments every single-cell benchmark takes: which dataset, model, training recipe length and seed."""
from __future__ import annotations

import argparse


def cell_parser(doc: str, epochs: int = 20) -> argparse.ArgumentParser:
    """A parser described by the script's docstring's first line, with --dataset, --model, --epochs and --seed."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--epochs", type=int, default=epochs, help="the references' training recipe")
    parser.add_argument("--seed", type=int, default=0)
    return parser


# The fine class a sub-class cell forgets on the super-class view (the variants grid's): digit 3 inside
# "curved" = {2, 3, 5}; Sneaker inside "footwear"
SUB_CLASS = {"mnist5k": 3, "fashion_mnist": 7}


def task_setup(dataset: str, task_kind: str) -> tuple[str, float]:
    """(the dataset view a variants-grid task runs on, its target): full class 3 (digit 3 / Dress), the fine class
    SUB_CLASS inside its super-class, or a random 10 %."""
    from mumis.data import superclass_view

    if task_kind == "sub_class":
        return superclass_view(dataset), SUB_CLASS[dataset]
    return dataset, {"full_class": 3, "random": 0.1}[task_kind]


def sample_cell(dataset: str, model: str, task_kind: str, seed: int, epochs: int):
    """A random-10 % or sub-class cell as the grid builds it: (task, training-set size, the original and the
    retrained model from mumis' model cache — trained there on first use)."""
    from mumis.bench.experiment import cell_data, cell_references
    from mumis.training import TrainRecipe

    dataset, target = task_setup(dataset, task_kind)
    cell = cell_data(dataset, task_kind, target, seed)
    original, _, retrain, _ = cell_references(cell, model, TrainRecipe(epochs=epochs), seed)
    return cell.task, len(cell.train), original.eval(), retrain


def confidence_and_accuracy(model, data):
    """True-class confidences (as newton's membership rule reads them) and accuracy (%) of ``model`` on ``data``."""
    from mumis.methods.stopping import label_confidence
    from mumis.metrics.accuracy import predict_logits

    logits = predict_logits(model, data)
    return label_confidence(logits, data.labels), 100.0 * float((logits.argmax(1) == data.labels).double().mean())

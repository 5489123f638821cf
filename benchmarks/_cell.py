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

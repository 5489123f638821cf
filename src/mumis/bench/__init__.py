"""Experiments: references, result rows, tables and figures (sits above methods and metrics)."""
from mumis.bench.experiment import ExperimentConfig, run_experiment
from mumis.bench.plots import plot_trace
from mumis.bench.references import default_cache_dir, trained_reference
from mumis.bench.results import ResultRow, print_table, write_rows

__all__ = [
    "ExperimentConfig", "ResultRow", "default_cache_dir", "plot_trace", "print_table", "run_experiment",
    "trained_reference", "write_rows",
]

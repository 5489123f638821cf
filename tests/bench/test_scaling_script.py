"""benchmarks/scaling.py runs every measurement in a fresh process: it must return the child's numbers, and a child
that dies must fail the run with its exit code instead of leaving the parent waiting forever (which is how two
GPU runs of the script ended: cut off at their time limit with nothing printed)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the spawned child inherits sys.path
import scaling  # noqa: E402


def test_a_measurement_comes_back_from_its_subprocess():
    result = scaling._in_subprocess(scaling._chunked_run, 4, 2)
    assert result["chunk"] == 2 and result["device"] == "cpu" and result["seconds"] > 0


def test_a_child_that_dies_fails_the_run_instead_of_hanging():
    with pytest.raises(RuntimeError, match="exit code 1"):
        scaling._in_subprocess(sys.exit, 3)  # sys.exit(3, queue) is a TypeError in the child: it exits with 1, silent

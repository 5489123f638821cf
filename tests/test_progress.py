"""Progress off a terminal: one plain line per finished unit (throttled), the expected length when known."""
from mumis.progress import progress_bar


def test_off_a_terminal_each_finished_unit_prints_a_line(capsys):
    with progress_bar("grid demo", 3, min_interval_s=0.0) as advance:
        for k in range(3):
            advance(f"cell {k}")
    assert capsys.readouterr().out.splitlines() == ["grid demo: 1/3 cell 0", "grid demo: 2/3 cell 1", "grid demo: 3/3 cell 2"]


def test_a_run_of_unknown_length_counts_without_a_total_and_lines_are_throttled(capsys):
    with progress_bar("MU-Mis", None, min_interval_s=3600.0) as advance:
        for _ in range(50):
            advance("loss +0.1")
    assert capsys.readouterr().out.splitlines() == ["MU-Mis: 1 loss +0.1"]  # the first line; the rest within the hour


def test_disabled_prints_nothing(capsys):
    with progress_bar("train", 5, enabled=False) as advance:
        advance("x")
    assert capsys.readouterr().out == ""

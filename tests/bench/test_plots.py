"""Figure titles fit their figures: a long title is wrapped, never cut off at the edges."""
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mumis.bench.plots import fitted_title

LONG = "Per-sample LiRA scores of D_f · fashion_mnist_super · small_cnn · sub_class=7 (seed 0)"


def _title_extent(fig: Figure, title):
    canvas = FigureCanvasAgg(fig)
    fig.tight_layout()
    canvas.draw()
    return title.get_window_extent(renderer=canvas.get_renderer()), fig.bbox


def test_long_title_is_wrapped_inside_a_narrow_figure():
    for width in (4.5, 7.0):
        fig = Figure(figsize=(width, 3.8))
        fig.subplots()
        title = fitted_title(fig, LONG)
        extent, box = _title_extent(fig, title)
        assert extent.x0 >= box.x0 and extent.x1 <= box.x1, (width, extent, box)
        assert "\n" in title.get_text()
        assert title.get_text().replace("\n", " ") == LONG


def test_plain_suptitle_of_the_same_text_would_be_cut_off():
    fig = Figure(figsize=(4.5, 3.8))
    fig.subplots()
    extent, box = _title_extent(fig, fig.suptitle(LONG, fontsize=11))
    assert extent.x0 < box.x0 or extent.x1 > box.x1


def test_short_title_stays_on_one_line():
    fig = Figure(figsize=(14, 3.8))
    assert fitted_title(fig, "Avg. Gap per request").get_text() == "Avg. Gap per request"

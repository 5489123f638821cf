"""Grid files: parsing, presets, cell keys."""
import pytest

from mumis.bench.grid import load_grid, parse_grid, preset_names
from mumis.errors import MumisError


def test_presets_ship_and_parse():
    assert {"demo", "fmnist", "paper"} <= set(preset_names())
    demo = load_grid("demo")
    assert {t.task.kind for t in demo.tasks} == {"full_class", "sub_class", "random", "sequential"}
    assert {"mumis", "ft", "ga", "rl", "salun", "ssd"} <= {m.name for m in demo.methods}
    assert demo.seeds == (0, 1, 2)
    fmnist = load_grid("fmnist")
    assert fmnist.datasets == ("fashion_mnist",) and {t.task.kind for t in fmnist.tasks} == {"full_class", "sub_class", "random", "sequential"}
    assert len(next(t.task for t in fmnist.tasks if t.task.kind == "sequential").sequence) == 5
    paper = load_grid("paper")
    used = {(c.dataset, c.task.kind) for c in paper.cells()}
    assert {("cifar100", "full_class"), ("cifar20", "sub_class"), ("cifar10", "random"), ("svhn", "random"),
            ("cifar100", "sequential"), ("cifar20", "sequential")} == {u for u in used}
    # the paper's schedules: MultiStepLR × 0.2 at its milestones, per dataset
    assert paper.recipe_for("cifar100").milestones == (60, 120, 160) and paper.recipe_for("cifar100").epochs == 200
    assert paper.recipe_for("cifar20").milestones == (15, 30, 35) and paper.recipe_for("cifar10").milestones == (8, 12, 16)
    table1 = load_grid("cifar100_full")
    assert {(c.dataset, c.model, c.task.kind) for c in table1.cells()} == {("cifar100", "resnet18", "full_class")}
    assert table1.recipe == paper.recipe_for("cifar100")
    vit = load_grid("paper_vit")
    assert {c.model for c in vit.cells()} == {"vit_b_16"}
    assert {(c.dataset, c.recipe.epochs, c.recipe.milestones) for c in vit.cells()} == {
        ("cifar100", 8, (7,)), ("cifar10", 8, (7,)), ("cifar20", 9, (8,))}
    assert paper.recipe_for("cifar100").epochs == 200 and paper.recipe_for("cifar20").epochs == 40


def test_cells_cover_the_grid_with_unique_stable_keys(tiny_grid):
    cells = tiny_grid.cells()
    assert len(cells) == 1 * 1 * 2 * 1 * (2 + 2)  # datasets × models × tasks × seeds × (original, retrain, 2 methods)
    assert len({c.key for c in cells}) == len(cells)
    assert [c.key for c in cells] == [c.key for c in tiny_grid.cells()]
    assert [c.label for c in cells[:4]] == ["original", "retrain", "ga", "mumis-fast"]
    assert cells[3].method.options_for("full_class") == {"max_steps": 20}


def test_task_options_apply_to_one_task_kind_and_change_the_key():
    text = """
datasets = ["digits"]
models = ["small_cnn"]
tasks = ["full_class", "random"]
[[methods]]
name = "mumis"
options = { max_steps = 7 }
task_options = { random = { request = "samples" } }
"""
    spec = parse_grid(text)
    by_task = {c.task.kind: c for c in spec.cells() if c.role == "method"}
    assert by_task["full_class"].method.options_for("full_class") == {"max_steps": 7}
    assert by_task["random"].method.options_for("random") == {"max_steps": 7, "request": "samples"}


@pytest.mark.parametrize("text, message", [
    ("datasets = [", "not valid TOML"),
    ('datasets = ["digits"]\nmodels = ["small_cnn"]\ntasks = ["random"]\nmethods = [{name = "ga"}]\nepochs = 3', "unknown key"),
    ('datasets = ["digits"]\nmodels = ["small_cnn"]\ntasks = ["random"]', "must list methods"),
    ('datasets = ["digits"]\nmodels = ["small_cnn"]\ntasks = ["random"]\nmethods = [{name = "nope"}]', "unknown method"),
    ('datasets = ["digits"]\nmodels = ["small_cnn"]\ntasks = ["random"]\nmethods = [{name = "ga", options = {lr2 = 1}}]', "no option"),
    ('datasets = ["digits"]\nmodels = ["small_cnn"]\ntasks = ["random"]\nmethods = [{name = "ga"}]\n[recipe]\nepoch = 3', "recipe"),
    ('datasets = ["digits"]\nmodels = ["small_cnn"]\ntasks = [{kind = "sub"}]\nmethods = [{name = "ga"}]', "unknown task kind"),
])
def test_bad_grid_files_fail_with_a_clear_message(text, message):
    with pytest.raises(MumisError, match=message):
        parse_grid(text)


def test_unknown_grid_name_lists_presets(tmp_path):
    with pytest.raises(MumisError, match="presets: .*demo"):
        load_grid(tmp_path / "missing.toml")


def test_holdout_moves_every_cell_to_a_pool_split_and_leaves_other_keys_alone(tiny_grid_text, tiny_grid):
    pooled = parse_grid("holdout = 0.25\n" + tiny_grid_text)
    assert {c.holdout for c in pooled.cells()} == {0.25} and {c.holdout for c in tiny_grid.cells()} == {None}
    assert not {c.key for c in pooled.cells()} & {c.key for c in tiny_grid.cells()}  # other data, other results
    assert len({c.group for c in pooled.cells()} | {c.group for c in tiny_grid.cells()}) == 4  # no shared references
    assert all("holdout" not in c.describe() for c in tiny_grid.cells())


def test_a_grid_without_holdout_keeps_the_keys_its_committed_results_were_stored_under():
    import sqlite3
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "docs" / "report-demo" / "per-example"
    with sqlite3.connect(f"file:{folder / 'per_example.sqlite'}?mode=ro", uri=True) as db:
        stored = {k for (k,) in db.execute("SELECT key FROM cells")}
    cells = load_grid(folder / "grid-random.toml").cells()
    assert len(cells) == 12 and {c.key for c in cells} <= stored


@pytest.mark.parametrize("value", ["1.5", "0", "true", '"0.2"', "nan"])
def test_a_bad_holdout_is_refused_with_the_key_named(tiny_grid_text, value):
    with pytest.raises(MumisError, match=r"holdout must be a fraction in \(0, 1\)"):
        parse_grid(f"holdout = {value}\n" + tiny_grid_text)

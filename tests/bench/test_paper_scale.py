"""The paper-scale preset and its one-script GPU run, rehearsed on the CPU with a tiny configuration."""
import json
import sys
from pathlib import Path

import torch

from mumis.bench.grid import load_grid
from mumis.bench.store import ResultStore
from mumis.models import create_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))  # the spawned child inherits sys.path
import paper_scale  # noqa: E402


def test_the_preset_is_resnet18_on_fashion_mnist_with_every_task_kind():
    spec = load_grid("paper_fmnist")
    assert spec.datasets == ("fashion_mnist",) and spec.models == ("resnet18",)
    assert {t.task.kind for t in spec.tasks} == {"full_class", "random", "sub_class", "sequential"}
    assert sum(t.task.kind == "full_class" for t in spec.tasks) == 3
    assert next(t.task.sequence for t in spec.tasks if t.task.kind == "sequential") == (3, 7, 8)
    assert {m.row_label for m in spec.methods} >= {"mumis", "mumis (paper)", "newton", "rl", "salun", "ft"}
    assert spec.recipe.schedule == "multistep" and spec.recipe.lr == 0.1
    # 1-channel 28×28 straight into the CIFAR-stem ResNet-18 (no padding): the adaptive pool takes the 4×4 map
    logits = create_model("resnet18", 10, 1).eval()(torch.zeros(2, 1, 28, 28))
    assert logits.shape == (2, 10)


def test_the_rehearsal_runs_every_part_and_records_where_each_row_ran(tmp_path, monkeypatch):
    full_tiny = paper_scale.tiny_spec

    def smaller(spec):  # one task kind and two methods keep the unit test short; `--tiny` itself runs them all
        tiny = full_tiny(spec)
        return tiny.__class__(**{**tiny.__dict__, "tasks": tiny.tasks[:1],
                                 "methods": tuple(m for m in tiny.methods if m.row_label in ("mumis (paper)", "newton"))})

    monkeypatch.setattr(paper_scale, "tiny_spec", smaller)
    monkeypatch.setenv("MUMIS_CACHE", str(tmp_path / "out" / "cache"))
    assert paper_scale.main(["--out", str(tmp_path / "out"), "--tiny", "--skip-scaling", "--budget-s", "300"]) == 0
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["grid_finished"] and summary["devices"] == ["cpu"]
    methods = {r["method"]: r for r in summary["rows"]}
    assert set(methods) == {"retrain", "original", "mumis (paper)", "newton"}
    assert methods["retrain"]["trained_on"] == "cpu" and methods["retrain"]["share_of_retrain"] is None
    assert 0 < methods["newton"]["share_of_retrain"] < 10
    assert (out / "report" / "report.md").is_file() and "share of retrain" in (out / "summary.md").read_text()
    assert json.loads((out / "device.json").read_text())["tiny"] is True
    assert any((out / "cache").rglob("*.safetensors"))  # the trained references come back with the results


def test_a_grid_cut_off_at_its_budget_keeps_what_finished(tmp_path):
    spec = paper_scale.tiny_spec(load_grid("paper_fmnist"))
    db = tmp_path / "g.sqlite"
    assert paper_scale.run_grid_within(spec, db, tmp_path / "cache", seconds=1.0) is False
    if db.exists():
        with ResultStore(db) as store:
            assert len(store.rows()) < len(spec.cells())

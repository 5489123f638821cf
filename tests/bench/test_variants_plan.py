"""benchmarks/mumis_variants.py's PLAN is "exactly the committed rows": a rerun of the one documented command must
neither ask for rows the results file lacks nor leave out rows it has."""
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # the script imports its sibling _cell, as when run
    spec = importlib.util.spec_from_file_location("mumis_variants_script", ROOT / "benchmarks" / "mumis_variants.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plan_is_exactly_the_committed_rows(monkeypatch):
    mv = _script(monkeypatch)
    planned = set()
    for datasets, models, tasks, seeds, variants in mv.PLAN:
        for task in tasks:
            labels = variants or list(mv._variants_for(task))
            assert set(labels) <= set(mv._variants_for(task)), f"unknown labels for {task}"
            planned |= {((d, m, task, s), v) for d in datasets for m in models for s in seeds for v in labels}
    rows = [json.loads(line) for line in (ROOT / "results" / "mumis_variants.jsonl").read_text().splitlines()]
    committed = {(tuple(r["cell"]), r["method"]) for r in rows if r["method"] not in ("original", "retrain")}
    assert planned - committed == set()
    assert committed - planned == set()

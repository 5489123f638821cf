"""`mumis train` under torchrun: two gloo processes train one model; rank 0 alone writes it."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mumis import distributed
from mumis.data import iter_rank_batches
from mumis.errors import MumisError
from mumis.training import read_meta
from mumis.training.loop import _epoch_batches


def _train(split, out, nproc):
    args = ["-m", "mumis.cli", "train", "--split", str(split), "--out", str(out), "--epochs", "4", "--batch-size", "64"]
    if nproc > 1:
        torchrun = Path(sys.executable).with_name("torchrun")
        cmd = [str(torchrun) if torchrun.exists() else shutil.which("torchrun"), "--standalone",
               f"--nproc-per-node={nproc}", *args]
    else:
        cmd = [sys.executable, *args]
    env = {"MUMIS_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_two_processes_match_one_and_write_one_checkpoint(tmp_path, digits_split):
    split = digits_split.save(tmp_path / "split.json")
    one = _train(split, tmp_path / "one" / "m.safetensors", 1)
    two = _train(split, tmp_path / "two" / "m.safetensors", 2)
    assert "on 1 process" in one and two.count("model →") == 1  # rank 1 printed nothing
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["m.json", "m.safetensors"]  # one checkpoint, no temp files
    meta1, meta2 = read_meta(tmp_path / "one" / "m.safetensors"), read_meta(tmp_path / "two" / "m.safetensors")
    assert (meta1.processes, meta2.processes) == (1, 2)
    assert meta1.recipe == meta2.recipe and meta1.split_sha256 == meta2.split_sha256
    assert meta2.accuracies["test"] > 90
    assert abs(meta1.accuracies["test"] - meta2.accuracies["test"]) < 3.0  # same global batch, other shuffles


def test_rank_shards_are_disjoint_and_cover_the_epoch(digits_bundle, digits_split):
    train, _ = digits_split.materialise(digits_bundle)
    data = train.with_labels(torch.arange(len(train)))  # labels = positions, to see which samples each rank took
    seen = [torch.cat([y for _, y in iter_rank_batches(data, 32, seed=0, epoch=1, rank=r, world_size=2)]) for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == (len(train) + 1) // 2
    assert set(torch.cat(seen).tolist()) == set(range(len(train)))
    again = torch.cat([y for _, y in iter_rank_batches(data, 32, seed=0, epoch=1, rank=0, world_size=2)])
    other_epoch = torch.cat([y for _, y in iter_rank_batches(data, 32, seed=0, epoch=2, rank=0, world_size=2)])
    assert torch.equal(seen[0], again) and not torch.equal(seen[0], other_epoch)


def test_global_batch_must_split_over_the_processes(monkeypatch, digits_bundle, digits_split):
    train, _ = digits_split.materialise(digits_bundle)
    monkeypatch.setattr(distributed, "active", lambda: True)
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(MumisError, match="multiple of 3"):
        _epoch_batches(train, 64, 0, torch.Generator())


_NOTHING_OUTLIVES_THE_GROUP = """
import gc, sys
gc.disable()  # only the explicit collection inside process_group() may free the training's DDP wrapper
import torch
from torch.nn.parallel import DistributedDataParallel
from mumis import distributed
from mumis.data import load_dataset, make_split
from mumis.models import create_model
from mumis.training import TrainRecipe, fit
bundle = load_dataset("digits")
train, _ = make_split(bundle, seed=0).materialise(bundle)
with distributed.process_group():
    assert distributed.active()
    fit(create_model("small_cnn", train.num_classes, train.in_channels), train, TrainRecipe(epochs=1, batch_size=64),
        show_progress=False)
alive = [o for o in gc.get_objects() if isinstance(o, DistributedDataParallel)]
sys.exit(3 if alive else 0)
"""


def test_the_process_group_ends_with_nothing_holding_it(tmp_path):
    """A rank that leaves with DDP's wrapper still alive frees the gloo group during interpreter shutdown, which can
    abort a finished run (SIGABRT): after the block, no wrapper may be left for the shutdown to free."""
    script = tmp_path / "run.py"
    script.write_text(_NOTHING_OUTLIVES_THE_GROUP)
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun) if torchrun.exists() else shutil.which("torchrun"), "--standalone", "--nproc-per-node=2",
           str(script)]
    env = {"MUMIS_DEVICE": "cpu", "OMP_NUM_THREADS": "1", "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

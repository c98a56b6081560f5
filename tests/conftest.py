"""Shared fixtures: Agg backend, seeded RNGs, MNIST from $LRTOOLS_DATA (never downloaded)."""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")  # before tqdm is imported: it reads TQDM_* once, at import

import matplotlib  # noqa: E402

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from lrtools.data import MNIST_MD5, resolve_data_root  # noqa: E402
from lrtools.utils import seed_everything  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    seed_everything(0)
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.fixture(scope="session")
def mnist_root():
    """The folder that holds MNIST/raw; fails loudly instead of downloading."""
    root = resolve_data_root()
    missing = [n for n in MNIST_MD5 if not (root / "MNIST" / "raw" / n).is_file()]
    if missing:
        pytest.fail(f"MNIST not found under {root}/MNIST/raw ({missing}); set LRTOOLS_DATA "
                    "(CI: ../shared/data) or run `make data` once.")
    return root


@pytest.fixture(scope="session")
def quick_loaders(mnist_root):
    """Quick-mode MNIST loaders on the CPU (4096 / 1024 / 2048 images)."""
    return tuple(mnist_loaders_cpu(mnist_root))


def mnist_loaders_cpu(root):
    from lrtools import mnist_loaders

    return mnist_loaders(64, root=root, device="cpu", quick=True, download=False)


@pytest.fixture(scope="session")
def small_loaders(quick_loaders):
    """512 / 256 / 512 images of the quick split: enough to test behaviour, cheap on a busy CPU."""
    from lrtools import TensorLoader

    train, val, test = quick_loaders
    return (TensorLoader(train.images[:512], train.labels[:512], 64, shuffle=True, seed=0),
            TensorLoader(val.images[:256], val.labels[:256], 256),
            TensorLoader(test.images[:512], test.labels[:512], 256))


@pytest.fixture
def tiny_model():
    """A small linear model and SGD optimizer for fast loop tests."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))

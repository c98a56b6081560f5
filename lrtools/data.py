"""MNIST, loaded once and served as on-device mini-batches.

The usual ``DataLoader(ToTensor(), Normalize())`` pipeline decodes every image in
Python on every epoch. MNIST is small (55 MB), so here the whole split is
normalised once, kept as a single tensor on the training device, and each epoch
draws a new seeded permutation of it.
"""

from __future__ import annotations

import functools
import hashlib
import math
import numbers
import os
from collections.abc import Iterator
from pathlib import Path

import torch

from .utils import as_device, quick_mode

__all__ = ["MNIST_MEAN", "MNIST_STD", "TensorLoader", "mnist_loaders", "resolve_data_root"]

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
#: Published MD5s of the uncompressed originals (the ones torchvision checks).
MNIST_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
#: (train, val, test) sizes in quick mode: a fixed subset, the same on every run.
QUICK_SIZES = (4096, 1024, 2048)
EVAL_BATCH_SIZE = 1000


class TensorLoader:
    """Mini-batches from tensors that already live on the training device.

    Iterating yields ``(x, y)`` pairs like a ``DataLoader``; ``len(loader)`` is the
    number of batches (``steps_per_epoch`` for a training loader). With
    ``shuffle=True`` every pass uses a new order, seeded by ``(seed, epoch)`` so a
    run can be repeated, or resumed at any epoch with :meth:`set_epoch`.

    Example:
        >>> loader = TensorLoader(torch.zeros(10, 1, 28, 28), torch.zeros(10), batch_size=4)
        >>> len(loader), [len(y) for _, y in loader]
        (3, [4, 4, 2])
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *,
                 shuffle: bool = False, seed: int = 0, indices: torch.Tensor | None = None) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels: pass matching tensors.")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.epoch = 0
        #: Positions of these examples in the original split (for checking splits).
        self.indices = indices if indices is not None else torch.arange(len(labels))

    @property
    def device(self) -> torch.device:
        """The device the batches are on."""
        return self.images.device

    @property
    def num_samples(self) -> int:
        """How many examples one pass yields."""
        return len(self.labels)

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass use the order of ``epoch``, as ``DistributedSampler.set_epoch`` does.

        The order of a pass is a pure function of ``(seed, epoch)``; each pass then moves
        on to the next epoch, so a loop that never calls this still gets a new order per pass.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, numbers.Integral) or epoch < 0:
            raise ValueError(f"epoch must be an int >= 0, got {epoch!r}.")
        self.epoch = epoch

    def with_seed(self, seed: int) -> TensorLoader:
        """The same data (shared, not copied) shuffled with another ``seed``.

        Example:
            >>> loader = TensorLoader(torch.zeros(4, 1), torch.arange(4), 2, shuffle=True)
            >>> loader.with_seed(1).seed, loader.seed
            (1, 0)
        """
        return TensorLoader(self.images, self.labels, self.batch_size, shuffle=self.shuffle, seed=seed,
                            indices=self.indices)

    def order(self) -> torch.Tensor:
        """Positions (into ``images``) of the examples the next pass yields, in that order.

        A pure function of ``(seed, epoch)`` when shuffling; ``0, 1, 2, ...`` otherwise.

        Example:
            >>> TensorLoader(torch.zeros(4, 1), torch.arange(4), 2).order().tolist()
            [0, 1, 2, 3]
        """
        n = len(self.labels)
        if not self.shuffle:
            return torch.arange(n)
        return torch.randperm(n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        positions = self.order().to(self.device, non_blocking=True)
        self.epoch += 1
        for start in range(0, len(positions), self.batch_size):
            idx = positions[start:start + self.batch_size]
            yield self.images[idx], self.labels[idx]


def resolve_data_root(root: str | os.PathLike | None = None) -> Path:
    """Where MNIST lives: ``root`` if given, else ``$LRTOOLS_DATA``, else ``./data``.

    Example:
        >>> resolve_data_root("/tmp/mnist")
        PosixPath('/tmp/mnist')
    """
    if root is not None:
        return Path(root)
    return Path(os.environ.get("LRTOOLS_DATA") or "data")


@functools.lru_cache(maxsize=16)
def _md5(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(root: Path, raw: Path, missing: list[str]) -> None:
    import torchvision

    try:
        for train in (True, False):
            torchvision.datasets.MNIST(str(root), train=train, download=True)
    except Exception as exc:  # offline, blocked mirror, disk full, ...
        raise RuntimeError(
            f"MNIST files {missing} are missing from {raw} and downloading them failed "
            f"({type(exc).__name__}: {exc}). Fix: connect to the internet and run again, or "
            "point LRTOOLS_DATA (or root=) at a folder that holds MNIST/raw/ with the four "
            "uncompressed files, e.g. `export LRTOOLS_DATA=../shared/data`."
        ) from exc


def ensure_mnist(root: Path, *, download: bool = True) -> Path:
    """Make sure the four MNIST files are under ``root/MNIST/raw`` and intact.

    Missing files are downloaded through ``torchvision.datasets.MNIST`` when
    ``download`` is true; present files are checked against the published MD5s.

    Returns:
        The ``raw`` folder.

    Example:
        >>> ensure_mnist(resolve_data_root(), download=False)  # doctest: +SKIP
    """
    raw = root / "MNIST" / "raw"
    missing = [name for name in MNIST_MD5 if not (raw / name).is_file()]
    if missing and not download:
        raise FileNotFoundError(
            f"MNIST files {missing} are missing from {raw} (downloads are off). Fix: set "
            "LRTOOLS_DATA (or root=) to a folder that holds MNIST/raw/, or pass download=True."
        )
    if missing:
        _download(root, raw, missing)
    for name, expected in MNIST_MD5.items():
        stat = (raw / name).stat()
        actual = _md5(str(raw / name), stat.st_size, stat.st_mtime_ns)
        if actual != expected:
            raise ValueError(
                f"{raw / name} is corrupt: its MD5 is {actual}, expected {expected}. Fix: delete "
                "it and run again to download a fresh copy (or restore it from a good copy)."
            )
    return raw


def _read_idx(path: Path) -> torch.Tensor:
    """An uncompressed MNIST idx file as a uint8 tensor (the format torchvision reads too)."""
    data = path.read_bytes()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return torch.frombuffer(bytearray(data[4 + 4 * dims:]), dtype=torch.uint8).reshape(shape)


@functools.lru_cache(maxsize=2)
def _read_split(root: str, train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64 of one split, from the checked raw files.

    Read directly rather than through ``torchvision.datasets.MNIST`` (the same bytes): importing
    torchvision costs every process, each DDP rank included, about 3 s and 160 MB.
    """
    raw, prefix = Path(root) / "MNIST" / "raw", "train" if train else "t10k"
    return (_read_idx(raw / f"{prefix}-images-idx3-ubyte"),
            _read_idx(raw / f"{prefix}-labels-idx1-ubyte").long())


def _to_device(images: torch.Tensor, labels: torch.Tensor, device: torch.device):
    x = images.to(device).unsqueeze(1).float().div_(255).sub_(MNIST_MEAN).div_(MNIST_STD)
    return x, labels.to(device)


def mnist_loaders(batch_size: int = 128, *, root: str | os.PathLike | None = None,
                  val_size: int = 5000, device: torch.device | str | None = None,
                  quick: bool | None = None, seed: int = 0, download: bool = True,
                  train_size: int | None = None,
                  ) -> tuple[TensorLoader, TensorLoader | None, TensorLoader]:
    """Train, validation and test loaders for MNIST, resident on ``device``.

    The validation split is ``val_size`` images drawn (seeded) from the 60k
    training images; the 10k test set is only for final numbers.

    Args:
        batch_size: Training mini-batch size (evaluation uses batches of 1000).
        root: Data folder (else ``$LRTOOLS_DATA``, else ``./data``).
        val_size: Images held out for validation; 0 gives no validation loader.
        device: Where batches live; defaults to :func:`lrtools.pick_device`.
        quick: Use a small fixed subset (default: ``LRTOOLS_QUICK=1``).
        seed: Seeds the split and the shuffling.
        download: Fetch missing files through torchvision.
        train_size: Keep only the first ``train_size`` images of the training split (after
            quick mode's subset), e.g. for a small DDP demo; None keeps them all.

    Returns:
        ``(train_loader, val_loader, test_loader)``; ``val_loader`` is None if ``val_size == 0``.

    Example:
        >>> train_loader, val_loader, test_loader = mnist_loaders(quick=True)  # doctest: +SKIP
        >>> len(train_loader)  # steps per epoch  # doctest: +SKIP
        32
    """
    if not 0 <= val_size < 60_000:
        raise ValueError(f"val_size must be in [0, 60000), got {val_size}.")
    if train_size is not None and (isinstance(train_size, bool) or not isinstance(train_size, int)
                                   or train_size < 1):
        raise ValueError(f"train_size must be an int >= 1 or None (all images), got {train_size!r}.")
    device, quick = as_device(device), quick_mode(quick)  # a bad device or LRTOOLS_QUICK fails before any I/O
    root = resolve_data_root(root)
    ensure_mnist(root, download=download)
    images, labels = _read_split(str(root), True)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    val_idx, train_idx = order[:val_size], order[val_size:]
    test_images, test_labels = _read_split(str(root), False)
    test_idx = torch.arange(len(test_labels))
    if quick:
        n_train, n_val, n_test = QUICK_SIZES
        train_idx, val_idx, test_idx = train_idx[:n_train], val_idx[:n_val], test_idx[:n_test]
    train_idx = train_idx[:train_size]  # before the images become float32: little memory for a subset
    train = TensorLoader(*_to_device(images[train_idx], labels[train_idx], device),
                         batch_size, shuffle=True, seed=seed, indices=train_idx)
    val = (TensorLoader(*_to_device(images[val_idx], labels[val_idx], device), EVAL_BATCH_SIZE,
                        indices=val_idx) if val_size else None)
    test = TensorLoader(*_to_device(test_images[test_idx], test_labels[test_idx], device),
                        EVAL_BATCH_SIZE, indices=test_idx)
    return train, val, test

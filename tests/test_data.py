"""MNIST loading: root resolution, checksums, splits, shuffling, quick mode."""

from __future__ import annotations

import re
import shutil

import pytest
import torch

from lrtools import TensorLoader, mnist_loaders
from lrtools.data import MNIST_MD5, QUICK_SIZES, ensure_mnist, resolve_data_root


def test_full_split_sizes_and_shapes(mnist_root):
    train, val, test = mnist_loaders(128, root=mnist_root, device="cpu", quick=False, download=False)
    assert (train.num_samples, val.num_samples, test.num_samples) == (55_000, 5_000, 10_000)
    assert len(train) == 430  # ceil(55000 / 128): steps_per_epoch
    x, y = next(iter(train))
    assert x.shape == (128, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.long
    # Normalised with the usual MNIST mean/std: about zero mean, unit std over the split.
    assert abs(train.images.mean().item()) < 0.01 and abs(train.images.std().item() - 1) < 0.01
    # Validation comes from the training images, disjoint from what we train on.
    assert not set(val.indices.tolist()) & set(train.indices.tolist())
    assert sorted(val.indices.tolist() + train.indices.tolist()) == list(range(60_000))


def test_quick_mode_from_env(mnist_root, monkeypatch):
    monkeypatch.setenv("LRTOOLS_QUICK", "1")
    train, val, test = mnist_loaders(64, root=mnist_root, device="cpu", download=False)
    assert (train.num_samples, val.num_samples, test.num_samples) == QUICK_SIZES
    assert len(train) == QUICK_SIZES[0] // 64


def test_split_is_seeded(mnist_root):
    a = mnist_loaders(root=mnist_root, device="cpu", quick=True, seed=0, download=False)[1]
    b = mnist_loaders(root=mnist_root, device="cpu", quick=True, seed=0, download=False)[1]
    c = mnist_loaders(root=mnist_root, device="cpu", quick=True, seed=1, download=False)[1]
    assert torch.equal(a.indices, b.indices) and not torch.equal(a.indices, c.indices)


def test_val_size_zero_gives_no_val_loader(mnist_root):
    assert mnist_loaders(root=mnist_root, device="cpu", quick=True, val_size=0, download=False)[1] is None


def test_bad_val_size():
    with pytest.raises(ValueError, match=re.escape("val_size must be in [0, 60000), got 60000.")):
        mnist_loaders(val_size=60_000)


def test_train_size_keeps_the_first_images_of_the_same_split(mnist_root):
    full = mnist_loaders(root=mnist_root, device="cpu", quick=True, download=False)[0]
    small, val, _ = mnist_loaders(root=mnist_root, device="cpu", quick=True, download=False, train_size=100)
    assert small.num_samples == 100 and torch.equal(small.indices, full.indices[:100])
    assert torch.equal(small.images, full.images[:100]) and val.num_samples == QUICK_SIZES[1]


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_train_size(bad):
    message = f"train_size must be an int >= 1 or None (all images), got {bad!r}."
    with pytest.raises(ValueError, match=re.escape(message)):
        mnist_loaders(train_size=bad)


def _order(loader):
    return torch.cat([y for _, y in loader]).tolist()


def _loader(seed=3, n=20):
    return TensorLoader(torch.arange(float(n))[:, None], torch.arange(n), batch_size=5, shuffle=True,
                        seed=seed)


def test_shuffle_new_order_each_pass_and_replayable():
    loader = _loader()
    first, second, third = _order(loader), _order(loader), _order(loader)
    assert sorted(first) == list(range(20)) and len({tuple(first), tuple(second), tuple(third)}) == 3
    loader.set_epoch(0)
    assert _order(loader) == first and _order(loader) == second  # and it moves on from there
    loader.set_epoch(2)
    assert _order(loader) == third


def test_set_epoch_makes_the_order_a_function_of_seed_and_epoch_only():
    a, b = _loader(seed=5), _loader(seed=5)
    for _ in range(3):  # a has run three passes, b none; the global RNG moves too
        _order(a)
    torch.rand(100)
    for k in (0, 4, 1):
        a.set_epoch(k)
        torch.manual_seed(k + 100)  # whatever the global RNG holds
        b.set_epoch(k)
        assert _order(a) == _order(b), k
    c = _loader(seed=6)
    a.set_epoch(4)
    c.set_epoch(4)
    assert _order(a) != _order(c)  # the seed matters


@pytest.mark.parametrize("bad", [-1, 1.0, True, "2"])
def test_set_epoch_refuses_a_non_epoch(bad):
    with pytest.raises(ValueError, match=re.escape(f"epoch must be an int >= 0, got {bad!r}.")):
        _loader().set_epoch(bad)


def test_with_seed_shares_the_tensors_and_changes_only_the_order():
    loader = _loader(seed=3)
    other = loader.with_seed(4)
    assert other.images is loader.images and other.labels is loader.labels  # shared, not copied
    assert other.images.untyped_storage().data_ptr() == loader.images.untyped_storage().data_ptr()
    assert other.indices is loader.indices and other.seed == 4 and loader.seed == 3
    assert (other.batch_size, other.shuffle, len(other)) == (loader.batch_size, loader.shuffle, len(loader))
    a, b = _order(loader), _order(other)
    assert a != b and sorted(a) == sorted(b)
    for k in (0, 1):
        loader.set_epoch(k)
        same = loader.with_seed(3)
        same.set_epoch(k)
        assert _order(same) == _order(loader)  # with its own seed: the same order


def test_unshuffled_with_seed_keeps_the_order():
    loader = TensorLoader(torch.zeros(6, 1), torch.arange(6), batch_size=4)
    assert _order(loader.with_seed(9)) == list(range(6))


def test_unshuffled_loader_keeps_order_and_last_batch():
    loader = TensorLoader(torch.zeros(10, 1), torch.arange(10), batch_size=4)
    assert len(loader) == 3
    assert [y.tolist() for _, y in loader] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_loader_rejects_mismatched_tensors():
    with pytest.raises(ValueError, match=re.escape("3 images but 2 labels: pass matching tensors.")):
        TensorLoader(torch.zeros(3, 1), torch.zeros(2), batch_size=1)


def test_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("LRTOOLS_DATA", str(tmp_path))
    assert resolve_data_root("elsewhere").name == "elsewhere"
    assert resolve_data_root() == tmp_path
    monkeypatch.delenv("LRTOOLS_DATA")
    assert str(resolve_data_root()) == "data"


def _copy_raw(mnist_root, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_MD5:
        shutil.copy(mnist_root / "MNIST" / "raw" / name, raw / name)
    return raw


def test_md5_catches_a_flipped_byte(mnist_root, tmp_path):
    raw = _copy_raw(mnist_root, tmp_path)
    assert ensure_mnist(tmp_path, download=False) == raw
    path = raw / "train-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[1000] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=re.escape(
            f"{path} is corrupt: its MD5 is ")) as info:
        mnist_loaders(root=tmp_path, device="cpu", download=False)
    assert "expected a25bea736e30d166cdddb491f175f624. Fix: delete it and run again" in str(info.value)


def test_missing_files_without_download(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    with pytest.raises(FileNotFoundError, match=re.escape(f"are missing from {raw} (downloads are off). "
                                                          "Fix: set LRTOOLS_DATA")):
        mnist_loaders(root=tmp_path, download=False)


def test_offline_download_failure_names_the_fix(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(RuntimeError) as info:
        mnist_loaders(root=tmp_path)
    msg = str(info.value)
    assert f"are missing from {tmp_path / 'MNIST' / 'raw'} and downloading them failed " \
           "(OSError: network is unreachable)" in msg
    assert "export LRTOOLS_DATA=../shared/data" in msg


@pytest.mark.parametrize("device", ["gpu", "cuda"])
def test_a_device_this_machine_lacks_is_refused_before_any_download(device, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    import torchvision

    def no_download(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torchvision.datasets, "MNIST", no_download)
    with pytest.raises(ValueError, match=re.escape("Fix: use lrtools.pick_device()")):
        mnist_loaders(root=tmp_path, device=device)


def test_a_bad_lrtools_quick_is_refused_before_any_download(tmp_path, monkeypatch):
    monkeypatch.setenv("LRTOOLS_QUICK", "maybe")
    with pytest.raises(ValueError, match=re.escape("LRTOOLS_QUICK='maybe' is neither on")):
        mnist_loaders(root=tmp_path, device="cpu", download=False)


@pytest.mark.parametrize("train", [True, False])
def test_raw_files_read_as_torchvision_reads_them(mnist_root, train):
    import torchvision

    from lrtools.data import _read_split

    ds = torchvision.datasets.MNIST(str(mnist_root), train=train, download=False)
    images, labels = _read_split(str(mnist_root), train)
    assert images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert torch.equal(images, ds.data) and torch.equal(labels, ds.targets)

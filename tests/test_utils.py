import random

import torch

import lrtools
from lrtools import bf16_supported, describe_environment, pick_device, quick_mode, seed_everything


def test_seed_everything_repeats_every_rng():
    seed_everything(123)
    a = (random.random(), torch.rand(3))
    seed_everything(123)
    b = (random.random(), torch.rand(3))
    assert a[0] == b[0] and torch.equal(a[1], b[1])


def test_pick_device_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")


def test_quick_mode(monkeypatch):
    monkeypatch.setenv("LRTOOLS_QUICK", "1")
    assert quick_mode() is True and quick_mode(False) is False
    monkeypatch.setenv("LRTOOLS_QUICK", "0")
    assert quick_mode() is False


def test_describe_environment_names_versions_and_device():
    text = describe_environment(torch.device("cpu"))
    assert f"torch: {torch.__version__}" in text and "device: cpu (" in text


def test_public_api():
    assert set(lrtools.__all__) >= {"mnist_loaders", "SmallCNN", "fit", "evaluate", "History",
                                    "preview_schedule", "get_lr", "set_lr", "scale_lr", "plot_lr",
                                    "plot_history", "plot_compare", "seed_everything", "pick_device",
                                    "describe_environment"}
    assert all(hasattr(lrtools, name) for name in lrtools.__all__)


def test_bf16_supported_asks_onednn_on_the_cpu_and_cuda_on_gpus(monkeypatch):
    assert bf16_supported("cpu") is bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert bf16_supported("meta") is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert bf16_supported("cuda") is False
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert bf16_supported(torch.device("cuda", 0)) is True

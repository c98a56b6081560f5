"""Seeding, device choice, quick mode, bf16 detection, the public API."""

from __future__ import annotations

import importlib
import random
import re

import numpy as np
import pytest
import torch

import lrtools
from lrtools import bf16_supported, describe_environment, pick_device, quick_mode, seed_everything
from lrtools.utils import as_device, rng_state, set_rng_state


def _draw():
    return random.random(), np.random.rand(3).tolist(), torch.rand(3).tolist()


def test_seed_everything_repeats_every_rng():
    seed_everything(123)
    a = _draw()
    seed_everything(123)
    b = _draw()
    assert a == b  # Python, NumPy and torch each repeat
    seed_everything(124)
    c = _draw()
    assert all(x != y for x, y in zip(a, c))  # and each one depends on the seed


def test_seed_everything_takes_seeds_beyond_numpys_range():
    seed_everything(2**40)  # NumPy's legacy seed must be < 2**32
    a = _draw()
    seed_everything(2**40)
    assert _draw() == a


def test_rng_state_round_trip():
    state = rng_state()
    a = _draw()
    set_rng_state(state)
    assert _draw() == a


def test_pick_device_falls_back_to_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert pick_device() == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device() == torch.device("cuda")


@pytest.mark.parametrize("value", ["1", "true", "yes", "on", "ON", "True", " Yes "])
def test_quick_mode_on(monkeypatch, value):
    monkeypatch.setenv("LRTOOLS_QUICK", value)
    assert quick_mode() is True
    assert quick_mode(False) is False  # an explicit argument wins


@pytest.mark.parametrize("value", ["0", "false", "no", "off", "OFF", "", None])
def test_quick_mode_off(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("LRTOOLS_QUICK", raising=False)
    else:
        monkeypatch.setenv("LRTOOLS_QUICK", value)
    assert quick_mode() is False
    assert quick_mode(True) is True


@pytest.mark.parametrize("value", ["maybe", "2", "enabled"])
def test_quick_mode_refuses_other_values(monkeypatch, value):
    monkeypatch.setenv("LRTOOLS_QUICK", value)
    with pytest.raises(ValueError, match=re.escape(
            f"LRTOOLS_QUICK={value!r} is neither on (1, true, yes, on) nor off (0, false, no, off). "
            "Fix: export LRTOOLS_QUICK=1 for quick mode.")):
        quick_mode()


def test_as_device():
    assert as_device("cpu") == torch.device("cpu") and as_device(torch.device("cpu")) == torch.device("cpu")
    assert as_device(None) == pick_device()


def test_as_device_refuses_a_name_torch_does_not_know():
    with pytest.raises(ValueError, match=re.escape(
            "'gpu' is not a device name. Fix: use lrtools.pick_device(), or 'cuda', 'mps' or 'cpu'.")):
        as_device("gpu")


def test_as_device_refuses_a_device_this_machine_lacks(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ValueError, match=re.escape(
                f"device={name!r} is not available on this machine. Fix: use lrtools.pick_device(), which "
                "returns 'cpu' here.")):
            as_device(name)
    with pytest.raises(ValueError, match="device='mps' is not available"):
        as_device("mps")


def test_describe_environment_names_versions_and_device():
    text = describe_environment(torch.device("cpu"))
    assert f"torch: {torch.__version__}" in text and "device: cpu (" in text


PUBLIC = {
    "mnist_loaders", "TensorLoader", "SmallCNN", "fit", "evaluate", "History", "DivergenceError",
    "preview_schedule", "current_lrs", "set_lr", "scale_lr", "watch", "LRWarning",
    "explorer_lrs", "schedule_explorer",
    "plot_lr", "plot_history", "plot_compare", "plot_digits",
    "lr_range_test", "RangeTestResult", "suggest_steepest", "suggest_min_div10", "suggest_valley",
    "save_checkpoint", "load_checkpoint", "run_many", "summarize", "format_table", "mean_across_ranks",
    "shard_loader", "ShardedLoader", "scale_lr_for_batch", "ScaledLR",
    "seed_everything", "pick_device", "describe_environment", "quick_mode", "bf16_supported",
}


def test_public_api_is_exactly_these_names():
    assert len(lrtools.__all__) == len(set(lrtools.__all__))  # no name listed twice
    assert set(lrtools.__all__) == PUBLIC
    assert not hasattr(lrtools, "get_lr")  # renamed to current_lrs in 0.2
    namespace: dict = {}
    exec("from lrtools import *", namespace)  # what a notebook's star import gets
    assert set(namespace) - {"__builtins__"} == PUBLIC
    for name in PUBLIC:
        obj = getattr(importlib.import_module("lrtools"), name)
        assert obj is not None and (callable(obj) or isinstance(obj, type)), name


# --- bf16_supported: the answer for each device, from fixed probe results --------------------------------

@pytest.fixture
def probes(monkeypatch):
    """Set what CUDA and oneDNN report; returns a setter."""
    def set_(cuda=False, native=False, emulated=False, cpu=False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)

        def is_bf16_supported(including_emulation=True):
            return native or (including_emulation and emulated)

        monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
        if isinstance(cpu, Exception):
            def probe():
                raise cpu
        else:
            def probe():
                return cpu
        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", probe)
    return set_


def test_bf16_on_cuda_needs_native_support(probes):
    probes(cuda=True, native=True)
    assert bf16_supported("cuda") is True and bf16_supported(torch.device("cuda", 0)) is True
    probes(cuda=True, native=False, emulated=True)  # a T4 or V100: bf16 runs, but emulated and slow
    assert bf16_supported("cuda") is False
    probes(cuda=True)
    assert bf16_supported("cuda") is False
    probes(cuda=False, native=True)  # no CUDA at all
    assert bf16_supported("cuda") is False


def test_bf16_on_the_cpu_asks_onednn(probes):
    probes(cpu=True)
    assert bf16_supported("cpu") is True
    probes(cpu=False, cuda=True, native=True)  # the GPU's answer is not the CPU's
    assert bf16_supported("cpu") is False
    probes(cpu=1)
    assert bf16_supported("cpu") is True  # a plain bool, whatever the probe returns


@pytest.mark.parametrize("error", [RuntimeError("no oneDNN"), AttributeError("no such op"),
                                   NotImplementedError("not built")])
def test_bf16_probe_that_fails_means_no(probes, error):
    probes(cpu=error)
    assert bf16_supported("cpu") is False


def test_bf16_elsewhere_is_no(probes):
    probes(cuda=True, native=True, cpu=True)
    assert bf16_supported("mps") is False and bf16_supported("meta") is False


# --- progress_bar: TQDM_DISABLE silences the notebook bar too -------------------------------------------

@pytest.mark.parametrize(("value", "disabled"), [("1", True), ("true", True), ("0", False), ("", False)])
def test_progress_bar_honours_tqdm_disable_in_jupyter(monkeypatch, value, disabled):
    import tqdm.auto
    import tqdm.notebook

    monkeypatch.setattr(tqdm.auto, "tqdm", tqdm.notebook.tqdm)  # what tqdm.auto picks inside Jupyter
    monkeypatch.setenv("TQDM_DISABLE", value)
    assert tqdm.notebook.tqdm(total=1).disable is False  # the notebook bar ignores the variable...
    bar = lrtools.utils.progress_bar(3, "step")
    assert bar.disable is disabled  # ...so progress_bar passes it explicitly
    bar.close()

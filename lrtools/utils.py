"""Reproducibility and environment helpers."""

from __future__ import annotations

import os
import platform
import random
from typing import Any

import torch

__all__ = ["seed_everything", "pick_device", "describe_environment", "quick_mode", "bf16_supported",
           "rng_state", "set_rng_state", "as_device"]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (when installed) and PyTorch on every device.

    Args:
        seed: Any integer; the same seed gives the same run on the same device.

    Example:
        >>> seed_everything(0)
    """
    random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with matplotlib
        return
    np.random.seed(seed % 2**32)


def pick_device() -> torch.device:
    """Return the best available device: CUDA, then Apple MPS, then the CPU.

    Example:
        >>> pick_device().type in {"cuda", "mps", "cpu"}
        True
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


def quick_mode(quick: bool | None = None) -> bool:
    """Resolve quick mode: an explicit argument wins, else ``$LRTOOLS_QUICK``.

    The variable may be 1/true/yes/on or 0/false/no/off (any case; unset is off);
    anything else is an error rather than a silent full run.

    Example:
        >>> quick_mode(True)
        True
    """
    if quick is not None:
        return bool(quick)
    value = os.environ.get("LRTOOLS_QUICK", "").strip().lower()
    if value not in TRUE_WORDS + FALSE_WORDS:
        raise ValueError(f"LRTOOLS_QUICK={os.environ['LRTOOLS_QUICK']!r} is neither on (1, true, yes, on) "
                         "nor off (0, false, no, off). Fix: export LRTOOLS_QUICK=1 for quick mode.")
    return value in TRUE_WORDS


def as_device(device: torch.device | str | None) -> torch.device:
    """``device`` as a ``torch.device`` that exists here; None picks the best one.

    Example:
        >>> as_device("cpu")
        device(type='cpu')
    """
    if device is None:
        return pick_device()
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"{device!r} is not a device name. Fix: use lrtools.pick_device(), or 'cuda', "
                         "'mps' or 'cpu'.") from exc
    mps = getattr(torch.backends, "mps", None)
    available = {"cuda": torch.cuda.is_available(), "mps": mps is not None and mps.is_available()}
    if not available.get(device.type, True):
        raise ValueError(f"device={str(device)!r} is not available on this machine. Fix: use "
                         f"lrtools.pick_device(), which returns {str(pick_device())!r} here.")
    return device


def bf16_supported(device: torch.device | str) -> bool:
    """Whether ``device`` runs bfloat16 natively (fast), so bf16 autocast pays off there.

    True on CUDA GPUs with bf16 (Ampere and later) and on CPUs with AVX-512 BF16 or AMX;
    False elsewhere (bf16 still works there, emulated and slow).

    Example:
        >>> bf16_supported("cpu") in (True, False)
        True
    """
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        try:  # native only: with emulation counted, pre-Ampere GPUs (T4, V100) would say True
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # torch < 2.3 has no including_emulation and counts native support only
            return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return False


def device_name(device: torch.device, cpu_model: str | None = None) -> str:
    """A readable name: the GPU model, or the CPU model and thread count.

    Example:
        >>> device_name(torch.device("cpu"), "x86_64")  # doctest: +SKIP
        'x86_64, 2 threads'
    """
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        return f"{cpu_model or platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    return device.type


def describe_environment(device: torch.device | None = None) -> str:
    """Describe versions and the compute device, for a notebook's first cell.

    Args:
        device: The device to describe; defaults to :func:`pick_device`.

    Returns:
        A few ``name: value`` lines.

    Example:
        >>> print(describe_environment())  # doctest: +SKIP
        python: 3.11.7 ...
    """
    import torchvision

    device = as_device(device)
    name = device_name(device)
    lines = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": f"{device.type} ({name})",
        "quick mode": "on (small subset, few epochs)" if quick_mode() else "off (full MNIST)",
    }
    return "\n".join(f"{k:>12}: {v}" for k, v in lines.items())


def rng_state() -> dict[str, Any]:
    """Torch CPU and CUDA generators, Python's ``random`` and NumPy's global RNG, in plain types.

    Example:
        >>> set_rng_state(rng_state())
    """
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with matplotlib
        return state
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state["numpy"] = (name, keys.tolist(), pos, has_gauss, cached)  # plain types: weights_only loads it
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    random.setstate(_as_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state.cpu(), index)
    if "numpy" in state:
        import numpy as np

        name, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _as_tuples(value: Any) -> Any:
    """``random.setstate`` wants tuples; a loaded checkpoint may hold lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def progress_bar(total: int, unit: str) -> Any:
    """A ``tqdm.auto`` progress bar that ``TQDM_DISABLE=1`` silences, in Jupyter too.

    Plain tqdm reads ``TQDM_DISABLE`` itself, but the notebook bar that ``tqdm.auto``
    picks inside Jupyter does not (it turns a missing ``disable`` into False), so it is
    passed explicitly here.

    Example:
        >>> bar = progress_bar(3, "step"); bar.close()
    """
    from tqdm.auto import tqdm

    off = os.environ.get("TQDM_DISABLE", "").strip().lower() not in FALSE_WORDS
    return tqdm(total=total, unit=unit, leave=False, disable=off)

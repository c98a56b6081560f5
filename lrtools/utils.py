"""Reproducibility and environment helpers."""

from __future__ import annotations

import os
import platform
import random

import torch

__all__ = ["seed_everything", "pick_device", "describe_environment", "quick_mode", "bf16_supported"]


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


def quick_mode(quick: bool | None = None) -> bool:
    """Resolve quick mode: an explicit argument wins, else ``LRTOOLS_QUICK=1``.

    Example:
        >>> quick_mode(True)
        True
    """
    if quick is not None:
        return bool(quick)
    return os.environ.get("LRTOOLS_QUICK", "0").strip().lower() in {"1", "true", "yes"}


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
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
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

    device = torch.device(device) if device is not None else pick_device()
    name = device_name(device)
    lines = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "device": f"{device.type} ({name})",
        "quick mode": "on (small subset, few epochs)" if quick_mode() else "off (full MNIST)",
    }
    return "\n".join(f"{k:>12}: {v}" for k, v in lines.items())

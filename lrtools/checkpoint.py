"""Save a run and resume it exactly: weights, optimizer, scheduler, history and RNG state.

A checkpoint taken after ``k`` finished epochs, loaded into freshly built objects and
continued with ``fit(..., start_epoch=k, history=...)``, gives the same LRs, losses and
final weights as a run that never stopped (on the same device).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .training import History

__all__ = ["save_checkpoint", "load_checkpoint"]

FORMAT = 1  # bump when the layout below changes


def _rng_state() -> dict[str, Any]:
    """Torch CPU and CUDA generators, Python's ``random`` and NumPy's global RNG."""
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


def _set_rng_state(state: dict[str, Any]) -> None:
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


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any = None, epoch: int, history: History | None = None,
                    **extra: Any) -> Path:
    """Save everything needed to resume training exactly after ``epoch`` finished epochs.

    Stores the ``state_dict`` of the model, optimizer and scheduler, the optimizer's and
    scheduler's class names (checked on load), the history, the RNG states (torch CPU,
    CUDA when present, Python, NumPy; dropout then continues identically) and ``extra``.
    The file is written to a temporary name first and then renamed, so Ctrl-C while
    saving never leaves a half-written checkpoint.

    Args:
        path: Where to write (a ``.pt`` file); parent folders are created.
        model: The model being trained.
        optimizer: Its optimizer.
        scheduler: Its LR scheduler, if any.
        epoch: Finished epochs, i.e. the ``start_epoch`` to resume with.
        history: The run so far, to continue with ``fit(..., history=...)``.
        **extra: Plain values to keep (numbers, strings, lists, dicts, tensors), e.g. ``note="..."``.

    Returns:
        The path written.

    Example:
        >>> fit(model, optimizer, train_loader, epochs=10, scheduler=scheduler,
        ...     on_epoch_end=lambda epoch, history: save_checkpoint(
        ...         "run.pt", model=model, optimizer=optimizer, scheduler=scheduler,
        ...         epoch=epoch, history=history))  # doctest: +SKIP
    """
    if history is not None and history.epochs != epoch:
        raise ValueError(f"epoch={epoch} but the history has {history.epochs} finished epochs. `epoch` "
                         f"counts finished epochs (the start_epoch to resume with): pass "
                         f"epoch=history.epochs ({history.epochs}).")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "lrtools_checkpoint": FORMAT, "epoch": epoch, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "optimizer_class": type(optimizer).__name__,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scheduler_class": type(scheduler).__name__ if scheduler is not None else None,
        "history": history.to_dict() if history is not None else None,
        "rng": _rng_state(), "extra": extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(checkpoint, tmp)
    os.replace(tmp, path)
    return path


def _check_compatible(checkpoint: dict, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    saved, given = checkpoint["optimizer_class"], type(optimizer).__name__
    if saved != given:
        raise TypeError(f"The checkpoint was saved with optimizer {saved}, but optimizer={given} was passed. "
                        f"Fix: build the optimizer as in the saved run ({saved}(model.parameters(), ...)) "
                        "and load into it.")
    saved, given = checkpoint["scheduler_class"], type(scheduler).__name__
    if saved is not None and scheduler is None:
        raise ValueError(f"The checkpoint was saved with scheduler {saved}, but scheduler=None was passed, "
                         f"so the LR schedule would be lost. Fix: build the same {saved} on the optimizer "
                         "and pass it as scheduler=.")
    if saved is None and scheduler is not None:
        raise ValueError(f"The checkpoint was saved without a scheduler, but scheduler={given} was passed, "
                         "which would restart its schedule. Fix: pass scheduler=None.")
    if saved is not None and saved != given:
        raise TypeError(f"The checkpoint was saved with scheduler {saved}, but scheduler={given} was passed. "
                        f"Fix: build the same {saved} on the optimizer, as in the saved run.")


def load_checkpoint(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any = None, map_location: str | torch.device | None = None) -> dict[str, Any]:
    """Restore a :func:`save_checkpoint` file into freshly built objects, RNG state included.

    Build the model, the optimizer and the scheduler exactly as for the original run
    (same classes and arguments; the scheduler before loading), then load: the saved
    states overwrite theirs, the LR included.

    Args:
        path: A file written by :func:`save_checkpoint`.
        model: Receives the weights (``strict`` loading: the architecture must match).
        optimizer: Same class as the saved one; receives its state and LRs.
        scheduler: Same class as the saved one, or None if the run had none.
        map_location: Passed to ``torch.load``, e.g. ``"cpu"`` for a checkpoint saved on a GPU.

    Returns:
        ``{"epoch": int, "history": History | None, **extra}``; resume with
        ``fit(..., start_epoch=state["epoch"], history=state["history"])``.

    Example:
        >>> state = load_checkpoint("run.pt", model=model, optimizer=optimizer,
        ...                         scheduler=scheduler)  # doctest: +SKIP
        >>> fit(model, optimizer, train_loader, epochs=10, scheduler=scheduler,
        ...     start_epoch=state["epoch"], history=state["history"])  # doctest: +SKIP
    """
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or "lrtools_checkpoint" not in checkpoint:
        raise ValueError(f"{path} is not an lrtools checkpoint. Fix: load a file written by "
                         "lrtools.save_checkpoint (plain state_dicts load with torch.load).")
    _check_compatible(checkpoint, optimizer, scheduler)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    _set_rng_state(checkpoint["rng"])
    history = History(**checkpoint["history"]) if checkpoint["history"] is not None else None
    return {"epoch": checkpoint["epoch"], "history": history, **checkpoint["extra"]}

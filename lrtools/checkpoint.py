"""Save a run and resume it exactly: weights, optimizer, scheduler, history and RNG state.

A checkpoint taken after ``k`` finished epochs, loaded into freshly built objects and
continued with ``fit(..., history=state["history"])``, gives the same LRs, losses and
final weights as a run that never stopped (on the same device).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .history import History
from .utils import rng_state, set_rng_state

__all__ = ["save_checkpoint", "load_checkpoint", "FORMAT"]

FORMAT = 2  # 2: no "epoch" key (the history has it), optional "scaler"; 1 still loads
#: What ``torch.load(weights_only=True)`` loads back. Exact types: a NumPy float64 is a float subclass
#: (and an IntEnum an int one) that saves fine but is refused on load.
SCALARS = (type(None), bool, int, float, complex, str, bytes)
TENSORS = (torch.Tensor, nn.Parameter)
CONTAINERS = (list, tuple, set, dict, OrderedDict)


def _unloadable(value: Any, where: str) -> list[str]:
    """Where ``value`` holds something ``torch.load(weights_only=True)`` would refuse."""
    kind = type(value)
    if kind in SCALARS or kind in TENSORS:
        return []
    if kind in (list, tuple, set):
        return [bad for i, v in enumerate(value) for bad in _unloadable(v, f"{where}[{i}]")]
    if kind in (dict, OrderedDict):
        bad = [f"{where} (key {k!r} of type {type(k).__name__})" for k in value if type(k) not in SCALARS]
        return bad + [b for k, v in value.items() for b in _unloadable(v, f"{where}[{k!r}]")]
    return [f"{where} ({kind.__name__})"]


def _check_extra(extra: dict[str, Any]) -> None:
    bad = [b for key, value in extra.items() for b in _unloadable(value, key)]
    if bad:
        raise TypeError(f"These extras could be saved but not loaded (load_checkpoint uses torch's safe "
                        f"weights-only loading): {', '.join(bad)}. Fix: store plain values, e.g. float(x) "
                        "for a NumPy number, x.tolist() or torch.from_numpy(x) for an array, str(path) for "
                        "a Path, and pass a History as history=, not as an extra.")


def save_checkpoint(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any = None, history: History | None = None, scaler: Any = None,
                    **extra: Any) -> Path:
    """Save everything needed to resume training exactly where ``history`` stands.

    Stores the ``state_dict`` of the model, optimizer, scheduler and (for fp16 AMP) the
    ``GradScaler``, their class names (checked on load), the history, the RNG states
    (torch CPU, CUDA when present, Python, NumPy) and ``extra``. The file is written
    under a temporary name and then renamed, so a failed or interrupted save never
    leaves a half-written checkpoint (nor the temporary file).

    Args:
        path: Where to write (a ``.pt`` file); parent folders are created.
        model, optimizer: The model being trained and its optimizer.
        scheduler: Its LR scheduler, if any.
        history: The run so far (it says how many epochs are done).
        scaler: A ``torch.amp.GradScaler`` when training with fp16 autocast.
        **extra: Plain values to keep (numbers, strings, lists, dicts, tensors), e.g. ``note="..."``.

    Returns:
        The path written.

    Example:
        >>> fit(model, optimizer, train_loader, epochs=10, scheduler=scheduler,
        ...     on_epoch_end=lambda epochs_done, history: save_checkpoint(
        ...         "run.pt", model=model, optimizer=optimizer, scheduler=scheduler,
        ...         history=history))  # doctest: +SKIP
    """
    _check_extra(extra)
    if history is not None:
        history.validate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "lrtools_checkpoint": FORMAT, "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "optimizer_class": type(optimizer).__name__,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "scheduler_class": type(scheduler).__name__ if scheduler is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "scaler_class": type(scaler).__name__ if scaler is not None else None,
        "history": history.to_dict() if history is not None else None,
        "rng": rng_state(), "extra": extra,
    }
    tmp = path.with_name(path.name + ".tmp")
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _check_part(what: str, saved: str | None, given: Any) -> None:
    """A scheduler or scaler: saved and passed, or neither; and of the same class."""
    name = type(given).__name__
    if saved is not None and given is None:
        raise ValueError(f"The checkpoint was saved with {what} {saved}, but {what}=None was passed, so its "
                         f"state would be lost. Fix: build the same {saved} and pass it as {what}=.")
    if saved is None and given is not None:
        raise ValueError(f"The checkpoint was saved without a {what}, but {what}={name} was passed, which "
                         f"would restart it. Fix: pass {what}=None.")
    if saved is not None and saved != name:
        raise TypeError(f"The checkpoint was saved with {what} {saved}, but {what}={name} was passed. "
                        f"Fix: build the same {saved}, as in the saved run.")


def _check_model(checkpoint: dict, model: nn.Module) -> None:
    saved, mine = checkpoint["model"], model.state_dict()
    missing, unexpected = sorted(set(mine) - set(saved)), sorted(set(saved) - set(mine))
    shapes = [k for k in set(saved) & set(mine) if tuple(saved[k].shape) != tuple(mine[k].shape)]
    if missing or unexpected or shapes:
        raise ValueError(f"The checkpoint's weights do not fit this model (missing {missing[:3]}, unexpected "
                         f"{unexpected[:3]}, other shapes {sorted(shapes)[:3]}). Fix: build the model "
                         "exactly as in the saved run (same class and arguments).")


def _check_compatible(checkpoint: dict, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                      scaler: Any) -> None:
    saved, given = checkpoint["optimizer_class"], type(optimizer).__name__
    if saved != given:
        raise TypeError(f"The checkpoint was saved with optimizer {saved}, but optimizer={given} was passed. "
                        f"Fix: build the optimizer as in the saved run ({saved}(model.parameters(), ...)) "
                        "and load into it.")
    groups, mine = len(checkpoint["optimizer"]["param_groups"]), len(optimizer.param_groups)
    if groups != mine:
        raise ValueError(f"The checkpoint's optimizer has {groups} param groups, this one {mine}. Fix: "
                         "build the optimizer with the same groups (add_param_group calls included) before "
                         "loading.")
    sizes = [len(g["params"]) for g in checkpoint["optimizer"]["param_groups"]]
    mine_sizes = [len(g["params"]) for g in optimizer.param_groups]
    if sizes != mine_sizes:
        raise ValueError(f"The checkpoint's optimizer groups hold {sizes} parameters, this one's "
                         f"{mine_sizes}. Fix: build the optimizer on the same parameters as in the saved "
                         "run, e.g. model.parameters().")
    _check_model(checkpoint, model)
    _check_part("scheduler", checkpoint["scheduler_class"], scheduler)
    _check_part("scaler", checkpoint["scaler_class"], scaler)


def _read(path: str | os.PathLike, map_location: Any) -> dict:
    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"{path} is empty (0 bytes): the save that wrote it did not finish. Fix: load an "
                         "earlier checkpoint, or train again from the start.")
    checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(checkpoint, dict) or "lrtools_checkpoint" not in checkpoint:
        raise ValueError(f"{path} is not an lrtools checkpoint. Fix: load a file written by "
                         "lrtools.save_checkpoint (plain state_dicts load with torch.load).")
    if checkpoint["lrtools_checkpoint"] not in (1, FORMAT):
        raise ValueError(f"{path} has checkpoint format {checkpoint['lrtools_checkpoint']}, but this lrtools "
                         f"reads formats 1 and {FORMAT}. Fix: load it with the lrtools version that wrote it "
                         "(pip install -U lrtools, if it is newer).")
    checkpoint.setdefault("scaler", None)
    checkpoint.setdefault("scaler_class", None)
    return checkpoint


def load_checkpoint(path: str | os.PathLike, *, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler: Any = None, scaler: Any = None,
                    map_location: str | torch.device | None = None) -> dict[str, Any]:
    """Restore a :func:`save_checkpoint` file into freshly built objects, RNG state included.

    Build the model, the optimizer, the scheduler (and the scaler) exactly as for the
    original run, then load: the saved states overwrite theirs, the LR included. Every
    check runs before anything is changed, so a refused load leaves the objects as they were.

    Args:
        path: A file written by :func:`save_checkpoint`.
        model: Receives the weights (the architecture must match).
        optimizer: Same class and number of param groups as the saved one.
        scheduler: Same class as the saved one, or None if the run had none.
        scaler: The ``GradScaler``, if the run saved one.
        map_location: Passed to ``torch.load``, e.g. ``"cpu"`` for a checkpoint saved on a GPU.

    Returns:
        ``{"history": History | None, **extra}``; continue with ``fit(..., history=state["history"])``.

    Example:
        >>> state = load_checkpoint("run.pt", model=model, optimizer=optimizer,
        ...                         scheduler=scheduler)  # doctest: +SKIP
        >>> fit(model, optimizer, train_loader, epochs=10, scheduler=scheduler,
        ...     history=state["history"])  # doctest: +SKIP
    """
    checkpoint = _read(path, map_location)
    _check_compatible(checkpoint, model, optimizer, scheduler, scaler)
    history = History.from_dict(checkpoint["history"]) if checkpoint["history"] is not None else None
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    if scaler is not None:
        scaler.load_state_dict(checkpoint["scaler"])
    set_rng_state(checkpoint["rng"])
    return {"history": history, **checkpoint["extra"]}

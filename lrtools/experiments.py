"""Run several configurations over several seeds and summarise them (mean ± std).

One seed is an anecdote: two schedules a few tenths of a percent apart may swap
places with another seed. :func:`run_many` trains every configuration once per seed,
:func:`summarize` reduces the runs to mean, sample standard deviation and range.
"""

from __future__ import annotations

import inspect
import math
import numbers
import statistics
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch.nn.functional as F

from .history import History
from .training import evaluate, fit
from .utils import progress_bar, seed_everything

__all__ = ["run_many", "summarize", "format_table"]

OWN_KEYS = ("train_loader", "val_loader", "epochs", "history")  # run_many passes these itself


def _fit_kwargs(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The config's keys other than model and optimizer, checked against fit's own keywords."""
    if not isinstance(config, Mapping):
        raise TypeError(f"Config {name!r} returned {type(config).__name__}; it must return a dict such as "
                        "dict(model=model, optimizer=optimizer, scheduler=...).")
    accepted = set(inspect.signature(fit).parameters) - {"model", "optimizer", *OWN_KEYS}
    missing = [key for key in ("model", "optimizer") if key not in config]
    unknown = sorted(set(config) - {"model", "optimizer"} - accepted)
    if missing or unknown:
        raise ValueError(f"Config {name!r} returned keys {sorted(config)}; it needs 'model' and 'optimizer' "
                         f"and may add fit() keywords {sorted(accepted)}. Missing: {missing}, unknown: "
                         f"{unknown}.")
    return {key: value for key, value in config.items() if key not in ("model", "optimizer")}


def _check_seeds(seeds: Any) -> list[int]:
    if isinstance(seeds, (str, bytes)) or not isinstance(seeds, (Sequence, range)):
        raise TypeError(f"seeds must be a sequence of ints such as range(3) or (0, 1, 2), got {seeds!r}.")
    seeds = list(seeds)
    if not seeds or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds must be a non-empty sequence of ints, got {seeds!r}.")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds {seeds} repeat a seed: a repeated run is not a new sample, so the spread "
                         "would look smaller than it is. Fix: use distinct seeds, e.g. range(3).")
    return [int(s) for s in seeds]


def _check_fresh(name: str, seed: int, config: Mapping[str, Any],
                 used: dict[int, tuple[Callable, str]]) -> None:
    """Every run builds its own model, optimizer and scheduler inside the config function.

    ``used`` maps ``id(obj)`` to a weak reference and the run that used it: a finished run's
    objects may be freed and their ids reused by new objects, which are not shared.
    """
    for key in ("model", "optimizer", "scheduler"):
        obj = config.get(key)
        if obj is None:
            continue
        ref, where = used.get(id(obj), (None, ""))
        if ref is not None and ref() is obj:
            raise ValueError(f"Config {name!r} returned for seed {seed} the same {key} object as {where}: "
                             "the runs would keep training one model, and mean ± std would be wrong. Fix: "
                             f"build the {key} inside the config function, e.g. "
                             "def make(seed): model = SmallCNN(); ...; return dict(model=model, ...).")
        try:
            ref = weakref.ref(obj)
        except TypeError:  # not weak-referenceable: keep it alive so its id stays its own
            ref = lambda obj=obj: obj
        used[id(obj)] = (ref, f"{name!r} seed {seed}")


def _one_run(name: str, config: Mapping[str, Any], kwargs: dict[str, Any], seed: int, train_loader: Iterable,
             val_loader: Iterable | None, test_loader: Iterable, epochs: int,
             ) -> tuple[dict[str, Any] | None, History]:
    start = time.perf_counter()
    history = fit(config["model"], config["optimizer"], train_loader, epochs=epochs, val_loader=val_loader,
                  **kwargs)
    if history.interrupted:
        return None, history
    loss_fn = kwargs.get("loss_fn", F.cross_entropy)
    test_loss, test_acc = evaluate(config["model"], test_loader, loss_fn=loss_fn)
    val_acc = history.val_acc if val_loader is not None else [math.nan]
    row = {"name": name, "seed": seed, "test_acc": test_acc, "test_loss": test_loss,
           "best_val_acc": max(val_acc), "final_val_acc": val_acc[-1],
           "seconds": time.perf_counter() - start, "epochs": history.epochs}
    return row, history


def run_many(configs: Mapping[str, Callable[[int], Mapping[str, Any]]], seeds: Sequence[int], *,
             train_loader: Iterable | Callable[[int], Iterable], val_loader: Iterable | None = None,
             test_loader: Iterable, epochs: int,
             ) -> tuple[list[dict[str, Any]], dict[tuple[str, int], History]]:
    """Train every configuration once per seed with :func:`fit`, then test it.

    For each name and seed (names outer, seeds inner): ``seed_everything(seed)``, then
    ``configs[name](seed)`` builds the run, which trains for ``epochs`` and is evaluated
    once on ``test_loader``. ``train_loader`` is one loader (every run sees the same
    data order) or a function of the seed, e.g. ``train_loader.with_seed``, so that the
    spread covers initialisation *and* data order. Ctrl-C stops after the runs already
    finished; a diverging run raises :class:`lrtools.DivergenceError`.

    Args:
        configs: Name -> function of the seed returning ``dict(model=..., optimizer=...)``
            plus any other :func:`fit` keywords (``scheduler``, ``step_every``, ``loss_fn``, ...).
        seeds: Distinct ints, e.g. ``range(3)``.
        train_loader: Training data, or a function ``seed -> loader``.
        val_loader: Validation data (a split of the training set), or None.
        test_loader: Test data, used once per run for the final numbers.
        epochs: Epochs per run.

    Returns:
        ``(rows, histories)``: one dict per run with ``name, seed, test_acc, test_loss,
        best_val_acc, final_val_acc, seconds, epochs`` (val numbers NaN without
        ``val_loader``), and ``{(name, seed): History}``.

    Example:
        >>> def onecycle(seed):
        ...     model = SmallCNN()
        ...     optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        ...     return dict(model=model, optimizer=optimizer, step_every="step",
        ...                 scheduler=OneCycleLR(optimizer, 0.1, total_steps=3 * len(train_loader)))
        >>> rows, histories = run_many({"onecycle": onecycle}, seeds=range(3), epochs=3,
        ...     train_loader=train_loader.with_seed, val_loader=val_loader,
        ...     test_loader=test_loader)  # doctest: +SKIP
    """
    seeds = _check_seeds(seeds)
    rows: list[dict[str, Any]] = []
    histories: dict[tuple[str, int], History] = {}
    used: dict[int, tuple[Callable, str]] = {}
    runs = [(n, s) for n in configs for s in seeds]
    with progress_bar(len(runs), "run") as bar:
        for name, seed in runs:
            seed_everything(seed)
            config = configs[name](seed)
            kwargs = _fit_kwargs(name, config)
            _check_fresh(name, seed, config, used)
            loader = train_loader(seed) if callable(train_loader) else train_loader
            row, history = _one_run(name, config, kwargs, seed, loader, val_loader, test_loader, epochs)
            if row is None:  # Ctrl-C
                break
            rows.append(row)
            histories[name, seed] = history
            bar.update()
    return rows, histories


def summarize(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per configuration: runs, test accuracy mean ± sample std, min, max; mean seconds.

    Names keep the order of their first row. The standard deviation is the sample one
    (divides by ``n - 1``); it is NaN for a single run.

    Example:
        >>> summary = summarize([{"name": "a", "test_acc": 0.9, "seconds": 1.0},
        ...                      {"name": "a", "test_acc": 0.7, "seconds": 3.0}])
        >>> round(summary[0]["test_acc_mean"], 4), round(summary[0]["test_acc_std"], 4)
        (0.8, 0.1414)
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["name"], []).append(row)
    summary = []
    for name, runs in groups.items():
        accs = [r["test_acc"] for r in runs]
        summary.append({"name": name, "runs": len(runs), "test_acc_mean": statistics.fmean(accs),
                        "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else math.nan,
                        "test_acc_min": min(accs), "test_acc_max": max(accs),
                        "seconds_mean": statistics.fmean(r["seconds"] for r in runs)})
    return summary


def format_table(summary: Iterable[Mapping[str, Any]]) -> str:
    """:func:`summarize`'s rows as a fixed-width text table (accuracies in %).

    Example:
        >>> print(format_table([{"name": "a", "runs": 2, "test_acc_mean": 0.8, "test_acc_std": 0.1,
        ...                      "test_acc_min": 0.7, "test_acc_max": 0.9, "seconds_mean": 2.0}]))
        name runs  test acc % (mean ± std)   min %   max %  seconds
        a       2           80.00 ±  10.00   70.00   90.00      2.0
    """
    summary = list(summary)
    width = max([4, *(len(str(r["name"])) for r in summary)])
    lines = [f"{'name':<{width}} {'runs':>4}  {'test acc % (mean ± std)':>23}  {'min %':>6}  {'max %':>6}  "
             f"{'seconds':>7}"]
    for r in summary:
        lines.append(f"{r['name']:<{width}} {r['runs']:>4}  {100 * r['test_acc_mean']:>14.2f} ± "
                     f"{100 * r['test_acc_std']:>6.2f}  {100 * r['test_acc_min']:>6.2f}  "
                     f"{100 * r['test_acc_max']:>6.2f}  {r['seconds_mean']:>7.1f}")
    return "\n".join(lines)

"""Run several configurations over several seeds and summarise them (mean ± std).

One seed is an anecdote: two schedules a few tenths of a percent apart may swap
places with another seed. :func:`run_many` trains every configuration once per seed,
:func:`summarize` reduces the runs to mean, sample standard deviation and range.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from tqdm.auto import tqdm

from .training import History, _tqdm_disabled, evaluate, fit
from .utils import seed_everything

__all__ = ["run_many", "summarize", "format_table"]

FIT_KEYS = ("scheduler", "step_every", "plateau_metric", "loss_fn")


def _fit_kwargs(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    missing = [key for key in ("model", "optimizer") if key not in config]
    unknown = sorted(set(config) - {"model", "optimizer", *FIT_KEYS})
    if missing or unknown:
        raise ValueError(f"Config {name!r} returned keys {sorted(config)}; it needs 'model' and 'optimizer' "
                         f"and may add {', '.join(map(repr, FIT_KEYS))}. Missing: {missing}, "
                         f"unknown: {unknown}.")
    return {key: config[key] for key in FIT_KEYS if key in config}


def _one_run(name: str, make: Callable[[int], Mapping[str, Any]], seed: int, train_loader: Iterable,
             val_loader: Iterable | None, test_loader: Iterable, epochs: int, vary_data_order: bool,
             ) -> tuple[dict[str, Any] | None, History]:
    seed_everything(seed)
    config = make(seed)
    kwargs = _fit_kwargs(name, config)
    loader_seed = getattr(train_loader, "seed", None)
    start = time.perf_counter()
    try:
        if vary_data_order and loader_seed is not None:
            train_loader.seed = seed
        history = fit(config["model"], config["optimizer"], train_loader, epochs=epochs,
                      val_loader=val_loader, **kwargs)
    finally:
        if loader_seed is not None:
            train_loader.seed = loader_seed
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
             train_loader: Iterable, val_loader: Iterable | None = None, test_loader: Iterable, epochs: int,
             vary_data_order: bool = True) -> tuple[list[dict[str, Any]], dict[tuple[str, int], History]]:
    """Train every configuration once per seed with :func:`fit`, then test it.

    For each name and seed (names outer, seeds inner): ``seed_everything(seed)``, then
    ``configs[name](seed)`` builds the run, which trains for ``epochs`` and is evaluated
    once on ``test_loader``. With ``vary_data_order`` a loader that has a ``seed``
    attribute (``TensorLoader``) shuffles with the run's seed, so the spread covers
    initialisation *and* data order (its seed is restored afterwards); otherwise all
    runs see the same order. Ctrl-C stops after the runs already finished; a diverging
    run raises :class:`lrtools.DivergenceError`.

    Args:
        configs: Name → function of the seed returning ``dict(model=..., optimizer=...)``
            plus optionally ``scheduler``, ``step_every``, ``plateau_metric``, ``loss_fn``
            (passed to :func:`fit`; ``loss_fn`` also to the final :func:`evaluate`).
        seeds: The seeds, e.g. ``range(3)``.
        train_loader: Training data.
        val_loader: Validation data (a split of the training set), or None (the default).
        test_loader: Test data, used once per run for the final numbers.
        epochs: Epochs per run.
        vary_data_order: Shuffle with each run's seed (see above).

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
        ...     train_loader=train_loader, val_loader=val_loader, test_loader=test_loader)  # doctest: +SKIP
    """
    rows: list[dict[str, Any]] = []
    histories: dict[tuple[str, int], History] = {}
    runs = [(name, seed) for name in configs for seed in seeds]
    for name, seed in tqdm(runs, unit="run", disable=_tqdm_disabled(), leave=False):
        row, history = _one_run(name, configs[name], seed, train_loader, val_loader, test_loader, epochs,
                                vary_data_order)
        if row is None:  # Ctrl-C
            break
        rows.append(row)
        histories[name, seed] = history
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

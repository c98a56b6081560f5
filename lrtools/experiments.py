"""Run several configurations over several seeds, summarise them and compare them.

One seed is an anecdote: two schedules a few tenths of a percent apart may swap
places with another seed. :func:`run_many` trains every configuration once per seed,
:func:`summarize` reduces the runs to mean, sample standard deviation and range.
Because run ``k`` of every configuration starts from the same seed (same initial
weights, same data order), the runs are *paired*: :func:`paired_differences`
compares each configuration with a baseline seed by seed, with a 95 % confidence
interval and p-value from the paired t distribution; :func:`two_sample_ci` is the
unpaired (pooled-variance) analysis, for comparison. :func:`t_two_sided_p` and
:func:`t_quantile` compute the t distribution exactly for integer degrees of freedom.
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

__all__ = ["run_many", "summarize", "format_table", "paired_differences", "two_sample_ci", "t_quantile",
           "t_two_sided_p"]

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


def summarize(rows: Iterable[Mapping[str, Any]], metric: str = "test_acc") -> list[dict[str, Any]]:
    """Per configuration: runs, ``metric`` mean ± sample std, min, max; mean seconds.

    Names keep the order of their first row. The standard deviation is the sample one
    (divides by ``n - 1``); it is NaN for a single run. The keys are ``metric`` plus
    ``_mean``, ``_std``, ``_min``, ``_max`` (``test_acc_mean``, ... by default), and
    ``metric`` itself.

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
        values = [r[metric] for r in runs]
        summary.append({"name": name, "runs": len(runs), "metric": metric,
                        f"{metric}_mean": statistics.fmean(values),
                        f"{metric}_std": statistics.stdev(values) if len(values) > 1 else math.nan,
                        f"{metric}_min": min(values), f"{metric}_max": max(values),
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
    metric = summary[0].get("metric", "test_acc") if summary else "test_acc"
    head = f"{metric.replace('_', ' ')} % (mean ± std)"
    width = max([4, *(len(str(r["name"])) for r in summary)])
    col = max(23, len(head))
    lines = [f"{'name':<{width}} {'runs':>4}  {head:>{col}}  {'min %':>6}  {'max %':>6}  {'seconds':>7}"]
    for r in summary:
        lines.append(f"{r['name']:<{width}} {r['runs']:>4}  {100 * r[metric + '_mean']:>{col - 9}.2f} ± "
                     f"{100 * r[metric + '_std']:>6.2f}  {100 * r[metric + '_min']:>6.2f}  "
                     f"{100 * r[metric + '_max']:>6.2f}  {r['seconds_mean']:>7.1f}")
    return "\n".join(lines)


def t_two_sided_p(t: float, df: int) -> float:
    """Two-sided p-value ``P(|T| >= |t|)`` of Student's t with integer ``df``, exactly.

    Closed forms (Abramowitz & Stegun 26.7.3-4) with ``theta = atan(|t| / sqrt(df))``; for
    ``df = 1`` it is ``1 - 2 atan(|t|) / pi``, for ``df = 2`` it is ``1 - |t| / sqrt(2 + t^2)``.

    Example:
        >>> round(t_two_sided_p(4.302652729749464, 2), 12)
        0.05
    """
    if not isinstance(df, numbers.Integral) or df < 1:
        raise ValueError(f"df must be a positive int, got {df!r}.")
    if math.isinf(t):
        return 0.0
    theta = math.atan(abs(t) / math.sqrt(df))
    c2, term = math.cos(theta) ** 2, 1.0
    if df % 2 == 0:  # sin(theta) * (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ... up to c^(df-2))
        total = 1.0
        for k in range(1, df // 2):
            term *= c2 * (2 * k - 1) / (2 * k)
            total += term
        inside = math.sin(theta) * total
    else:  # 2/pi * (theta + sin(theta) * (cos + 2/3 cos^3 + ... up to cos^(df-2)))
        total = 0.0 if df == 1 else 1.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        inside = 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)
    return min(1.0, max(0.0, 1.0 - inside))


def t_quantile(q: float, df: int) -> float:
    """The ``q`` quantile of Student's t with integer ``df`` (bisection on :func:`t_two_sided_p`).

    Example:
        >>> round(t_quantile(0.975, 2), 3), round(t_quantile(0.975, 4), 3), round(t_quantile(0.975, 30), 3)
        (4.303, 2.776, 2.042)
    """
    if not 0 < q < 1:
        raise ValueError(f"q must be strictly between 0 and 1, got {q!r}.")
    if q <= 0.5:
        return -t_quantile(1 - q, df) if q < 0.5 else 0.0
    target, lo, hi = 2 * (1 - q), 0.0, 1.0  # P(|T| >= t) = 2 (1 - q) for t >= 0
    while t_two_sided_p(hi, df) > target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        lo, hi = (mid, hi) if t_two_sided_p(mid, df) > target else (lo, mid)
    return (lo + hi) / 2


def _by_name_and_seed(rows: Iterable[Mapping[str, Any]], metric: str) -> dict[str, dict[int, float]]:
    table: dict[str, dict[int, float]] = {}
    for r in rows:
        if r["seed"] in table.setdefault(r["name"], {}):
            raise ValueError(f"{r['name']!r} has two runs with seed {r['seed']}.")
        table[r["name"]][r["seed"]] = r[metric]
    return table


def paired_differences(rows: Iterable[Mapping[str, Any]], baseline: str, metric: str,
                       confidence: float = 0.95) -> list[dict[str, Any]]:
    """Every other configuration minus ``baseline``, seed by seed, with a paired-t CI and p-value.

    For configuration A, ``d_k = A_k - baseline_k`` over the seeds both ran; ``diff_mean`` is
    their mean, ``diff_sd`` their sample std, the CI is ``diff_mean ± t(n-1) * diff_sd / sqrt(n)``
    and ``p`` the two-sided p-value of ``t = diff_mean / (diff_sd / sqrt(n))``. In the metric's units.

    Example:
        >>> rows = [{"name": n, "seed": s, "acc": a} for n, accs in
        ...         [("base", [1.0, 2.0, 3.0]), ("new", [1.2, 2.3, 3.4])] for s, a in enumerate(accs)]
        >>> d = paired_differences(rows, "base", "acc")[0]
        >>> d["name"], d["diffs"], round(d["diff_mean"], 6), round(d["ci_low"], 4), round(d["p"], 4)
        ('new', [0.2, 0.3, 0.4], 0.3, 0.0516, 0.0351)
    """
    table = _by_name_and_seed(rows, metric)
    if baseline not in table:
        raise ValueError(f"No runs of the baseline {baseline!r}; names are {list(table)}.")
    out = []
    for name, runs in table.items():
        seeds = [s for s in runs if s in table[baseline]]
        if name == baseline or len(seeds) < 2:
            continue
        diffs = [round(runs[s] - table[baseline][s], 12) for s in seeds]
        n, mean, sd = len(diffs), statistics.fmean(diffs), statistics.stdev(diffs)
        half = t_quantile((1 + confidence) / 2, n - 1) * sd / math.sqrt(n)
        t = mean / (sd / math.sqrt(n)) if sd > 0 else math.copysign(math.inf, mean) if mean else math.nan
        out.append({"name": name, "n": n, "seeds": seeds, "diffs": diffs, "diff_mean": mean, "diff_sd": sd,
                    "ci_low": mean - half, "ci_high": mean + half, "t": t,
                    "p": t_two_sided_p(t, n - 1) if not math.isnan(t) else 1.0})
    return out


def two_sample_ci(a: Sequence[float], b: Sequence[float],
                  confidence: float = 0.95) -> tuple[float, float, float, float]:
    """The *unpaired* analysis: ``(mean(a) - mean(b), CI low, CI high, p)`` from a pooled-variance t.

    It ignores which runs share a seed, so seed-to-seed variation that cancels in a paired
    difference stays in its standard error ``s_p sqrt(1/n_a + 1/n_b)`` (``n_a + n_b - 2`` df).

    Example:
        >>> gap, low, high, p = two_sample_ci([1.2, 2.3, 3.4], [1.0, 2.0, 3.0])
        >>> round(gap, 6), round(low, 3), round(high, 3), round(p, 3)
        (0.3, -2.083, 2.683, 0.744)
    """
    na, nb = len(a), len(b)
    if na < 2 or nb < 2:
        raise ValueError(f"need at least two values on each side, got {na} and {nb}.")
    gap = statistics.fmean(a) - statistics.fmean(b)
    pooled = ((na - 1) * statistics.variance(a) + (nb - 1) * statistics.variance(b)) / (na + nb - 2)
    se = math.sqrt(pooled * (1 / na + 1 / nb))
    half = t_quantile((1 + confidence) / 2, na + nb - 2) * se
    p = t_two_sided_p(gap / se, na + nb - 2) if se > 0 else (0.0 if gap else 1.0)
    return gap, gap - half, gap + half, p

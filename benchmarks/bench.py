"""Speed benchmark: the usual PyTorch MNIST loop, the same model on lrtools, and the lrtools recipe.

``python -m benchmarks.bench`` (``make bench``) trains, in one process and on the device it
finds, four runs on full MNIST:

* ``baseline`` -- the loop of the official PyTorch MNIST example: :class:`ExamplesNet`,
  batch 64, ``Adadelta(lr=1.0)``, ``StepLR(step_size=1, gamma=0.7)``, torchvision MNIST
  through a ``DataLoader`` (``ToTensor`` + ``Normalize``, ``num_workers=1``,
  ``pin_memory`` on CUDA).
* ``same_model_fp32`` -- the identical model, optimizer and schedule, fed by
  :func:`lrtools.mnist_loaders` and trained by :func:`lrtools.fit` in exact fp32: the
  speed-up is the data path and the loop alone.
* ``same_model`` -- the same again on the fast path: channels-last weights (set here, before
  the optimizer is built) and ``fit(..., precision="bf16")`` where the device runs bf16
  natively (see :func:`lrtools.bf16_supported`).
* ``recipe`` -- the fastest way to 99% test accuracy the workbook recommends:
  :class:`SmallCNN`, SGD with Nesterov momentum and ``OneCycleLR``, a larger batch, the fast
  path; on CUDA also the fused optimizer and ``torch.compile`` (eager fallback when
  compiling fails).

Every run times training epochs only (synchronised on CUDA); test accuracy is measured
after each epoch outside the clock, and warm-up/compilation is timed separately. The
library functions return plain dicts; only :func:`main` prints.

The benchmark uses lrtools' public API only (``fit``, ``evaluate``, ``mnist_loaders``, ...).
A further run is added in one place: its name in :data:`RUNS` and its function in
:data:`RUNNERS` (the ``--skip-...`` option follows from the name).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import gc
import json
import platform
import re
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lrtools import (
    SmallCNN,
    bf16_supported,
    evaluate,
    fit,
    mnist_loaders,
    pick_device,
    seed_everything,
    watch,
)
from lrtools.data import MNIST_MEAN, MNIST_STD, QUICK_SIZES, ensure_mnist, resolve_data_root
from lrtools.utils import device_name

__all__ = ["BenchConfig", "ExamplesNet", "run_benchmark", "time_to_target", "speedup", "compute_ratios",
           "format_report", "fast_path", "prepare_model", "main"]

SCHEMA = "lrtools.bench/1"
#: The runs, in the order they run and are reported. Add a run here and in :data:`RUNNERS`.
RUNS = ("baseline", "same_model_fp32", "same_model", "recipe")
#: The recipe's hyper-parameters (the same on every device, so CPU accuracy checks carry over).
RECIPE = {"batch_size": 256, "max_lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "epochs": 4}
WARMUP_STEPS = 3
#: Options of the exact fp32 same-model run (the data path and the loop alone): ``fit``'s
#: ``precision`` and whether :func:`prepare_model` stores the weights channels-last.
EXACT_FP32 = {"precision": "fp32", "channels_last": False}


class ExamplesNet(nn.Module):
    """The two-convolution net of the official PyTorch MNIST example.

    conv 32, conv 64, max-pool, dropout 0.25, fc 128, dropout 0.5, fc 10.

    Example:
        >>> ExamplesNet()(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Dropout(0.25), nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@dataclass
class BenchConfig:
    """What :func:`run_benchmark` runs.

    Args:
        device: ``"cpu"``, ``"cuda"``, ...; None picks the best one (CPU in quick mode).
        quick: The fixed 4,096-image subset and one epoch per run (a smoke test).
        epochs: Epochs of ``baseline`` and the same-model runs (None: 1 quick, 3 on CPU, 5 otherwise).
        recipe_epochs: Length of the recipe's one-cycle schedule; it stops once it hits ``target``.
        target: Test accuracy whose time-to-reach is reported.
        runs: Which of ``baseline``, ``same_model_fp32``, ``same_model``, ``recipe`` to run.
        compile: ``torch.compile`` the recipe on CUDA.
        seed: Seeds model initialisation and shuffling.
        root: MNIST folder (default ``$LRTOOLS_DATA``).
        watch_overhead: Also measure what ``lrtools.watch`` costs per optimizer step.

    Example:
        >>> BenchConfig(quick=True).resolved_epochs("cpu")
        1
    """

    device: str | None = None
    quick: bool = False
    epochs: int | None = None
    recipe_epochs: int | None = None
    target: float = 0.99
    runs: tuple[str, ...] = RUNS
    compile: bool = True
    seed: int = 0
    root: str | None = None
    watch_overhead: bool = True

    def resolved_epochs(self, device_type: str) -> int:
        """Epochs for ``baseline`` and the same-model runs on ``device_type``."""
        if self.epochs is not None:
            return self.epochs
        return 1 if self.quick else (3 if device_type == "cpu" else 5)

    def resolved_recipe_epochs(self) -> int:
        """Length of the recipe's schedule."""
        if self.recipe_epochs is not None:
            return self.recipe_epochs
        return 1 if self.quick else RECIPE["epochs"]


# ---------------------------------------------------------------- pure helpers

def time_to_target(seconds: list[float], accs: list[float], target: float) -> tuple[float | None, int | None]:
    """Training seconds until the first epoch whose test accuracy reaches ``target``.

    Returns:
        ``(seconds, epoch)`` with ``epoch`` counted from 1, or ``(None, None)`` if never reached.

    Example:
        >>> time_to_target([2.0, 2.0, 2.0], [0.98, 0.991, 0.995], 0.99)
        (4.0, 2)
    """
    if len(seconds) != len(accs):
        raise ValueError(f"{len(seconds)} epoch times but {len(accs)} accuracies: "
                         "pass one of each per epoch.")
    total = 0.0
    for epoch, (sec, acc) in enumerate(zip(seconds, accs), start=1):
        total += sec
        if acc >= target:
            return total, epoch
    return None, None


def speedup(slow: float | None, fast: float | None) -> float | None:
    """How many times smaller ``fast`` is than ``slow``; None when either is missing or not positive.

    Example:
        >>> speedup(30.0, 3.0)
        10.0
    """
    if slow is None or fast is None or slow <= 0 or fast <= 0:
        return None
    return slow / fast


def compute_ratios(runs: dict[str, dict], target: float) -> dict:
    """The headline ratios of a benchmark from its per-run summaries.

    * ``same_model_per_epoch`` (and ``same_model_fp32_per_epoch``): baseline epoch seconds /
      same-model epoch seconds, epoch by epoch, and their median.
    * ``recipe_time_to_target``: baseline time-to-target / recipe time-to-target. If only the
      recipe reached the target, the baseline's total training time gives a lower bound
      (``kind="lower_bound"``).
    * ``recipe_images_per_s``: recipe median images/s / baseline median images/s.

    Example:
        >>> run = lambda s, a: {"epochs": [{"seconds": x, "test_acc": y, "images_per_s": 60000 / x}
        ...                                for x, y in zip(s, a)]}
        >>> r = compute_ratios({"baseline": run([60, 60], [0.98, 0.99]),
        ...                     "same_model": run([20, 30], [0.98, 0.99]),
        ...                     "recipe": run([3, 3], [0.985, 0.991])}, 0.99)
        >>> r["same_model_per_epoch"], r["recipe_time_to_target"]
        ({'per_epoch': [3.0, 2.0], 'median': 2.5}, {'value': 20.0, 'kind': 'exact'})
    """
    base, recipe = runs.get("baseline"), runs.get("recipe")
    ratios: dict = {"same_model_per_epoch": None, "same_model_fp32_per_epoch": None,
                    "recipe_time_to_target": None, "recipe_images_per_s": None}
    for name in ("same_model", "same_model_fp32"):
        if base and runs.get(name):
            ratios[f"{name}_per_epoch"] = _per_epoch_ratio(base, runs[name])
    if base and recipe:
        ratios["recipe_time_to_target"] = _time_to_target_ratio(base, recipe, target)
        ratios["recipe_images_per_s"] = speedup(_median(recipe, "images_per_s"),
                                                _median(base, "images_per_s"))
    return ratios


def _per_epoch_ratio(base: dict, other: dict) -> dict | None:
    per_epoch = [speedup(b["seconds"], o["seconds"]) for b, o in zip(base["epochs"], other["epochs"])]
    per_epoch = [r for r in per_epoch if r is not None]
    return {"per_epoch": per_epoch, "median": statistics.median(per_epoch)} if per_epoch else None


def _time_to_target_ratio(base: dict, recipe: dict, target: float) -> dict | None:
    recipe_s, _ = time_to_target(*_curves(recipe), target)
    base_s, _ = time_to_target(*_curves(base), target)
    if recipe_s is None:
        return None
    if base_s is not None:
        return {"value": speedup(base_s, recipe_s), "kind": "exact"}
    return {"value": speedup(sum(_curves(base)[0]), recipe_s), "kind": "lower_bound"}


def _curves(run: dict) -> tuple[list[float], list[float]]:
    return [e["seconds"] for e in run["epochs"]], [e["test_acc"] for e in run["epochs"]]


def _median(run: dict, key: str) -> float | None:
    values = [e[key] for e in run["epochs"]]
    return statistics.median(values) if values else None


def summarize_run(run: dict, target: float) -> dict:
    """Add ``time_to_target_s``, ``epochs_to_target``, medians and best accuracy to a run dict.

    Example:
        >>> summarize_run({"epochs": [{"seconds": 2.0, "test_acc": 0.995, "images_per_s": 3e4}]},
        ...               0.99)["time_to_target_s"]
        2.0
    """
    seconds, accs = _curves(run)
    tt_s, tt_epoch = time_to_target(seconds, accs, target)
    return {**run, "time_to_target_s": tt_s, "epochs_to_target": tt_epoch,
            "training_s": sum(seconds), "median_epoch_s": statistics.median(seconds) if seconds else None,
            "median_images_per_s": _median(run, "images_per_s"), "best_test_acc": max(accs, default=None)}


# ---------------------------------------------------------------- formatting

def _fmt_bytes(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.0f} MiB"


def _fmt_time_to_target(run: dict, target: float) -> str:
    if run["time_to_target_s"] is None:
        return f"not reached within {len(run['epochs'])} epoch{'s' * (len(run['epochs']) != 1)}"
    return f"{run['time_to_target_s']:.2f} s (epoch {run['epochs_to_target']})"


def _fmt_ratio_lines(ratios: dict, runs: dict, target: float) -> list[str]:
    lines, pct = [], f"{target:.1%}"
    for key, label in (("same_model_fp32_per_epoch", "same model, lrtools fp32 vs baseline"),
                       ("same_model_per_epoch", "same model, lrtools fast path vs baseline")):
        same = ratios.get(key)
        if same:
            lines.append(f"{label}, per epoch: {same['median']:.2f}x faster "
                         f"(median of {len(same['per_epoch'])} epoch(s): "
                         + ", ".join(f"{r:.2f}x" for r in same["per_epoch"]) + ")")
    ttt = ratios.get("recipe_time_to_target")
    if ttt and ttt["kind"] == "exact":
        lines.append(f"recipe vs baseline, time to {pct}: {ttt['value']:.1f}x sooner")
    elif ttt:
        lines.append(f"recipe vs baseline, time to {pct}: >= {ttt['value']:.1f}x sooner (lower bound: the "
                     f"baseline did not reach {pct} within {len(runs['baseline']['epochs'])} epoch(s))")
    elif "baseline" in runs and "recipe" in runs:
        lines.append(f"recipe vs baseline, time to {pct}: n/a (the recipe did not reach {pct})")
    if ratios.get("recipe_images_per_s"):
        lines.append(f"recipe vs baseline, images/s: {ratios['recipe_images_per_s']:.1f}x")
    return lines


def format_report(report: dict) -> str:
    """The report of :func:`run_benchmark` as a readable text table.

    Example:
        >>> print(format_report(run_benchmark(BenchConfig(quick=True))))  # doctest: +SKIP
    """
    env, target, runs = report["environment"], report["target_acc"], report["runs"]
    w = max([11] + [len(name) for name in runs])  # width of the run column
    lines = [f"lrtools bench · {env['device']} ({env['device_name']}) · torch {env['torch']} · "
             f"{report['data']['train_images']:,} train / {report['data']['test_images']:,} test images"
             + (" (quick mode)" if report["config"]["quick"] else ""), "",
             f"{'run':<{w}} {'model':<12} {'batch':>5} {'epoch':>5} {'seconds':>8} {'images/s':>10} "
             f"{'test acc':>8}"]
    for name, run in runs.items():
        for i, e in enumerate(run["epochs"]):
            head = f"{name:<{w}} {run['model']:<12} {run['batch_size']:>5}" if i == 0 else " " * (w + 19)
            lines.append(f"{head} {e['epoch']:>5} {e['seconds']:>8.2f} {e['images_per_s']:>10,.0f} "
                         f"{e['test_acc']:>8.2%}")
    lines += ["", f"{'run':<{w}} {'warm-up s':>9}  {'time to ' + format(target, '.1%'):<28} peak memory"]
    for name, run in runs.items():
        lines.append(f"{name:<{w}} {run['warmup_s']:>9.2f}  {_fmt_time_to_target(run, target):<28} "
                     f"{_fmt_bytes(run['peak_memory_bytes'])} ({run['peak_memory_kind']})")
    lines += [""] + [f"{name}: {run['setup']}" for name, run in runs.items()]
    ratio_lines = _fmt_ratio_lines(report["ratios"], runs, target)
    if report.get("watch_overhead"):
        ratio_lines.append(_fmt_watch_overhead(report["watch_overhead"]))
    return "\n".join(lines + ([""] + ratio_lines if ratio_lines else []))


# ---------------------------------------------------------------- environment

def device_info(device: torch.device) -> dict:
    """Device name, thread count and library versions, for the report.

    Example:
        >>> device_info(torch.device("cpu"))["device"]
        'cpu'
    """
    import torchvision

    cpu_model = _cpu_model() if device.type == "cpu" else None
    return {"device": device.type, "device_name": device_name(device, cpu_model), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "python": platform.python_version(),
            "cuda": torch.version.cuda if device.type == "cuda" else None}


def _cpu_model() -> str:
    try:
        match = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    except OSError:
        match = None
    return match.group(1).strip() if match else (platform.processor() or platform.machine())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    elif device.type == "cpu":
        try:  # Linux: "5" resets the process's peak RSS (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def peak_memory(device: torch.device) -> tuple[int | None, str]:
    """Peak memory since the last reset: CUDA max allocated, or the process's peak RSS on the CPU.

    Example:
        >>> peak_memory(torch.device("cpu"))[0] > 0
        True
    """
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device), "CUDA max allocated"
    if device.type != "cpu":
        return None, "not measured"
    try:
        hwm = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
        return int(hwm.group(1)) * 1024, "peak RSS, main process"
    except (OSError, AttributeError):
        import resource

        scale = 1 if sys.platform == "darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, "peak RSS since start"


# ---------------------------------------------------------------- the runs

def _autocast(device: torch.device, amp_dtype: torch.dtype | None):
    """``torch.autocast`` to ``amp_dtype`` on ``device`` (what ``fit(precision="bf16")`` does), or nothing."""
    if amp_dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype)


def _warm_up(forward: Callable, model: nn.Module, batch_sizes: list[int], device: torch.device,
             amp_dtype: torch.dtype | None = None, steps: int = WARMUP_STEPS) -> float:
    """Forward and backward passes on random batches, leaving the weights as they were; seconds."""
    state = copy.deepcopy(model.state_dict())
    _sync(device)
    start = time.perf_counter()
    for size in batch_sizes:
        x = torch.randn(size, 1, 28, 28, device=device)
        y = torch.randint(0, 10, (size,), device=device)
        for _ in range(steps):
            with _autocast(device, amp_dtype):
                loss = F.cross_entropy(forward(x), y)
            loss.backward()
    _sync(device)
    seconds = time.perf_counter() - start
    model.zero_grad(set_to_none=True)
    model.load_state_dict(state)
    return seconds


def _timed_epochs(train_one_epoch: Callable[[], None], eval_model: nn.Module, test_loader, *,
                  epochs: int, images: int, device: torch.device, stop_at: float | None = None,
                  on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
    """Time ``train_one_epoch`` (training only), then test; stop once test accuracy >= ``stop_at``."""
    rows = []
    for epoch in range(1, epochs + 1):
        _sync(device)
        start = time.perf_counter()
        train_one_epoch()
        _sync(device)
        seconds = time.perf_counter() - start
        _, acc = evaluate(eval_model, test_loader)  # the model is on the device already
        rows.append({"epoch": epoch, "seconds": seconds, "images_per_s": images / seconds, "test_acc": acc})
        if on_epoch is not None:
            on_epoch(rows[-1])
        if stop_at is not None and acc >= stop_at:
            break
    return rows


def _baseline_datasets(root: Path, quick: bool, seed: int):
    """torchvision MNIST with ToTensor + Normalize; in quick mode the subset lrtools uses."""
    import torchvision
    from torch.utils.data import Subset
    from torchvision import transforms

    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))])
    train = torchvision.datasets.MNIST(str(root), train=True, download=False, transform=tf)
    test = torchvision.datasets.MNIST(str(root), train=False, download=False, transform=tf)
    if quick:
        sub_train, _, sub_test = mnist_loaders(64, root=root, val_size=0, device="cpu", quick=True,
                                               seed=seed, download=False)
        train, test = Subset(train, sub_train.indices.tolist()), Subset(test, sub_test.indices.tolist())
    return train, test


def _baseline_epoch(model, optimizer, loader, device, log_interval: int = 10) -> None:
    """One epoch of the official example's ``train()`` (its print left out, its ``.item()`` kept)."""
    model.train()
    for batch_idx, (data, target) in enumerate(loader):
        data, target = data.to(device), target.to(device)
        optimizer.zero_grad()
        output = model(data)
        loss = F.cross_entropy(output, target)
        loss.backward()
        optimizer.step()
        if batch_idx % log_interval == 0:
            loss.item()


def _run_baseline(cfg: BenchConfig, device: torch.device, root: Path, epochs: int,
                  on_epoch: Callable[[dict], None] | None) -> dict:
    from torch.utils.data import DataLoader

    train_ds, test_ds = _baseline_datasets(root, cfg.quick, cfg.seed)
    kwargs = {"num_workers": 1, "pin_memory": device.type == "cuda"}
    train_loader = DataLoader(train_ds, batch_size=64, shuffle=True, **kwargs)
    test_loader = DataLoader(test_ds, batch_size=1000, **kwargs)  # the example's test batch
    model = ExamplesNet().to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    warmup = _warm_up(model, model, [64], device)

    def one_epoch() -> None:
        _baseline_epoch(model, optimizer, train_loader, device)
        scheduler.step()

    rows = _timed_epochs(one_epoch, model, test_loader, epochs=epochs, images=len(train_ds), device=device,
                         on_epoch=on_epoch)
    setup = (f"ExamplesNet, Adadelta(lr=1.0), StepLR(1, 0.7); torchvision MNIST, DataLoader(batch 64, "
             f"num_workers=1, pin_memory={kwargs['pin_memory']}); the official example's loop")
    return _run_dict("ExamplesNet", 64, len(train_ds), warmup, rows, setup)


def fast_path(device: torch.device) -> dict:
    """Options of the workbook's fast path on ``device``: bf16 where it is native, channels-last.

    Example:
        >>> fast_path(torch.device("cpu"))["channels_last"]
        True
    """
    return {"precision": "bf16" if bf16_supported(device) else "fp32", "channels_last": True}


def prepare_model(model: nn.Module, device: torch.device, options: dict) -> torch.dtype | None:
    """Move ``model`` to ``device`` (channels-last if ``options`` says so); its autocast dtype or None.

    Call it before building the optimizer; ``fit`` then gets ``precision=options["precision"]``.

    Example:
        >>> prepare_model(ExamplesNet(), torch.device("cpu"), EXACT_FP32) is None
        True
    """
    if options["channels_last"]:
        model.to(device, memory_format=torch.channels_last)
    else:
        model.to(device)
    return torch.bfloat16 if options["precision"] == "bf16" else None


def _describe_fit_options(options: dict) -> str:
    return (f"{'bf16 autocast' if options['precision'] == 'bf16' else 'fp32'}"
            f"{', channels_last' if options['channels_last'] else ''}")


def _run_same_model(cfg: BenchConfig, device: torch.device, root: Path, epochs: int,
                    on_epoch: Callable[[dict], None] | None, options: dict) -> dict:
    train_loader, _, test_loader = mnist_loaders(64, root=root, val_size=0, device=device, quick=cfg.quick,
                                                 seed=cfg.seed, download=False)
    model = ExamplesNet()
    amp_dtype = prepare_model(model, device, options)  # the device, layout and dtype fit will use
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    warmup = _warm_up(model, model, [64], device, amp_dtype)

    def one_epoch() -> None:
        fit(model, optimizer, train_loader, epochs=1, scheduler=scheduler, step_every="epoch",
            precision=options["precision"])

    rows = _timed_epochs(one_epoch, model, test_loader, epochs=epochs,
                         images=train_loader.num_samples, device=device, on_epoch=on_epoch)
    setup = ("ExamplesNet, Adadelta(lr=1.0), StepLR(1, 0.7); lrtools.mnist_loaders(batch 64) on the "
             f"device, lrtools.fit ({_describe_fit_options(options)})")
    return _run_dict("ExamplesNet", 64, train_loader.num_samples, warmup, rows, setup)


def _recipe_optimizer(params: list, device: torch.device) -> tuple[torch.optim.Optimizer, str]:
    kwargs = {"lr": RECIPE["max_lr"], "momentum": RECIPE["momentum"], "nesterov": True,
              "weight_decay": RECIPE["weight_decay"]}
    if device.type == "cuda":
        try:
            return torch.optim.SGD(params, fused=True, **kwargs), "fused"
        except (RuntimeError, TypeError, ValueError):
            pass
    return torch.optim.SGD(params, foreach=True, **kwargs), "foreach"


def _recipe_model(device: torch.device, use_compile: bool, batch_sizes: list[int], options: dict):
    """(eager model, the module to train, warm-up seconds, notes) for the recipe."""
    model = SmallCNN()
    amp = prepare_model(model, device, options)
    if device.type != "cuda" or not use_compile:
        return model, model, _warm_up(model, model, batch_sizes, device, amp), []
    try:
        compiled = torch.compile(model, dynamic=False)
        return model, compiled, _warm_up(compiled, model, batch_sizes, device, amp), ["torch.compile"]
    except Exception as exc:  # no Triton / compiler on this machine: train eagerly
        torch._dynamo.reset()
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''}"
        warmup = _warm_up(model, model, batch_sizes, device, amp)
        return model, model, warmup, [f"torch.compile failed ({reason}), eager"]


def _run_recipe(cfg: BenchConfig, device: torch.device, root: Path,
                on_epoch: Callable[[dict], None] | None, options: dict) -> dict:
    bs, epochs = RECIPE["batch_size"], cfg.resolved_recipe_epochs()
    train_loader, _, test_loader = mnist_loaders(bs, root=root, val_size=0, device=device, quick=cfg.quick,
                                                 seed=cfg.seed, download=False)
    n = train_loader.num_samples
    batch_sizes = [bs] + ([n % bs] if n % bs else [])
    cudnn_before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda" or cudnn_before
    try:
        model, train_module, warmup, notes = _recipe_model(device, cfg.compile, batch_sizes, options)
        optimizer, kind = _recipe_optimizer(list(model.parameters()), device)
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=RECIPE["max_lr"], epochs=epochs,
                                                        steps_per_epoch=len(train_loader))

        def one_epoch() -> None:
            fit(train_module, optimizer, train_loader, epochs=1, scheduler=scheduler, step_every="step",
                precision=options["precision"])

        rows = _timed_epochs(one_epoch, model, test_loader, epochs=epochs, images=n, device=device,
                             stop_at=cfg.target, on_epoch=on_epoch)
    finally:
        torch.backends.cudnn.benchmark = cudnn_before
    setup = (f"SmallCNN, SGD(nesterov, momentum {RECIPE['momentum']}, weight_decay {RECIPE['weight_decay']}, "
             f"{kind}), OneCycleLR(max_lr={RECIPE['max_lr']}, {epochs} epoch{'s' * (epochs != 1)}, "
             f"per step), batch {bs}; "
             f"lrtools.mnist_loaders, lrtools.fit ({_describe_fit_options(options)}); stops at the target"
             + "; cudnn.benchmark" * (device.type == "cuda") + "".join(f"; {x}" for x in notes))
    return _run_dict("SmallCNN", bs, n, warmup, rows, setup)


def _run_dict(model: str, batch_size: int, images: int, warmup: float, rows: list[dict], setup: str) -> dict:
    return {"model": model, "batch_size": batch_size, "train_images": images, "warmup_s": warmup,
            "setup": setup, "epochs": rows}


# ---------------------------------------------------------------- driver

# ---------------------------------------------------------------- lrtools.watch overhead

def _timed_steps(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds per call of ``step``, over ``steps`` calls."""
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def _monitor_cost(repeats: int, steps: int) -> float:
    """Seconds ``watch`` adds to one ``optimizer.step()``, on a one-element parameter (so that
    nothing but the hooks and the scheduler wrapper differs), median of ``repeats`` pairs."""
    param = torch.zeros(1, requires_grad=True)
    param.grad = torch.zeros(1)
    optimizer = torch.optim.SGD([param], lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=2 * repeats * steps + 2)

    def step() -> None:
        optimizer.step()
        scheduler.step()

    costs = []
    for _ in range(repeats):
        plain = _timed_steps(step, steps, torch.device("cpu"))
        with watch(optimizer, scheduler, warn=False):
            watched = _timed_steps(step, steps, torch.device("cpu"))
        costs.append(watched - plain)
    return max(statistics.median(costs), 0.0)


def measure_watch_overhead(device: torch.device, *, batch_size: int = 128, steps: int = 30,
                           repeats: int = 5) -> dict:
    """What ``lrtools.watch`` costs per optimizer step, absolute and as a share of a SmallCNN step.

    The monitor's cost does not depend on the model, so it is measured on a one-element
    parameter (many steps, little noise) and compared with the median time of a full
    SmallCNN training step (forward, backward, SGD, OneCycleLR) at ``batch_size``.

    Example:
        >>> measure_watch_overhead(torch.device("cpu"), steps=3, repeats=1)["share"] >= 0  # doctest: +SKIP
        True
    """
    torch.manual_seed(0)
    model = SmallCNN().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.05, total_steps=(repeats + 1) * steps + 1)
    x = torch.randn(batch_size, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()

    _timed_steps(step, steps, device)  # warm-up
    step_s = statistics.median(_timed_steps(step, steps, device) for _ in range(repeats))
    monitor_s = _monitor_cost(repeats, 2000)
    return {"batch_size": batch_size, "smallcnn_step_s": step_s, "monitor_s_per_step": monitor_s,
            "share": monitor_s / step_s}


def _fmt_watch_overhead(w: dict) -> str:
    return (f"lrtools.watch overhead: {w['monitor_s_per_step'] * 1e6:.1f} us per optimizer step = "
            f"{w['share']:.3%} of a SmallCNN step ({w['smallcnn_step_s'] * 1e3:.1f} ms at batch "
            f"{w['batch_size']})")


Runner = Callable[[BenchConfig, torch.device, Path, Callable[[dict], None]], dict]

#: One function per name in :data:`RUNS`: ``(cfg, device, root, on_epoch) -> run dict`` (see
#: :func:`_run_dict`). Extra runs -- e.g. a "watch overhead" figure -- go here; a ratio they
#: report goes in :func:`compute_ratios` and :func:`_fmt_ratio_lines`.
RUNNERS: dict[str, Runner] = {
    "baseline": lambda cfg, device, root, on_epoch: _run_baseline(
        cfg, device, root, cfg.resolved_epochs(device.type), on_epoch),
    "same_model_fp32": lambda cfg, device, root, on_epoch: _run_same_model(
        cfg, device, root, cfg.resolved_epochs(device.type), on_epoch, EXACT_FP32),
    "same_model": lambda cfg, device, root, on_epoch: _run_same_model(
        cfg, device, root, cfg.resolved_epochs(device.type), on_epoch, fast_path(device)),
    "recipe": lambda cfg, device, root, on_epoch: _run_recipe(cfg, device, root, on_epoch, fast_path(device)),
}

def _one_run(name: str, cfg: BenchConfig, device: torch.device, root: Path,
             progress: Callable[[str], None] | None) -> dict:
    """Run ``name`` with a fresh seed and its own peak-memory window."""
    def on_epoch(row: dict) -> None:
        if progress:
            progress(f"  {name} epoch {row['epoch']}: {row['seconds']:.2f} s, "
                     f"{row['images_per_s']:,.0f} images/s, test acc {row['test_acc']:.2%}")

    seed_everything(cfg.seed)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    _reset_peak_memory(device)
    run = RUNNERS[name](cfg, device, root, on_epoch)
    run["peak_memory_bytes"], run["peak_memory_kind"] = peak_memory(device)
    return summarize_run(run, cfg.target)


def run_benchmark(cfg: BenchConfig, *, progress: Callable[[str], None] | None = None) -> dict:
    """Run the configured benchmark runs and return the report (JSON-ready dict).

    Args:
        cfg: What to run.
        progress: Called with a short message before each run and after each epoch (the CLI
            prints them to stderr).

    Example:
        >>> report = run_benchmark(BenchConfig(quick=True, runs=("recipe",)))  # doctest: +SKIP
        >>> report["runs"]["recipe"]["epochs"][0]["test_acc"] > 0.5  # doctest: +SKIP
        True
    """
    unknown = [r for r in cfg.runs if r not in RUNS]
    if unknown or not cfg.runs:
        raise ValueError(f"runs must be a non-empty subset of {list(RUNS)}, got {list(cfg.runs)}.")
    if not 0 < cfg.target <= 1:
        raise ValueError(f"target is a test accuracy in (0, 1], got {cfg.target}.")
    device = torch.device(cfg.device) if cfg.device else (torch.device("cpu") if cfg.quick else pick_device())
    root = resolve_data_root(cfg.root)
    ensure_mnist(root, download=False)
    runs = {}
    for name in (r for r in RUNS if r in cfg.runs):
        if progress:
            progress(f"running {name} on {device.type} ...")
        runs[name] = _one_run(name, cfg, device, root, progress)
    first = next(iter(runs.values()))
    overhead = measure_watch_overhead(device) if cfg.watch_overhead else None
    return {"watch_overhead": overhead, "schema": SCHEMA,
            "created": datetime.datetime.now().isoformat(timespec="seconds"),
            "environment": device_info(device), "config": {**asdict(cfg), "runs": list(cfg.runs)},
            "target_acc": cfg.target, "recipe": dict(RECIPE),
            "data": {"train_images": first["train_images"],
                     "test_images": QUICK_SIZES[2] if cfg.quick else 10_000},
            "runs": runs, "ratios": compute_ratios(runs, cfg.target)}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="CPU smoke run: 4,096-image subset, one epoch each (well under a minute)")
    p.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: best available; cpu with --quick)")
    p.add_argument("--epochs", type=int,
                   help="epochs of baseline and the same-model runs (default 3 on CPU, 5 else)")
    p.add_argument("--recipe-epochs", type=int, help=f"recipe schedule length (default {RECIPE['epochs']})")
    p.add_argument("--target", type=float, default=0.99, help="test accuracy to time (default 0.99)")
    for name in RUNS:  # --skip-baseline, --skip-same-model-fp32, ...
        p.add_argument(f"--skip-{name.replace('_', '-')}", action="store_true", dest=f"skip_{name}",
                       help=f"leave out the {name} run")
    p.add_argument("--skip-watch-overhead", action="store_true",
                   help="leave out the lrtools.watch overhead measurement")
    p.add_argument("--no-compile", action="store_true", help="no torch.compile for the recipe on CUDA")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="build/bench.json", help="JSON file for the figures")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: run, print the table, write the JSON file."""
    args = _parse_args(argv)
    cfg = BenchConfig(device=args.device, quick=args.quick,
                      epochs=args.epochs, recipe_epochs=args.recipe_epochs, target=args.target,
                      runs=tuple(r for r in RUNS if not getattr(args, f"skip_{r}")),
                      compile=not args.no_compile, seed=args.seed,
                      watch_overhead=not args.skip_watch_overhead)
    report = run_benchmark(cfg, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    report["command"] = " ".join(["python -m benchmarks.bench"] + [shlex.quote(a) for a in
                                                                (argv if argv is not None else sys.argv[1:])])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_report(report))
    print(f"\nfigures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

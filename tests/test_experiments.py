"""run_many trains every config once per seed, reproducibly; summarize/format_table are exact."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import StepLR

from lrtools.experiments import format_table, run_many, summarize
from lrtools.training import evaluate, fit
from lrtools.utils import seed_everything

ROW_KEYS = ["name", "seed", "test_acc", "test_loss", "best_val_acc", "final_val_acc", "seconds", "epochs"]



def _config(lr, seeds_seen=None, init_seed=None, **extra):
    def make(seed):
        if seeds_seen is not None:
            seeds_seen.append(torch.initial_seed())
        if init_seed is not None:
            torch.manual_seed(init_seed)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        return dict(model=model, optimizer=optimizer, scheduler=StepLR(optimizer, 1, 0.5), **extra)
    return make


def test_rows_histories_and_seeding(small_loaders):
    train, val, test = small_loaders
    seeds_seen = []
    configs = {"slow": _config(0.01, seeds_seen), "fast": _config(0.05, seeds_seen)}
    rows, histories = run_many(configs, [0, 1], train_loader=train, val_loader=val, test_loader=test,
                               epochs=1)
    assert [(r["name"], r["seed"]) for r in rows] == [("slow", 0), ("slow", 1), ("fast", 0), ("fast", 1)]
    assert all(list(r) == ROW_KEYS for r in rows)
    assert list(histories) == [(r["name"], r["seed"]) for r in rows]
    assert seeds_seen == [0, 1, 0, 1]  # seed_everything(seed) ran before each config was built
    for r in rows:
        h = histories[r["name"], r["seed"]]
        assert r["epochs"] == h.epochs == 1 and r["seconds"] > 0
        assert r["best_val_acc"] == max(h.val_acc) and r["final_val_acc"] == h.val_acc[-1]
        assert 0.3 < r["test_acc"] <= 1 and r["test_loss"] > 0
    assert histories["fast", 0].step_loss != histories["fast", 1].step_loss
    assert train.seed == 0  # the loader's own seed is back

    seed_everything(1)  # the same run by hand: identical numbers
    config = configs["fast"](1)
    train.seed = 1
    try:
        history = fit(config["model"], config["optimizer"], train, epochs=1, scheduler=config["scheduler"],
                      val_loader=val)
    finally:
        train.seed = 0
    assert history.step_loss == histories["fast", 1].step_loss
    assert evaluate(config["model"], test) == (rows[3]["test_loss"], rows[3]["test_acc"])


def test_data_order_varies_with_the_seed_only_if_asked(small_loaders):
    train, val, test = small_loaders
    same_init = {"a": _config(0.05, init_seed=0)}  # weights do not depend on the seed
    kwargs = dict(train_loader=train, val_loader=None, test_loader=test, epochs=1)
    _, fixed = run_many(same_init, [0, 1], vary_data_order=False, **kwargs)
    assert fixed["a", 0].step_loss == fixed["a", 1].step_loss
    rows, varied = run_many(same_init, [0, 1], **kwargs)
    assert varied["a", 0].step_loss == fixed["a", 0].step_loss  # seed 0 is the loader's own seed
    assert varied["a", 1].step_loss != fixed["a", 1].step_loss
    assert all(math.isnan(r["best_val_acc"]) and math.isnan(r["final_val_acc"]) for r in rows)


def test_ctrl_c_keeps_the_finished_runs(small_loaders):
    train, val, test = small_loaders

    def interrupt(logits, y, reduction="mean"):
        raise KeyboardInterrupt

    configs = {"a": _config(0.05), "b": _config(0.05, loss_fn=interrupt), "c": _config(0.05)}
    rows, histories = run_many(configs, [0], train_loader=train, val_loader=val, test_loader=test, epochs=1)
    assert [r["name"] for r in rows] == ["a"] and list(histories) == [("a", 0)]


def test_config_keys_are_checked(small_loaders):
    train, val, test = small_loaders

    def bad(seed):
        model = nn.Linear(784, 10)
        return dict(model=model, lr=0.1, epochs=3)

    with pytest.raises(ValueError, match=re.escape(
            "Config 'bad' returned keys ['epochs', 'lr', 'model']; it needs 'model' and 'optimizer' and may "
            "add 'scheduler', 'step_every', 'plateau_metric', 'loss_fn'. Missing: ['optimizer'], unknown: "
            "['epochs', 'lr'].")):
        run_many({"bad": bad}, [0], train_loader=train, val_loader=val, test_loader=test, epochs=1)


def test_config_may_pass_fit_options(small_loaders):
    train, val, test = small_loaders
    calls = []

    def counting(logits, y, reduction="mean"):
        calls.append(1)
        return F.cross_entropy(logits, y, reduction=reduction)

    configs = {"a": _config(0.05, loss_fn=counting, step_every="step")}
    _, histories = run_many(configs, [0], train_loader=train, val_loader=None, test_loader=test, epochs=1)
    assert len(calls) == len(train) + len(test)  # training steps, then the test batches with loss_fn
    assert histories["a", 0].lrs[:3] == pytest.approx([0.05, 0.025, 0.0125])  # StepLR stepped per step


ROWS = [
    {"name": "b", "seed": 0, "test_acc": 0.8, "seconds": 4.0},
    {"name": "a", "seed": 0, "test_acc": 0.90, "seconds": 1.0},
    {"name": "a", "seed": 1, "test_acc": 0.94, "seconds": 2.0},
    {"name": "a", "seed": 2, "test_acc": 0.92, "seconds": 3.0},
]


def test_summarize_mean_sample_std_range():
    b, a = summarize(ROWS)
    assert a["name"] == "a" and a["runs"] == 3
    assert a["test_acc_mean"] == pytest.approx(0.92) and a["test_acc_std"] == pytest.approx(0.02)  # n - 1
    assert (a["test_acc_min"], a["test_acc_max"], a["seconds_mean"]) == (0.90, 0.94, 2.0)
    assert b["name"] == "b" and b["runs"] == 1 and math.isnan(b["test_acc_std"]) and b["test_acc_mean"] == 0.8
    assert summarize([]) == []


def test_format_table():
    assert format_table(summarize(ROWS)).splitlines() == [
        "name runs  test acc % (mean ± std)   min %   max %  seconds",
        "b       1           80.00 ±    nan   80.00   80.00      4.0",
        "a       3           92.00 ±   2.00   90.00   94.00      2.0",
    ]

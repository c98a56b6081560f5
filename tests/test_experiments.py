"""run_many trains every config once per seed, reproducibly; summarize/format_table are exact; the paired
and unpaired comparisons and the t distribution match closed forms."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import StepLR

from lrtools import TensorLoader
from lrtools.experiments import (
    format_table,
    paired_differences,
    run_many,
    summarize,
    t_quantile,
    t_two_sided_p,
    two_sample_ci,
)
from lrtools.training import evaluate, fit
from lrtools.utils import seed_everything

ROW_KEYS = ["name", "seed", "test_acc", "test_loss", "best_val_acc", "final_val_acc", "seconds", "epochs"]



@pytest.fixture
def tiny(small_loaders):
    """One batch of 64 to train on and 64 to test on: for tests about run_many's checks, not training."""
    train, _, test = small_loaders
    return (TensorLoader(train.images[:64], train.labels[:64], 64, shuffle=True),
            TensorLoader(test.images[:64], test.labels[:64], 64))


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
    rows, histories = run_many(configs, [0, 1], train_loader=train.with_seed, val_loader=val,
                               test_loader=test, epochs=1)
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
    assert train.seed == 0  # the caller's loader is untouched

    seed_everything(1)  # the same run by hand: identical numbers
    config = configs["fast"](1)
    history = fit(config["model"], config["optimizer"], train.with_seed(1), epochs=1,
                  scheduler=config["scheduler"], val_loader=val)
    assert history.step_loss == histories["fast", 1].step_loss
    assert evaluate(config["model"], test) == (rows[3]["test_loss"], rows[3]["test_acc"])


def test_data_order_varies_with_the_seed_only_if_asked(small_loaders):
    train, _, test = small_loaders
    same_init = {"a": _config(0.05, init_seed=0)}  # the weights do not depend on the seed, the order may
    kwargs = dict(val_loader=None, test_loader=test, epochs=1)
    _, fixed = run_many(same_init, [0, 1], train_loader=train, **kwargs)
    assert fixed["a", 0].step_loss == fixed["a", 1].step_loss  # a plain loader: one order for every seed
    rows, varied = run_many(same_init, [0, 1], train_loader=train.with_seed, **kwargs)
    assert varied["a", 0].step_loss == fixed["a", 0].step_loss  # seed 0 is the loader's own seed
    assert varied["a", 1].step_loss != fixed["a", 1].step_loss  # seed 1: its own order
    assert all(math.isnan(r["best_val_acc"]) and math.isnan(r["final_val_acc"]) for r in rows)
    assert train.seed == 0


def test_each_seed_gets_its_own_loader_from_a_function(tiny):
    train, test = tiny
    asked = []

    def loader_for(seed):
        asked.append(seed)
        return train.with_seed(seed)

    run_many({"a": _config(0.05), "b": _config(0.05)}, [3, 1], train_loader=loader_for, test_loader=test,
             epochs=1)
    assert asked == [3, 1, 3, 1] and train.seed == 0


def test_ctrl_c_keeps_the_finished_runs(tiny):
    train, test = tiny

    def interrupt(logits, y):
        raise KeyboardInterrupt

    configs = {"a": _config(0.05), "b": _config(0.05, loss_fn=interrupt), "c": _config(0.05)}
    rows, histories = run_many(configs, [0], train_loader=train, test_loader=test, epochs=1)
    assert [r["name"] for r in rows] == ["a"] and list(histories) == [("a", 0)]


FIT_KEYWORDS = "['loss_fn', 'on_epoch_end', 'plateau_metric', 'precision', 'scheduler', 'step_every']"


def test_config_keys_are_checked(tiny):
    train, test = tiny

    def bad(seed):
        model = nn.Linear(784, 10)
        return dict(model=model, lr=0.1, epochs=3)

    with pytest.raises(ValueError, match=re.escape(
            "Config 'bad' returned keys ['epochs', 'lr', 'model']; it needs 'model' and 'optimizer' and may "
            f"add fit() keywords {FIT_KEYWORDS}. Missing: ['optimizer'], unknown: ['epochs', 'lr'].")):
        run_many({"bad": bad}, [0], train_loader=train, test_loader=test, epochs=1)


@pytest.mark.parametrize("key", ["train_loader", "val_loader", "history", "device", "start_epoch"])
def test_config_may_not_set_what_run_many_sets_or_fit_lacks(tiny, key):
    train, test = tiny
    with pytest.raises(ValueError, match=re.escape(
            f"may add fit() keywords {FIT_KEYWORDS}. Missing: [], unknown: ['{key}'].")):
        run_many({"a": _config(0.05, **{key: None})}, [0], train_loader=train, test_loader=test, epochs=1)


def test_config_may_pass_fit_options(small_loaders):
    train, val, test = small_loaders
    calls, ends = [], []

    def counting(logits, y):
        calls.append(1)
        return F.cross_entropy(logits, y)

    configs = {"a": _config(0.05, loss_fn=counting, step_every="step",
                            on_epoch_end=lambda done, history: ends.append(done))}
    _, histories = run_many(configs, [0], train_loader=train, val_loader=None, test_loader=test, epochs=1)
    assert len(calls) == len(train) + len(test)  # training steps, then the test batches with loss_fn
    assert histories["a", 0].lrs[:3] == pytest.approx([0.05, 0.025, 0.0125])  # StepLR stepped per step
    assert ends == [1]


def test_config_may_choose_the_precision(small_loaders):
    train, _, test = small_loaders
    kwargs = dict(train_loader=train, test_loader=test, epochs=1)
    _, fp32 = run_many({"a": _config(0.05, init_seed=0, precision="fp32")}, [0], **kwargs)
    _, bf16 = run_many({"a": _config(0.05, init_seed=0, precision="bf16")}, [0], **kwargs)
    _, default = run_many({"a": _config(0.05, init_seed=0)}, [0], **kwargs)
    assert default["a", 0].step_loss == fp32["a", 0].step_loss != bf16["a", 0].step_loss
    assert bf16["a", 0].step_loss == pytest.approx(fp32["a", 0].step_loss, rel=0.05)
    with pytest.raises(ValueError, match="precision must be 'fp32'"):
        run_many({"a": _config(0.05, precision="fp16")}, [0], **kwargs)


def _sharing(key):
    """A config whose runs after seed 0 reuse seed 0's `key` object (built once, outside the function)."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    scheduler = StepLR(optimizer, 1)

    def make(seed):
        if key == "model":  # the usual slip: the model built in an earlier cell
            return dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05))
        fresh = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        if seed == 0:
            return dict(model=model, optimizer=optimizer, scheduler=scheduler)
        if key == "optimizer":
            return dict(model=fresh, optimizer=optimizer)
        return dict(model=fresh, optimizer=torch.optim.SGD(fresh.parameters(), lr=0.05), scheduler=scheduler)

    return make


@pytest.mark.parametrize("key", ["model", "optimizer", "scheduler"])
def test_an_object_shared_by_two_seeds_is_refused(tiny, key):
    train, test = tiny
    with pytest.raises(ValueError, match=re.escape(
            f"Config 'a' returned for seed 1 the same {key} object as 'a' seed 0: the runs would keep "
            f"training one model, and mean ± std would be wrong. Fix: build the {key} inside the config "
            "function")):
        run_many({"a": _sharing(key)}, [0, 1], train_loader=train, test_loader=test, epochs=1)


def test_a_model_shared_by_two_configs_is_refused(tiny):
    train, test = tiny
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    make = lambda seed: dict(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05))
    with pytest.raises(ValueError, match=re.escape("Config 'b' returned for seed 0 the same model object as "
                                                   "'a' seed 0")):
        run_many({"a": make, "b": make}, [0], train_loader=train, test_loader=test, epochs=1)


def test_objects_freed_by_finished_runs_are_not_mistaken_for_shared_ones(tiny, monkeypatch):
    """A finished run's model may be freed and its id() (its address) reused by a new object: that is not
    sharing. Simulated here by giving every object the same id()."""
    import lrtools.experiments

    train, test = tiny
    monkeypatch.setattr(lrtools.experiments, "id", lambda obj: 12345, raising=False)
    rows, _ = run_many({"a": _config(0.05), "b": _config(0.05)}, range(2), train_loader=train,
                       test_loader=test, epochs=1)
    assert len(rows) == 4


@pytest.mark.parametrize("seeds, error, message", [
    ([0, 1, 0], ValueError, "seeds [0, 1, 0] repeat a seed: a repeated run is not a new sample, so the "
                            "spread would look smaller than it is. Fix: use distinct seeds, e.g. range(3)."),
    ([], ValueError, "seeds must be a non-empty sequence of ints, got []."),
    (range(0), ValueError, "seeds must be a non-empty sequence of ints, got []."),
    ([0.5], ValueError, "seeds must be a non-empty sequence of ints, got [0.5]."),
    ([0, True], ValueError, "seeds must be a non-empty sequence of ints, got [0, True]."),
    ("012", TypeError, "seeds must be a sequence of ints such as range(3) or (0, 1, 2), got '012'."),
    (3, TypeError, "seeds must be a sequence of ints such as range(3) or (0, 1, 2), got 3."),
])
def test_bad_seeds_are_refused_before_any_training(tiny, seeds, error, message):
    train, test = tiny
    built = []
    config = _config(0.05)
    with pytest.raises(error, match=re.escape(message)):
        run_many({"a": lambda seed: built.append(seed) or config(seed)}, seeds, train_loader=train,
                 test_loader=test, epochs=1)
    assert built == []


def test_numpy_int_seeds_are_fine(tiny):
    import numpy as np

    train, test = tiny
    rows, histories = run_many({"a": _config(0.05)}, [np.int64(2)], train_loader=train, test_loader=test,
                               epochs=1)
    assert rows[0]["seed"] == 2 and type(rows[0]["seed"]) is int and list(histories) == [("a", 2)]


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


def test_summarize_and_format_table_take_another_metric():
    rows = [{"name": "a", "final_val_acc": v, "test_acc": 0.0, "seconds": 1.0} for v in (0.90, 0.94, 0.92)]
    (a,) = summarize(rows, "final_val_acc")
    assert a["final_val_acc_mean"] == pytest.approx(0.92) and a["final_val_acc_std"] == pytest.approx(0.02)
    assert "test_acc_mean" not in a
    assert format_table([a]).splitlines() == [
        "name runs  final val acc % (mean ± std)   min %   max %  seconds",
        "a       3                92.00 ±   2.00   90.00   94.00      1.0",
    ]


Q95_DF2 = math.sqrt(2 * 0.95**2 / (1 - 0.95**2))  # df = 2: P(|T| < t) = t / sqrt(2 + t^2) = 0.95


def test_t_distribution_closed_forms():
    for t in (0.0, 0.3, 1.0, 2.5, 7.0):
        assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 * math.atan(t) / math.pi, abs=1e-14)
        assert t_two_sided_p(-t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-14)
        u = t / math.sqrt(3)
        df3 = 1 - 2 / math.pi * (math.atan(u) + u / (1 + u * u))
        assert t_two_sided_p(t, 3) == pytest.approx(df3, abs=1e-14)
        c2 = 4 / (4 + t * t)  # df = 4: sin(theta) (1 + cos^2(theta) / 2)
        assert t_two_sided_p(t, 4) == pytest.approx(1 - math.sqrt(1 - c2) * (1 + c2 / 2), abs=1e-14)
    assert t_two_sided_p(math.inf, 3) == 0.0
    assert t_quantile(0.975, 2) == pytest.approx(Q95_DF2, rel=1e-12)
    assert round(t_quantile(0.975, 2), 3) == 4.303
    assert t_quantile(0.975, 1) == pytest.approx(math.tan(0.475 * math.pi), rel=1e-12)
    assert t_quantile(0.025, 2) == pytest.approx(-Q95_DF2, rel=1e-12) and t_quantile(0.5, 5) == 0.0
    table = {3: 3.182, 4: 2.776, 5: 2.571, 10: 2.228, 29: 2.045, 30: 2.042}  # printed t tables
    assert {df: round(t_quantile(0.975, df), 3) for df in table} == table
    for bad in (0, 2.5, -1):
        with pytest.raises(ValueError, match="df must be a positive int"):
            t_two_sided_p(1.0, bad)
    with pytest.raises(ValueError, match="strictly between 0 and 1"):
        t_quantile(1.0, 2)


def _rows(metric, table):
    return [{"name": name, "seed": seed, metric: value} for name, values in table.items()
            for seed, value in zip((0, 1, 2), values)]


def test_paired_differences_exact_and_not_unpaired():
    # a large seed effect (1, 2, 3) shared by both schedules, a steady +0.2..0.4 schedule effect
    rows = _rows("val", {"base": [1.0, 2.0, 3.0], "new": [1.2, 2.3, 3.4], "same": [1.0, 2.0, 3.0]})
    new, same = paired_differences(rows, "base", "val")
    assert (new["name"], new["n"], new["seeds"], new["diffs"]) == ("new", 3, [0, 1, 2], [0.2, 0.3, 0.4])
    half = Q95_DF2 * 0.1 / math.sqrt(3)  # t(0.975, 2) * sd / sqrt(n), sd of (0.2, 0.3, 0.4) = 0.1
    assert new["diff_mean"] == pytest.approx(0.3) and new["diff_sd"] == pytest.approx(0.1)
    assert (new["ci_low"], new["ci_high"]) == pytest.approx((0.3 - half, 0.3 + half), rel=1e-9)
    t = 0.3 / (0.1 / math.sqrt(3))
    assert new["t"] == pytest.approx(t) and new["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)
    assert new["ci_low"] > 0 and new["p"] < 0.05  # paired: the effect is resolved ...
    gap, low, high, p = two_sample_ci([1.2, 2.3, 3.4], [1.0, 2.0, 3.0])
    assert gap == pytest.approx(0.3) and low < 0 < high and p > 0.5  # ... unpaired it drowns in seed noise
    assert (same["diff_mean"], same["diff_sd"], same["p"]) == (0.0, 0.0, 1.0)


def test_paired_differences_match_seeds_not_positions():
    rows = _rows("val", {"base": [1.0, 2.0, 3.0], "new": [1.2, 2.3, 3.4]})
    shuffled = [rows[i] for i in (2, 0, 5, 1, 3, 4)]  # run order must not matter, the seed does
    (new,) = paired_differences(shuffled, "base", "val")
    assert new["seeds"] == [2, 0, 1] and sorted(new["diffs"]) == [0.2, 0.3, 0.4]
    assert new["diff_sd"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="No runs of the baseline 'x'"):
        paired_differences(rows, "x", "val")
    with pytest.raises(ValueError, match="two runs with seed 0"):
        paired_differences(rows + rows[:1], "base", "val")


def test_two_sample_ci_exact():
    gap, low, high, p = two_sample_ci([1.0, 2.0, 3.0], [0.0, 0.0, 3.0])  # variances 1 and 3, pooled 2
    se = math.sqrt(2 * (1 / 3 + 1 / 3))
    t4 = 2.7764451051977987  # t(0.975, 4)
    assert gap == pytest.approx(1.0) and (low, high) == pytest.approx((1 - t4 * se, 1 + t4 * se), rel=1e-9)
    c2 = 4 / (4 + (1 / se) ** 2)
    assert p == pytest.approx(1 - math.sqrt(1 - c2) * (1 + c2 / 2), rel=1e-9)
    with pytest.raises(ValueError, match="at least two values"):
        two_sample_ci([1.0], [1.0, 2.0])

"""The LR range test sweeps the LR it says, stops on divergence, restores everything; suggestions."""

from __future__ import annotations

import copy
import math
import random
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import StepLR

from lrtools.finder import (
    RangeTestResult,
    lr_range_test,
    suggest_min_div10,
    suggest_steepest,
    suggest_valley,
)


@pytest.fixture
def batches():
    """Three small random batches: a loader the test has to go over several times."""
    torch.manual_seed(1)
    return [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))) for _ in range(3)]


def _linear():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))


def _scripted(values, calls=None):
    """A loss_fn returning values[i] at its i-th call (the graph is kept, the gradient is 0)."""
    calls = [] if calls is None else calls

    def loss_fn(logits, y):
        calls.append(len(calls))
        return logits.sum() * 0 + values[len(calls) - 1]

    return loss_fn


def _ema(values, smooth):
    """Bias-corrected EMA in closed form: sum_j (1-b) b^(k-j) v_j / (1 - b^(k+1))."""
    return [sum((1 - smooth) * smooth ** (k - j) * values[j] for j in range(k + 1)) / (1 - smooth ** (k + 1))
            for k in range(len(values))]


def test_exp_sweep_is_geometric_and_applied_to_every_group(batches):
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10))
    opt = torch.optim.SGD([{"params": model[1].parameters()}, {"params": model[3].parameters(), "lr": 0.5}],
                          lr=0.1)
    applied = []

    def loss_fn(logits, y):
        applied.append([g["lr"] for g in opt.param_groups])
        return F.cross_entropy(logits, y)

    result = lr_range_test(model, opt, batches, start_lr=1e-5, end_lr=1.0, num_steps=11,
                           diverge_factor=math.inf, loss_fn=loss_fn)
    expected = [1e-5 * (1.0 / 1e-5) ** (i / 10) for i in range(11)]
    assert result.lrs == expected and len(applied) == 11  # 11 steps from 3 batches: 4 passes
    assert result.lrs[0] == 1e-5 and result.lrs[5] == pytest.approx(10 ** -2.5)
    assert result.lrs[-1] == pytest.approx(1.0, rel=1e-15)
    assert applied == [[lr, lr] for lr in expected]
    assert len(result.losses) == len(result.raw_losses) == 11 and not result.diverged
    assert result.mode == "exp"


def test_linear_sweep(batches):
    model = _linear()
    result = lr_range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), batches, start_lr=0.0,
                           end_lr=1.0, num_steps=5, mode="linear", loss_fn=_scripted([1.0] * 5))
    assert result.lrs == [0.0, 0.25, 0.5, 0.75, 1.0] and result.mode == "linear"


def test_smoothing_is_a_bias_corrected_ema(batches):
    model = _linear()
    result = lr_range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), batches, num_steps=3,
                           smooth=0.5, loss_fn=_scripted([4.0, 2.0, 1.0]))
    assert result.raw_losses == [4.0, 2.0, 1.0]
    assert result.losses == pytest.approx([4.0, 8 / 3, 12 / 7], rel=1e-12)


def test_stops_after_the_first_step_above_diverge_factor_times_best(batches):
    model = _linear()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    values = [2.0, 1.0, 1.0, 1.0, 4.0, 4.5] + [1.0] * 14
    result = lr_range_test(model, opt, batches, num_steps=20, smooth=0.0, loss_fn=_scripted(values))
    assert result.diverged and result.raw_losses == [2.0, 1.0, 1.0, 1.0, 4.0, 4.5]  # 4.0 is not > 4 * 1.0
    no_stop = lr_range_test(model, opt, batches, num_steps=20, smooth=0.0, diverge_factor=5,
                            loss_fn=_scripted(values))
    assert not no_stop.diverged and len(no_stop.lrs) == 20


def test_smoothing_delays_the_stop(batches):
    model = _linear()
    values = [1.0] * 5 + [5.0] * 25
    result = lr_range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), batches, num_steps=30,
                           smooth=0.9, loss_fn=_scripted(values))
    ema = _ema(values, 0.9)
    first_above = next(k for k, v in enumerate(ema) if v > 4 * min(ema[:k + 1]))
    assert first_above == 12  # vs step 5 without smoothing
    assert result.diverged and len(result.lrs) == 13
    assert result.losses == pytest.approx(ema[:13], rel=1e-12)


def test_non_finite_loss_stops_unrecorded(batches):
    model = _linear()
    result = lr_range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), batches, num_steps=10,
                           loss_fn=_scripted([1.0, 0.5, math.nan] + [1.0] * 7))
    assert result.diverged and result.raw_losses == [1.0, 0.5] and len(result.lrs) == 2


def _assert_states_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert torch.equal(a[key], b[key]), key
        elif isinstance(a[key], dict):
            _assert_states_equal(a[key], b[key])
        else:
            assert a[key] == b[key], key


def _trained_setup(batches):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    scheduler = StepLR(opt, 1, gamma=0.5)
    for x, y in batches[:2]:  # momentum buffers and BN statistics that must survive the test
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    scheduler.step()
    model.eval()
    return model, opt, scheduler


def test_restores_weights_buffers_mode_and_optimizer_bit_identically(batches):
    model, opt, scheduler = _trained_setup(batches)
    model_before, opt_before = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
    seen = []

    def loss_fn(logits, y):
        seen.append((model[1].weight.detach().clone(), model[2].running_mean.clone(), model.training))
        return F.cross_entropy(logits, y)

    lr_range_test(model, opt, batches, num_steps=10, loss_fn=loss_fn)
    weight, running_mean, training = seen[-1]
    assert training and not torch.equal(weight, model_before["1.weight"])  # it really trained
    assert not torch.equal(running_mean, model_before["2.running_mean"])
    _assert_states_equal(model.state_dict(), model_before)
    _assert_states_equal(opt.state_dict()["state"], opt_before["state"])
    assert opt.state_dict()["param_groups"] == opt_before["param_groups"]
    assert not model.training and opt.param_groups[0]["lr"] == 0.05 == scheduler.get_last_lr()[0]


def test_restores_after_an_error(batches):
    model, opt, _ = _trained_setup(batches)
    model_before, opt_before = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())

    def failing(logits, y, calls=[]):  # noqa: B006 - counts calls
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("boom")
        return F.cross_entropy(logits, y)

    with pytest.raises(RuntimeError, match="boom"):
        lr_range_test(model, opt, batches, num_steps=10, loss_fn=failing)
    _assert_states_equal(model.state_dict(), model_before)
    _assert_states_equal(opt.state_dict()["state"], opt_before["state"])
    assert opt.state_dict()["param_groups"] == opt_before["param_groups"] and not model.training


def test_on_mnist_the_curve_falls_then_explodes(quick_loaders):
    train, _, _ = quick_loaders

    def run():
        torch.manual_seed(0)
        model = _linear()
        return lr_range_test(model, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), train)

    result = run()
    assert result.diverged and 20 < len(result.lrs) < 100
    assert result.lrs == [1e-7 * 1e8 ** (i / 99) for i in range(len(result.lrs))]
    assert min(result.losses) < result.losses[0] - 0.5
    s = result.suggestions
    assert list(s) == ["steepest", "min_div10", "valley"]
    assert all(1e-4 < lr < 1 for lr in s.values()), s
    train.set_epoch(7)  # whatever ran before, the test starts from the loader's epoch-0 order
    assert run() == result


def test_suggestions_skip_the_warmup_and_the_explosion():
    lrs = [10.0 ** (i / 4 - 7) for i in range(30)]
    losses = [5.0, 1.0] + [2 - math.tanh((i - 14) / 3) for i in range(2, 28)] + [0.5, 9.0]
    result = RangeTestResult(lrs, losses, losses, diverged=True)
    # points 3..24 are used (30 // 10 = 3, 30 - 5 = 25): steepest at 14, lowest at 24, valley 3..24 -> 17
    assert result.suggestions == {"steepest": lrs[14], "min_div10": lrs[24] / 10, "valley": lrs[17]}
    assert suggest_min_div10(lrs, losses) == lrs[28] / 10 and suggest_steepest(lrs, losses) == lrs[0]


def test_plot_marks_suggestions_on_a_log_axis():
    result = RangeTestResult(lrs=[1e-3, 1e-2, 1e-1, 1.0], losses=[2.0, 1.9, 1.0, 4.0],
                             raw_losses=[2.1, 1.8, 1.1, 5.0])
    ax = result.plot()
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning rate"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["loss per step", "smoothed loss", "steepest: 0.01", "min_div10: 0.01", "valley: 0.01"]
    assert len(RangeTestResult([0.1, 0.2], [1.0, 0.5], [1.0, 0.5], mode="linear").plot(mark=False).lines) == 2
    assert RangeTestResult([0.1], [1.0], [1.0]).suggestions == dict.fromkeys(result.suggestions)


def test_plot_frames_the_smoothed_curve_not_the_explosion():
    losses = [2.0, 1.5, 1.0, 1.2, 30.0]  # the last point ended the test
    lrs = [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    result = RangeTestResult(lrs=lrs, losses=losses, raw_losses=losses, diverged=True)
    bottom, top = result.plot().get_ylim()
    assert top < 30.0  # the explosion runs off the top...
    assert bottom == pytest.approx(1.0 - 0.1) and top == pytest.approx(2.0 + 0.1)  # ...the rest fills it
    finished = RangeTestResult(lrs=result.lrs, losses=losses, raw_losses=losses, diverged=False)
    assert finished.plot().get_ylim()[1] == pytest.approx(30.0 + 0.1 * 29.0)  # no stop: every point shown
    flat = RangeTestResult(lrs=[1e-3, 1e-2], losses=[1.0, 1.0], raw_losses=[1.0, 1.0])
    assert flat.plot().get_ylim()[0] < 1.0 < flat.plot().get_ylim()[1]  # a flat curve: matplotlib's range


def test_the_range_test_restores_the_global_rng_state(batches):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(784, 10))  # dropout draws random numbers
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    seed_all = lambda: (torch.manual_seed(5), random.seed(5), np.random.seed(5))
    seed_all()
    expected = torch.rand(4), random.random(), np.random.rand()
    seed_all()
    lr_range_test(model, opt, batches, num_steps=6, diverge_factor=math.inf)
    after = torch.rand(4), random.random(), np.random.rand()
    assert torch.equal(after[0], expected[0]) and after[1:] == expected[1:]


def test_a_linear_sweep_from_zero_is_plotted_and_gets_suggestions(batches):
    model = _linear()
    result = lr_range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), batches, start_lr=0.0,
                           end_lr=0.5, num_steps=6, mode="linear", diverge_factor=math.inf)
    assert result.lrs[0] == 0.0 and len(result.lrs) == 6  # few points: none is left out of the suggestions
    s = result.suggestions
    assert list(s) == ["steepest", "min_div10", "valley"]
    assert all(isinstance(lr, float) and 0 < lr <= 0.5 for lr in s.values()), s
    ax = result.plot()
    assert ax.get_xscale() == "linear" and len(ax.lines) == 2 + 3  # the curves and the three marks


# --- suggestions on synthetic curves ----------------------------------------------------------------------

def test_steepest_finds_the_inflection_of_a_tanh_curve():
    lrs = 10 ** np.linspace(-4, 0, 41)
    losses = 1 - np.tanh(np.log10(lrs) + 2)  # steepest in log lr at lr = 1e-2
    assert suggest_steepest(lrs, losses) == pytest.approx(1e-2, rel=1e-12)
    assert suggest_steepest(lrs * 7, losses) == pytest.approx(7e-2, rel=1e-12)  # only log spacing matters


def test_steepest_uses_central_differences():
    # slopes per unit of ln(lr): [-0.1, -0.5, -0.475, +1.0, +2.1] / ln(10)
    assert suggest_steepest([1e-3, 1e-2, 1e-1, 1.0, 10.0], [2.0, 1.9, 1.0, 0.95, 3.0]) == 1e-2


def test_min_div10_takes_the_first_minimum():
    assert suggest_min_div10([1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.5, 1.0, 4.0]) == 0.1 / 10
    assert suggest_min_div10([1e-3, 1e-2, 1e-1, 1.0], [3.0, 1.0, 1.0, 2.0]) == 1e-2 / 10


def test_valley_skips_noise_and_goes_two_thirds_down():
    lrs = [10.0 ** (i - 8) for i in range(11)]
    losses = [3.0, 2.9, 3.1, 2.5, 2.6, 2.0, 1.5, 1.0, 0.8, 2.0, 9.0]
    # longest decreasing subsequence: 3.0 2.9 2.5 2.0 1.5 1.0 0.8 at indices 0..8; 0 + (2*8)//3 = 5
    assert suggest_valley(lrs, losses) == lrs[5]
    assert suggest_valley([1e-4, 1e-3, 1e-2, 1e-1, 1.0], [2.0, 1.8, 1.2, 1.0, 3.0]) == 1e-2
    assert suggest_valley([1.0, 2.0], [2.0, 3.0]) == 1.0  # no descent: a valley of one point


@pytest.mark.parametrize("suggest", [suggest_steepest, suggest_min_div10, suggest_valley])
@pytest.mark.parametrize("lrs, losses, message", [
    ([0.1, 0.2], [1.0], "lrs and losses must be flat sequences of the same length, got 2 and 1."),
    ([0.1], [1.0], "A suggestion needs at least 2 points on the curve, got 1."),
    ([0.1, 0.2], [1.0, math.nan], "losses contains NaN or inf: cut the curve before the loss diverged."),
])
def test_suggestions_reject_bad_curves(suggest, lrs, losses, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        suggest(lrs, losses)


def test_steepest_needs_positive_lrs():
    with pytest.raises(ValueError, match=re.escape(
            "lrs must all be positive: the slope is taken against log(lr).")):
        suggest_steepest([0.0, 0.1], [1.0, 0.5])


# --- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"start_lr": 1.0, "end_lr": 1.0},
     "start_lr must be smaller than end_lr, got start_lr=1.0 >= end_lr=1.0."),
    ({"start_lr": 0.0}, "mode='exp' needs start_lr > 0 (it multiplies the LR by a constant factor), got "
                        "start_lr=0.0. Fix: use e.g. start_lr=1e-7, or mode='linear'."),
    ({"start_lr": -0.1, "mode": "linear"}, "start_lr must be >= 0, got -0.1."),
    ({"num_steps": 1}, "num_steps must be an integer >= 2, got 1."),
    ({"mode": "log"}, "mode must be 'exp' or 'linear', got 'log'."),
    ({"smooth": 1.0}, "smooth must be in [0, 1) (0 = no smoothing), got 1.0."),
    ({"diverge_factor": 1.0}, "diverge_factor must be > 1 (math.inf never stops early), got 1.0."),
])
def test_bad_arguments(batches, kwargs, message):
    model = _linear()
    with pytest.raises(ValueError, match=re.escape(message)):
        lr_range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), batches, **kwargs)


def test_model_without_trainable_parameters(batches):
    model = _linear().requires_grad_(False)
    with pytest.raises(ValueError, match=re.escape(
            "The model has no trainable parameters (none has requires_grad=True), so its loss cannot change "
            "with the LR. Fix: unfreeze some layers first, e.g. "
            "`for p in model.parameters(): p.requires_grad_(True)`.")):
        lr_range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), batches)


def test_empty_loader():
    model = _linear()
    with pytest.raises(ValueError, match=re.escape(
            "train_loader is empty (0 batches), so there is nothing to train on. Fix: check the data set "
            "size, the batch size, and drop_last.")):
        lr_range_test(model, torch.optim.SGD(model.parameters(), lr=0.1), [])

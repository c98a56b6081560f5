"""Tests for benchmarks.bench: the ratio / time-to-target arithmetic, the report and its JSON, the
timing loops on a fake clock, and how the runs call lrtools' public API (no real timings)."""

from __future__ import annotations

import itertools
import json

import pytest
import torch

from benchmarks import bench
from benchmarks.bench import (
    BenchConfig,
    compute_ratios,
    format_report,
    speedup,
    summarize_run,
    time_to_target,
)


def _run(seconds, accs, *, images=60_000, model="ExamplesNet", batch_size=64):
    epochs = [{"epoch": i + 1, "seconds": s, "images_per_s": images / s, "test_acc": a}
              for i, (s, a) in enumerate(zip(seconds, accs))]
    run = {"model": model, "batch_size": batch_size, "train_images": images, "warmup_s": 0.25,
           "setup": f"{model} setup", "epochs": epochs, "peak_memory_bytes": 300 * 2**20,
           "peak_memory_kind": "peak RSS, main process"}
    return summarize_run(run, 0.99)


def _report(runs, *, quick=False):
    return {"environment": {"device": "cpu", "device_name": "Test CPU, 2 threads", "torch": "9.9"},
            "target_acc": 0.99, "runs": runs, "config": {"quick": quick},
            "data": {"train_images": 60_000, "test_images": 10_000}, "ratios": compute_ratios(runs, 0.99)}


def test_time_to_target_sums_training_seconds_through_the_first_epoch_that_reaches_it():
    assert time_to_target([3.0, 2.0, 4.0, 1.0], [0.97, 0.989, 0.99, 0.995], 0.99) == (9.0, 3)
    assert time_to_target([1.5], [0.999], 0.99) == (1.5, 1)


def test_time_to_target_is_none_when_never_reached():
    assert time_to_target([3.0, 2.0], [0.97, 0.9899], 0.99) == (None, None)
    assert time_to_target([], [], 0.99) == (None, None)


def test_time_to_target_rejects_mismatched_lengths():
    with pytest.raises(ValueError) as err:
        time_to_target([1.0, 2.0], [0.5], 0.99)
    assert str(err.value) == "2 epoch times but 1 accuracies: pass one of each per epoch."


@pytest.mark.parametrize(("slow", "fast", "expected"), [
    (30.0, 3.0, 10.0), (3.0, 30.0, 0.1), (None, 3.0, None), (3.0, None, None), (3.0, 0.0, None),
])
def test_speedup(slow, fast, expected):
    result = speedup(slow, fast)
    assert result == (pytest.approx(expected) if expected is not None else None)


def test_ratios_when_everything_reaches_the_target():
    runs = {"baseline": _run([60.0, 60.0, 60.0], [0.98, 0.989, 0.991]),
            "same_model_fp32": _run([40.0, 50.0, 48.0], [0.98, 0.989, 0.991]),
            "same_model": _run([20.0, 40.0, 30.0], [0.98, 0.989, 0.991]),
            "recipe": _run([3.0, 3.0], [0.985, 0.992], model="SmallCNN", batch_size=256)}
    ratios = compute_ratios(runs, 0.99)
    assert ratios["same_model_per_epoch"] == {"per_epoch": [3.0, 1.5, 2.0], "median": 2.0}
    assert ratios["same_model_fp32_per_epoch"] == {"per_epoch": [1.5, 1.2, 1.25], "median": 1.25}
    assert ratios["recipe_time_to_target"] == {"value": 30.0, "kind": "exact"}  # 180 s / 6 s
    assert ratios["recipe_images_per_s"] == pytest.approx(20.0)  # 20000 / 1000 img/s


def test_ratio_is_a_lower_bound_when_only_the_recipe_reaches_the_target():
    runs = {"baseline": _run([70.0, 50.0], [0.98, 0.985]),
            "recipe": _run([2.0, 2.0, 4.0], [0.97, 0.98, 0.991], model="SmallCNN")}
    ratios = compute_ratios(runs, 0.99)
    assert ratios["recipe_time_to_target"] == {"value": 15.0, "kind": "lower_bound"}  # 120 s / 8 s
    assert ratios["same_model_per_epoch"] is None and ratios["same_model_fp32_per_epoch"] is None


def test_no_time_ratio_when_the_recipe_misses_the_target():
    runs = {"baseline": _run([60.0], [0.995]), "recipe": _run([3.0], [0.98], model="SmallCNN")}
    assert compute_ratios(runs, 0.99)["recipe_time_to_target"] is None
    assert compute_ratios({"recipe": runs["recipe"]}, 0.99) == {
        "same_model_per_epoch": None, "same_model_fp32_per_epoch": None, "recipe_time_to_target": None,
        "recipe_images_per_s": None}


def test_summarize_run_adds_target_and_medians():
    run = _run([4.0, 2.0, 3.0], [0.98, 0.991, 0.993])
    assert (run["time_to_target_s"], run["epochs_to_target"]) == (6.0, 2)
    assert run["training_s"] == 9.0
    assert run["median_epoch_s"] == 3.0
    assert run["median_images_per_s"] == pytest.approx(20_000.0)
    assert run["best_test_acc"] == 0.993


def test_format_report_shows_every_epoch_the_target_and_the_ratios():
    runs = {"baseline": _run([70.0, 50.0], [0.98, 0.985]),
            "same_model_fp32": _run([56.0, 50.0], [0.98, 0.986]),
            "same_model": _run([35.0, 25.0], [0.98, 0.986]),
            "recipe": _run([2.0, 6.0], [0.97, 0.991], model="SmallCNN", batch_size=256)}
    text = format_report(_report(runs))
    lines = text.splitlines()
    assert lines[0] == ("lrtools bench · cpu (Test CPU, 2 threads) · torch 9.9 · "
                        "60,000 train / 10,000 test images")
    assert "baseline        ExamplesNet     64     1    70.00        857   98.00%" in lines  # widest: 15
    assert "same_model_fp32 ExamplesNet     64     1    56.00      1,071   98.00%" in lines
    assert "                                       2    50.00      1,200   98.60%" in lines
    assert "recipe          SmallCNN       256     1     2.00     30,000   97.00%" in lines
    assert "not reached within 2 epochs" in text
    assert "8.00 s (epoch 2)" in text
    assert ("same model, lrtools fast path vs baseline, per epoch: 2.00x faster "
            "(median of 2 epoch(s): 2.00x, 2.00x)") in lines
    assert ("same model, lrtools fp32 vs baseline, per epoch: 1.12x faster "
            "(median of 2 epoch(s): 1.25x, 1.00x)") in lines
    assert lines.index("same model, lrtools fp32 vs baseline, per epoch: 1.12x faster "
                       "(median of 2 epoch(s): 1.25x, 1.00x)") < lines.index(
        "same model, lrtools fast path vs baseline, per epoch: 2.00x faster "
        "(median of 2 epoch(s): 2.00x, 2.00x)")
    assert ("recipe vs baseline, time to 99.0%: >= 15.0x sooner (lower bound: the baseline did not reach "
            "99.0% within 2 epoch(s))") in lines
    assert "300 MiB (peak RSS, main process)" in text


def test_format_report_says_when_the_recipe_misses_the_target():
    runs = {"baseline": _run([60.0], [0.98]), "recipe": _run([3.0], [0.97], model="SmallCNN")}
    text = format_report(_report(runs, quick=True))
    assert text.splitlines()[0].endswith("(quick mode)")
    assert "recipe vs baseline, time to 99.0%: n/a (the recipe did not reach 99.0%)" in text
    assert "not reached within 1 epoch " in text
    assert "baseline    ExamplesNet     64     1    60.00      1,000   98.00%" in text  # narrowest: 11


@pytest.mark.parametrize(("cfg", "device_type", "expected"), [
    (BenchConfig(quick=True), "cpu", 1), (BenchConfig(), "cpu", 3), (BenchConfig(), "cuda", 5),
    (BenchConfig(epochs=7, quick=True), "cpu", 7),
])
def test_epoch_defaults(cfg, device_type, expected):
    assert cfg.resolved_epochs(device_type) == expected


def test_recipe_epochs_default_to_the_schedule_length(monkeypatch):
    assert BenchConfig().resolved_recipe_epochs() == 4  # the recipe's one-cycle length
    monkeypatch.setitem(bench.RECIPE, "epochs", 9)
    assert BenchConfig().resolved_recipe_epochs() == 9
    assert BenchConfig(quick=True).resolved_recipe_epochs() == 1
    assert BenchConfig(recipe_epochs=6).resolved_recipe_epochs() == 6


def test_run_benchmark_rejects_unknown_runs_and_bad_targets():
    with pytest.raises(ValueError) as err:
        bench.run_benchmark(BenchConfig(runs=("recipe", "fastest")))
    assert str(err.value) == ("runs must be a non-empty subset of ['baseline', 'same_model_fp32', "
                              "'same_model', 'recipe'], got ['recipe', 'fastest'].")
    with pytest.raises(ValueError) as err:
        bench.run_benchmark(BenchConfig(target=99.0))
    assert str(err.value) == "target is a test accuracy in (0, 1], got 99.0."


class FakeClock:
    """``time.perf_counter`` that only moves when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_warm_up_times_every_pass_and_leaves_the_weights_and_grads_untouched(monkeypatch):
    clock, sizes = FakeClock(), []
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))

    def forward(x):  # each pass "takes" 0.25 s on the fake clock
        sizes.append(len(x))
        clock.now += 0.25
        return model(x)

    before = [p.detach().clone() for p in model.parameters()]
    seconds = bench._warm_up(forward, model, [8, 3], torch.device("cpu"), steps=2)
    assert sizes == [8, 8, 3, 3]  # every batch size, ``steps`` times each
    assert seconds == pytest.approx(1.0)  # 4 passes x 0.25 s: the clock spans all of them
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert all(p.grad is None for p in model.parameters())


def test_timed_epochs_time_training_only_and_stop_at_the_target(monkeypatch):
    clock, accs, trained = FakeClock(), iter([0.95, 0.991, 0.999]), []
    monkeypatch.setattr(bench.time, "perf_counter", clock)

    def fake_evaluate(model, loader):  # testing costs 100 s on the clock, outside the timing
        clock.now += 100.0
        return 0.1, next(accs)

    monkeypatch.setattr(bench, "evaluate", fake_evaluate)
    durations = itertools.cycle([4.0, 2.0])

    def one_epoch():
        trained.append(True)
        clock.now += next(durations)

    rows = bench._timed_epochs(one_epoch, torch.nn.Identity(), None, epochs=5, images=6000,
                               device=torch.device("cpu"), stop_at=0.99)
    assert rows == [{"epoch": 1, "seconds": 4.0, "images_per_s": 1500.0, "test_acc": 0.95},
                    {"epoch": 2, "seconds": 2.0, "images_per_s": 3000.0, "test_acc": 0.991}]
    assert len(trained) == 2  # stopped once the target was reached, not after 5 epochs


def test_warm_up_under_bf16_autocast_runs_the_forward_pass_in_bf16():
    seen = []
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10))
    model.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    bench._warm_up(model, model, [4], torch.device("cpu"), torch.bfloat16, steps=1)
    bench._warm_up(model, model, [4], torch.device("cpu"), None, steps=1)
    assert seen == [torch.bfloat16, torch.float32]


def test_fast_path_uses_bf16_only_where_it_is_native(monkeypatch):
    monkeypatch.setattr(bench, "bf16_supported", lambda device: True)
    assert bench.fast_path(torch.device("cpu")) == {"precision": "bf16", "channels_last": True}
    monkeypatch.setattr(bench, "bf16_supported", lambda device: False)
    assert bench.fast_path(torch.device("cpu")) == {"precision": "fp32", "channels_last": True}


def _conv_weight(model):
    """The last convolution's weight (the first has one input channel: both layouts coincide there)."""
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d)][-1]


def test_prepare_model_sets_the_layout_itself_and_returns_the_autocast_dtype():
    exact = bench.ExamplesNet()
    assert bench.prepare_model(exact, torch.device("cpu"), bench.EXACT_FP32) is None
    assert _conv_weight(exact).is_contiguous()  # the exact run keeps the default layout
    fast = bench.ExamplesNet()
    options = {"precision": "bf16", "channels_last": True}
    assert bench.prepare_model(fast, torch.device("cpu"), options) is torch.bfloat16
    weight = _conv_weight(fast)
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


@pytest.mark.parametrize("options", [{"precision": "bf16", "channels_last": True}, bench.EXACT_FP32],
                         ids=["fast", "exact"])
def test_same_model_run_calls_fit_with_public_options_only(monkeypatch, mnist_root, options):
    calls = []

    def fake_fit(model, optimizer, train_loader, **kwargs):
        calls.append((_conv_weight(model).is_contiguous(memory_format=torch.channels_last), kwargs))

    monkeypatch.setattr(bench, "fit", fake_fit)
    monkeypatch.setattr(bench, "evaluate", lambda model, loader: (0.1, 0.5))
    run = bench._run_same_model(BenchConfig(quick=True), torch.device("cpu"), mnist_root, 2, None, options)
    assert [r["test_acc"] for r in run["epochs"]] == [0.5, 0.5]
    assert len(calls) == 2
    for channels_last, kwargs in calls:
        assert channels_last is options["channels_last"]  # the bench set the layout, not fit
        assert set(kwargs) == {"epochs", "scheduler", "step_every", "precision"}
        assert (kwargs["epochs"], kwargs["step_every"]) == (1, "epoch")
        assert kwargs["precision"] == options["precision"]
    assert run["setup"].endswith("lrtools.fit (bf16 autocast, channels_last)" if options["channels_last"]
                                 else "lrtools.fit (fp32)")


def test_examples_net_is_the_official_example_net():
    model = bench.ExamplesNet()
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in model.parameters()) == 1_199_882  # the example's parameter count


def test_the_bench_uses_only_public_lrtools_names():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(bench))
    imported = [(node.module, a.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                for a in node.names if (node.module or "").startswith("lrtools")]
    assert imported and [name for _, name in imported if name.startswith("_")] == []
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr.startswith("_")
                and isinstance(n.value, ast.Name) and n.value.id == "lrtools"]


def test_baseline_sees_the_same_images_as_lrtools_in_quick_mode(mnist_root):
    from lrtools import mnist_loaders

    train_ds, test_ds = bench._baseline_datasets(mnist_root, quick=True, seed=0)
    train_loader, _, test_loader = mnist_loaders(64, root=mnist_root, val_size=0, device="cpu", quick=True,
                                                 download=False)
    assert (len(train_ds), len(test_ds)) == (4096, 2048)
    for i in (0, 4095):
        x, y = train_ds[i]
        assert torch.allclose(x, train_loader.images[i], atol=1e-6) and y == train_loader.labels[i].item()
    x, y = test_ds[7]
    assert torch.allclose(x, test_loader.images[7], atol=1e-6) and y == test_loader.labels[7].item()


def test_cli_quick_recipe_writes_the_json_report(mnist_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LRTOOLS_DATA", str(mnist_root))
    out = tmp_path / "sub" / "bench.json"
    assert bench.main(["--quick", "--skip-baseline", "--skip-same-model-fp32", "--skip-same-model",
                       "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["schema"] == "lrtools.bench/1"
    assert report["command"] == ("python -m benchmarks.bench --quick --skip-baseline --skip-same-model-fp32 "
                                 f"--skip-same-model --out {out}")
    assert set(report) == {"schema", "created", "command", "environment", "config", "target_acc", "recipe",
                           "data", "runs", "ratios", "watch_overhead"}
    overhead = report["watch_overhead"]
    assert overhead["share"] == pytest.approx(overhead["monitor_s_per_step"] / overhead["smallcnn_step_s"])
    assert overhead["batch_size"] == 128 and overhead["smallcnn_step_s"] > 0
    assert report["environment"]["device"] == "cpu" and report["environment"]["torch"] == torch.__version__
    assert report["data"] == {"train_images": 4096, "test_images": 2048}
    assert list(report["runs"]) == ["recipe"]
    recipe = report["runs"]["recipe"]
    assert (recipe["model"], recipe["batch_size"], recipe["train_images"]) == ("SmallCNN", 256, 4096)
    assert [set(e) for e in recipe["epochs"]] == [{"epoch", "seconds", "images_per_s", "test_acc"}]
    assert recipe["time_to_target_s"] is None and recipe["epochs_to_target"] is None
    assert 0.3 < recipe["epochs"][0]["test_acc"] <= 1.0
    assert recipe["epochs"][0]["images_per_s"] == pytest.approx(4096 / recipe["epochs"][0]["seconds"])
    assert recipe["peak_memory_bytes"] > 0
    captured = capsys.readouterr()
    assert "not reached within 1 epoch" in captured.out and f"figures written to {out}" in captured.out
    assert (f"lrtools.watch overhead: {overhead['monitor_s_per_step'] * 1e6:.1f} us per optimizer step = "
            f"{overhead['share']:.3%} of a SmallCNN step") in captured.out
    # the printed table shows the very figures of the JSON file
    assert f"recipe      {recipe['warmup_s']:>9.2f}  not reached within 1 epoch " in captured.out
    assert (f"recipe      SmallCNN       256     1 {recipe['epochs'][0]['seconds']:>8.2f} "
            f"{recipe['epochs'][0]['images_per_s']:>10,.0f}") in captured.out
    assert captured.err.startswith("running recipe on cpu ...\n  recipe epoch 1: ")


def test_watch_overhead_is_the_monitor_cost_over_a_smallcnn_step(monkeypatch):
    monkeypatch.setattr(bench, "_monitor_cost", lambda repeats, steps: 0.002)
    times = iter([1.0, 0.010, 0.012, 0.011])  # warm-up, then three repeats: median 0.011
    monkeypatch.setattr(bench, "_timed_steps", lambda step, steps, device: next(times))
    result = bench.measure_watch_overhead(torch.device("cpu"), steps=2, repeats=3)
    assert result == {"batch_size": 128, "smallcnn_step_s": 0.011, "monitor_s_per_step": 0.002,
                      "share": pytest.approx(0.002 / 0.011)}
    assert bench._fmt_watch_overhead(result) == ("lrtools.watch overhead: 2000.0 us per optimizer step = "
                                                 "18.182% of a SmallCNN step (11.0 ms at batch 128)")


def test_the_monitor_cost_is_measured_with_and_without_watch(monkeypatch):
    calls = []
    real = bench._timed_steps

    def spy(step, steps, device):
        calls.append(steps)
        return real(step, 5, device)

    monkeypatch.setattr(bench, "_timed_steps", spy)
    assert bench._monitor_cost(repeats=2, steps=7) >= 0
    assert calls == [7, 7, 7, 7]  # plain and watched, twice

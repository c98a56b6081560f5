"""tools/gpu_check.py (`make gpu-check`): its LR-table comparison, and its CPU dry run end to end.

The CPU dry run runs notebooks 00, 01, 07 (08) in quick mode and the benchmark's quick recipe run
(about 90 s on a quiet 2-core machine); three small notebooks made here show that a wrong LR table
and a failing cell are reported.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tools import gpu_check

ROOT = Path(__file__).resolve().parents[1]
RULES = gpu_check.sanitizers()
BENCH_RECIPE_ONLY = "--skip-baseline --skip-same-model-fp32 --skip-same-model --skip-watch-overhead"
SCHEDULE = """import torch
from torch.optim.lr_scheduler import StepLR

opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
sched = StepLR(opt, step_size=2, gamma=0.1)
for epoch in range(4):
    print(f"epoch {epoch}: lr {opt.param_groups[0]['lr']:.0e}")
    opt.step()
    sched.step()
print("took 0.01 s on cpu")"""
LR_TABLE = ("epoch 0: lr 1e-01\nepoch 1: lr 1e-01\nepoch 2: lr 1e-02\nepoch 3: lr 1e-02\n"
            "took 9.9 s on cuda:0\n")


def _stream(text: str, name: str = "stdout"):
    return new_output("stream", name=name, text=text)


def _notebook(lr_table: str):
    """Setup cell (device line, output ignored), an LR table, and cells the comparison skips."""
    setup = new_code_cell("import lrtools\n\nprint(lrtools.describe_environment(lrtools.pick_device()))",
                          metadata={"tags": ["nbval-ignore-output"]}, outputs=[_stream("device: cuda\n")])
    ignored = new_code_cell("import random\n\nprint('lr', random.random())",
                            metadata={"tags": ["nbval-ignore-output"]}, outputs=[_stream("lr 0.5\n")])
    no_lr = new_code_cell("import random\n\nprint(random.random())", outputs=[_stream("0.5\n")])
    table = new_code_cell(SCHEDULE, outputs=[_stream(lr_table)])
    nb = new_notebook(cells=[new_markdown_cell("# toy"), setup, table, ignored, no_lr])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_sanitize_uses_the_nbval_rules():
    assert len(RULES) >= 4
    assert gpu_check.sanitize("took 3.25 s on cuda:0 at 0x7f3a", RULES) == "took T on DEVICE at 0xADDR"


def test_lr_tables_are_untagged_cells_that_mention_the_lr():
    nb = _notebook(LR_TABLE)
    assert [gpu_check.is_lr_table_cell(c) for c in nb.cells] == [False, False, True, False, False]
    sanitized = LR_TABLE.replace("9.9 s on cuda:0", "T on DEVICE")
    assert gpu_check.lr_tables(nb, RULES) == {1: {"stdout": sanitized}}
    assert not gpu_check.is_lr_table_cell(new_code_cell("import lrtools\nprint(lrtools.__version__)"))


def test_compare_lr_tables_reports_a_changed_table():
    same = gpu_check.compare_lr_tables(_notebook(LR_TABLE), _notebook(LR_TABLE.replace("9.9", "0.2")), RULES)
    assert same == {"cells_compared": 1, "equal": True, "mismatches": []}
    wrong = gpu_check.compare_lr_tables(_notebook(LR_TABLE.replace("2: lr 1e-02", "2: lr 1e-01")),
                                        _notebook(LR_TABLE), RULES)
    assert not wrong["equal"] and wrong["mismatches"][0]["code_cell"] == 1
    assert "-epoch 2: lr 1e-01" in wrong["mismatches"][0]["diff"]
    assert "+epoch 2: lr 1e-02" in wrong["mismatches"][0]["diff"]


def test_default_notebooks_are_00_01_07_and_08():
    names = [p.name[:3] for p in gpu_check.default_notebooks()]
    assert names[:3] == ["00_", "01_", "07_"] and names[3:] in ([], ["08_"])


def test_bench_command_fits_a_gpu_in_minutes():
    command = gpu_check.bench_command("cuda", False, Path("x.json"))
    assert command[1:] == ["-m", "benchmarks.bench", "--device", "cuda", "--epochs", "1",
                           "--recipe-epochs", "2", "--out", "x.json"]
    assert "--quick" in gpu_check.bench_command("cpu", True, Path("x.json"))


def _sha(paths):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _gpu_check(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("LRTOOLS_QUICK", "CUDA_VISIBLE_DEVICES")}
    return subprocess.run([sys.executable, "-m", "tools.gpu_check", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_cpu_dry_run(tmp_path, mnist_root):
    """`--device cpu --quick` on notebooks 00, 01, 07 (08): they run in quick mode on the CPU, print
    the stored LR tables, and stay untouched. The benchmark runs --quick, its recipe run only
    (all four runs add a minute; `make gpu-check GPU_CHECK_ARGS="--device cpu --quick"` runs them)."""
    notebooks = gpu_check.default_notebooks()
    before = _sha(notebooks)
    report_path = tmp_path / "gpu-check.json"
    start = time.monotonic()
    done = _gpu_check("--device", "cpu", "--quick", "--bench-args", BENCH_RECIPE_ONLY,
                      "--out", str(report_path))
    seconds = time.monotonic() - start
    report = json.loads(report_path.read_text())
    assert report["environment"]["device"] == "cpu" and report["environment"]["card"] is None
    assert report["environment"]["torch"] == __import__("torch").__version__
    bench = report["bench"]
    assert bench["status"] == "ok" and "--quick" in bench["command"], bench
    assert list(bench["figures"]["runs"]) == ["recipe"] and bench["figures"]["config"]["quick"] is True
    rows = report["notebooks"]
    assert [row["notebook"] for row in rows] == [p.name for p in notebooks]
    for row in rows:
        assert row["device"] == "cpu", row  # CUDA_VISIBLE_DEVICES="" reached the kernel
        assert row["lr_tables"]["cells_compared"] > 0, row
    assert _sha(notebooks) == before, "the dry run changed a notebook"
    assert done.returncode == 0 and report["status"] == "ok", done.stdout[-4000:]
    assert seconds < 150, f"the dry run took {seconds:.0f} s"


def test_dry_run_reports_a_wrong_lr_table_and_a_failing_cell(tmp_path):
    """Three notebooks made here: one right, one with a wrong stored LR table, one that fails."""
    good, bad, boom = tmp_path / "good.ipynb", tmp_path / "bad.ipynb", tmp_path / "boom.ipynb"
    nbformat.write(_notebook(LR_TABLE), good)
    nbformat.write(_notebook(LR_TABLE.replace("3: lr 1e-02", "3: lr 1e-03")), bad)
    failing = _notebook(LR_TABLE)
    # a message ending in a separator line, as torchrun's does when a worker fails
    failing.cells.insert(2, new_code_cell("raise RuntimeError('boom\\n=====')"))
    nbformat.write(failing, boom)
    before = _sha([good, bad, boom])
    report_path = tmp_path / "gpu-check.json"
    done = _gpu_check("--device", "cpu", "--quick", "--skip-bench", "--notebooks",
                      str(good), str(bad), str(boom), "--out", str(report_path), timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr  # bad and boom fail
    report = json.loads(report_path.read_text())
    rows = {row["notebook"]: row for row in report["notebooks"]}
    assert rows["good.ipynb"]["status"] == "ok" and rows["good.ipynb"]["device"] == "cpu"
    assert rows["good.ipynb"]["lr_tables"] == {"cells_compared": 1, "equal": True, "mismatches": []}
    assert rows["bad.ipynb"]["status"] == "lr tables differ"
    assert "-epoch 3: lr 1e-03" in rows["bad.ipynb"]["lr_tables"]["mismatches"][0]["diff"]
    assert rows["boom.ipynb"]["status"] == "error"
    assert rows["boom.ipynb"]["error"] == "RuntimeError: boom\n====="
    assert report["status"] == "failed" and "DIFFERENT" in done.stdout
    assert _sha([good, bad, boom]) == before, "the dry run changed a notebook"


def test_without_a_gpu_the_gpu_run_says_how_to_dry_run():
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, "-m", "tools.gpu_check", "--skip-bench", "--notebooks"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--device cpu --quick" in done.stderr

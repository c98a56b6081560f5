"""GPU check: the benchmark and notebooks 00, 01, 07 (and 08) on one device, in under 8 minutes.

    python -m tools.gpu_check                        # on a CUDA machine (make gpu-check)
    python -m tools.gpu_check --device cpu --quick   # the CPU dry run (tests/test_gpu_check.py)

1. ``python -m benchmarks.bench`` on the device: ``--epochs 1 --recipe-epochs 2`` (with
   ``--quick``: the benchmark's own ``--quick`` smoke run).
2. Each notebook executed top to bottom in a fresh kernel (nbclient, as .ci/execute_notebooks.py)
   in quick mode (``LRTOOLS_QUICK=1``), in memory: nothing is written back to notebooks/. The
   notebooks pick their device with ``lrtools.pick_device()``, so ``--device cpu`` hides the GPUs
   (``CUDA_VISIBLE_DEVICES=""``); the device the setup cell reports is checked.
3. The LR tables each notebook printed are compared with the stored ones. An *LR table* is the
   stream output (stdout and stderr) of a code cell that is not tagged ``nbval-ignore-output``
   and whose source mentions the LR (``lr`` or ``LR`` other than in ``lrtools``), compared after
   the regexes of .ci/nbval-sanitize.cfg, as nbval compares it. Those outputs do not depend on
   quick mode, so a GPU should reproduce them; where it cannot (a schedule that follows a
   measured loss), the report shows both texts.
4. Everything goes to ``build/gpu-check.json``: the card (or CPU), torch and CUDA versions, every
   figure of the benchmark, and per notebook its status, seconds, device and LR-table result.

Exit status 0 when the benchmark and every notebook ran and every LR table matched, else 1.
"""

from __future__ import annotations

import argparse
import configparser
import copy
import difflib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANITIZE = ROOT / ".ci" / "nbval-sanitize.cfg"
NOTEBOOK_PREFIXES = ("00", "01", "07", "08")
IGNORE_OUTPUT = "nbval-ignore-output"
MENTIONS_LR = re.compile(r"lr(?!tools)", re.IGNORECASE)
DEVICE_LINE = re.compile(r"^\s*device:\s*([a-z]+)", re.MULTILINE)


def default_notebooks() -> list[Path]:
    """notebooks/00_*, 01_*, 07_* and 08_* (those that exist), in that order."""
    folder = ROOT / "notebooks"
    return [path for prefix in NOTEBOOK_PREFIXES for path in sorted(folder.glob(f"{prefix}_*.ipynb"))]


def sanitizers(path: Path = SANITIZE) -> list[tuple[re.Pattern, str]]:
    """The (regex, replacement) pairs of an nbval sanitize file, in file order."""
    parser = configparser.RawConfigParser()
    parser.read(path, encoding="utf-8")
    return [(re.compile(parser[name]["regex"]), parser[name]["replace"]) for name in parser.sections()]


def sanitize(text: str, rules: list[tuple[re.Pattern, str]]) -> str:
    for regex, replacement in rules:
        text = regex.sub(replacement, text)
    return text


def is_lr_table_cell(cell) -> bool:
    return (cell.cell_type == "code" and IGNORE_OUTPUT not in cell.metadata.get("tags", [])
            and bool(MENTIONS_LR.search(cell.source)))


def streams(cell) -> dict[str, str]:
    """A cell's stream outputs, stdout and stderr each joined (as nbval coalesces them)."""
    out: dict[str, str] = {}
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            out[output["name"]] = out.get(output["name"], "") + output["text"]
    return out


def lr_tables(nb, rules) -> dict[int, dict[str, str]]:
    """{code cell number: sanitized streams} of the notebook's LR-table cells (with any output)."""
    tables, number = {}, -1
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        number += 1
        if is_lr_table_cell(cell):
            tables[number] = {name: sanitize(text, rules) for name, text in streams(cell).items()}
    return tables


def compare_lr_tables(stored, fresh, rules) -> dict:
    """Compare the LR tables of the stored and the freshly executed notebook."""
    before, after = lr_tables(stored, rules), lr_tables(fresh, rules)
    mismatches = []
    for number in sorted(set(before) | set(after)):
        old, new = before.get(number, {}), after.get(number, {})
        if old != new:
            diff = []
            for name in sorted(set(old) | set(new)):
                diff += difflib.unified_diff(old.get(name, "").splitlines(), new.get(name, "").splitlines(),
                                             f"stored {name}", f"fresh {name}", lineterm="", n=1)
            mismatches.append({"code_cell": number, "diff": "\n".join(diff)})
    compared = [n for n in sorted(before) if before[n] or after.get(n)]
    return {"cells_compared": len(compared), "equal": not mismatches, "mismatches": mismatches}


def run_notebook(path: Path, rules, timeout: int) -> dict:
    """Execute a copy of the notebook in memory and compare its LR tables with the stored ones."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    stored = nbformat.read(path, as_version=4)
    fresh = copy.deepcopy(stored)
    client = NotebookClient(fresh, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    row = {"notebook": path.name, "status": "ok", "error": None}
    try:
        client.execute()
    except CellExecutionError as error:
        # The exception's own name and text: the traceback's last line can be a separator of
        # the exception's text (e.g. torchrun's "=====" under a child's failure).
        row["status"], row["error"] = "error", f"{error.ename}: {error.evalue}"[:1500]
    except Exception as error:  # a dead kernel, a timeout: report it, go on with the next notebook
        row["status"], row["error"] = "error", f"{type(error).__name__}: {error}"[:500]
    row["seconds"] = round(time.perf_counter() - start, 1)
    setup = next((c for c in fresh.cells if c.cell_type == "code"), None)
    found = DEVICE_LINE.search(streams(setup).get("stdout", "")) if setup is not None else None
    row["device"] = found.group(1) if found else None
    row["lr_tables"] = compare_lr_tables(stored, fresh, rules)
    if row["status"] == "ok" and not row["lr_tables"]["equal"]:
        row["status"] = "lr tables differ"
    return row


def device_info(device: str) -> dict:
    import torch

    info = {"device": device, "torch": torch.__version__, "cuda": torch.version.cuda,
            "python": platform.python_version(), "host_cpu": platform.processor() or platform.machine()}
    if device == "cuda":
        info["card"] = torch.cuda.get_device_name(0)
        info["cards"] = torch.cuda.device_count()
        try:
            info["nvidia_smi"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            info["nvidia_smi"] = None
    else:
        info["card"] = None
    return info


def bench_command(device: str, quick: bool, out: Path, extra: Sequence[str] = ()) -> list[str]:
    sizes = ["--quick"] if quick else ["--epochs", "1", "--recipe-epochs", "2"]
    return [sys.executable, "-m", "benchmarks.bench", "--device", device, *sizes, *extra, "--out", str(out)]


def run_bench(device: str, quick: bool, timeout: int, extra: Sequence[str] = ()) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        command = bench_command(device, quick, out, extra)
        start = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
            rc, tail = done.returncode, (done.stdout + done.stderr)[-3000:]
        except subprocess.TimeoutExpired:
            rc, tail = None, f"timed out after {timeout} s"
        row = {"command": " ".join(command[1:]), "seconds": round(time.perf_counter() - start, 1),
               "status": "ok" if rc == 0 else "error", "returncode": rc}
        if rc == 0:
            row["figures"] = json.loads(out.read_text())
            print(done.stdout, flush=True)
        else:
            row["output_tail"] = tail
        return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="the benchmark's --quick smoke run")
    parser.add_argument("--notebooks", nargs="*", type=Path, help="default: notebooks 00, 01, 07 (and 08)")
    parser.add_argument("--skip-bench", action="store_true", help="notebooks only")
    parser.add_argument("--bench-args", default="", help='more benchmark options, e.g. "--skip-baseline"')
    parser.add_argument("--timeout", type=int, default=600, help="seconds per cell, and for the bench")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "gpu-check.json")
    args = parser.parse_args(argv)

    # Before torch is imported here, in the bench and in every kernel (they inherit the environment).
    os.environ.update(LRTOOLS_QUICK="1", TQDM_DISABLE="1")
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here; the CPU dry run is: python -m tools.gpu_check --device cpu --quick",
              file=sys.stderr)
        return 2

    start = time.perf_counter()
    report = {"environment": device_info(args.device), "quick": args.quick, "bench": None, "notebooks": []}
    if not args.skip_bench:
        print(f"bench on {args.device} ...", flush=True)
        report["bench"] = run_bench(args.device, args.quick, args.timeout, shlex.split(args.bench_args))
        print(f"bench: {report['bench']['status']} in {report['bench']['seconds']} s", flush=True)
    rules = sanitizers()
    for path in args.notebooks or default_notebooks():
        row = run_notebook(path, rules, args.timeout)
        if row["status"] == "ok" and row["device"] not in (None, args.device):
            row["status"] = f"ran on {row['device']}, not {args.device}"
        report["notebooks"].append(row)
        tables = row["lr_tables"]
        print(f"{row['notebook']:<36} {row['status']:<18} {row['seconds']:>6.1f} s  device {row['device']}  "
              f"LR tables: {tables['cells_compared']} cells, {'equal' if tables['equal'] else 'DIFFERENT'}",
              flush=True)
        for mismatch in tables["mismatches"]:
            print(mismatch["diff"], flush=True)
        if row["error"]:
            print(f"  {row['error']}", flush=True)
    report["seconds"] = round(time.perf_counter() - start, 1)
    ok = (args.skip_bench or report["bench"]["status"] == "ok") and all(
        row["status"] == "ok" for row in report["notebooks"])
    report["status"] = "ok" if ok else "failed"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    where = report["environment"]["card"] or "the CPU"
    print(f"gpu check {report['status']} in {report['seconds']} s on {where}; report in {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Execute notebooks top to bottom in a fresh kernel (restart-and-run-all), store the
outputs in place, and report wall time and the kernel's peak RSS for each.

    python .ci/execute_notebooks.py notebooks/*.ipynb            # full data, saves
    LRTOOLS_QUICK=1 python .ci/execute_notebooks.py --no-save ... # quick-mode timing
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from pathlib import Path

import nbformat
import psutil
from nbclient import NotebookClient


def _watch_rss(stop: threading.Event, peak: list[int]) -> None:
    me = psutil.Process()
    while not stop.wait(0.2):
        total = 0
        for child in me.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        peak[0] = max(peak[0], total)


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _drop_widget_state(nb) -> None:
    """Store a widget's plain-text form only: its view and state hold random model ids (a diff on
    every re-run) and render nowhere but a live kernel."""
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)


def run(path: Path, save: bool, timeout: int) -> dict:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # no per-cell timestamps: they would make every re-run a diff
        cell.metadata.pop("execution", None)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=_watch_rss, args=(stop, peak), daemon=True)
    watcher.start()
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        stop.set()
        watcher.join()
    seconds = time.perf_counter() - start
    if save:
        _drop_widget_state(nb)
        nbformat.write(nb, path)
    return {"notebook": path.name, "seconds": round(seconds, 1), "peak_rss_mb": round(peak[0] / 2**20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--no-save", action="store_true", help="execute only; keep stored outputs")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = parser.parse_args()
    mode = "quick" if os.environ.get("LRTOOLS_QUICK") == "1" else "full"
    rows = []
    for path in args.notebooks:
        rows.append(run(path, save=not args.no_save, timeout=args.timeout))
        print(f"{rows[-1]['notebook']:<40} {rows[-1]['seconds']:>7.1f} s  "
              f"peak kernel RSS {rows[-1]['peak_rss_mb']:>5} MB  ({mode} mode)", flush=True)
    report = Path("build") / f"notebooks-{mode}.json"
    report.parent.mkdir(exist_ok=True)
    report.write_text(json.dumps(rows, indent=1))
    print(f"total {sum(r['seconds'] for r in rows):.1f} s; report in {report}")


if __name__ == "__main__":
    main()

"""The nbval regression check must bite: a changed LR value in a stored output fails it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_steplr.ipynb"
NUMBER = re.compile(r"\b0\.\d*[1-9]")


def _is_compared(cell) -> bool:
    tags = cell.get("metadata", {}).get("tags", [])
    return (cell.cell_type == "code" and "nbval-ignore-output" not in tags
            and "nbval-skip" not in tags and "NBVAL_IGNORE_OUTPUT" not in cell.source)


def _first_compared_lr_output(nb) -> tuple[int, dict]:
    """The first compared cell that prints a learning rate, and that output."""
    for index, cell in enumerate(nb.cells):
        if not _is_compared(cell) or "lr" not in cell.source.lower():
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and NUMBER.search(output.get("text", "")):
                return index, output
    raise AssertionError(f"{NOTEBOOK.name} has no compared cell printing an LR")


def _mutate(number: str) -> str:
    last = int(number[-1])
    return number[:-1] + str(last + 1 if last < 9 else 1)


def test_nbval_fails_on_a_changed_lr_value(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    index, output = _first_compared_lr_output(nb)
    del nb.cells[index + 1:]  # run only what the compared cell needs
    nbformat.write(nb, tmp_path / "original.ipynb")
    output["text"] = NUMBER.sub(lambda m: _mutate(m.group()), output["text"], count=1)
    nbformat.write(nb, tmp_path / "mutated.ipynb")

    env = {**os.environ, "LRTOOLS_QUICK": "1", "TQDM_DISABLE": "1"}

    def nbval(name: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "--nbval", "--nbval-current-env", "-p", "no:cacheprovider",
             "--nbval-sanitize-with", str(ROOT / ".ci" / "nbval-sanitize.cfg"), "-q", name],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)

    original, mutated = nbval("original.ipynb"), nbval("mutated.ipynb")
    assert original.returncode == 0, original.stdout[-3000:]  # the unchanged copy passes...
    assert mutated.returncode == 1, mutated.stdout[-3000:]  # ...the changed one fails,
    assert "1 failed" in mutated.stdout and "Cell outputs differ" in mutated.stdout  # on that cell only


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_stored_executed_in_order_without_errors(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.execution_count for c in code]
    assert None not in counts, "store outputs with `make notebooks`"
    assert counts == list(range(1, len(code) + 1)), "restart and run all before saving"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]

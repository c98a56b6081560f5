"""Open 01_steplr in JupyterLab in headless Chromium, Run All in quick mode, and check that
no cell failed and the StepLR preview table is on screen (screenshot in build/)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "01_steplr.ipynb"
SCREENSHOT = ROOT / "build" / "jupyterlab-01_steplr.png"
RUN_TIMEOUT_MS = 600_000  # quick mode takes well under a minute; a loaded CI box is slower
#: The StepLR preview table of 01 (LR, STEP_SIZE, GAMMA = 0.05, 2, 0.1), as its preview cell
#: prints it: epoch, preview_schedule's LR, closed form lr0 * gamma ** (epoch // step_size).
STEPLR_TABLE = [["epoch", "preview", "formula"]] + [
    [str(epoch), *[f"{0.05 * 0.1 ** (epoch // 2):.1e}"] * 2] for epoch in range(8)]
TABLE_HEADER = re.compile(r"epoch\s+preview\s+formula")
PROMPTS = "() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]"


def run_all(page, lab) -> None:
    """Run → Run All Cells, then wait until every queued cell has run."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
    page.wait_for_function(f"{PROMPTS}.some(e => e.textContent.includes('*'))", timeout=30_000)
    page.wait_for_function(f"{PROMPTS}.every(e => !e.textContent.includes('*'))", timeout=RUN_TIMEOUT_MS)
    lab.wait_idle(page, timeout_ms=60_000)


def test_run_all_steplr_in_jupyterlab(jupyterlab, page, mnist_root):
    if not NOTEBOOK.exists():
        pytest.fail(f"{NOTEBOOK} is missing")
    before = hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest()
    nb = nbformat.read(NOTEBOOK, as_version=4)
    jupyterlab.open(page, NOTEBOOK)
    output = page.locator(".jp-OutputArea-output", has_text=TABLE_HEADER).first
    try:
        run_all(page, jupyterlab)
        if output.count():
            output.scroll_into_view_if_needed()
    finally:  # a screenshot also when something failed, to see why
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))

    # Errors render as stderr too; like nbval, any stderr fails (deliberate warnings are printed).
    stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert stderr.all_inner_texts() == [], "a cell wrote to stderr or raised"
    prompts = page.evaluate(f"{PROMPTS}.map(e => e.textContent.trim())")
    assert len(prompts) == sum(cell.cell_type == "code" for cell in nb.cells)
    assert [p for p in prompts if not re.fullmatch(r"\[\d+\]:", p)] == [], "some cells did not run"

    assert output.count() == 1 and output.is_visible(), "no StepLR preview table on screen"
    assert [line.split() for line in output.inner_text().splitlines() if line.strip()] == STEPLR_TABLE
    assert hashlib.sha256(NOTEBOOK.read_bytes()).hexdigest() == before

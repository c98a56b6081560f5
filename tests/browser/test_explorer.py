"""The schedule explorer of 04 in JupyterLab: run its cell, move the epochs slider one notch with the
keyboard, and check that the plot and the line under the controls changed (screenshots in build/)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "04_scheduler_tour.ipynb"
BEFORE = ROOT / "build" / "jupyterlab-04-explorer-before.png"
AFTER = ROOT / "build" / "jupyterlab-04-explorer-after.png"
PLOT_SRC = "() => document.querySelector('.lr-explorer .lr-explorer-plot')?.getAttribute('src')"


def test_moving_a_slider_redraws_the_explorer(jupyterlab, page):
    jupyterlab.open(page, NOTEBOOK)

    # The explorer's cell needs nothing but lrtools: run it alone (click into it, Shift+Enter).
    cell = page.locator(".jp-CodeCell", has_text="schedule_explorer(\"StepLR\"").first
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    panel = cell.locator(".lr-explorer")
    panel.wait_for(state="visible", timeout=120_000)
    page.wait_for_function(f"({PLOT_SRC})()?.startsWith('blob:')", timeout=60_000)
    plot, status = panel.locator(".lr-explorer-plot"), panel.locator(".widget-html").last
    panel.scroll_into_view_if_needed()
    BEFORE.parent.mkdir(exist_ok=True)
    before_png, before_src = plot.screenshot(path=str(BEFORE)), page.evaluate(PLOT_SRC)
    assert status.inner_text() == "first LR 0.1, smallest 0.00625, last 0.00625"

    epochs = panel.locator(".widget-slider", has=page.locator("label", has_text="epochs")).first
    assert epochs.locator(".widget-readout").inner_text() == "5"
    epochs.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowRight")  # one notch: 5 -> 6 epochs of 20 steps
    page.wait_for_function(f"({PLOT_SRC})() !== {before_src!r}", timeout=60_000)
    panel.screenshot(path=str(AFTER))

    assert epochs.locator(".widget-readout").inner_text() == "6"
    assert status.inner_text() == "first LR 0.1, smallest 0.00313, last 0.00313"  # a 5th halving: 0.1 / 32
    assert plot.screenshot() != before_png, "the plot did not change"
    stderr = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert stderr.all_inner_texts() == []

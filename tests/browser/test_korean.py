"""The Korean edition in JupyterLab: notebooks/ko/00 opens with its Korean title, objectives and
headings rendered in a Korean font (screenshot in build/jupyterlab-ko-00.png)."""

from __future__ import annotations

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "ko" / "00_setup_and_baseline.ipynb"
SCREENSHOT = ROOT / "build" / "jupyterlab-ko-00.png"


def test_the_korean_notebook_renders_in_jupyterlab(jupyterlab, page, korean_font):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    title = next(line[2:] for line in nb.cells[0].source.splitlines() if line.startswith("# "))
    headings = [line.lstrip("#").strip() for cell in nb.cells if cell.cell_type == "markdown"
                for line in cell.source.splitlines() if line.startswith("## ")]

    jupyterlab.open(page, NOTEBOOK, f"ko-{NOTEBOOK.name}")
    heading = page.locator(".jp-RenderedMarkdown h1", has_text=title.split(" · ")[1]).first
    heading.wait_for(state="visible", timeout=60_000)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))

    assert title.startswith("00 · ") and "학습률" in title
    rendered = page.locator(".jp-RenderedMarkdown h2").all_inner_texts()
    assert [text.rstrip("¶").strip() for text in rendered] == headings

"""The Korean edition in JupyterLab: notebooks/ko/00 opens with its Korean title, objectives and
headings rendered in a Korean font (screenshot in build/jupyterlab-ko-00.png)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "notebooks" / "ko" / "00_setup_and_baseline.ipynb"
SCREENSHOT = ROOT / "build" / "jupyterlab-ko-00.png"
KERNEL_READY = """() => document.querySelector('.jp-KernelName')?.textContent.startsWith('Python')
    && document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'"""


def test_the_korean_notebook_renders_in_jupyterlab(jupyterlab, page, chromium_path):
    fonts = subprocess.run(["fc-list", ":lang=ko", "family"], capture_output=True, text=True).stdout
    if not fonts.strip():  # chromium_path installs fonts-nanum when it can
        pytest.fail("no Korean font, so Hangul would render as boxes. "
                    "Fix: `sudo apt-get install -y fonts-nanum`")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    title = next(line[2:] for line in nb.cells[0].source.splitlines() if line.startswith("# "))
    headings = [line.lstrip("#").strip() for cell in nb.cells if cell.cell_type == "markdown"
                for line in cell.source.splitlines() if line.startswith("## ")]
    shutil.copy(NOTEBOOK, jupyterlab.root / f"ko-{NOTEBOOK.name}")

    # Its own workspace: the session-wide JupyterLab would otherwise reopen the other tests' notebooks.
    page.goto(f"{jupyterlab.url}/lab/workspaces/korean/tree/ko-{NOTEBOOK.name}?token={jupyterlab.token}")
    page.wait_for_function(KERNEL_READY, timeout=120_000)
    heading = page.locator(".jp-RenderedMarkdown h1", has_text=title.split(" · ")[1]).first
    heading.wait_for(state="visible", timeout=60_000)
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))

    assert title.startswith("00 · ") and "학습률" in title
    rendered = page.locator(".jp-RenderedMarkdown h2").all_inner_texts()
    assert [text.rstrip("¶").strip() for text in rendered] == headings

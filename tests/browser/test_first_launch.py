"""JupyterLab as a learner first meets it after `make lab` (and on Binder): it opens on
00_setup_and_baseline.ipynb, and no "Would you like to get notified about official Jupyter news?"
prompt shows, because the project ships settings overrides (binder/overrides.json, installed into
the venv by `make lab` and `make test-browser`). Fresh user settings; screenshot in build/."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST = "00_setup_and_baseline.ipynb"
SCREENSHOT = ROOT / "build" / "jupyterlab-first-launch.png"
OVERRIDES = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
#: How long after the notebook is ready a prompt would still have time to appear.
SETTLE_MS = 8_000


def test_overrides_are_installed_in_this_environment():
    assert OVERRIDES.is_file(), f"{OVERRIDES} missing: `make lab` or `make test-browser` installs it"
    assert json.loads(OVERRIDES.read_text()) == json.loads((ROOT / "binder" / "overrides.json").read_text())


def test_first_launch_opens_00_without_the_news_prompt(first_launch_lab, page):
    lab = first_launch_lab
    page.goto(f"{lab.url}/?token={lab.token}")  # where `make lab` points the browser
    try:
        lab.wait_idle(page)
        page.wait_for_timeout(SETTLE_MS)
    finally:
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT))

    assert page.url.split("?")[0].endswith(f"/lab/tree/{FIRST}")
    tab = page.locator("#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current")
    assert tab.count() == 1 and tab.inner_text().strip() == FIRST
    title = page.locator(".jp-Notebook .jp-MarkdownOutput h1").first
    assert title.is_visible() and "Setup and a constant-LR baseline" in title.inner_text()

    assert page.locator(".Toastify__toast").count() == 0, "a notification toast is showing"
    assert "official Jupyter news" not in page.locator("body").inner_text()

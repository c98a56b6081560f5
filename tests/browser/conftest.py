"""JupyterLab served from a temporary folder, and Debian's Chromium driven by Playwright.

The notebook under test is copied into the served folder, so nothing in notebooks/ is
ever saved over. JupyterLab gets its own settings and workspaces folders (no news
popups, every cell attached to the DOM, no restored layout from a previous session).
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
#: Settings overrides, keyed by "<plugin package>/<plugin>".
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}


#: True once the notebook's kernel exists and is idle (the indicator also reads "idle" before any
#: kernel exists: "No Kernel | Initializing").
KERNEL_READY = """() => document.querySelector('.jp-KernelName')?.textContent.startsWith('Python')
    && document.querySelector('.jp-Notebook-ExecutionIndicator')?.dataset.status === 'idle'"""


@dataclass
class Lab:
    """A running JupyterLab: its base URL, token and the folder it serves."""

    url: str
    token: str
    root: Path
    log: Path

    def wait_idle(self, page, timeout_ms: int = 120_000) -> None:
        """Wait until the open notebook's kernel is started and idle."""
        page.wait_for_function(KERNEL_READY, timeout=timeout_ms)

    def open(self, page, notebook: Path, name: str | None = None) -> None:
        """Open a copy of ``notebook`` (the original is never saved over) in a workspace of its own
        (a session-wide server would otherwise reopen the notebooks earlier tests opened), and wait
        for its kernel."""
        name = name or notebook.name
        shutil.copy(notebook, self.root / name)
        page.goto(f"{self.url}/lab/workspaces/{Path(name).stem}/tree/{name}?token={self.token}")
        self.wait_idle(page)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """Debian's Chromium; installed with apt-get when missing and running as root."""
    if not CHROMIUM.exists() and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=True, env=env, capture_output=True)
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found. Fix: `sudo apt-get install -y chromium` (Debian/Ubuntu).")
    return CHROMIUM


def _korean_font() -> bool:
    """Whether fontconfig knows a font with Hangul (else the Korean notebooks render as boxes)."""
    if not shutil.which("fc-list"):
        return False
    found = subprocess.run(["fc-list", ":lang=ko", "family"], capture_output=True, text=True)
    return bool(found.stdout.strip())


@pytest.fixture(scope="session")
def korean_font(chromium_path) -> None:
    """A font with Hangul for Chromium; Debian's fonts-nanum installed when missing and running as root."""
    if not _korean_font() and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "fonts-nanum"], check=True, env=env, capture_output=True)
    if not _korean_font():
        pytest.fail("no Korean font, so Hangul would render as boxes. "
                    "Fix: `sudo apt-get install -y fonts-nanum`")


def _write_settings(folder: Path) -> None:
    for plugin, values in LAB_SETTINGS.items():
        path = folder / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _wait_until_up(url: str, token: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"JupyterLab exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"JupyterLab did not answer within {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    """Stop the server's process group, then any kernel it started (kernels get their own)."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for child in children:
        if child.is_running():
            child.kill()


def _launch(root: Path, work: Path, arguments: list[str], cwd: Path) -> tuple[subprocess.Popen, Lab]:
    """`jupyter lab *arguments` on a free loopback port, with quick-mode env and every user folder
    (settings, workspaces, runtime, data, config) under ``work``; its output goes to a log."""
    from lrtools.data import resolve_data_root

    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "LRTOOLS_QUICK": "1", "TQDM_DISABLE": "1",
           "LRTOOLS_DATA": str(resolve_data_root().resolve()),
           "JUPYTERLAB_SETTINGS_DIR": str(work / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"),
           "JUPYTER_RUNTIME_DIR": str(work / "runtime"), "JUPYTER_DATA_DIR": str(work / "data"),
           "JUPYTER_CONFIG_DIR": str(work / "config")}
    command = [sys.executable, "-m", "jupyterlab", *arguments, "--no-browser", "--ServerApp.ip=127.0.0.1",
               f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}"]
    if os.geteuid() == 0:  # CI and containers run as root
        command.append("--allow-root")
    log = work / "jupyterlab.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    return process, Lab(f"http://127.0.0.1:{port}", token, root, log)


def start_lab(root: Path, work: Path) -> tuple[subprocess.Popen, Lab]:
    """Start `jupyter lab` on a free loopback port, serving ``root``, with quick-mode env."""
    _write_settings(work / "settings")
    return _launch(root, work, [f"--ServerApp.root_dir={root}"], cwd=root)


def make_lab_arguments() -> list[str]:
    """The arguments `make lab` passes to `jupyter lab` (read from `make -n lab`, which runs nothing)."""
    dry = subprocess.run(["make", "-n", "--no-print-directory", "lab"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    lines = [line for line in dry.splitlines() if "/bin/jupyter lab" in line]
    assert len(lines) == 1, f"no single `jupyter lab` line in `make -n lab`:\n{dry}"
    return shlex.split(lines[0])[2:]


def start_first_launch_lab(root: Path, work: Path) -> tuple[subprocess.Popen, Lab]:
    """JupyterLab as `make lab` starts it, serving ``root`` (a copy of notebooks/), on first launch:
    empty user settings, workspaces and config folders, so only what the project ships (the
    venv's settings overrides) changes JupyterLab's defaults."""
    for name in ("settings", "workspaces", "runtime", "data", "config"):
        (work / name).mkdir()
    arguments = [f"--ServerApp.root_dir={root}" if a.startswith("--ServerApp.root_dir=") else a
                 for a in make_lab_arguments()]
    return _launch(root, work, arguments, cwd=ROOT)


def _serve(process: subprocess.Popen, lab: Lab):
    """Yield ``lab`` once its server answers; stop the server afterwards (a fixture's body)."""
    try:
        _wait_until_up(lab.url, lab.token, process, lab.log, timeout=120)
        yield lab
    finally:
        _stop(process)


@pytest.fixture
def first_launch_lab(tmp_path) -> Lab:
    """JupyterLab as a learner meets it after `make lab`, serving a copy of notebooks/."""
    root = tmp_path / "notebooks"
    root.mkdir()
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        shutil.copy(notebook, root / notebook.name)
    yield from _serve(*start_first_launch_lab(root, tmp_path))


@pytest.fixture(scope="session")
def jupyterlab(tmp_path_factory) -> Lab:
    """A JupyterLab serving an empty temporary folder; tests copy notebooks into ``lab.root``."""
    work = tmp_path_factory.mktemp("jupyterlab")
    root = work / "root"
    root.mkdir()
    yield from _serve(*start_lab(root, work))


@pytest.fixture(scope="session")
def browser(chromium_path):
    """Headless Chromium from Debian (Playwright downloads no browser of its own)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(chromium_path), headless=True,
                                              args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        yield context.new_page()
    finally:
        context.close()

"""The book (`make book`, warnings as errors) in headless Chromium: served by `python -m
http.server` on 127.0.0.1, the landing page is the README with every notebook in the table of
contents, and a notebook page shows its stored plots and rendered math. Screenshots in build/.

Nothing is fetched from the internet: the page asks jsDelivr for MathJax, and those requests are
answered from the same npm packages, fetched once with `npm pack` into build/npm/; any other
request that leaves the local server is aborted.
"""

from __future__ import annotations

import mimetypes
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from pathlib import Path

import pytest

from tools import notebook_header as nh

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "build" / "book"
NPM_CACHE = ROOT / "build" / "npm"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PAGE = "notebooks/01_steplr"
SHOTS = {name: ROOT / "build" / f"book-{name}.png" for name in ("index", "01_steplr-plot", "01_steplr-math")}
#: https://cdn.jsdelivr.net/npm/<package>[@<version>]/<file>
JSDELIVR = re.compile(r"^https://cdn\.jsdelivr\.net/npm/((?:@[^/]+/)?[^/@]+)(?:@([^/]+))?/([^?#]*)")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def book() -> Path:
    """`make book` from scratch: Sphinx with -W --keep-going, so any warning fails here."""
    shutil.rmtree(BOOK, ignore_errors=True)
    done = subprocess.run(["make", "--no-print-directory", "book"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"make book failed:\n{(done.stdout + done.stderr)[-5000:]}"
    return BOOK


@pytest.fixture(scope="module")
def site(book):
    """The built book on http://127.0.0.1:<free port>."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port),
                               "--directory", str(book)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/index.html", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail("python -m http.server did not start")
                time.sleep(0.2)
        yield url
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


class NpmMirror:
    """Answers jsDelivr's npm URLs from `npm pack`ed packages; aborts every other outside request."""

    def __init__(self, local: str):
        self.local, self.served, self.blocked = local, [], []

    def package(self, name: str, version: str) -> Path:
        folder = NPM_CACHE / f"{name.replace('/', '+')}@{version}"
        if not (folder / "package").is_dir():
            if not shutil.which("npm"):
                pytest.fail("npm not found (it fetches MathJax for this test): apt-get install -y npm")
            folder.mkdir(parents=True, exist_ok=True)
            packed = subprocess.run(["npm", "pack", f"{name}@{version}", "--silent", "--pack-destination",
                                     str(folder)], capture_output=True, text=True, check=True)
            with tarfile.open(folder / packed.stdout.strip().splitlines()[-1]) as tar:
                tar.extractall(folder, filter="data")
        return folder / "package"

    def __call__(self, route) -> None:
        url = route.request.url
        if url.startswith(self.local):
            return route.continue_()
        match = JSDELIVR.match(url)
        if match:
            name, version, file = match.group(1), match.group(2) or "latest", match.group(3)
            path = self.package(name, version) / file
            if path.is_file():
                self.served.append(url)
                kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
                return route.fulfill(path=str(path), content_type=kind)
        self.blocked.append(url)
        return route.abort()


@pytest.fixture
def book_page(browser, site):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    mirror = NpmMirror(site)
    context.route("**/*", mirror)
    page = context.new_page()
    page.mirror = mirror
    try:
        yield page
    finally:
        context.close()


def test_landing_page_is_the_readme_with_every_notebook_in_the_toc(book_page, site):
    page = book_page
    page.goto(f"{site}/index.html")
    page.screenshot(path=str(SHOTS["index"]))
    assert page.locator("h1").first.inner_text().strip().startswith("lr-workbook")
    tagline = "How to adjust the learning rate while training a PyTorch model"
    assert page.get_by_text(tagline).first.is_visible()
    toc = page.locator("nav.bd-links a.reference.internal")
    links = toc.evaluate_all("links => links.map(a => a.getAttribute('href'))")
    hrefs = [href.split("#")[0] for href in links]
    assert [h for h in hrefs if h.startswith("notebooks/")] == [f"notebooks/{p.stem}.html" for p in NOTEBOOKS]
    assert "modules.html" in hrefs


def test_notebook_page_shows_plots_math_and_launch_links(book_page, site):
    page = book_page
    page.goto(f"{site}/{PAGE}.html")
    plot = page.locator(".cell_output img").first
    plot.scroll_into_view_if_needed()
    page.wait_for_function("img => img.complete", arg=plot.element_handle(), timeout=10_000)
    page.screenshot(path=str(SHOTS["01_steplr-plot"]))
    assert plot.is_visible(), "no plot on screen"
    assert plot.evaluate("img => img.naturalWidth") > 0, "the plot image did not load"

    page.wait_for_selector("mjx-container", state="attached", timeout=60_000)
    math = page.locator("article mjx-container").first
    math.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS["01_steplr-math"]))
    assert math.is_visible() and math.bounding_box()["width"] > 0, "no rendered math on screen"
    assert page.locator("article .math").count() == page.locator("article mjx-container").count(), \
        "some formulas were not typeset"
    assert page.mirror.served, "MathJax did not come through the npm mirror"

    relpath = f"{PAGE}.ipynb"  # the page's notebook, at the same path in the repository
    for url in (nh.colab_url(relpath), nh.binder_url(relpath)):
        assert page.locator(f'a[href="{url}"]').count() >= 1, f"no launch link {url}"


def test_module_map_lists_every_lrtools_module(book):
    html = (book / "modules.html").read_text(encoding="utf-8")
    modules = sorted(p.stem for p in (ROOT / "lrtools").glob("*.py"))
    for stem in modules:
        name = "lrtools" if stem == "__init__" else f"lrtools.{stem}"
        assert f'<span class="pre">{name}</span>' in html, f"{name} missing from the module map"

"""The Colab and Binder header of every notebook, built from the one repository address.

The address is ``[project.urls] Repository`` in pyproject.toml; nothing else names it. For each
notebook this tool

* puts a badge line (Open in Colab, Binder, both for that notebook's path) at the top of the
  first markdown cell, in place of an older badge line;
* makes the setup cell (the first code cell) start with :func:`colab_block`, the same text in
  every notebook between the marker comments :data:`BEGIN` and :data:`END`, in place of an older
  block. The block is plain Python (ruff and nbval read it like any code): outside Colab it
  imports ``sys`` and does nothing else; on Colab (``"google.colab" in sys.modules``) it
  pip-installs lrtools from the repository without touching Colab's own torch.

Running it again changes nothing (idempotent).

    python -m tools.notebook_header notebooks/*.ipynb          # rewrite what is out of date
    python -m tools.notebook_header --check notebooks/*.ipynb  # exit 1, naming what is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

__all__ = ["BEGIN", "BRANCH", "END", "repository_url", "github_slug", "colab_url", "binder_url",
           "install_requirement", "badge_line", "colab_block", "update_notebook", "main"]

ROOT = Path(__file__).resolve().parents[1]
#: The branch the Colab and Binder links open and the Colab block installs from.
BRANCH = "main"
BEGIN = "# --- Colab: install lrtools from the repository (does nothing elsewhere) ---"
END = "# --- end Colab ---"
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
BINDER_BADGE = "https://mybinder.org/badge_logo.svg"
#: A line of this tool's badges (or an older version of them) at the top of a markdown cell.
_BADGE_LINE = re.compile(r"^\s*\[!\[(?:Open In Colab|Binder)\]\(")
_GITHUB = re.compile(r"^https://github\.com/(?P<slug>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?)(?:\.git)?/?$")


def repository_url(pyproject: Path | str = ROOT / "pyproject.toml") -> str:
    """``[project.urls] Repository`` of pyproject.toml, e.g. ``https://github.com/OWNER/NAME``."""
    project = tomllib.loads(Path(pyproject).read_text(encoding="utf-8"))["project"]
    url = project.get("urls", {}).get("Repository")
    if not url or not _GITHUB.match(url):
        raise SystemExit(f"{pyproject}: [project.urls] Repository must be https://github.com/OWNER/NAME, "
                         f"not {url!r}")
    return url.rstrip("/").removesuffix(".git")


def github_slug(repo: str | None = None) -> str:
    """``OWNER/NAME`` of the repository."""
    return _GITHUB.match(repo or repository_url())["slug"]


def colab_url(relpath: str, repo: str | None = None) -> str:
    """Colab's address for the notebook at ``relpath`` (relative to the repository root)."""
    return f"https://colab.research.google.com/github/{github_slug(repo)}/blob/{BRANCH}/{relpath}"


def binder_url(relpath: str, repo: str | None = None) -> str:
    """mybinder.org's address that opens ``relpath`` in JupyterLab."""
    return f"https://mybinder.org/v2/gh/{github_slug(repo)}/{BRANCH}?urlpath=lab/tree/{relpath}"


def install_requirement(repo: str | None = None) -> str:
    """What pip installs on Colab: lrtools from the repository's :data:`BRANCH`."""
    return f"lrtools @ git+{repo or repository_url()}.git@{BRANCH}"


def badge_line(relpath: str, repo: str | None = None) -> str:
    """The markdown line of both badges for the notebook at ``relpath``."""
    return (f"[![Open In Colab]({COLAB_BADGE})]({colab_url(relpath, repo)}) "
            f"[![Binder]({BINDER_BADGE})]({binder_url(relpath, repo)})")


def colab_block(repo: str | None = None) -> str:
    """The first lines of every setup cell; identical in every notebook (no trailing newline)."""
    return "\n".join([
        BEGIN,
        "# On Colab, switch to a GPU before running this cell: Runtime → Change runtime type → GPU.",
        "import sys",
        "",
        'if "google.colab" in sys.modules:',
        "    import subprocess",
        "",
        "    # --no-deps: Colab already has torch, torchvision, numpy, matplotlib and tqdm. Without it",
        "    # pip could replace Colab's CUDA torch to meet lrtools' torch floor. MNIST then",
        "    # downloads into the runtime's ./data on first use.",
        '    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",',
        f'                    "{install_requirement(repo)}"], check=True)',
        END,
    ])


def _first(nb, cell_type: str):
    return next((cell for cell in nb.cells if cell.cell_type == cell_type), None)


def _with_badges(source: str, badges: str) -> str:
    lines = source.split("\n")
    replaced = False
    while lines and _BADGE_LINE.match(lines[0]):
        lines.pop(0)
        replaced = True
    while replaced and lines and not lines[0].strip():
        lines.pop(0)
    return "\n".join([badges, "", *lines]) if lines else badges


def _with_block(source: str, block: str) -> str:
    lines = source.split("\n")
    begin = next((i for i, line in enumerate(lines) if line.startswith("# --- Colab:")), None)
    if begin is not None:
        end = next((i for i in range(begin, len(lines)) if lines[i].strip() == END), None)
        if end is None:
            raise ValueError(f"a line {lines[begin]!r} without its {END!r}")
        del lines[begin:end + 1]
    rest = "\n".join(lines).strip("\n")
    return f"{block}\n\n{rest}" if rest else block


def update_notebook(nb, relpath: str, repo: str | None = None) -> bool:
    """Bring the header of ``nb`` (the notebook at ``relpath``) up to date; True if it changed."""
    markdown, code = _first(nb, "markdown"), _first(nb, "code")
    if markdown is None or code is None:
        raise ValueError("a notebook needs a markdown cell and a code cell (the setup cell)")
    changed = False
    for cell, new in ((markdown, _with_badges(markdown.source, badge_line(relpath, repo))),
                      (code, _with_block(code.source, colab_block(repo)))):
        if cell.source != new:
            cell.source = new
            changed = True
    return changed


def _relpath(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:  # a copy outside the repository: where it would be in notebooks/
        return f"notebooks/{path.name}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.notebook_header",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 and name the notebooks that are out of date")
    args = parser.parse_args(argv)
    repo = repository_url()
    stale = []
    for path in args.notebooks:
        nb = nbformat.read(path, as_version=4)
        try:
            changed = update_notebook(nb, _relpath(path), repo)
        except ValueError as error:
            print(f"{path}: {error}", file=sys.stderr)
            return 2
        if changed:
            stale.append(path)
            if not args.check:
                nbformat.write(nb, path)
    if args.check:
        for path in stale:
            print(f"{path}: header out of date; run python -m tools.notebook_header {path}")
        return 1 if stale else 0
    print(f"{len(stale)} of {len(args.notebooks)} notebook(s) updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())

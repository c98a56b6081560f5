"""Sphinx configuration of the lr-workbook book: `make book` -> build/book/index.html.

The pages are README.md (the landing page), the notebooks in order with their stored outputs
(MyST-NB, never executed) and a map of the lrtools modules made from their docstrings. The
notebooks are copied into book/notebooks/ (git-ignored) at every build, so book/ is the source
folder and every page's path is the notebook's path in the repository: sphinx-book-theme's
Colab and Binder launch buttons, built from pyproject.toml's one repository address, open the
right file.
"""

from __future__ import annotations

import ast
import re
import shutil
import sys
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

BOOK = Path(__file__).resolve().parent
ROOT = BOOK.parent
sys.path.insert(0, str(ROOT))

from tools import notebook_header  # noqa: E402  (the repository address and branch)

#: What the book shows from the repository, copied into book/ (git-ignored) at every build:
#: {folder in book/: (repository folder, file pattern)}. RESULTS.md is copied because the
#: README, the landing page, links to it.
COPIED = {"notebooks": ("notebooks", "*.ipynb"), "benchmarks": ("benchmarks", "RESULTS.md")}


def _sync(folder: str, pattern: str, target: Path) -> None:
    """Copy ROOT/folder/pattern to target/, modification times kept (incremental builds)."""
    sources = {p.name: p for p in sorted((ROOT / folder).glob(pattern))}
    target.mkdir(exist_ok=True)
    for stale in target.iterdir():
        if stale.name not in sources:
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    for name, source in sources.items():
        copy = target / name
        if not copy.exists() or copy.read_bytes() != source.read_bytes():
            shutil.copy2(source, copy)


for _target, (_folder, _pattern) in COPIED.items():
    _sync(_folder, _pattern, BOOK / _target)
REPOSITORY = notebook_header.repository_url(ROOT / "pyproject.toml")

project = "lr-workbook"
author = "the lr-workbook authors"
copyright = "lr-workbook authors, MIT licence"
extensions = ["myst_nb"]
root_doc = "index"
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]

# Stored outputs only: the book shows what `make notebooks` computed and runs nothing.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 3

html_theme = "sphinx_book_theme"
html_title = "lr-workbook"
html_theme_options = {
    "repository_url": REPOSITORY,
    "repository_branch": notebook_header.BRANCH,
    "path_to_docs": "",  # book/notebooks/X.ipynb is page notebooks/X, as in the repository
    "use_repository_button": True,
    "launch_buttons": {
        "colab_url": "https://colab.research.google.com",
        "binderhub_url": "https://mybinder.org",
        "notebook_interface": "jupyterlab",
    },
}


_ROLE = re.compile(r":[a-z:]+:`~?([^`]+)`")


def _summary(docstring: str | None) -> str:
    """The docstring's first paragraph on one line, Sphinx roles turned into code spans."""
    first = (docstring or "").strip().split("\n\n")[0]
    return _ROLE.sub(r"`\1`", " ".join(first.split())).replace("``", "`")


class LrtoolsModules(SphinxDirective):
    """``{lrtools-modules}``: a table of lrtools' modules and the first paragraph of each docstring."""

    def run(self):
        rows = []
        for path in sorted((ROOT / "lrtools").glob("*.py")):
            self.env.note_dependency(str(path))
            name = "lrtools" if path.stem == "__init__" else f"lrtools.{path.stem}"
            rows.append((name, _summary(ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))))))
        table = nodes.table(classes=["lrtools-modules"])
        group = nodes.tgroup(cols=2)
        table += group
        group += [nodes.colspec(colwidth=1), nodes.colspec(colwidth=4)]
        head, body = nodes.thead(), nodes.tbody()
        group += [head, body]
        head += self._row(nodes.Text("module"), nodes.Text("what it holds"))
        for name, summary in rows:
            text, _ = self.state.inline_text(summary, self.lineno)
            body += self._row(nodes.literal(text=name), *text)
        return [table]

    @staticmethod
    def _row(first, *rest):
        row = nodes.row()
        for content in ([first], list(rest)):
            entry = nodes.entry()
            entry += nodes.paragraph("", "", *content)
            row += entry
        return row


def setup(app):
    app.add_directive("lrtools-modules", LrtoolsModules)
    return {"parallel_read_safe": True}

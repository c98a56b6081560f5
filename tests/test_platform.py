"""Colab and Binder: one repository address (pyproject.toml) behind every link, the same Colab
block in every setup cell, and what that block runs on Colab and elsewhere.

The notebook checks fail until `python -m tools.notebook_header notebooks/*.ipynb` has been run
on the notebooks (the tool's --check names the ones that are out of date).
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest

from tools import notebook_header as nh

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REPO = nh.repository_url()
SLUG = nh.github_slug(REPO)
LINK = re.compile(r"https://(?:mybinder\.org/v2/gh|colab\.research\.google\.com/github)/([^/\s)]+/[^/\s)]+)/")


def _read(path: Path):
    return nbformat.read(path, as_version=4)


def _first(nb, cell_type: str):
    return next(cell for cell in nb.cells if cell.cell_type == cell_type)


def _block_of(source: str) -> str:
    lines = source.split("\n")
    begin = lines.index(nh.BEGIN)
    return "\n".join(lines[begin:lines.index(nh.END, begin) + 1])


def test_the_repository_address_is_a_github_repository():
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", REPO)
    assert nh.install_requirement() == f"lrtools @ git+{REPO}.git@{nh.BRANCH}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_badges_use_the_one_address(path):
    relpath = f"notebooks/{path.name}"
    first_line = _first(_read(path), "markdown").source.split("\n")[0]
    assert first_line == nh.badge_line(relpath), (
        f"run: python -m tools.notebook_header notebooks/{path.name}")
    assert set(LINK.findall(first_line)) == {SLUG}
    assert nh.colab_url(relpath) in first_line and nh.binder_url(relpath) in first_line


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_setup_cell_starts_with_the_colab_block(path):
    setup = _first(_read(path), "code")
    assert setup.source.startswith(nh.colab_block() + "\n"), (
        f"run: python -m tools.notebook_header notebooks/{path.name}")
    assert f'"{nh.install_requirement(REPO)}"' in setup.source


def test_the_colab_block_is_byte_identical_in_every_notebook():
    blocks = {path.name: _block_of(_first(_read(path), "code").source) for path in NOTEBOOKS
              if nh.BEGIN in _first(_read(path), "code").source}
    assert sorted(blocks) == [p.name for p in NOTEBOOKS], "some notebooks have no Colab block"
    assert len(set(blocks.values())) == 1, "the Colab blocks differ"


def test_notebook_headers_are_up_to_date():
    done = subprocess.run([sys.executable, "-m", "tools.notebook_header", "--check", *map(str, NOTEBOOKS)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_readme_links_use_the_one_address_and_open_every_notebook_in_colab():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert set(LINK.findall(readme)) == {SLUG}, "README names another repository"
    assert "OWNER/" not in readme
    for path in NOTEBOOKS:
        row = next((line for line in readme.splitlines() if line.startswith(f"| `{path.name}`")), "")
        assert nh.colab_url(f"notebooks/{path.name}") in row, f"README table: no Colab link for {path.name}"
    assert nh.binder_url("notebooks/00_setup_and_baseline.ipynb") in readme


# --- the tool itself, on a notebook made here ------------------------------------------------

def _toy_notebook():
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 09 · A title\n\nText."),
                nbformat.v4.new_code_cell("%matplotlib inline\nimport lrtools")]
    return nb


def test_tool_adds_the_header_and_is_idempotent():
    nb = _toy_notebook()
    assert nh.update_notebook(nb, "notebooks/09_x.ipynb")
    assert nb.cells[0].source == nh.badge_line("notebooks/09_x.ipynb") + "\n\n# 09 · A title\n\nText."
    assert nb.cells[1].source == nh.colab_block() + "\n\n%matplotlib inline\nimport lrtools"
    again = copy.deepcopy(nb)
    assert not nh.update_notebook(again, "notebooks/09_x.ipynb") and again == nb


def test_tool_replaces_an_older_badge_line_and_block():
    nb = _toy_notebook()
    nh.update_notebook(nb, "notebooks/09_x.ipynb", repo="https://github.com/old/name")
    assert "old/name" in nb.cells[0].source and "old/name" in nb.cells[1].source
    assert nh.update_notebook(nb, "notebooks/09_x.ipynb")
    fresh = _toy_notebook()
    nh.update_notebook(fresh, "notebooks/09_x.ipynb")
    assert nb.cells[0].source == fresh.cells[0].source and nb.cells[1].source == fresh.cells[1].source


def test_tool_check_names_stale_notebooks_and_changes_nothing(tmp_path):
    stale, fresh = tmp_path / "00_a.ipynb", tmp_path / "01_b.ipynb"
    nbformat.write(_toy_notebook(), stale)
    nb = _toy_notebook()
    nh.update_notebook(nb, "notebooks/01_b.ipynb")
    nbformat.write(nb, fresh)
    before = stale.read_bytes()
    done = subprocess.run([sys.executable, "-m", "tools.notebook_header", "--check", str(stale), str(fresh)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and str(stale) in done.stdout and str(fresh) not in done.stdout
    assert stale.read_bytes() == before
    subprocess.run([sys.executable, "-m", "tools.notebook_header", str(stale)], cwd=ROOT, check=True,
                   capture_output=True)
    done = subprocess.run([sys.executable, "-m", "tools.notebook_header", "--check", str(stale)],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout


# --- what the Colab block runs ----------------------------------------------------------------

def _run_block(monkeypatch) -> list:
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *args, **kwargs: calls.append((args, kwargs)))
    exec(compile(nh.colab_block(), "<colab block>", "exec"), {"__name__": "__main__"})
    return calls


def test_on_colab_the_block_pip_installs_lrtools_and_leaves_torch_alone(monkeypatch, capsys):
    colab = types.ModuleType("google.colab")
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    calls = _run_block(monkeypatch)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
               f"lrtools @ git+{REPO}.git@{nh.BRANCH}"]
    assert calls == [((command,), {"check": True})]
    # (command[0] is this interpreter, whose path may say torch: .venv-torch-2.9.1/bin/python)
    assert not [arg for arg in command[1:] if "torch" in arg], "the block must not install or pin torch"
    assert capsys.readouterr() == ("", "")


def test_elsewhere_the_block_runs_nothing_and_prints_nothing(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    assert _run_block(monkeypatch) == []
    assert capsys.readouterr() == ("", "")


def test_the_block_is_plain_python_that_ruff_accepts(tmp_path):
    """No IPython escapes (`!pip`): nbval, ruff and a plain `python` all read it."""
    source = tmp_path / "block.py"
    source.write_text(nh.colab_block() + "\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated",
                           "--select", "E,F,W,I,B,UP", "--line-length", "110", str(source)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

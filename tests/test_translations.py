"""The Korean edition (tools/translate.py) stays in step with the English notebooks: every markdown
cell translated from today's English, notebooks/ko/ exactly what `make ko` writes, code and outputs
untouched, and the translations keep code, math, links and numbers and follow the glossary."""

from __future__ import annotations

import io
import json
import re
import shutil
import tokenize
from pathlib import Path

import nbformat
import pytest

from tools import translate
from tools.classroom import write_student_copies
from tools.translate import english_notebooks, english_sha, korean_notebook, load_catalogue, problems

ROOT = Path(__file__).resolve().parents[1]
ENGLISH = english_notebooks()
IDS = [path.name for path in ENGLISH]


def test_there_is_a_catalogue_for_every_english_notebook():
    assert len(ENGLISH) == 9
    catalogues = sorted(p.name for p in translate.CATALOGUES.glob("*.json"))
    assert catalogues == [f"{p.name[:2]}.json" for p in ENGLISH]


@pytest.mark.parametrize("notebook", ENGLISH, ids=IDS)
def test_every_markdown_cell_has_a_current_translation(notebook):
    found = problems(notebook, load_catalogue(notebook))
    assert found == [], ("the Korean edition is out of step; fix the catalogue "
                         f"{translate.catalogue_path(notebook).relative_to(ROOT)}, then `make ko`:\n\n"
                         + "\n\n".join(found))


def test_notebooks_ko_is_what_make_ko_writes():
    assert sorted(p.name for p in translate.KOREAN.glob("*.ipynb")) == IDS, "run `make ko`"
    for notebook in ENGLISH:
        want = nbformat.writes(korean_notebook(notebook, load_catalogue(notebook))) + "\n"
        got = (translate.KOREAN / notebook.name).read_text(encoding="utf-8")
        assert got == want, f"notebooks/ko/{notebook.name} is not what `make ko` writes: run `make ko`"


def _code_tokens(source: str) -> list[tuple[int, str]]:
    lines = [line for line in source.splitlines() if not re.match(r"%\w|!", line)]  # IPython magics
    tokens = tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline)
    return [(t.type, t.string) for t in tokens if t.type != tokenize.COMMENT]


@pytest.mark.parametrize("notebook", ENGLISH, ids=IDS)
def test_the_korean_edition_changes_prose_and_comments_only(notebook):
    english = nbformat.read(notebook, as_version=4)
    korean = nbformat.read(translate.KOREAN / notebook.name, as_version=4)
    assert [(c.id, c.cell_type) for c in korean.cells] == [(c.id, c.cell_type) for c in english.cells]
    translated = 0
    for en, ko in zip(english.cells, korean.cells):
        assert ko.metadata == en.metadata
        if en.cell_type == "code":
            assert ko.outputs == en.outputs and ko.execution_count == en.execution_count
            assert _code_tokens(ko.source) == _code_tokens(en.source), f"code of cell {en.id} changed"
        else:
            translated += ko.source != en.source
    assert translated == sum(c.cell_type == "markdown" for c in english.cells)
    assert f"notebooks/ko/{notebook.name}" in korean.cells[0].source  # badges open the Korean edition
    assert korean.metadata["lrworkbook"]["edition"] == "ko"


@pytest.fixture
def english_copy(tmp_path):
    """A copy of the English 01 to change, and its (unchanged) catalogue."""
    source = next(p for p in ENGLISH if p.name.startswith("01"))
    copy = tmp_path / source.name
    shutil.copy(source, copy)
    return copy, load_catalogue(source)


def test_changing_one_english_sentence_makes_its_translation_stale(english_copy):
    path, catalogue = english_copy
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells[1:] if c.cell_type == "markdown")
    cell.source = cell.source + "\n\nOne new English sentence."
    nbformat.write(nb, path)
    found = problems(path, catalogue)
    assert len(found) == 1
    assert found[0].startswith(f"{path.name} cell {cell.id}: stale translation, the English changed after "
                               f"it was translated. Update its Korean and en_sha256 "
                               f"({english_sha(cell.source)}).")
    assert found[0].endswith("The English now reads:\n" + cell.source)
    with pytest.raises(ValueError, match="1 translation problem"):
        korean_notebook(path, catalogue)


def test_a_new_markdown_cell_without_translation_and_an_orphan_are_reported(english_copy):
    path, catalogue = english_copy
    nb = nbformat.read(path, as_version=4)
    removed = next(c for c in nb.cells if c.cell_type == "markdown" and c.id in catalogue["markdown"])
    nb.cells.remove(removed)
    nb.cells.append(nbformat.v4.new_markdown_cell("A brand-new cell.", id="newcell1"))
    nbformat.write(nb, path)
    assert problems(path, catalogue) == [
        f"{path.name} cell newcell1: no Korean translation. English:\nA brand-new cell.",
        f"{path.name} cell {removed.id}: translated, but no such markdown cell; remove it"]


def test_a_changed_comment_and_a_marker_comment_are_reported(english_copy):
    path, catalogue = english_copy
    cell_id, pairs = next(iter(catalogue["comments"].items()))
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.id == cell_id)
    cell.source = cell.source.replace(pairs[0][0], "a reworded comment")
    nbformat.write(nb, path)
    catalogue = json.loads(json.dumps(catalogue))
    catalogue["comments"][cell_id].append(["### BEGIN SOLUTION", "### 풀이 시작"])
    found = problems(path, catalogue)
    where = f"{path.name} cell {cell_id}"
    assert found[0].startswith(f"{where}: the comment {pairs[0][0]!r} is no longer in the code")
    assert found[1] == f"{where}: '### BEGIN SOLUTION' is read by tools; keep it in English"


@pytest.mark.parametrize(("korean", "problem"), [
    ("`lr`을 0.1로, $\\eta_0$ 기준으로 [문서](https://pytorch.org)를 봅니다.", None),
    ("`학습률`을 0.1로, $\\eta_0$ 기준으로 [문서](https://pytorch.org)를 봅니다.",
     "code span `lr` is missing"),
    ("`lr`을 0.1로, 기준으로 [문서](https://pytorch.org)를 봅니다.", "math $\\eta_0$ is missing"),
    ("`lr`을 0.01로, $\\eta_0$ 기준으로 [문서](https://pytorch.org)를 봅니다.", "number 0.1 is missing"),
    ("`lr`을 0.1로, $\\eta_0$ 기준으로 문서를 봅니다.", "link https://pytorch.org is missing"),
    ("Set `lr` to 0.1 from $\\eta_0$, see [docs](https://pytorch.org).", "no Korean text"),
    ("`lr`을 0.1로, $\\eta_0$ 기준으로 [문서](https://pytorch.org)의 러닝 레이트를 봅니다.",
     "'러닝 레이트': the glossary says '학습률'"),
])
def test_a_translation_keeps_code_math_links_numbers_and_the_glossary(korean, problem):
    english = "Set `lr` to 0.1 from $\\eta_0$, see [docs](https://pytorch.org)."
    assert translate.quality_problems(english, korean) == ([] if problem is None else [problem])


def test_the_glossary_lists_every_spelling_the_checker_refuses():
    glossary = (translate.KOREAN / "README.md").read_text(encoding="utf-8")
    rows = [line.split("|")[1:-1] for line in glossary.splitlines() if line.startswith("| ")][2:]  # no header
    refused = {word.strip() for row in rows for word in row[2].split(",")} - {""}
    assert refused == set(translate.VARIANTS)
    used = " ".join(row[1] for row in rows)
    assert all(term in used for term in translate.VARIANTS.values())


def test_korean_student_copies(tmp_path):
    written = write_student_copies(translate.KOREAN, tmp_path / "ko")
    assert [target.name for target, _ in written] == IDS
    assert all(totals.solutions > 0 for _, totals in written)
    student = nbformat.read(tmp_path / "ko" / IDS[0], as_version=4)
    assert "준비" in student.cells[1].source or any("학습률" in c.source for c in student.cells)


def test_readme_ko_opens_every_korean_notebook_and_the_readme_links_to_it():
    from tools import notebook_header as nh

    readme_ko = (ROOT / "README.ko.md").read_text(encoding="utf-8")
    for notebook in ENGLISH:
        relpath = f"notebooks/ko/{notebook.name}"
        row = next((line for line in readme_ko.splitlines() if line.startswith(f"| [`{notebook.name}`]")), "")
        title = load_catalogue(notebook)["markdown"][nbformat.read(notebook, as_version=4).cells[0].id]["ko"]
        assert f"]({relpath})" in row, relpath
        assert nh.colab_url(relpath) in row and nh.binder_url(relpath) in row, relpath
        assert row.split(" | ")[1] in title, f"README.ko.md: the Korean title of {notebook.name}"
    # An absolute link: the README is also the book's landing page, where README.ko.md is no page.
    korean = f"[한국어]({nh.repository_url()}/blob/{nh.BRANCH}/README.ko.md)"
    assert korean in (ROOT / "README.md").read_text(encoding="utf-8")

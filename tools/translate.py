"""The Korean edition: notebooks/ko/*.ipynb written from the English notebooks and a translation
catalogue per notebook, notebooks/ko/translations/NN.json.

The English notebooks are the source. A catalogue maps each markdown cell, by its cell id, to its
Korean text and the SHA-256 of the English source it was translated from; it may also translate
comments inside code cells. Code, outputs and metadata are copied unchanged, so the stored results
and nbval hold for both editions.

    python -m tools.translate build          # make ko: write notebooks/ko/*.ipynb
    python -m tools.translate check          # what is missing, stale or orphaned (exit 1 if any)
    python -m tools.translate todo 00        # the English of every cell of 00 still to translate
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import re
import sys
from pathlib import Path

import nbformat

from tools import notebook_header

ROOT = Path(__file__).resolve().parents[1]
ENGLISH = ROOT / "notebooks"
KOREAN = ENGLISH / "ko"
CATALOGUES = KOREAN / "translations"
#: Colab and Binder badges point at the notebook's own edition.
#: Spellings the glossary (notebooks/ko/README.md) replaces: variant -> the term to use.
VARIANTS = {"러닝 레이트": "학습률", "러닝레이트": "학습률", "에포크": "에폭", "옵티마이져": "옵티마이저",
            "스케쥴": "스케줄", "배치 사이즈": "배치 크기", "그레디언트": "기울기", "그라디언트": "기울기",
            "웜업": "워밍업", "웜 업": "워밍업", "체크 포인트": "체크포인트", "파라메터": "파라미터",
            "밸리데이션": "검증", "트레이닝": "학습", "훈련": "학습"}
FENCE = re.compile(r"```.*?```", re.DOTALL)
CODE = re.compile(r"`[^`]+`")  # a code span may wrap onto the next line
MATH = re.compile(r"\$\$.+?\$\$|\$[^$]+\$", re.DOTALL)  # inline math may wrap too
LINK = re.compile(r"\]\(([^)\s]+)\)|<(https?://[^>]+)>|(https?://[^\s)>\]]+)")
NUMBER = re.compile(r"(?<![\w.])[-−]?\d+(?:,\d{3})*(?:\.\d+)?(?:e[-+]?\d+)?")
HANGUL = re.compile(r"[\uac00-\ud7a3]")
#: Comments that tools read (nbgrader-style markers, the Colab block): never translated.
PROTECTED = re.compile(r"(BEGIN|END) (SOLUTION|HIDDEN TESTS)")


def english_sha(source: str) -> str:
    """The hash a translation records of the English it was made from.

    >>> english_sha("## Setup")
    '0ecddf15e1aff85f'
    """
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


def catalogue_path(notebook: Path) -> Path:
    """notebooks/00_setup_and_baseline.ipynb -> notebooks/ko/translations/00.json"""
    return CATALOGUES / f"{notebook.name[:2]}.json"


def load_catalogue(notebook: Path) -> dict:
    path = catalogue_path(notebook)
    if not path.exists():
        return {"notebook": notebook.name, "markdown": {}, "comments": {}}
    return json.loads(path.read_text(encoding="utf-8"))


def problems(notebook: Path, catalogue: dict) -> list[str]:
    """Every way the catalogue is out of step with the English notebook, one line (or block) each."""
    nb = nbformat.read(notebook, as_version=4)
    cells = {cell.id: cell for cell in nb.cells}
    found = []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        entry = catalogue["markdown"].get(cell.id)
        if entry is None or not entry.get("ko", "").strip():
            found.append(f"{notebook.name} cell {cell.id}: no Korean translation. English:\n{cell.source}")
        elif entry["en_sha256"] != english_sha(cell.source):
            found.append(f"{notebook.name} cell {cell.id}: stale translation, the English changed after it "
                         f"was translated. Update its Korean and en_sha256 "
                         f"({english_sha(cell.source)}). The English now reads:\n{cell.source}")
        else:
            found += [f"{notebook.name} cell {cell.id}: {line}"
                      for line in quality_problems(cell.source, entry["ko"])]
    for cell_id in catalogue["markdown"]:
        if cell_id not in cells or cells[cell_id].cell_type != "markdown":
            found.append(f"{notebook.name} cell {cell_id}: translated, but no such markdown cell; remove it")
    for cell_id, pairs in catalogue.get("comments", {}).items():
        if cell_id not in cells or cells[cell_id].cell_type != "code":
            found.append(f"{notebook.name} cell {cell_id}: comments translated, but no such code cell")
            continue
        for english, _ in pairs:
            if PROTECTED.search(english) or english in notebook_header.colab_block():
                found.append(f"{notebook.name} cell {cell_id}: {english!r} is read by tools; "
                             "keep it in English")
            elif _comment_pattern(english).search(cells[cell_id].source) is None:
                found.append(f"{notebook.name} cell {cell_id}: the comment {english!r} is no longer in the "
                             f"code (stale); the cell now reads:\n{cells[cell_id].source}")
    return found


def quality_problems(english: str, korean: str) -> list[str]:
    """What a translation lost: code spans, math, links and numbers are kept verbatim, the prose is
    Korean, and the glossary's spellings are used.

    >>> quality_problems("Set `lr` to 0.1.", "`lr`을 0.1로 둡니다.")
    []
    >>> quality_problems("Set `lr` to 0.1.", "`학습률`을 0.01로 둡니다.")
    ['code span `lr` is missing', 'number 0.1 is missing']
    """
    found = []
    prose, flat = FENCE.sub(" ", english), "".join(korean.split())  # wrapping may differ
    for what, pattern in (("code span", CODE), ("math", MATH)):
        for span in dict.fromkeys(pattern.findall(prose)):
            if "".join(span.split()) not in flat:
                found.append(f"{what} {span} is missing")
    for groups in LINK.findall(english):
        url = next(g for g in groups if g)
        if url not in korean:
            found.append(f"link {url} is missing")
    words = LINK.sub(" ", MATH.sub(" ", CODE.sub(" ", prose)))
    korean_numbers = set(NUMBER.findall(LINK.sub(" ", korean)))
    for number in dict.fromkeys(NUMBER.findall(words)):
        if number not in korean_numbers:
            found.append(f"number {number} is missing")
    if re.search(r"[A-Za-z]{3,}", words) and not HANGUL.search(korean):
        found.append("no Korean text")
    for variant, term in VARIANTS.items():
        if variant in korean:
            found.append(f"'{variant}': the glossary says '{term}'")
    return found


def _comment_pattern(english: str) -> re.Pattern:
    # "# <english>" to the end of its line, so code that merely contains the words is left alone.
    return re.compile(r"(#\s*)" + re.escape(english) + r"[ \t]*$", re.MULTILINE)


def korean_notebook(notebook: Path, catalogue: dict) -> nbformat.NotebookNode:
    """The Korean edition of one English notebook (raises if the catalogue is out of step)."""
    found = problems(notebook, catalogue)
    if found:
        raise ValueError(f"{len(found)} translation problem(s); run `python -m tools.translate check`:\n"
                         + "\n".join(found))
    nb = copy.deepcopy(nbformat.read(notebook, as_version=4))
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = catalogue["markdown"][cell.id]["ko"]
        for english, korean in catalogue.get("comments", {}).get(cell.id, []):
            cell.source = _comment_pattern(english).sub(lambda m, k=korean: m.group(1) + k, cell.source)
    notebook_header.update_notebook(nb, f"notebooks/ko/{notebook.name}")  # badges open this edition
    nb.metadata["lrworkbook"] = {**nb.metadata.get("lrworkbook", {}), "edition": "ko",
                                 "translated_from": f"../{notebook.name}"}
    return nb


def english_notebooks() -> list[Path]:
    return sorted(ENGLISH.glob("[0-9][0-9]_*.ipynb"))


def build(notebooks: list[Path] | None = None) -> list[tuple[Path, bool]]:
    """Write notebooks/ko/*.ipynb from today's English notebooks and catalogues (make ko);
    returns each Korean notebook and whether it changed."""
    written = []
    for notebook in english_notebooks() if notebooks is None else notebooks:
        target = KOREAN / notebook.name
        text = nbformat.writes(korean_notebook(notebook, load_catalogue(notebook))) + "\n"
        changed = not target.exists() or target.read_text(encoding="utf-8") != text
        if changed:
            target.write_text(text, encoding="utf-8")
        written.append((target, changed))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "check", "todo"])
    parser.add_argument("notebooks", nargs="*", help="two-digit prefixes (default: all)")
    args = parser.parse_args(argv)
    chosen = [nb for nb in english_notebooks() if not args.notebooks or nb.name[:2] in args.notebooks]
    if args.command == "build":
        for path, changed in build(chosen):
            print(f"{'wrote' if changed else 'up to date'} {path.relative_to(ROOT)}")
        return 0
    found = [line for nb in chosen for line in problems(nb, load_catalogue(nb))]
    for line in found:
        print(line + "\n" if args.command == "todo" else line.splitlines()[0])
    print(f"{len(found)} problem(s) in {len(chosen)} notebook(s)", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

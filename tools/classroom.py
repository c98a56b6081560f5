"""Student copies of the notebooks: solutions out, stubs in (nbgrader's markers).

In a code cell, the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` become
``# YOUR CODE HERE`` and ``raise NotImplementedError()``, indented like the BEGIN line;
the lines from ``### BEGIN HIDDEN TESTS`` to ``### END HIDDEN TESTS`` disappear. In a
markdown cell, ``<!-- BEGIN SOLUTION -->`` … ``<!-- END SOLUTION -->`` becomes
``YOUR ANSWER HERE``. The outputs and execution counts of the cells that held a
solution, and of the check cells right after them, are cleared; every other cell is
kept as it is, stored outputs included. The markers are nbgrader's, so the same
notebooks also work with ``nbgrader generate_assignment``.

Nothing that looks like a marker is copied through silently: a marker alone on its line
works in any case and spacing (``#begin  solution``); anything else that looks like one
(``### BEGIN SOLUTIONS``, a marker after code on the same line, a marker in a raw cell,
an END without its BEGIN, ...) stops the run with an error naming the notebook, the cell
and the fix. Markdown prose may quote the markers (``between `### BEGIN SOLUTION` and``).
The student copies are never written over the instructor notebooks.

    python -m tools.classroom notebooks build/student      (or: python tools/classroom.py ...)
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nbformat

__all__ = ["CODE_STUB", "TEXT_STUB", "StudentCell", "student_source", "student_notebook",
           "write_student_copies", "main"]

CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
TEXT_STUB = ("YOUR ANSWER HERE",)
_STUB = {"SOLUTION": True, "HIDDEN TESTS": False}  # region kind -> replaced by a stub?
#: Anything that looks like a marker: BEGIN/END, then SOLUTION... or HIDDEN..., any case and separator.
_MARKERISH = re.compile(r"\b(?P<edge>begin|end)(?P<sep>[\s_-]*)"
                        r"(?P<kind>solution\w*|hidden\w*(?:[\s_-]+tests?\b)?)", re.IGNORECASE)
_LEAD = re.compile(r"\s*(?:#+|<!--)?\s*")  # what may stand before a marker alone on its line
_TRAIL = re.compile(r"\s*(?:-->|#+)?\s*")  # and after it
_ALNUM = re.compile(r"[^\W_]")


@dataclass
class StudentCell:
    """The student version of one cell's source, and what was taken out of it."""

    source: str
    solutions: int = 0
    hidden_tests: int = 0


def _example(edge: str, kind: str, cell_type: str) -> str:
    return f"<!-- {edge} {kind} -->" if cell_type == "markdown" else f"### {edge} {kind}"


def _marker(line: str, cell_type: str) -> tuple[str, str] | None:
    """``(edge, kind)`` if ``line`` is a marker, None if it is an ordinary line; raises if it
    looks like a marker but is not one (so it would leak the answer or hide nothing)."""
    found = list(_MARKERISH.finditer(line))
    if not found:
        return None
    first = found[0]
    if len(found) == 1 and _LEAD.fullmatch(line[:first.start()]) and _TRAIL.fullmatch(line[first.end():]):
        edge, kind = first["edge"].upper(), " ".join(first["kind"].upper().split())
        if first["sep"] and not first["sep"].strip() and kind in _STUB:
            return edge, kind
        guess = "SOLUTION" if kind.startswith("SOLUTION") else "HIDDEN TESTS"
        raise ValueError(f"{line.strip()!r} looks like a marker but is not one, so the lines after it "
                         f"would be copied into the student notebook. Fix: write "
                         f"{_example(edge, guess, cell_type)!r} (the markers are BEGIN/END SOLUTION and "
                         "BEGIN/END HIDDEN TESTS; any case and spacing work).")
    found = [m for m in found if re.search(r"solution|test", m["kind"], re.IGNORECASE)]
    if not found:  # "# end hidden layer": only a standalone "BEGIN HIDDEN" counts as marker-like
        return None
    first = found[0]
    outside = line
    for m in reversed(found):
        outside = outside[:m.start()] + outside[m.end():]
    befores = [line[:m.start()] for m in found]
    if cell_type == "markdown":  # prose may quote a marker; a comment or heading may not hold one
        suspicious = any(re.search(r"<!--\s*$", b) for b in befores) or bool(
            re.fullmatch(r"\s*(?:#+|<!--)\s*", befores[0]))
    else:  # a marker after code, in a string, or with other words on its line
        suspicious = any(re.search(r"#+\s*$", b) for b in befores) or any(m["edge"].isupper() for m in found)
    if suspicious or not _ALNUM.search(outside):
        edge, kind = first["edge"].upper(), "SOLUTION" if first["kind"][:1] in "sS" else "HIDDEN TESTS"
        raise ValueError(f"Marker text {first.group(0)!r} is not alone on its line ({line.strip()!r}), so it "
                         "would not hide anything. Fix: put the marker on a line of its own, e.g. "
                         f"{_example(edge, kind, cell_type)!r}"
                         + (", or, in prose, quote it in backticks inside a sentence."
                            if cell_type == "markdown" else ", or reword the line so it does not read "
                            "like a marker."))
    return None


def student_source(source: str, cell_type: str = "code") -> StudentCell:
    """Replace solution regions by stubs and drop hidden-test regions in one cell's source.

    Raises:
        ValueError: a line that looks like a marker but is not one, or regions that are not
            balanced (an END without its BEGIN, a BEGIN never closed, a region inside another).
            The message starts with the line number and ends with the fix.

    Example:
        >>> student_source("x = 1\\n### BEGIN SOLUTION\\ny = 2\\n### END SOLUTION").source
        'x = 1\\n# YOUR CODE HERE\\nraise NotImplementedError()'
    """
    stub = CODE_STUB if cell_type == "code" else TEXT_STUB
    out: list[str] = []
    result = StudentCell(source="")
    region: str | None = None
    opened = 0
    for number, line in enumerate(source.split("\n"), start=1):
        try:
            marker = _marker(line, cell_type)
        except ValueError as exc:
            raise ValueError(f"Line {number}: {exc}") from None
        if marker is None:
            if region is None:
                out.append(line)
            continue
        edge, kind = marker
        if edge == "BEGIN" and region is None:
            region, opened = kind, number
            if _STUB[kind]:
                indent = line[: len(line) - len(line.lstrip())]
                out.extend(indent + stub_line for stub_line in stub)
                result.solutions += 1
            else:
                result.hidden_tests += 1
        elif edge == "END" and region == kind:
            region = None
        elif edge == "END" and region is None:
            raise ValueError(f"Line {number}: END {kind} without a BEGIN {kind} before it. Fix: add "
                             f"{_example('BEGIN', kind, cell_type)!r} above the lines to hide, or delete "
                             "this line.")
        elif edge == "END":
            raise ValueError(f"Line {number}: END {kind}, but the region open since line {opened} is "
                             f"{region}. Fix: close it with {_example('END', region, cell_type)!r}.")
        else:
            raise ValueError(f"Line {number}: BEGIN {kind} inside the {region} region opened on line "
                             f"{opened}; regions cannot nest. Fix: close that region with "
                             f"{_example('END', region, cell_type)!r} before line {number}.")
    if region is not None:
        raise ValueError(f"BEGIN {region} on line {opened} is never closed. Fix: add "
                         f"{_example('END', region, cell_type)!r} after the lines to hide.")
    result.source = "\n".join(out)
    return result


def _clear_outputs(cell: nbformat.NotebookNode) -> None:
    cell.outputs = []
    cell.execution_count = None


def _where(index: int, cell_type: str) -> str:
    return f"Cell {index} ({cell_type}, counting from 0)"


def student_notebook(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, StudentCell]:
    """A student copy of ``nb`` (``nb`` is left unchanged), with the totals removed.

    Raises:
        ValueError: a bad marker (see :func:`student_source`), or marker text in a raw cell
            (raw cells are copied as they are). The message names the cell.

    Example:
        >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("y = 2")])
        >>> student_notebook(nb)[1].solutions
        0
    """
    student = copy.deepcopy(nb)
    totals = StudentCell(source="")
    after_solution = False
    for index, cell in enumerate(student.cells):
        if cell.cell_type not in ("code", "markdown"):
            found = _MARKERISH.search(cell.source)
            if found:
                raise ValueError(f"{_where(index, cell.cell_type)}: marker text {found.group(0)!r} in a "
                                 f"{cell.cell_type} cell, which is copied into the student notebook as it "
                                 "is. "
                                 "Fix: make it a code cell (marker '### BEGIN SOLUTION') or a markdown cell "
                                 "(marker '<!-- BEGIN SOLUTION -->'), or take the answer out of it.")
            continue
        try:
            changed = student_source(cell.source, cell.cell_type)
        except ValueError as exc:
            raise ValueError(f"{_where(index, cell.cell_type)}: {exc}") from None
        cell.source = changed.source
        totals.solutions += changed.solutions
        totals.hidden_tests += changed.hidden_tests
        if cell.cell_type == "markdown":
            after_solution = False
        elif changed.solutions or changed.hidden_tests or after_solution:
            _clear_outputs(cell)  # the solution cell and the check cells that follow it
            after_solution = after_solution or bool(changed.solutions)
    return student, totals


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _check_out_dir(src_dir: Path, out_dir: Path, sources: list[Path]) -> None:
    """Refuse an output folder whose copies would land on an instructor notebook."""
    src, out = Path(src_dir).resolve(), Path(out_dir).resolve()
    if out == src or _same_file(src, out):
        raise ValueError(f"The output folder {str(out_dir)!r} is the source folder {str(src_dir)!r} "
                         f"(both are {src}): the student copies would overwrite the instructor notebooks "
                         "and their solutions. Fix: pass another output folder, e.g. "
                         "`python -m tools.classroom notebooks build/student`.")
    for path in sources:
        target = Path(out_dir) / path.name
        if target.resolve() == path.resolve() or _same_file(target, path):
            raise ValueError(f"{target} is the instructor notebook {path} (a link to it): writing the "
                             "student copy there would overwrite the solutions. Fix: remove the link "
                             f"{target}, or pass another output folder.")


def write_student_copies(src_dir: Path, out_dir: Path) -> list[tuple[Path, StudentCell]]:
    """Write a student copy of every ``*.ipynb`` in ``src_dir`` to ``out_dir``.

    Every notebook is converted before the first one is written, so a bad marker leaves
    ``out_dir`` as it was. ``out_dir`` may not be ``src_dir`` (however it is spelled, links
    resolved), nor hold links to the instructor notebooks.

    Returns:
        ``(written path, totals)`` per notebook, in name order.

    Raises:
        FileNotFoundError: no notebooks in ``src_dir``.
        ValueError: a bad marker (the message names the notebook and cell), or an
            ``out_dir`` that would overwrite the instructor notebooks.

    Example:
        >>> write_student_copies(Path("notebooks"), Path("build/student"))  # doctest: +SKIP
    """
    sources = sorted(Path(src_dir).glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"No .ipynb files in {src_dir}. Fix: pass the folder that holds the "
                                "instructor notebooks, e.g. `python -m tools.classroom notebooks "
                                "build/student`.")
    _check_out_dir(src_dir, out_dir, sources)
    converted = []
    for path in sources:
        try:
            converted.append((path, *student_notebook(nbformat.read(path, as_version=4))))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    written = []
    for path, student, totals in converted:
        target = Path(out_dir) / path.name
        nbformat.write(student, target)
        written.append((target, totals))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m tools.classroom SRC_DIR OUT_DIR``."""
    parser = argparse.ArgumentParser(prog="python -m tools.classroom",
                                     description="Write student copies of the notebooks.")
    parser.add_argument("src_dir", type=Path, help="folder with the instructor notebooks")
    parser.add_argument("out_dir", type=Path, help="folder for the student copies (not src_dir)")
    args = parser.parse_args(argv)
    try:
        written = write_student_copies(args.src_dir, args.out_dir)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for target, totals in written:
        print(f"{target}: {totals.solutions} solutions replaced, "
              f"{totals.hidden_tests} hidden-test blocks removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

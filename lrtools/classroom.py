"""Student copies of the notebooks: solutions out, stubs in (nbgrader's markers).

In a code cell, the lines from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` become
``# YOUR CODE HERE`` and ``raise NotImplementedError()``, indented like the BEGIN line;
the lines from ``### BEGIN HIDDEN TESTS`` to ``### END HIDDEN TESTS`` disappear. In a
markdown cell, ``<!-- BEGIN SOLUTION -->`` … ``<!-- END SOLUTION -->`` becomes
``YOUR ANSWER HERE``. The outputs and execution counts of the cells that held a
solution, and of the check cells right after them, are cleared; every other cell is
kept as it is, stored outputs included. The markers are nbgrader's, so the same
notebooks also work with ``nbgrader generate_assignment``.

    python -m lrtools.classroom notebooks build/student
"""

from __future__ import annotations

import argparse
import copy
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
_CODE_MARKER = re.compile(r"^\s*#+\s*(BEGIN|END) (SOLUTION|HIDDEN TESTS)\s*$")
_TEXT_MARKER = re.compile(r"^\s*(?:<!--\s*|#+\s*)(BEGIN|END) (SOLUTION)\s*(?:-->)?\s*$")
_STUB = {"SOLUTION": True, "HIDDEN TESTS": False}  # region kind -> replaced by a stub?


@dataclass
class StudentCell:
    """The student version of one cell's source, and what was taken out of it."""

    source: str
    solutions: int = 0
    hidden_tests: int = 0


def _marker(line: str, cell_type: str) -> tuple[str, str] | None:
    match = (_CODE_MARKER if cell_type == "code" else _TEXT_MARKER).match(line)
    if match:
        return match.group(1), match.group(2)
    if cell_type == "code" and re.search(r"(BEGIN|END) (SOLUTION|HIDDEN TESTS)", line):
        raise ValueError(f"Malformed marker line {line.strip()!r}. Fix: put the marker alone on its "
                         "line, e.g. '### BEGIN SOLUTION' or '### END HIDDEN TESTS'.")
    return None


def student_source(source: str, cell_type: str = "code") -> StudentCell:
    """Replace solution regions by stubs and drop hidden-test regions in one cell's source.

    Example:
        >>> student_source("x = 1\\n### BEGIN SOLUTION\\ny = 2\\n### END SOLUTION").source
        'x = 1\\n# YOUR CODE HERE\\nraise NotImplementedError()'
    """
    stub = CODE_STUB if cell_type == "code" else TEXT_STUB
    out: list[str] = []
    result = StudentCell(source="")
    region: str | None = None
    for number, line in enumerate(source.split("\n"), start=1):
        marker = _marker(line, cell_type)
        if marker is None:
            if region is None:
                out.append(line)
            continue
        edge, kind = marker
        if edge == "BEGIN" and region is None:
            region = kind
            if _STUB[kind]:
                indent = line[: len(line) - len(line.lstrip())]
                out.extend(indent + stub_line for stub_line in stub)
                result.solutions += 1
            else:
                result.hidden_tests += 1
        elif edge == "END" and region == kind:
            region = None
        else:
            raise ValueError(f"Line {number}: {edge} {kind} while {region or 'no'} region is open. "
                             "Fix: close each region with its END marker before the next BEGIN.")
    if region is not None:
        raise ValueError(f"BEGIN {region} is never closed. Fix: add '### END {region}' after the "
                         "region (in markdown: '<!-- END SOLUTION -->').")
    result.source = "\n".join(out)
    return result


def _clear_outputs(cell: nbformat.NotebookNode) -> None:
    cell.outputs = []
    cell.execution_count = None


def student_notebook(nb: nbformat.NotebookNode) -> tuple[nbformat.NotebookNode, StudentCell]:
    """A student copy of ``nb`` (``nb`` is left unchanged), with the totals removed.

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
            continue
        try:
            changed = student_source(cell.source, cell.cell_type)
        except ValueError as exc:
            raise ValueError(f"Cell {index}: {exc}") from None
        cell.source = changed.source
        totals.solutions += changed.solutions
        totals.hidden_tests += changed.hidden_tests
        if cell.cell_type == "markdown":
            after_solution = False
        elif changed.solutions or changed.hidden_tests or after_solution:
            _clear_outputs(cell)  # the solution cell and the check cells that follow it
            after_solution = after_solution or bool(changed.solutions)
    return student, totals


def write_student_copies(src_dir: Path, out_dir: Path) -> list[tuple[Path, StudentCell]]:
    """Write a student copy of every ``*.ipynb`` in ``src_dir`` to ``out_dir``.

    Returns:
        ``(written path, totals)`` per notebook, in name order.

    Example:
        >>> write_student_copies(Path("notebooks"), Path("build/student"))  # doctest: +SKIP
    """
    sources = sorted(Path(src_dir).glob("*.ipynb"))
    if not sources:
        raise FileNotFoundError(f"No .ipynb files in {src_dir}. Fix: pass the folder that holds the "
                                "instructor notebooks, e.g. `python -m lrtools.classroom notebooks "
                                "build/student`.")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    written = []
    for path in sources:
        try:
            student, totals = student_notebook(nbformat.read(path, as_version=4))
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        target = Path(out_dir) / path.name
        nbformat.write(student, target)
        written.append((target, totals))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m lrtools.classroom SRC_DIR OUT_DIR``."""
    parser = argparse.ArgumentParser(prog="python -m lrtools.classroom",
                                     description="Write student copies of the notebooks.")
    parser.add_argument("src_dir", type=Path, help="folder with the instructor notebooks")
    parser.add_argument("out_dir", type=Path, help="folder for the student copies")
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

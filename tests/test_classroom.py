"""Student copies: exact stubs on a synthetic notebook; marker look-alikes, raw cells and an
output folder on top of the source never leak or overwrite a solution; on the real notebooks,
no solution survives, every exercise raises NotImplementedError, and a wrong answer fails its check.

Every exercise also declares, in its solution cell's metadata, the answers a learner could
plausibly give: ``cell.metadata["lrworkbook"]["answers"]`` is a list of
``{"kind": "wrong" | "hard-coded", "why": "...", "solution": "..."}``. ``solution`` replaces the
lines between the cell's (first) ``### BEGIN SOLUTION`` and ``### END SOLUTION``, indented like the
BEGIN line. Each must fail the exercise's check with an AssertionError: a ``"wrong"`` one is the
notebook's core mistake (the off-by-one, the wrong call order, ...), a ``"hard-coded"`` one returns
the visible example's answer whatever the input, which every exercise that asks for a function
must reject.

The real-notebook tests run only the cells an exercise needs (a backward slice over the
names the cells read and write) in one quick-mode kernel per notebook. That the instructor
notebooks pass all their checks end to end is covered by nbval in `make test`.
"""

from __future__ import annotations

import ast
import builtins
import functools
import io
import os
import re
import textwrap
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output, new_raw_cell

from tools.classroom import main, student_notebook, student_source, write_student_copies

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"


# --------------------------------------------------------------------------- synthetic

def _stream(text: str) -> nbformat.NotebookNode:
    return new_output("stream", name="stdout", text=text)


def visible_text(nb) -> str:
    """Every cell's source and textual output (not the JSON, whose escaping and ids would mislead)."""
    parts = []
    for cell in nb.cells:
        parts.append(cell.source)
        for out in cell.get("outputs", []):
            parts += [out.get("text", ""), *out.get("traceback", []), out.get("evalue", "")]
            data = out.get("data", {})
            parts += [v for k, v in data.items() if k.startswith("text/") and isinstance(v, str)]
    return "\n".join(parts)


def synthetic_notebook() -> nbformat.NotebookNode:
    """Tutorial cell, indented solution, top-level solution, hidden tests, markdown answer."""
    return new_notebook(cells=[
        new_markdown_cell("# 99 · Synthetic"),
        new_code_cell("lrs = [0.1, 0.01]\nprint(lrs)", execution_count=1,
                      outputs=[_stream("[0.1, 0.01]\n")]),
        new_markdown_cell("### Exercise 1 — factory"),
        new_code_cell("def make_scheduler(optimizer):\n    ### BEGIN SOLUTION\n"
                      "    secret_gamma = 0.37\n    return StepLR(optimizer, 3, secret_gamma)\n"
                      "    ### END SOLUTION\n", execution_count=2, outputs=[_stream("built 0.37\n")]),
        new_code_cell("assert make_scheduler is not None\n### BEGIN HIDDEN TESTS\n"
                      "assert secret_check(0.37)\n### END HIDDEN TESTS\nprint('✓ Exercise 1 passed')",
                      execution_count=3, outputs=[_stream("✓ Exercise 1 passed\n")]),
        new_markdown_cell("### Exercise 2 — why?\n\n<!-- BEGIN SOLUTION -->\nBecause the secret "
                          "reason.\n<!-- END SOLUTION -->\n\nThen run the check."),
        new_code_cell("x = 1\n### BEGIN SOLUTION\nanswer = 42 * x\n### END SOLUTION\nprint(answer)",
                      execution_count=4, outputs=[_stream("42\n")]),
    ])


def test_indented_solution_becomes_indented_stub():
    source = "def f(optimizer):\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n"
    assert student_source(source).source == (
        "def f(optimizer):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n")


def test_scaffold_around_the_solution_is_kept():
    changed = student_source("x = 1\n### BEGIN SOLUTION\ny = 2\nz = 3\n### END SOLUTION\nprint(y)")
    assert (changed.source, changed.solutions, changed.hidden_tests) == (f"x = 1\n{STUB}\nprint(y)", 1, 0)


def test_hidden_tests_are_removed_without_a_stub():
    changed = student_source("assert a\n### BEGIN HIDDEN TESTS\nassert b\n### END HIDDEN TESTS\nprint('ok')")
    assert (changed.source, changed.solutions, changed.hidden_tests) == ("assert a\nprint('ok')", 0, 1)


def test_markdown_solution_becomes_answer_stub():
    source = "Why?\n\n<!-- BEGIN SOLUTION -->\nBecause.\n<!-- END SOLUTION -->\nEnd."
    assert student_source(source, "markdown").source == "Why?\n\nYOUR ANSWER HERE\nEnd."


def test_markdown_may_mention_the_markers_in_prose():
    source = "Write your answer between `### BEGIN SOLUTION` and `### END SOLUTION`."
    assert student_source(source, "markdown").source == source


@pytest.mark.parametrize(("source", "message"), [
    ("### BEGIN SOLUTION\nx = 1",
     "BEGIN SOLUTION on line 1 is never closed. Fix: add '### END SOLUTION' after the lines to hide."),
    ("x = 1\n### END SOLUTION",
     "Line 2: END SOLUTION without a BEGIN SOLUTION before it. Fix: add '### BEGIN SOLUTION' above the "
     "lines to hide, or delete this line."),
    ("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n",
     "Line 2: BEGIN HIDDEN TESTS inside the SOLUTION region opened on line 1; regions cannot nest. "
     "Fix: close that region with '### END SOLUTION' before line 2."),
    ("### BEGIN SOLUTION\nx = 1\n### END HIDDEN TESTS",
     "Line 3: END HIDDEN TESTS, but the region open since line 1 is SOLUTION. Fix: close it with "
     "'### END SOLUTION'."),
    ("x = 1  ### BEGIN SOLUTION",
     "Line 1: Marker text 'BEGIN SOLUTION' is not alone on its line ('x = 1  ### BEGIN SOLUTION'), so it "
     "would not hide anything. Fix: put the marker on a line of its own, e.g. '### BEGIN SOLUTION', or "
     "reword the line so it does not read like a marker."),
    ("### BEGIN SOLUTIONS\nx = 1\n### END SOLUTIONS",
     "Line 1: '### BEGIN SOLUTIONS' looks like a marker but is not one, so the lines after it would be "
     "copied into the student notebook. Fix: write '### BEGIN SOLUTION' (the markers are BEGIN/END "
     "SOLUTION and BEGIN/END HIDDEN TESTS; any case and spacing work)."),
], ids=["unclosed", "end-without-begin", "nested", "mismatched-end", "malformed", "unknown"])
def test_bad_markers_raise_a_clear_error(source, message):
    with pytest.raises(ValueError) as info:
        student_source(source)
    assert str(info.value) == message


# Any case and any spacing of a marker alone on its line is the marker (nbgrader's own
# matching is case-sensitive; here a variant must not leak the answer).
@pytest.mark.parametrize(("begin", "end"), [
    ("### begin solution", "### end solution"),
    ("### BEGIN  SOLUTION", "### END\tSOLUTION"),
    ("#BEGIN SOLUTION", "#END SOLUTION"),
    ("  ##  Begin   Solution  ##", "## End Solution"),
    ("BEGIN SOLUTION", "END SOLUTION"),
])
def test_marker_variants_in_code_work_as_the_marker(begin, end):
    changed = student_source(f"x = 1\n{begin}\nsecret = 42\n{end}\nprint(secret)")
    indent = begin[: len(begin) - len(begin.lstrip())]
    assert (changed.source, changed.solutions) == (
        f"x = 1\n{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError()\nprint(secret)", 1)


@pytest.mark.parametrize(("begin", "end"), [
    ("<!--begin solution-->", "<!--end solution-->"),
    ("<!--  BEGIN  SOLUTION  -->", "<!-- End Solution -->"),
    ("### begin solution", "### END SOLUTION"),
])
def test_marker_variants_in_markdown_work_as_the_marker(begin, end):
    changed = student_source(f"Why?\n{begin}\nThe secret reason.\n{end}\nEnd.", "markdown")
    assert (changed.source, changed.solutions) == ("Why?\nYOUR ANSWER HERE\nEnd.", 1)


def test_hidden_test_variants_are_removed():
    changed = student_source("assert a\n### begin  hidden tests\nassert secret\n### End Hidden Tests\nok()")
    assert (changed.source, changed.hidden_tests) == ("assert a\nok()", 1)


@pytest.mark.parametrize(("source", "cell_type", "start"), [
    ("### BEGIN_SOLUTION\nsecret\n### END_SOLUTION", "code",
     "Line 1: '### BEGIN_SOLUTION' looks like a marker but is not one"),
    ("### begin solutions\nsecret\n### end solutions", "code",
     "Line 1: '### begin solutions' looks like a marker but is not one"),
    ("### BEGIN HIDDEN TEST\nassert secret\n### END HIDDEN TEST", "code",
     "Line 1: '### BEGIN HIDDEN TEST' looks like a marker but is not one"),
    ("### BEGINSOLUTION\nsecret\n### ENDSOLUTION", "code",
     "Line 1: '### BEGINSOLUTION' looks like a marker but is not one"),
    ("x = 1\nsecret = 2  ### begin solution", "code", "Line 2: Marker text 'begin solution' is not alone"),
    ("# -- begin solution --\nsecret\n# -- end solution --", "code",
     "Line 1: Marker text 'begin solution' is not alone"),
    ("<!-- BEGIN SOLUTIONS -->\nThe secret.\n<!-- END SOLUTIONS -->", "markdown",
     "Line 1: '<!-- BEGIN SOLUTIONS -->' looks like a marker but is not one"),
    ("Answer: <!-- BEGIN SOLUTION --> the secret <!-- END SOLUTION -->", "markdown",
     "Line 1: Marker text 'BEGIN SOLUTION' is not alone on its line"),
    ("**BEGIN SOLUTION**\nThe secret.\n**END SOLUTION**", "markdown",
     "Line 1: Marker text 'BEGIN SOLUTION' is not alone on its line"),
], ids=["underscore", "plural", "hidden-test", "no-space", "after-code", "decorated", "md-plural",
        "md-inline", "md-bold"])
def test_marker_lookalikes_raise_instead_of_leaking(source, cell_type, start):
    with pytest.raises(ValueError) as info:
        student_source(source, cell_type)
    assert str(info.value).startswith(start)
    assert "Fix: " in str(info.value)


def test_ordinary_lines_that_mention_begin_or_end_are_kept():
    code = "# see the end solution of the ODE\n# end hidden layer\nx = 1"
    assert student_source(code).source == code
    prose = "`### END SOLUTION` (the student copy replaces it), then run\nthe end solution is below."
    assert student_source(prose, "markdown").source == prose


def test_student_notebook_exact_cells_and_outputs():
    nb = synthetic_notebook()
    original = nbformat.writes(nb)
    student, totals = student_notebook(nb)
    assert nbformat.writes(nb) == original, "the instructor notebook must not change"
    assert (totals.solutions, totals.hidden_tests) == (3, 1)
    assert [c.source for c in student.cells] == [
        "# 99 · Synthetic",
        "lrs = [0.1, 0.01]\nprint(lrs)",
        "### Exercise 1 — factory",
        "def make_scheduler(optimizer):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n",
        "assert make_scheduler is not None\nprint('✓ Exercise 1 passed')",
        "### Exercise 2 — why?\n\nYOUR ANSWER HERE\n\nThen run the check.",
        f"x = 1\n{STUB}\nprint(answer)",
    ]
    code = [c for c in student.cells if c.cell_type == "code"]
    assert [(len(c.outputs), c.execution_count) for c in code] == [(1, 1), (0, None), (0, None), (0, None)]
    assert code[0].outputs == nb.cells[1].outputs


def test_no_solution_text_survives_in_synthetic_copy():
    text = visible_text(student_notebook(synthetic_notebook())[0])
    for secret in ("secret_gamma", "0.37", "secret_check", "secret reason", "42", "SOLUTION", "HIDDEN"):
        assert secret not in text


def test_command_line_writes_every_notebook(tmp_path, capsys):
    src, out = tmp_path / "nb", tmp_path / "out" / "student"
    src.mkdir()
    for name in ("b.ipynb", "a.ipynb"):
        nbformat.write(synthetic_notebook(), src / name)
    assert main([str(src), str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.ipynb", "b.ipynb"]
    assert capsys.readouterr().out == "".join(
        f"{out / n}: 3 solutions replaced, 1 hidden-test blocks removed\n" for n in ("a.ipynb", "b.ipynb"))
    assert nbformat.read(out / "a.ipynb", as_version=4).cells[3].source.endswith(
        "raise NotImplementedError()\n")


def test_command_line_without_notebooks_fails_clearly(tmp_path, capsys):
    assert main([str(tmp_path), str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err == (
        f"error: No .ipynb files in {tmp_path}. Fix: pass the folder that holds the instructor "
        "notebooks, e.g. `python -m tools.classroom notebooks build/student`.\n")


def test_bad_marker_error_names_notebook_and_cell(tmp_path):
    nb = new_notebook(cells=[new_markdown_cell("hi"), new_code_cell("### BEGIN SOLUTION\nx = 1")])
    nbformat.write(nb, tmp_path / "bad.ipynb")
    with pytest.raises(ValueError) as info:
        write_student_copies(tmp_path, tmp_path / "out")
    assert str(info.value) == (f"{tmp_path / 'bad.ipynb'}: Cell 1 (code, counting from 0): BEGIN SOLUTION "
                               "on line 1 is never closed. Fix: add '### END SOLUTION' after the lines to "
                               "hide.")


def test_lookalike_in_a_markdown_cell_names_notebook_cell_and_line(tmp_path):
    answer = "Why?\n<!-- begin solutions -->\nsecret\n<!-- end solutions -->"
    nb = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("y = 2"), new_markdown_cell(answer)])
    nbformat.write(nb, tmp_path / "ex.ipynb")
    with pytest.raises(ValueError) as info:
        write_student_copies(tmp_path, tmp_path / "out")
    assert str(info.value).startswith(f"{tmp_path / 'ex.ipynb'}: Cell 2 (markdown, counting from 0): "
                                      "Line 2: '<!-- begin solutions -->' looks like a marker but is not one")


def test_a_bad_notebook_writes_no_copy_at_all(tmp_path):
    src, out = tmp_path / "nb", tmp_path / "out"
    src.mkdir()
    nbformat.write(synthetic_notebook(), src / "a.ipynb")
    nbformat.write(new_notebook(cells=[new_code_cell("### END SOLUTION")]), src / "b.ipynb")
    assert main([str(src), str(out)]) == 1
    assert not out.exists()


def test_marker_in_a_raw_cell_is_refused():
    nb = new_notebook(cells=[new_markdown_cell("# Title"),
                             new_raw_cell("### BEGIN SOLUTION\nsecret = 42\n### END SOLUTION")])
    with pytest.raises(ValueError) as info:
        student_notebook(nb)
    assert str(info.value) == (
        "Cell 1 (raw, counting from 0): marker text 'BEGIN SOLUTION' in a raw cell, which is copied into "
        "the student notebook as it is. Fix: make it a code cell (marker '### BEGIN SOLUTION') or a "
        "markdown cell (marker '<!-- BEGIN SOLUTION -->'), or take the answer out of it.")
    for text in ("<!-- begin solution -->\nsecret", "### BEGIN HIDDEN TESTS"):
        with pytest.raises(ValueError, match=r"^Cell 0 \(raw, counting from 0\): marker text"):
            student_notebook(new_notebook(cells=[new_raw_cell(text)]))


def test_raw_cell_without_markers_is_copied_unchanged():
    nb = new_notebook(cells=[new_raw_cell(".. note:: plain reST"), new_code_cell("x = 1")])
    assert student_notebook(nb)[0].cells == nb.cells


def _source_folder(tmp_path):
    src = tmp_path / "notebooks"
    src.mkdir()
    nbformat.write(synthetic_notebook(), src / "a.ipynb")
    return src, (src / "a.ipynb").read_bytes()


@pytest.mark.parametrize("spelling", ["same", "dot", "dotdot", "symlink", "relative"])
def test_output_folder_that_is_the_source_folder_is_refused(tmp_path, monkeypatch, capsys, spelling):
    src, key = _source_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    if spelling == "symlink":
        (tmp_path / "link").symlink_to(src, target_is_directory=True)
    out = {"same": str(src), "dot": f"{src}/.", "dotdot": f"{src}/../notebooks", "symlink": "link",
           "relative": "notebooks"}[spelling]
    assert main([str(src), out]) == 1
    assert (src / "a.ipynb").read_bytes() == key, "the answer key was overwritten"
    err = capsys.readouterr().err
    assert err == (f"error: The output folder {str(Path(out))!r} is the source folder {str(src)!r} (both are "
                   f"{src.resolve()}): the student copies would overwrite the instructor notebooks and "
                   "their solutions. Fix: pass another output folder, e.g. "
                   "`python -m tools.classroom notebooks build/student`.\n")


def test_output_file_that_links_to_an_instructor_notebook_is_refused(tmp_path):
    src, key = _source_folder(tmp_path)
    out = tmp_path / "student"
    out.mkdir()
    (out / "a.ipynb").symlink_to(src / "a.ipynb")
    with pytest.raises(ValueError) as info:
        write_student_copies(src, out)
    assert str(info.value) == (f"{out / 'a.ipynb'} is the instructor notebook {src / 'a.ipynb'} (a link to "
                               "it): writing the student copy there would overwrite the solutions. Fix: "
                               f"remove the link {out / 'a.ipynb'}, or pass another output folder.")
    (out / "a.ipynb").unlink()
    os.link(src / "a.ipynb", out / "a.ipynb")  # a hard link is the same file too
    with pytest.raises(ValueError, match="is the instructor notebook"):
        write_student_copies(src, out)
    assert (src / "a.ipynb").read_bytes() == key


def test_output_folder_inside_the_source_folder_is_fine(tmp_path):
    src, key = _source_folder(tmp_path)
    [(target, totals)] = write_student_copies(src, src / "student")
    assert target == src / "student" / "a.ipynb" and totals.solutions == 3
    assert (src / "a.ipynb").read_bytes() == key


# --------------------------------------------------------------------------- real notebooks

_MARK = re.compile(r"^\s*(?:<!--\s*|#+\s*)(BEGIN|END) (SOLUTION|HIDDEN TESTS)\s*(?:-->)?\s*$")


def _regions(source: str, kinds: tuple[str, ...] = ("SOLUTION", "HIDDEN TESTS")) -> list[tuple[int, int]]:
    """(first, last) 0-based line numbers of the lines inside each marked region of ``kinds``."""
    regions, start = [], None
    for number, line in enumerate(source.split("\n")):
        match = _MARK.match(line)
        if match and match.group(1) == "BEGIN":
            start = number + 1
        elif match and match.group(2) in kinds:
            regions.append((start, number - 1))
    return regions


def _is_solution(cell) -> bool:
    return cell.cell_type == "code" and bool(_regions(cell.source, ("SOLUTION",)))


@dataclass
class Exercise:
    """One solution cell and the check cells after it (up to the next markdown cell)."""

    number: int
    solution: int
    checks: list[int]


def exercises(nb) -> list[Exercise]:
    found: list[Exercise] = []
    current = None
    for index, cell in enumerate(nb.cells):
        if _is_solution(cell):
            current = Exercise(len(found) + 1, index, [])
            found.append(current)
        elif cell.cell_type == "markdown":
            current = None
        elif current is not None and cell.cell_type == "code":
            current.checks.append(index)
    return found


def _exercise_params():
    params = []
    for path in NOTEBOOKS:
        count = len(exercises(nbformat.read(path, as_version=4)))
        params += [pytest.param(path, k, id=f"{path.stem}-ex{k}") for k in range(1, count + 1)]
    return params


def _without_regions(nb):
    """``nb`` with every marked region and every solution cell's outputs deleted."""
    bare = new_notebook()
    for cell in nb.cells:
        lines = cell.source.split("\n")
        drop = {n for first, last in _regions(cell.source) for n in range(first - 1, last + 2)}
        source = "\n".join(line for n, line in enumerate(lines) if n not in drop)
        outputs = [] if _is_solution(cell) else cell.get("outputs", [])
        bare.cells.append(new_code_cell(source, outputs=outputs) if cell.cell_type == "code"
                          else new_markdown_cell(source))
    return bare


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_student_copy_keeps_no_solution_text(path):
    nb = nbformat.read(path, as_version=4)
    student = student_notebook(nb)[0]
    secret = set()
    for cell in nb.cells:
        lines = cell.source.split("\n")
        secret |= {line.strip() for first, last in _regions(cell.source) for line in lines[first:last + 1]}
    public = visible_text(_without_regions(nb))
    secret = {s for s in secret if s and not s.startswith("#") and s not in public}
    text = visible_text(student)
    assert [s for s in secret if s in text] == []
    assert [line for c in student.cells for line in c.source.split("\n") if _MARK.match(line)] == []
    found = exercises(nb)
    for exercise in found:
        cleared = [student.cells[i] for i in [exercise.solution, *exercise.checks]]
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in cleared)
    touched = {i for e in found for i in [e.solution, *e.checks]}
    untouched = [i for i, c in enumerate(nb.cells) if i not in touched and not _regions(c.source)]
    assert [student.cells[i] for i in untouched] == [nb.cells[i] for i in untouched]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_has_checked_exercises(path):
    found = exercises(nbformat.read(path, as_version=4))
    assert len(found) >= 3, f"{path.name}: {len(found)} exercises; the house style asks for 3 or more"
    assert [e.number for e in found if not e.checks] == [], "exercises without a check cell after them"


@pytest.mark.parametrize(("path", "number"), _exercise_params())
def test_exercise_stub_raises_and_wrong_answer_fails_check(path, number, mnist_root):
    report = run_exercises(path)
    assert report.setup_error is None, f"a prerequisite cell failed: {report.setup_error}"
    result = report.results[number]
    assert result.student_error == "NotImplementedError", (
        f"the student copy of exercise {number} (and its check) raised {result.student_error} instead")
    assert result.right_check_error is None, (
        f"the instructor's answer to exercise {number} failed its check: {result.right_check_error}")
    if result.mutation is None and result.declared:
        return  # no automatic wrong answer; the declared ones are checked by the next test
    if result.mutation is None:
        pytest.skip(f"exercise {number}: no wrong answer could be made from the solution "
                    "(no number to change, no name assigned at its top level)")
    assert result.wrong_check_error == "AssertionError", (
        f"exercise {number} with a wrong answer ({result.mutation}): the check gave "
        f"{result.wrong_check_error or 'no error'}; it must fail with AssertionError")


@pytest.mark.parametrize(("path", "number"), _exercise_params())
def test_declared_wrong_and_hard_coded_answers_fail_the_check(path, number, mnist_root):
    nb = nbformat.read(path, as_version=4)
    cell = nb.cells[exercises(nb)[number - 1].solution]
    kinds = [a["kind"] for a in declared_answers(cell)]
    assert "wrong" in kinds, f"exercise {number}: declare a plausible wrong answer in its metadata"
    if _asks_for_a_function(cell.source):
        assert "hard-coded" in kinds, (
            f"exercise {number} asks for a function: declare the visible example's answer hard-coded")
    result = run_exercises(path).results[number]
    assert [(kind, why) for kind, why, error in result.declared if error != "AssertionError"] == [], (
        f"exercise {number}: these answers passed the check (or failed it with another error)")


def test_with_solution_replaces_the_region_indented():
    source = "def f(x):\n    ### BEGIN SOLUTION\n    return x + 1\n    ### END SOLUTION\nprint(1)"
    assert with_solution(source, "y = x\nreturn 0") == (
        "def f(x):\n    ### BEGIN SOLUTION\n    y = x\n    return 0\n    ### END SOLUTION\nprint(1)")
    assert _asks_for_a_function(source) and not _asks_for_a_function("### BEGIN SOLUTION\nA = 1\n"
                                                                       "### END SOLUTION")


def test_wrong_answers_are_made_inside_the_solution_only():
    source = "a = 1\n### BEGIN SOLUTION\nx, y = 2, 0.5\n### END SOLUTION\nb = 3"
    assert mutate_numbers(source) == (
        "a = 1\n### BEGIN SOLUTION\nx, y = 3, 1.5\n### END SOLUTION\nb = 3", ["2 -> 3", "0.5 -> 1.5"])
    assert mutate_numbers(source, only=1)[0].split("\n")[2] == "x, y = 2, 1.5"
    assert mutate_names(source)[0].split("\n")[4:] == ["x = _lr_wrong(x)", "y = _lr_wrong(y)", "b = 3"]
    body = "def f():\n    ### BEGIN SOLUTION\n    return [1,\n            2]  # two\n    ### END SOLUTION"
    assert mutate_names("### BEGIN SOLUTION\ndef g(a):\n    return a\n### END SOLUTION") == (
        "### BEGIN SOLUTION\ndef g(a):\n    return a\n### END SOLUTION\ng = _lr_wrapped(g)",
        ["g() -> a wrong result"])
    assert mutate_names(body) == ("def f():\n    ### BEGIN SOLUTION\n    return _lr_wrong([1, 2])\n"
                                  "    ### END SOLUTION", ["return value -> a wrong value"])


def test_prerequisites_follow_names_back_to_the_setup_cell():
    nb = new_notebook(cells=[
        new_code_cell("%matplotlib inline\nimport math"), new_code_cell("slow = train()"),
        new_code_cell("def helper(k):\n    return math.sqrt(k)"), new_code_cell("unused = 1"),
        new_code_cell("### BEGIN SOLUTION\nanswer = helper(4)\n### END SOLUTION"),
        new_code_cell("assert answer == 2"),
    ])
    assert prerequisites(nb, [4, 5], exclude={4, 5}) == [0, 2]


# --------------------------------------------------------------------------- execution

_KNOWN = set(dir(builtins)) | {"display", "get_ipython", "In", "Out", "exit", "quit"}


def _names(source: str) -> tuple[set[str], set[str]]:
    """(names the cell binds, names it reads without binding them): a coarse, safe superset."""
    from IPython.core.inputtransformer2 import TransformerManager

    tree = ast.parse(TransformerManager().transform_cell(source))
    bound, read = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, ast.Store | ast.Del) else read).add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return bound, read - bound - _KNOWN


def prerequisites(nb, targets: list[int], exclude: set[int]) -> list[int]:
    """The setup cell and every earlier code cell binding a name the targets need (transitively)."""
    needed: set[str] = set()
    bound_so_far: set[str] = set()
    for index in targets:  # run in this order, so a name an earlier target binds is not needed
        bound, read = _names(nb.cells[index].source)
        needed |= read - bound_so_far
        bound_so_far |= bound
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and i not in exclude]
    chosen = set(code[:1])
    for index in reversed([i for i in code if i < max(targets)]):
        bound, read = _names(nb.cells[index].source)
        if bound & needed or index in chosen:
            chosen.add(index)
            needed |= read
    return sorted(chosen)


def mutate_numbers(source: str, only: int | None = None) -> tuple[str, list[str]]:
    """Change the numbers inside the solution regions: all, or only the ``only``-th one."""
    inside = {n + 1 for first, last in _regions(source, ("SOLUTION",)) for n in range(first, last + 1)}
    lines, edits = source.split("\n"), []
    numbers = [t for t in tokenize.generate_tokens(io.StringIO(source).readline)
               if t.type == tokenize.NUMBER and t.start[0] in inside]
    for k, tok in enumerate(numbers):
        if only is None or k == only:
            value = ast.literal_eval(tok.string)
            edits.append((tok, repr(value + 1 if isinstance(value, int) else value * 2 + 0.5)))
    for tok, new in reversed(edits):
        (row, start), (_, end) = tok.start, tok.end
        lines[row - 1] = lines[row - 1][:start] + new + lines[row - 1][end:]
    return "\n".join(lines), [f"{tok.string} -> {new}" for tok, new in edits]


WRONG_HELPER = """
def _lr_wrong(value):
    import numbers
    if isinstance(value, bool):
        return not value
    if isinstance(value, numbers.Integral):
        return value + 1
    if isinstance(value, numbers.Real):
        return value * 2 + 0.5
    if isinstance(value, str):
        return value + " (wrong)"
    if isinstance(value, list | tuple):
        return type(value)(list(value)[:-1] if len(value) > 1 else [*value, 0])
    if hasattr(value, "shape") and hasattr(value, "__add__"):
        return value + 1
    return None


def _lr_wrapped(function):
    return lambda *args, **kwargs: _lr_wrong(function(*args, **kwargs))
"""


def mutate_names(source: str) -> tuple[str, list[str]]:
    """Make each solution region's top-level assignments, return values and functions wrong."""
    lines, changes = source.split("\n"), []
    for first, last in reversed(_regions(source, ("SOLUTION",))):
        indent = re.match(r"\s*", lines[first - 1]).group(0)
        try:
            tree = ast.parse(textwrap.dedent("\n".join(lines[first:last + 1])))
        except SyntaxError:
            continue
        targets = [t for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
                   for t in getattr(node, "targets", [getattr(node, "target", None)])]
        targets += [e for t in targets if isinstance(t, ast.Tuple | ast.List) for e in t.elts]
        names = sorted({t.id for t in targets if isinstance(t, ast.Name)})
        functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        lines[last + 2:last + 2] = [f"{indent}{n} = _lr_wrong({n})" for n in names] + [
            f"{indent}{f} = _lr_wrapped({f})" for f in functions]
        changes += [f"{n} -> a wrong value" for n in names] + [f"{f}() -> a wrong result" for f in functions]
        for node in reversed([n for n in tree.body if isinstance(n, ast.Return) and n.value]):
            wrong = ast.Return(ast.Call(ast.Name("_lr_wrong", ast.Load()), [node.value], []))
            row = first + node.lineno - 1
            lines[row:first + node.end_lineno] = [re.match(r"\s*", lines[row]).group(0) + ast.unparse(wrong)]
            changes.append("return value -> a wrong value")
    return "\n".join(lines), changes


@dataclass
class ExerciseResult:
    student_error: str | None = None
    mutation: str | None = None
    wrong_check_error: str | None = None
    right_check_error: str | None = None
    declared: list[tuple[str, str, str | None]] = field(default_factory=list)  # (kind, why, error)


ANSWER_KINDS = ("wrong", "hard-coded")


def declared_answers(cell) -> list[dict]:
    """The plausible answers a solution cell declares in its metadata (see the module docstring)."""
    answers = cell.get("metadata", {}).get("lrworkbook", {}).get("answers", [])
    for answer in answers:
        assert set(answer) == {"kind", "why", "solution"} and answer["kind"] in ANSWER_KINDS, answer
    return answers


def with_solution(source: str, solution: str) -> str:
    """``source`` with the lines of its first solution region replaced by ``solution``."""
    first, last = _regions(source, ("SOLUTION",))[0]
    lines = source.split("\n")
    indent = re.match(r"\s*", lines[first - 1]).group(0)
    body = [indent + line if line.strip() else line for line in textwrap.dedent(solution).split("\n")]
    return "\n".join(lines[:first] + body + lines[last + 1:])


def _asks_for_a_function(source: str) -> bool:
    """True if the exercise's answer is (the body of) a function the check calls."""
    first, _ = _regions(source, ("SOLUTION",))[0]
    before = source.split("\n")[:first]
    return any(line.lstrip().startswith("def ") for line in before) or bool(
        re.search(r"^\s*def ", "\n".join(source.split("\n")[first:]), re.MULTILINE))


@dataclass
class Report:
    setup_error: str | None = None
    results: dict[int, ExerciseResult] = field(default_factory=dict)


class Kernel:
    """One quick-mode kernel with cwd notebooks/; ``run`` returns the error's name or None."""

    def __init__(self, cwd: Path) -> None:
        from nbclient import NotebookClient

        self.nb = new_notebook()
        self.client = NotebookClient(self.nb, timeout=300, kernel_name="python3", allow_errors=True,
                                     resources={"metadata": {"path": str(cwd)}})
        self.env = {**os.environ, "LRTOOLS_QUICK": "1", "TQDM_DISABLE": "1", "MPLBACKEND": "Agg"}

    def __enter__(self) -> Kernel:
        self._context = self.client.setup_kernel(env=self.env)
        self._context.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._context.__exit__(*exc)

    def run(self, source: str) -> str | None:
        cell = new_code_cell(source)
        self.nb.cells.append(cell)
        self.client.execute_cell(cell, len(self.nb.cells) - 1)
        errors = [o for o in cell.outputs if o.output_type == "error"]
        return errors[0].ename if errors else None

    def run_all(self, sources: list[str]) -> str | None:
        for source in sources:
            if error := self.run(source):
                return error
        return None


@functools.cache
def run_exercises(path: Path) -> Report:
    """Prerequisites once, then per exercise: student stub, wrong answers, right answer."""
    nb = nbformat.read(path, as_version=4)
    student = student_notebook(nb)[0]
    found = exercises(nb)
    exercise_cells = {i for e in found for i in [e.solution, *e.checks]}
    report = Report()
    with Kernel(path.parent) as kernel:
        for index in [*prerequisites(nb, sorted(exercise_cells), exercise_cells), None]:
            source = WRONG_HELPER if index is None else nb.cells[index].source
            if error := kernel.run(source):
                report.setup_error = f"cell {index} raised {error}"
                return report
        for exercise in found:
            report.results[exercise.number] = _run_one(kernel, nb, student, exercise)
    return report


def _run_one(kernel: Kernel, nb, student, exercise: Exercise) -> ExerciseResult:
    """Stub, then wrong answers until one fails its check, then the right answer and its check."""
    source = nb.cells[exercise.solution].source
    checks = [nb.cells[i].source for i in exercise.checks]
    # A stub inside a function body raises only when the check calls the function.
    result = ExerciseResult(student_error=kernel.run_all([student.cells[exercise.solution].source, *checks]))
    everything = mutate_numbers(source)
    count = len(everything[1])
    singles = [mutate_numbers(source, only=k) for k in range(count)] if count > 1 else []
    for mutated, changes in [everything, *singles[:6], mutate_names(source)]:
        if not changes or kernel.run(mutated):
            continue
        result.mutation = ", ".join(changes)
        result.wrong_check_error = kernel.run_all(checks)
        if result.wrong_check_error == "AssertionError":
            break
    for answer in declared_answers(nb.cells[exercise.solution]):
        error = kernel.run_all([with_solution(source, answer["solution"]), *checks])
        result.declared.append((answer["kind"], answer["why"], error))
    result.right_check_error = kernel.run_all([source, *checks])
    return result

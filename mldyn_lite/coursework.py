r"""Student and instructor editions of the book's notebooks, from one source.

The book's notebooks carry their exercises and solutions in sphinx-exercise syntax (see
CONTRIBUTING.md):

* a text solution is a ``{solution}`` directive (a fenced block opened by three backticks and
  ``{solution} ex-label``);
* a solution with code is *gated*: a markdown block ``{solution-start} ex-label``, then code
  cells tagged ``solution`` (and markdown), then a block ``{solution-end}``;
* a code cell tagged ``self-check``, placed after the solution, calls a check from
  :mod:`mldyn_lite.selfcheck` on the reader's function.

The **student edition** of a notebook

* removes every solution text (``{solution}`` blocks, and all markdown between ``solution-start``
  and ``solution-end``);
* replaces the code cells of each gated solution by one *stub* cell: the signatures of the functions
  the solution defines, each raising ``NotImplementedError``, and — when the solution also runs code —
  a final ``raise NotImplementedError("Exercise ex-…: your code here")``;
* keeps the self-check cells, with their outputs cleared.

So the student edition runs from the top down to the first exercise, and stops there with a
``NotImplementedError`` that names the exercise (in the stub, or in its self-check).

The **instructor edition** is the book's notebook itself (a byte-identical copy), outputs and
solutions included.

The **nbgrader course** of a chapter (:func:`write_nbgrader_course`) is an nbgrader course folder —
``nbgrader_config.py`` and ``source/<chN>/<chN>.ipynb`` — whose assignment notebook holds the chapter's graded
problems (:mod:`mldyn_lite.coursework_problems`), not the chapter's pages: a locked introduction and setup cell,
then per problem a locked statement, a solution cell (each function body between ``### BEGIN SOLUTION`` and
``### END SOLUTION``), an autograded test cell with the self-check or visible asserts, and an autograded cell of
hidden tests (``### BEGIN HIDDEN TESTS``). All of it is nbgrader's own cell metadata (schema 3); the teacher
then runs nbgrader's commands (``nbgrader generate_assignment chN``, ``nbgrader autograde chN``,
``nbgrader generate_feedback chN``) in that folder.

Command line::

    python -m mldyn_lite.coursework student notebooks/ student/        # every notebook below notebooks/
    python -m mldyn_lite.coursework student notebooks/ch1 ch1-student/  # one chapter
    python -m mldyn_lite.coursework instructor notebooks/ instructor/
    python -m mldyn_lite.coursework nbgrader ch1 course/                # nbgrader course folder, assignment ch1
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "EDITIONS",
    "NBGRADER_CODE_STUB",
    "NBGRADER_CONFIG",
    "NBGRADER_SCHEMA_VERSION",
    "SELF_CHECK_TAG",
    "SOLUTION_TAG",
    "Block",
    "CourseworkError",
    "EditionReport",
    "find_notebooks",
    "main",
    "markdown_blocks",
    "nbgrader_notebook",
    "solution_regions",
    "student_notebook",
    "stub_source",
    "write_edition",
    "write_nbgrader_course",
]

SOLUTION_TAG = "solution"
SELF_CHECK_TAG = "self-check"
EDITIONS = ("student", "instructor")
NBGRADER_SCHEMA_VERSION = 3
NBGRADER_CODE_STUB = (
    "# YOUR CODE HERE: replace the next line (raise NotImplementedError) by your code\nraise NotImplementedError()"
)

# A fence opens with 3+ backticks, tildes or colons (MyST colon_fence), optionally a {directive} and argument.
_FENCE_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,}|:{3,})\s*(?:\{(?P<directive>[^}\s]+)\})?\s*(?P<argument>.*?)\s*$")


class CourseworkError(ValueError):
    """A notebook's exercises are not in the form the editions need; the message says where and why."""


@dataclass
class Block:
    """A top-level piece of a markdown cell: plain lines, or one fenced block."""

    text: str
    directive: str | None = None
    argument: str = ""


def markdown_blocks(source: str) -> list[Block]:
    """Split markdown into top-level blocks; a fenced block ends at a fence of the same character, at least as long."""
    blocks: list[Block] = []
    plain: list[str] = []
    lines = source.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        opening = _FENCE_OPEN.match(lines[i].rstrip("\n"))
        if not opening:
            plain.append(lines[i])
            i += 1
            continue
        if plain:
            blocks.append(Block("".join(plain)))
            plain = []
        fence = opening.group("fence")
        closing = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end].rstrip("\n")):
            end += 1
        if end == len(lines):
            raise CourseworkError(f"the fence {fence} opened by {lines[i].strip()!r} is never closed")
        blocks.append(Block("".join(lines[i : end + 1]), opening.group("directive"), opening.group("argument")))
        i = end + 1
    if plain:
        blocks.append(Block("".join(plain)))
    return blocks


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _clear_execution_metadata(cell: dict) -> None:
    """Drop what records a past run (timings of Jupyter's ``record_timing``, collapsed/scrolled output state)."""
    metadata = cell.get("metadata", {})
    for key in ("execution", "collapsed", "scrolled"):
        metadata.pop(key, None)


def _cell_id(label: str, taken: set[str]) -> str:
    base = ("stub-" + re.sub(r"[^A-Za-z0-9_-]", "-", label))[:60]
    name, k = base, 1
    while name in taken:
        k += 1
        name = f"{base}-{k}"
    taken.add(name)
    return name


def stub_source(label: str, solution_sources: list[str]) -> str:
    """The code a student starts from: the solution's function signatures, each raising NotImplementedError."""
    header = (
        f"# Exercise {label}: your code here (the book's solution is not in this edition).\n"
        "# Replace each `raise NotImplementedError(...)` line below by your code, then run the self-check "
        "below, if any."
    )
    definitions, other_code = [], False
    for source in solution_sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:  # IPython magics and the like: no signatures to offer
            other_code = True
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                definitions.append(_function_stub(node, label, ""))
            elif isinstance(node, ast.ClassDef):
                definitions.append(_class_stub(node, label))
            elif not isinstance(node, (ast.Import, ast.ImportFrom)):
                other_code = True
    parts = [header, *definitions]
    if other_code or not definitions:
        parts.append(
            "# replace the next line by the code of your solution that runs the experiment"
            if definitions
            else "# replace the next line by your code"
        )
        parts[-1] += f'\nraise NotImplementedError("Exercise {label}: your code here")'
    return "\n\n\n".join(parts) if definitions else "\n".join(parts)


def _docstring(node, indent: str) -> list[str]:
    doc = ast.get_docstring(node)
    if not doc:
        return []
    lines = doc.replace('"""', r"\"\"\"").split("\n")
    if len(lines) == 1:
        return [f'{indent}    """{lines[0]}"""']
    return [f'{indent}    """{lines[0]}', *[f"{indent}    {line}" if line else "" for line in lines[1:]], f'{indent}    """']


def _function_stub(node, label: str, indent: str) -> str:
    keyword = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    lines = [
        f"{indent}{keyword} {node.name}({ast.unparse(node.args)}){returns}:",
        *_docstring(node, indent),
        f"{indent}    # replace the next line by the body of {node.name}",
        f'{indent}    raise NotImplementedError("Exercise {label}: write {node.name}")',
    ]
    return "\n".join(lines)


def _class_stub(node: ast.ClassDef, label: str) -> str:
    bases = ", ".join(ast.unparse(b) for b in node.bases + node.keywords)
    lines = [f"class {node.name}({bases}):" if bases else f"class {node.name}:", *_docstring(node, "")]
    methods = [
        _function_stub(item, label, "    ")
        for item in node.body
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]
    body = "\n\n".join(methods) if methods else f'    raise NotImplementedError("Exercise {label}: write {node.name}")'
    return "\n".join(lines) + "\n" + body


@dataclass
class _Gate:
    label: str
    stub_index: int | None = None
    sources: list[str] = field(default_factory=list)


@dataclass
class EditionReport:
    """What :func:`student_notebook` removed and added, for the command's summary."""

    text_solutions: list[str] = field(default_factory=list)
    code_solutions: list[str] = field(default_factory=list)
    self_checks: int = 0


def student_notebook(nb: dict, name: str = "notebook") -> tuple[dict, EditionReport]:
    """Return the student edition of a notebook (an nbformat-4 dict; the input is not modified).

    Raises :class:`CourseworkError`, naming ``name`` and the cell, when a solution would leak or an
    exercise is malformed: an unclosed or nested gated solution, a code cell tagged ``solution`` outside
    a gated solution, a code cell inside one that is not tagged ``solution``, a self-check inside a solution.
    """
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise CourseworkError(f"{name}: not a notebook (no list of cells)")
    out = copy.deepcopy(nb)
    cells_out: list[dict] = []
    report = EditionReport()
    taken_ids = {c.get("id") for c in nb["cells"] if c.get("id")}
    gate: _Gate | None = None

    def where(k: int) -> str:
        return f"{name}, cell {k}"

    for k, cell in enumerate(nb["cells"]):
        kind, tags = cell.get("cell_type"), _tags(cell)
        if kind == "markdown":
            kept = []
            try:
                blocks = markdown_blocks(_source(cell))
            except CourseworkError as exc:
                raise CourseworkError(f"{where(k)}: {exc}") from None
            for block in blocks:
                if block.directive == "solution":
                    if gate is not None:
                        raise CourseworkError(f"{where(k)}: a {{solution}} inside the gated solution of {gate.label}")
                    report.text_solutions.append(block.argument)
                elif block.directive == "solution-start":
                    if gate is not None:
                        raise CourseworkError(
                            f"{where(k)}: solution-start {block.argument} inside the gated "
                            f"solution of {gate.label} (missing solution-end?)"
                        )
                    if not block.argument:
                        raise CourseworkError(f"{where(k)}: solution-start without an exercise label")
                    gate = _Gate(block.argument)
                elif block.directive == "solution-end":
                    if gate is None:
                        raise CourseworkError(f"{where(k)}: solution-end without solution-start")
                    if gate.stub_index is not None:
                        cells_out[gate.stub_index]["source"] = stub_source(gate.label, gate.sources)
                        report.code_solutions.append(gate.label)
                    else:
                        report.text_solutions.append(gate.label)
                    gate = None
                elif gate is None and SOLUTION_TAG not in tags:
                    kept.append(block.text)
            text = re.sub(r"\n{3,}", "\n\n", "".join(kept)).strip("\n")
            if text.strip():
                new = copy.deepcopy(cell)
                new["source"] = text
                cells_out.append(new)
        elif kind == "code":
            if SOLUTION_TAG in tags:
                if gate is None:
                    raise CourseworkError(
                        f"{where(k)}: a code cell tagged {SOLUTION_TAG!r} outside a gated solution "
                        "(it would be shown in the book); put it between solution-start and solution-end"
                    )
                if gate.stub_index is None:
                    stub = {
                        "cell_type": "code",
                        "execution_count": None,
                        "id": _cell_id(gate.label, taken_ids),
                        "metadata": {"tags": ["exercise-stub"]},
                        "outputs": [],
                        "source": "",
                    }
                    if "id" not in cell:
                        del stub["id"]
                    cells_out.append(stub)
                    gate.stub_index = len(cells_out) - 1
                gate.sources.append(_source(cell))
            elif gate is not None:
                what = "a self-check" if SELF_CHECK_TAG in tags else f"a code cell not tagged {SOLUTION_TAG!r}"
                raise CourseworkError(
                    f"{where(k)}: {what} inside the gated solution of {gate.label}; "
                    "self-checks go after solution-end, solution code is tagged 'solution'"
                )
            else:
                new = copy.deepcopy(cell)
                if SELF_CHECK_TAG in tags:
                    new["outputs"], new["execution_count"] = [], None
                    _clear_execution_metadata(new)
                    report.self_checks += 1
                cells_out.append(new)
        else:  # raw cells
            if gate is None and SOLUTION_TAG not in tags:
                cells_out.append(copy.deepcopy(cell))
    if gate is not None:
        raise CourseworkError(f"{name}: the gated solution of {gate.label} has no solution-end")
    out["cells"] = cells_out
    return out, report


# --- nbgrader course ----------------------------------------------------------------------------


def _nbgrader_cell(
    cell: dict, grade_id: str, *, solution: bool = False, grade: bool = False, points: int = 0, locked: bool = False
) -> dict:
    meta = {
        "grade": grade,
        "grade_id": grade_id,
        "locked": locked,
        "schema_version": NBGRADER_SCHEMA_VERSION,
        "solution": solution,
        "task": False,
    }
    if grade:
        meta["points"] = points
    cell["metadata"]["nbgrader"] = meta
    return cell


def _markdown(text: str, cell_id: str) -> dict:
    return {"cell_type": "markdown", "id": cell_id, "metadata": {}, "source": text}


def _code(text: str, cell_id: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": cell_id, "metadata": {}, "outputs": [], "source": text}


def solution_regions(source: str) -> str:
    """The reference ``source`` with the body of each top-level function (after its docstring) between
    nbgrader's ``### BEGIN SOLUTION`` and ``### END SOLUTION``; code outside functions is left visible.

    Raises :class:`CourseworkError` when ``source`` defines no function (there would be nothing to write).
    """
    tree = ast.parse(source)
    lines = source.split("\n")
    regions = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            if not body:
                raise CourseworkError(f"function {node.name} has no body after its docstring")
            indent = re.match(r"\s*", lines[body[0].lineno - 1]).group(0)
            regions.append((body[0].lineno - 1, node.end_lineno, indent))
    if not regions:
        raise CourseworkError("the solution defines no function: nothing to leave to the student")
    for start, end, indent in reversed(regions):
        lines[end:end] = [f"{indent}### END SOLUTION"]
        lines[start:start] = [f"{indent}### BEGIN SOLUTION"]
    return "\n".join(lines)


def nbgrader_notebook(chapter: str) -> dict:
    """The nbgrader source notebook of ``chapter`` ("ch1" … "ch4"): its graded problems, nbgrader metadata set."""
    from .coursework_problems import CHAPTERS, SETUP, problems

    graded = problems(chapter)
    total = sum(p.points for p in graded)
    listing = "\n".join(f"{k}. **{p.title}** ({p.kind}, {p.points} points)" for k, p in enumerate(graded, 1))
    intro = (
        f"# Coursework, chapter {chapter[2:]}: {CHAPTERS[chapter]}\n\n"
        f"{len(graded)} problems, {total} points:\n\n{listing}\n\n"
        "In each solution cell, replace the line `raise NotImplementedError()` (under `# YOUR CODE HERE`) by your "
        "code; keep the function's name and arguments. Derivations asked for go in your own notes or a new "
        "Markdown cell. The test cell after each solution runs checks you can see (a failed check stops with "
        "a message: the case, the expected and the obtained value, a hint); hidden tests of the same problem run "
        "when your notebook is graded. Before you submit: *Kernel → Restart & Run All*, and no cell should stop "
        "with an error."
    )
    cells = [
        _nbgrader_cell(_markdown(intro, f"{chapter}-intro"), f"{chapter}-intro", locked=True),
        _nbgrader_cell(_code(SETUP, f"{chapter}-setup"), f"{chapter}-setup", locked=True),
    ]
    for k, problem in enumerate(graded, 1):
        gid = problem.label
        statement = (
            f"## Problem {k}: {problem.title}\n\n*{problem.kind.capitalize()} · {problem.points} points "
            f"(`{gid}`)*\n\n{problem.statement}"
        )
        cells += [
            _nbgrader_cell(_markdown(statement, f"{gid}-text"), f"{gid}-text", locked=True),
            _nbgrader_cell(
                _code(
                    f"# Problem {k} ({gid}): replace the line `raise NotImplementedError()` in each "
                    "function below by your code.\n" + solution_regions(problem.solution),
                    f"{gid}-solution",
                ),
                f"{gid}-solution",
                solution=True,
            ),
            _nbgrader_cell(
                _code(
                    f"# Tests of problem {k} ({gid}), {problem.visible_points} points.\n" + problem.visible_tests,
                    f"{gid}-tests",
                ),
                f"{gid}-tests",
                grade=True,
                points=problem.visible_points,
                locked=True,
            ),
            _nbgrader_cell(
                _code(
                    f"# Hidden tests of problem {k} ({gid}), {problem.hidden_points} points: they run when "
                    "your notebook is graded.\n### BEGIN HIDDEN TESTS\n" + problem.hidden_tests + "\n### END HIDDEN TESTS",
                    f"{gid}-hidden",
                ),
                f"{gid}-hidden",
                grade=True,
                points=problem.hidden_points,
                locked=True,
            ),
        ]
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


NBGRADER_CONFIG = """# nbgrader configuration of the course written by `python -m mldyn_lite.coursework nbgrader`.
# Run nbgrader's commands in this folder: nbgrader generate_assignment {chapter}; nbgrader autograde {chapter}; ...
c = get_config()  # noqa: F821 (provided by nbgrader)
c.CourseDirectory.course_id = "mldyn"
c.ClearSolutions.code_stub = {{"python": {stub!r}}}
c.ExecutePreprocessor.timeout = 300  # seconds per cell when autograding
"""


def write_nbgrader_course(chapter: str, target: str | Path) -> Path:
    """Write an nbgrader course folder for ``chapter`` below ``target``: ``nbgrader_config.py`` (kept if present)
    and ``source/<chapter>/<chapter>.ipynb``. Returns the notebook's path."""
    target = Path(target).resolve()
    if target.exists() and not target.is_dir():
        raise CourseworkError(f"{target} exists and is not a folder")
    try:
        nb = nbgrader_notebook(chapter)
    except ValueError as exc:
        raise CourseworkError(str(exc)) from None
    notebook = target / "source" / chapter / f"{chapter}.ipynb"
    notebook.parent.mkdir(parents=True, exist_ok=True)
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    config = target / "nbgrader_config.py"
    if not config.exists():  # several chapters share one course folder
        config.write_text(NBGRADER_CONFIG.format(chapter=chapter, stub=NBGRADER_CODE_STUB), encoding="utf-8")
    return notebook


# --- files and command line ---------------------------------------------------------------------


def find_notebooks(source: Path) -> list[Path]:
    """The notebooks at ``source`` (a notebook, or a folder searched recursively), checkpoints excluded."""
    if source.is_file():
        if source.suffix != ".ipynb":
            raise CourseworkError(f"{source} is not a notebook (.ipynb)")
        return [source]
    if not source.is_dir():
        raise CourseworkError(f"{source} does not exist")
    found = sorted(p for p in source.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not found:
        raise CourseworkError(f"no notebooks (.ipynb) in {source}")
    return found


def _read(path: Path) -> dict:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CourseworkError(f"{path}: cannot read it as a notebook ({exc})") from None
    if not isinstance(nb, dict) or nb.get("nbformat") != 4:
        raise CourseworkError(f"{path}: not an nbformat-4 notebook")
    return nb


def write_edition(edition: str, source: str | Path, target: str | Path) -> list[tuple[Path, EditionReport | None]]:
    """Write the ``edition`` ("student" or "instructor") of every notebook at ``source`` below ``target``.

    Folder structure is kept: ``notebooks/ch1/x.ipynb`` → ``target/ch1/x.ipynb`` for ``source=notebooks``.
    All notebooks are converted before anything is written, so a malformed one leaves ``target`` untouched.
    """
    if edition not in EDITIONS:
        raise CourseworkError(f"edition must be one of {list(EDITIONS)}, got {edition!r}")
    source, target = Path(source).resolve(), Path(target).resolve()
    notebooks = find_notebooks(source)
    root = source if source.is_dir() else source.parent
    if target.exists() and not target.is_dir():
        raise CourseworkError(f"{target} exists and is not a folder")
    if target == root or root in target.parents:
        raise CourseworkError(f"the output folder {target} must not be inside the source {root}")
    planned = []
    for path in notebooks:
        destination = target / path.relative_to(root)
        if edition == "instructor":
            _read(path)  # check that it is a notebook
            planned.append((path, destination, None, None))
        else:
            nb, report = student_notebook(_read(path), name=str(path.relative_to(root)))
            planned.append((path, destination, nb, report))
    written = []
    for path, destination, nb, report in planned:
        destination.parent.mkdir(parents=True, exist_ok=True)
        if nb is None:
            shutil.copyfile(path, destination)  # the instructor edition is the book's notebook, byte for byte
        else:
            destination.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append((destination, report))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mldyn_lite.coursework",
        description="Write the student edition (solutions replaced by stubs and self-checks) or the instructor "
        "edition (the book's notebooks) of the notebooks in SOURCE, or an nbgrader course folder with "
        "the graded problems of chapter SOURCE.",
    )
    parser.add_argument(
        "edition",
        choices=(*EDITIONS, "nbgrader"),
        help="student, instructor, or nbgrader (an nbgrader course folder with one chapter's assignment)",
    )
    parser.add_argument(
        "source",
        help="a notebook, or a folder searched for notebooks (e.g. notebooks/ or notebooks/ch1); "
        "for nbgrader the chapter: ch1, ch2, ch3 or ch4",
    )
    parser.add_argument("output", help="folder to write the edition to (created if missing)")
    args = parser.parse_args(argv)
    if args.edition == "nbgrader":
        try:
            notebook = write_nbgrader_course(args.source, args.output)
        except CourseworkError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        root = notebook.parents[2]
        print(f"{notebook}\nnbgrader course in {root}: cd there and run `nbgrader generate_assignment {args.source}`")
        return 0
    try:
        written = write_edition(args.edition, args.source, args.output)
    except CourseworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path, report in written:
        if report is None:
            print(f"{path}")
        else:
            print(
                f"{path}: {len(report.code_solutions)} code stubs, {len(report.text_solutions)} text solutions "
                f"removed, {report.self_checks} self-checks"
            )
    print(f"{args.edition} edition: {len(written)} notebooks in {Path(args.output).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

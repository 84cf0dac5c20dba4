r"""Student and instructor editions of the book's notebooks, from one source.

The book's notebooks carry their exercises and solutions in sphinx-exercise syntax (see
CONTRIBUTING.md):

* a text solution is a ``{solution}`` directive, ```` ```{solution} ex-label ```` … ```` ``` ````;
* a solution with code is *gated*: a markdown block ```` ```{solution-start} ex-label ````, then code
  cells tagged ``solution`` (and markdown), then a block ```` ```{solution-end} ````;
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

Command line::

    python -m mldyn_lite.coursework student notebooks/ student/        # every notebook below notebooks/
    python -m mldyn_lite.coursework student notebooks/ch1 ch1-student/  # one chapter
    python -m mldyn_lite.coursework instructor notebooks/ instructor/
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

SOLUTION_TAG = "solution"
SELF_CHECK_TAG = "self-check"
EDITIONS = ("student", "instructor")

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
        blocks.append(Block("".join(lines[i:end + 1]), opening.group("directive"), opening.group("argument")))
        i = end + 1
    if plain:
        blocks.append(Block("".join(plain)))
    return blocks


def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def _source(cell) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


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
    header = f"# Exercise {label}: your code here (the book's solution is not in this edition)."
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
        parts.append(f'raise NotImplementedError("Exercise {label}: your code here")')
    return "\n\n\n".join(parts) if definitions else "\n".join(parts)


def _docstring(node, indent: str) -> list[str]:
    doc = ast.get_docstring(node)
    if not doc:
        return []
    lines = doc.replace('"""', r'\"\"\"').split("\n")
    if len(lines) == 1:
        return [f'{indent}    """{lines[0]}"""']
    return [f'{indent}    """{lines[0]}', *[f"{indent}    {line}" if line else "" for line in lines[1:]], f'{indent}    """']


def _function_stub(node, label: str, indent: str) -> str:
    keyword = "async def" if isinstance(node, ast.AsyncFunctionDef) else "def"
    returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
    lines = [f"{indent}{keyword} {node.name}({ast.unparse(node.args)}){returns}:", *_docstring(node, indent),
             f'{indent}    raise NotImplementedError("Exercise {label}: write {node.name}")']
    return "\n".join(lines)


def _class_stub(node: ast.ClassDef, label: str) -> str:
    bases = ", ".join(ast.unparse(b) for b in node.bases + node.keywords)
    lines = [f"class {node.name}({bases}):" if bases else f"class {node.name}:", *_docstring(node, "")]
    methods = [_function_stub(item, label, "    ") for item in node.body
               if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))]
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
                        raise CourseworkError(f"{where(k)}: solution-start {block.argument} inside the gated "
                                              f"solution of {gate.label} (missing solution-end?)")
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
                    raise CourseworkError(f"{where(k)}: a code cell tagged {SOLUTION_TAG!r} outside a gated solution "
                                          "(it would be shown in the book); put it between solution-start and solution-end")
                if gate.stub_index is None:
                    stub = {"cell_type": "code", "execution_count": None, "id": _cell_id(gate.label, taken_ids),
                            "metadata": {"tags": ["exercise-stub"]}, "outputs": [], "source": ""}
                    if "id" not in cell:
                        del stub["id"]
                    cells_out.append(stub)
                    gate.stub_index = len(cells_out) - 1
                gate.sources.append(_source(cell))
            elif gate is not None:
                what = "a self-check" if SELF_CHECK_TAG in tags else f"a code cell not tagged {SOLUTION_TAG!r}"
                raise CourseworkError(f"{where(k)}: {what} inside the gated solution of {gate.label}; "
                                      "self-checks go after solution-end, solution code is tagged 'solution'")
            else:
                new = copy.deepcopy(cell)
                if SELF_CHECK_TAG in tags:
                    new["outputs"], new["execution_count"] = [], None
                    report.self_checks += 1
                cells_out.append(new)
        else:  # raw cells
            if gate is None and SOLUTION_TAG not in tags:
                cells_out.append(copy.deepcopy(cell))
    if gate is not None:
        raise CourseworkError(f"{name}: the gated solution of {gate.label} has no solution-end")
    out["cells"] = cells_out
    return out, report


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
                    "edition (the book's notebooks) of the notebooks in SOURCE.")
    parser.add_argument("edition", choices=EDITIONS)
    parser.add_argument("source", help="a notebook, or a folder searched for notebooks (e.g. notebooks/ or notebooks/ch1)")
    parser.add_argument("output", help="folder to write the edition to (created if missing)")
    args = parser.parse_args(argv)
    try:
        written = write_edition(args.edition, args.source, args.output)
    except CourseworkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path, report in written:
        if report is None:
            print(f"{path}")
        else:
            print(f"{path}: {len(report.code_solutions)} code stubs, {len(report.text_solutions)} text solutions "
                  f"removed, {report.self_checks} self-checks")
    print(f"{args.edition} edition: {len(written)} notebooks in {Path(args.output).resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

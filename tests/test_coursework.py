"""Student and instructor editions: the student edition carries no solution and runs down to the first exercise."""

import ast
import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from mldyn_lite.coursework import CourseworkError, main, markdown_blocks, stub_source, student_notebook, write_edition

ROOT = Path(__file__).resolve().parents[1]
CHAPTER_1 = ROOT / "notebooks" / "ch1"
SMALL_NOTEBOOK = CHAPTER_1 / "03_three_interactions.ipynb"


def md(text):
    return nbformat.v4.new_markdown_cell(text)


def code(text, tags=(), outputs=(), execution=None):
    cell = nbformat.v4.new_code_cell(text)
    cell.metadata["tags"] = list(tags)
    if execution:
        cell.metadata["execution"] = execution
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=o) for o in outputs]
    return cell


def synthetic_notebook():
    """Text and code before the exercises, a text solution, a gated code solution with a self-check, code after."""
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        md("# Demo\n\nSome text with $x^2$."),
        code("data = [1, 2, 3]\nprint(sum(data))", outputs=["6\n"]),
        md(
            "## Exercises\n\n```{exercise} Think\n:label: ex-demo-think\n\nWhy?\n```\n\n"
            "```{solution} ex-demo-think\n:class: dropdown\n\nBecause SECRET-TEXT-ANSWER.\n```\n\n"
            "```{exercise} Code\n:label: ex-demo-code\n\nWrite `double(x)`.\n```\n\n"
            "```{solution-start} ex-demo-code\n:class: dropdown\n```\n\nSECRET-GATED-INTRO explains the idea."
        ),
        code(
            'def double(x):\n    """Twice x."""\n    return SECRET_FACTOR * x\n\n\nSECRET_FACTOR = 2\nprint(double(21))',
            tags=["solution"],
            outputs=["SECRET-OUTPUT 4242\n"],
        ),
        md("SECRET-GATED-OUTRO.\n\n```{solution-end}\n```\n\nText after the solution stays."),
        code(
            "assert double(4) == 8\nprint('self-check passed')",
            tags=["self-check"],
            outputs=["self-check passed\n"],
            execution={
                "iopub.execute_input": "2026-11-28T22:49:15.314546Z",
                "shell.execute_reply": "2026-11-28T22:49:15.358363Z",
            },
        ),
        code("print(len(data))", outputs=["3\n"]),
    ]
    return nb


SECRETS = ["SECRET", "{solution", "solution-start", "solution-end", "return SECRET_FACTOR * x", "4242"]


def all_text(nb) -> str:
    """Everything a student could read: sources and outputs (cell ids are random, so they are left out)."""
    parts = []
    for cell in nb["cells"]:
        parts.append(json.dumps(cell.get("source", ""), ensure_ascii=False))
        parts.append(json.dumps(cell.get("outputs", []), ensure_ascii=False))
    return "\n".join(parts)


def test_student_edition_of_synthetic_notebook():
    nb = synthetic_notebook()
    before = json.dumps(nb, sort_keys=True)
    student, report = student_notebook(nb, "demo.ipynb")
    student = nbformat.from_dict(student)  # the module returns plain dicts: it needs no nbformat
    assert json.dumps(nb, sort_keys=True) == before, "the input notebook must not change"
    text = all_text(student)
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into the student edition"
    assert report.text_solutions == ["ex-demo-think"] and report.code_solutions == ["ex-demo-code"]
    assert report.self_checks == 1
    kinds = [(c.cell_type, c.metadata.get("tags", [])) for c in student.cells]
    assert kinds == [
        ("markdown", []),
        ("code", []),
        ("markdown", []),
        ("code", ["exercise-stub"]),
        ("markdown", []),
        ("code", ["self-check"]),
        ("code", []),
    ]
    stub, self_check = student.cells[3], student.cells[5]
    assert stub.source.startswith("# Exercise ex-demo-code: your code here")
    assert "Replace each `raise NotImplementedError(...)` line below by your code" in stub.source
    assert (
        '\ndef double(x):\n    """Twice x."""\n    # replace the next line by the body of double\n'
        '    raise NotImplementedError("Exercise ex-demo-code: write double")\n' in stub.source
    )
    assert (
        "# replace the next line by the code of your solution that runs the experiment\nraise NotImplementedError("
        in stub.source
    )
    assert stub.source.endswith('raise NotImplementedError("Exercise ex-demo-code: your code here")')
    assert stub.outputs == [] and self_check.outputs == [] and self_check.execution_count is None
    assert "execution" not in self_check.metadata, "the timing of the removed output goes with it"
    assert "Write `double(x)`." in student.cells[2].source and "Text after the solution stays." == student.cells[4].source
    assert student.cells[1].outputs == nb.cells[1].outputs, "outputs of ordinary cells are kept"
    nbformat.validate(student)


def executed(nb, folder):
    client = NotebookClient(
        nbformat.from_dict(nb),
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(folder)}},
    )
    return client.execute()


def errors(nb):
    """(cell index, exception name, message) of every cell that raised."""
    return [
        (k, o.ename, o.evalue)
        for k, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if o.output_type == "error"
    ]


def test_synthetic_student_edition_runs_to_the_first_stub(tmp_path):
    student, _ = student_notebook(synthetic_notebook())
    run = executed(student, tmp_path)
    # the stub stops the run: NotImplementedError there, nothing earlier; the self-check after it cannot pass
    assert errors(run)[0] == (3, "NotImplementedError", "Exercise ex-demo-code: your code here")
    assert all(k >= 3 for k, _, _ in errors(run))
    assert run.cells[1].outputs[0].text == "6\n" and run.cells[6].outputs[0].text == "3\n"


def solution_code_lines(nb) -> set[str]:
    """Lines of the solution cells that a student must not see: not signatures or docstrings (the stub has them),
    not lines that the notebook also has outside its solutions (``with torch.no_grad():``)."""
    lines = set()
    elsewhere = {
        line.strip()
        for cell in nb.cells
        if "solution" not in cell.metadata.get("tags", [])
        for line in cell.source.splitlines()
    }
    for cell in nb.cells:
        if "solution" in cell.metadata.get("tags", []):
            tree = ast.parse(cell.source)
            keep = {node.lineno for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
            docstrings = {
                n.body[0].lineno
                for n in ast.walk(tree)
                if isinstance(n, (ast.FunctionDef, ast.ClassDef)) and ast.get_docstring(n)
            }
            for number, line in enumerate(cell.source.splitlines(), start=1):
                if number not in keep | docstrings and len(line.strip()) > 12:
                    lines.add(line.strip())
    return lines - elsewhere


def solution_outputs(nb) -> list[str]:
    return [
        json.dumps(o, sort_keys=True)
        for cell in nb.cells
        if "solution" in cell.metadata.get("tags", [])
        for o in cell.get("outputs", [])
    ]


@pytest.mark.parametrize(
    "path", sorted((ROOT / "notebooks").rglob("[0-9]*.ipynb")), ids=lambda p: f"{p.parent.name}/{p.name}"
)
def test_student_edition_of_book_notebook_has_no_solution(path):
    book = nbformat.read(path, as_version=4)
    student, report = student_notebook(book, path.name)
    student = nbformat.from_dict(student)
    text = all_text(student)
    for directive in ("{solution}", "{solution-start}", "{solution-end}"):
        assert directive not in text
    student_lines = {line.strip() for cell in student.cells for line in cell.source.splitlines()}
    leaked = sorted(solution_code_lines(book) & student_lines)
    assert leaked == [], f"solution code in the student edition: {leaked[:3]}"
    outputs = [json.dumps(o, sort_keys=True) for cell in student.cells for o in cell.get("outputs", [])]
    assert not set(solution_outputs(book)) & set(outputs), "outputs of solution cells in the student edition"
    n_exercises = text.count("{exercise}")
    assert n_exercises == all_text(book).count("{exercise}") >= 2, "every exercise stays"
    assert len(report.code_solutions) == sum(c.metadata.get("tags") == ["exercise-stub"] for c in student.cells)


def test_student_edition_of_smallest_chapter_notebook_runs_to_its_first_stub(tmp_path):
    written = write_edition("student", SMALL_NOTEBOOK, tmp_path / "student")
    ((path, report),) = written
    run = executed(nbformat.read(path, as_version=4), CHAPTER_1)
    stubs = [k for k, cell in enumerate(run.cells) if "exercise-stub" in cell.metadata.get("tags", [])]
    first = errors(run)[0]
    assert first[0] in (stubs[0], stubs[0] + 1), f"the first error is in cell {first[0]}, the first stub is {stubs[0]}"
    assert first[1] == "NotImplementedError" and report.code_solutions[0] in first[2]


def test_instructor_edition_is_the_book_notebook(tmp_path):
    written = write_edition("instructor", CHAPTER_1, tmp_path / "instructor")
    assert [p.name for p, _ in written] == sorted(p.name for p in CHAPTER_1.glob("*.ipynb"))
    for path, _ in written:
        assert path.read_bytes() == (CHAPTER_1 / path.name).read_bytes()
        assert nbformat.read(path, as_version=4) == nbformat.read(CHAPTER_1 / path.name, as_version=4)


def test_command_line(tmp_path, capsys):
    source = tmp_path / "notebooks" / "chX"
    source.mkdir(parents=True)
    nbformat.write(synthetic_notebook(), source / "demo.ipynb")
    assert main(["student", str(tmp_path / "notebooks"), str(tmp_path / "out")]) == 0
    assert "1 code stubs, 1 text solutions removed, 1 self-checks" in capsys.readouterr().out
    assert "SECRET" not in (tmp_path / "out" / "chX" / "demo.ipynb").read_text()
    assert main(["instructor", str(source), str(tmp_path / "teacher")]) == 0
    assert (tmp_path / "teacher" / "demo.ipynb").read_bytes() == (source / "demo.ipynb").read_bytes()
    assert main(["student", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["teacher", str(source), str(tmp_path / "out")])


def broken(cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = cells
    return nb


@pytest.mark.parametrize(
    "cells, message",
    [
        ([md("```{solution-start} ex-a\n```"), code("x = 1", tags=["solution"])], "ex-a has no solution-end"),
        ([md("```{solution-end}\n```")], "solution-end without solution-start"),
        ([code("x = 1", tags=["solution"])], "cell 0: a code cell tagged 'solution' outside a gated solution"),
        (
            [md("```{solution-start} ex-a\n```"), code("check(f)", tags=["self-check"]), md("```{solution-end}\n```")],
            "cell 1: a self-check inside the gated solution of ex-a",
        ),
        (
            [md("```{solution-start} ex-a\n```"), code("x = 1"), md("```{solution-end}\n```")],
            "cell 1: a code cell not tagged 'solution' inside the gated solution of ex-a",
        ),
        ([md("```{solution-start} ex-a\n```\n```{solution-start} ex-b\n```")], "solution-start ex-b inside"),
        ([md("````{solution} ex-a\ntext\n```")], "never closed"),
    ],
)
def test_malformed_exercises_are_refused_with_the_place(cells, message):
    with pytest.raises(CourseworkError, match=message.replace("(", r"\(").replace(")", r"\)")):
        student_notebook(broken(cells), "bad.ipynb")


def test_input_checks(tmp_path):
    with pytest.raises(CourseworkError, match="does not exist"):
        write_edition("student", tmp_path / "nothing", tmp_path / "out")
    with pytest.raises(CourseworkError, match="no notebooks"):
        write_edition("student", tmp_path, tmp_path / "out")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CourseworkError, match="is not a notebook"):
        write_edition("student", tmp_path / "notes.txt", tmp_path / "out")
    (tmp_path / "a.ipynb").write_text("{not json")
    with pytest.raises(CourseworkError, match="cannot read it as a notebook"):
        write_edition("instructor", tmp_path, tmp_path.parent / "elsewhere")
    with pytest.raises(CourseworkError, match="must not be inside the source"):
        write_edition("student", tmp_path, tmp_path / "out")
    with pytest.raises(CourseworkError, match="edition must be one of"):
        write_edition("teacher", tmp_path, tmp_path.parent / "elsewhere")
    with pytest.raises(CourseworkError, match="not a notebook"):
        student_notebook({"cells": "none"})


def test_markdown_blocks_respect_longer_fences():
    blocks = markdown_blocks("intro\n````{solution} ex-a\n```python\nx = 1\n```\n````\noutro\n")
    assert [(b.directive, b.argument) for b in blocks] == [(None, ""), ("solution", "ex-a"), (None, "")]
    assert blocks[1].text.count("```") == 4


def test_stub_of_code_without_functions_and_with_magics():
    assert stub_source("ex-a", ["%timeit x = 1"]).endswith('raise NotImplementedError("Exercise ex-a: your code here")')
    assert "# replace the next line by your code\nraise" in stub_source("ex-a", ["%timeit x = 1"])
    only_functions = stub_source("ex-b", ["import numpy as np\n\ndef f(x, *, k: int = 2) -> float:\n    return k * x\n"])
    assert "def f(x, *, k: int=2) -> float:" in only_functions
    assert 'your code here")' not in only_functions, "a solution of functions only needs no extra raise"


def test_book_self_checks_lose_their_run_metadata_in_the_student_edition():
    """The book's self-check cells carry Jupyter's execution timings; their outputs go, and so do the timings."""
    book = nbformat.read(CHAPTER_1 / "02_composition_is_dynamics.ipynb", as_version=4)
    assert any("execution" in c.metadata for c in book.cells if "self-check" in c.metadata.get("tags", []))
    student, _ = student_notebook(book)
    checks = [c for c in student["cells"] if "self-check" in c["metadata"].get("tags", [])]
    assert checks and all("execution" not in c["metadata"] and c["outputs"] == [] for c in checks)

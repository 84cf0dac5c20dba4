"""nbgrader coursework: the graded problems, and nbgrader's own round trip generate → submit → autograde → feedback.

The round trip runs nbgrader's command-line tools on a temporary course folder written by
``python -m mldyn_lite.coursework nbgrader chN``: the reference solutions get full marks, and a typical wrong
solution loses exactly the points of its problem, with the failed case named in the feedback.
"""

import ast
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from mldyn_lite.coursework import CourseworkError, main, nbgrader_notebook, solution_regions
from mldyn_lite.coursework_problems import KINDS, SETUP, problems

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = ["ch1", "ch2", "ch3", "ch4"]
ALL_PROBLEMS = [p for chapter in CHAPTERS for p in problems(chapter)]
# the wrong submission of each chapter's round trip: (problem label, what the failed case says)
WRONG = {"ch1": "ex-ch1-midpoint", "ch2": "ex-ch2-costate", "ch3": "ex-ch3-unfolding-ranks", "ch4": "ex-ch4-committor-1d"}


def run(code: str, namespace: dict) -> None:
    exec(compile(code, "<problem>", "exec"), namespace)


def fresh() -> dict:
    namespace: dict = {}
    run(SETUP, namespace)
    return namespace


@pytest.fixture(autouse=True)
def book_mode():
    """The setup cell switches self-checks to grading mode; give the process back its default afterwards."""
    from mldyn_lite import selfcheck

    yield
    selfcheck.grading_mode(None)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_chapter_has_three_graded_problems_with_hidden_tests(chapter):
    graded = problems(chapter)
    assert len(graded) >= 3
    assert len({p.label for p in graded}) == len(graded)
    for problem in graded:
        assert problem.kind in KINDS and problem.label.startswith((f"ex-{chapter}-", f"cw-{chapter}-"))
        assert "assert" in problem.hidden_tests and problem.hidden_points > 0 and problem.visible_points > 0
        assert "hidden case '" in problem.hidden_tests, "hidden tests name their case for the feedback"


@pytest.mark.parametrize("problem", ALL_PROBLEMS, ids=lambda p: p.label)
def test_reference_solution_passes_and_the_typical_mistake_fails_the_hidden_tests(problem):
    namespace = fresh()
    run(problem.solution, namespace)
    run(problem.visible_tests, namespace)
    run(problem.hidden_tests, namespace)
    namespace = fresh()
    run(problem.mistake, namespace)
    with pytest.raises(AssertionError, match="hidden case '"):
        run(problem.hidden_tests, namespace)


def functions(source: str) -> dict[str, str]:
    return {node.name: ast.dump(node) for node in ast.parse(source).body if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("problem", [p for p in ALL_PROBLEMS if p.book_notebook], ids=lambda p: p.label)
def test_book_exercise_reference_solution_is_the_books(problem):
    """A problem taken from the book uses the book's solution, so the two cannot drift apart."""
    nb = json.loads((ROOT / problem.book_notebook).read_text(encoding="utf-8"))
    book = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code" and "solution" in cell["metadata"].get("tags", []):
            book.update(functions("".join(cell["source"])))
    mine = functions(problem.solution)
    assert mine and all(book.get(name) == dump for name, dump in mine.items()), (
        f"{problem.label}: the reference solution differs from the book's solution in {problem.book_notebook}"
    )
    assert f":label: {problem.label}" in "".join("".join(c["source"]) for c in nb["cells"])


def test_solution_regions_wrap_function_bodies_only():
    source = 'import math\n\n\ndef f(x):\n    """Doc."""\n    y = x + 1\n    return y\n\n\nSCALE = 2'
    regions = solution_regions(source)
    assert regions == (
        'import math\n\n\ndef f(x):\n    """Doc."""\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n'
        "    ### END SOLUTION\n\n\nSCALE = 2"
    )
    with pytest.raises(CourseworkError, match="defines no function"):
        solution_regions("x = 1")


def test_assignment_notebook_carries_nbgrader_metadata():
    nb = nbgrader_notebook("ch1")
    meta = [c["metadata"]["nbgrader"] for c in nb["cells"]]
    assert all(m["schema_version"] == 3 for m in meta)
    assert len({m["grade_id"] for m in meta}) == len(meta)
    markdown = [m for c, m in zip(nb["cells"], meta) if c["cell_type"] == "markdown"]
    assert markdown and all(m["locked"] and not m["solution"] and not m["grade"] for m in markdown)
    solutions = [c for c in nb["cells"] if c["metadata"]["nbgrader"]["solution"]]
    assert len(solutions) == 3 and all("### BEGIN SOLUTION" in c["source"] for c in solutions)
    graded = [m for m in meta if m["grade"]]
    assert len(graded) == 6 and all(m["locked"] and m["points"] > 0 for m in graded)
    assert sum(m["points"] for m in graded) == sum(p.points for p in problems("ch1"))
    assert "selfcheck.grading_mode(True)" in nb["cells"][1]["source"] and meta[1]["locked"]
    import nbformat

    nbformat.validate(nbformat.from_dict(nb))


def test_command_line_writes_a_course_folder(tmp_path, capsys):
    assert main(["nbgrader", "ch3", str(tmp_path / "course")]) == 0
    assert "nbgrader generate_assignment ch3" in capsys.readouterr().out
    notebook = tmp_path / "course" / "source" / "ch3" / "ch3.ipynb"
    assert json.loads(notebook.read_text())["nbformat"] == 4
    assert "ClearSolutions.code_stub" in (tmp_path / "course" / "nbgrader_config.py").read_text()
    assert main(["nbgrader", "ch9", str(tmp_path / "course")]) == 2
    assert "chapter must be one of" in capsys.readouterr().err


# --- nbgrader's own round trip ------------------------------------------------------------------

NBGRADER = shutil.which("nbgrader", path=str(Path(sys.executable).parent))  # the one beside this Python


def nbgrader(course: Path, *args: str) -> str:
    env = {
        **os.environ,
        "MLDYN_GRADING": "",  # the assignment's setup cell alone switches grading mode on
        "PATH": os.pathsep.join([str(Path(NBGRADER).parent), os.environ.get("PATH", "")]),
    }  # nbgrader calls alembic
    done = subprocess.run([NBGRADER, *args], cwd=course, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def submit(course: Path, chapter: str, student: str, wrong: str | None) -> None:
    """A student's submission: the released notebook, each solution cell filled (with the mistake for ``wrong``)."""
    by_label = {p.label: p for p in problems(chapter)}
    nb = json.loads((course / "release" / chapter / f"{chapter}.ipynb").read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution"):
            problem = by_label[meta["grade_id"].removesuffix("-solution")]
            cell["source"] = problem.mistake if problem.label == wrong else problem.solution
    folder = course / "submitted" / student / chapter
    folder.mkdir(parents=True)
    (folder / f"{chapter}.ipynb").write_text(json.dumps(nb), encoding="utf-8")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """One course folder with the four chapters' assignments, taken through nbgrader's commands once (each
    command handles every assignment, which saves three start-ups of nbgrader per chapter):
    generate_assignment → submissions of alice (reference solutions) and bob (one mistake per chapter) →
    autograde → generate_feedback."""
    if NBGRADER is None:
        pytest.skip("nbgrader is not installed (pip install -e .[test])")
    course = tmp_path_factory.mktemp("nbgrader") / "course"
    for chapter in CHAPTERS:
        assert main(["nbgrader", chapter, str(course)]) == 0
    nbgrader(course, "generate_assignment", "*")
    for chapter in CHAPTERS:
        submit(course, chapter, "alice", None)
        submit(course, chapter, "bob", WRONG[chapter])
    nbgrader(course, "autograde", "*", "--create")
    nbgrader(course, "generate_feedback", "*")
    return course


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_generated_assignment_has_stubs_and_no_solutions_or_hidden_tests(course, chapter):
    released = json.loads((course / "release" / chapter / f"{chapter}.ipynb").read_text(encoding="utf-8"))
    text = "\n".join("".join(c["source"]) for c in released["cells"])
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text and "hidden case '" not in text
    for problem in problems(chapter):
        body = solution_regions(problem.solution).split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0]
        leaked = [line for line in body.splitlines() if line.strip() and line in text.splitlines()]
        assert not leaked, f"{problem.label}: solution lines in the student's notebook: {leaked}"
    assert text.count("replace the next line (raise NotImplementedError) by your code") >= len(problems(chapter))
    assert all(c["metadata"]["nbgrader"]["locked"] for c in released["cells"] if c["cell_type"] == "markdown")


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_nbgrader_round_trip(course, chapter):
    """Reference solutions: full marks. A typical mistake: exactly its problem's points lost, named in the feedback."""
    from nbgrader.api import Gradebook

    wrong = WRONG[chapter]
    graded = problems(chapter)
    total = sum(p.points for p in graded)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        alice = gradebook.find_submission_notebook(chapter, chapter, "alice")
        bob = gradebook.find_submission_notebook(chapter, chapter, "bob")
        assert (alice.score, alice.max_score) == (total, total), (
            f"the reference solutions lost points: {[(g.name, g.score) for g in alice.grades if g.score < g.max_score]}"
        )
        lost = {g.name: g.max_score - g.score for g in bob.grades if g.score < g.max_score}
        mistake = next(p for p in graded if p.label == wrong)
        assert lost == {f"{wrong}-tests": mistake.visible_points, f"{wrong}-hidden": mistake.hidden_points}, (
            f"{wrong} should lose its {mistake.points} points, and nothing else: {lost}"
        )
        assert bob.score == total - mistake.points

    feedback = html.unescape((course / "feedback" / "bob" / chapter / f"{chapter}.html").read_text(encoding="utf-8"))
    ns = fresh()
    run(mistake.mistake, ns)
    with pytest.raises(AssertionError) as failure:
        run(mistake.hidden_tests, ns)
    message = str(failure.value)  # as evaluated: with the numbers this wrong solution gives, so only in the outputs
    assert re.match(r"hidden case '[^']+' failed", message)
    assert message in feedback, f"bob's feedback does not show the failed hidden case: {message!r}"
    assert f"✗ {wrong}" in feedback, "bob's feedback does not show the failed self-check"
    alice = json.loads((course / "autograded" / "alice" / chapter / f"{chapter}.ipynb").read_text(encoding="utf-8"))
    errors = [o for c in alice["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors, f"the reference solutions raised: {[o['evalue'][:200] for o in errors]}"
    assert (course / "feedback" / "alice" / chapter / f"{chapter}.html").exists()

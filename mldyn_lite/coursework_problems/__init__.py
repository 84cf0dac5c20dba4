r"""Graded problems of the nbgrader assignments, one module per chapter.

Each chapter's assignment (``python -m mldyn_lite.coursework nbgrader chN OUT``, see
:mod:`mldyn_lite.coursework`) is one notebook made of the chapter's graded problems. A :class:`Problem` holds
everything the notebook needs, as text:

* ``statement`` — the task, in Markdown with ``$…$`` math (a locked cell of the assignment);
* ``solution`` — the reference solution: functions whose *bodies* become nbgrader solution regions
  (``### BEGIN SOLUTION`` … ``### END SOLUTION``), so the student keeps the signatures and docstrings;
* ``visible_tests`` — a test cell the student sees: the problem's self-check from :mod:`mldyn_lite.selfcheck`
  (which raises in grading mode) or a few plain asserts;
* ``hidden_tests`` — asserts the student does not see (nbgrader's ``### BEGIN HIDDEN TESTS``); each names its
  case in the assertion message, which is what the feedback shows;
* ``mistake`` — a typical wrong solution, used by the tests to show that the hidden tests can fail.

Problems whose label starts with ``ex-`` are code exercises of the book (their reference solution is the
book's, checked by ``tests/test_nbgrader.py``); labels starting with ``cw-`` are problems written for the
coursework only. Adding a problem: append a :class:`Problem` to the chapter module's ``PROBLEMS``; its hidden
tests must pass on ``solution`` and fail on ``mistake`` (``tests/test_nbgrader.py`` checks both).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CHAPTERS", "KINDS", "SETUP", "Problem", "problems"]

KINDS = ("derive and implement", "design an experiment", "diagnose a failure")

# The assignment's setup cell (locked): imports, one torch thread, and self-checks that raise on failure.
SETUP = """import numpy as np
import torch

from mldyn_lite import selfcheck

torch.set_num_threads(1)
selfcheck.grading_mode(True)  # a failed self-check raises (AssertionError), so the grader sees it"""


@dataclass(frozen=True)
class Problem:
    """One graded problem of an assignment; see the module docstring."""

    label: str
    title: str
    kind: str
    statement: str
    solution: str
    visible_tests: str
    hidden_tests: str
    mistake: str
    mistake_name: str
    book_notebook: str | None = None  # "notebooks/chN/…ipynb" for a code exercise of the book
    visible_points: int = 2
    hidden_points: int = 3

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"{self.label}: kind must be one of {KINDS}, got {self.kind!r}")
        if not self.label.startswith(("ex-", "cw-")):
            raise ValueError(f"{self.label}: a label starts with ex- (book exercise) or cw- (coursework problem)")

    @property
    def points(self) -> int:
        return self.visible_points + self.hidden_points


def problems(chapter: str) -> list[Problem]:
    """The graded problems of ``chapter`` ("ch1" … "ch4")."""
    import importlib

    if chapter not in CHAPTERS:
        raise ValueError(f"chapter must be one of {sorted(CHAPTERS)}, got {chapter!r}")
    return list(importlib.import_module(f"{__name__}.{chapter}").PROBLEMS)


CHAPTERS = {
    "ch1": "Background: supervised learning, composition is dynamics",
    "ch2": "Machine learning via dynamical systems: flows, optimal control, SGD",
    "ch3": "Machine learning for dynamical systems: sequence models and memory",
    "ch4": "Machine learning of dynamical systems: reduced models and rare events",
}

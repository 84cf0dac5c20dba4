r"""Self-checks for the book's code exercises.

A self-check runs the reader's function on fresh cases — inputs the notebook never used, with answers
known in closed form or from the package — and answers with a specific message: which case failed,
what was expected, what came back, and a hint. Where a wrong answer matches a typical mistake
(forward Euler instead of the midpoint rule, a forgotten factor 2, a hard-coded time step) the hint
names that mistake.

In a notebook, after the exercise::

    from mldyn_lite.selfcheck import check_midpoint_flow
    check_midpoint_flow(midpoint_flow)

The result prints as ``✓ …`` or ``✗ …`` with the details, and is truthy only when every case passed
(``assert check_midpoint_flow(midpoint_flow)`` for autograding, or ``assert check("ex-ch1-midpoint", fn)``
by the exercise's label). A function that still raises ``NotImplementedError`` (the stub of the student
edition, :mod:`mldyn_lite.coursework`) makes the check raise ``NotImplementedError`` too, naming the exercise.

In a graded notebook, ``grading_mode(True)`` (or ``MLDYN_GRADING=1`` in the environment) makes a failed
check raise :class:`SelfCheckFailed`, an ``AssertionError`` with the same message, so that "Run all" stops
there and the autograder marks the cell wrong; in the book it stays off and the message is printed.

The checks live in one module per chapter (``selfcheck.ch1`` … ``selfcheck.ch4``); ``selfcheck._framework`` holds the
registry, the cases and the result. Adding a check for another exercise: in the chapter's module, write
``check_<something>(fn)`` that builds a list of ``(description, case)`` pairs, where ``case()`` calls
``fn`` and raises :class:`CaseFailed` with ``expected``, ``got`` and ``hint`` when the answer is wrong,
and returns :func:`run_cases`; decorate it with ``@exercise_check("ex-label")`` so that :func:`check`
finds it by the exercise's label; add its name to the module's ``__all__``.
"""

from . import ch1, ch2, ch3, ch4
from ._framework import (
    CHECKS,
    CaseFailed,
    CheckResult,
    SelfCheckFailed,
    check,
    describe,
    diagnose,
    exercise_check,
    grading_mode,
    run_cases,
)
from .ch1 import *  # noqa: F403
from .ch2 import *  # noqa: F403
from .ch3 import *  # noqa: F403
from .ch4 import *  # noqa: F403

__all__ = [
    "CHECKS",
    "CaseFailed",
    "CheckResult",
    "SelfCheckFailed",
    "check",
    "describe",
    "diagnose",
    "exercise_check",
    "grading_mode",
    "run_cases",
    *ch1.__all__,
    *ch2.__all__,
    *ch3.__all__,
    *ch4.__all__,
]

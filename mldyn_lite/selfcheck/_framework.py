"""The self-check framework: a registry of checks by exercise label, cases, and the result a reader sees.

See :mod:`mldyn_lite.selfcheck` for how a notebook uses a check and how to add one.

**Grading mode.** In the book a failed check *prints* its message (the reader reads it and tries again). A
graded notebook needs the failure to be an error, so that "Run all" stops there and an autograder
(nbgrader marks a test cell wrong when it raises) sees it: after :func:`grading_mode` ``(True)``, or with the
environment variable ``MLDYN_GRADING=1``, a failed check raises :class:`SelfCheckFailed` (an
``AssertionError``) whose message is the same text. The nbgrader assignments of
:mod:`mldyn_lite.coursework` switch it on in their setup cell.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "CHECKS",
    "GRADING_ENVIRONMENT_VARIABLE",
    "CaseFailed",
    "CheckResult",
    "SelfCheckFailed",
    "check",
    "describe",
    "diagnose",
    "exercise_check",
    "grading_mode",
    "run_cases",
]

CHECKS: dict[str, Callable] = {}
GRADING_ENVIRONMENT_VARIABLE = "MLDYN_GRADING"
_grading: bool | None = None  # None: follow the environment variable
_QUERY = object()  # grading_mode() called without an argument


def grading_mode(on=_QUERY) -> bool:
    """Whether a failed self-check raises :class:`SelfCheckFailed` (grading) or returns a printable result (book).

    ``grading_mode(True)`` / ``grading_mode(False)`` switch it for this process; ``grading_mode(None)`` goes back
    to the default, which is on when the environment variable ``MLDYN_GRADING`` is ``1``, ``true`` or ``yes``.
    Called without an argument it only reports the mode. Returns the mode now in force.
    """
    global _grading
    if on is not _QUERY:
        if on is not None and not isinstance(on, bool):
            raise TypeError(f"on must be True, False or None, got {type(on).__name__}")
        _grading = on
    if _grading is not None:
        return _grading
    return os.environ.get(GRADING_ENVIRONMENT_VARIABLE, "").strip().lower() in {"1", "true", "yes"}


def exercise_check(label: str):
    """Register a check function under an exercise label, for :func:`check`."""

    def register(function: Callable) -> Callable:
        if label in CHECKS:
            raise ValueError(f"a self-check for {label} exists already: {CHECKS[label].__name__}")
        CHECKS[label] = function
        function.exercise = label
        return function

    return register


def check(label: str, function) -> CheckResult:
    """Run the self-check of exercise ``label`` (e.g. ``"ex-ch1-midpoint"``) on ``function``."""
    if label not in CHECKS:
        raise ValueError(f"no self-check for exercise {label!r}; there are: {', '.join(sorted(CHECKS))}")
    return CHECKS[label](function)


# --- the framework ------------------------------------------------------------------------------


class SelfCheckFailed(AssertionError):
    """A self-check failed in grading mode; the message is the check's report (case, expected, got, hint)."""

    def __init__(self, result: CheckResult):
        super().__init__(str(result))
        self.result = result


class CaseFailed(Exception):
    """Raised by a case when the reader's answer is wrong."""

    def __init__(self, expected: str, got: str, hint: str):
        super().__init__(f"expected {expected}, got {got}")
        self.expected, self.got, self.hint = expected, got, hint


@dataclass(frozen=True)
class CheckResult:
    """Outcome of a self-check; prints as a message for the reader, truthy when every case passed."""

    exercise: str
    function: str
    cases: int
    passed: bool
    failed_case: int | None = None
    case: str | None = None
    expected: str | None = None
    got: str | None = None
    hint: str | None = None

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        if self.passed:
            return f"✓ {self.exercise}: {self.function} passed all {self.cases} checks."
        return "\n".join(
            [
                f"✗ {self.exercise}: {self.function} failed check {self.failed_case} of {self.cases}: {self.case}",
                f"  expected: {self.expected}",
                f"  got:      {self.got}",
                f"  hint:     {self.hint}",
            ]
        )

    __repr__ = __str__


def run_cases(exercise: str, function, cases: list[tuple[str, Callable[[], None]]]) -> CheckResult:
    """Run ``cases`` in order and stop at the first failure; see the module docstring.

    In :func:`grading_mode` a failure raises :class:`SelfCheckFailed` instead of returning the failed result.
    """
    result = _run_cases(exercise, function, cases)
    if not result.passed and grading_mode():
        raise SelfCheckFailed(result)
    return result


def _run_cases(exercise: str, function, cases: list[tuple[str, Callable[[], None]]]) -> CheckResult:
    name = getattr(function, "__name__", type(function).__name__)
    for number, (description, case) in enumerate(cases, start=1):
        try:
            case()
        except CaseFailed as failure:
            return CheckResult(
                exercise, name, len(cases), False, number, description, failure.expected, failure.got, failure.hint
            )
        except NotImplementedError as exc:
            raise NotImplementedError(
                f"{exercise}: {name} is not written yet ({exc}). Replace the line "
                "`raise NotImplementedError(...)` by your code, then run this check again."
            ) from None
        except Exception as exc:  # the reader's code crashed: report it as a failed case, with the error
            return CheckResult(
                exercise,
                name,
                len(cases),
                False,
                number,
                description,
                "no error",
                f"{type(exc).__name__}: {exc}",
                "call your function yourself with the arguments of this case and read the traceback",
            )
    return CheckResult(exercise, name, len(cases), True)


def describe(value) -> str:
    """Short text for a value in a message: arrays show their shape and a few entries."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        text = np.array2string(value, precision=4, threshold=8, edgeitems=2, suppress_small=True)
        return f"array of shape {value.shape}: {' '.join(text.split())}"
    return f"{type(value).__name__} {value!r}"


def _matches(got, candidate, rtol: float = 1e-6, atol: float = 1e-9) -> bool:
    got, candidate = np.asarray(got, dtype=float), np.asarray(candidate, dtype=float)
    return got.shape == candidate.shape and bool(np.allclose(got, candidate, rtol=rtol, atol=atol))


def diagnose(got, mistakes: list[tuple[object, str]], default: str) -> str:
    """The hint of the first typical mistake whose answer equals ``got``, else ``default``."""
    for answer, hint in mistakes:
        if _matches(got, answer):
            return hint
    return default

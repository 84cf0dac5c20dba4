"""Self-checks: a correct answer passes, typical wrong answers fail with the hint that names the mistake."""

import numpy as np
import pytest
import torch

from mldyn_lite import selfcheck
from mldyn_lite.selfcheck import CaseFailed, CheckResult, check, check_linear_field_fit, check_midpoint_flow, run_cases
from mldyn_lite.vector_fields import fit_polynomial_vector_field

from notebook_cells import solution_function

# --- answers to ex-ch1-midpoint: the notebook's solution, and typical mistakes ------------------


midpoint_flow = solution_function("ch1/02_composition_is_dynamics.ipynb", "midpoint_flow")


def euler_flow(f, x0, T, steps):
    delta, x = T / steps, x0
    for n in range(steps):
        x = x + delta * f(n * delta, x)
    return x


def midpoint_time_at_start(f, x0, T, steps):
    delta, x = T / steps, x0
    for n in range(steps):
        t = n * delta
        x = x + delta * f(t, x + delta / 2 * f(t, x))
    return x


def midpoint_full_predictor(f, x0, T, steps):
    delta, x = T / steps, x0
    for n in range(steps):
        t = n * delta
        x = x + delta * f(t + delta / 2, x + delta * f(t, x))
    return x


def midpoint_with_path(f, x0, T, steps):
    delta, path = T / steps, [x0]
    for n in range(steps):
        t, x = n * delta, path[-1]
        path.append(x + delta * f(t + delta / 2, x + delta / 2 * f(t, x)))
    return torch.stack(path)


def midpoint_in_place(f, x0, T, steps):
    delta, x = T / steps, x0
    for n in range(steps):
        t = n * delta
        x += delta * f(t + delta / 2, x + delta / 2 * f(t, x))
    return x


def test_correct_midpoint_passes():
    result = check_midpoint_flow(midpoint_flow)
    assert result and result.passed and result.cases == 3
    assert str(result) == "✓ ex-ch1-midpoint: midpoint_flow passed all 3 checks."


@pytest.mark.parametrize(
    "wrong, case, hint",
    [
        (euler_flow, 1, "this is forward Euler"),
        (midpoint_full_predictor, 1, "the predictor goes a full step"),
        (midpoint_time_at_start, 2, "the second evaluation of f uses the time t_n"),
        (midpoint_with_path, 1, "return only the final state x_L, not the whole path"),
        (midpoint_in_place, 1, "x0 was modified in place"),
    ],
)
def test_wrong_midpoint_is_caught_with_its_hint(wrong, case, hint):
    result = check_midpoint_flow(wrong)
    assert not result and result.failed_case == case
    assert hint in str(result)
    message = str(result)
    assert message.startswith(f"✗ ex-ch1-midpoint: {wrong.__name__} failed check {case} of 3: ")
    assert "expected:" in message and "got:" in message and "hint:" in message


def test_midpoint_of_unknown_mistake_gets_the_generic_hint_and_the_numbers():
    result = check_midpoint_flow(lambda f, x0, T, steps: midpoint_flow(f, x0, T, steps) * 1.01)
    assert not result and result.failed_case == 1
    assert "compare one step by hand" in result.hint
    assert result.expected.startswith("array of shape (5, 3)") and result.got.startswith("array of shape (5, 3)")


def test_first_order_scheme_fails_the_order_case():
    """A scheme that agrees with the midpoint rule for steps <= 3 but is Euler beyond: only the slope catches it."""

    def sneaky(f, x0, T, steps):
        return (midpoint_flow if steps <= 3 else euler_flow)(f, x0, T, steps)

    result = check_midpoint_flow(sneaky)
    assert not result and result.failed_case == 3
    assert "slope 2" in result.expected and "first-order" in result.hint
    assert abs(float(result.got.split()[1]) - 1.0) < 0.2  # the measured slope of Euler


# --- answers to ex-ch1-noisy-fit ----------------------------------------------------------------


fit_linear_field = solution_function("ch1/03_three_interactions.ipynb", "fit_linear_field")


def forward_differences(times, trajectory):
    dt = times[1] - times[0]
    features = np.column_stack([np.ones(len(trajectory) - 1), trajectory[:-1]])
    return np.linalg.lstsq(features, np.diff(trajectory, axis=0) / dt, rcond=None)[0]


def central_over_dt(times, trajectory):
    dt = times[1] - times[0]
    features = np.column_stack([np.ones(len(trajectory) - 2), trajectory[1:-1]])
    return np.linalg.lstsq(features, (trajectory[2:] - trajectory[:-2]) / dt, rcond=None)[0]


def hard_coded_step(times, trajectory):
    features = np.column_stack([np.ones(len(trajectory) - 2), trajectory[1:-1]])
    return np.linalg.lstsq(features, (trajectory[2:] - trajectory[:-2]) / (2 * 0.01), rcond=None)[0]


def transposed(times, trajectory):
    return fit_linear_field(times, trajectory).T


def no_constant(times, trajectory):
    dt = times[1] - times[0]
    return np.linalg.lstsq(trajectory[1:-1], (trajectory[2:] - trajectory[:-2]) / (2 * dt), rcond=None)[0]


@pytest.mark.parametrize(
    "answer",
    [
        fit_linear_field,
        lambda t, x: fit_polynomial_vector_field(t, x, degree=1),
        lambda t, x: torch.as_tensor(fit_linear_field(t, x)),
    ],
)
def test_correct_fits_pass(answer):
    result = check_linear_field_fit(answer)
    assert result.passed, str(result)


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (forward_differences, "these are forward differences"),
        (central_over_dt, "divides by 2Δt, not Δt"),
        (hard_coded_step, "as if Δt were 0.01"),
        (transposed, "transposed"),
        (no_constant, "the constant feature is missing"),
    ],
)
def test_wrong_fit_is_caught_with_its_hint(wrong, hint):
    result = check_linear_field_fit(wrong)
    assert not result and result.failed_case == 1
    assert hint in result.hint, str(result)
    assert str(result).startswith(f"✗ ex-ch1-noisy-fit: {wrong.__name__} failed check 1 of 2: ")


# --- the framework ------------------------------------------------------------------------------


def test_non_callable_is_a_type_error():
    with pytest.raises(TypeError, match="midpoint_flow must be callable"):
        check_midpoint_flow("midpoint_flow")
    with pytest.raises(TypeError, match="fit_linear_field must be callable"):
        check_linear_field_fit(np.zeros(3))


def test_stub_raises_not_implemented_with_the_exercise():
    def stub(f, x0, T, steps):
        raise NotImplementedError("Exercise ex-ch1-midpoint: write midpoint_flow")

    with pytest.raises(NotImplementedError, match="ex-ch1-midpoint: stub is not written yet"):
        check_midpoint_flow(stub)


def test_crash_is_reported_as_a_failed_case():
    result = check_linear_field_fit(lambda times, trajectory: trajectory @ np.ones((5, 5)))
    assert not result and result.failed_case == 1 and result.got.startswith("ValueError: ")
    assert "traceback" in result.hint


def test_registry_finds_checks_by_exercise_label():
    assert check("ex-ch1-midpoint", midpoint_flow).passed
    assert not check("ex-ch1-noisy-fit", forward_differences).passed
    with pytest.raises(ValueError, match="no self-check for exercise 'ex-none'"):
        check("ex-none", midpoint_flow)
    with pytest.raises(ValueError, match="exists already"):
        selfcheck.exercise_check("ex-ch1-midpoint")(midpoint_flow)


def test_run_cases_stops_at_the_first_failure():
    calls = []

    def failing():
        calls.append("second")
        raise CaseFailed("1", "2", "add better")

    result = run_cases(
        "ex-demo",
        len,
        [("first", lambda: calls.append("first")), ("second", failing), ("third", lambda: calls.append("third"))],
    )
    assert calls == ["first", "second"]
    assert result == CheckResult("ex-demo", "len", 3, False, 2, "second", "1", "2", "add better")


def test_every_self_check_is_called_in_the_notebook_of_its_exercise():
    """Each registered check has a ``self-check`` cell in the notebook that defines its exercise, and every
    ``self-check`` cell of the book calls a registered check."""
    import re

    from notebook_cells import NOTEBOOKS, self_check_sources

    called = {}
    for path in sorted(NOTEBOOKS.rglob("[0-9]*.ipynb")):
        relative = path.relative_to(NOTEBOOKS)
        for source in self_check_sources(relative):
            names = [name for name in re.findall(r"\b(check_\w+)\(", source) if hasattr(selfcheck, name)]
            assert names, f"{relative}: a self-check cell calls no check of mldyn_lite.selfcheck:\n{source}"
            for name in names:
                called.setdefault(name, []).append(path)
    for label, function in selfcheck.CHECKS.items():
        assert function.__name__ in called, f"no notebook calls {function.__name__} ({label})"
        for path in called[function.__name__]:
            assert f":label: {label}" in path.read_text(encoding="utf-8"), f"{path.name} has no exercise {label}"


# --- grading mode -------------------------------------------------------------------------------


@pytest.fixture
def default_mode(monkeypatch):
    monkeypatch.delenv("MLDYN_GRADING", raising=False)
    selfcheck.grading_mode(None)
    yield
    selfcheck.grading_mode(None)


def test_book_mode_returns_the_failed_result_to_print(default_mode, capsys):
    assert selfcheck.grading_mode() is False
    result = check_midpoint_flow(euler_flow)
    assert not result and "✗ ex-ch1-midpoint" in str(result)


def test_grading_mode_raises_on_failure_with_the_same_message(default_mode):
    book_message = str(check_midpoint_flow(euler_flow))
    assert selfcheck.grading_mode(True) is True
    with pytest.raises(AssertionError) as failure:
        check_midpoint_flow(euler_flow)
    assert isinstance(failure.value, selfcheck.SelfCheckFailed) and str(failure.value) == book_message
    assert failure.value.result.failed_case == 1
    assert check_midpoint_flow(midpoint_flow).passed, "a correct answer still passes quietly"
    with pytest.raises(selfcheck.SelfCheckFailed, match="ex-ch1-noisy-fit"):
        check("ex-ch1-noisy-fit", forward_differences)
    assert selfcheck.grading_mode(False) is False
    assert not check_midpoint_flow(euler_flow)


def test_grading_mode_from_the_environment(default_mode, monkeypatch):
    monkeypatch.setenv("MLDYN_GRADING", "1")
    assert selfcheck.grading_mode()
    with pytest.raises(selfcheck.SelfCheckFailed):
        check_midpoint_flow(euler_flow)
    assert selfcheck.grading_mode(False) is False, "an explicit switch wins over the environment"
    assert not check_midpoint_flow(euler_flow)
    monkeypatch.setenv("MLDYN_GRADING", "0")
    assert selfcheck.grading_mode(None) is False
    with pytest.raises(TypeError, match="on must be True, False or None"):
        selfcheck.grading_mode("yes")


def test_grading_mode_makes_run_all_stop_at_the_failed_check(default_mode, tmp_path):
    """In a notebook run top to bottom (as "Run all" and nbgrader do), the failed check is a cell error."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(source)
        for source in (
            "from mldyn_lite import selfcheck\nselfcheck.grading_mode(True)",
            "def midpoint_flow(f, x0, T, steps):\n    return x0 + T * f(0.0, x0)",
            "print(selfcheck.check_midpoint_flow(midpoint_flow))",
            "print('after')",
        )
    ]
    run = NotebookClient(
        nb, timeout=120, kernel_name="python3", allow_errors=True, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [(k, o.ename) for k, c in enumerate(run.cells) for o in c.outputs if o.output_type == "error"]
    assert errors == [(2, "SelfCheckFailed")]

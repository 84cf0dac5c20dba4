"""Self-checks of chapter 4: the notebooks' solutions pass; typical wrong answers fail with the hint naming the mistake."""

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from mldyn_lite.selfcheck import check, check_committor, check_onsager_field

from notebook_cells import solution_function

# --- ex-ch4-committor-1d: the notebook's solution, and typical mistakes -------------------------

committor_1d = solution_function("ch4/04_committor_functions.ipynb", "committor_1d")


def trapezoid_committor(V, a, b, kT, x, sign=1.0, n=4001, normalise=True):
    grid = np.linspace(a, b, n)
    density = np.exp(sign * V(grid) / kT)
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (density[1:] + density[:-1]) * np.diff(grid))])
    return np.interp(x, grid, cumulative / cumulative[-1] if normalise else cumulative)


def boltzmann_weight(V, a, b, kT, x):
    return trapezoid_committor(V, a, b, kT, x, sign=-1.0)


def one_minus_q(V, a, b, kT, x):
    return 1.0 - trapezoid_committor(V, a, b, kT, x)


def unnormalised(V, a, b, kT, x):
    return trapezoid_committor(V, a, b, kT, x, normalise=False)


def temperature_ignored(V, a, b, kT, x):
    return trapezoid_committor(V, a, b, 1.0, x)


def times_temperature(V, a, b, kT, x):
    return trapezoid_committor(V, a, b, 1.0 / kT, x)


def only_the_given_points(V, a, b, kT, x):
    order = np.argsort(x)
    weights = np.exp(V(x[order]) / kT)
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (weights[1:] + weights[:-1]) * np.diff(x[order]))])
    q = np.empty_like(cumulative)
    q[order] = cumulative / cumulative[-1]
    return q


def coarse_grid(V, a, b, kT, x):
    return trapezoid_committor(V, a, b, kT, x, n=101)


def sorts_in_place(V, a, b, kT, x):
    x.sort()
    return trapezoid_committor(V, a, b, kT, x)


def column_vector(V, a, b, kT, x):
    return trapezoid_committor(V, a, b, kT, x)[:, None]


def with_quad(V, a, b, kT, x):
    total = quad(lambda s: np.exp(V(s) / kT), a, b)[0]
    return np.array([quad(lambda s: np.exp(V(s) / kT), a, xi)[0] for xi in x]) / total


def test_notebook_committor_passes():
    result = check_committor(committor_1d)
    assert result and result.passed and result.cases == 3
    assert str(result) == "✓ ex-ch4-committor-1d: committor_1d passed all 3 checks."


@pytest.mark.parametrize("answer", [with_quad, lambda V, a, b, kT, x: torch.as_tensor(committor_1d(V, a, b, kT, x))])
def test_other_correct_committors_pass(answer):
    result = check_committor(answer)
    assert result.passed, str(result)


@pytest.mark.parametrize(
    "wrong, case, hint",
    [
        (boltzmann_weight, 1, "this integrates the Boltzmann weight e^{-V/kT}"),
        (one_minus_q, 1, "q is reversed"),
        (unnormalised, 1, "the normalisation is missing"),
        (temperature_ignored, 1, "kT is ignored"),
        (times_temperature, 1, "the exponent is V·kT"),
        (only_the_given_points, 1, "you integrated only over the points x you were given"),
        (coarse_grid, 2, "the quadrature is not accurate enough"),
        (sorts_in_place, 1, "np.sort(x), not x.sort()"),
        (column_vector, 1, "return an array of the same shape as x"),
    ],
)
def test_wrong_committor_is_caught_with_its_hint(wrong, case, hint):
    result = check_committor(wrong)
    assert not result and result.failed_case == case
    assert hint in str(result)
    message = str(result)
    assert message.startswith(f"✗ ex-ch4-committor-1d: {wrong.__name__} failed check {case} of 3: ")
    assert "expected:" in message and "got:" in message and "hint:" in message


def test_non_finite_committor_gets_the_overflow_hint():
    result = check_committor(lambda V, a, b, kT, x: committor_1d(V, a, b, kT, x) * np.where(x > 1.5, np.inf, 1.0))
    assert not result and result.failed_case == 1 and "overflows" in result.hint


def test_unknown_committor_mistake_gets_a_boundary_hint():
    result = check_committor(lambda V, a, b, kT, x: 0.5 + 0.9 * (committor_1d(V, a, b, kT, x) - 0.5))
    assert not result and result.failed_case == 1 and "q(a) must be 0" in result.hint


# --- ex-ch4-onsager-field: the notebook's solution, and typical mistakes ------------------------

onsager_field = solution_function("ch4/01_onsagernet_lorenz.ipynb", "onsager_field")


def field_variant(variant: str):
    def answer(R, potential, g, alpha, h):
        h = h.detach().requires_grad_(True)
        V = potential(h).mean() if variant == "mean" else potential(h).sum()
        grad_V = torch.autograd.grad(V, h, create_graph=variant != "no_graph")[0]
        raw = R(h)
        L, U = torch.tril(raw), torch.triu(raw, diagonal=1)
        M = (L @ L if variant == "no_transpose" else L @ L.mT) + alpha * torch.eye(h.shape[-1], dtype=h.dtype)
        W = U if variant == "not_antisymmetric" else U - U.mT
        if variant == "from_the_left":
            return -(grad_V.unsqueeze(1) @ (M + W)).squeeze(1) + g(h)
        if variant == "broadcast":
            return -(grad_V @ (M + W)) + g(h)
        f = -((M + W) @ grad_V.unsqueeze(-1)).squeeze(-1)
        if variant == "plus_sign":
            f = -f
        if variant == "no_force":
            return f
        if variant == "detached":
            return (f + g(h)).detach()
        return f + g(h)

    answer.__name__ = f"field_{variant}"
    return answer


def test_notebook_onsager_field_passes():
    result = check_onsager_field(onsager_field)
    assert result and result.passed and result.cases == 3
    assert str(result) == "✓ ex-ch4-onsager-field: onsager_field passed all 3 checks."
    assert check_onsager_field(field_variant("correct")).passed


@pytest.mark.parametrize(
    "variant, case, hint",
    [
        ("plus_sign", 1, "the sign of (M + W)∇V"),
        ("from_the_left", 1, "the conservative part has the wrong sign"),
        ("not_antisymmetric", 1, "W is not antisymmetrised"),
        ("no_force", 1, "the force g(h) is missing"),
        ("mean", 1, "∇V is divided by the batch size"),
        ("broadcast", 1, "grad_V @ (M + W) broadcasts over the batch"),
        ("no_transpose", 2, "M is built without the transpose"),
        ("no_graph", 3, "create_graph=True"),
        ("detached", 3, "do not detach"),
    ],
)
def test_wrong_onsager_field_is_caught_with_its_hint(variant, case, hint):
    result = check_onsager_field(field_variant(variant))
    assert not result and result.failed_case == case
    assert hint in str(result)
    assert str(result).startswith(f"✗ ex-ch4-onsager-field: field_{variant} failed check {case} of 3: ")


def test_onsager_field_that_writes_into_h_is_caught():
    def in_place(R, potential, g, alpha, h):
        h.mul_(1.0 + 1e-3)
        return onsager_field(R, potential, g, alpha, h)

    result = check_onsager_field(in_place)
    assert not result and result.failed_case == 1 and "h was modified in place" in result.got


# --- the framework, for chapter 4 ---------------------------------------------------------------


def test_non_callable_is_a_type_error_naming_the_argument():
    with pytest.raises(TypeError, match="committor_1d must be callable"):
        check_committor(np.linspace(0, 1, 5))
    with pytest.raises(TypeError, match="onsager_field must be callable"):
        check_onsager_field("onsager_field")


def test_stub_raises_not_implemented_naming_the_exercise():
    def committor_stub(V, a, b, kT, x):
        raise NotImplementedError("Exercise ex-ch4-committor-1d: write committor_1d")

    def field_stub(R, potential, g, alpha, h):
        raise NotImplementedError("Exercise ex-ch4-onsager-field: write onsager_field")

    with pytest.raises(NotImplementedError, match="ex-ch4-committor-1d: committor_stub is not written yet"):
        check_committor(committor_stub)
    with pytest.raises(NotImplementedError, match="ex-ch4-onsager-field: field_stub is not written yet"):
        check_onsager_field(field_stub)


def test_registry_finds_the_chapter_4_checks():
    assert check("ex-ch4-committor-1d", committor_1d).passed
    assert check("ex-ch4-onsager-field", onsager_field).passed
    assert not check("ex-ch4-committor-1d", one_minus_q).passed

r"""Self-checks of chapter 4.

* :func:`check_committor` — ex-ch4-committor-1d (notebook 4.4): the committor of the overdamped
  Langevin dynamics :math:`dX = -V'(X)\,dt + \sqrt{2kT}\,dW` on the line between :math:`A = (-\infty, a]`
  and :math:`B = [b, \infty)`,
  :math:`q(x) = \int_a^x e^{V(s)/kT}ds \big/ \int_a^b e^{V(s)/kT}ds`;
* :func:`check_onsager_field` — ex-ch4-onsager-field (notebook 4.1): the OnsagerNet vector field
  :math:`f(h) = -\big[M(h) + W(h)\big]\nabla V(h) + g(h)` with :math:`M = LL^\top + \alpha I`,
  :math:`W = U - U^\top`, where :math:`L` is the lower triangle (with the diagonal) and :math:`U` the
  strict upper triangle of the network's raw matrix :math:`R(h)`, and :math:`\nabla V` by autograd.
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import check_callable
from ..numerics import generator
from ._framework import CaseFailed, CheckResult, describe, diagnose, exercise_check, run_cases

__all__ = ["check_committor", "check_onsager_field"]


# --- chapter 4 · notebook 4.4: the committor in one dimension ----------------------------------

#: The answer must match the reference to this absolute accuracy (a trapezoidal rule on a few
#: thousand points, or scipy.integrate.quad, gets there easily).
COMMITTOR_TOLERANCE = 1e-4


def _committor_quad(V, a, b, exponent_scale, x, sign=1.0):
    r""":math:`\int_a^x e^{\pm V/kT} / \int_a^b e^{\pm V/kT}` by adaptive quadrature (``exponent_scale`` = 1/kT)."""
    from scipy.integrate import quad

    grid = np.linspace(a, b, 2001)
    shift = float(np.max(sign * exponent_scale * V(grid)))  # e^{shift} cancels in the ratio

    def density(s):
        return np.exp(sign * exponent_scale * V(s) - shift)

    total = quad(density, a, b, limit=400, epsabs=0.0, epsrel=1e-12)[0]
    return np.array([quad(density, a, xi, limit=400, epsabs=0.0, epsrel=1e-12)[0] for xi in x]) / total, shift, total


def _committor_mistakes(V, a, b, kT, x) -> list[tuple[np.ndarray, str]]:
    """What the typical wrong committors return on this case, with the hint for each."""
    q, shift, total = _committor_quad(V, a, b, 1.0 / kT, x)
    order = np.argsort(x)
    xs = x[order]
    weights = np.exp(V(xs) / kT)
    coarse = np.concatenate([[0.0], np.cumsum(0.5 * (weights[1:] + weights[:-1]) * np.diff(xs))])
    only_given = np.empty_like(coarse)
    only_given[order] = coarse / coarse[-1]
    return [
        (
            _committor_quad(V, a, b, 1.0 / kT, x, sign=-1.0)[0],
            "this integrates the Boltzmann weight e^{-V/kT}: the committor integrates e^{+V/kT}. From "
            "(e^{-V/kT} q')' = 0, q' is proportional to e^{+V/kT}, so q rises steeply where V is HIGH (at the barrier)",
        ),
        (
            1.0 - q,
            "q is reversed (you computed 1 - q, the probability to reach A first): q(a) = 0 and q(b) = 1, so "
            "integrate from a up to x",
        ),
        (
            q * total * np.exp(shift),
            "the normalisation is missing: divide ∫_a^x e^{V/kT} by ∫_a^b e^{V/kT}, so that q(b) = 1",
        ),
        (_committor_quad(V, a, b, 1.0, x)[0], "kT is ignored: the exponent is V/kT, not V"),
        (_committor_quad(V, a, b, kT, x)[0], "the exponent is V·kT: divide by the temperature, e^{V/kT}"),
        (
            only_given,
            "you integrated only over the points x you were given, a coarse grid: integrate on a fine grid of "
            "your own from a to b (or use scipy.integrate.quad), then evaluate at x",
        ),
    ]


def _near(got, candidate, tolerance: float = 2e-3) -> bool:
    got, candidate = np.asarray(got, dtype=float), np.asarray(candidate, dtype=float)
    return got.shape == candidate.shape and bool(np.allclose(got, candidate, rtol=tolerance, atol=tolerance))


def _committor_hint(got, V, a, b, kT, x, error) -> str:
    """The hint for a wrong committor: a typical mistake it matches, else what is wrong at a glance."""
    if not np.all(np.isfinite(got)):
        return (
            "q has NaN or infinite values: e^{V/kT} overflows for large V/kT — subtract the largest V/kT "
            "before exponentiating (the factor cancels in the ratio)"
        )
    for answer, hint in _committor_mistakes(V, a, b, kT, x):
        if _near(got, answer):
            return hint
    at_a, at_b = got[x == a], got[x == b]
    if at_a.size and abs(at_a[0]) > 1e-3:
        return f"q(a) must be 0 (the dynamics started in A is already there); you return q(a) = {at_a[0]:.4g}"
    if at_b.size and abs(at_b[0] - 1) > 1e-3:
        return f"q(b) must be 1 (normalise by ∫_a^b e^{{V/kT}}); you return q(b) = {at_b[0]:.4g}"
    if error < 2e-2:
        return (
            f"close, but off by {error:.2g}: the quadrature is not accurate enough — use a finer grid "
            "(a few thousand points) or scipy.integrate.quad"
        )
    return (
        "compute q(x) = ∫_a^x e^{V(s)/kT} ds / ∫_a^b e^{V(s)/kT} ds for each point x, with V "
        "evaluated on a fine grid between a and b"
    )


def _check_committor_case(committor_1d, V, a, b, kT, x, reference=None):
    if reference is None:
        reference = _committor_quad(V, a, b, 1.0 / kT, x)[0]
    x_in = x.copy()
    got = committor_1d(V, a, b, kT, x_in)
    if not np.array_equal(x_in, x):
        raise CaseFailed(
            "x unchanged",
            "x was modified in place",
            "sort or shift a copy (np.sort(x), not x.sort()): the caller's x must stay as it was",
        )
    if isinstance(got, torch.Tensor):
        got = got.detach().cpu().numpy()
    try:
        got = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        raise CaseFailed(
            f"an array of shape {x.shape}", describe(got), "return q at the points x, as a numpy array"
        ) from None
    if got.shape != x.shape:
        hint = (
            "return one value q(x_i) for every point x_i, in an array of the shape of x"
            if got.size != x.size
            else "return an array of the same shape as x (reshape, or do not add a dimension)"
        )
        raise CaseFailed(f"shape {x.shape} (same as x)", f"shape {got.shape}", hint)
    error = float(np.abs(got - reference).max()) if np.all(np.isfinite(got)) else float("inf")
    if not error <= COMMITTOR_TOLERANCE:
        hint = _committor_hint(got, V, a, b, kT, x, error)
        raise CaseFailed(
            f"q within {COMMITTOR_TOLERANCE:g} of {describe(reference)}", f"largest error {error:.3g}: {describe(got)}", hint
        )


@exercise_check("ex-ch4-committor-1d")
def check_committor(committor_1d) -> CheckResult:
    r"""Check ``committor_1d(V, a, b, kT, x)`` of notebook 4.4.

    ``V`` is a vectorised potential (numpy array in, array of the same shape out), ``a < b`` the
    boundaries of :math:`A = (-\infty, a]` and :math:`B = [b, \infty)`, ``kT > 0`` the temperature and
    ``x`` a 1-D array of points in :math:`[a, b]`, in any order; the result is
    :math:`q(x) = \int_a^x e^{V/kT} / \int_a^b e^{V/kT}` at those points, an array of the shape of ``x``,
    accurate to ``1e-4``. Cases: a linear potential (closed form), a tilted cosine well and a narrow
    Gaussian barrier of ten :math:`kT` (scipy quadrature); the points include ``a`` and ``b``.
    """
    check_callable("committor_1d", committor_1d)

    def linear(s):
        return 1.5 * s

    def cosine(s):
        return 2.0 * np.cos(3.0 * s) + 0.5 * s * s

    def barrier(s):
        return 3.0 * np.exp(-((s - 0.3) ** 2) / (2 * 0.2**2))

    x_linear = np.array([0.5, -1.0, 1.7, 0.2, 2.0, -0.4])
    slope = 1.5 / 0.6
    exact_linear = np.expm1(slope * (x_linear + 1.0)) / np.expm1(slope * 3.0)
    x_cosine = np.array([0.9, -1.3, -0.7, 1.6, 0.0, 0.35, -0.2, 1.25, 0.6])
    x_barrier = np.array([0.25, -0.5, 0.33, 1.2, 0.1])
    return run_cases(
        "ex-ch4-committor-1d",
        committor_1d,
        [
            (
                "V(x) = 1.5 x, kT = 0.6, a = -1, b = 2 (closed form q = (e^{2.5(x+1)} - 1)/(e^{7.5} - 1)), 6 points",
                lambda: _check_committor_case(committor_1d, linear, -1.0, 2.0, 0.6, x_linear, exact_linear),
            ),
            (
                "V(x) = 2 cos 3x + x²/2, kT = 0.8, a = -1.3, b = 1.6, 9 points in no particular order",
                lambda: _check_committor_case(committor_1d, cosine, -1.3, 1.6, 0.8, x_cosine),
            ),
            (
                "a narrow barrier V(x) = 3 exp(-(x - 0.3)²/0.08) of 10 kT, kT = 0.3, a = -0.5, b = 1.2",
                lambda: _check_committor_case(committor_1d, barrier, -0.5, 1.2, 0.3, x_barrier),
            ),
        ],
    )


# --- chapter 4 · notebook 4.1: the OnsagerNet vector field -------------------------------------


def _onsager_parts(raw_matrix, alpha):
    L, U = torch.tril(raw_matrix), torch.triu(raw_matrix, diagonal=1)
    identity = torch.eye(raw_matrix.shape[-1], dtype=raw_matrix.dtype)
    return L, U, identity


def _apply(matrix, vector):
    return (matrix @ vector.unsqueeze(-1)).squeeze(-1)


def _onsager_mistakes(R, potential, g, alpha, h) -> list[tuple[torch.Tensor, str]]:
    """What the typical wrong OnsagerNet fields return on this case, with the hint for each."""
    with torch.enable_grad():
        h_ = h.detach().requires_grad_(True)
        grad_V = torch.autograd.grad(potential(h_).sum(), h_)[0]
    with torch.no_grad():
        raw, force = R(h), g(h)
        L, U, identity = _onsager_parts(raw, alpha)
        M, W = L @ L.mT + alpha * identity, U - U.mT
        return [
            (_apply(M + W, grad_V) + force, "the sign of (M + W)∇V: the field is f = -(M + W)∇V + g, downhill in V"),
            (
                -_apply(M - W, grad_V) + force,
                "the conservative part has the wrong sign: W = U - Uᵀ, and the product is (M + W)∇V — multiplying "
                "∇V from the left, ∇Vᵀ(M + W), gives (M - W)∇V; use (M + W) @ grad_V.unsqueeze(-1)",
            ),
            (
                -_apply(M + U, grad_V) + force,
                "W is not antisymmetrised: W = U - Uᵀ with U the strict upper triangle, not U alone",
            ),
            (
                -_apply(M + U + U.mT, grad_V) + force,
                "W = U + Uᵀ is symmetric: the conservative part is antisymmetric, W = U - Uᵀ",
            ),
            (
                -_apply(L @ L + alpha * identity + W, grad_V) + force,
                "M is built without the transpose: M = L Lᵀ + αI (L @ L.mT), which is symmetric positive "
                "semi-definite; L @ L is neither",
            ),
            (
                -_apply(L.mT @ L + alpha * identity + W, grad_V) + force,
                "M = Lᵀ L is positive semi-definite too, but the model (and the package) use M = L Lᵀ + αI",
            ),
            (
                -_apply(raw @ raw.mT + alpha * identity + W, grad_V) + force,
                "M is built from the whole raw matrix R: take its lower triangle with the diagonal, L = torch.tril(R)",
            ),
            (
                -_apply(torch.tril(raw, -1) @ torch.tril(raw, -1).mT + alpha * identity + W, grad_V) + force,
                "L is the lower triangle WITH the diagonal, torch.tril(R), not the strict lower triangle",
            ),
            (-_apply(L @ L.mT + W, grad_V) + force, "αI is missing from M = L Lᵀ + αI (it makes M positive definite)"),
            (-_apply(M + W, grad_V), "the force g(h) is missing: f = -(M + W)∇V + g"),
            (
                -_apply(M + W, grad_V / len(h)) + force,
                "∇V is divided by the batch size: differentiate potential(h).sum(), not .mean() — each V(h_i) "
                "depends only on its own h_i, so the gradient of the sum is the batch of gradients",
            ),
            (
                -_apply(M + W, h) + force,
                "you used ∇V = h, the gradient of |h|²/2 only: compute ∇V of the given potential with torch.autograd.grad",
            ),
        ]


def _check_onsager_values(onsager_field, R, potential, g, alpha, h, reference):
    h_in = h.clone()
    got = onsager_field(R, potential, g, alpha, h_in)
    if not torch.equal(h_in.detach(), h):
        raise CaseFailed(
            "h unchanged",
            "h was modified in place",
            "work on h.detach().requires_grad_(True) (a new tensor) and do not write into h",
        )
    if not isinstance(got, torch.Tensor):
        raise CaseFailed(
            f"a torch.Tensor of shape {tuple(h.shape)}", describe(got), "return the field f(h) as a tensor of the shape of h"
        )
    if got.shape != h.shape:
        if got.shape == (*h.shape, 1):
            hint = "squeeze the last dimension: (M + W) @ grad_V.unsqueeze(-1) has shape (batch, m, 1)"
        elif got.ndim == 3 and got.shape[:2] == (h.shape[0], h.shape[0]):
            hint = (
                "grad_V @ (M + W) broadcasts over the batch (shape (batch, batch, m)): multiply each matrix with "
                "its own vector, (M + W) @ grad_V.unsqueeze(-1), then squeeze"
            )
        else:
            hint = "f(h) has one row per state h_i, of the dimension m of h"
        raise CaseFailed(f"shape {tuple(h.shape)} (same as h)", f"shape {tuple(got.shape)}", hint)
    got = got.detach().to(reference.dtype)
    if not torch.allclose(got, reference, rtol=1e-6, atol=1e-9):
        hint = diagnose(
            got,
            _onsager_mistakes(R, potential, g, alpha, h),
            "build L = torch.tril(R(h)), U = torch.triu(R(h), 1), M = L Lᵀ + αI, W = U - Uᵀ, ∇V by "
            "torch.autograd.grad(potential(h).sum(), h), then f = -(M + W)∇V + g(h)",
        )
        raise CaseFailed(describe(reference), describe(got), hint)


def _lorenz_case(sigma=7.0, b=2.0, r=20.0, alpha=0.5):
    """Lorenz '63 in Onsager form (exercise ex-ch4-lorenz-onsager), in the shifted coordinates h = (X, Y, Z - r - σ)."""
    from ..onsager import lorenz63

    diagonal = torch.tensor([sigma - alpha, 1.0 - alpha, b - alpha], dtype=torch.float64).sqrt()

    def raw_matrix(h):
        raw = torch.diag_embed(diagonal.expand(len(h), 3)).clone()
        raw[:, 0, 1] = -sigma
        raw[:, 1, 2] = h[:, 0]
        return raw

    def potential(h):
        return 0.5 * (h**2).sum(-1)

    def force(h):
        return torch.tensor([0.0, 0.0, -b * (r + sigma)], dtype=h.dtype).expand_as(h)

    h = torch.randn(6, 3, generator=generator(41), dtype=torch.float64) * torch.tensor([8.0, 8.0, 10.0], dtype=torch.float64)
    shift = torch.tensor([0.0, 0.0, r + sigma], dtype=torch.float64)
    return raw_matrix, potential, force, alpha, h, lorenz63(h + shift, sigma=sigma, b=b, r=r)


def _network_case(seed=7, dim=4, hidden=10, alpha=0.3):
    """A fresh OnsagerNet of the package (in float64) and the callables the exercise passes."""
    from ..onsager import OnsagerNet

    model = OnsagerNet(dim, width=hidden, alpha=alpha, beta=0.2, seed=seed).double()  # global RNG untouched
    with torch.no_grad():  # make L, U and G of order one, so that every ingredient shows in f
        model.heads.weight[model.n_potential :].mul_(10.0)
        model.heads.bias[model.n_potential :].normal_(generator=generator(seed))
        model.force_bias.normal_(generator=generator(seed + 1))

    def raw_matrix(h):
        return model.heads(torch.tanh(model.features(h)))[:, model.n_potential :].reshape(-1, dim, dim)

    h = torch.randn(5, dim, generator=generator(seed + 2), dtype=torch.float64)
    return model, raw_matrix, h


def _check_onsager_weights(onsager_field):
    model, raw_matrix, h = _network_case(seed=3, dim=3, hidden=8, alpha=0.2)
    weights = torch.randn(h.shape, generator=generator(5), dtype=torch.float64)
    parameters = [p for p in model.parameters()]
    reference = torch.autograd.grad((model(h) * weights).sum(), parameters)
    got = onsager_field(raw_matrix, model.potential, model.force, model.alpha, h.clone())
    if not isinstance(got, torch.Tensor) or not got.requires_grad:
        raise CaseFailed(
            "f(h) differentiable in the network's weights",
            "a tensor without a graph",
            "do not detach and do not use torch.no_grad(): training differentiates f in the weights",
        )
    got_grad = torch.autograd.grad((got * weights).sum(), parameters, allow_unused=True)
    got_grad = [torch.zeros_like(p) if gr is None else gr for p, gr in zip(parameters, got_grad)]
    names = [name for name, _ in model.named_parameters()]
    for name, want, have in zip(names, reference, got_grad):
        if not torch.allclose(have, want, rtol=1e-5, atol=1e-8):
            if name.startswith("features") or name == "heads.weight" or name == "heads.bias":
                hint = (
                    "∇V does not carry the graph of the weights: call torch.autograd.grad(potential(h).sum(), "
                    "h, create_graph=True), so that training can differentiate through ∇V"
                )
            else:
                hint = "the force g(h) must enter f as computed by g, without detaching it"
            raise CaseFailed(f"the gradient of Σ w·f in {name}: {describe(want)}", describe(have), hint)


@exercise_check("ex-ch4-onsager-field")
def check_onsager_field(onsager_field) -> CheckResult:
    r"""Check ``onsager_field(R, potential, g, alpha, h)`` of notebook 4.1.

    ``R(h)`` returns the raw matrices, shape ``(batch, m, m)``; ``potential(h)`` the energies, shape
    ``(batch,)``; ``g(h)`` the force, shape ``(batch, m)``; ``alpha`` is a float and ``h`` a tensor of
    shape ``(batch, m)``. The result is :math:`f(h) = -(M + W)\nabla V + g` with
    :math:`M = LL^\top + \alpha I`, :math:`W = U - U^\top` (``L = tril(R)``, ``U = triu(R, 1)``),
    shape ``(batch, m)``. Cases: Lorenz '63 in Onsager form (σ = 7, b = 2, r = 20, closed form); a fresh
    OnsagerNet of the package with m = 4 against its own forward pass; and the gradient of the field
    in the network's weights (training must be able to differentiate through ∇V).
    """
    check_callable("onsager_field", onsager_field)

    def lorenz():
        raw_matrix, potential, force, alpha, h, reference = _lorenz_case()
        _check_onsager_values(onsager_field, raw_matrix, potential, force, alpha, h, reference)

    def network():
        model, raw_matrix, h = _network_case()
        with torch.no_grad():
            reference = model(h)
        _check_onsager_values(onsager_field, raw_matrix, model.potential, model.force, model.alpha, h, reference)

    return run_cases(
        "ex-ch4-onsager-field",
        onsager_field,
        [
            ("Lorenz '63 as an Onsager system (σ = 7, b = 2, r = 20, α = 0.5, V = |h|²/2), 6 states", lorenz),
            ("a fresh OnsagerNet with m = 4, α = 0.3, against the package's forward pass, 5 states", network),
            (
                "the gradient of Σ w·f(h) in the weights of an OnsagerNet (m = 3), against the package's",
                lambda: _check_onsager_weights(onsager_field),
            ),
        ],
    )

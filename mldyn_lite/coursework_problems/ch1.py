"""Graded problems of chapter 1 (see :mod:`mldyn_lite.coursework_problems`)."""

from __future__ import annotations

from . import Problem

__all__ = ["PROBLEMS"]

MIDPOINT = Problem(
    label="ex-ch1-midpoint",
    title="A residual network that looks half a step ahead",
    kind="derive and implement",
    book_notebook="notebooks/ch1/02_composition_is_dynamics.ipynb",
    statement=r"""A residual network $x_{n+1} = x_n + \delta f(t_n, x_n)$ is the forward Euler scheme for
$\dot x = f(t, x)$, with $\delta = T/L$ and $t_n = n\delta$; its error at time $T$ falls like $\delta^1$.
The **explicit midpoint rule** evaluates the field a second time, half a step ahead:

$$
x_{n+1} = x_n + \delta\, f\!\left(t_n + \tfrac{\delta}{2},\; x_n + \tfrac{\delta}{2} f(t_n, x_n)\right).
$$

1. Show (Taylor expansion of one step) that its local error is $O(\delta^3)$, so its global error is
   $O(\delta^2)$ — one order better than Euler for one extra evaluation of $f$ per layer.
2. Write `midpoint_flow(f, x0, T, steps)`: `f(t, x)` takes a time (a float) and a batch `x` of shape
   `(batch, d)` and returns a tensor of that shape; `x0` is a tensor of shape `(batch, d)`. Return the final
   state $x_L$ (shape of `x0`) after `steps` midpoint steps of size $\delta = T/$`steps`, without changing `x0`.

The self-check below also measures the order of convergence, which must be 2.""",
    solution='''def midpoint_flow(f, x0, T, steps):
    """Explicit midpoint rule: a residual block that looks half a step ahead."""
    delta = T / steps
    x = x0
    for n in range(steps):
        t = n * delta
        x = x + delta * f(t + delta / 2, x + delta / 2 * f(t, x))
    return x''',
    visible_tests="""from mldyn_lite.selfcheck import check_midpoint_flow

print(check_midpoint_flow(midpoint_flow))""",
    hidden_tests="""_x = midpoint_flow(lambda t, x: x**2, torch.ones(1, 1, dtype=torch.float64), 0.2, 1)
assert abs(float(_x.reshape(-1)[0]) - 1.242) < 1e-12, (
    "hidden case 'one midpoint step of dx/dt = x^2 from x0 = 1, T = 0.2' failed: expected 1 + 0.2 (1 + 0.1)^2 = 1.242, "
    f"got {float(_x.reshape(-1)[0]):.6f}")
_x = midpoint_flow(lambda t, x: np.cos(t) * torch.ones_like(x), torch.zeros(3, 2, dtype=torch.float64), 1.0, 5)
_expected = 0.2 * sum(np.cos(0.2 * (n + 0.5)) for n in range(5))
assert tuple(_x.shape) == (3, 2) and torch.allclose(_x, torch.full((3, 2), _expected, dtype=torch.float64), atol=1e-12), (
    "hidden case 'dx/dt = cos(t), 5 steps to T = 1 (the midpoint quadrature sum)' failed: "
    f"expected {_expected:.8f} in every entry, got {_x}")""",
    mistake='''def midpoint_flow(f, x0, T, steps):
    """Heun's method (trapezoidal), not the midpoint rule."""
    delta = T / steps
    x = x0
    for n in range(steps):
        t = n * delta
        x = x + delta / 2 * (f(t, x) + f(t + delta, x + delta * f(t, x)))
    return x''',
    mistake_name="Heun's method instead of the midpoint rule",
)

LINEAR_FIT = Problem(
    label="ex-ch1-noisy-fit",
    title="Learning a linear vector field from a trajectory",
    kind="derive and implement",
    book_notebook="notebooks/ch1/03_three_interactions.ipynb",
    statement=r"""A trajectory of $\dot x = Ax + b$ in $\mathbb R^d$ is observed at equally spaced times. Learn the
field by least squares: estimate $\dot x$ at the interior snapshots by **central differences**
$(x_{k+1} - x_{k-1})/(2\Delta t)$ and find the coefficients $\Xi$, of shape $(1 + d, d)$, that minimise
$\sum_k \|\dot x_k - \Xi^\top (1, x_k)\|^2$, so that $\Xi = [b^\top; A^\top]$ when the fit is exact.

1. Show that central differences are exact when the trajectory is a polynomial of degree 2 in time, while
   forward differences make an error $\tfrac{\Delta t}{2}\ddot x$.
2. Write `fit_linear_field(times, trajectory)`: numpy arrays `times` of shape `(n,)` (uniform, any start
   and step) and `trajectory` of shape `(n, d)`; return $\Xi$ (numpy, shape `(1 + d, d)`) without changing
   the inputs. Take $\Delta t$ from the data.""",
    solution='''def fit_linear_field(times, trajectory):
    """Least squares for dx/dt ≈ Ξᵀ(1, x), derivatives by central differences; Ξ has shape (1 + d, d)."""
    dt = times[1] - times[0]
    derivatives = (trajectory[2:] - trajectory[:-2]) / (2 * dt)
    features = np.column_stack([np.ones(len(derivatives)), trajectory[1:-1]])
    return np.linalg.lstsq(features, derivatives, rcond=None)[0]''',
    visible_tests="""from mldyn_lite.selfcheck import check_linear_field_fit

print(check_linear_field_fit(fit_linear_field))""",
    hidden_tests="""_t = 0.1 * np.arange(30)
_trajectory = np.column_stack([_t**2 / 2 + 0.5 * _t - 1.0, _t + 0.5])  # dx1/dt = x2, dx2/dt = 1: quadratic in t
_xi = np.asarray(fit_linear_field(_t, _trajectory), dtype=float)
_truth = np.array([[0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
assert _xi.shape == (3, 2) and np.abs(_xi - _truth).max() < 1e-8, (
    "hidden case 'trajectory quadratic in time (dx1/dt = x2, dx2/dt = 1), where central differences are exact' "
    f"failed: expected Xi = {_truth.tolist()}, got {np.round(_xi, 6).tolist()}")
_t = 0.3 + 0.05 * np.arange(40)
_xi = np.asarray(fit_linear_field(_t, (2.0 + 3.0 * _t)[:, None]), dtype=float)
assert _xi.shape == (2, 1) and np.abs(_xi - np.array([[3.0], [0.0]])).max() < 1e-8, (
    "hidden case 'x(t) = 2 + 3t sampled from t = 0.3 with step 0.05' failed: expected Xi = [[3], [0]], "
    f"got {np.round(_xi, 6).tolist()}")""",
    mistake='''def fit_linear_field(times, trajectory):
    """Forward differences: first order in dt."""
    dt = times[1] - times[0]
    derivatives = (trajectory[1:] - trajectory[:-1]) / dt
    features = np.column_stack([np.ones(len(derivatives)), trajectory[:-1]])
    return np.linalg.lstsq(features, derivatives, rcond=None)[0]''',
    mistake_name="forward differences",
)

EULER_STABILITY = Problem(
    label="cw-ch1-euler-stability",
    title="Diagnose a deep ResNet that blows up",
    kind="diagnose a failure",
    statement=r"""A linear residual network $x_{n+1} = x_n + \delta A x_n$ is forward Euler for $\dot x = Ax$.
When every eigenvalue of $A$ has a negative real part the ODE decays to 0 — and yet a colleague's network
with such an $A$ *blows up* as the depth grows with $\delta$ fixed. Diagnose it:

1. Show that $x_n = (I + \delta A)^n x_0$ decays for every $x_0$ exactly when $|1 + \delta\lambda| < 1$ for
   every eigenvalue $\lambda$ of $A$ (take $A$ diagonalisable), and solve this for $\delta$: the largest stable
   step is $\delta^* = \min_\lambda \frac{-2\,\mathrm{Re}\,\lambda}{|\lambda|^2}$. Why is $2/|\lambda|$ (the
   answer for real $\lambda$) wrong when $A$ rotates?
2. Write `largest_stable_step(A)`: `A` is a numpy array of shape `(d, d)`; return $\delta^*$ as a float. If
   some eigenvalue has $\mathrm{Re}\,\lambda \ge 0$ no step is stable: raise `ValueError` with a message
   that names `A`.""",
    solution='''def largest_stable_step(A):
    """delta* = min over eigenvalues of -2 Re(lambda) / |lambda|^2: |1 + delta lambda| < 1 for delta < delta*."""
    eigenvalues = np.linalg.eigvals(np.asarray(A, dtype=float))
    if np.any(eigenvalues.real >= 0):
        raise ValueError(f"A has an eigenvalue with real part >= 0 ({eigenvalues.real.max():.3g}): no stable step")
    return float(np.min(-2 * eigenvalues.real / np.abs(eigenvalues) ** 2))''',
    visible_tests='''_step = largest_stable_step(np.diag([-1.0, -4.0]))
assert abs(_step - 0.5) < 1e-12, f"A = diag(-1, -4): expected 0.5 (eigenvalue -4 limits the step), got {_step}"''',
    hidden_tests="""_A = np.array([[-1.0, 10.0], [-10.0, -1.0]])
_step = largest_stable_step(_A)
assert abs(_step - 2 / 101) < 1e-12, (
    "hidden case 'a damped rotation, eigenvalues -1 ± 10i' failed: expected 2 Re|λ| / |λ|^2 = 2/101 = 0.0198, "
    f"got {_step:.4g}")
_rng = np.random.default_rng(7)
_M = _rng.standard_normal((5, 5))
_A = -0.5 * np.eye(5) + (_M - _M.T)  # stable: eigenvalues -0.5 + i omega
_step = largest_stable_step(_A)
for _factor, _decays in ((0.98, True), (1.02, False)):
    _radius = np.abs(np.linalg.eigvals(np.eye(5) + _factor * _step * _A)).max()
    assert (_radius < 1) == _decays, (
        f"hidden case 'random stable 5x5 A, step {_factor} x your delta*' failed: the spectral radius of I + delta A is "
        f"{_radius:.4f}, so the ResNet {'grows' if _radius >= 1 else 'decays'}; "
        "at the true delta* it changes from decay to growth")
try:
    largest_stable_step(np.array([[0.1, 0.0], [0.0, -1.0]]))
except ValueError:
    pass
else:
    raise AssertionError("hidden case 'A with an eigenvalue 0.1 > 0' failed: expected a ValueError, got a step")""",
    mistake='''def largest_stable_step(A):
    """2 / |lambda|: right for real eigenvalues only."""
    eigenvalues = np.linalg.eigvals(np.asarray(A, dtype=float))
    if np.any(eigenvalues.real >= 0):
        raise ValueError("A has an eigenvalue with real part >= 0")
    return float(np.min(2 / np.abs(eigenvalues)))''',
    mistake_name="2/|λ| instead of -2 Re λ/|λ|²",
)

PROBLEMS = [MIDPOINT, LINEAR_FIT, EULER_STABILITY]

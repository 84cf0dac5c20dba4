"""Graded problems of chapter 3 (see :mod:`mldyn_lite.coursework_problems`)."""

from __future__ import annotations

from . import Problem

__all__ = ["PROBLEMS"]

CAUSAL_FILTER = Problem(
    label="ex-ch3-causal-filter",
    title="The causal filter of a linear functional",
    kind="derive and implement",
    book_notebook="notebooks/ch3/01_sequence_modelling.ipynb",
    statement=r"""A linear, causal, shift-invariant functional of an input path is $y_t = \int_0^\infty \rho(s)\,
x_{t-s}\,ds$ (Riesz representation). On sampled sequences it becomes the Riemann sum

$$
y_k = \Delta t \sum_{j=0}^{k} \rho_j\, x_{k-j}, \qquad \rho_j = \rho(j\,\Delta t),
$$

where inputs before time 0 count as zero and lags $j \ge$ `n_lags` are left out.

1. Explain why causality means that only lags $j \ge 0$ appear, and what the impulse response of the filter is.
2. Write `causal_filter(rho, x, dt)`: numpy arrays `rho` of shape `(n_lags,)` and `x` of shape `(batch, length)`
   (one sequence per row; `n_lags` may be larger than `length`) and a float `dt`; return `y`, a numpy array of
   the shape of `x`, without changing the arguments.""",
    solution='''def causal_filter(rho, x, dt):
    """y_k = dt * sum_j rho_j x_{k-j}, j = 0 .. min(k, n_lags - 1), for each row of x (batch, length)."""
    batch, length = x.shape
    y = np.zeros((batch, length))
    for j in range(min(len(rho), length)):  # lag j: rho_j times the input j steps earlier
        y[:, j:] += dt * rho[j] * x[:, :length - j]
    return y''',
    visible_tests="""from mldyn_lite.selfcheck import check_causal_filter

print(check_causal_filter(causal_filter))""",
    hidden_tests="""_rho = np.array([0.5, -1.0, 2.0, 0.25, 3.0])
_x = np.zeros((2, 4))
_x[0, 0], _x[1, 1] = 1.0, 2.0
_y = np.asarray(causal_filter(_rho, _x, 0.5))
_expected = np.array([[0.25, -0.5, 1.0, 0.125], [0.0, 0.5, -1.0, 2.0]])
assert _y.shape == (2, 4) and np.allclose(_y, _expected, atol=1e-12), (
    "hidden case 'impulse responses (an impulse at k = 0 and 2 at k = 1), dt = 0.5, 5 lags on sequences of length 4' "
    f"failed: expected {_expected.tolist()}, got {np.round(_y, 6).tolist()}")
_x = np.random.default_rng(5).standard_normal((3, 50))
_y = np.asarray(causal_filter(np.ones(1), _x, 0.1))
assert _y.shape == (3, 50) and np.allclose(_y, 0.1 * _x, atol=1e-12), (
    "hidden case 'a single lag rho = [1], dt = 0.1: y = dt x' failed")""",
    mistake='''def causal_filter(rho, x, dt):
    """Anticausal: uses future inputs x_{k+j}."""
    batch, length = x.shape
    y = np.zeros((batch, length))
    for j in range(min(len(rho), length)):
        y[:, :length - j] += dt * rho[j] * x[:, j:]
    return y''',
    mistake_name="future inputs (an anticausal filter)",
)

MEMORY_KERNEL = Problem(
    label="ex-ch3-rnn-kernel",
    title="The memory kernel of a linear RNN",
    kind="derive and implement",
    book_notebook="notebooks/ch3/02_approximation_and_memory.ipynb",
    statement=r"""The linear RNN $\dot h_t = W h_t + U x_t$, $\hat y_t = c^\top h_t$, started at $h = 0$ in the far
past, is the functional $\hat y_t = \int_0^\infty \rho(s)\, x_{t-s}\, ds$.

1. Solve the ODE (variation of constants) and show that its memory kernel is $\rho(s) = c^\top e^{Ws} U$. What
   kernel does a $2\times 2$ Jordan block $W$ give?
2. Write `memory_kernel(W, U, c, s)`: numpy arrays `W` of shape `(m, m)`, `U` and `c` of shape `(m,)`, `s` of
   shape `(n,)` with lags $s_k \ge 0$ (any lags, not necessarily a uniform grid); return an array of shape
   `(n,)` with the entries $\rho(s_k)$. (`scipy.linalg.expm` is the matrix exponential.)""",
    solution='''from scipy.linalg import expm


def memory_kernel(W, U, c, s):
    """rho(s_k) = c^T expm(W s_k) U for each lag s_k; W (m, m), U and c (m,), s (n,) -> array of shape (n,)."""
    return np.array([c @ expm(W * lag) @ U for lag in s])''',
    visible_tests="""from mldyn_lite.selfcheck import check_memory_kernel

print(check_memory_kernel(memory_kernel))""",
    hidden_tests="""_s = np.array([0.0, 0.3, 1.7, 4.0, 2.2])
_rho = np.asarray(memory_kernel(np.array([[-1.0, 1.0], [0.0, -1.0]]), np.array([0.0, 1.0]), np.array([1.0, 0.0]), _s))
assert _rho.shape == (5,) and np.allclose(_rho, _s * np.exp(-_s), atol=1e-12), (
    "hidden case 'a Jordan block W = [[-1, 1], [0, -1]], U = e_2, c = e_1, lags in any order: rho(s) = s e^{-s}' "
    f"failed: expected {np.round(_s * np.exp(-_s), 6).tolist()}, got {np.round(_rho, 6).tolist()}")
_W = np.array([[-0.5, 2.0], [0.0, -1.5]])
_rho = np.asarray(memory_kernel(_W, np.array([1.0, 1.0]), np.array([1.0, 0.0]), np.array([1.0])))
_expected = np.exp(-0.5) + 2.0 * (np.exp(-0.5) - np.exp(-1.5))
assert _rho.shape == (1,) and abs(_rho[0] - _expected) < 1e-12, (
    f"hidden case 'an upper triangular W that is not symmetric, s = 1' failed: expected {_expected:.6f}, got {_rho}")""",
    mistake='''from scipy.linalg import expm


def memory_kernel(W, U, c, s):
    """The transposed matrix: expm(W^T s)."""
    return np.array([c @ expm(W.T * lag) @ U for lag in s])''',
    mistake_name="the transpose of W",
)

UNFOLDING_RANKS = Problem(
    label="ex-ch3-unfolding-ranks",
    title="Tensorisation ranks: how many channels a dilated CNN needs",
    kind="derive and implement",
    book_notebook="notebooks/ch3/02_approximation_and_memory.ipynb",
    statement=r"""A dilated CNN with $K$ layers of dilation $1, 2, 4, \dots$ reads a kernel on the lags
$s = 0, \dots, 2^K - 1$ as the $2\times\cdots\times 2$ tensor $T[b_0, \dots, b_{K-1}] = \rho\big(\sum_k b_k 2^k\big)$
(axis $k$ is the binary digit $b_k$, least significant first). The channels needed at cut $k$ are bounded below by
the rank of the unfolding $(b_0 \dots b_{k-1}) \times (b_k \dots b_{K-1})$, a $2^k\times 2^{K-k}$ matrix.

1. Show that an exponential kernel $\rho(s) = a^s$ has all these ranks equal to 1.
2. Write `unfolding_ranks(rho, K, tol)`: a numpy array `rho` of shape `(2**K,)`, an integer `K`, a float `tol`;
   return a list of $K - 1$ integers: for $k = 1, \dots, K-1$ the number of singular values of the unfolding
   that exceed `tol` times the largest one. Mind the digit order.""",
    solution='''def unfolding_ranks(rho, K, tol):
    """Ranks (singular values > tol * largest) of the unfoldings (b_0..b_{k-1}) x (b_k..b_{K-1}), k = 1..K-1."""
    tensor = np.asarray(rho).reshape((2,) * K).transpose(tuple(range(K - 1, -1, -1)))  # axis k is digit b_k
    ranks_by_cut = []
    for k in range(1, K):
        singular_values = np.linalg.svd(tensor.reshape(2**k, -1), compute_uv=False)
        ranks_by_cut.append(int((singular_values > tol * singular_values[0]).sum()))
    return ranks_by_cut''',
    visible_tests="""from mldyn_lite.selfcheck import check_unfolding_ranks

print(check_unfolding_ranks(unfolding_ranks))""",
    hidden_tests='''_g = np.array([[1.0, 2.0], [3.0, -1.0]])  # rank 2 in (b_1, b_2)
_rho = np.array([(1.0 + 2.0 * (s & 1)) * _g[(s >> 1) & 1, (s >> 2) & 1] for s in range(8)])
_ranks = [int(r) for r in unfolding_ranks(_rho, 3, 1e-10)]
assert _ranks == [1, 2], (
    "hidden case 'K = 3, rho(s) = f(b_0) g(b_1, b_2) with g of rank 2: cut after b_0 has rank 1, after b_1 rank 2' "
    f"failed: expected [1, 2], got {_ranks} (reversed ranks mean the digits are in the wrong order)")
_ranks = [int(r) for r in unfolding_ranks(0.7 ** np.arange(32), 5, 1e-10)]
assert _ranks == [1, 1, 1, 1], f"hidden case 'rho(s) = 0.7^s, K = 5: every rank is 1' failed: got {_ranks}"''',
    mistake='''def unfolding_ranks(rho, K, tol):
    """C order: the most significant digit first."""
    tensor = np.asarray(rho).reshape((2,) * K)
    ranks_by_cut = []
    for k in range(1, K):
        singular_values = np.linalg.svd(tensor.reshape(2**k, -1), compute_uv=False)
        ranks_by_cut.append(int((singular_values > tol * singular_values[0]).sum()))
    return ranks_by_cut''',
    mistake_name="the most significant digit first",
)

_BLACK_BOX = '''def _black_box(rho, offset, dt, calls):
    """A causal, shift-invariant, affine sequence map: y_k = offset + dt sum_j rho_j x_{k-j}; counts its calls."""
    def system(x):
        calls.append(1)
        x = np.asarray(x, dtype=float)
        y = np.full(x.shape, float(offset))
        for j in range(min(len(rho), x.shape[1])):
            y[:, j:] += dt * rho[j] * x[:, :x.shape[1] - j]
        return y
    return system


'''

PROBE = Problem(
    label="cw-ch3-probe-memory",
    title="Measure the memory of a black box",
    kind="design an experiment",
    statement=r"""You are given a black box `system(x)`: it maps input sequences `x`, a numpy array of shape
`(batch, length)` (any batch and length, inputs before time 0 count as zero), to outputs of the same shape, and it
is causal, shift-invariant and **affine**: $y_k = c + \Delta t \sum_{j \ge 0} \rho_j\, x_{k-j}$, with an unknown
kernel $\rho$ and an unknown constant offset $c$ (a bias). Running it is expensive: you may call it **at most
twice**.

1. Design the experiment: which inputs identify $\rho_0, \dots, \rho_{n-1}$ exactly, whatever $c$ is, and why does
   one batch of well-chosen sequences suffice? What would a single impulse alone get wrong?
2. Write `probe_kernel(system, n_lags, dt)`: return the numpy array $(\rho_0, \dots, \rho_{n_{lags}-1})$, shape
   `(n_lags,)`, for a black box with time step `dt`.""",
    solution='''def probe_kernel(system, n_lags, dt):
    """An impulse and a zero input in one batch: the difference of the responses is dt * rho, the offset cancels."""
    inputs = np.zeros((2, n_lags))
    inputs[1, 0] = 1.0
    outputs = np.asarray(system(inputs), dtype=float)
    return (outputs[1] - outputs[0]) / dt''',
    visible_tests=_BLACK_BOX
    + '''_calls = []
_rho = np.array([1.0, 0.5, 0.25, 0.125])
_got = np.asarray(probe_kernel(_black_box(_rho, 0.0, 1.0, _calls), 4, 1.0))
assert _got.shape == (4,) and np.allclose(_got, _rho, atol=1e-12), (
    f"kernel 2^-j, no offset, dt = 1: expected {_rho.tolist()}, got {np.round(_got, 6).tolist()}")
assert len(_calls) <= 2, f"the black box was called {len(_calls)} times; at most 2 are allowed"''',
    hidden_tests=_BLACK_BOX
    + """_calls = []
_rho = np.random.default_rng(11).standard_normal(12)
_got = np.asarray(probe_kernel(_black_box(_rho, 0.7, 0.25, _calls), 12, 0.25))
assert _got.shape == (12,) and np.allclose(_got, _rho, atol=1e-10), (
    "hidden case 'a random kernel of 12 lags behind an offset c = 0.7, dt = 0.25' failed: "
    f"expected {np.round(_rho[:4], 4).tolist()}..., got {np.round(_got[:4], 4).tolist()}... (does the offset cancel?)")
assert len(_calls) <= 2, f"hidden case 'at most two calls' failed: the black box was called {len(_calls)} times"
_got = np.asarray(probe_kernel(_black_box(np.arange(1.0, 31.0), -2.0, 0.1, []), 30, 0.1))
assert np.allclose(_got, np.arange(1.0, 31.0), atol=1e-9), (
    "hidden case 'kernel rho_j = j + 1 on 30 lags, offset -2, dt = 0.1' failed: "
    f"got {np.round(_got[:4], 4).tolist()}...")""",
    mistake='''def probe_kernel(system, n_lags, dt):
    """A single impulse: the offset is read as part of the kernel."""
    impulse = np.zeros((1, n_lags))
    impulse[0, 0] = 1.0
    return np.asarray(system(impulse), dtype=float)[0] / dt''',
    mistake_name="a single impulse, without a zero-input baseline",
)

PROBLEMS = [CAUSAL_FILTER, MEMORY_KERNEL, UNFOLDING_RANKS, PROBE]

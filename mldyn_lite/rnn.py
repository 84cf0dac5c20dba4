r"""Recurrent networks as parametrised sequences of functionals: kernels, white-noise risk, plateaus.

An RNN :math:`h_{k+1} = \sigma(W h_k + U x_k)`, :math:`\hat y_k = c^\top h_k`
parametrises the whole sequence of functionals :math:`\hat H_k : (x_0, \dots,
x_{k-1}) \mapsto \hat y_k` with one set of weights. Its residual form
:math:`h_{k+1} = h_k + \delta\,\sigma(W h_k + U x_k)` is the Euler scheme of the
continuous-time idealisation :math:`\dot h_t = \sigma(W h_t + U x_t)`; with
:math:`\sigma(z) = z` the model is the linear functional

.. math:: \hat H_t(\mathbf x) = \int_0^\infty x_{t-s}^\top \hat\rho(s)\, ds,
          \qquad \hat\rho(s) = c^\top e^{W s} U .

For white-noise inputs the expected squared error is the *white-noise risk*
:math:`R = \int_0^\infty (\rho(s) - \hat\rho(s))^2 ds`, so training reduces to
fitting kernels (Z. Li, J. Han, W. E & Q. Li, "On the curse of memory in
recurrent neural networks", ICLR 2021). For a diagonal RNN,
:math:`\hat\rho(s) = \sum_i a_i e^{-\lambda_i s}` with :math:`a_i = c_i U_i`,
:math:`\lambda_i = e^{s_i}`, and the target

.. math:: \rho(t) = \bar\rho(t) + \rho_{0,\omega}(t) = e^{-t} + e^{-(t - t_0)^2}

(an easy exponential part plus memory concentrated near the lag :math:`t_0`),
the risk and its gradient are in closed form (:func:`diagonal_rnn_risk`), so
gradient methods run in microseconds per step and the plateaus that the paper
proves — training stalls for a time that grows exponentially with the memory —
can be measured over many runs (:func:`train_plateau`: a run escapes when the learned kernel's value at
the lag :math:`t_0`, minus :math:`e^{-t_0}`, reaches a fraction of the bump's height 1).

Contents: :func:`residual_rnn`, :func:`train_sequence_model` (returns a :class:`SequenceFit`),
:func:`linear_rnn_kernel`, :func:`train_linear_rnn_kernel` (returns a :class:`KernelFit`), :func:`plateau_target`,
:func:`diagonal_rnn_risk`, :func:`train_diagonal_rnn` (a :class:`DiagonalRNNRuns`),
:func:`train_plateau` (a :class:`PlateauRuns`), :func:`learned_bump_amplitude`, :func:`escape_steps`,
:func:`escape_iterations`, :func:`bump_signal` (the escape-time estimate of chapter 3.3),
:func:`train_tanh_rnn` (a :class:`TanhRNNRun`). Every trainer returns a result dataclass (or NamedTuple)
holding the model (or its parameters), the history and the measured numbers.
Models and trainers take a ``device`` argument: by the book's rule (:mod:`mldyn_lite.numerics`) ``None`` means
the device of the input where there is one, else the CPU (where these small problems are fastest); ``"cuda"``
works unchanged. Random initialisations use a private generator seeded with ``seed``
(:func:`~mldyn_lite.numerics.generator`, also for PyTorch's default initialisation laws),
so the global random state is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ._checks import check_array, check_callable, check_choice, check_float, check_int, check_tensor
from .numerics import device_of, generator
from .runtime import get_device
from .training import fit, raise_if_nonfinite


def _renamed(value, old_value):
    """An argument's ``value``, or ``old_value`` where the caller passed it under its former name."""
    return value if old_value is None else old_value


def _init_like_pytorch(rnn: torch.nn.RNN, readout: torch.nn.Linear, gen: torch.Generator) -> None:
    """PyTorch's default initialisation of ``rnn`` and ``readout`` (same laws, same order of draws), drawn from ``gen``.

    With ``gen = generator(seed)`` the weights equal those PyTorch draws after a global reseed with ``seed``,
    but the global random state is never touched.
    """
    with torch.no_grad():
        bound = 1.0 / math.sqrt(rnn.hidden_size)
        for weight in rnn.parameters():
            torch.nn.init.uniform_(weight, -bound, bound, generator=gen)
        torch.nn.init.kaiming_uniform_(readout.weight, a=math.sqrt(5), generator=gen)
        bound = 1.0 / math.sqrt(readout.in_features)
        torch.nn.init.uniform_(readout.bias, -bound, bound, generator=gen)


SQRT_PI = math.sqrt(math.pi)

# --------------------------------------------------------------------------- RNNs as sequence maps


def residual_rnn(
    x: torch.Tensor, W: torch.Tensor, U: torch.Tensor, c: torch.Tensor, delta: float = 1.0, activation=torch.tanh
) -> torch.Tensor:
    r"""Run :math:`h_{k+1} = h_k + \delta\,\sigma(W h_k + U x_k)`, :math:`h_0 = 0`, and return :math:`\hat y_k = c^\top h_k`.

    Parameters
    ----------
    x
        Inputs, shape ``(batch, length, d)``.
    W, U, c
        Weights of shapes ``(m, m)``, ``(m, d)`` and ``(m,)``.
    delta
        Step size :math:`\delta`; as :math:`\delta \to 0` with :math:`x_k = x(k\delta)` the
        outputs converge (at first order) to those of :math:`\dot h = \sigma(W h + U x_t)`.
    activation
        :math:`\sigma`, applied elementwise.

    Returns
    -------
    Tensor of shape ``(batch, length + 1)``: :math:`\hat y_0, \dots, \hat y_{\text{length}}`.
    """
    x = check_tensor("x", x, ndim=3)
    W = check_tensor("W", W, ndim=2)
    m = W.shape[0]
    if W.shape != (m, m):
        raise ValueError(f"W must be square, got shape {tuple(W.shape)}")
    U = check_tensor("U", U, ndim=2)
    c = check_tensor("c", c, ndim=1)
    if U.shape != (m, x.shape[-1]) or c.shape != (m,):
        raise ValueError(
            f"U must have shape ({m}, {x.shape[-1]}) and c shape ({m},), got {tuple(U.shape)} and {tuple(c.shape)}"
        )
    delta = check_float("delta", delta, positive=True)
    check_callable("activation", activation)
    h = x.new_zeros(x.shape[0], m)
    outputs = [h @ c]
    for k in range(x.shape[1]):
        h = h + delta * activation(h @ W.T + x[:, k] @ U.T)
        outputs.append(h @ c)
    return torch.stack(outputs, dim=1)


class SequenceRNN(torch.nn.Module):
    r"""Tanh RNN with read-out :math:`h_{k+1} = \tanh(W h_k + U x_k + b)`, :math:`\hat y_k = c^\top h_{k+1} + c_0`.

    One set of weights defines the whole sequence of maps
    :math:`\hat H_k : (x_0, \dots, x_k) \mapsto \hat y_k`. With ``bidirectional=True`` a
    second RNN reads the sequence backwards and the read-out sees both hidden
    states — the model is then no longer causal. Inputs ``(batch, length, d)``,
    outputs ``(batch, length)``. ``width`` is the size of the hidden state :math:`h_k`
    (``hidden=`` is its former name, still accepted).
    """

    def __init__(
        self,
        d_in: int,
        width: int = 32,
        bidirectional: bool = False,
        seed: int = 0,
        device=None,
        *,
        hidden: int | None = None,
    ):
        super().__init__()
        d_in = check_int("d_in", d_in, minimum=1)
        width = check_int("width", _renamed(width, hidden), minimum=1)
        # built without values on the "meta" device (no draw from the global random state), then drawn from `seed`
        self.rnn = torch.nn.RNN(
            d_in, width, batch_first=True, nonlinearity="tanh", bidirectional=bool(bidirectional), device="meta"
        )
        self.readout = torch.nn.Linear(width * (2 if bidirectional else 1), 1, device="meta")
        self.to_empty(device="cpu")
        _init_like_pytorch(self.rnn, self.readout, generator(seed))
        self.to(device_of() if device is None else get_device(device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = check_tensor("x", x, ndim=3)
        return self.readout(self.rnn(x)[0])[..., 0]


@dataclass
class SequenceFit:
    """Result of :func:`train_sequence_model`."""

    model: torch.nn.Module  #: the trained model (the one passed in, trained in place)
    history: list  #: the training loss before each Adam step
    final_loss: float  #: the training loss after the last step


def train_sequence_model(
    model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int = 300, lr: float = 1e-2, clip: float | None = 1.0
) -> SequenceFit:
    r"""Full-batch Adam on the mean squared error :math:`\frac{1}{NK}\sum_{n,k} (\hat y_k^{(n)} - y_k^{(n)})^2`.

    ``model`` maps ``x`` of shape ``(n, length, d)`` to ``(n, length)`` and is trained in place
    (:func:`mldyn_lite.fit`, gradient norm clipped at ``clip``).

    Returns
    -------
    SequenceFit
        ``model``, ``history`` (the loss history) and ``final_loss`` (the loss after training).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    x = check_tensor("x", x, ndim=3)
    y = check_tensor("y", y, ndim=2)
    if y.shape != x.shape[:2]:
        raise ValueError(f"y must have shape (n, length) = {tuple(x.shape[:2])}, got {tuple(y.shape)}")
    history = fit(model, lambda: ((model(x) - y) ** 2).mean(), steps=steps, lr=lr, clip=clip)
    with torch.no_grad():
        final_loss = float(((model(x) - y) ** 2).mean())
    return SequenceFit(model, history, final_loss)


def linear_rnn_kernel(W: torch.Tensor, U: torch.Tensor, c: torch.Tensor, dt: float, n_lags: int) -> torch.Tensor:
    r"""The memory kernel :math:`\hat\rho(s_j) = c^\top e^{W s_j} U` of a linear RNN on the grid :math:`s_j = j\,\Delta t`.

    Computed from :math:`E = e^{W\Delta t}` and its powers by repeated doubling
    (:math:`\log_2 n` batched products), so it is cheap and differentiable in
    :math:`(W, U, c)`. ``U`` may have shape ``(m,)`` (scalar input) or ``(m, d)``.

    Returns
    -------
    Tensor of shape ``(n_lags,)`` or ``(n_lags, d)``.
    """
    W = check_tensor("W", W, ndim=2)
    m = W.shape[0]
    if W.shape != (m, m):
        raise ValueError(f"W must be square, got shape {tuple(W.shape)}")
    U = check_tensor("U", U, ndim=(1, 2))
    c = check_tensor("c", c, ndim=1)
    if U.shape[0] != m or c.shape != (m,):
        raise ValueError(f"U must have {m} rows and c shape ({m},), got {tuple(U.shape)} and {tuple(c.shape)}")
    dt = check_float("dt", dt, positive=True)
    n_lags = check_int("n_lags", n_lags, minimum=1)
    step = torch.linalg.matrix_exp(W * dt)
    powers = torch.eye(m, dtype=W.dtype, device=W.device)[None]  # E^0
    jump = step
    while powers.shape[0] < n_lags:  # [E^0..E^{k-1}] -> [E^0..E^{2k-1}]
        powers = torch.cat([powers, powers @ jump], dim=0)
        jump = jump @ jump
    powers = powers[:n_lags]
    vector = U if U.ndim == 2 else U[:, None]
    kernel = torch.einsum("i,nij,jd->nd", c, powers, vector)
    return kernel if U.ndim == 2 else kernel[:, 0]


class LinearRNN(torch.nn.Module):
    r"""A continuous-time linear RNN in modal (real Jordan) form, applied to sampled sequences.

    Every diagonalisable real :math:`W` is similar to a block-diagonal matrix with
    :math:`2\times 2` blocks :math:`\begin{pmatrix}-\alpha_k & \omega_k\\ -\omega_k & -\alpha_k\end{pmatrix}`
    (and :math:`1\times 1` blocks :math:`-\alpha`), and a change of basis of the hidden state
    leaves :math:`c^\top e^{Ws} U` unchanged. So with ``m`` hidden units the kernel is

    .. math:: \hat\rho(s) = \sum_{k=1}^{\lfloor m/2\rfloor} e^{-\alpha_k s}\,(p_k\cos\omega_k s + q_k\sin\omega_k s)
              \; [+\, a\, e^{-\alpha s} \text{ if } m \text{ is odd}],

    :math:`\alpha_k = e^{\sigma_k} > 0` (stable). :meth:`kernel` evaluates it in
    :math:`O(m\,n)` operations, :meth:`matrices` returns an explicit :math:`(W, U, c)`,
    and :meth:`forward` applies :math:`y_k = \Delta t \sum_j \hat\rho(j\Delta t)\, x_{k-j}`.
    Initialisation: :math:`\alpha \sim` log-uniform on ``decay_range``,
    :math:`\omega \sim U(0, \text{max\_frequency})`, amplitudes :math:`N(0, 1/m)`.
    """

    def __init__(
        self,
        m: int,
        dt: float = 1.0,
        seed: int = 0,
        decay_range=(0.02, 2.0),
        max_frequency: float = 2.0,
        dtype=torch.float64,
        device=None,
    ):
        super().__init__()
        self.m = check_int("m", m, minimum=1)
        self.dt = check_float("dt", dt, positive=True)
        low = check_float("decay_range[0]", decay_range[0], positive=True)
        high = check_float("decay_range[1]", decay_range[1], positive=True)
        if low > high:
            raise ValueError(f"decay_range must be increasing, got {tuple(decay_range)!r}")
        max_frequency = check_float("max_frequency", max_frequency, nonnegative=True)
        gen = generator(seed)
        pairs, single = self.m // 2, self.m % 2
        options = {"dtype": dtype, "device": device_of() if device is None else get_device(device)}

        def log_decay(n):
            return math.log(low) + (math.log(high) - math.log(low)) * torch.rand(n, generator=gen, dtype=torch.float64)

        def amplitude(n):
            return torch.randn(n, generator=gen, dtype=torch.float64) / math.sqrt(self.m)

        self.log_decay = torch.nn.Parameter(log_decay(pairs).to(**options))
        self.frequency = torch.nn.Parameter(
            (max_frequency * torch.rand(pairs, generator=gen, dtype=torch.float64)).to(**options)
        )
        self.cos_amplitude = torch.nn.Parameter(amplitude(pairs).to(**options))
        self.sin_amplitude = torch.nn.Parameter(amplitude(pairs).to(**options))
        self.real_log_decay = torch.nn.Parameter(log_decay(single).to(**options))
        self.real_amplitude = torch.nn.Parameter(amplitude(single).to(**options))

    def kernel(self, n_lags: int) -> torch.Tensor:
        r""":math:`\hat\rho(j\,\Delta t)` for :math:`j = 0, \dots, n_{\text{lags}} - 1`."""
        n_lags = check_int("n_lags", n_lags, minimum=1)
        s = self.dt * torch.arange(n_lags, dtype=self.log_decay.dtype, device=self.log_decay.device)[:, None]
        decay = torch.exp(-self.log_decay.exp() * s)
        phase = self.frequency * s
        rho = (decay * (self.cos_amplitude * torch.cos(phase) + self.sin_amplitude * torch.sin(phase))).sum(1)
        return rho + (self.real_amplitude * torch.exp(-self.real_log_decay.exp() * s)).sum(1)

    def matrices(self):
        r"""Explicit :math:`(W, U, c)` with :math:`c^\top e^{Ws} U` equal to :meth:`kernel`."""
        options = {"dtype": self.log_decay.dtype, "device": self.log_decay.device}
        W, U, c = torch.zeros(self.m, self.m, **options), torch.zeros(self.m, **options), torch.zeros(self.m, **options)
        for k in range(self.m // 2):
            i = 2 * k
            alpha, omega = self.log_decay[k].exp(), self.frequency[k]
            W[i, i] = W[i + 1, i + 1] = -alpha
            W[i, i + 1], W[i + 1, i] = omega, -omega
            U[i] = 1.0  # first column of exp(W s) is e^{-alpha s} (cos, -sin)
            c[i], c[i + 1] = self.cos_amplitude[k], -self.sin_amplitude[k]
        if self.m % 2:
            W[-1, -1] = -self.real_log_decay[0].exp()
            U[-1], c[-1] = 1.0, self.real_amplitude[0]
        return W, U, c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Outputs for inputs of shape ``(batch, length)`` (zero history before time 0)."""
        x = check_tensor("x", x, ndim=2)
        rho = self.kernel(x.shape[1])
        padded = torch.nn.functional.pad(x[:, None, :], (x.shape[1] - 1, 0))
        return self.dt * torch.nn.functional.conv1d(padded, rho.flip(0)[None, None, :])[:, 0, :]


class KernelFit(NamedTuple):
    """Result of :func:`train_linear_rnn_kernel` (unpacks as ``kernel, history, error, model``)."""

    kernel: np.ndarray  #: the fitted kernel on the grid
    history: list  #: the loss after each Adam step
    error: float  #: relative L2 error on the grid
    model: LinearRNN  #: the trained network


def train_linear_rnn_kernel(s, rho, m: int, steps: int = 800, lr: float = 5e-2, seed: int = 0, device=None) -> KernelFit:
    r"""Train a linear RNN with ``m`` hidden units (:class:`LinearRNN`) on the white-noise risk of a kernel.

    The loss is the trapezoidal :math:`\int (\rho - \hat\rho)^2 ds` on the uniform grid ``s``
    (the expected squared error for white-noise input), minimised with Adam
    (:func:`mldyn_lite.fit`) in float64.

    Returns
    -------
    KernelFit
        ``kernel`` (the fitted kernel on the grid, numpy), ``history`` (the loss history), ``error``
        (:math:`\|\rho - \hat\rho\| / \|\rho\|` on the grid) and the trained ``model``.
    """
    s = check_array("s", s, ndim=1)
    rho = check_array("rho", rho, ndim=1)
    if s.shape != rho.shape or s.size < 2 or np.any(s < 0) or not np.allclose(np.diff(s), s[1] - s[0]):
        raise ValueError("s must be a uniform grid of non-negative lags with the same shape as rho")
    m = check_int("m", m, minimum=1)
    steps = check_int("steps", steps, minimum=1)
    lr = check_float("lr", lr, positive=True)
    device = device_of() if device is None else get_device(device)
    dt = float(s[1] - s[0])
    weights = np.full(s.size, dt)
    weights[[0, -1]] /= 2
    weights_t = torch.as_tensor(weights, dtype=torch.float64, device=device)
    target = torch.as_tensor(rho, dtype=torch.float64, device=device)
    model = LinearRNN(m, dt=dt, seed=seed, device=device)

    def loss():
        return (weights_t * (target - model.kernel(s.size)) ** 2).sum()

    history = fit(model, loss, steps=steps, lr=lr)
    with torch.no_grad():
        kernel = model.kernel(s.size).cpu().numpy()
    error = float(np.sqrt((weights * (rho - kernel) ** 2).sum() / (weights * rho**2).sum()))
    return KernelFit(kernel, history, error, model)


# --------------------------------------------------------------------------- plateaus: closed-form risk


def _memory(memory) -> float:
    return check_float("memory", memory, nonnegative=True)


def plateau_target(t, memory: float) -> np.ndarray:
    r"""The target kernel :math:`\rho(t) = e^{-t} + e^{-(t - t_0)^2}` with memory :math:`t_0` = ``memory``."""
    t0 = _memory(memory)
    t = check_array("t", t)
    if np.any(t < 0):
        raise ValueError("t must hold non-negative lags")
    return np.exp(-t) + np.exp(-((t - t0) ** 2))


def bump_energy(memory: float) -> float:
    r"""Memory-part energy :math:`\int_0^\infty e^{-2(t - t_0)^2} dt = \sqrt{\pi/8}(1 + \mathrm{erf}(\sqrt2 t_0))`."""
    t0 = _memory(memory)
    return math.sqrt(math.pi / 8) * (1 + math.erf(math.sqrt(2) * t0))


def _target_energy(t0: torch.Tensor) -> torch.Tensor:
    # ||e^{-t}||^2 + 2 <e^{-t}, bump> + ||bump||^2, all on [0, inf)
    cross = SQRT_PI / 2 * torch.exp(-(t0**2)) * torch.special.erfcx(0.5 - t0)
    bump = math.sqrt(math.pi / 8) * torch.special.erfc(-math.sqrt(2) * t0)
    return 0.5 + 2 * cross + bump


def diagonal_rnn_risk(a: torch.Tensor, log_rates: torch.Tensor, memory):
    r"""Closed-form white-noise risk of a diagonal linear RNN on the plateau target, and its gradient.

    With :math:`\hat\rho(t) = \sum_i a_i e^{-\lambda_i t}`, :math:`\lambda_i = e^{s_i}`,

    .. math::
        R = \|\rho\|^2 - 2\sum_i a_i p_i + \sum_{i,j} \frac{a_i a_j}{\lambda_i + \lambda_j},\qquad
        p_i = \langle \rho, e^{-\lambda_i t}\rangle = \frac{1}{1 + \lambda_i}
              + \frac{\sqrt\pi}{2} e^{-t_0^2}\,\mathrm{erfcx}\!\left(\frac{\lambda_i}{2} - t_0\right),

    where :math:`\mathrm{erfcx}(z) = e^{z^2}\mathrm{erfc}(z)` keeps the bump term stable, and

    .. math::
        \partial_{a_i} R = 2\Big(\sum_j \frac{a_j}{\lambda_i + \lambda_j} - p_i\Big),\qquad
        \partial_{s_i} R = -2 a_i \lambda_i \Big(p_i' + \sum_j \frac{a_j}{(\lambda_i + \lambda_j)^2}\Big),

    with :math:`p_i' = -\langle t\rho, e^{-\lambda_i t}\rangle`.

    Parameters
    ----------
    a, log_rates
        Tensors of shape ``(runs, m)`` (or ``(m,)`` for one run).
    memory
        :math:`t_0`: a float, or a tensor of shape ``(runs,)``.

    Returns
    -------
    risk, grad_a, grad_log_rates
        Shapes ``(runs,)``, ``(runs, m)``, ``(runs, m)`` (or without the run axis).
    """
    a = check_tensor("a", a, ndim=(1, 2))
    log_rates = check_tensor("log_rates", log_rates, ndim=(1, 2))
    if a.shape != log_rates.shape:
        raise ValueError(f"a and log_rates must have the same shape, got {tuple(a.shape)} and {tuple(log_rates.shape)}")
    single = a.ndim == 1
    if single:
        a, log_rates = a[None], log_rates[None]
    if isinstance(memory, torch.Tensor):
        t0 = check_tensor("memory", memory, ndim=1).to(a)
        if t0.shape[0] != a.shape[0]:
            raise ValueError(f"memory must hold one value per run ({a.shape[0]}), got {t0.shape[0]}")
        if bool((t0 < 0).any()):
            raise ValueError("memory must be >= 0")
    else:
        t0 = torch.full((a.shape[0],), _memory(memory), dtype=a.dtype, device=a.device)
    risk, grad_a, grad_s = _risk_and_gradient(a, log_rates, t0)
    if single:
        return risk[0], grad_a[0], grad_s[0]
    return risk, grad_a, grad_s


def _risk_and_gradient(a, log_rates, t0):
    rates = log_rates.exp()
    z = rates / 2 - t0[:, None]
    scaled = torch.special.erfcx(z)
    bump_weight = SQRT_PI / 2 * torch.exp(-(t0[:, None] ** 2))
    p = 1 / (1 + rates) + bump_weight * scaled
    dp = -1 / (1 + rates) ** 2 + bump_weight * (z * scaled - 1 / SQRT_PI)  # erfcx' = 2z erfcx - 2/sqrt(pi)
    gram = 1 / (rates[:, :, None] + rates[:, None, :])
    gram_a = (gram @ a[:, :, None])[:, :, 0]
    gram2_a = ((gram * gram) @ a[:, :, None])[:, :, 0]
    risk = _target_energy(t0) - 2 * (a * p).sum(1) + (a * gram_a).sum(1)
    grad_a = 2 * (gram_a - p)
    grad_s = -2 * a * rates * (dp + gram2_a)
    return risk, grad_a, grad_s


def _as_list(name, values, minimum=None, positive=False):
    if isinstance(values, (int, float)) and not isinstance(values, bool):
        values = [values]
    if not isinstance(values, Sequence) and not isinstance(values, np.ndarray):
        raise TypeError(f"{name} must be a number or a sequence of numbers, got {type(values).__name__}")
    values = [check_float(f"{name}[{i}]", v, minimum=minimum, positive=positive) for i, v in enumerate(values)]
    if not values:
        raise ValueError(f"{name} must not be empty")
    return values


def _plateau_runs(memories, seeds, lrs, m, init_scale, device):
    """Initial parameters (runs, 2m), memories and learning rates of every (memory, lr, seed) combination."""
    combos = [(t0, rate, seed) for t0 in memories for rate in lrs for seed in seeds]
    a0, s0 = [], []
    for _, _, seed in combos:
        rng = np.random.default_rng(seed)
        a0.append(init_scale * rng.standard_normal(m))
        s0.append(rng.uniform(-1.0, 1.0, m))
    options = {"dtype": torch.float64, "device": device}
    theta = torch.cat([torch.tensor(np.array(a0), **options), torch.tensor(np.array(s0), **options)], dim=1)
    t0 = torch.tensor([c[0] for c in combos], **options)
    eta = torch.tensor([c[1] for c in combos], **options)[:, None]
    return theta, t0, eta


def _run_optimizer(theta, t0, eta, m, steps, optimizer, escaped_now):
    """Run gradient descent or Adam on all runs at once; yield (step, risk, theta) before each update.

    ``escaped_now(risk, theta)`` returns a boolean tensor (runs,) or ``None``; the loop stops once every run has
    been marked escaped at least once.
    """
    first, second = torch.zeros_like(theta), torch.zeros_like(theta)
    escaped = torch.zeros(theta.shape[0], dtype=torch.bool, device=theta.device)
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(steps):
        risk, grad_a, grad_s = _risk_and_gradient(theta[:, :m], theta[:, m:], t0)
        raise_if_nonfinite(risk, step, "risk", "the learning rate is too large for this memory")
        yield step, risk, theta
        hit = escaped_now(risk, theta)
        if hit is not None:
            escaped |= hit
            if bool(escaped.all()):
                return
        grad = torch.cat([grad_a, grad_s], dim=1)
        if optimizer == "gd":
            theta = theta - eta * grad
        else:
            first = beta1 * first + (1 - beta1) * grad
            second = beta2 * second + (1 - beta2) * grad**2
            first_hat = first / (1 - beta1 ** (step + 1))
            second_hat = second / (1 - beta2 ** (step + 1))
            theta = theta - eta * first_hat / (second_hat.sqrt() + eps)
    yield steps, None, theta  # the final parameters


def _check_plateau_arguments(memories, seeds, m, lr, steps, optimizer, init_scale):
    memories = _as_list("memories", memories, minimum=0.0)
    lrs = _as_list("lr", lr, positive=True)
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    seeds = [check_int(f"seeds[{i}]", s, minimum=0) for i, s in enumerate(seeds)]
    if not seeds:
        raise ValueError("seeds must not be empty")
    m = check_int("m", m, minimum=1)
    steps = check_int("steps", steps, minimum=1)
    check_choice("optimizer", optimizer, {"adam", "gd"})
    init_scale = check_float("init_scale", init_scale, positive=True)
    return memories, seeds, m, lrs, steps, init_scale


@dataclass
class DiagonalRNNRuns:
    r"""Result of :func:`train_diagonal_rnn`; arrays have leading shape ``(len(memories), len(lr), len(seeds))``.

    ``losses``: the risk before each update (last axis: steps; ``nan`` after a stop); ``a`` and ``rates``: the final
    parameters (last axis: m) — the model, :math:`\hat\rho(t) = \sum_i a_i e^{-\lambda_i t}`; ``final_risk``: the
    last finite risk of each run.
    """

    memories: list
    lrs: list
    seeds: list
    losses: np.ndarray
    a: np.ndarray
    rates: np.ndarray
    final_risk: np.ndarray


def train_diagonal_rnn(
    memories,
    seeds=(0,),
    m: int = 16,
    lr=1e-2,
    steps: int = 2000,
    optimizer: str = "adam",
    init_scale: float = 0.1,
    stop_when_escaped: bool = False,
    device=None,
) -> DiagonalRNNRuns:
    r"""Train diagonal linear RNNs on the plateau target with the closed-form risk; all runs at once.

    One run per combination (memory :math:`t_0`, learning rate, seed). Parameters
    :math:`a_i \sim \text{init\_scale}\cdot N(0,1)`, :math:`s_i \sim U(-1, 1)` (so
    :math:`\lambda_i = e^{s_i} \in [e^{-1}, e]`) from ``numpy.random.default_rng(seed)``.
    Updates, elementwise per run (so the runs are independent):

    * ``"gd"``: :math:`\theta \leftarrow \theta - \eta\,\nabla R`;
    * ``"adam"``: :math:`m \leftarrow \beta_1 m + (1-\beta_1) g`, :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
      :math:`\theta \leftarrow \theta - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)` with bias-corrected
      :math:`\hat m, \hat v` (:math:`\beta = (0.9, 0.999)`, :math:`\epsilon = 10^{-8}`).

    This records the risk only. :func:`train_plateau` runs the same updates and also records the
    learned kernel's amplitude at the lag :math:`t_0` — the escape criterion of the book.

    Parameters
    ----------
    memories, lr, seeds
        A number or a sequence each; every combination is trained.
    stop_when_escaped
        Stop once every run's risk has fallen below half its bump energy (the *risk* criterion of
        :func:`escape_iterations`, which is met long before the bump is learned for :math:`t_0 \ge 3`);
        the remaining steps are filled with ``nan``.

    Returns
    -------
    DiagonalRNNRuns
        ``losses`` of shape ``(len(memories), len(lr), len(seeds), steps)``: the risk before each update; the final
        ``a`` and ``rates``, of shape ``(len(memories), len(lr), len(seeds), m)``; ``final_risk``, the last finite
        risk of each run.
    """
    memories, seeds, m, lrs, steps, init_scale = _check_plateau_arguments(
        memories, seeds, m, lr, steps, optimizer, init_scale
    )
    device = device_of() if device is None else get_device(device)
    theta, t0, eta = _plateau_runs(memories, seeds, lrs, m, init_scale, device)
    threshold = torch.tensor([bump_energy(t) / 2 for t in t0.tolist()], dtype=torch.float64, device=device)
    history = torch.full((steps, theta.shape[0]), float("nan"), dtype=torch.float64, device=device)
    stop = (lambda risk, _: risk < threshold) if stop_when_escaped else (lambda risk, _: None)
    for step, risk, current in _run_optimizer(theta, t0, eta, m, steps, optimizer, stop):
        theta = current
        if risk is not None:
            history[step] = risk
    shape = (len(memories), len(lrs), len(seeds))
    losses = history.T.reshape(*shape, steps).cpu().numpy()
    finite = np.isfinite(losses)
    last = np.where(finite.any(-1), steps - 1 - finite[..., ::-1].argmax(-1), 0)
    return DiagonalRNNRuns(
        memories=memories,
        lrs=lrs,
        seeds=seeds,
        losses=losses,
        a=theta[:, :m].reshape(*shape, m).cpu().numpy(),
        rates=theta[:, m:].exp().reshape(*shape, m).cpu().numpy(),
        final_risk=np.take_along_axis(losses, last[..., None], -1)[..., 0],
    )


def _check_kernel_state(a, rates) -> tuple[np.ndarray, np.ndarray]:
    """Validate a diagonal RNN's state: amplitudes ``a`` and positive ``rates`` of one shape ``(..., m)``."""
    a = check_array("a", a)
    rates = check_array("rates", rates)
    if a.shape != rates.shape:
        raise ValueError(f"a and rates must have the same shape, got {a.shape} and {rates.shape}")
    if np.any(rates <= 0):
        raise ValueError("rates must be positive")
    return a, rates


def learned_bump_amplitude(a, rates, memory):
    r"""How much of the memory bump a diagonal RNN has learned: :math:`\hat\rho(t_0) - e^{-t_0}`.

    With :math:`\hat\rho(t) = \sum_i a_i e^{-\lambda_i t}` and the target
    :math:`\rho(t) = e^{-t} + e^{-(t - t_0)^2}`, the target's bump has height 1 at the lag :math:`t_0`; this
    returns the learned kernel's value there minus the easy part :math:`e^{-t_0}` (0 when nothing of the bump
    is learned, 1 when the kernel matches the target at :math:`t_0`).

    ``a`` and ``rates``: arrays of shape ``(..., m)``; ``memory``: :math:`t_0`, a float or an array broadcasting
    against ``a[..., 0]``. Returns an array of shape ``a.shape[:-1]``.
    """
    a, rates = _check_kernel_state(a, rates)
    t0 = np.asarray(memory, dtype=float)
    if np.any(t0 < 0) or not np.all(np.isfinite(t0)):
        raise ValueError("memory must be finite and >= 0")
    return (a * np.exp(-rates * t0[..., None])).sum(-1) - np.exp(-t0)


@dataclass
class PlateauOptions:
    """Settings of :func:`train_plateau` (the page's defaults: Adam, learning rate 0.01, m = 16).

    ``escape_fraction``: a run has escaped the plateau when the learned bump amplitude at the lag :math:`t_0`
    (:func:`learned_bump_amplitude`) first reaches this fraction of the target's (which is 1).
    ``stop_when_escaped``: stop once every run has escaped; the remaining steps are ``nan``.
    """

    m: int = 16
    lr: float | Sequence[float] = 1e-2
    steps: int = 2000
    optimizer: str = "adam"
    init_scale: float = 0.1
    escape_fraction: float = 0.25
    stop_when_escaped: bool = False


@dataclass
class PlateauRuns:
    """Result of :func:`train_plateau`; arrays have leading shape ``(len(memories), len(lr), len(seeds))``.

    ``losses`` and ``amplitudes``: the risk and the learned bump amplitude at :math:`t_0` before each update
    (last axis: steps); ``a`` and ``rates``: final parameters (last axis: m); ``escape``: the first step whose
    amplitude reaches ``escape_fraction`` (``nan`` if none).
    """

    memories: list
    lrs: list
    seeds: list
    escape_fraction: float
    losses: np.ndarray
    amplitudes: np.ndarray
    a: np.ndarray
    rates: np.ndarray
    escape: np.ndarray


def train_plateau(memories, seeds=(0,), options: PlateauOptions | None = None, device=None) -> PlateauRuns:
    r"""Train diagonal linear RNNs on the plateau target and measure when each run escapes the plateau.

    The same runs and updates as :func:`train_diagonal_rnn` (closed-form white-noise risk of
    :math:`\hat\rho(t) = \sum_i a_i e^{-\lambda_i t}` against :math:`\rho(t) = e^{-t} + e^{-(t-t_0)^2}`;
    Z. Li, J. Han, W. E & Q. Li, ICLR 2021, section 5), recording at every step the learned bump amplitude
    :math:`\hat\rho(t_0) - e^{-t_0}` (:func:`learned_bump_amplitude`). A run *escapes* when that amplitude first
    reaches ``options.escape_fraction`` of the target bump's height 1: the network has then put memory at the
    lag :math:`t_0`, which a risk threshold does not guarantee (a broad, low bump lowers the risk too).
    """
    options = PlateauOptions() if options is None else options
    if not isinstance(options, PlateauOptions):
        raise TypeError(f"options must be a PlateauOptions, got {type(options).__name__}")
    memories, seeds, m, lrs, steps, init_scale = _check_plateau_arguments(
        memories, seeds, options.m, options.lr, options.steps, options.optimizer, options.init_scale
    )
    fraction = check_float("escape_fraction", options.escape_fraction, positive=True)
    device = device_of() if device is None else get_device(device)
    theta, t0, eta = _plateau_runs(memories, seeds, lrs, m, init_scale, device)
    runs = theta.shape[0]
    losses = torch.full((steps, runs), float("nan"), dtype=torch.float64, device=device)
    amplitudes = torch.full((steps, runs), float("nan"), dtype=torch.float64, device=device)

    def amplitude(theta):
        return (theta[:, :m] * torch.exp(-theta[:, m:].exp() * t0[:, None])).sum(1) - torch.exp(-t0)

    stop = (lambda _, theta: amplitude(theta) >= fraction) if options.stop_when_escaped else (lambda *_: None)
    for step, risk, current in _run_optimizer(theta, t0, eta, m, steps, options.optimizer, stop):
        theta = current
        if risk is not None:
            losses[step] = risk
            amplitudes[step] = amplitude(theta)
    shape = (len(memories), len(lrs), len(seeds))
    amplitudes = amplitudes.T.reshape(*shape, steps).cpu().numpy()
    return PlateauRuns(
        memories=memories,
        lrs=lrs,
        seeds=seeds,
        escape_fraction=fraction,
        losses=losses.T.reshape(*shape, steps).cpu().numpy(),
        amplitudes=amplitudes,
        a=theta[:, :m].reshape(*shape, m).cpu().numpy(),
        rates=theta[:, m:].exp().reshape(*shape, m).cpu().numpy(),
        escape=escape_steps(amplitudes, fraction),
    )


def bump_signal(a, rates, memories) -> np.ndarray:
    r"""How fast gradient flow builds the bump at the lag :math:`t_0` from a plateau state (rates frozen).

    On the plateau the easy part :math:`\bar\rho` is fitted and the bump enters the gradient only through
    :math:`\partial R/\partial a_i \ni -2\langle \rho_{0,\omega}, e^{-\lambda_i t}\rangle`. Ignoring the coupling
    between units, one gradient step of size :math:`\eta` changes the learned bump amplitude
    :math:`A = \sum_i a_i e^{-\lambda_i t_0} - e^{-t_0}` by :math:`2\eta S(t_0)` with

    .. math:: S(t_0) = \sum_i e^{-\lambda_i t_0}\,\langle e^{-(t - t_0)^2}, e^{-\lambda_i t}\rangle
              \approx \sqrt\pi \sum_i e^{\lambda_i^2/4}\, e^{-2\lambda_i t_0},

    exponentially small in the memory; the escape time is then of order :math:`1/(\eta\, S(t_0))`
    (the mechanism of the exponential plateaus of Z. Li, J. Han, W. E & Q. Li, ICLR 2021, section 5).

    ``a`` and ``rates``: a plateau state, arrays of shape ``(..., m)``; ``memories``: the :math:`t_0` at
    which to evaluate. Returns an array of shape ``a.shape[:-1] + (len(memories),)``.
    """
    a, rates = _check_kernel_state(a, rates)
    from scipy.special import erfcx

    t0 = np.asarray(_as_list("memories", memories, minimum=0.0))
    lam = rates[..., None, :]
    overlap = SQRT_PI / 2 * np.exp(-(t0[:, None] ** 2)) * erfcx(lam / 2 - t0[:, None])
    return (np.exp(-lam * t0[:, None]) * overlap).sum(-1)


def escape_steps(amplitudes, fraction: float = 0.25) -> np.ndarray:
    r"""First step at which the learned bump amplitude reaches ``fraction`` of the target's (``nan`` if never).

    ``amplitudes``: an array whose last axis is the step (e.g. ``PlateauRuns.amplitudes``); ``nan`` entries
    (steps after an early stop) never count. Returns an array of shape ``amplitudes.shape[:-1]``.
    """
    amplitudes = check_array("amplitudes", amplitudes, finite=False)
    fraction = check_float("fraction", fraction, positive=True)
    if amplitudes.ndim < 1 or amplitudes.shape[-1] == 0:
        raise ValueError(f"amplitudes must have a non-empty last (step) axis, got shape {amplitudes.shape}")
    reached = np.nan_to_num(amplitudes, nan=-np.inf) >= fraction
    out = np.full(amplitudes.shape[:-1], np.nan)
    hit = reached.any(-1)
    out[hit] = reached.argmax(-1)[hit]
    return out


def escape_iterations(losses, memories) -> np.ndarray:
    r"""First iteration at which the risk falls below half the bump energy (``nan`` if never).

    This *risk* criterion is met early: for :math:`t_0 \ge 3` the risk crosses half the bump energy while the
    learned kernel has less than half of the bump at the lag :math:`t_0`, and then creeps down slowly. The book
    measures escape with the bump amplitude instead (:func:`train_plateau`, :func:`escape_steps`).

    Parameters
    ----------
    losses
        Output of :func:`train_diagonal_rnn`, shape ``(len(memories), ...)``.
    memories
        The memories :math:`t_0` of its first axis.
    """
    losses = check_array("losses", losses, finite=False)
    memories = _as_list("memories", memories, minimum=0.0)
    if losses.ndim < 2 or losses.shape[0] != len(memories):
        raise ValueError(f"losses must have shape (len(memories)={len(memories)}, ..., steps), got {losses.shape}")
    out = np.full(losses.shape[:-1], np.nan)
    for i, t0 in enumerate(memories):
        below = losses[i] < bump_energy(t0) / 2
        hit = below.any(-1)
        out[i][hit] = below.argmax(-1)[hit]
    return out


# --------------------------------------------------------------------------- nonlinear RNN on sampled sequences


@dataclass
class TanhRNNRun:
    """Result of :func:`train_tanh_rnn`."""

    model: SequenceRNN  #: the trained tanh RNN with its read-out
    history: np.ndarray  #: the normalised training loss before each Adam step, shape ``(steps,)``
    final_loss: float  #: mean normalised loss over the last ``min(20, steps)`` steps


def train_tanh_rnn(
    memory: float,
    width: int = 16,
    steps: int = 600,
    lr: float = 1e-2,
    batch_size: int = 32,
    length: int = 40,
    dt: float = 0.25,
    seed: int = 0,
    device=None,
    *,
    hidden: int | None = None,
    batch: int | None = None,
) -> TanhRNNRun:
    r"""Train a tanh RNN (``torch.nn.RNN`` + linear read-out) with Adam on sampled sequences of the plateau target.

    The inputs are standard normal :math:`\xi_k` and the targets
    :math:`y_k = \sqrt{\Delta t}\sum_{j \le k} \rho(j\Delta t)\,\xi_{k-j}` — the discretised
    :math:`\int \rho(s)\, x_{t-s}\, ds` for white noise :math:`x`, scaled to unit-order variance. A fresh
    batch is drawn at every step; the loss is the mean squared error over all time
    steps divided by the output variance :math:`\Delta t\sum_j\rho_j^2` (1 = predicting zero).
    ``width`` is the size of the hidden state and ``batch_size`` the number of sequences per step
    (``hidden=`` and ``batch=``, their former names, are still accepted).

    Returns
    -------
    TanhRNNRun
        ``model`` (a :class:`SequenceRNN` initialised from ``seed``), ``history`` (ndarray of shape
        ``(steps,)``: the normalised training loss) and ``final_loss`` (its mean over the last 20 steps).
    """
    t0 = _memory(memory)
    width = check_int("width", _renamed(width, hidden), minimum=1)
    steps = check_int("steps", steps, minimum=1)
    lr = check_float("lr", lr, positive=True)
    batch_size = check_int("batch_size", _renamed(batch_size, batch), minimum=1)
    length = check_int("length", length, minimum=2)
    dt = check_float("dt", dt, positive=True)
    device = device_of() if device is None else get_device(device)
    gen = generator(seed)
    rho = plateau_target(np.arange(length) * dt, t0)
    variance = float(dt * (rho**2).sum())
    kernel = torch.as_tensor(math.sqrt(dt) * rho, dtype=torch.float32, device=device)
    model = SequenceRNN(1, width=width, seed=seed, device=device)  # the global random state is left alone
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = np.empty(steps)
    for step in range(steps):
        xi = torch.randn(batch_size, length, generator=gen).to(device)
        target = torch.nn.functional.conv1d(
            torch.nn.functional.pad(xi[:, None], (length - 1, 0)), kernel.flip(0)[None, None]
        )[:, 0]
        output = model(xi[:, :, None])
        loss = ((output - target) ** 2).mean() / variance
        raise_if_nonfinite(loss.detach(), step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history[step] = loss.item()
    return TanhRNNRun(model, history, float(history[-min(20, steps) :].mean()))


__all__ = [
    "KernelFit",
    "LinearRNN",
    "SequenceFit",
    "SequenceRNN",
    "TanhRNNRun",
    "bump_energy",
    "bump_signal",
    "diagonal_rnn_risk",
    "DiagonalRNNRuns",
    "PlateauOptions",
    "PlateauRuns",
    "escape_iterations",
    "escape_steps",
    "learned_bump_amplitude",
    "linear_rnn_kernel",
    "plateau_target",
    "residual_rnn",
    "train_diagonal_rnn",
    "train_linear_rnn_kernel",
    "train_plateau",
    "train_sequence_model",
    "train_tanh_rnn",
]

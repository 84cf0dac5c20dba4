r"""A small 2-D Rayleigh–Bénard solver whose three-mode truncation is Lorenz '63.

The lecture's main application of OnsagerNet {Yu, Tian, E & Li, *Phys. Rev.
Fluids* 6, 114402 (2021)} is Rayleigh–Bénard convection (RBC): a fluid layer of
height 1 heated from below. In the Boussinesq approximation, with lengths in
units of the height, times in units of the thermal diffusion time and the
temperature deviation :math:`\theta` from the conducting profile, the 2-D
equations for the stream function :math:`\psi` (velocity
:math:`u = (-\psi_z, \psi_x)`) and the vorticity :math:`\zeta = \nabla^2\psi` are

.. math::

    \partial_t \zeta + J(\psi, \zeta) = \mathrm{Pr}\,\nabla^2\zeta + \mathrm{Pr}\,\mathrm{Ra}\,\partial_x\theta,
    \qquad
    \partial_t \theta + J(\psi, \theta) = \partial_x\psi + \nabla^2\theta,

with the Jacobian :math:`J(a, b) = a_x b_z - a_z b_x = u\cdot\nabla b`. The walls
:math:`z = 0, 1` are free-slip and held at fixed temperature, the box is
periodic in :math:`x` with period :math:`2\pi/k`, and we keep the mirror-symmetric
fields (:math:`\psi` odd, :math:`\theta` even in :math:`x`, an invariant subspace):

.. math::

    \psi = \sum_{m=1}^{M}\sum_{n=1}^{N} A_{mn}(t)\,\sin(mkx)\sin(n\pi z), \qquad
    \theta = \sum_{m=0}^{M}\sum_{n=1}^{N} B_{mn}(t)\,\cos(mkx)\sin(n\pi z).

Projecting the equations onto these modes (Galerkin) gives, with
:math:`q_{mn} = m^2k^2 + n^2\pi^2`,

.. math::

    \dot A_{mn} = -\mathrm{Pr}\,q_{mn}A_{mn} + \mathrm{Pr}\,\mathrm{Ra}\,\frac{mk}{q_{mn}}B_{mn}
                  + \frac{[J(\psi,\zeta)]_{mn}}{q_{mn}}, \qquad
    \dot B_{mn} = mk\,A_{mn} - q_{mn}B_{mn} - [J(\psi,\theta)]_{mn}.

The nonlinear terms are evaluated on a grid and projected back with a
quadrature that is exact for the products (the 3/2 rule), so the ODE is the
exact Galerkin truncation.

Keeping only :math:`A_{11}`, :math:`B_{11}` and :math:`B_{02}` gives Lorenz's
1963 model: with :math:`k = \pi/\sqrt2` (the critical wavenumber),
:math:`q = k^2+\pi^2`, :math:`\mathrm{Ra}_c = q^3/k^2`, :math:`r = \mathrm{Ra}/\mathrm{Ra}_c`,
time :math:`\tau = q\,t` and :math:`X = \tfrac{\pi k}{\sqrt2 q}A_{11}`,
:math:`Y = \tfrac{\pi r}{\sqrt2}B_{11}`, :math:`Z = -\pi r B_{02}`,

.. math:: \dot X = \sigma(Y - X),\quad \dot Y = rX - Y - XZ,\quad \dot Z = XY - bZ,

with :math:`\sigma = \mathrm{Pr}` and :math:`b = 4\pi^2/q = 8/3`. This module works in
those Lorenz units throughout: time is :math:`\tau`, every :math:`\psi`
coefficient is scaled like :math:`X` and every :math:`\theta` coefficient like
:math:`Y`, so the state vector is :math:`u = (\tfrac{\pi k}{\sqrt2 q}A,\ \tfrac{\pi r}{\sqrt2}B)`.

Data: :func:`generate_data` (snapshots) and :func:`generate_pair_data` (each snapshot with its
partner :math:`\delta` later, the published storage, for the one-step loss of
:func:`mldyn_lite.onsager.fit_vector_field`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.integrate import solve_ivp

from ._checks import check_array, check_float, check_int

try:  # numpy's BLAS threads spin on small products and make the solver several times slower on 2 cores
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - threadpoolctl ships with scipy's usual stacks; without it just run
    threadpool_limits = None

__all__ = [
    "CRITICAL_WAVENUMBER",
    "RBCGalerkin",
    "fields_on_grid",
    "generate_data",
    "generate_pair_data",
    "nusselt_number",
    "simulate",
]

CRITICAL_WAVENUMBER = np.pi / np.sqrt(2.0)


@dataclass(frozen=True)
class RBCGalerkin:
    r"""Galerkin truncation of 2-D Rayleigh–Bénard convection with ``modes × modes`` Fourier–sine modes.

    Parameters
    ----------
    modes
        :math:`M = N`: the largest horizontal and vertical mode numbers kept.
        The state has :math:`M N + (M+1) N` entries.
    r
        Reduced Rayleigh number :math:`\mathrm{Ra}/\mathrm{Ra}_c`.
    prandtl
        Prandtl number (Lorenz's :math:`\sigma`).
    wavenumber
        Horizontal wavenumber :math:`k` of the box (period :math:`2\pi/k`);
        the default is the critical one, :math:`\pi/\sqrt2`.
    lorenz_only
        Keep only Lorenz's three modes :math:`A_{11}, B_{11}, B_{02}` (all other
        entries stay zero): then the system *is* Lorenz '63.
    """

    modes: int = 8
    r: float = 28.0
    prandtl: float = 10.0
    wavenumber: float = CRITICAL_WAVENUMBER
    lorenz_only: bool = False
    _ops: dict = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        check_int("modes", self.modes, minimum=2 if not self.lorenz_only else 1, maximum=64)
        check_float("r", self.r, positive=True)
        check_float("prandtl", self.prandtl, positive=True)
        check_float("wavenumber", self.wavenumber, positive=True)
        object.__setattr__(self, "_ops", self._build())

    # ----- set-up -------------------------------------------------------------------------------
    def _build(self) -> dict:
        M = N = max(self.modes, 2)
        k = self.wavenumber
        q0 = k**2 + np.pi**2
        ra = self.r * q0**3 / k**2
        m_psi = np.arange(1, M + 1)[:, None]
        m_theta = np.arange(0, M + 1)[:, None]
        n = np.arange(1, N + 1)[None, :]
        q_psi = (m_psi * k) ** 2 + (n * np.pi) ** 2
        q_theta = (m_theta * k) ** 2 + (n * np.pi) ** 2
        # quadrature grid (midpoints of the half period and of [0, 1]), exact for the quadratic products
        nx = nz = 3 * M // 2 + 1
        x = (np.arange(nx) + 0.5) * (np.pi / k) / nx
        z = (np.arange(nz) + 0.5) / nz
        mk_psi, mk_theta, npi = m_psi[:, 0] * k, m_theta[:, 0] * k, n[0] * np.pi
        sin_x = np.sin(np.outer(x, mk_psi))  # (nx, M)     sin(m k x), m >= 1
        cos_x_psi = np.cos(np.outer(x, mk_psi))  # (nx, M)     cos(m k x), m >= 1
        cos_x = np.cos(np.outer(x, mk_theta))  # (nx, M + 1) cos(m k x), m >= 0
        sin_x_theta = np.sin(np.outer(x, mk_theta))  # (nx, M + 1)
        sin_z = np.sin(np.outer(z, npi))  # (nz, N)
        cos_z = np.cos(np.outer(z, npi))
        # analysis (grid -> coefficients): midpoint quadrature of the L2 projections
        weight_cos = np.full(M + 1, 2.0 / nx)
        weight_cos[0] = 1.0 / nx
        ops = dict(
            M=M,
            N=N,
            k=k,
            q0=q0,
            ra=ra,
            q_psi=q_psi,
            q_theta=q_theta,
            mk_psi=m_psi * k,
            mk_theta=m_theta * k,
            npi=n * np.pi,
            sin_x=sin_x,
            cos_x_psi=cos_x_psi,
            cos_x=cos_x,
            sin_x_theta=sin_x_theta,
            sin_z=sin_z,
            cos_z=cos_z,
            project_sin_x=(2.0 / nx) * sin_x.T,
            project_cos_x=weight_cos[:, None] * cos_x.T,
            project_sin_z=(2.0 / nz) * sin_z,
        )
        # Lorenz scaling of the coefficients: psi like X, theta like Y
        ops["psi_scale"] = np.pi * k / (np.sqrt(2.0) * q0)
        ops["theta_scale"] = np.pi * self.r / np.sqrt(2.0)
        mask_psi = np.ones((M, N), bool)
        mask_theta = np.ones((M + 1, N), bool)
        if self.lorenz_only:
            mask_psi[:] = False
            mask_theta[:] = False
            mask_psi[0, 0] = True  # A_11
            mask_theta[1, 0] = True  # B_11
            mask_theta[0, 1] = True  # B_02
        ops["mask_psi"], ops["mask_theta"] = mask_psi, mask_theta
        return ops

    @property
    def dim(self) -> int:
        """Length of the state vector: :math:`MN + (M+1)N`."""
        M, N = self._ops["M"], self._ops["N"]
        return M * N + (M + 1) * N

    @property
    def rayleigh(self) -> float:
        """The Rayleigh number :math:`\\mathrm{Ra} = r\\,\\mathrm{Ra}_c`."""
        return float(self._ops["ra"])

    # ----- state <-> coefficients ----------------------------------------------------------------
    def split(self, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unscaled coefficients ``(A, B)`` of shape ``(..., M, N)`` and ``(..., M+1, N)`` from states ``(..., dim)``."""
        o = self._ops
        M, N = o["M"], o["N"]
        A = state[..., : M * N].reshape(*state.shape[:-1], M, N) / o["psi_scale"]
        B = state[..., M * N :].reshape(*state.shape[:-1], M + 1, N) / o["theta_scale"]
        return A, B

    def join(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`split`."""
        o = self._ops
        lead = A.shape[:-2]
        return np.concatenate([(A * o["psi_scale"]).reshape(*lead, -1), (B * o["theta_scale"]).reshape(*lead, -1)], -1)

    def lorenz_coordinates(self, states) -> np.ndarray:
        """Lorenz's :math:`(X, Y, Z)` read off states of shape ``(..., dim)``; returns ``(..., 3)``."""
        states = check_array("states", states)
        if states.shape[-1] != self.dim:
            raise ValueError(f"states must have last dimension {self.dim}, got shape {states.shape}")
        A, B = self.split(states)
        o = self._ops
        X = o["psi_scale"] * A[..., 0, 0]
        Y = o["theta_scale"] * B[..., 1, 0]
        Z = -np.pi * self.r * B[..., 0, 1]
        return np.stack([X, Y, Z], axis=-1)

    def from_lorenz(self, xyz) -> np.ndarray:
        """Embed Lorenz states ``(..., 3)`` as RBC states ``(..., dim)`` (all other modes zero)."""
        xyz = check_array("xyz", xyz)
        if xyz.shape[-1] != 3:
            raise ValueError(f"xyz must have last dimension 3, got shape {xyz.shape}")
        o = self._ops
        A = np.zeros((*xyz.shape[:-1], o["M"], o["N"]))
        B = np.zeros((*xyz.shape[:-1], o["M"] + 1, o["N"]))
        A[..., 0, 0] = xyz[..., 0] / o["psi_scale"]
        B[..., 1, 0] = xyz[..., 1] / o["theta_scale"]
        B[..., 0, 1] = -xyz[..., 2] / (np.pi * self.r)
        return self.join(A, B)

    # ----- the vector field -------------------------------------------------------------------------
    def rhs(self, states: np.ndarray) -> np.ndarray:
        r"""The Galerkin vector field :math:`\dot u = F(u)` in Lorenz units, for states of shape ``(..., dim)``."""
        o = self._ops
        A, B = self.split(states)
        A = A * o["mask_psi"]
        B = B * o["mask_theta"]
        q_psi, q_theta, mk_psi, mk_theta, npi = o["q_psi"], o["q_theta"], o["mk_psi"], o["mk_theta"], o["npi"]
        zeta = -q_psi * A

        def synth(left, coeffs, right):  # grid values: left @ coeffs @ right.T
            return left @ coeffs @ right.T

        psi_x = synth(o["cos_x_psi"], mk_psi * A, o["sin_z"])
        psi_z = synth(o["sin_x"], npi * A, o["cos_z"])
        zeta_x = synth(o["cos_x_psi"], mk_psi * zeta, o["sin_z"])
        zeta_z = synth(o["sin_x"], npi * zeta, o["cos_z"])
        theta_x = synth(o["sin_x_theta"], -mk_theta * B, o["sin_z"])
        theta_z = synth(o["cos_x"], npi * B, o["cos_z"])
        jac_zeta = psi_x * zeta_z - psi_z * zeta_x
        jac_theta = psi_x * theta_z - psi_z * theta_x
        J_zeta = o["project_sin_x"] @ jac_zeta @ o["project_sin_z"]
        J_theta = o["project_cos_x"] @ jac_theta @ o["project_sin_z"]
        pr, ra = self.prandtl, o["ra"]
        dA = -pr * q_psi * A + pr * ra * (mk_psi / q_psi) * B[..., 1:, :] + J_zeta / q_psi
        dB = -q_theta * B - J_theta
        dB[..., 1:, :] += mk_psi * A
        dA = dA * o["mask_psi"] / o["q0"]
        dB = dB * o["mask_theta"] / o["q0"]
        return self.join(dA, dB)

    # ----- data --------------------------------------------------------------------------------------
    def random_states(
        self, n: int, seed: int = 0, lorenz_box=((-25, 25), (-25, 25), (-5, 30)), perturbation: float = 1.0
    ) -> np.ndarray:
        r"""Random initial states: Lorenz modes uniform in ``lorenz_box``, all other modes
        Gaussian with standard deviation ``perturbation / (m + n)`` (Lorenz units)."""
        n = check_int("n", n, minimum=1)
        perturbation = check_float("perturbation", perturbation, nonnegative=True)
        rng = np.random.default_rng(check_int("seed", seed, minimum=0))
        o = self._ops
        M, N = o["M"], o["N"]
        box = np.asarray(lorenz_box, dtype=float)
        xyz = rng.uniform(box[:, 0], box[:, 1], size=(n, 3))
        m_psi, n_psi = np.meshgrid(np.arange(1, M + 1), np.arange(1, N + 1), indexing="ij")
        m_th, n_th = np.meshgrid(np.arange(0, M + 1), np.arange(1, N + 1), indexing="ij")
        noise = np.concatenate(
            [
                (rng.standard_normal((n, M * N)) / (m_psi + n_psi).ravel()),
                (rng.standard_normal((n, (M + 1) * N)) / (m_th + n_th).ravel()),
            ],
            axis=1,
        )
        states = perturbation * noise
        states[:, self._lorenz_indices()] = 0.0
        states = states + self.from_lorenz(xyz)
        mask = np.concatenate([o["mask_psi"].ravel(), o["mask_theta"].ravel()])
        return states * mask

    def _lorenz_indices(self) -> list[int]:
        M, N = self._ops["M"], self._ops["N"]
        return [0, M * N + 1 * N + 0, M * N + 0 * N + 1]


def simulate(
    system: RBCGalerkin, initial_states, t_eval, rtol: float = 1e-6, atol: float = 1e-8, method: str = "RK45"
) -> np.ndarray:
    r"""Integrate a batch of RBC states with scipy's ``solve_ivp``.

    All trajectories are stacked into one ODE so that every right-hand side
    evaluation is a few batched matrix products.

    Returns an array of shape ``(n_trajectories, len(t_eval), dim)``.
    """
    if not isinstance(system, RBCGalerkin):
        raise TypeError(f"system must be an RBCGalerkin, got {type(system).__name__}")
    x0 = check_array("initial_states", initial_states, ndim=2)
    if x0.shape[1] != system.dim:
        raise ValueError(f"initial_states must have shape (n, {system.dim}), got {x0.shape}")
    t_eval = check_array("t_eval", t_eval, ndim=1)
    if t_eval.size < 2 or np.any(np.diff(t_eval) <= 0):
        raise ValueError("t_eval must be increasing with at least two times")
    rtol = check_float("rtol", rtol, positive=True)
    atol = check_float("atol", atol, positive=True)
    shape = x0.shape

    def field(_t, flat):
        return system.rhs(flat.reshape(shape)).ravel()

    if threadpool_limits is None:
        sol = solve_ivp(field, (t_eval[0], t_eval[-1]), x0.ravel(), t_eval=t_eval, rtol=rtol, atol=atol, method=method)
    else:
        with threadpool_limits(1):
            sol = solve_ivp(field, (t_eval[0], t_eval[-1]), x0.ravel(), t_eval=t_eval, rtol=rtol, atol=atol, method=method)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    return sol.y.reshape(*shape, -1).transpose(0, 2, 1)


def generate_data(
    n_trajectories: int = 80,
    t_final: float = 4.0,
    n_snapshots: int = 101,
    modes: int = 8,
    r: float = 28.0,
    prandtl: float = 10.0,
    perturbation: float = 0.3,
    seed: int = 0,
):
    r"""Snapshot data of RBC transients: ``(system, t, states)``.

    Initial states have Lorenz modes uniform in the published Lorenz box
    :math:`[-25,25]^2\times[-5,30]` and small random amplitudes in every other mode
    (see :meth:`RBCGalerkin.random_states`); ``states`` has shape
    ``(n_trajectories, n_snapshots, system.dim)``, times in Lorenz units.
    """
    n_trajectories = check_int("n_trajectories", n_trajectories, minimum=1)
    t_final = check_float("t_final", t_final, positive=True)
    n_snapshots = check_int("n_snapshots", n_snapshots, minimum=2)
    system = RBCGalerkin(modes=modes, r=r, prandtl=prandtl)
    x0 = system.random_states(n_trajectories, seed=seed, perturbation=perturbation)
    t = np.linspace(0.0, t_final, n_snapshots)
    return system, t, simulate(system, x0, t, rtol=1e-5, atol=1e-6)


def fields_on_grid(system: RBCGalerkin, state, nx: int = 64, nz: int = 32):
    r"""Stream function and temperature on a grid over one period: ``(x, z, psi, temperature)``.

    ``temperature`` is the total :math:`T = 1 - z + \theta` (hot bottom, cold top); arrays are ``(nz, nx)``.
    """
    if not isinstance(system, RBCGalerkin):
        raise TypeError(f"system must be an RBCGalerkin, got {type(system).__name__}")
    state = check_array("state", state, ndim=1)
    if state.size != system.dim:
        raise ValueError(f"state must have {system.dim} entries, got {state.size}")
    nx = check_int("nx", nx, minimum=2)
    nz = check_int("nz", nz, minimum=2)
    o = system._ops
    A, B = system.split(state)
    x = np.linspace(0.0, 2 * np.pi / o["k"], nx)
    z = np.linspace(0.0, 1.0, nz)
    sin_x = np.sin(np.outer(x, o["mk_psi"][:, 0]))
    cos_x = np.cos(np.outer(x, o["mk_theta"][:, 0]))
    sin_z = np.sin(np.outer(z, o["npi"][0]))
    psi = (sin_x @ (A * o["mask_psi"]) @ sin_z.T).T
    theta = (cos_x @ (B * o["mask_theta"]) @ sin_z.T).T
    return x, z, psi, 1.0 - z[:, None] + theta


def nusselt_number(system: RBCGalerkin, states) -> np.ndarray:
    r"""Heat transport through the bottom wall, :math:`\mathrm{Nu} = 1 - \sum_n n\pi B_{0n}` (1 for pure conduction).

    For the Lorenz modes alone this is :math:`1 + 2Z/r`. ``states`` has shape ``(..., dim)``.
    """
    if not isinstance(system, RBCGalerkin):
        raise TypeError(f"system must be an RBCGalerkin, got {type(system).__name__}")
    states = check_array("states", states)
    if states.shape[-1] != system.dim:
        raise ValueError(f"states must have last dimension {system.dim}, got shape {states.shape}")
    _, B = system.split(states)
    return 1.0 - (B[..., 0, :] * system._ops["npi"][0]).sum(-1)


def generate_pair_data(
    n_trajectories: int = 100,
    t_final: float = 10.0,
    n_snapshots: int = 21,
    delta: float = 1e-3,
    modes: int = 8,
    r: float = 28.0,
    prandtl: float = 10.0,
    perturbation: float = 0.3,
    seed: int = 0,
):
    r"""RBC transients stored like the published data: each snapshot as a pair :math:`(x(t), x(t+\delta))`.

    The authors' set-up (Yu, Tian, E & Li 2021, their code) keeps 100 trajectories × 100 snapshots
    1 time unit apart, each with its partner :math:`\delta = 0.001` later, so that a model can be
    trained with a one-step loss across :math:`\delta`. Here the trajectories are integrated as in
    :func:`generate_data` (``n_snapshots`` uniform times on :math:`[0, T]`), and each snapshot's partner
    by a second, tight-tolerance solve over :math:`\delta`. Returns ``(system, t, x0, x1)`` with
    ``x0``, ``x1`` of shape ``(n_trajectories, n_snapshots, system.dim)``.
    """
    delta = check_float("delta", delta, positive=True)
    system, t, x0 = generate_data(
        n_trajectories=n_trajectories,
        t_final=t_final,
        n_snapshots=n_snapshots,
        modes=modes,
        r=r,
        prandtl=prandtl,
        perturbation=perturbation,
        seed=seed,
    )
    flat = x0.reshape(-1, system.dim)
    x1 = simulate(system, flat, np.array([0.0, delta]), rtol=1e-10, atol=1e-10)[:, -1]
    return system, t, x0, x1.reshape(x0.shape)

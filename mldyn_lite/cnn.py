r"""Dilated causal convolutions (WaveNet-like) and the tensorisation rank of a memory kernel.

A linear dilated causal CNN with kernel size 2 and dilations
:math:`1, 2, \dots, 2^{K-1}` maps an input sequence to

.. math:: \hat y_t = \sum_{s=0}^{2^K - 1} \hat\rho(s)\, x_{t-s},

and, writing the lag in binary, :math:`s = \sum_{k=0}^{K-1} b_k 2^k`, layer
:math:`k` chooses between its two taps according to the digit :math:`b_k`. So

.. math:: \hat\rho(s) = W_{K-1}[b_{K-1}] \cdots W_1[b_1]\, W_0[b_0],

a product of (channels × channels) matrices: the kernel, viewed as a
:math:`2 \times 2 \times \cdots \times 2` tensor indexed by the binary digits,
is in *tensor-train* form with ranks equal to the channel numbers. A CNN with
:math:`r` channels therefore represents exactly the kernels whose
*tensorisation ranks* — the ranks of the unfoldings
:math:`(b_0 \dots b_{k-1}) \times (b_k \dots b_{K-1})` — are at most :math:`r`,
and approximates a kernel well when these ranks are effectively low
(H. Jiang, Z. Li & Q. Li, "Approximation theory of convolutional
architectures for time series modelling", ICML 2021). A pure delay has rank 1
whatever its length — easy for a CNN, hard for an RNN (see
:mod:`mldyn_lite.memory`).

Contents: :class:`DilatedCausalCNN`, :func:`tensorise`,
:func:`tensorisation_ranks`, :func:`tt_svd` (a :class:`TensorTrain`), :func:`cnn_from_cores`,
:func:`delay_kernel`. :class:`DilatedCausalCNN` takes a ``device`` (``None``: the CPU, the book's device
rule, :mod:`mldyn_lite.numerics`) and draws its weights from a private generator seeded with ``seed``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from ._checks import check_array, check_float, check_int, check_tensor
from .numerics import device_of, generator
from .runtime import get_device


class DilatedCausalCNN(torch.nn.Module):
    r"""A stack of ``K`` causal convolutions with kernel size 2 and dilations :math:`2^k`, no biases.

    Parameters
    ----------
    layers
        :math:`K`; the receptive field is :math:`2^K` steps (lags :math:`0, \dots, 2^K - 1`).
    channels
        Hidden channels :math:`r` (an int for all layers, or a list of ``K - 1`` ints);
        input and output have one channel.
    activation
        ``None`` (linear network, the setting of the theory) or a callable applied
        between layers.
    init_scale
        Weights are drawn from :math:`N(0, \text{init\_scale}^2/\text{fan\_in})`.
    """

    def __init__(
        self,
        layers: int,
        channels=1,
        activation=None,
        init_scale: float = 1.0,
        seed: int = 0,
        dtype=torch.float32,
        device=None,
    ):
        super().__init__()
        layers = check_int("layers", layers, minimum=1, maximum=16)
        if isinstance(channels, int) and not isinstance(channels, bool):
            widths = [check_int("channels", channels, minimum=1)] * (layers - 1)
        else:
            widths = [check_int(f"channels[{i}]", c, minimum=1) for i, c in enumerate(channels)]
            if len(widths) != layers - 1:
                raise ValueError(f"channels must be an int or a list of layers - 1 = {layers - 1} ints, got {len(widths)}")
        if activation is not None and not callable(activation):
            raise TypeError(f"activation must be None or callable, got {type(activation).__name__}")
        init_scale = check_float("init_scale", init_scale, positive=True)
        self.layers, self.activation = layers, activation
        sizes = [1, *widths, 1]
        gen = generator(seed)
        device = device_of() if device is None else get_device(device)
        self.weights = torch.nn.ParameterList()
        for k in range(layers):
            w = torch.randn(sizes[k + 1], sizes[k], 2, generator=gen, dtype=torch.float64)
            w = w * init_scale / np.sqrt(2 * sizes[k])
            self.weights.append(torch.nn.Parameter(w.to(dtype=dtype, device=device)))

    @property
    def receptive_field(self) -> int:
        return 2**self.layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map inputs of shape ``(batch, length)`` to outputs of the same shape (zero history before time 0)."""
        x = check_tensor("x", x, ndim=2)
        h = x[:, None, :]
        for k, w in enumerate(self.weights):
            dilation = 2**k
            h = torch.nn.functional.conv1d(torch.nn.functional.pad(h, (dilation, 0)), w, dilation=dilation)
            if self.activation is not None and k < self.layers - 1:
                h = self.activation(h)
        return h[:, 0, :]

    def impulse_response(self) -> torch.Tensor:
        r"""The kernel :math:`\hat\rho(s)`, :math:`s = 0, \dots, 2^K - 1` (the response to a unit impulse)."""
        w = self.weights[0]
        impulse = torch.zeros(1, self.receptive_field, dtype=w.dtype, device=w.device)
        impulse[0, 0] = 1.0
        return self(impulse)[0]


def tensorise(rho, layers: int) -> np.ndarray:
    r"""Reshape a kernel on lags :math:`0, \dots, 2^K - 1` into a :math:`2 \times \cdots \times 2` tensor.

    The result is ``T[b_0, ..., b_{K-1}]``.

    Axis :math:`k` is the binary digit :math:`b_k` of the lag :math:`s = \sum_k b_k 2^k`
    (least significant first — the order of the CNN's layers).
    """
    layers = check_int("layers", layers, minimum=1, maximum=24)
    rho = check_array("rho", rho, ndim=1)
    if rho.size != 2**layers:
        raise ValueError(f"rho must hold 2**layers = {2**layers} lags, got {rho.size}")
    return rho.reshape((2,) * layers).transpose(tuple(range(layers - 1, -1, -1)))


def _unfolding(tensor: np.ndarray, k: int) -> np.ndarray:
    return tensor.reshape(2**k, -1)


def tensorisation_ranks(rho, layers: int, tol: float = 1e-3) -> list[int]:
    r"""Numerical ranks of the unfoldings :math:`(b_0..b_{k-1}) \times (b_k..b_{K-1})`, :math:`k = 1, \dots, K-1`.

    A singular value counts if it exceeds ``tol`` times the largest one of that
    unfolding. These are the channel numbers a linear dilated CNN needs to
    represent ``rho`` to that tolerance.
    """
    tensor = tensorise(rho, layers)
    tol = check_float("tol", tol, positive=True)
    ranks = []
    for k in range(1, layers):
        sing = np.linalg.svd(_unfolding(tensor, k), compute_uv=False)
        ranks.append(int((sing > tol * sing[0]).sum()) if sing[0] > 0 else 0)
    return ranks


class TensorTrain(NamedTuple):
    """Result of :func:`tt_svd` (unpacks as ``cores, approximation``)."""

    cores: list  #: ``cores[k]`` of shape ``(r_k, 2, r_{k+1})``
    approximation: np.ndarray  #: the reconstructed kernel on the lags ``0, ..., 2**layers - 1``


def tt_svd(rho, layers: int, max_rank: int) -> TensorTrain:
    r"""Tensor-train SVD of a kernel with ranks at most ``max_rank`` (Oseledets, 2011).

    Sweeps over the digits :math:`b_0, b_1, \dots`, truncating each unfolding to its
    ``max_rank`` leading singular triplets. The error is within :math:`\sqrt{K-1}` of
    the best approximation with these ranks.

    Returns
    -------
    TensorTrain
        ``cores, approximation``:
        ``cores[k]`` has shape ``(r_{k}, 2, r_{k+1})`` with :math:`r_0 = r_K = 1`;
        ``approximation`` is the reconstructed kernel on the lags :math:`0, \dots, 2^K - 1`.
    """
    tensor = tensorise(rho, layers)
    max_rank = check_int("max_rank", max_rank, minimum=1)
    cores = []
    rank = 1
    remainder = tensor.reshape(1, -1)
    for _ in range(layers - 1):
        matrix = remainder.reshape(rank * 2, -1)
        u, sing, vt = np.linalg.svd(matrix, full_matrices=False)
        keep = max(1, min(max_rank, int((sing > 1e-14 * max(sing[0], 1e-300)).sum())))
        cores.append(u[:, :keep].reshape(rank, 2, keep))
        remainder = sing[:keep, None] * vt[:keep]
        rank = keep
    cores.append(remainder.reshape(rank, 2, 1))
    return TensorTrain(cores, tt_to_kernel(cores))


def tt_to_kernel(cores) -> np.ndarray:
    r"""Rebuild the kernel :math:`\rho(s) = G_0[b_0] G_1[b_1] \cdots G_{K-1}[b_{K-1}]` from tensor-train cores."""
    if not cores:
        raise ValueError("cores must not be empty")
    full = np.ones((1, 1))  # rows: digits (b_0, ..., b_k) so far, C order; columns: the open rank index
    for k, core in enumerate(cores):
        core = check_array(f"cores[{k}]", core, ndim=3)
        if core.shape[1] != 2 or core.shape[0] != full.shape[1]:
            raise ValueError(f"cores[{k}] must have shape ({full.shape[1]}, 2, r), got {core.shape}")
        full = np.einsum("nr,rbs->nbs", full, core).reshape(-1, core.shape[2])
    if full.shape[1] != 1:
        raise ValueError("the last core must have rank 1 on its right")
    tensor = full.reshape((2,) * len(cores))  # axes (b_0, ..., b_{K-1})
    return tensor.transpose(tuple(range(len(cores) - 1, -1, -1))).reshape(-1)


def cnn_from_cores(cores, dtype=torch.float64, device=None) -> DilatedCausalCNN:
    r"""A linear :class:`DilatedCausalCNN` whose impulse response is the tensor train ``cores``.

    Layer :math:`k` gets the weights :math:`W_k[b] = G_k[:, b, :]^\top` on the tap that
    delays by :math:`b \cdot 2^k`; its channel number is the rank :math:`r_{k+1}`.
    """
    layers = len(cores)
    cores = [check_array(f"cores[{k}]", core, ndim=3) for k, core in enumerate(cores)]
    ranks = [core.shape[2] for core in cores[:-1]]
    net = DilatedCausalCNN(layers, channels=ranks if layers > 1 else [], dtype=dtype, device=device)
    with torch.no_grad():
        for k, core in enumerate(cores):
            weight = np.stack([core[:, 1, :].T, core[:, 0, :].T], axis=-1)  # tap 0 delays, tap 1 is "now"
            net.weights[k].copy_(torch.as_tensor(weight, dtype=dtype))
    return net


def delay_kernel(delay: int, layers: int) -> np.ndarray:
    r"""The kernel of :math:`y_t = x_{t - \text{delay}}` on the lags :math:`0, \dots, 2^K - 1`."""
    layers = check_int("layers", layers, minimum=1, maximum=24)
    delay = check_int("delay", delay, minimum=0, maximum=2**layers - 1)
    rho = np.zeros(2**layers)
    rho[delay] = 1.0
    return rho


__all__ = [
    "DilatedCausalCNN",
    "TensorTrain",
    "cnn_from_cores",
    "delay_kernel",
    "tensorisation_ranks",
    "tensorise",
    "tt_svd",
    "tt_to_kernel",
]

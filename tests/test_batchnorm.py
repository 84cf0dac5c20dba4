"""Claims of section 2.8 on batch normalisation (Cai, Li, Shen 2019), asserted through mldyn_lite.batchnorm."""

import numpy as np
import pytest
import torch

import mldyn_lite as ml
from mldyn_lite import batchnorm as bn

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    ml.setup(seed=0)


def _problem():
    H, _ = bn.least_squares_problem(np.logspace(0, -2, 10))  # lambda_max = 1
    draws = torch.Generator().manual_seed(0)  # the 8 draws of the notebook
    targets = torch.randn(8, 10, generator=draws, dtype=F64)
    starts = torch.randn(8, 10, generator=draws, dtype=F64)
    return H, targets, starts


@pytest.mark.claim(
    "ch2-gd-threshold",
    page="notebooks/ch2/08_learning_rate_control_and_batchnorm",
    anchor="ch2-batchnorm",
    statement=(
        "Plain gradient descent on least squares converges at eps = 1.9 (final loss below 1e-20, rounding "
        "level) and diverges at eps = 2.1, on either side of 2 / lambda_max"
    ),
    number="<1e-20",
    tolerance="loss < 1e-20 at eps = 1.9; diverged (inf) at eps = 2.1",
)
def test_gd_threshold_at_two_over_lambda_max():
    H, targets, _ = _problem()
    for u in targets[:3]:
        result = bn.gd_least_squares(H, u, [1.9, 2.1], 5000)
        assert result.loss[0, -1] < 1e-20 and not result.diverged[0]
        assert result.diverged[1] and np.isinf(result.loss[1, -1])


def _bngd_final(H, targets, starts, rates, steps=5000):
    runs = bn.bngd_least_squares(
        H, targets.repeat(len(rates), 1), np.repeat(rates, 8), steps, w0=starts.repeat(len(rates), 1)
    )
    return runs, runs.loss[:, -1].reshape(len(rates), 8)


@pytest.mark.claim(
    "ch2-bngd-range",
    page="notebooks/ch2/08_learning_rate_control_and_batchnorm",
    anchor="ch2-batchnorm",
    statement=(
        "Batch-normalised GD converges below 1e-10 in all 8 draws (8/8) for every eps from about 0.3 to "
        "30 and never diverges up to eps = 1e4, where only 3 of 8 draws converge in 5000 steps"
    ),
    number="8/8",
    tolerance=(
        "all 8 draws < 1e-10 for eps in [0.316, 31.6]; all losses finite; at eps = 1e4 at most 4 of 8 "
        "below 1e-10; final effective rate < 2"
    ),
)
def test_bngd_converges_over_a_wide_range():
    H, targets, starts = _problem()
    rates = [0.316, 1.0, 10.0, 31.6, 1e2, 1e3, 1e4]
    runs, final = _bngd_final(H, targets, starts, rates)
    assert np.all(final[:4] < 1e-10)  # every draw, eps in [0.3, 30]
    assert np.all(np.isfinite(runs.loss))  # never diverges
    assert np.all(runs.loss[:, -1] < runs.loss[:, 0])
    # honest limit: above eps ~ 1e2 fast convergence depends on the draw
    assert (final[-1] < 1e-10).sum() <= 4
    # the mechanism: the effective learning rate ends below the stability threshold
    assert np.all(runs.effective_lr[:, -1] < 2.0)


@pytest.mark.claim(
    "ch2-bn-weight-norm",
    page="notebooks/ch2/08_learning_rate_control_and_batchnorm",
    anchor="ch2-bn-mechanism",
    statement=(
        "Under BNGD ||w|| never decreases and grows with eps; ||w_k||^2 = ||w_0||^2 + eps^2 sum ||grad_w "
        "J||^2 along the iterates to rounding error (6.7e-16)"
    ),
    number="6.7e-16",
    tolerance="final ||w|| increasing in eps; ||w_k|| non-decreasing; identity to rtol 1e-12",
)
def test_weight_norm_grows_with_learning_rate_and_obeys_identity():
    H, targets, starts = _problem()
    rates = [1.0, 10.0, 100.0, 1000.0, 10000.0]
    runs = bn.bngd_least_squares(H, targets[0], rates, 2000, w0=starts[0])
    final_norms = runs.w_norm[:, -1]
    assert np.all(np.diff(final_norms) > 0)
    assert np.all(np.diff(runs.w_norm, axis=1) >= -1e-12)  # ||w_k|| never decreases
    a, w, predicted = 0.0, starts[0].clone(), [starts[0].norm().item() ** 2]
    for _ in range(30):
        grad_a, grad_w = bn.bn_gradients(H, targets[0], a, w)
        predicted.append(predicted[-1] + 100.0 * (grad_w @ grad_w).item())
        a, w = a - 0.5 * grad_a.item(), w - 10.0 * grad_w
    check = bn.bngd_least_squares(H, targets[0], 10.0, 30, w0=starts[0])
    assert np.allclose(check.w_norm**2, predicted, rtol=1e-12)


@pytest.mark.claim(
    "ch2-bn-gradient",
    page="notebooks/ch2/08_learning_rate_control_and_batchnorm",
    anchor="ch2-batchnorm",
    statement=("The hand-written BN gradient equals autograd's (2.2e-16) and is orthogonal to w (scale invariance)"),
    number="2.2e-16",
    tolerance="gradients to 1e-14; |w . grad_w J| < 1e-13; loss invariant under w -> 7w",
)
def test_gradients_against_autograd_and_scale_invariance():
    H, targets, starts = _problem()
    w = starts[1].clone().requires_grad_(True)
    a = torch.tensor(0.8, dtype=F64, requires_grad=True)
    bn.bn_loss(H, targets[1], a, w).backward()
    grad_a, grad_w = bn.bn_gradients(H, targets[1], a.detach(), w.detach())
    assert torch.allclose(grad_w, w.grad, atol=1e-14) and torch.allclose(grad_a, a.grad, atol=1e-14)
    assert abs(torch.dot(w.detach(), grad_w).item()) < 1e-13
    assert torch.allclose(bn.bn_loss(H, targets[1], 0.8, 7.0 * starts[1]), bn.bn_loss(H, targets[1], 0.8, starts[1]))


@pytest.mark.claim(
    "ch2-bn-start-scale",
    page="notebooks/ch2/08_learning_rate_control_and_batchnorm",
    anchor="ex-ch2-bn-start-scale",
    statement=(
        "A 100 times larger start acts like a 10^4 times smaller learning rate: at eps = 1e4 all 8 draws "
        "then converge (every final loss below 1e-20, rounding level)"
    ),
    number="<1e-20",
    tolerance="all 8 final losses < 1e-10",
)
def test_larger_start_behaves_like_smaller_learning_rate():
    H, targets, starts = _problem()
    result = bn.bngd_least_squares(H, targets, [1e4] * 8, 5000, w0=100.0 * starts)
    assert np.all(result.loss[:, -1] < 1e-10)


def test_input_validation():
    H, targets, starts = _problem()
    with pytest.raises(ValueError, match="lr"):
        bn.gd_least_squares(H, targets[0], 0.0, 10)
    with pytest.raises(ValueError, match="lr"):
        bn.bngd_least_squares(H, targets[0], [1.0, -2.0], 10)
    with pytest.raises(TypeError, match="lr"):
        bn.bngd_least_squares(H, targets[0], "fast", 10)
    with pytest.raises(ValueError, match="H must have shape"):
        bn.gd_least_squares(torch.eye(3, dtype=F64), targets[0], 1.0, 10)
    with pytest.raises(ValueError, match="w0 must be non-zero"):
        bn.bngd_least_squares(H, targets[0], 1.0, 10, w0=torch.zeros(10, dtype=F64))
    with pytest.raises(ValueError, match="runs"):
        bn.bngd_least_squares(H, targets[:3], [1.0, 2.0], 10, w0=starts[:3])
    with pytest.raises(ValueError, match="eigenvalues"):
        bn.least_squares_problem([1.0, -1.0])
    with pytest.raises(ValueError, match="steps"):
        bn.bngd_least_squares(H, targets[0], 1.0, 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    H, targets, starts = _problem()
    cpu = bn.bngd_least_squares(H, targets[:2], [1.0, 100.0], 500, w0=starts[:2])
    gpu = bn.bngd_least_squares(H.cuda(), targets[:2].cuda(), [1.0, 100.0], 500, w0=starts[:2].cuda())
    assert np.allclose(cpu.w_norm, gpu.w_norm, rtol=1e-10)
    assert np.allclose(np.log10(cpu.loss + 1e-300), np.log10(gpu.loss + 1e-300), atol=0.5)
    gd_cpu = bn.gd_least_squares(H, targets[0], [1.9, 2.1], 200)
    gd_gpu = bn.gd_least_squares(H.cuda(), targets[0].cuda(), [1.9, 2.1], 200)
    assert list(gd_cpu.diverged) == list(gd_gpu.diverged)


def test_device_argument_on_cpu():
    H, targets, starts = _problem()
    result = bn.bngd_least_squares(H, targets[0], 1.0, 20, w0=starts[0], device="cpu")
    assert result.w.shape == (10,)
    with pytest.raises(ValueError, match="device"):
        bn.gd_least_squares(H, targets[0], 1.0, 5, device="tpu")


def test_results_are_dataclasses_on_the_cpu_by_default():
    H, u = bn.least_squares_problem([1.0, 0.5], seed=3)
    assert H.device.type == "cpu" and u.device.type == "cpu"
    run = bn.bngd_least_squares(H, u, 1.0, 5)
    assert isinstance(run, bn.BNGDRun) and run.loss.shape == (6,) and run.w.shape == (2,)
    gd = bn.gd_least_squares(H, u, [0.5, 5.0], 50)
    assert isinstance(gd, bn.GDRun) and list(gd.diverged) == [False, True]

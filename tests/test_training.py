"""The training loop stops at the first NaN/Inf with the step and a likely cause."""

import pytest
import torch

import mldyn_lite as ml
from mldyn_lite.training import TrainingDivergedError


def quadratic_problem():
    w = torch.tensor([3.0, -2.0], requires_grad=True)
    return w, (lambda: (w**2).sum())


def test_fit_minimises_a_quadratic():
    w, loss = quadratic_problem()
    history = ml.fit([w], loss, steps=200, lr=0.1)
    assert history[-1] < 1e-6 * history[0]
    assert len(history) == 200


def test_fit_with_sgd_and_lbfgs():
    for optimizer, steps in (("sgd", 100), ("lbfgs", 5)):
        w, loss = quadratic_problem()
        history = ml.fit([w], loss, steps=steps, lr=0.1 if optimizer == "sgd" else 1.0, optimizer=optimizer)
        assert history[-1] < 1e-6, optimizer


def test_divergence_is_reported_with_step_and_cause():
    w, loss = quadratic_problem()
    # plain GD on |w|^2 diverges for lr > 1; the loss overflows to inf after a few hundred steps
    with pytest.raises(TrainingDivergedError, match=r"at step \d+; likely cause: the learning rate"):
        ml.fit([w], loss, steps=2000, lr=5.0, optimizer="sgd")


def test_nan_in_data_is_caught_at_step_zero():
    w = torch.zeros(2, requires_grad=True)
    data = torch.tensor([1.0, float("nan")])
    with pytest.raises(FloatingPointError, match="at step 0"):
        ml.fit([w], lambda: ((w - data) ** 2).sum(), steps=3)


def test_fit_rejects_bad_arguments():
    w, loss = quadratic_problem()
    with pytest.raises(ValueError, match="optimizer"):
        ml.fit([w], loss, steps=1, optimizer="adamw2")
    with pytest.raises(ValueError, match="steps"):
        ml.fit([w], loss, steps=0)
    with pytest.raises(ValueError, match="lr"):
        ml.fit([w], loss, steps=1, lr=-1.0)
    with pytest.raises(TypeError, match="loss_fn"):
        ml.fit([w], "loss", steps=1)
    with pytest.raises(ValueError, match="params"):
        ml.fit([torch.zeros(2)], loss, steps=1)
    with pytest.raises(TypeError, match="scalar"):
        ml.fit([w], lambda: w * 2, steps=1)

"""Self-checks of chapter 2: the notebooks' solutions pass, typical wrong answers fail with the hint that names them."""

import numpy as np
import pytest
import torch

from mldyn_lite import control as ctl
from mldyn_lite import sme
from mldyn_lite.selfcheck import check, check_costate, check_gradient_noise_covariance, check_nesterov_transition

from notebook_cells import solution_function

# --- ex-ch2-costate (notebook 2.4) --------------------------------------------------------------


def costate_pass(states, weights, biases, y, delta):
    """The solution of notebook 2.4, as a reader would write it."""
    S = states.shape[1]
    p = [None] * len(states)
    p[-1] = -2 / S * (states[-1].sum(dim=1) - y)[:, None] * torch.ones_like(states[-1])
    for n in reversed(range(len(weights))):
        slope = 1 - torch.tanh(states[n] @ weights[n].T + biases[n]) ** 2
        p[n] = p[n + 1] + delta * (slope * p[n + 1]) @ weights[n]
    return torch.stack(p)


def package_costates(states, weights, biases, y, delta):
    return ctl.costates(states, weights, biases, ctl.terminal_costate(ctl.sum_readout_loss, states[-1], y), delta)


def costate_variant(
    *,
    sign=-1.0,
    factor=2.0,
    mean=True,
    step=None,
    order=slice(None, None, -1),
    only_first=False,
    as_list=False,
    fixed_delta=None,
):
    """A costate pass with one typical mistake."""

    def answer(states, weights, biases, y, delta):
        d = fixed_delta if fixed_delta is not None else delta
        S = states.shape[1]
        p = [sign * factor * (states[-1].sum(dim=1) - y)[:, None] * torch.ones_like(states[-1]) / (S if mean else 1)]
        for n in reversed(range(len(weights))):
            slope = 1 - torch.tanh(states[n] @ weights[n].T + biases[n]) ** 2
            p.append(step(states, weights, biases, n, p[-1], d) if step else p[-1] + d * (slope * p[-1]) @ weights[n])
        p = p[order]
        if only_first:
            return p[0]
        return p if as_list else torch.stack(p)

    return answer


def untransposed(states, weights, biases, n, p, delta):
    slope = 1 - torch.tanh(states[n] @ weights[n].T + biases[n]) ** 2
    return p + delta * (slope * p) @ weights[n].T


def next_layer_jacobian(states, weights, biases, n, p, delta):
    slope = 1 - torch.tanh(states[n + 1] @ weights[n].T + biases[n]) ** 2
    return p + delta * (slope * p) @ weights[n]


def no_skip(states, weights, biases, n, p, delta):
    slope = 1 - torch.tanh(states[n] @ weights[n].T + biases[n]) ** 2
    return delta * (slope * p) @ weights[n]


def costate_in_place(states, weights, biases, y, delta):
    states[-1] -= y[:, None] / states.shape[2]  # "centre" the output in place: the caller's states change
    return costate_pass(states, weights, biases, torch.zeros_like(y), delta)


def test_notebook_costate_solution_passes():
    solution = solution_function("ch2/04_msa_training.ipynb", "costate_pass", ctl=ctl, sme=sme)
    assert str(check_costate(solution)) == "✓ ex-ch2-costate: costate_pass passed all 3 checks."


@pytest.mark.parametrize("answer", [costate_pass, package_costates])
def test_correct_costates_pass(answer):
    result = check_costate(answer)
    assert result and result.cases == 3, str(result)


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (costate_variant(sign=1.0), "the sign is flipped"),
        (costate_variant(step=untransposed), "the Jacobian is not transposed"),
        (costate_variant(step=next_layer_jacobian), "evaluated at x_{n+1}"),
        (costate_variant(step=no_skip), "the identity of the skip connection is missing"),
        (costate_variant(mean=False), "misses the factor 1/S"),
        (costate_variant(factor=1.0), "misses the factor 2"),
        (costate_variant(fixed_delta=0.25), "δ is hard-coded as 0.25"),
        (costate_variant(order=slice(None)), "the costates are in backward order"),
        (costate_variant(only_first=True), "not only p_0"),
        (costate_variant(as_list=True), "torch.stack(p)"),
        (costate_in_place, "states was modified in place"),
    ],
)
def test_wrong_costate_is_caught_with_its_hint(wrong, hint):
    result = check_costate(wrong)
    assert not result and result.failed_case == 1
    assert hint in str(result)
    assert str(result).startswith(f"✗ ex-ch2-costate: {wrong.__name__} failed check 1 of 3: ")
    assert "expected:" in str(result) and "hint:" in str(result)


def test_unknown_costate_mistake_gets_the_generic_hint_naming_the_first_wrong_layer():
    def off_in_the_first_layer(states, weights, biases, y, delta):
        p = costate_pass(states, weights, biases, y, delta)
        p[0] = 1.1 * p[0]
        return p

    result = check_costate(off_in_the_first_layer)
    assert not result and result.failed_case == 1
    assert "the first wrong costate is p_0" in result.hint
    assert result.expected.startswith("p_0 = -∂J/∂x_0 (autograd; p_0 is the first wrong costate): array of shape (5, 4)")
    assert result.got.startswith("p_0: array of shape (5, 4)")


# --- ex-ch2-mlp-covariance (notebook 2.6) -------------------------------------------------------


def gradient_noise_covariance(net, X, y, batch_size):
    """A loop over samples, as a reader without torch.func would write it."""
    rows = []
    for xi, yi in zip(X, y):
        loss = 0.5 * (net(xi[None, :])[0, 0] - yi) ** 2
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(net.parameters()))]))
    G = torch.stack(rows)
    return sme.per_sample_covariance(G, batch_size)


def per_sample(net, X, y, scale=0.5, reverse=False):
    parameters = list(net.parameters())[::-1] if reverse else list(net.parameters())
    rows = []
    for xi, yi in zip(X, y):
        loss = scale * (net(xi[None, :])[0, 0] - yi) ** 2
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, parameters)]))
    return torch.stack(rows)


def second_moment(net, X, y, batch_size):
    G = per_sample(net, X, y)
    return G.T @ G / (len(X) * batch_size)


def no_batch_factor(net, X, y, batch_size):
    return sme.per_sample_covariance(per_sample(net, X, y), 1)


def unbiased(net, X, y, batch_size):
    G = per_sample(net, X, y)
    return torch.cov(G.T) / batch_size


def without_half(net, X, y, batch_size):
    return sme.per_sample_covariance(per_sample(net, X, y, scale=1.0), batch_size)


def full_batch_gradient(net, X, y, batch_size):
    loss = 0.5 * ((net(X)[:, 0] - y) ** 2).mean()
    g = torch.cat([p.reshape(-1) for p in torch.autograd.grad(loss, list(net.parameters()))])
    G = g.expand(len(X), -1)
    return sme.per_sample_covariance(G, batch_size)


def parameters_reversed(net, X, y, batch_size):
    return sme.per_sample_covariance(per_sample(net, X, y, reverse=True), batch_size)


def returns_gradients(net, X, y, batch_size):
    return per_sample(net, X, y)


def trains_the_net(net, X, y, batch_size):
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.9)
    return gradient_noise_covariance(net, X, y, batch_size)


def test_notebook_covariance_solution_passes():
    solution = solution_function("ch2/06_sgd_as_sde.ipynb", "gradient_noise_covariance", ctl=ctl, sme=sme)
    assert str(check_gradient_noise_covariance(solution)) == (
        "✓ ex-ch2-mlp-covariance: gradient_noise_covariance passed all 2 checks."
    )


def test_loop_covariance_passes():
    assert check_gradient_noise_covariance(gradient_noise_covariance)


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (second_moment, "this is the second moment"),
        (no_batch_factor, "the factor 1/B is missing"),
        (unbiased, "you divided by n - 1"),
        (without_half, "4 times too large"),
        (full_batch_gradient, "Σ is zero"),
        (parameters_reversed, "with the parameters in another order"),
        (returns_gradients, "these look like the per-sample gradients"),
        (trains_the_net, "do not train or update net"),
    ],
)
def test_wrong_covariance_is_caught_with_its_hint(wrong, hint):
    result = check_gradient_noise_covariance(wrong)
    assert not result and result.failed_case == 1
    assert hint in str(result)
    assert str(result).startswith(f"✗ ex-ch2-mlp-covariance: {wrong.__name__} failed check 1 of 2: ")


def test_hard_coded_batch_size_is_named():
    def batch_of_four(net, X, y, batch_size):
        return gradient_noise_covariance(net, X, y, 4)

    result = check_gradient_noise_covariance(batch_of_four)
    assert not result and result.failed_case == 1 and "hard-coded as 4" in result.hint


def test_covariance_only_right_for_linear_models_fails_the_network_case():
    """Gradients taken for a linear model only (in closed form) pass case 1 and fail case 2."""

    def linear_only(net, X, y, batch_size):
        layer = net if isinstance(net, torch.nn.Linear) else net[0]
        residual = (X @ layer.weight.detach()[0] + layer.bias.detach()[0] - y)[:, None]
        return sme.per_sample_covariance(torch.cat([residual * X, residual], dim=1), batch_size)

    result = check_gradient_noise_covariance(linear_only)
    assert not result and result.failed_case == 2
    assert "shape (17, 17)" in result.expected


# --- the framework, for both checks -------------------------------------------------------------


def test_stubs_raise_not_implemented_naming_the_exercise():
    def costate_stub(states, weights, biases, y, delta):
        raise NotImplementedError("Exercise ex-ch2-costate: write costate_pass")

    def covariance_stub(net, X, y, batch_size):
        raise NotImplementedError("Exercise ex-ch2-mlp-covariance: write gradient_noise_covariance")

    with pytest.raises(NotImplementedError, match="ex-ch2-costate: costate_stub is not written yet"):
        check_costate(costate_stub)
    with pytest.raises(NotImplementedError, match="ex-ch2-mlp-covariance: covariance_stub is not written yet"):
        check_gradient_noise_covariance(covariance_stub)


def test_non_callables_are_type_errors():
    with pytest.raises(TypeError, match="costate_pass must be callable"):
        check_costate(torch.zeros(3))
    with pytest.raises(TypeError, match="gradient_noise_covariance must be callable"):
        check_gradient_noise_covariance("Sigma")


def test_registry_finds_the_chapter_2_checks():
    assert check("ex-ch2-costate", costate_pass).passed
    assert check("ex-ch2-mlp-covariance", gradient_noise_covariance).passed
    assert not check("ex-ch2-costate", costate_variant(sign=1.0)).passed


# --- ex-ch2-nesterov-transition (notebook 2.10) -------------------------------------------------


def nesterov_variant(*, lookahead_mu=True, position="new", sign=1.0, heavy_ball=False):
    """Nesterov's transition with one typical mistake."""

    def nesterov_transition(a, sigma, friction, h):
        mu = 1.0 - friction * h
        look = 0.0 if heavy_ball else h * (mu if lookahead_mu else 1.0)
        velocity = np.array([-h * a, mu - h * a * look])
        row = np.array([1.0, 0.0]) + h * velocity if position == "new" else np.array([1.0, h])
        return np.stack([row, velocity]), sign * np.array([-h * h * sigma, -h * sigma])

    return nesterov_transition


def test_notebook_nesterov_solution_passes():
    solution = solution_function("ch2/10_sgd_variants.ipynb", "nesterov_transition")
    assert check_nesterov_transition(solution).passed


@pytest.mark.parametrize(
    "wrong, hint",
    [
        (nesterov_variant(heavy_ball=True), "this is the heavy ball"),
        (nesterov_variant(position="old"), "not with V_k (forward Euler)"),
        (nesterov_variant(lookahead_mu=False), "the factor mu is missing"),
        (nesterov_variant(sign=-1.0), "the sign"),
    ],
)
def test_wrong_nesterov_transition_is_caught_with_its_hint(wrong, hint):
    result = check_nesterov_transition(wrong)
    assert not result.passed and hint in result.hint


def test_nesterov_check_is_registered():
    assert check("ex-ch2-nesterov-transition", nesterov_variant()).passed
    with pytest.raises(TypeError, match="nesterov_transition must be callable"):
        check_nesterov_transition(None)

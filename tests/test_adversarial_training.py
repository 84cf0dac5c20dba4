"""Claims of notebook 2.9 (annealed adversarial training, Amata), asserted through mldyn_lite.robustness with the
notebook's set-up: two moons (noise 0.1) embedded in R^20 by a random orthonormal matrix (seed 0), 500 training
points (seed 1), 500 test points (seed 2), ResNetClassifier(20, depth 4, delta 0.5, seed s), full-batch Adam
(lr 1e-2), N = 200 outer steps, l2 ball eps = 0.5, robust accuracy under PGD-50 (random start, seed 0)."""

import numpy as np
import pytest
import torch

import mldyn_lite as ml
from mldyn_lite import datasets
from mldyn_lite import robustness as rob
from mldyn_lite.training import TrainingDivergedError

D, EPS, STEPS, SEEDS = 20, 0.5, 200, (0, 1, 2)


@pytest.fixture(scope="module")
def data():
    ml.set_seed(0)
    Q, _ = torch.linalg.qr(torch.randn(D, 2, generator=torch.Generator().manual_seed(0)))
    moons_train, y_train = datasets.two_moons(500, noise=0.1, seed=1)
    moons_test, y_test = datasets.two_moons(500, noise=0.1, seed=2)
    return moons_train @ Q.T, y_train, moons_test @ Q.T, y_test


SCHEDULES = {
    "plain": lambda: rob.constant_schedule(STEPS, 0, EPS),
    "PGD-1": lambda: rob.constant_schedule(STEPS, 1, EPS),
    "PGD-10": lambda: rob.constant_schedule(STEPS, 10, EPS),
    "annealed": lambda: rob.annealed_schedule(STEPS, 1, 10, EPS),
}


def train(data, name, seed, device="cpu"):
    x_train, y_train, x_test, y_test = (t.to(device) for t in data)
    model = rob.ResNetClassifier(D, depth=4, classes=2, delta=0.5, seed=seed, device=device)
    run = rob.adversarial_training(model, x_train, y_train, EPS, SCHEDULES[name](), lr=1e-2, seed=seed,
                                   device=device)
    with torch.no_grad():
        clean = rob.accuracy(model(x_test), y_test)
    robust = rob.robust_accuracy(model, x_test, y_test, EPS, steps=50, seed=0)
    return clean, robust, run


@pytest.fixture(scope="module")
def results(data):
    out = {}
    for name in SCHEDULES:
        seeds = (0,) if name == "PGD-1" else SEEDS    # PGD-1: seed 0 only, to stay in the time budget
        out[name] = [train(data, name, s) for s in seeds]
    return out


def test_grad_evals_counted_by_the_loop_equal_the_schedule_sum(results):
    for name, runs in results.items():
        schedule = SCHEDULES[name]()
        expected = sum(k + 1 for k, _ in schedule)
        assert rob.schedule_cost(schedule) == expected
        for _, _, run in runs:
            assert run["grad_evals"] == expected
            assert run["grad_evals_per_step"][-1] == expected
            assert np.all(np.diff([0] + run["grad_evals_per_step"]) == [k + 1 for k, _ in schedule])
    assert [rob.schedule_cost(SCHEDULES[n]()) for n in SCHEDULES] == [200, 400, 2200, 1300]


def test_annealed_compute_is_below_fixed_k(results):
    annealed = results["annealed"][0][2]["grad_evals"]
    fixed = results["PGD-10"][0][2]["grad_evals"]
    assert annealed < fixed
    assert annealed / fixed == pytest.approx(0.591, abs=0.001)


def test_attack_never_left_the_ball(results):
    for name, runs in results.items():
        if name != "plain":
            for _, _, run in runs:
                assert run["max_violation"] <= 1e-6


def test_adversarial_training_beats_plain_by_a_margin(results):
    # notebook: plain 0.113 ± 0.052, adversarial runs about 0.8; stated margin: at least 0.5 on every seed
    plain = [r for _, r, _ in results["plain"]]
    assert max(plain) < 0.25
    assert np.mean(plain) == pytest.approx(0.113, abs=0.01)
    for name in ("PGD-1", "PGD-10", "annealed"):
        for (_, robust, _), plain_robust in zip(results[name], plain):
            assert robust >= plain_robust + 0.5
            assert robust >= 0.77


def test_clean_accuracy_as_stated(results):
    assert all(c == 1.0 for c, _, _ in results["plain"])
    for name in ("PGD-10", "annealed"):
        assert np.mean([c for c, _, _ in results[name]]) == pytest.approx(0.931, abs=0.005)


def test_annealed_matches_fixed_k_robustness_within_seed_spread(results):
    # notebook: PGD-10 0.798 ± 0.000, annealed 0.799 ± 0.001 (seeds 0, 1, 2); PGD-1 0.794 (mean over 3 seeds)
    fixed = np.array([r for _, r, _ in results["PGD-10"]])
    annealed = np.array([r for _, r, _ in results["annealed"]])
    assert fixed.mean() == pytest.approx(0.798, abs=0.002)
    assert annealed.mean() == pytest.approx(0.799, abs=0.002)
    assert abs(annealed.mean() - fixed.mean()) <= 0.01
    assert abs(results["PGD-1"][0][1] - fixed.mean()) <= 0.02   # the cheapest adversary is as robust here


def test_inner_solver_accuracy_grows_with_k(data):
    x_train, y_train, x_test, y_test = data
    model = rob.ResNetClassifier(D, depth=4, classes=2, delta=0.5, seed=0)
    rob.adversarial_training(model, x_train, y_train, EPS, rob.constant_schedule(STEPS, 0, EPS))
    losses = []
    for k in (1, 2, 5, 10, 50):
        x_adv = rob.pgd(model, x_test, y_test, EPS, 2.5 * EPS / k, k, norm="l2", random_start=True, seed=0)
        with torch.no_grad():
            losses.append(torch.nn.functional.cross_entropy(model(x_adv), y_test).item())
    assert np.all(np.diff(losses) > 0)
    assert losses[0] == pytest.approx(5.54, abs=0.01) and losses[-1] == pytest.approx(6.78, abs=0.01)


def test_annealed_schedule_shape():
    schedule = rob.annealed_schedule(200, 1, 10, EPS)
    ks = [k for k, _ in schedule]
    assert ks[0] == 1 and ks[-1] == 10 and np.all(np.diff(ks) >= 0)
    assert all(a == pytest.approx(2.5 * EPS / k) for k, a in schedule)
    assert rob.constant_schedule(3, 0, EPS) == [(0, 0.0)] * 3


def test_monitor_records_against_grad_evals(data):
    x_train, y_train, _, _ = data
    model = rob.ResNetClassifier(D, depth=2, classes=2, seed=0)
    calls = []
    run = rob.adversarial_training(model, x_train, y_train, EPS, rob.constant_schedule(10, 2, EPS),
                                   monitor=lambda m: calls.append(1) or 0.5, monitor_every=5)
    assert [g for g, _ in run["monitor"]] == [0, 15, 30] and len(calls) == 3


@pytest.mark.parametrize("schedule, match", [
    ([], "schedule"), ("bad", "schedule"), ([(1,)], r"schedule\[0\]"), ([(-1, 0.1)], r"schedule\[0\] K"),
    ([(2, 0.0)], r"schedule\[0\] step_size"), ([(1, 0.1), (2, -0.1)], r"schedule\[1\] step_size"),
    ([(1.5, 0.1)], r"schedule\[0\] K"),
])
def test_bad_schedules_raise(schedule, match):
    with pytest.raises((TypeError, ValueError), match=match):
        rob.check_schedule(schedule)


def test_bad_arguments_raise(data):
    x_train, y_train, _, _ = data
    model = rob.ResNetClassifier(D, depth=1, classes=2, seed=0)
    good = rob.constant_schedule(2, 1, EPS)
    for eps in (0.0, -0.1):
        with pytest.raises(ValueError, match="eps"):
            rob.adversarial_training(model, x_train, y_train, eps, good)
    with pytest.raises(ValueError, match="eps .* outside the data range"):
        rob.adversarial_training(model, x_train, y_train, 5.0, good)
    with pytest.raises(ValueError, match="k must be >= 0"):
        rob.constant_schedule(10, -1, EPS)
    with pytest.raises(ValueError, match="k_end"):
        rob.annealed_schedule(10, 5, 2, EPS)
    with pytest.raises(ValueError, match="k_start"):
        rob.annealed_schedule(10, 0, 2, EPS)
    with pytest.raises(ValueError, match="eps"):
        rob.annealed_schedule(10, 1, 2, 0.0)
    with pytest.raises(ValueError, match="norm"):
        rob.adversarial_training(model, x_train, y_train, EPS, good, norm="l1")
    with pytest.raises(TypeError, match="model"):
        rob.adversarial_training(lambda x: x, x_train, y_train, EPS, good)
    with pytest.raises(TypeError, match="monitor"):
        rob.adversarial_training(model, x_train, y_train, EPS, good, monitor=3)


def test_nan_stops_with_step_number(data):
    x_train, y_train, _, _ = data
    model = rob.ResNetClassifier(D, depth=1, classes=2, seed=0)
    with torch.no_grad():
        model.head.weight.fill_(float("nan"))
    with pytest.raises(TrainingDivergedError, match="step 0"):
        rob.adversarial_training(model, x_train, y_train, EPS, rob.constant_schedule(3, 0, EPS))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_agrees_with_cpu(data):
    cpu = train(data, "annealed", 0, device="cpu")
    cuda = train(data, "annealed", 0, device="cuda")
    assert cuda[2]["grad_evals"] == cpu[2]["grad_evals"]
    assert cuda[1] == pytest.approx(cpu[1], abs=0.02)


# --- exercise solutions ---------------------------------------------------------------------------------


def test_solution_linear_schedule_cost_and_its_limit_of_one_half():
    """Notebook 2.9, ex-ch2-amata-cost: the linear schedule from K_min = 1 to K_max over N = 200 steps costs
    N (1 + (K_min + K_max) / 2) gradient evaluations: exactly 1300 (K_max = 10) and 2300 (K_max = 20), i.e. 0.591
    and 0.548 of PGD-K_max; the fraction (1 + (K_min + K_max)/2) / (1 + K_max) falls towards 1/2 as K_max grows."""
    fractions = []
    for k_max, exact in ((10, 1300), (20, 2300)):
        cost = rob.schedule_cost(rob.annealed_schedule(STEPS, 1, k_max, EPS))
        assert cost == exact == STEPS * (1 + (1 + k_max) / 2)
        fractions.append(cost / rob.schedule_cost(rob.constant_schedule(STEPS, k_max, EPS)))
    assert fractions == pytest.approx([0.591, 0.548], abs=5e-4)
    big = rob.schedule_cost(rob.annealed_schedule(STEPS, 1, 400, EPS)) / rob.schedule_cost(
        rob.constant_schedule(STEPS, 400, EPS))
    assert 0.5 < big < fractions[1] < fractions[0]
    assert big == pytest.approx(0.5, abs=0.005)

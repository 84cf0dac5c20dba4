"""OnsagerNet against an unconstrained MLP field of equal size on the reduced RBC data of notebook 4.3, over seeds.

The search behind the claim "OnsagerNet stays bounded where an MLP drifts" (issue 15, section 2): the
data, model and training settings of notebook 4.3 (m = 5, one-step pairs, 1500 steps), for
seeds 0..N-1 of the weight initialisation and the minibatches. For each seed and model: the held-out
trajectory error E(T), the wrong-end-state count, and long runs from 20 starts on each of the spheres
of 2x and 5x the data radius (escaped = beyond 100 data radii). Run:

    python3 benchmarks/onsager_drift.py [n_seeds]     # prints one JSON line per run and a summary
"""

import json
import sys

import numpy as np

import mldyn_lite as ml
from mldyn_lite.boussinesq import generate_pair_data
from mldyn_lite.onsager import (
    PCA,
    FitOptions,
    OnsagerNet,
    boundedness,
    fit_vector_field,
    mlp_of_equal_size,
    pair_data,
    rollout,
    trajectory_error,
    wrong_end_states,
)

#: Training steps of notebook 4.3 (and of this search).
STEPS = 1500


def rbc_pairs(m=5):
    """The data of notebook 4.3: (times, h_start, h_next) in m principal components."""
    system, t, x0, x1 = generate_pair_data(n_trajectories=100, t_final=12.0, n_snapshots=25, delta=1e-3, seed=1)
    pca = PCA(x0[:80].reshape(-1, system.dim), dim=m)
    return t, pca.encode(x0), pca.encode(x1)


def one_run(name, seed, t, h_start, h_next, steps=STEPS):
    m = h_start.shape[-1]
    model = (
        OnsagerNet(m, 24, beta=1.0, seed=seed) if name == "OnsagerNet" else mlp_of_equal_size(OnsagerNet(m, 24), seed=seed)
    )
    fit = fit_vector_field(
        model,
        pair_data(h_start[:80], h_next[:80], 1e-3),
        FitOptions(steps=steps, batch_size=200, standardize=True, seed=seed),
    )
    truth = h_start[80:]
    run = rollout(fit.model, truth[:, 0], T=float(t[-1]), dt=0.01, save_every=50, escape_radius=100 * np.abs(h_start).max())
    path = run.path.numpy()
    far = boundedness(fit.model, h_start[:80], factors=(2.0, 5.0), n_starts=20, T=30.0, dt=0.02)
    return dict(
        model=name,
        seed=seed,
        validation=fit.best_validation,
        E1=trajectory_error(path, truth, t, 1.0),
        E10=trajectory_error(path, truth, t, 10.0),
        wrong=int(wrong_end_states(path, truth).sum()),
        far_escaped=far.escaped.sum(1).tolist(),
        far_back=far.returned.sum(1).tolist(),
    )


def main(n_seeds=10):
    ml.setup(seed=0)
    t, h_start, h_next = rbc_pairs()
    runs = []
    for seed in range(n_seeds):
        for name in ("OnsagerNet", "MLP"):
            runs.append(one_run(name, seed, t, h_start, h_next))
            print(json.dumps(runs[-1]), flush=True)
    for name in ("OnsagerNet", "MLP"):
        drifted = sum(1 for r in runs if r["model"] == name and sum(r["far_escaped"]) > 0)
        print(f"{name}: escaped from at least one far start in {drifted}/{n_seeds} seeds")
    return runs


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)

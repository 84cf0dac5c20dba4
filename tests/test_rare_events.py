"""mldyn_lite.rare_events gathers the committor and quasipotential API under one name."""

from mldyn_lite import committor, quasipotential, rare_events


def test_rare_events_exports_the_same_objects():
    for name in rare_events.__all__:
        source = committor if hasattr(committor, name) else quasipotential
        assert getattr(rare_events, name) is getattr(source, name), name
    assert {"solve_committor_fv", "fit_committor", "fit_decomposition", "minimum_action_path"} <= set(rare_events.__all__)

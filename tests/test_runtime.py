"""Device selection, seeding and threads (mldyn_lite.runtime)."""

import numpy as np
import pytest
import torch

import mldyn_lite as ml


def test_get_device_defaults_to_cuda_only_when_available(monkeypatch):
    monkeypatch.delenv("MLDYN_DEVICE", raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert ml.get_device().type == expected


def test_get_device_override_by_argument_and_environment(monkeypatch):
    assert ml.get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("MLDYN_DEVICE", "cpu")
    assert ml.get_device() == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_get_device_cuda_without_cuda_is_a_clear_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        ml.get_device("cuda")


def test_get_device_rejects_bad_input():
    with pytest.raises(ValueError, match="device"):
        ml.get_device("gpu-please")
    with pytest.raises(TypeError, match="device"):
        ml.get_device(3)


def test_set_seed_reproduces_numpy_and_torch_draws():
    ml.set_seed(123)
    first = (np.random.rand(3), torch.rand(3))
    ml.set_seed(123)
    second = (np.random.rand(3), torch.rand(3))
    assert np.array_equal(first[0], second[0])
    assert torch.equal(first[1], second[1])
    ml.set_seed(124)
    assert not torch.equal(first[1], torch.rand(3))


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), ("0", TypeError), (True, TypeError)])
def test_set_seed_rejects_bad_seeds(bad, error):
    with pytest.raises(error, match="seed"):
        ml.set_seed(bad)


def test_set_threads_sets_torch_threads():
    before = torch.get_num_threads()
    try:
        ml.set_threads(1)
        assert torch.get_num_threads() == 1
        with pytest.raises(ValueError, match="threads"):
            ml.set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_setup_returns_device_and_applies_style():
    import matplotlib as mpl

    before = torch.get_num_threads()
    try:
        device = ml.setup(seed=0)
        assert isinstance(device, torch.device)
        assert torch.get_num_threads() == 1
        assert mpl.rcParams["axes.spines.top"] is False
    finally:
        torch.set_num_threads(before)


def test_set_threads_limits_blas_threads_too():
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits():  # restore the original limits afterwards
        before = torch.get_num_threads()
        try:
            ml.set_threads(1)
            assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        finally:
            torch.set_num_threads(before)

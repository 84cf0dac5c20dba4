"""Shared test set-up: the book's setting of one torch (and BLAS) thread for every test.

On a 2-core machine two threads slow down sharply as soon as the other core is
busy, and the notebooks run with one thread (``mldyn_lite.setup``), so the
tests reproduce their numbers under the same setting.
"""

import pytest
import torch

import mldyn_lite as ml


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    ml.set_threads(1)
    yield
    torch.set_num_threads(threads)

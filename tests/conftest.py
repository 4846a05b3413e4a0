import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest


@pytest.fixture(autouse=True)
def _ieee_subnormals_after_each_test():
    """Every test starts with IEEE subnormals (the process default): a test that turns on
    flush-to-zero (e.g. a D2RL update) must not change what later tests compute."""
    yield
    import torch
    torch.set_flush_denormal(False)

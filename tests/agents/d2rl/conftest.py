import pytest
import torch

from tests.agents.d2rl.bandit import BanditEnv


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture
def bandit():
    return BanditEnv()

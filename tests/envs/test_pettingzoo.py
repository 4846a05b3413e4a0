import pytest
from pettingzoo.test import parallel_api_test

from radiorl.envs.pettingzoo import ParallelAdapter
from radiorl.envs.scenarios import make_env


@pytest.mark.parametrize("name", ["conflict-8", "cellular-19-hex", "cellular-19-random",
                                  "adhoc-9-4:5", "adhoc-8-2:6-limited"])
def test_parallel_api(name):
    parallel_api_test(ParallelAdapter(make_env(name, "light", 1, episode_slots=60)),
                      num_cycles=100)


def test_adapter_requires_single_copy():
    with pytest.raises(ValueError, match="batch must be 1"):
        ParallelAdapter(make_env("conflict-8", "light", 2))

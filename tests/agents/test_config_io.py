"""ConfigIO, the to_dict/from_dict of every agent config: round trips, None tuple fields, and a
clear error for unknown fields (for MA-CDMP's, the d3rlpy learners' and D2RL's configs)."""
import doctest

import pytest

import radiorl.agents.config as config_module
from radiorl.agents.d2rl import D2RLConfig
from radiorl.agents.macdmp.model import MACDMPConfig
from radiorl.agents.offline.d3rlpy_baselines import D3rlpyConfig


def test_doctest():
    assert doctest.testmod(config_module).failed == 0


@pytest.mark.parametrize("cfg", [D2RLConfig(state_exploration=(0.5, 0.1)), D2RLConfig(),
                                 D3rlpyConfig(hidden=(32, 16)), MACDMPConfig()])
def test_round_trip_stores_lists(cfg):
    d = cfg.to_dict()
    assert not any(isinstance(v, tuple) for v in d.values())
    assert type(cfg).from_dict(d) == cfg


@pytest.mark.parametrize("cls, label", [(D2RLConfig, "D2RL"), (D3rlpyConfig, "d3rlpy baseline"),
                                        (MACDMPConfig, "MA-CDMP")])
def test_unknown_fields_are_named(cls, label):
    with pytest.raises(ValueError, match=f"unknown {label} config fields \\['bogus'\\]"):
        cls.from_dict({**cls().to_dict(), "bogus": 1})

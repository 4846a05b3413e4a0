import pytest

from radiorl.agents.d2rl import REWARDS, D2RLConfig


def test_defaults_are_table2():
    c = D2RLConfig()
    assert (c.diffusion_steps, c.hidden, c.actor_layers, c.reward_layers, c.state_layers) == \
        (6, 256, 4, 5, 4)
    assert (c.actor_lr, c.reward_lr, c.state_lr, c.weight_decay) == (5e-5, 5e-5, 1e-4, 7e-5)
    assert (c.tau, c.buffer_size, c.batch_size, c.epsilon, c.noise_std) == \
        (5e-3, 100_000, 256, 0.1, 0.1)
    assert c.state_loss_threshold == 5e-4 and c.start_updates == 256


def test_round_trip_dict():
    c = D2RLConfig(reward="gdm", state_exploration=[0.4, 0.01], epochs=3)
    assert c.state_exploration == (0.4, 0.01)
    assert D2RLConfig.from_dict(c.to_dict()) == c
    assert c.differences(D2RLConfig(reward="gdm", state_exploration=(0.4, 0.01), epochs=3)) == []
    assert c.differences(D2RLConfig(reward="raw", state_exploration=(0.4, 0.01))) == \
        ["reward: 'gdm' != 'raw'", "epochs: 3 != 20000"]


def test_unknown_reward_lists_the_five():
    with pytest.raises(ValueError) as e:
        D2RLConfig(reward="shaped")
    for r in REWARDS:
        assert r in str(e.value)
    assert "D2RLConfig.reward" in str(e.value)


@pytest.mark.parametrize("kw, msg", [
    ({"actor": "transformer"}, r"actor must be one of \['mlp', 'gdm'\]"),
    ({"gamma": 1.5}, r"gamma must be in \[0, 1\]"),
    ({"tau": 0}, r"tau must be in \(0, 1\]"),
    ({"diffusion_steps": 2.5}, r"diffusion_steps must be an integer"),
    ({"batch_size": 300, "buffer_size": 200}, r"batch_size must be in \[1, 200\]"),
    ({"state_exploration": (1.5, 0.01)}, r"state_exploration\[0\] \(M\)"),
    ({"state_exploration": (0.5, 0.0)}, r"state_exploration\[1\] \(eta\)"),
    ({"state_exploration": 0.5}, r"pair \(M, eta\)"),
    ({"state_noise_steps": 7}, r"state_noise_steps must be in \[1, 6\]"),
    ({"activation": "swish"}, r"activation must be one of"),
    ({"gdm_x0_bound": "soft"}, r"gdm_x0_bound must be one of \['clip', 'tanh'\]"),
    ({"epsilon": -0.1}, r"epsilon must be"),
    ({"reward_relabel": 1}, r"reward_relabel must be True or False"),
    ({"critic_layer_norm": 1}, r"critic_layer_norm must be True or False"),
    ({"matmul_precision": "low"}, r"matmul_precision must be one of"),
    ({"convergence_metric": "loss"}, r"convergence_metric must be one of"),
    ({"learning_starts": 0}, r"learning_starts must be in \[1, "),
    ({"critic_hidden": 0}, r"critic_hidden must be in \[1, 8192\]"),
    ({"compile": "yes"}, r"compile must be True or False"),
    ({"fused_chain": "on"}, r"fused_chain must be True or False"),
    ({"lr_decay_epoch": -1}, r"lr_decay_epoch must be"),
    ({"lr_decay_epoch": 2.5}, r"lr_decay_epoch must be"),
    ({"lr_decay_factor": 0}, r"lr_decay_factor must be"),
    ({"lr_decay_factor": 1.5}, r"lr_decay_factor must be"),
])
def test_bad_values_name_field_and_range(kw, msg):
    with pytest.raises(ValueError, match=msg):
        D2RLConfig(**kw)


def test_frozen_and_unknown_fields():
    c = D2RLConfig()
    with pytest.raises(Exception):
        c.gamma = 0.5
    with pytest.raises(ValueError, match="unknown D2RL config fields"):
        D2RLConfig.from_dict({"gama": 0.5})

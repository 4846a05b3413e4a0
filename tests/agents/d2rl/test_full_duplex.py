"""D2RL on the full-duplex environment (``radiorl.envs.full_duplex``)."""
import numpy as np
import pytest
import torch

from radiorl.agents.d2rl import D2RLAgent, D2RLConfig, evaluate, train
from radiorl.agents.d2rl.envstate import pack_env_state, unpack_env_state
from tests.agents.d2rl.test_train import same, tiny

fd = pytest.importorskip("radiorl.envs.full_duplex")


@pytest.fixture(scope="module")
def env():
    return fd.FullDuplexEnv(fd.FullDuplexParams(episode_steps=3))


def test_state_checkpoint_round_trip(env, tmp_path):
    _, st = env.reset(seed=7, batch=3)
    _, _, _, _, _, st = env.step(st, np.zeros((3, env.action_dim)))
    torch.save(pack_env_state(st), tmp_path / "s.pt")
    back = unpack_env_state(torch.load(tmp_path / "s.pt", weights_only=True),
                            env.reset(seed=0, batch=3)[1])
    a = np.random.default_rng(0).uniform(-1, 1, (3, env.action_dim))
    r1, r2 = env.step(st, a), env.step(back, a)
    np.testing.assert_array_equal(r1[0], r2[0])                # same next observation
    np.testing.assert_array_equal(r1[1], r2[1])                # same sum rate
    assert back.key.dtype == st.key.dtype and back.g.dtype == st.g.dtype


@pytest.mark.parametrize("actor", ["mlp", "gdm"])
def test_agent_acts_on_the_env(env, actor):
    agent = D2RLAgent(D2RLConfig(actor=actor, hidden=32, reward="designed"), env.obs_dim,
                      env.action_dim)
    assert env.action_dim in (124, 125, 76, 77)
    out = evaluate(agent, env, batch=5, steps=2, seed=1)
    assert np.isfinite(out["sum_rate"]) and out["sum_rate"] > 0
    assert out["eval_reward"] <= 1e-9                          # C - R' <= 0 (R' is a bound)


def test_train_and_resume_on_the_env(env, tmp_path):
    cfg = dict(n_envs=2, steps_per_epoch=2, epochs=4, learning_starts=4, batch_size=4)
    full = train(tiny(**cfg), env, tmp_path / "full", progress=False)
    assert all(r["reward"] <= 1e-9 for r in full)              # designed reward
    assert all(np.isfinite(r["train_sum_rate"]) and r["train_sum_rate"] > 0 for r in full)
    assert np.isfinite(full[-1]["sum_rate"]) and full[-1]["updates"] > 0
    train(tiny(**{**cfg, "epochs": 2}), env, tmp_path / "cut", progress=False)
    resumed = train(tiny(**cfg), env, tmp_path / "cut", resume=True, progress=False)
    same(resumed, full)

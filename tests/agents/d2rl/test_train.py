"""The training loop: outputs, exact resume, convergence, the replay buffer and the
environment-state checkpoint."""
import json
import math

import numpy as np
import pytest
import torch

from radiorl.agents.d2rl import D2RLConfig, ReplayBuffer, convergence, train
from radiorl.agents.d2rl.envstate import pack_env_state, unpack_env_state
from tests.agents.d2rl.bandit import BanditEnv

TIME_COLUMNS = {"wall_s", "cpu_s", "wall_total_s", "cpu_total_s", "eval_s"}


def tiny(**kw) -> D2RLConfig:
    base = dict(actor="gdm", reward="designed-gdm", state_exploration=(0.5, 0.2),
                state_loss_threshold=1e9, hidden=16, actor_layers=2, critic_layers=1,
                reward_layers=2, state_layers=2, time_dim=4, batch_size=8, buffer_size=200,
                learning_starts=10, n_envs=3, steps_per_epoch=2, updates_per_step=2, epochs=5,
                eval_every=2, eval_batch=8, ma_window=3, checkpoint_every=1, seed=3, gamma=0.5)
    base.update(kw)
    return D2RLConfig(**base)


def same(h1, h2):
    assert len(h1) == len(h2)
    for r1, r2 in zip(h1, h2):
        assert set(r1) == set(r2)
        for k in r1:
            if k in TIME_COLUMNS:
                continue
            a, b = r1[k], r2[k]
            assert (a == b) or (isinstance(a, float) and math.isnan(a) and math.isnan(b)), \
                (r1["epoch"], k, a, b)


def test_train_outputs(tmp_path):
    env = BanditEnv(episode_len=3)
    hist = train(tiny(), env, tmp_path, progress=False)
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4, 5]
    assert hist[-1]["env_steps"] == 5 * 2 * 3
    # 10 transitions before the first update: none in epoch 1 (6), 2 in epoch 2, then 4 each
    assert [r["updates"] for r in hist] == [0, 2, 6, 10, 14]
    assert math.isnan(hist[0]["critic_loss"]) and "grad_w/actor/L1" not in hist[0]
    h = hist[-1]
    for k in ("sum_rate", "ma_sum_rate", "reward", "ma_reward", "saturated_frac",
              "eval_saturated_frac", "chi", "critic_loss", "actor_loss", "reward_loss",
              "state_loss", "reward_gap", "reward_abs_gap", "substituted_frac",
              "grad_w/actor/L1", "grad_b/actor/L1", "grad_w/critic/q1/L1", "grad_w/reward/L1",
              "grad_w/state/L1", "wall_s", "cpu_s", "wall_total_s", "cpu_total_s"):
        assert k in h and np.isfinite(h[k]), k
    assert math.isnan(hist[0]["sum_rate"]) and np.isfinite(hist[1]["sum_rate"])   # eval_every 2
    assert hist[-1]["ma_sum_rate"] == pytest.approx(np.mean([hist[i]["sum_rate"]
                                                             for i in (1, 3, 4)]))
    assert h["ma_reward"] == pytest.approx(np.mean([r["reward"] for r in hist[-3:]]))
    assert h["reward"] <= 0.0                                 # designed reward C - R' <= 0
    assert 0.0 < h["chi"] <= 0.5                              # T raised: chi grows to M = 0.5
    assert h["wall_total_s"] == pytest.approx(sum(r["wall_s"] for r in hist))
    for f in ("history.csv", "summary.json", "checkpoints/last.pt", "checkpoints/agent.pt"):
        assert (tmp_path / f).is_file(), f
    assert any((tmp_path / "tb").iterdir())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["metric"] == "ma_sum_rate" and summary["epochs"] == 5
    lines = (tmp_path / "history.csv").read_text().splitlines()
    assert len(lines) == 6 and "grad_w/actor/L1" in lines[0]


@pytest.mark.parametrize("actor, reward", [("gdm", "designed-gdm"), ("mlp", "designed-mlp")])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, actor, reward):
    env = BanditEnv(episode_len=3)
    full = train(tiny(actor=actor, reward=reward), env, tmp_path / "full", progress=False)
    part = train(tiny(actor=actor, reward=reward, epochs=2), env, tmp_path / "cut",
                 progress=False)
    same(part, full[:2])
    resumed = train(tiny(actor=actor, reward=reward), env, tmp_path / "cut", resume=True,
                    progress=False)
    same(resumed, full)
    a = torch.load(tmp_path / "full/checkpoints/agent.pt", weights_only=True)["agent"]
    b = torch.load(tmp_path / "cut/checkpoints/agent.pt", weights_only=True)["agent"]
    for k in a["modules"]["actor"]:
        torch.testing.assert_close(a["modules"]["actor"][k], b["modules"]["actor"][k],
                                   rtol=0, atol=0)


def test_resume_errors(tmp_path):
    env = BanditEnv()
    with pytest.raises(ValueError, match="does not exist"):
        train(tiny(epochs=1), env, tmp_path, resume=True, progress=False)
    train(tiny(epochs=1), env, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"another config.*reward: 'designed-gdm' != 'gdm'"):
        train(tiny(epochs=2, reward="gdm"), env, tmp_path, resume=True, progress=False)
    with pytest.raises(ValueError, match="saved agent, not a training checkpoint"):
        train(tiny(epochs=2), env, tmp_path, resume=tmp_path / "checkpoints/agent.pt",
              progress=False)
    with pytest.raises(ValueError, match=r"another config.*critic_layer_norm: False != True"):
        train(tiny(epochs=2, critic_layer_norm=True), env, tmp_path, resume=True,
              progress=False)
    hist = train(tiny(epochs=2), env, tmp_path, resume=tmp_path, progress=False)  # a run folder
    assert [h["epoch"] for h in hist] == [1, 2]


def test_lr_decay_schedule_and_resume(tmp_path):
    """lr_decay_epoch / lr_decay_factor: every optimizer at factor x its config rate from the
    given epoch on; a run stopped before the decay and resumed with it added is the run
    trained with it from the start; a schedule that would have acted already is refused."""
    cfg = tiny(lr_decay_epoch=2, lr_decay_factor=0.5)
    assert [cfg.lr_scale(e) for e in range(4)] == [1, 1, 0.5, 0.5]
    assert tiny().lr_scale(10 ** 6) == 1.0
    env = BanditEnv(episode_len=3)
    full = train(cfg, env, tmp_path / "full", progress=False)
    blob = torch.load(tmp_path / "full/checkpoints/last.pt", weights_only=True)
    lrs = {k: o["param_groups"][0]["lr"] for k, o in blob["agent"]["optimizers"].items()}
    assert lrs == pytest.approx({"actor": 0.5 * cfg.actor_lr, "critic": 0.5 * cfg.critic_lr,
                                 "reward": 0.5 * cfg.reward_lr, "state": 0.5 * cfg.state_lr})
    plain = train(tiny(), env, tmp_path / "plain", progress=False)
    same(plain[:2], full[:2])                          # identical before the decay
    assert plain[-1]["actor_loss"] != full[-1]["actor_loss"]
    train(tiny(epochs=2), env, tmp_path / "cut", progress=False)   # no schedule, 2 epochs
    with pytest.raises(ValueError, match=r"another config.*lr_decay_epoch: None != 1"):
        train(tiny(lr_decay_epoch=1), env, tmp_path / "cut", resume=True, progress=False)
    resumed = train(cfg, env, tmp_path / "cut", resume=True, progress=False)
    same(resumed, full)


def test_convergence():
    vals = [1.0, 5.0, 9.0, 9.8, 10.3, 9.9, 10.0]
    hist = [{"epoch": i + 1, "ma_sum_rate": v, "wall_total_s": 2.0 * (i + 1),
             "cpu_total_s": 1.0 * (i + 1)} for i, v in enumerate(vals)]
    c = convergence(hist, "ma_sum_rate", 0.05)                # band [9.5, 10.5]
    assert c["converged_epoch"] == 4 and c["final"] == 10.0
    assert c["wall_to_convergence_s"] == 8.0 and c["cpu_to_convergence_s"] == 4.0
    assert convergence(hist, "ma_sum_rate", 0.2)["converged_epoch"] == 3   # band [8, 12]
    hist[3]["ma_sum_rate"] = float("nan")                     # skipped
    assert convergence(hist, "ma_sum_rate", 0.05)["converged_epoch"] == 5
    assert convergence([], "ma_sum_rate", 0.05)["converged_epoch"] is None


def test_replay_buffer_ring_and_state():
    buf = ReplayBuffer(5, obs_dim=2, action_dim=1)

    def rows(start, n):
        v = torch.arange(start, start + n, dtype=torch.float32)
        return dict(obs=v[:, None].repeat(1, 2), action=v[:, None],
                    next_obs=v[:, None].repeat(1, 2),
                    terminated=torch.zeros(n), target=v, reward=v)

    buf.add(**rows(0, 3))
    buf.add(**rows(3, 4))                                     # wraps: keeps 2..6
    assert len(buf) == 5 and sorted(buf.data["target"].tolist()) == [2, 3, 4, 5, 6]
    s = ReplayBuffer(5, 2, 1)
    s.load_state_dict(buf.state_dict())
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    assert torch.equal(s.sample(9, g1)["obs"], buf.sample(9, g2)["obs"])
    assert s.ptr == buf.ptr
    with pytest.raises(ValueError, match="columns"):
        buf.add(obs=torch.zeros(1, 2))


def test_env_state_pack_unpack_bandit():
    env = BanditEnv()
    _, st = env.reset(seed=5, batch=4)
    _, _, _, _, _, st = env.step(st, np.zeros((4, env.action_dim)))
    blob = pack_env_state(st)
    back = unpack_env_state(blob, env.reset(seed=0, batch=4)[1])
    np.testing.assert_array_equal(back.context, st.context)
    a1 = env.step(st, np.zeros((4, env.action_dim)))
    a2 = env.step(back, np.zeros((4, env.action_dim)))
    np.testing.assert_array_equal(a1[0], a2[0])
    with pytest.raises(ValueError, match=r"cannot checkpoint.*state\['x'\] has type object"):
        pack_env_state({"x": object()})

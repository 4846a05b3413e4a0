"""MADiff (CTDE baseline): centralized training on joint windows, decentralized execution with
teammate modelling, information contract, checkpoints and bad input.

The contract shared with the other offline planners (training artifacts, exact resume and its
checks, checkpoint format, round trip and kind, dataset, config and planner-setting checks, the
network's action range) is tested in ``test_common.py``; the tiny dataset and trained run are
the shared fixtures of ``tests/agents/conftest.py``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from radiorl.agents.offline.madiff import (MADiffConfig, MADiffPolicy, MADiffSettings,
                                           build_model, load_model, train)
from radiorl.data.normalizers import Normalizer
from radiorl.nn.agent_attention import AgentAttention
from tests.agents.planners import METHODS, QUIET, make_env

torch.set_num_threads(1)

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")

TINY = METHODS["madiff"].tiny


@pytest.fixture(scope="module")
def trained(tiny_runs):
    return tiny_runs["madiff"]


def _policy(trained, env=None, **settings):
    run, _ = trained
    return MADiffPolicy.from_checkpoint(run / "checkpoints" / "planner.pt", env, **settings)


def _active(pol):
    """Attention gains of 1 (a few training steps leave them near 0): teammates matter."""
    with torch.no_grad():
        for m in pol.model.modules():
            if isinstance(m, AgentAttention):
                m.gain.fill_(1.0)
    pol._traced.clear()
    return pol


# ----------------------------------------------------------------------------- training
def test_loss_decreases_and_evaluation_episodes_run(dataset, tmp_path):
    """Validation losses (fixed held-out batches) fall with training (measured with this seed:
    diffusion 0.58 → 0.33 from epoch 1 to 3); eval_every runs the decentralized planner in the
    simulator and best_eval keeps the best epoch."""
    cfg = MADiffConfig(**{**TINY, "epochs": 3, "steps_per_epoch": 40, "valid_batches": 2,
                          "ema": 0.0, "lr": 1e-3, "eval_every": 1, "eval_frames": 4,
                          "eval_scenarios": ("adhoc-8-2:6",), "eval_sample_steps": 2,
                          "select_checkpoint": "best_eval"}).validate()
    res = train(dataset, cfg, tmp_path, **QUIET)
    h = res["history"]
    assert h[-1]["valid_diffusion"] < 0.9 * h[0]["valid_diffusion"]
    assert all(np.isfinite(r["eval_mean_reward"]) for r in h)
    assert all(0 <= r["eval_unstable"] <= 1 for r in h)          # the shared evaluation rows
    assert res["best_epoch"] in (1, 2, 3) and (tmp_path / "checkpoints" / "best.pt").is_file()


def test_losses_ignore_padded_rows_and_the_clamped_observation(trained):
    model, _ = load_model(trained[0] / "checkpoints" / "planner.pt")
    rng = np.random.default_rng(0)
    B, N, H = 5, 4, 4
    x = rng.uniform(-1, 1, (B, N, H, 4)).astype(np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 0]], bool)
    x[~mask] = 0
    batch = {"x": x, "agent_mask": mask, "actions": rng.integers(0, 41, (B, N, H)),
             "grants": np.zeros((B, N, H), np.int64), "cond": rng.random(B).astype(np.float32)}
    ref = model.losses(batch, torch.Generator().manual_seed(1))
    junk = dict(batch, actions=batch["actions"].copy())
    junk["actions"][~mask] = 7                    # padded rows' actions carry no inverse loss
    out = model.losses(junk, torch.Generator().manual_seed(1))
    for k in ref:
        assert torch.equal(ref[k], out[k]), k
    assert all(torch.isfinite(v) for v in ref.values())


# ----------------------------------------------------------------------------- acting
def test_policy_acts_with_the_right_shapes(trained):
    env = make_env(batch=2, slots=20)
    pol = _policy(trained, env)
    assert pol.name == "madiff" and pol.requires == frozenset({"local_obs"})
    obs, state = env.reset(seed=0)
    ps = pol.reset(env, env.batch, seed=1)
    for _ in range(3):
        a, ps = pol.act(obs, env.policy_view(state, pol.requires), ps)
        assert a.shape == (2, env.n_agents) and a.dtype == np.int64
        assert a.min() >= 0 and a.max() <= env.params.max_request
        assert ps["plans"].shape == (2 * env.n_agents, 4, 4, 4)
        obs, *_, state = env.step(state, a)


class _Recorder(dict):
    """An info dict that records which keys the policy reads."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.read = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


@pytest.mark.parametrize("guidance", [1.2, 1.0])
def test_decentralized_execution_uses_only_the_agents_own_observation(trained, guidance):
    """Agent i's request and whole joint plan are unchanged when every other agent's
    observation changes (same generator seed); its own observation is clamped exactly; its
    teammates' current observations are imagined (not the true ones); only ``obs`` and
    ``degree`` are read."""
    env = make_env("adhoc-9-4:5", batch=1, slots=10)
    pol = _active(_policy(trained, env, sampler="ddpm", guidance=guidance))
    obs, state = env.reset(seed=11)
    for _ in range(5):
        obs, *_, state = env.step(state, np.full((1, env.n_agents), 5))
    view = env.policy_view(state, pol.requires)
    o = np.asarray(view["obs"], np.float32)
    deg = np.asarray(view["degree"])

    def act(obs_arr):
        info = _Recorder(obs=obs_arr, degree=deg.copy(), n_nodes=env.n_agents)
        ps = pol.reset(env, 1, seed=4)
        a, ps = pol.act(obs_arr, info, ps)
        return a[0], ps["plans"], info.read

    base, plans, read = act(o.copy())
    assert read == {"obs", "degree"}
    first = torch.as_tensor(pol.model.normalizer.normalize(o[0]), dtype=torch.float32)
    assert torch.equal(plans[:, 0, 0], first)                     # own observation clamped
    for i in range(env.n_agents):
        changed = o.copy()
        others = [j for j in range(env.n_agents) if j != i]
        changed[0, others] = np.random.default_rng(i).integers(0, 50, (len(others), 4))
        a, p, _ = act(changed)
        assert a[i] == base[i]
        assert torch.equal(p[i], plans[i])
    # teammates are imagined: the plan's teammate rows do not copy anyone's observation
    assert not any(torch.allclose(plans[0, 1, 0], first[j], atol=1e-4) for j in range(9))
    # and they matter (teammate modelling through attention): a lone agent plans differently
    team = pol.team_sizes({"degree": deg}, 1, env.n_agents)
    assert team.tolist() == np.minimum(1 + deg[0], 4).tolist()
    _, alone = pol.plan(o[0], np.ones(env.n_agents, np.int64), torch.Generator().manual_seed(4))
    _, full = pol.plan(o[0], np.full(env.n_agents, 4), torch.Generator().manual_seed(4))
    assert not torch.allclose(alone[:, 0], full[:, 0], atol=1e-5)


@pytest.mark.parametrize("sampler,steps", [("ddpm", None), ("ddim", 4), ("dpm2", 4)])
def test_plans_keep_the_own_observation_clamped_and_padding_zero(trained, sampler, steps):
    pol = _policy(trained, sampler=sampler, steps=steps)
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 50, (6, 4)).astype(np.float32)
    team = np.array([1, 2, 3, 4, 4, 2])
    a, plans = pol.plan(obs, team, torch.Generator().manual_seed(0))
    first = torch.as_tensor(pol.model.normalizer.normalize(obs), dtype=torch.float32)
    assert torch.equal(plans[:, 0, 0], first)
    for m, n in enumerate(team):
        assert torch.all(plans[m, n:] == 0)
    assert a.shape == (6,) and a.min() >= 0 and a.max() <= pol.model.max_request


def test_network_team_trains_and_plans_the_whole_network(dataset, tmp_path):
    cfg = MADiffConfig(**{**TINY, "epochs": 1, "team": "network", "max_team": 9,
                          "batch_size": 36, "sample_steps": 2}).validate()
    res = train(dataset, cfg, tmp_path, **QUIET)
    assert np.isfinite(res["history"][-1]["train_diffusion"])
    env = make_env("adhoc-9-4:5", batch=1, slots=10)
    pol = MADiffPolicy.from_checkpoint(res["checkpoint"], env)
    obs, state = env.reset(seed=0)
    view = env.policy_view(state, pol.requires)
    info = _Recorder(obs=view["obs"], n_nodes=view["n_nodes"])
    a, ps = pol.act(obs, info, pol.reset(env, 1, 0))
    assert info.read == {"obs", "n_nodes"} and a.shape == (1, 9)
    assert ps["plans"].shape == (9, 9, 4, 4)
    assert pol.team_sizes({"n_nodes": 12}, 1, 12).tolist() == [9] * 12     # capped


# ----------------------------------------------------------------------------- checkpoints
def test_checkpoint_keeps_the_quantile_table_and_the_stored_planner(trained):
    """(The round trip itself is tested for every planner in test_common.py.)"""
    run, _ = trained
    ck = run / "checkpoints" / "planner.pt"
    blob = torch.load(ck, weights_only=True)
    model, _ = load_model(ck)
    assert model.quantile_table == blob["quantile_table"] and len(model.quantile_table) == 101
    pol = MADiffPolicy.from_checkpoint(ck, make_env(batch=2, slots=10), steps=2)
    assert pol.settings.steps == 2 and pol.settings.sampler == "dpm1"


# ----------------------------------------------------------------------------- bad input
def test_bad_planner_settings(trained):
    run, _ = trained
    ck = run / "checkpoints" / "planner.pt"
    with pytest.raises(ValueError, match="target_return"):
        MADiffPolicy.from_checkpoint(ck, target_return=1.5)
    with pytest.raises(ValueError, match="jit must be true or false"):
        MADiffSettings(jit="yes").validate(20)
    pol = _policy(trained)
    with pytest.raises(ValueError, match=r"obs must have shape \[M, 4\]"):
        pol.plan(np.zeros((3, 5)), np.ones(3), torch.Generator())
    with pytest.raises(ValueError, match="team must hold one size in"):
        pol.plan(np.zeros((3, 4)), np.array([1, 5, 2]), torch.Generator())


def test_bad_config_values():
    with pytest.raises(ValueError, match="max_team"):
        MADiffConfig(max_team=0).validate()
    with pytest.raises(ValueError, match="team must be one of"):
        MADiffConfig(team="clique").validate()
    with pytest.raises(ValueError, match="batch_size counts agent rows"):
        MADiffConfig(batch_size=4, max_team=6).validate()
    with pytest.raises(ValueError, match="condition_dropout"):
        MADiffConfig(condition_dropout=1.0).validate()
    with pytest.raises(ValueError, match="unknown MADiff config fields"):
        MADiffConfig.from_dict({"mean_field": True})
    assert MADiffConfig().validate().teams_per_batch == 42


def test_model_with_epsilon_prediction_and_ce_inverse_trains_a_step():
    cfg = MADiffConfig(**{**TINY, "prediction": "epsilon", "inverse_loss": "ce",
                          "ego_channel": False}).validate()
    model = build_model(cfg, 40, Normalizer("limits", np.full(4, 25.0), np.full(4, 25.0)),
                        np.linspace(-100, 0, 101))
    assert model.eps_model.in_channels == 4
    rng = np.random.default_rng(0)
    batch = {"x": rng.uniform(-1, 1, (3, 4, 4, 4)).astype(np.float32),
             "agent_mask": np.ones((3, 4), bool), "actions": rng.integers(0, 41, (3, 4, 4)),
             "grants": np.zeros((3, 4, 4), np.int64), "cond": np.full(3, 0.5, np.float32)}
    out = model.losses(batch, torch.Generator().manual_seed(0))
    out["total"].backward()
    assert all(torch.isfinite(v) for v in out.values())
    assert model.target_return_value(0.5) == pytest.approx(-50.0)

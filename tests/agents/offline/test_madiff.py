"""MADiff (CTDE baseline): centralized training on joint windows, decentralized execution with
teammate modelling, information contract, checkpoints, resume and bad input."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from radiorl.agents.offline.madiff import (MADiffConfig, MADiffPolicy, MADiffSettings,
                                           build_model, load_model, open_training_data,
                                           preset_config, train)
from radiorl.data.collect import collect, preset_config as collect_config
from radiorl.data.normalizers import Normalizer
from radiorl.envs.scenarios import get_scenario
from radiorl.nn.agent_attention import AgentAttention

torch.set_num_threads(1)

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")

TINY = dict(horizon=4, dim=8, dim_mults=(1, 2), inverse_hidden=(32, 32), batch_size=32,
            max_team=4, epochs=2, steps_per_epoch=3, valid_batches=1, sampler="dpm1",
            sample_steps=3, diffusion_steps=20)
QUIET = dict(show_progress=False, log=lambda *a: None)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A real (simulated) dataset: 8 trajectories x 120 frames of the paper scenarios."""
    path = tmp_path_factory.mktemp("ds") / "tiny.h5"
    collect(path, collect_config("quick", episodes=8, frames=120), workers=1,
            show_progress=False)
    return path


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    res = train(dataset, MADiffConfig(**TINY).validate(), run, **QUIET)
    return run, res


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
def test_training_writes_history_checkpoints_and_figure(trained):
    run, res = trained
    h = res["history"]
    assert [r["epoch"] for r in h] == [1, 2]
    for k in ("train_inverse", "train_diffusion", "train_total", "valid_diffusion"):
        assert all(np.isfinite(r[k]) for r in h), k
    for f in ("checkpoints/last.pt", "checkpoints/planner.pt", "training.csv",
              "figures/training_curve.png"):
        assert (run / f).is_file(), f
    assert res["checkpoint"].endswith("planner.pt") and list((run / "tb").iterdir())


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
    env = get_scenario("adhoc-8-2:6").make_env("medium", batch=2, episode_slots=20)
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
    env = get_scenario("adhoc-9-4:5").make_env("medium", batch=1, episode_slots=10)
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
    env = get_scenario("adhoc-9-4:5").make_env("medium", batch=1, episode_slots=10)
    pol = MADiffPolicy.from_checkpoint(res["checkpoint"], env)
    obs, state = env.reset(seed=0)
    view = env.policy_view(state, pol.requires)
    info = _Recorder(obs=view["obs"], n_nodes=view["n_nodes"])
    a, ps = pol.act(obs, info, pol.reset(env, 1, 0))
    assert info.read == {"obs", "n_nodes"} and a.shape == (1, 9)
    assert ps["plans"].shape == (9, 9, 4, 4)
    assert pol.team_sizes({"n_nodes": 12}, 1, 12).tolist() == [9] * 12     # capped


# ----------------------------------------------------------------------------- checkpoints
def test_save_load_round_trip(trained):
    run, _ = trained
    ck = run / "checkpoints" / "planner.pt"
    blob = torch.load(ck, weights_only=True)
    model, blob2 = load_model(ck)
    assert blob2["config"] == blob["config"] and blob["algo"] == "madiff"
    for k, v in model.state_dict().items():
        assert torch.equal(v, blob["model"][k]), k
    assert model.normalizer.to_dict() == blob["normalizer"]
    assert model.quantile_table == blob["quantile_table"] and len(model.quantile_table) == 101
    assert blob["dataset"]["fingerprint"]
    env = get_scenario("adhoc-8-2:6").make_env("medium", batch=2, episode_slots=10)
    acts = []
    for _ in range(2):
        pol = MADiffPolicy.from_checkpoint(ck, env, steps=2)
        obs, state = env.reset(seed=3)
        ps = pol.reset(env, env.batch, seed=5)
        out = []
        for _ in range(3):
            a, ps = pol.act(obs, env.policy_view(state, pol.requires), ps)
            out.append(a)
            obs, *_, state = env.step(state, a)
        acts.append(np.stack(out))
    assert np.array_equal(acts[0], acts[1])
    assert pol.settings.steps == 2 and pol.settings.sampler == "dpm1"


def test_same_seed_same_weights_and_resume_is_exact(dataset, trained, tmp_path):
    run, _ = trained
    train(dataset, MADiffConfig(**{**TINY, "epochs": 1}).validate(), tmp_path, **QUIET)
    train(dataset, MADiffConfig(**TINY).validate(), tmp_path, resume=tmp_path, **QUIET)
    a, _ = load_model(run / "checkpoints" / "planner.pt")
    b, _ = load_model(tmp_path / "checkpoints" / "planner.pt")
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n


def test_resume_rejects_another_config(dataset, trained, tmp_path):
    run, _ = trained
    for change, name in (({"max_team": 3}, "max_team"), ({"team": "network"}, "team")):
        cfg = MADiffConfig(**{**TINY, **change}).validate()
        with pytest.raises(ValueError, match=name):
            train(dataset, cfg, tmp_path, resume=run, **QUIET)


# ----------------------------------------------------------------------------- bad input
def test_bad_planner_settings(trained):
    run, _ = trained
    ck = run / "checkpoints" / "planner.pt"
    with pytest.raises(ValueError, match="sampler must be one of"):
        MADiffPolicy.from_checkpoint(ck, sampler="euler")
    with pytest.raises(ValueError, match=r"sample_steps must be .*\[1, 20\]"):
        MADiffPolicy.from_checkpoint(ck, sampler="dpm1", steps=0)
    with pytest.raises(ValueError, match="ddpm sampler runs all K"):
        MADiffPolicy.from_checkpoint(ck, sampler="ddpm", steps=5)
    with pytest.raises(ValueError, match="unknown MADiff planner settings"):
        MADiffPolicy.from_checkpoint(ck, warm_start=3)
    with pytest.raises(ValueError, match="target_return"):
        MADiffPolicy.from_checkpoint(ck, target_return=1.5)
    with pytest.raises(ValueError, match="guidance"):
        MADiffPolicy.from_checkpoint(ck, guidance=-1)
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
    with pytest.raises(ValueError, match="horizon"):
        MADiffConfig(horizon=1).validate()
    with pytest.raises(ValueError, match="loss_weights"):
        MADiffConfig(loss_weights=(1, 1, 1)).validate()
    with pytest.raises(ValueError, match="epochs"):
        MADiffConfig(epochs=0).validate()
    with pytest.raises(ValueError, match="unknown MADiff config fields"):
        MADiffConfig.from_dict({"mean_field": True})
    with pytest.raises(ValueError, match="preset"):
        preset_config("fast")
    assert preset_config("quick").epochs == 5 and preset_config("paper").steps_per_epoch == 1000
    assert MADiffConfig().validate().teams_per_batch == 42


def test_horizon_longer_than_episodes_is_refused_before_training(dataset):
    with pytest.raises(ValueError, match=r"horizon H = 121 is longer than the dataset's episodes"):
        open_training_data(dataset, MADiffConfig(**{**TINY, "horizon": 121}).validate())


def test_dataset_with_another_observation_layout_is_refused(dataset, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(dataset.read_bytes())
    with h5py.File(bad, "r+") as f:
        f.attrs["obs_dim"] = 6
    with pytest.raises(ValueError, match="obs_dim"):
        open_training_data(bad, MADiffConfig(**TINY).validate())


def test_checkpoint_from_another_learner_is_refused(tmp_path):
    torch.save({"algo": "macdmp", "version": 1}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="not a MADiff checkpoint"):
        load_model(tmp_path / "m.pt")


def test_policy_refuses_a_network_with_another_action_range(trained):
    env = get_scenario("adhoc-8-2:6").make_env("medium", batch=1, episode_slots=10,
                                               max_request=10)
    with pytest.raises(ValueError, match="max_request"):
        _policy(trained, env)


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

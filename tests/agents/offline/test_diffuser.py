"""MA-Diffuser: training, planning (inpainting, value guidance), information contract,
checkpoints, resume and bad input."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from radiorl.agents.offline.diffuser import (DiffuserPlanner, DiffuserSettings,
                                             MADiffuserConfig, MADiffuserPolicy, load_model,
                                             preset_config, train)
from radiorl.data.collect import collect, preset_config as collect_config
from radiorl.envs.base import PolicyView
from radiorl.envs.scenarios import get_scenario

torch.set_num_threads(1)

TINY = dict(horizon=4, dim=8, dim_mults=(1, 2), batch_size=32, epochs=2, steps_per_epoch=3,
            valid_batches=1, sampler="dpm1", sample_steps=3, diffusion_steps=20)
QUIET = dict(show_progress=False, log=lambda *a: None)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A real (simulated) dataset: 8 episodes x 120 frames of adhoc-8-2:6."""
    path = tmp_path_factory.mktemp("ds") / "tiny.h5"
    collect(path, collect_config("quick", episodes=8, frames=120), workers=1,
            show_progress=False)
    return path


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    run = tmp_path_factory.mktemp("run")
    res = train(dataset, MADiffuserConfig(**TINY).validate(), run, **QUIET)
    return run, res


@pytest.fixture(scope="module")
def longer(dataset, tmp_path_factory):
    """4 epochs x 40 steps at lr 1e-3 without EMA: enough for falling losses and a value
    model with a usable gradient."""
    run = tmp_path_factory.mktemp("longer")
    cfg = MADiffuserConfig(**{**TINY, "epochs": 4, "steps_per_epoch": 40, "valid_batches": 2,
                              "ema": 0.0, "lr": 1e-3}).validate()
    return train(dataset, cfg, run, **QUIET)


def _env(batch=2):
    return get_scenario("adhoc-8-2:6").make_env("medium", batch=batch, episode_slots=20)


# ----------------------------------------------------------------------------- training
def test_training_writes_history_checkpoints_and_figure(trained):
    run, res = trained
    h = res["history"]
    assert [r["epoch"] for r in h] == [1, 2]
    for k in ("train_total", "train_diffusion", "train_first_action", "train_value",
              "valid_diffusion", "valid_value"):
        assert all(np.isfinite(r[k]) for r in h), k
    for f in ("checkpoints/last.pt", "checkpoints/planner.pt", "training.csv",
              "figures/training_curve.png"):
        assert (run / f).is_file(), f
    assert res["checkpoint"].endswith("planner.pt")


def test_loss_falls_on_held_out_batches(longer):
    """Validation losses (fixed held-out batches) fall (measured: total 0.88 → 0.29,
    diffusion 0.67 → 0.15 from epoch 1 to 4)."""
    h = longer["history"]
    assert h[-1]["valid_diffusion"] < 0.8 * h[0]["valid_diffusion"]
    assert h[-1]["valid_total"] < 0.8 * h[0]["valid_total"]


def test_resume_is_exact_and_refuses_another_config(dataset, trained, tmp_path):
    run, _ = trained
    train(dataset, MADiffuserConfig(**{**TINY, "epochs": 1}).validate(), tmp_path, **QUIET)
    train(dataset, MADiffuserConfig(**TINY).validate(), tmp_path, resume=tmp_path, **QUIET)
    a, _ = load_model(run / "checkpoints" / "planner.pt")
    b, _ = load_model(tmp_path / "checkpoints" / "planner.pt")
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n
    with pytest.raises(ValueError, match="horizon"):
        train(dataset, MADiffuserConfig(**{**TINY, "horizon": 6}).validate(), tmp_path / "x",
              resume=run, **QUIET)
    with pytest.raises(ValueError, match="dim_mults"):
        train(dataset, MADiffuserConfig(**{**TINY, "dim_mults": (1, 2, 2)}).validate(),
              tmp_path / "y", resume=run, **QUIET)


# ----------------------------------------------------------------------------- acting
def _episode(pol, env, frames=4, seed=3):
    obs, state = env.reset(seed=seed)
    ps = pol.reset(env, env.batch, seed=5)
    out = []
    for _ in range(frames):
        a, ps = pol.act(obs, env.policy_view(state, pol.requires), ps)
        out.append(a)
        obs, *_, state = env.step(state, a)
    return np.stack(out), ps


def test_policy_acts_on_the_batched_env_and_round_trips(trained):
    run, _ = trained
    ck = run / "checkpoints" / "planner.pt"
    blob = torch.load(ck, weights_only=True)
    model, blob2 = load_model(ck)
    assert blob2["config"] == blob["config"] and blob["algo"] == "madiffuser"
    for k, v in model.state_dict().items():
        assert torch.equal(v, blob["model"][k]), k
    env = _env()
    pol = MADiffuserPolicy.from_checkpoint(ck, env)
    assert pol.name == "madiffuser" and pol.requires == frozenset({"local_obs"})
    a1, ps = _episode(pol, env)
    assert a1.shape == (4, 2, env.n_agents) and a1.dtype == np.int64
    assert a1.min() >= 0 and a1.max() <= env.params.max_request
    assert ps["plans"].shape == (2 * env.n_agents, 4, 5)
    a2, _ = _episode(MADiffuserPolicy.from_checkpoint(ck, env), env)
    assert np.array_equal(a1, a2)
    a3, _ = _episode(MADiffuserPolicy.from_checkpoint(ck, env, jit=False), env)   # eager
    assert np.array_equal(a1, a3)


def test_request_depends_only_on_the_agents_own_observation(trained):
    """Information contract: only local observations are handed over, and agent i's request
    is unchanged when every other agent's observation changes (same generator state)."""
    run, _ = trained
    env = _env(batch=1)
    pol = MADiffuserPolicy.from_checkpoint(run / "checkpoints" / "planner.pt", env,
                                           sampler="ddpm", guidance=0.5)
    obs, state = env.reset(seed=1)
    for _ in range(4):
        obs, *_, state = env.step(state, np.full((1, env.n_agents), 6))
    view = env.policy_view(state, pol.requires)
    assert "mf_obs" not in view and "queues" not in view

    def act(o):
        ps = pol.reset(env, 1, seed=9)
        return pol.act(o[None], PolicyView({"obs": o[None]}, pol.requires), ps)[0][0]
    o = np.asarray(view["obs"], np.float32)[0]
    base = act(o.copy())
    for i in (0, env.n_agents - 1):
        changed = o.copy()
        others = [j for j in range(env.n_agents) if j != i]
        changed[others] = np.random.default_rng(i).integers(0, 40, (len(others), 4))
        assert act(changed)[i] == base[i]


@pytest.mark.parametrize("sampler,steps", [("ddpm", None), ("ddim", 4), ("dpm1", 4),
                                           ("dpm2", 4)])
def test_plans_keep_the_current_observation_clamped(trained, sampler, steps):
    run, _ = trained
    model, _ = load_model(run / "checkpoints" / "planner.pt")
    pl = DiffuserPlanner(model, DiffuserSettings.from_model(model, sampler=sampler, steps=steps,
                                                            guidance=0.5, candidates=2))
    obs = np.random.default_rng(0).integers(0, 40, (6, 4)).astype(np.float32)
    a, plans = pl.plan(obs, torch.Generator().manual_seed(0))
    assert plans.shape == (6, 4, 5)
    assert torch.equal(plans[:, 0, :4], pl.normalized_obs(obs))
    assert a.shape == (6,) and a.dtype == np.int64
    assert np.array_equal(a, model.decode_actions(plans[:, 0, 4]).numpy())
    assert a.min() >= 0 and a.max() <= model.max_request


def test_request_encoding_round_trips(trained):
    run, _ = trained
    model, _ = load_model(run / "checkpoints" / "planner.pt")
    a = torch.arange(model.max_request + 1)
    z = model.encode_actions(a)
    assert z.min() == -1 and z.max() == 1
    assert torch.equal(model.decode_actions(z), a)
    assert model.decode_actions(torch.tensor([-3.0, 3.0])).tolist() == [0, model.max_request]


def test_value_guidance_raises_the_plans_value(longer):
    """The trained value model's J of the executed plans rises with guidance (same seed and
    noise); measured mean J over 64 agents: -0.0856 (ζ = 0), -0.0848 (10), -0.0839 (100); the
    same order on seeds 1 and 2. (The tiny model's J is nearly flat, hence the large ζ.)"""
    model, _ = load_model(longer["checkpoint"])
    obs = np.random.default_rng(0).integers(0, 40, (64, 4)).astype(np.float32)
    J = {}
    for z in (0.0, 100.0):
        pl = DiffuserPlanner(model, DiffuserSettings.from_model(
            model, sampler="dpm1", steps=5, guidance=z, guide_stop=0))
        _, plans = pl.plan(obs, torch.Generator().manual_seed(0))
        J[z] = float(model.value(plans, torch.ones(64, dtype=torch.int64)).mean())
    assert J[100.0] > J[0.0]


@pytest.mark.parametrize("sampler,steps,zeta", [("ddpm", None, 50.0), ("dpm1", 5, 5.0)])
def test_guidance_follows_the_value_gradient(trained, sampler, steps, zeta):
    """Wiring and sign: with J = the planned first request, guidance raises the executed
    requests (measured mean over 32 agents: ddpm 31.8 → 37.9 RBs, dpm1 29.6 → 38.0). DDPM's
    shift is ``ζ Σ_k ∇J`` with small posterior variances, hence its larger ζ."""
    run, _ = trained
    model, _ = load_model(run / "checkpoints" / "planner.pt")

    class MoreIsBetter(torch.nn.Module):
        def forward(self, x, k):
            return x[:, 0, 4]
    model.value_model = MoreIsBetter()
    obs = np.random.default_rng(1).integers(0, 40, (32, 4)).astype(np.float32)
    mean_req = {}
    for z in (0.0, zeta):
        pl = DiffuserPlanner(model, DiffuserSettings.from_model(
            model, sampler=sampler, steps=steps, guidance=z, guide_stop=0, jit=False))
        a, _ = pl.plan(obs, torch.Generator().manual_seed(0))
        mean_req[z] = a.mean()
    assert mean_req[zeta] > mean_req[0.0] + 3


def test_candidates_execute_the_highest_value_plan(trained):
    run, _ = trained
    model, _ = load_model(run / "checkpoints" / "planner.pt")
    obs = np.full((3, 4), 10, np.float32)
    pl = DiffuserPlanner(model, DiffuserSettings.from_model(model, candidates=4, guidance=0.0))
    _, best = pl.plan(obs, torch.Generator().manual_seed(0))
    pl1 = DiffuserPlanner(model, DiffuserSettings.from_model(model, guidance=0.0))
    _, every = pl1.plan(obs.repeat(4, 0), torch.Generator().manual_seed(0))
    with torch.no_grad():
        j_all = model.value(every, torch.ones(12, dtype=torch.int64)).view(3, 4)
        j_best = model.value(best, torch.ones(3, dtype=torch.int64))
    assert torch.allclose(j_best, j_all.max(1).values, atol=1e-5)


# ----------------------------------------------------------------------------- bad input
def test_bad_planner_settings(trained):
    ck = trained[0] / "checkpoints" / "planner.pt"
    with pytest.raises(ValueError, match="sampler must be one of"):
        MADiffuserPolicy.from_checkpoint(ck, sampler="euler")
    with pytest.raises(ValueError, match=r"sample_steps must be .*\[1, 20\]"):
        MADiffuserPolicy.from_checkpoint(ck, sampler="dpm1", steps=0)
    with pytest.raises(ValueError, match="ddpm sampler runs all K"):
        MADiffuserPolicy.from_checkpoint(ck, sampler="ddpm", steps=5)
    with pytest.raises(ValueError, match="guidance must be"):
        MADiffuserPolicy.from_checkpoint(ck, guidance=-1)
    with pytest.raises(ValueError, match="unknown planner settings"):
        MADiffuserPolicy.from_checkpoint(ck, temperature=3)


def test_bad_config_values():
    with pytest.raises(ValueError, match="diffusion_steps"):
        MADiffuserConfig(diffusion_steps=0).validate()
    with pytest.raises(ValueError, match="horizon"):
        MADiffuserConfig(horizon=1).validate()
    with pytest.raises(ValueError, match="sampler must be one of"):
        MADiffuserConfig(sampler="heun").validate()
    with pytest.raises(ValueError, match=r"sample_steps must be .*\[1, 100\]"):
        MADiffuserConfig(sampler="dpm1", sample_steps=-2).validate()
    with pytest.raises(ValueError, match="action_weight"):
        MADiffuserConfig(action_weight=-1).validate()
    with pytest.raises(ValueError, match="loss_weights must be 2 numbers"):
        MADiffuserConfig(loss_weights=(1, 1, 1)).validate()
    with pytest.raises(ValueError, match="steps_per_epoch"):
        MADiffuserConfig(steps_per_epoch=0).validate()
    with pytest.raises(ValueError, match="preset"):
        preset_config("fast")
    assert preset_config("paper").epochs * preset_config("paper").steps_per_epoch == 100_000


def test_bad_datasets_are_refused_before_training(dataset, tmp_path):
    with pytest.raises(ValueError, match=r"horizon H = 121 is longer than the dataset's episodes"):
        train(dataset, MADiffuserConfig(**{**TINY, "horizon": 121}).validate(), tmp_path,
              **QUIET)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(dataset.read_bytes())
    with h5py.File(bad, "r+") as f:
        f.attrs["obs_dim"] = 6
    with pytest.raises(ValueError, match="obs_dim"):
        train(bad, MADiffuserConfig(**TINY).validate(), tmp_path, **QUIET)
    assert not (tmp_path / "checkpoints").exists()


def test_checkpoint_of_another_kind_is_refused(tmp_path):
    torch.save({"algo": "macdmp", "version": 1}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="not a MA-Diffuser checkpoint.*macdmp"):
        load_model(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="not a MA-Diffuser checkpoint"):
        MADiffuserPolicy.from_checkpoint(tmp_path / "m.pt")


def test_network_with_another_action_range_is_refused(trained):
    env = get_scenario("adhoc-8-2:6").make_env("medium", batch=1, episode_slots=10,
                                               max_request=10)
    with pytest.raises(ValueError, match="max_request"):
        MADiffuserPolicy.from_checkpoint(trained[0] / "checkpoints" / "planner.pt", env)

"""MA-DD: training, planning (inpainting, classifier-free return conditioning, inverse
dynamics), information contract, checkpoints, resume and bad input."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from radiorl.agents.macdmp.train import open_training_data
from radiorl.agents.offline.decision_diffuser import (DDPlanner, DDSettings, MADDConfig,
                                                      MADDPolicy, load_model, preset_config,
                                                      target_from_windows, train)
from radiorl.data.collect import collect, preset_config as collect_config
from radiorl.envs.base import PolicyView
from radiorl.envs.scenarios import get_scenario

torch.set_num_threads(1)

TINY = dict(horizon=4, dim=8, dim_mults=(1, 2), inverse_hidden=(32, 32), batch_size=32,
            epochs=2, steps_per_epoch=3, valid_batches=1, sampler="dpm1", sample_steps=3,
            diffusion_steps=20)
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
    res = train(dataset, MADDConfig(**TINY).validate(), run, **QUIET)
    return run, res


def _env(batch=2):
    return get_scenario("adhoc-8-2:6").make_env("medium", batch=batch, episode_slots=20)


def _ck(trained):
    return trained[0] / "checkpoints" / "planner.pt"


# ----------------------------------------------------------------------------- training
def test_training_writes_history_checkpoints_and_figure(trained):
    run, res = trained
    h = res["history"]
    assert [r["epoch"] for r in h] == [1, 2]
    for k in ("train_total", "train_inverse", "train_diffusion", "valid_inverse",
              "valid_diffusion"):
        assert all(np.isfinite(r[k]) for r in h), k
    for f in ("checkpoints/last.pt", "checkpoints/planner.pt", "training.csv",
              "figures/training_curve.png"):
        assert (run / f).is_file(), f


def test_loss_falls_on_held_out_batches(dataset, tmp_path):
    """Validation losses (fixed held-out batches) fall (measured: total 0.34 → 0.086,
    diffusion 0.27 → 0.022 from epoch 1 to 4)."""
    cfg = MADDConfig(**{**TINY, "epochs": 4, "steps_per_epoch": 40, "valid_batches": 2,
                        "ema": 0.0, "lr": 1e-3}).validate()
    h = train(dataset, cfg, tmp_path, **QUIET)["history"]
    assert h[-1]["valid_diffusion"] < 0.8 * h[0]["valid_diffusion"]
    assert h[-1]["valid_total"] < 0.8 * h[0]["valid_total"]


def test_default_target_is_the_high_quantile_of_the_training_returns(dataset, trained):
    model, blob = load_model(_ck(trained))
    cfg = MADDConfig(**TINY).validate()
    _, windows = open_training_data(dataset, cfg)
    train_w, _ = windows.split(cfg.valid_fraction, seed=cfg.seed)
    q = float(np.quantile(train_w.y_scaled, 0.9))
    assert model.target_return == pytest.approx(q) and blob["target_return"] == model.target_return
    assert -1 <= q <= 0 and q > float(np.median(train_w.y_scaled))
    assert target_from_windows(MADDConfig(target_return=-0.5).validate(), train_w.y_scaled) == -0.5
    assert DDPlanner(model).target_return == model.target_return
    assert DDPlanner(model, DDSettings.from_model(model, target_return=-0.2)).target_return == -0.2


def test_resume_is_exact_and_refuses_another_config(dataset, trained, tmp_path):
    run, _ = trained
    train(dataset, MADDConfig(**{**TINY, "epochs": 1}).validate(), tmp_path, **QUIET)
    train(dataset, MADDConfig(**TINY).validate(), tmp_path, resume=tmp_path, **QUIET)
    a, _ = load_model(run / "checkpoints" / "planner.pt")
    b, _ = load_model(tmp_path / "checkpoints" / "planner.pt")
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n
    with pytest.raises(ValueError, match="horizon"):
        train(dataset, MADDConfig(**{**TINY, "horizon": 6}).validate(), tmp_path / "x",
              resume=run, **QUIET)
    with pytest.raises(ValueError, match="inverse_loss"):
        train(dataset, MADDConfig(**{**TINY, "inverse_loss": "ce"}).validate(), tmp_path / "y",
              resume=run, **QUIET)


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
    ck = _ck(trained)
    blob = torch.load(ck, weights_only=True)
    model, blob2 = load_model(ck)
    assert blob2["config"] == blob["config"] and blob["algo"] == "madd"
    for k, v in model.state_dict().items():
        assert torch.equal(v, blob["model"][k]), k
    env = _env()
    pol = MADDPolicy.from_checkpoint(ck, env, sampler="ddpm")
    assert pol.name == "madd" and pol.requires == frozenset({"local_obs"})
    a1, ps = _episode(pol, env)
    assert a1.shape == (4, 2, env.n_agents) and a1.dtype == np.int64
    assert a1.min() >= 0 and a1.max() <= env.params.max_request
    assert ps["plans"].shape == (2 * env.n_agents, 4, 4)
    a2, _ = _episode(MADDPolicy.from_checkpoint(ck, env, sampler="ddpm"), env)
    assert np.array_equal(a1, a2)
    a3, _ = _episode(MADDPolicy.from_checkpoint(ck, env, sampler="ddpm", jit=False), env)
    assert np.array_equal(a1, a3)


def test_request_depends_only_on_the_agents_own_observation(trained):
    """Information contract: only local observations are handed over, and agent i's request
    is unchanged when every other agent's observation changes (same generator state)."""
    env = _env(batch=1)
    pol = MADDPolicy.from_checkpoint(_ck(trained), env, sampler="ddpm")
    obs, state = env.reset(seed=1)
    for _ in range(4):
        obs, *_, state = env.step(state, np.full((1, env.n_agents), 6))
    view = env.policy_view(state, pol.requires)
    assert "mf_obs" not in view and "queues" not in view

    def act(o):
        ps = pol.reset(env, 1, seed=9)
        return pol.act(o[None], PolicyView({"obs": o[None]}, pol.requires), ps)
    o = np.asarray(view["obs"], np.float32)[0]
    base, ps = act(o.copy())
    for i in (0, env.n_agents - 1):
        changed = o.copy()
        others = [j for j in range(env.n_agents) if j != i]
        changed[others] = np.random.default_rng(i).integers(0, 40, (len(others), 4))
        a, ps2 = act(changed)
        assert a[0, i] == base[0, i]
        assert torch.equal(ps2["plans"][i], ps["plans"][i])


@pytest.mark.parametrize("sampler,steps", [("ddpm", None), ("ddim", 4), ("dpm1", 4),
                                           ("dpm2", 4)])
def test_plans_keep_the_current_observation_clamped(trained, sampler, steps):
    model, _ = load_model(_ck(trained))
    pl = DDPlanner(model, DDSettings.from_model(model, sampler=sampler, steps=steps))
    obs = np.random.default_rng(0).integers(0, 40, (6, 4)).astype(np.float32)
    a, plans = pl.plan(obs, torch.Generator().manual_seed(0))
    assert plans.shape == (6, 4, 4)
    assert torch.equal(plans[:, 0], pl.normalized_obs(obs))
    assert np.array_equal(a, model.inverse_actions(plans[:, 0], plans[:, 1]).numpy())
    assert a.shape == (6,) and a.dtype == np.int64
    assert a.min() >= 0 and a.max() <= model.max_request


def test_return_condition_steers_the_plan(trained):
    """Classifier-free conditioning: with w = 1.2 the plan changes with the target return
    (same noise); with w = 0 (the unconditional model) it does not."""
    model, _ = load_model(_ck(trained))
    obs = np.random.default_rng(2).integers(0, 40, (8, 4)).astype(np.float32)

    def plans(w, target):
        pl = DDPlanner(model, DDSettings.from_model(model, guidance=w, target_return=target))
        return pl.plan(obs, torch.Generator().manual_seed(0))[1]
    lo, hi = plans(1.2, -1.0), plans(1.2, 0.0)
    assert (hi[:, 1:] - lo[:, 1:]).abs().max() > 1e-3
    assert torch.equal(hi[:, 0], lo[:, 0])                      # still clamped
    assert torch.allclose(plans(0.0, -1.0), plans(0.0, 0.0))
    # w = 1 is the conditional model alone (one forward, not the 2B-row CFG call)
    cond_only = plans(1.0, -0.3)
    assert torch.allclose(cond_only, plans(1.0 + 1e-7, -0.3), atol=1e-4)


# ----------------------------------------------------------------------------- bad input
def test_bad_planner_settings(trained):
    ck = _ck(trained)
    with pytest.raises(ValueError, match="sampler must be one of"):
        MADDPolicy.from_checkpoint(ck, sampler="euler")
    with pytest.raises(ValueError, match=r"sample_steps must be .*\[1, 20\]"):
        MADDPolicy.from_checkpoint(ck, sampler="dpm1", steps=0)
    with pytest.raises(ValueError, match="ddpm sampler runs all K"):
        MADDPolicy.from_checkpoint(ck, sampler="ddpm", steps=5)
    with pytest.raises(ValueError, match=r"target_return must be .*\[-1, 1\]"):
        MADDPolicy.from_checkpoint(ck, target_return=3)
    with pytest.raises(ValueError, match="guidance must be"):
        MADDPolicy.from_checkpoint(ck, guidance=-0.5)
    with pytest.raises(ValueError, match="unknown planner settings"):
        MADDPolicy.from_checkpoint(ck, candidates=3)


def test_bad_config_values():
    with pytest.raises(ValueError, match="diffusion_steps"):
        MADDConfig(diffusion_steps=0).validate()
    with pytest.raises(ValueError, match="horizon"):
        MADDConfig(horizon=1).validate()
    with pytest.raises(ValueError, match="sampler must be one of"):
        MADDConfig(sampler="heun").validate()
    with pytest.raises(ValueError, match="condition_dropout"):
        MADDConfig(condition_dropout=1.5).validate()
    with pytest.raises(ValueError, match="needs the unconditional model"):
        MADDConfig(condition_dropout=0.0, guidance=1.2).validate()
    with pytest.raises(ValueError, match="target_quantile"):
        MADDConfig(target_quantile=2).validate()
    with pytest.raises(ValueError, match="temperature"):
        MADDConfig(temperature=-1).validate()
    with pytest.raises(ValueError, match="inverse_loss"):
        MADDConfig(inverse_loss="l1").validate()
    with pytest.raises(ValueError, match="preset"):
        preset_config("fast")
    assert preset_config("paper").epochs * preset_config("paper").steps_per_epoch == 100_000


def test_bad_datasets_are_refused_before_training(dataset, tmp_path):
    with pytest.raises(ValueError, match=r"horizon H = 121 is longer than the dataset's episodes"):
        train(dataset, MADDConfig(**{**TINY, "horizon": 121}).validate(), tmp_path, **QUIET)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(dataset.read_bytes())
    with h5py.File(bad, "r+") as f:
        f.attrs["obs_dim"] = 6
    with pytest.raises(ValueError, match="obs_dim"):
        train(bad, MADDConfig(**TINY).validate(), tmp_path, **QUIET)
    assert not (tmp_path / "checkpoints").exists()


def test_checkpoint_of_another_kind_is_refused(tmp_path):
    torch.save({"algo": "madiffuser", "version": 1}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="not a MA-DD checkpoint.*madiffuser"):
        load_model(tmp_path / "m.pt")
    with pytest.raises(ValueError, match="not a MA-DD checkpoint"):
        MADDPolicy.from_checkpoint(tmp_path / "m.pt")


def test_network_with_another_action_range_is_refused(trained):
    env = get_scenario("adhoc-8-2:6").make_env("medium", batch=1, episode_slots=10,
                                               max_request=10)
    with pytest.raises(ValueError, match="max_request"):
        MADDPolicy.from_checkpoint(_ck(trained), env)

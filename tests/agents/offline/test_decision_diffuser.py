"""MA-DD: training, planning (inpainting, classifier-free return conditioning, inverse
dynamics), the default target return and bad input.

The contract shared with the other offline planners (training artifacts, exact resume and its
checks, checkpoint format, round trip and kind, dataset, config and planner-setting checks, the
network's action range and the local-observation information contract) is tested in
``test_common.py``; the tiny dataset and trained run are the shared fixtures of
``tests/agents/conftest.py``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from radiorl.agents.macdmp.train import open_training_data
from radiorl.agents.offline.decision_diffuser import (DDPlanner, DDSettings, MADDConfig,
                                                      MADDPolicy, load_model,
                                                      target_from_windows, train)
from tests.agents.planners import METHODS, QUIET, checkpoint, make_env, run_episode

torch.set_num_threads(1)

TINY = METHODS["madd"].tiny


@pytest.fixture(scope="module")
def trained(tiny_runs):
    return tiny_runs["madd"]


# ----------------------------------------------------------------------------- training
def test_loss_falls_on_held_out_batches(dataset, tmp_path):
    """Validation losses (fixed held-out batches) fall (measured: total 0.34 → 0.086,
    diffusion 0.27 → 0.022 from epoch 1 to 4)."""
    cfg = MADDConfig(**{**TINY, "epochs": 4, "steps_per_epoch": 40, "valid_batches": 2,
                        "ema": 0.0, "lr": 1e-3}).validate()
    h = train(dataset, cfg, tmp_path, **QUIET)["history"]
    assert h[-1]["valid_diffusion"] < 0.8 * h[0]["valid_diffusion"]
    assert h[-1]["valid_total"] < 0.8 * h[0]["valid_total"]


def test_default_target_is_the_high_quantile_of_the_training_returns(dataset, trained):
    model, blob = load_model(checkpoint(trained))
    cfg = MADDConfig(**TINY).validate()
    _, windows = open_training_data(dataset, cfg)
    train_w, _ = windows.split(cfg.valid_fraction, seed=cfg.seed)
    q = float(np.quantile(train_w.y_scaled, 0.9))
    assert model.target_return == pytest.approx(q) and blob["target_return"] == model.target_return
    assert -1 <= q <= 0 and q > float(np.median(train_w.y_scaled))
    assert target_from_windows(MADDConfig(target_return=-0.5).validate(), train_w.y_scaled) == -0.5
    assert DDPlanner(model).target_return == model.target_return
    assert DDPlanner(model, DDSettings.from_model(model, target_return=-0.2)).target_return == -0.2


# ----------------------------------------------------------------------------- acting
def test_policy_acts_on_the_batched_env_jitted_or_not(trained):
    ck = checkpoint(trained)
    env = make_env()
    pol = MADDPolicy.from_checkpoint(ck, env, sampler="ddpm")
    assert pol.name == "madd" and pol.requires == frozenset({"local_obs"})
    a1, ps = run_episode(pol, env)
    assert a1.shape == (4, 2, env.n_agents) and a1.dtype == np.int64
    assert a1.min() >= 0 and a1.max() <= env.params.max_request
    assert ps["plans"].shape == (2 * env.n_agents, 4, 4)
    a2, _ = run_episode(MADDPolicy.from_checkpoint(ck, env, sampler="ddpm"), env)
    assert np.array_equal(a1, a2)
    a3, _ = run_episode(MADDPolicy.from_checkpoint(ck, env, sampler="ddpm", jit=False), env)
    assert np.array_equal(a1, a3)


@pytest.mark.parametrize("sampler,steps", [("ddpm", None), ("ddim", 4), ("dpm1", 4),
                                           ("dpm2", 4)])
def test_plans_keep_the_current_observation_clamped(trained, sampler, steps):
    model, _ = load_model(checkpoint(trained))
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
    model, _ = load_model(checkpoint(trained))
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
    with pytest.raises(ValueError, match=r"target_return must be .*\[-1, 1\]"):
        MADDPolicy.from_checkpoint(checkpoint(trained), target_return=3)


def test_bad_config_values():
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

"""MA-CDMP: model, training (Algorithm 1) and planner (Algorithm 2).

The contract MA-CDMP shares with the offline baselines (training artifacts, exact resume and
its checks, checkpoint format, round trip and kind, dataset, config and planner-setting
checks, the network's action range) is tested for all four planners in
``tests/agents/offline/test_common.py``; the tiny dataset and trained run are the shared
fixtures of ``tests/agents/conftest.py``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from radiorl.agents.macdmp import (MACDMPConfig, MACDMPPolicy, PlannerSettings, build_model,
                                   load_model, train)
from radiorl.data.normalizers import Normalizer
from tests.agents.planners import METHODS, QUIET, make_env

torch.set_num_threads(1)

TINY = METHODS["macdmp"].tiny


@pytest.fixture(scope="module")
def trained(tiny_runs):
    return tiny_runs["macdmp"]


def _norm(dim=4):
    return Normalizer("limits", np.full(dim, 20.0), np.full(dim, 20.0))


# ----------------------------------------------------------------------------- training
def test_loss_decreases_with_training(dataset, tmp_path):
    """Validation losses (fixed held-out batches) fall as training proceeds (measured with
    this seed: diffusion 0.965 → 0.793 from epoch 1 to 4)."""
    cfg = MACDMPConfig(**{**TINY, "epochs": 4, "steps_per_epoch": 40, "valid_batches": 2,
                          "ema": 0.0, "lr": 1e-3}).validate()
    h = train(dataset, cfg, tmp_path, **QUIET)["history"]
    assert h[-1]["valid_diffusion"] < 0.9 * h[0]["valid_diffusion"]
    assert h[-1]["valid_total"] < 0.9 * h[0]["valid_total"]


# ----------------------------------------------------------------------------- inverse model
def test_inverse_model_recovers_actions_on_synthetic_transitions():
    """o_{t+1} = o_t − (a, 0, a, 0)/scale: the action is a function of the transition."""
    torch.manual_seed(0)
    cfg = MACDMPConfig(**{**TINY, "inverse_loss": "ce"}).validate()
    model = build_model(cfg, max_request=10, normalizer=_norm(), return_scale=1.0)
    g = torch.Generator().manual_seed(1)
    opt = torch.optim.Adam(model.inverse_model.parameters(), lr=3e-3)

    def batch(n):
        o = torch.rand(n, 4, generator=g) * 2 - 1
        a = torch.randint(0, 11, (n,), generator=g)
        nxt = o - torch.stack([a, 0 * a, a, 0 * a], -1).float() / 10.0
        return o, nxt, a
    for _ in range(600):
        o, nxt, a = batch(256)
        loss = torch.nn.functional.cross_entropy(model.inverse_logits(o, nxt), a)
        opt.zero_grad()
        loss.backward()
        opt.step()
    o, nxt, a = batch(2000)
    acc = (model.inverse_actions(o, nxt) == a).float().mean()
    assert acc > 0.95, acc


def test_inverse_mse_head_rounds_into_the_action_range():
    cfg = MACDMPConfig(**TINY).validate()
    model = build_model(cfg, max_request=40, normalizer=_norm(), return_scale=1.0)
    with torch.no_grad():
        model.inverse_model.net[-1].bias.fill_(5.0)      # far above 1 → clamps to max_request
    a = model.inverse_actions(torch.zeros(3, 4), torch.zeros(3, 4))
    assert a.tolist() == [40, 40, 40]


# ----------------------------------------------------------------------------- information
def test_planner_sees_only_own_and_one_hop_mean_field(trained):
    """Agent i's request depends on (o_i, ō_i) and its own noise only: changing a node that
    is not i's neighbour (nor i) leaves i's request unchanged; ō_i is the 1-hop mean."""
    run, _ = trained
    env = make_env("adhoc-9-4:5", batch=1, slots=10)
    pol = MACDMPPolicy.from_checkpoint(run / "checkpoints" / "planner.pt", env)
    assert pol.requires == frozenset({"local_obs", "mean_field_obs"})
    obs, state = env.reset(seed=11)
    for _ in range(5):
        obs, *_, state = env.step(state, np.full((1, env.n_agents), 5))
    view = env.policy_view(state, pol.requires)
    topo = env.topology(state, 0)
    adj = np.zeros((env.n_agents, env.n_agents), bool)
    for a, nb in enumerate(topo["neighbors"]):
        adj[a, nb] = True
    o = np.asarray(view["obs"], np.float64)[0]
    for i in range(env.n_agents):
        nb = np.nonzero(adj[i])[0]
        expect = o[nb].mean(0) if len(nb) else np.zeros(4)
        assert np.allclose(view["mf_obs"][0, i], expect, atol=1e-5)
    i = int(np.argmin(adj.sum(1)))
    far = [j for j in range(env.n_agents) if j != i and not adj[i, j]]
    assert far, "topology without a non-neighbour"

    def act(obs_arr):
        mf = np.zeros_like(obs_arr)
        for a in range(env.n_agents):
            nb = np.nonzero(adj[a])[0]
            if len(nb):
                mf[a] = obs_arr[nb].mean(0)
        v = {"obs": obs_arr[None].astype(np.float32), "mf_obs": mf[None].astype(np.float32)}
        ps = pol.reset(env, 1, seed=4)
        return pol.act(obs_arr[None], v, ps)[0][0]
    base = act(o.copy())
    changed = o.copy()
    changed[far] += 17.0
    assert act(changed)[i] == base[i]


def test_without_mean_field_requires_only_local_obs(dataset, tmp_path):
    cfg = MACDMPConfig(**{**TINY, "epochs": 1, "mean_field": False}).validate()
    res = train(dataset, cfg, tmp_path, **QUIET)
    model, _ = load_model(res["checkpoint"])
    assert model.cfg.channels == 4
    env = make_env(batch=1, slots=10)
    pol = MACDMPPolicy.from_checkpoint(res["checkpoint"], env)
    assert pol.requires == frozenset({"local_obs"})
    obs, state = env.reset(seed=0)
    a, _ = pol.act(obs, env.policy_view(state, pol.requires), pol.reset(env, 1, 0))
    assert a.shape == (1, env.n_agents) and a.min() >= 0 and a.max() <= env.params.max_request


# ----------------------------------------------------------------------------- planning
@pytest.mark.parametrize("sampler,steps", [("ddpm", None), ("ddim", 4), ("dpm1", 4),
                                           ("dpm2", 4)])
def test_plans_keep_the_current_observation_clamped(trained, sampler, steps):
    run, _ = trained
    model, _ = load_model(run / "checkpoints" / "planner.pt")
    from radiorl.agents.macdmp.planner import Planner
    pl = Planner(model, PlannerSettings.from_model(model, sampler=sampler, steps=steps,
                                                   guidance=0.5))
    rng = np.random.default_rng(0)
    obs = rng.integers(0, 40, (6, 4)).astype(np.float32)
    mf = rng.integers(0, 40, (6, 4)).astype(np.float32)
    a, plans = pl.plan(obs, mf, torch.Generator().manual_seed(0))
    first = pl.normalized_condition(obs, mf)
    assert torch.equal(plans[:, 0], first)
    assert a.shape == (6,) and a.min() >= 0 and a.max() <= model.max_request
    # warm start from the previous plan
    pl.settings.warm_start = 5
    a2, plans2 = pl.plan(obs, mf, torch.Generator().manual_seed(0), previous=plans)
    assert torch.equal(plans2[:, 0], first) and a2.shape == (6,)


def test_candidates_pick_the_highest_return(trained):
    run, _ = trained
    model, _ = load_model(run / "checkpoints" / "planner.pt")
    from radiorl.agents.macdmp.planner import Planner
    pl = Planner(model, PlannerSettings.from_model(model, candidates=4, guidance=0.0))
    obs = np.full((3, 4), 10, np.float32)
    _, best = pl.plan(obs, obs, torch.Generator().manual_seed(0))
    pl1 = Planner(model, PlannerSettings.from_model(model, candidates=1, guidance=0.0))
    with torch.no_grad():
        big = obs.repeat(4, 0)
        _, all_plans = pl1.plan(big, big, torch.Generator().manual_seed(0))
        j_all = model.value(all_plans, torch.zeros(12, dtype=torch.int64)).view(3, 4)
        j_best = model.value(best, torch.zeros(3, dtype=torch.int64))
    assert torch.allclose(j_best, j_all.max(1).values, atol=1e-5)


def test_planner_temperature_range(trained):
    run, _ = trained
    with pytest.raises(ValueError, match=r"temperature must be .*\[0, 10\]"):
        MACDMPPolicy.from_checkpoint(run / "checkpoints" / "planner.pt", temperature=-1)


def test_parallel_guidance_gives_the_same_plans(trained):
    run, _ = trained
    model, _ = load_model(run / "checkpoints" / "planner.pt")
    from radiorl.agents.macdmp.planner import Planner
    rng = np.random.default_rng(2)
    obs = rng.integers(0, 40, (5, 4)).astype(np.float32)
    out = []
    for par in (False, True):
        pl = Planner(model, PlannerSettings.from_model(model, sampler="ddpm", guidance=0.5,
                                                       parallel_guidance=par))
        out.append(pl.plan(obs, obs, torch.Generator().manual_seed(3)))
    assert np.array_equal(out[0][0], out[1][0])
    assert torch.allclose(out[0][1], out[1][1], atol=1e-6)


def test_compiled_planner_gives_the_same_plans():
    """``compile=True`` (torch.compile of the denoiser and of the guidance gradient) plans the
    same requests as the TorchScript planner; plans agree to float rounding. (An untrained MLP
    model keeps the compile time of this test low; the U-Net path is the same code.)"""
    from radiorl.agents.macdmp.planner import Planner
    cfg = MACDMPConfig(**{**TINY, "denoiser": "mlp", "value_net": "mlp"}).validate()
    torch.manual_seed(0)
    model = build_model(cfg, 40, _norm(), 100.0)
    rng = np.random.default_rng(4)
    obs = rng.integers(0, 40, (5, 4)).astype(np.float32)
    out = []
    for comp in (False, True):
        pl = Planner(model, PlannerSettings.from_model(model, sampler="dpm1", steps=3,
                                                       guidance=0.5, compile=comp))
        out.append(pl.plan(obs, obs, torch.Generator().manual_seed(5)))
    assert np.array_equal(out[0][0], out[1][0])
    assert torch.allclose(out[0][1], out[1][1], atol=1e-4)
    assert not torch.allclose(out[0][1][:, 1:], torch.zeros(1))      # a real plan was made
    with pytest.raises(ValueError, match="compile"):
        PlannerSettings.from_model(model, compile="yes")


def test_temperature_zero_makes_the_ode_planner_deterministic(trained):
    """temperature scales every noise draw: at 0 the DPM-Solver planner starts from the zero
    trajectory and draws no noise, so different generators give the same plan; at 1 they
    differ."""
    run, _ = trained
    model, _ = load_model(run / "checkpoints" / "planner.pt")
    from radiorl.agents.macdmp.planner import Planner
    obs = np.random.default_rng(6).integers(0, 40, (4, 4)).astype(np.float32)
    plans = {}
    for temp in (0.0, 1.0):
        pl = Planner(model, PlannerSettings.from_model(model, sampler="dpm1", steps=3,
                                                       guidance=0.0, temperature=temp))
        plans[temp] = [pl.plan(obs, obs, torch.Generator().manual_seed(g))[1] for g in (1, 2)]
    assert torch.equal(plans[0.0][0], plans[0.0][1])
    assert not torch.equal(plans[1.0][0], plans[1.0][1])

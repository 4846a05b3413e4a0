"""Full-duplex references: MRT by hand, water-filled ≥ equal-power MRT, the sum-rate optimizer
against a brute-force global optimum (one DL user, one clutter direction, one receive antenna),
≥ MRT on random drops, ≤ R', the torch objective against the numpy env, Policy wrappers."""
import math

import numpy as np
import pytest
import torch

from radiorl.envs.full_duplex import FullDuplexEnv, FullDuplexParams, mmse_receiver
from radiorl.schedulers.full_duplex import (MRTPolicy, RandomPolicy, SumRateOptimizerConfig,
                                            SumRateOptimizerPolicy, clutter_nulling_beamformers,
                                            mrt_action, mrt_beamformers, optimize_sum_rate,
                                            random_action, torch_action_sum_rate,
                                            torch_sum_rate)

torch.set_num_threads(1)

SIGMA2_W = 1e-3 * 10.0 ** (-97.0 / 10.0)


def gain(x, y, n=6):
    """N ρ0 d^−α / σ² (Table I, array gain N of the default ``array_gain=True``)."""
    return n * 4.16e-6 * (x * x + y * y + 100.0 ** 2) ** (-1.8) / SIGMA2_W


def test_mrt_single_user_by_hand():
    """K = 1: MRT puts all power on g/‖g‖, SNR = P_max‖g‖²/σ² (the maximum of eq. 11)."""
    env = FullDuplexEnv(FullDuplexParams(n_dl=1, n_ul=1, clutter_angles_deg=()))
    x, y = 100.0, -170.0
    s = env.state_from_positions([[[x, y]]], [[[50.0, 50.0]]])
    for power in ("equal", "waterfill"):
        r = env.rates(s, mrt_action(env, s, power))
        assert r["snr_dl"][0, 0] == pytest.approx(3.0 * gain(x, y), rel=1e-10)
        assert r["sinr_ul"][0, 0] == pytest.approx(1.0 * gain(50.0, 50.0), rel=1e-10)
        assert r["sum_rate"][0] == pytest.approx(env.rate_bound(s)[0], rel=1e-10)


def test_mrt_beamformers_power_and_direction():
    env = FullDuplexEnv()
    _, s = env.reset(seed=3, batch=16)
    for power in ("equal", "waterfill"):
        V = mrt_beamformers(s.g, 3.0, power)
        assert np.allclose((np.abs(V) ** 2).sum((1, 2)), 3.0)
        # v_k ∥ g_k: |g_kᴴ v_k|² = ‖g_k‖² ‖v_k‖²
        gv = np.abs(np.einsum("bkn,bnk->bk", s.g.conj(), V)) ** 2
        np.testing.assert_allclose(gv, (np.abs(s.g) ** 2).sum(-1) * (np.abs(V) ** 2).sum(1),
                                   rtol=1e-10)
    np.testing.assert_allclose((np.abs(mrt_beamformers(s.g, 3.0, "equal")) ** 2).sum(1), 0.5)


def test_waterfilled_mrt_beats_equal_power_downlink():
    env = FullDuplexEnv()
    _, s = env.reset(seed=21, batch=64)
    eq = env.rates(s, mrt_action(env, s, "equal"))["rate_dl"].sum(-1)
    wf = env.rates(s, mrt_action(env, s, "waterfill"))["rate_dl"].sum(-1)
    assert np.all(wf >= eq - 1e-12)
    assert wf.mean() > eq.mean() + 0.05
    # water-filled MRT reaches the downlink part of R' exactly (interference-free eq. 11)
    a = (np.abs(s.g) ** 2).sum(-1)
    from radiorl.envs.full_duplex import waterfill
    np.testing.assert_allclose(wf, np.log2(1 + a * waterfill(a, 3.0)).sum(-1), rtol=1e-10)


def brute_force_one_user(g, a_f, hg, inr, pmax, pul):
    """max over v of log2(1+|gᴴv|²) + log2(1 + P_l|h|²/(inr·|a_fᴴv|² + 1)) with N_r = 1.

    Only the components of v along e1 = a_f and e2 ⟂ a_f in span{g, a_f} matter; with the
    best phases |gᴴv| = |gᴴe1||α| + |gᴴe2||β| and the leakage is |α|², over
    |α|² + |β|² ≤ P_max: a 2-D grid over (radius, angle), refined twice."""
    e1 = a_f
    r = g - np.vdot(e1, g) * e1
    e2 = r / np.linalg.norm(r)
    c1, c2 = abs(np.vdot(g, e1)), abs(np.vdot(g, e2))

    def f(rad, ang):
        al, be = rad * np.cos(ang), rad * np.sin(ang)
        return np.log2(1 + (c1 * al + c2 * be) ** 2) + np.log2(1 + pul * hg / (inr * al ** 2 + 1))

    lo_r, hi_r, lo_a, hi_a = 0.0, math.sqrt(pmax), 0.0, math.pi / 2
    for _ in range(4):
        R, A = np.meshgrid(np.linspace(lo_r, hi_r, 401), np.linspace(lo_a, hi_a, 401))
        F = f(R, A)
        i = np.unravel_index(F.argmax(), F.shape)
        dr, da = (hi_r - lo_r) / 40, (hi_a - lo_a) / 40
        lo_r, hi_r = max(0.0, R[i] - dr), min(math.sqrt(pmax), R[i] + dr)
        lo_a, hi_a = max(0.0, A[i] - da), min(math.pi / 2, A[i] + da)
    return F.max()


@pytest.mark.parametrize("s_user,s_clutter", [(0.0, 0.15), (0.3, 0.1), (0.2, 0.45)])
def test_optimizer_reaches_brute_force_optimum(s_user, s_clutter):
    # without the array gain the clutter dominates at these geometries, so MRT is clearly
    # suboptimal (the brute force holds for any gains)
    P = FullDuplexParams(n_dl=1, n_ul=1, n_rx=1, clutter_inr_db=20.0, array_gain=False,
                         clutter_angles_deg=(math.degrees(math.asin(s_clutter)),))
    env = FullDuplexEnv(P)
    xd = (120.0 * math.sqrt(1 - s_user ** 2), 120.0 * s_user)
    s = env.state_from_positions([[list(xd)]], [[[-60.0, 20.0]]])
    a_f = np.exp(1j * np.pi * s_clutter * np.arange(6)) / math.sqrt(6)
    best = brute_force_one_user(s.g[0, 0], a_f, gain(-60.0, 20.0, n=1), 100.0, 3.0, 1.0)
    opt = env.sum_rate(s, optimize_sum_rate(env, s, SumRateOptimizerConfig(iterations=400)))[0]
    mrt = env.sum_rate(s, mrt_action(env, s, "waterfill"))[0]
    V = clutter_nulling_beamformers(env, s.g)
    W, _ = mmse_receiver(s.h, np.ones((1, 1)), env.G, V)
    nulling = env.sum_rate(s, env.encode_action(V, np.ones((1, 1)), W))[0]
    # neither starting point is optimal: the clutter makes MRT clearly suboptimal, and the
    # optimum leaks a little power towards the clutter
    assert mrt < best - 0.1 and nulling < best - 1e-4
    assert opt == pytest.approx(best, abs=1e-6)
    assert opt <= env.rate_bound(s)[0] + 1e-12


@pytest.mark.parametrize("seed,kw", [(1, {}), (2, {"mmse_receiver": True}),
                                     (3, {"power_form": "projection"}),
                                     (4, {"extended_interference": True})])
def test_optimizer_beats_mrt_and_respects_bound(seed, kw):
    env = FullDuplexEnv(FullDuplexParams(**kw))
    _, s = env.reset(seed=seed, batch=16)
    cfg = SumRateOptimizerConfig(iterations=150, restarts=3, seed=seed)
    a, hist = optimize_sum_rate(env, s, cfg, return_history=True)
    opt = env.sum_rate(s, a)
    mrt = env.sum_rate(s, mrt_action(env, s, "waterfill"))
    bound = env.rate_bound(s)
    assert np.all(opt >= mrt - 1e-9)
    assert opt.mean() > mrt.mean() + 0.01
    assert np.all(opt <= bound + 1e-12)
    # the torch evaluation of the returned point agrees with the env (independent code)
    np.testing.assert_allclose(hist[-1], opt, rtol=1e-6)
    assert np.all(np.diff(hist, axis=0) >= 0)


def test_torch_objective_matches_numpy_env():
    env = FullDuplexEnv(FullDuplexParams(extended_interference=True))
    _, s = env.reset(seed=5, batch=8)
    rng = np.random.default_rng(0)
    V = rng.standard_normal((8, 6, 6)) + 1j * rng.standard_normal((8, 6, 6))
    V *= np.sqrt(rng.uniform(0, 3, 8) / (np.abs(V) ** 2).sum((1, 2)))[:, None, None]
    p = rng.uniform(0, 1, (8, 4))
    W, _ = mmse_receiver(s.h, p, env.G, V)
    C = env.sum_rate(s, env.encode_action(V, p, W))
    t = torch.as_tensor
    Ct = torch_sum_rate(t(s.g), t(s.h), t(env.G), t(V), t(p), t(s.c)).numpy()
    np.testing.assert_allclose(Ct, C, rtol=1e-9)


@pytest.mark.parametrize("kw", [{}, {"power_form": "projection"},
                                {"extended_interference": True}])
def test_torch_action_sum_rate_is_the_env_sum_rate_and_differentiable(kw):
    env = FullDuplexEnv(FullDuplexParams(mmse_receiver=True, **kw))
    _, s = env.reset(seed=2, batch=16)
    a = torch.tensor(np.random.default_rng(1).uniform(-1, 1, (16, env.action_dim)),
                        requires_grad=True)
    C = torch_action_sum_rate(env, s, a)
    np.testing.assert_allclose(C.detach().numpy(), env.sum_rate(s, a.detach().numpy()),
                               rtol=1e-10)
    g, = torch.autograd.grad(C.sum(), a)
    # directional derivative against a central finite difference of the numpy env
    d = torch.as_tensor(np.random.default_rng(2).standard_normal((16, env.action_dim))) * 0.1
    a0, h = a.detach().numpy() * 0.9, 1e-6                    # inside [-1, 1]: no clipping
    at = torch.as_tensor(a0, dtype=torch.float64).requires_grad_(True)
    g0, = torch.autograd.grad(torch_action_sum_rate(env, s, at).sum(), at)
    fd = (env.sum_rate(s, a0 + h * d.numpy()) - env.sum_rate(s, a0 - h * d.numpy())) / (2 * h)
    np.testing.assert_allclose((g0 * d).sum(-1).numpy(), fd, rtol=1e-4, atol=1e-6)
    assert torch.isfinite(g).all()
    if "power_form" not in kw:                       # zero power level: finite gradient
        a1 = a.detach().clone()
        a1[:, env.action_slices["v_level"]] = -1.0
        a1.requires_grad_(True)
        g1, = torch.autograd.grad(torch_action_sum_rate(env, s, a1).sum(), a1)
        assert torch.isfinite(g1).all()
        up = a1.detach().numpy().copy()
        up[:, env.action_slices["v_level"]] += 1e-7             # one-sided difference
        fd1 = (env.sum_rate(s, up) - env.sum_rate(s, a1.detach().numpy())) / 1e-7
        np.testing.assert_allclose(g1[:, env.action_slices["v_level"]][:, 0].numpy(), fd1,
                                   rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="action: expected a tensor"):
        torch_action_sum_rate(env, s, a[:3])
    with pytest.raises(ValueError, match="mmse_receiver=True"):
        torch_action_sum_rate(FullDuplexEnv(), s, a)


def test_random_action_feasible_and_below_mrt_on_average():
    env = FullDuplexEnv()
    _, s = env.reset(seed=9, batch=64)
    a = random_action(env, 64, np.random.default_rng(0))
    assert a.shape == (64, env.action_dim) and a.min() >= -1 and a.max() <= 1
    assert env.sum_rate(s, a).mean() < env.sum_rate(s, mrt_action(env, s, "equal")).mean()


def test_policies_follow_information_contract():
    env = FullDuplexEnv()
    obs, s = env.reset(seed=0, batch=4)
    rnd = RandomPolicy()
    rnd.reset(env, 4, seed=1)
    assert rnd.requires == frozenset()
    a, _ = rnd.act(obs, env.policy_view(s, rnd.requires), None)
    assert a.shape == (4, env.action_dim)
    mrt = MRTPolicy("waterfill")
    mrt.reset(env, 4, seed=0)
    assert mrt.requires == frozenset({"global_csi"})
    a, _ = mrt.act(obs, env.policy_view(s, mrt.requires), None)
    np.testing.assert_array_equal(a, mrt_action(env, s, "waterfill"))
    with pytest.raises(KeyError, match="global_csi"):
        mrt.act(obs, env.policy_view(s, set()), None)
    opt = SumRateOptimizerPolicy(SumRateOptimizerConfig(iterations=5, restarts=1))
    opt.reset(env, 4, seed=0)
    a, _ = opt.act(obs, env.policy_view(s, opt.requires), None)
    assert np.all(env.sum_rate(s, a) >= env.sum_rate(s, mrt_action(env, s, "waterfill")) - 1e-9)
    with pytest.raises(ValueError, match="power"):
        MRTPolicy("max")
    with pytest.raises(ValueError, match="restarts"):
        SumRateOptimizerConfig(restarts=0)


def test_clutter_nulling_beamformers_null_the_clutter():
    env = FullDuplexEnv()                                      # clutter at −50° and 20°
    _, s = env.reset(seed=4, batch=8)
    V = clutter_nulling_beamformers(env, s.g)
    assert np.allclose((np.abs(V) ** 2).sum((1, 2)), 3.0)
    for th in np.deg2rad([-50.0, 20.0]):
        a = np.exp(1j * np.pi * np.sin(th) * np.arange(6)) / np.sqrt(6)
        assert np.abs(np.einsum("n,bnk->bk", a.conj(), V)).max() < 1e-12
    # the uplink then sees no clutter at all: G V = 0
    assert np.abs(env.G @ V).max() < 1e-10

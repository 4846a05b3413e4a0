"""Full-duplex BS env: eq. 11 / eq. 12 / eq. 13 by hand (Table I units: σ² = −97 dBm total,
ρ0 a power gain), literal-loop oracles for the SINR functions, the MMSE receiver against its
closed form and random receivers, water-filling KKT, feasibility and R' ≥ C properties,
Gymnasium checker, determinism, batch = single copies, mobility, bad input."""
import doctest
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import radiorl.envs.full_duplex as fdm
from radiorl.envs.full_duplex import (FullDuplexEnv, FullDuplexGymEnv, FullDuplexParams,
                                      downlink_snr, downlink_sinr_extended, mmse_receiver,
                                      rate_upper_bound, uplink_sinr, waterfill)

SIGMA2_W = 1e-3 * 10.0 ** (-97.0 / 10.0)          # −97 dBm as a total noise power (spec)
RHO0, ALPHA, H_BS = 4.16e-6, 3.6, 100.0


def gain(x, y, n=6):
    """Noise-normalized LoS power gain N ρ0 d^−α / σ² of a user at (x, y) seen by an N-element
    array (Table I; the array gain N is the default ``array_gain=True``)."""
    return n * RHO0 * (x * x + y * y + H_BS * H_BS) ** (-ALPHA / 2.0) / SIGMA2_W


def dirichlet_sq(n, s1, s2):
    x = np.pi * (s2 - s1)
    if abs(math.sin(x / 2)) < 1e-12:
        return 1.0
    return (math.sin(n * x / 2) / (n * math.sin(x / 2))) ** 2


def at(n, s):
    """√N·a_N(θ) with sin θ = s: unit-modulus entries, usable as Ṽ / w̃ action blocks."""
    return np.exp(1j * np.pi * s * np.arange(n))


def build(env, v=None, level=1.0, a_p=None, w=None):
    """An action from blocks: v complex[K, N_t] (Ṽ, user-major), a_p [L], w complex[L, N_r]."""
    P = env.params
    a = np.zeros((1, env.action_dim))
    sl = env.action_slices
    if v is not None:
        a[0, sl["v_re"]], a[0, sl["v_im"]] = np.real(v).ravel(), np.imag(v).ravel()
    if "v_level" in sl:
        a[0, sl["v_level"]] = level
    a[0, sl["p_ul"]] = np.ones(P.n_ul) if a_p is None else a_p
    if w is not None:
        a[0, sl["w_re"]], a[0, sl["w_im"]] = np.real(w).ravel(), np.imag(w).ravel()
    return a


def small_env(**kw):
    base = dict(n_dl=1, n_ul=1, clutter_angles_deg=())
    base.update(kw)
    return FullDuplexEnv(FullDuplexParams(**base))


def test_doctests():
    res = doctest.testmod(fdm)
    assert res.attempted >= 10 and res.failed == 0


# ------------------------------------------------------------------------------ layout
@pytest.mark.parametrize("kw,dim,blocks", [
    ({}, 125, {"v_re": (0, 36), "v_im": (36, 72), "p_ul": (72, 76), "w_re": (76, 100),
               "w_im": (100, 124), "v_level": (124, 125)}),
    ({"power_form": "projection"}, 124, {"w_im": (100, 124)}),
    ({"mmse_receiver": True, "power_form": "projection"}, 76, {"p_ul": (72, 76)}),
    ({"mmse_receiver": True}, 77, {"v_level": (76, 77)}),
])
def test_action_layout(kw, dim, blocks):
    env = FullDuplexEnv(FullDuplexParams(**kw))
    assert env.action_dim == dim and env.obs_dim == 130
    for nm, (lo, hi) in blocks.items():
        assert (env.action_slices[nm].start, env.action_slices[nm].stop) == (lo, hi)
    if kw.get("mmse_receiver"):
        assert "w_re" not in env.action_slices


# ------------------------------------------------------------------------------ eq. 11 by hand
def test_downlink_snr_by_hand():
    env = small_env(n_tx=6)
    # user on broadside at 200 m; beam along broadside at full power (Ṽ = ones, a_P = 1)
    s = env.state_from_positions([[[200.0, 0.0]]], [[[0.0, 150.0]]])
    r = env.rates(s, build(env, v=np.ones((1, 6)), level=1.0, w=np.ones((1, 6))))
    assert r["snr_dl"][0, 0] == pytest.approx(3.0 * gain(200.0, 0.0), rel=1e-12)
    # half the power (a_P = 0): (a_P + 1)/2 · P_max
    r = env.rates(s, build(env, v=np.ones((1, 6)), level=0.0, w=np.ones((1, 6))))
    assert r["snr_dl"][0, 0] == pytest.approx(1.5 * gain(200.0, 0.0), rel=1e-12)
    # user at sin θ = 1/2 seen by the broadside beam: array factor = Dirichlet kernel
    x, y = 250.0 * math.sqrt(0.75), 125.0
    s = env.state_from_positions([[[x, y]]], [[[0.0, 150.0]]])
    r = env.rates(s, build(env, v=np.ones((1, 6)), w=np.ones((1, 6))))
    assert r["snr_dl"][0, 0] == pytest.approx(3.0 * gain(x, y) * dirichlet_sq(6, 0.0, 0.5),
                                              rel=1e-10)
    assert r["rate_dl"][0, 0] == pytest.approx(math.log2(1 + r["snr_dl"][0, 0]))


def test_downlink_snr_function_loop_oracle():
    rng = np.random.default_rng(3)
    g = rng.standard_normal((4, 3, 5)) + 1j * rng.standard_normal((4, 3, 5))
    V = rng.standard_normal((4, 5, 3)) + 1j * rng.standard_normal((4, 5, 3))
    out = downlink_snr(g, V, noise=0.7)
    for b in range(4):
        for k in range(3):
            assert out[b, k] == pytest.approx(abs(np.vdot(g[b, k], V[b, :, k])) ** 2 / 0.7)


# ------------------------------------------------------------------------------ eq. 12 by hand
def test_uplink_sinr_no_clutter_by_hand():
    env = small_env(n_rx=6)
    s = env.state_from_positions([[[100.0, 0.0]]], [[[250.0, 0.0]]])
    # matched receiver a_r(0) (w̃ = ones), p = P_l (a = 1) and P_l/2 (a = 0)
    for a_p, p in ((1.0, 1.0), (0.0, 0.5), (-1.0, 0.0)):
        r = env.rates(s, build(env, v=np.ones((1, 6)), a_p=[a_p], w=np.ones((1, 6))))
        assert r["sinr_ul"][0, 0] == pytest.approx(p * gain(250.0, 0.0), rel=1e-12, abs=1e-15)


def test_uplink_sinr_clutter_same_direction_by_hand():
    """Clutter at 0°, DL beam √P_max a_t(0), UL user at 0° with w = a_r(0):
    G Q Gᴴ = |β|²/σ² P_max a_r a_rᴴ → SINR = p g / (100·P_max + 1)."""
    env = small_env(clutter_angles_deg=(0.0,), clutter_inr_db=20.0)
    s = env.state_from_positions([[[150.0, 0.0]]], [[[250.0, 0.0]]])
    r = env.rates(s, build(env, v=np.ones((1, 6)), w=np.ones((1, 6))))
    assert r["sinr_ul"][0, 0] == pytest.approx(gain(250.0, 0.0) / (100.0 * 3.0 + 1.0), rel=1e-10)
    assert r["snr_dl"][0, 0] == pytest.approx(3.0 * gain(150.0, 0.0), rel=1e-12)
    # UL user at sin θ = 2/N_r = 1/3 with its matched receiver: clutter orthogonal, nulled
    x, y = 250.0 * math.sqrt(8.0 / 9.0), 250.0 / 3.0
    s = env.state_from_positions([[[150.0, 0.0]]], [[[x, y]]])
    r = env.rates(s, build(env, v=np.ones((1, 6)), w=at(6, 1.0 / 3.0)[None]))
    assert r["sinr_ul"][0, 0] == pytest.approx(gain(x, y), rel=1e-10)


def test_uplink_sinr_clutter_sidelobe_by_hand():
    """Clutter at sin θ_f = 0.2 leaks through both arrays' sidelobes:
    |w_lᴴ G v|² = 100·P_max·D6(0, 0.2)² (transmit and receive array factors)."""
    th = math.degrees(math.asin(0.2))
    env = small_env(clutter_angles_deg=(th,), clutter_inr_db=20.0)
    s = env.state_from_positions([[[150.0, 0.0]]], [[[250.0, 0.0]]])
    r = env.rates(s, build(env, v=np.ones((1, 6)), w=np.ones((1, 6))))
    leak = 100.0 * 3.0 * dirichlet_sq(6, 0.0, 0.2) ** 2
    assert r["sinr_ul"][0, 0] == pytest.approx(gain(250.0, 0.0) / (leak + 1.0), rel=1e-10)


def test_two_uplink_users_by_hand_and_sum_rate():
    """Matched receivers, no clutter: SINR_1 = p1 g1 / (p2 g2 D(s1, s2) + 1); C = Σ log2(1+γ)."""
    env = small_env(n_ul=2)
    s1, s2 = 0.0, 0.25
    u2 = (200.0 * math.sqrt(1 - s2 ** 2), 200.0 * s2)
    st_ = env.state_from_positions([[[120.0, 0.0]]], [[[250.0, 0.0], list(u2)]])
    w = np.stack([at(6, s1), at(6, s2)])
    a = build(env, v=np.ones((1, 6)), a_p=[1.0, 0.0], w=w)          # p = (1, 0.5) W
    g1, g2 = gain(250.0, 0.0), gain(*u2)
    D = dirichlet_sq(6, s1, s2)
    sinr1 = 1.0 * g1 / (0.5 * g2 * D + 1.0)
    sinr2 = 0.5 * g2 / (1.0 * g1 * D + 1.0)
    snr = 3.0 * gain(120.0, 0.0)
    r = env.rates(st_, a)
    np.testing.assert_allclose(r["sinr_ul"][0], [sinr1, sinr2], rtol=1e-10)
    C = math.log2(1 + snr) + math.log2(1 + sinr1) + math.log2(1 + sinr2)
    assert env.sum_rate(st_, a)[0] == pytest.approx(C, rel=1e-12)
    obs, rew, term, trunc, info, _ = env.step(st_, a)
    assert rew[0] == pytest.approx(C, rel=1e-12) and info["sum_rate"][0] == rew[0]
    np.testing.assert_allclose(info["rate_ul"][0], np.log2(1 + np.array([sinr1, sinr2])))
    # R' of the same state: full powers, no interference, water-filling of one DL user
    Rp = math.log2(1 + 3.0 * gain(120.0, 0.0)) + math.log2(1 + g1) + math.log2(1 + g2)
    assert info["rate_bound"][0] == pytest.approx(Rp, rel=1e-12)
    assert env.rate_bound(st_)[0] == pytest.approx(Rp, rel=1e-12)


def test_uplink_sinr_function_literal_eq12():
    """uplink_sinr against eq. 12 written literally with matrices (random complex data)."""
    rng = np.random.default_rng(5)
    L, Nr, Nt, K = 3, 4, 5, 2
    cn = lambda *s: rng.standard_normal(s) + 1j * rng.standard_normal(s)  # noqa: E731
    h, W, G, V = cn(L, Nr), cn(Nr, L), cn(Nr, Nt), cn(Nt, K)
    p = rng.uniform(0.1, 2.0, L)
    out = uplink_sinr(h, p, W, G, V, noise=0.3)
    Q = sum(np.outer(V[:, k], V[:, k].conj()) for k in range(K))
    for l in range(L):
        w = W[:, l]
        S = sum(p[j] * np.outer(h[j], h[j].conj()) for j in range(L) if j != l)
        den = (w.conj() @ (S + G @ Q @ G.conj().T + 0.3 * np.eye(Nr)) @ w).real
        num = p[l] * (w.conj() @ np.outer(h[l], h[l].conj()) @ w).real
        assert out[l] == pytest.approx(num / den, rel=1e-10)


def test_extended_model_by_hand():
    """DL inter-user interference and UL→DL user interference c_kl = ρ0 max(d, 10)^−α / σ²."""
    env = FullDuplexEnv(FullDuplexParams(n_dl=2, n_ul=1, clutter_angles_deg=(),
                                         extended_interference=True, ue_min_dist_m=10.0))
    s1 = 0.2
    d1 = (200.0 * math.sqrt(1 - s1 ** 2), 200.0 * s1)
    ul = (-100.0, 50.0)
    st_ = env.state_from_positions([[[150.0, 0.0], list(d1)]], [[list(ul)]])
    v = np.stack([at(6, 0.0), at(6, s1)])                            # V = √1.5 [a(0), a(θ1)]
    a = build(env, v=v, level=1.0, a_p=[1.0], w=np.ones((1, 6)))
    D = dirichlet_sq(6, 0.0, s1)

    def c(xy):
        d = math.hypot(xy[0] - ul[0], xy[1] - ul[1])
        return RHO0 * max(d, 10.0) ** (-ALPHA) / SIGMA2_W

    g0, g1 = gain(150.0, 0.0), gain(*d1)
    exp0 = 1.5 * g0 / (1.5 * g0 * D + c((150.0, 0.0)) + 1.0)
    exp1 = 1.5 * g1 / (1.5 * g1 * D + c(d1) + 1.0)
    np.testing.assert_allclose(env.rates(st_, a)["snr_dl"][0], [exp0, exp1], rtol=1e-10)
    # the basic model ignores both
    basic = env.with_params(extended_interference=False)
    np.testing.assert_allclose(basic.rates(basic.state_from_positions(
        [[[150.0, 0.0], list(d1)]], [[list(ul)]]), a)["snr_dl"][0], [1.5 * g0, 1.5 * g1],
        rtol=1e-10)
    # minimum distance: a UL user on top of a DL user
    st2 = env.state_from_positions([[[150.0, 0.0], list(d1)]], [[[150.0, 0.0]]])
    assert st2.c[0, 0, 0] == pytest.approx(RHO0 * 10.0 ** (-ALPHA) / SIGMA2_W, rel=1e-12)


def test_downlink_sinr_extended_loop_oracle():
    rng = np.random.default_rng(9)
    K, L, N = 3, 2, 4
    g = rng.standard_normal((K, N)) + 1j * rng.standard_normal((K, N))
    V = rng.standard_normal((N, K)) + 1j * rng.standard_normal((N, K))
    c, p = rng.uniform(0, 2, (K, L)), rng.uniform(0, 1, L)
    out = downlink_sinr_extended(g, V, c, p, noise=0.5)
    for k in range(K):
        sig = abs(np.vdot(g[k], V[:, k])) ** 2
        inter = sum(abs(np.vdot(g[k], V[:, j])) ** 2 for j in range(K) if j != k)
        assert out[k] == pytest.approx(sig / (inter + c[k] @ p + 0.5), rel=1e-12)


# ------------------------------------------------------------------------------ MMSE receiver
def test_mmse_receiver_closed_form_and_optimality():
    rng = np.random.default_rng(11)
    B, L, Nr, Nt, K = 3, 4, 6, 6, 3
    cn = lambda *s: rng.standard_normal(s) + 1j * rng.standard_normal(s)  # noqa: E731
    h, G, V = cn(B, L, Nr) * 0.5, cn(Nr, Nt) * 3.0, cn(B, Nt, K) * 0.3
    p = rng.uniform(0.0, 1.0, (B, L))
    W, sinr = mmse_receiver(h, p, G, V)
    np.testing.assert_allclose(np.linalg.norm(W, axis=1), 1.0, atol=1e-12)
    for b in range(B):
        Q = V[b] @ V[b].conj().T
        for l in range(L):
            R = sum(p[b, j] * np.outer(h[b, j], h[b, j].conj()) for j in range(L) if j != l)
            R = R + G @ Q @ G.conj().T + np.eye(Nr)
            closed = p[b, l] * (h[b, l].conj() @ np.linalg.inv(R) @ h[b, l]).real
            assert sinr[b, l] == pytest.approx(closed, rel=1e-9)
    # the MMSE receivers achieve it in eq. 12 ...
    np.testing.assert_allclose(uplink_sinr(h, p, W, G, V), sinr, rtol=1e-9)
    # ... and no random receiver does better
    for _ in range(50):
        Wr = cn(B, Nr, L)
        Wr /= np.linalg.norm(Wr, axis=1, keepdims=True)
        assert np.all(uplink_sinr(h, p, Wr, G, V) <= sinr * (1 + 1e-10))


def test_mmse_mode_env_uses_closed_form():
    env = FullDuplexEnv(FullDuplexParams(mmse_receiver=True))
    _, s = env.reset(seed=4, batch=8)
    a = np.random.default_rng(0).uniform(-1, 1, (8, env.action_dim))
    V, p, W = env.map_action(s, a)
    _, sinr = mmse_receiver(s.h, p, env.G, V)
    np.testing.assert_allclose(env.rates(s, a)["sinr_ul"], sinr, rtol=1e-9)
    # better than the same (V, p) with any fixed receiver of the 124-dim layout
    full = FullDuplexEnv(FullDuplexParams())
    b = np.random.default_rng(1).uniform(-1, 1, (8, full.action_dim))
    b[:, :76], b[:, -1] = a[:, :76], a[:, -1]
    assert np.all(full.rates(s, b)["sinr_ul"] <= sinr * (1 + 1e-10))


# ------------------------------------------------------------------------------ water-filling
def test_waterfill_kkt_and_budget():
    rng = np.random.default_rng(2)
    a = np.exp(rng.uniform(-4, 2, (200, 6)))
    a[:20, 0] = 0.0                                                   # a dead user never gets power
    P = rng.uniform(0.1, 5.0, 200)
    pk = waterfill(a, P)
    np.testing.assert_allclose(pk.sum(1), P, rtol=1e-12)
    assert np.all(pk >= 0) and np.all(pk[:20, 0] == 0)
    lam = np.where(pk > 0, a / (1 + a * pk), np.nan)                 # marginal gain, active
    lam_act = np.nanmax(lam, axis=1)
    np.testing.assert_allclose(np.nanmin(lam, axis=1), lam_act, rtol=1e-9)
    assert np.all(np.where(pk > 0, True, a <= lam_act[:, None] * (1 + 1e-9)))


def test_waterfill_against_grid_search():
    for a1, a2, P in [(1.0, 0.5, 2.0), (3.0, 0.1, 0.5), (0.2, 0.25, 10.0)]:
        x = np.linspace(0, P, 200001)
        f = np.log2(1 + a1 * x) + np.log2(1 + a2 * (P - x))
        pk = waterfill(np.array([a1, a2]), P)
        assert pk[0] == pytest.approx(x[f.argmax()], abs=2 * P / 200000)
    np.testing.assert_array_equal(waterfill(np.zeros(3), 1.0), np.zeros(3))


def test_rate_bound_units_by_hand():
    """Table I numbers: a DL user under the BS (d = 100 m) has SNR/W = 6·4.16e-6·100^−3.6/2e-13
    (array gain 6), and 4.16e-6·100^−3.6/2e-13 without the array gain."""
    env = small_env()
    s = env.state_from_positions([[[0.0, 0.0]]], [[[300.0, 0.0]]])
    g_dl = 6 * 4.16e-6 * 100.0 ** -3.6 / SIGMA2_W
    assert g_dl == pytest.approx(6 * 1.3155, abs=6e-4)
    flat = small_env(array_gain=False).state_from_positions([[[0.0, 0.0]]], [[[300.0, 0.0]]])
    assert small_env(array_gain=False).rate_bound(flat)[0] == pytest.approx(
        math.log2(1 + 3.0 * g_dl / 6) + math.log2(1 + gain(300.0, 0.0, n=1)), rel=1e-12)
    exp = math.log2(1 + 3.0 * g_dl) + math.log2(1 + gain(300.0, 0.0))
    assert env.rate_bound(s)[0] == pytest.approx(exp, rel=1e-12)
    assert rate_upper_bound(s.g, s.h, 3.0, 1.0)[0] == pytest.approx(exp, rel=1e-12)


# ------------------------------------------------------------------------------ properties
CONFIGS = [{}, {"power_form": "projection"}, {"mmse_receiver": True},
           {"extended_interference": True, "power_form": "projection"}]
ENVS = [FullDuplexEnv(FullDuplexParams(**kw)) for kw in CONFIGS]


@settings(max_examples=40, deadline=None)
@given(i=st.integers(0, len(ENVS) - 1), seed=st.integers(0, 2 ** 31),
       raw=arrays(np.float64, (3, 125), elements=st.floats(-1.0, 1.0, allow_nan=False)),
       zero_v=st.booleans())
def test_map_action_always_feasible(i, seed, raw, zero_v):
    env = ENVS[i]
    _, s = env.reset(seed=seed, batch=3)
    a = raw[:, :env.action_dim].copy()
    if zero_v:
        a[0, env.action_slices["v_re"]] = a[0, env.action_slices["v_im"]] = 0.0
    V, p, W = env.map_action(s, a)
    P = env.params
    assert np.all((np.abs(V) ** 2).sum((1, 2)) <= P.p_max_w * (1 + 1e-12))
    assert np.all(p >= 0) and np.all(p <= P.p_ul_max_w)
    np.testing.assert_allclose(np.linalg.norm(W, axis=1), 1.0, atol=1e-12)
    if P.power_form == "direction_level":
        # the level sets the power exactly unless the direction Ṽ is zero (then V = 0)
        nz = np.abs(a[:, env.action_slices["v_re"]]).sum(1) + \
            np.abs(a[:, env.action_slices["v_im"]]).sum(1) > 0
        lvl = np.where(nz, (a[:, -1] + 1) / 2 * P.p_max_w, 0.0)
        np.testing.assert_allclose((np.abs(V) ** 2).sum((1, 2)), lvl, rtol=1e-9, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(i=st.integers(0, len(ENVS) - 1), seed=st.integers(0, 2 ** 31),
       raw=arrays(np.float64, (4, 125), elements=st.floats(-1.0, 1.0, allow_nan=False)))
def test_rate_bound_dominates_sum_rate(i, seed, raw):
    env = ENVS[i]
    _, s = env.reset(seed=seed, batch=4)
    C = env.sum_rate(s, raw[:, :env.action_dim])
    assert np.all(C >= 0) and np.all(C <= env.rate_bound(s) + 1e-12)


def test_out_of_range_actions_are_clipped():
    env = FullDuplexEnv()
    _, s = env.reset(seed=1, batch=5)
    a = np.random.default_rng(0).uniform(-3, 3, (5, env.action_dim))
    np.testing.assert_array_equal(env.sum_rate(s, a), env.sum_rate(s, np.clip(a, -1, 1)))


def test_encode_action_roundtrip():
    rng = np.random.default_rng(6)
    for kw in ({}, {"power_form": "projection"}, {"mmse_receiver": True}):
        env = FullDuplexEnv(FullDuplexParams(**kw))
        _, s = env.reset(seed=2, batch=6)
        V = rng.standard_normal((6, 6, 6)) + 1j * rng.standard_normal((6, 6, 6))
        scale = np.array([1.0, 1.0, 1.0, 0.5, 0.2, 0.0]) if not kw else np.ones(6)
        V = V / np.linalg.norm(V, axis=(1, 2), keepdims=True) * np.sqrt(3.0 * scale)[:, None, None]
        p = rng.uniform(0, 1, (6, 4))
        W = rng.standard_normal((6, 6, 4)) + 1j * rng.standard_normal((6, 6, 4))
        V2, p2, W2 = env.map_action(s, env.encode_action(V, p, W))
        np.testing.assert_allclose(V2, V, atol=1e-12)
        np.testing.assert_allclose(p2, p, atol=1e-12)
        if not env.params.mmse_receiver:
            np.testing.assert_allclose(W2, W / np.linalg.norm(W, axis=1, keepdims=True),
                                       atol=1e-12)
    with pytest.raises(ValueError, match="V must satisfy"):
        env.encode_action(V * 2.0, p)


# ------------------------------------------------------------------------------ observations
def test_observation_features_by_hand():
    env = small_env()
    x, y = 120.0, -90.0
    s = env.state_from_positions([[[x, y]]], [[[0.0, 0.0]]])
    obs = env.observe(s)
    assert obs.dtype == np.float32 and obs.shape == (1, env.obs_dim) == (1, 26)
    sin_t = y / math.hypot(x, y)
    n = np.arange(1, 6)
    exp = np.concatenate([[x / 300.0, y / 300.0, math.log10(gain(x, y))],
                          np.cos(np.pi * n * sin_t), np.sin(np.pi * n * sin_t)])
    np.testing.assert_allclose(obs[0, :13], exp, rtol=1e-6, atol=1e-6)
    # user right below the BS: θ = 0, log10 SNR/W ≈ 0.118
    np.testing.assert_allclose(obs[0, 13:16], [0.0, 0.0, math.log10(gain(0.0, 0.0))], atol=1e-6)
    np.testing.assert_allclose(obs[0, 16:21], 1.0, atol=1e-6)
    # scaled: every feature of random drops is O(1) and inside the declared bounds
    big = FullDuplexEnv()
    o, _ = big.reset(seed=0, batch=500)
    assert np.all(np.isfinite(o)) and np.abs(o).max() <= 2.0
    lo, hi = big.observation_bounds()
    assert np.all(o >= lo) and np.all(o <= hi)
    g_edge = math.log10(gain(300.0, 0.0))
    assert lo[2] == pytest.approx(g_edge - 0.01, abs=1e-6)
    assert hi[2] == pytest.approx(math.log10(gain(0.0, 0.0)) + 0.01, abs=1e-6)


# ------------------------------------------------------------------------------ determinism, batch
def run(env, seed, batch, actions, first_copy=0):
    obs, s = env.reset(seed=seed, batch=batch, first_copy=first_copy)
    out = [obs]
    for a in actions:
        obs, rew, term, trunc, info, s = env.step(s, a)
        out += [obs, rew[:, None], info["rate_bound"][:, None], s.dl_xy.reshape(batch, -1)]
    return out


def test_same_seed_same_numbers_and_batch_equals_single_copies():
    env = FullDuplexEnv(FullDuplexParams(speed_mps=20.0))
    rng = np.random.default_rng(0)
    acts = [rng.uniform(-1, 1, (5, env.action_dim)) for _ in range(4)]
    a1, a2 = run(env, 17, 5, acts), run(env, 17, 5, acts)
    for x, y in zip(a1, a2):
        np.testing.assert_array_equal(x, y)
    other = run(env, 18, 5, acts)
    assert not np.array_equal(a1[0], other[0])
    for b in range(5):
        single = run(env, 17, 1, [a[b:b + 1] for a in acts], first_copy=b)
        for x, y in zip(a1, single):
            np.testing.assert_array_equal(x[b:b + 1], y)
    # copies are different drops
    assert not np.array_equal(a1[0][0], a1[0][1])


def test_step_does_not_modify_state_and_truncates():
    env = FullDuplexEnv(FullDuplexParams(episode_steps=3))
    _, s = env.reset(seed=3, batch=2)
    keep = s.copy()
    a = np.zeros((2, env.action_dim))
    flags = []
    for _ in range(4):
        _, _, term, trunc, info, s2 = env.step(s, a)
        if len(flags) == 0:
            np.testing.assert_array_equal(s.dl_xy, keep.dl_xy)
            np.testing.assert_array_equal(s.g, keep.g)
        flags.append((term.copy(), trunc.copy()))
        s = s2
    assert [bool(t[1][0]) for t in flags] == [False, False, True, True]
    assert not any(t[0].any() for t in flags)
    s3 = env.redrop(s, np.array([True, False]))
    assert s3.t.tolist() == [0, 4]
    assert not np.array_equal(s3.dl_xy[0], s.dl_xy[0])
    np.testing.assert_array_equal(s3.dl_xy[1], s.dl_xy[1])


def test_mobility_stays_in_cell_and_moves():
    P = FullDuplexParams(speed_mps=40.0, step_s=1.0, min_dist_m=30.0, episode_steps=10 ** 6)
    env = FullDuplexEnv(P)
    _, s = env.reset(seed=8, batch=64)
    a = np.zeros((64, env.action_dim))
    moved, r2 = [], []
    for _ in range(150):
        prev = np.concatenate([s.dl_xy, s.ul_xy], axis=1)
        _, _, _, _, _, s = env.step(s, a)
        xy = np.concatenate([s.dl_xy, s.ul_xy], axis=1)
        r = np.linalg.norm(xy, axis=-1)
        assert r.max() <= 300.0 + 1e-9 and r.min() >= 30.0 - 1e-9
        step = np.linalg.norm(xy - prev, axis=-1)
        assert np.all((np.abs(step - 40.0) < 1e-9) | (step == 0.0))   # a full step or none
        moved.append(np.mean(step > 0))
        r2.append(np.mean(r ** 2))
    assert np.mean(moved) > 0.8                   # only steps across the boundary are refused
    # the uniform drop is stationary: E r² = (300² + 30²)/2 throughout
    assert np.mean(r2) == pytest.approx((300.0 ** 2 + 30.0 ** 2) / 2, rel=0.03)


def test_drop_is_uniform_in_area():
    env = FullDuplexEnv(FullDuplexParams(min_dist_m=50.0))
    _, s = env.reset(seed=0, batch=4000)
    r = np.linalg.norm(np.concatenate([s.dl_xy, s.ul_xy], 1), axis=-1).ravel()
    assert r.min() >= 50.0 and r.max() <= 300.0
    # P(r ≤ 175) = (175² − 50²)/(300² − 50²)
    assert np.mean(r <= 175.0) == pytest.approx((175 ** 2 - 50 ** 2) / (300 ** 2 - 50 ** 2),
                                                abs=0.01)


# ------------------------------------------------------------------------------ adapters, views
def test_gymnasium_check_env():
    from gymnasium.utils.env_checker import check_env

    env = FullDuplexGymEnv(FullDuplexParams(episode_steps=5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=3)
    obs2, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs, obs2)
    o, r, te, tr, inf = env.step(env.action_space.sample())
    assert isinstance(r, float) and r == inf["sum_rate"] and r <= inf["rate_bound"]
    assert inf["rate_dl"].shape == (6,)


def test_policy_view_information_contract():
    env = FullDuplexEnv()
    _, s = env.reset(seed=0, batch=2)
    assert env.policy_view(s, {"global_csi"})["csi"] is s
    with pytest.raises(KeyError, match="global_csi"):
        env.policy_view(s, set())["csi"]


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("kw,field", [
    ({"n_dl": 0}, "n_dl"), ({"n_ul": -1}, "n_ul"), ({"n_tx": 1000}, "n_tx"),
    ({"n_rx": 2.5}, "n_rx"), ({"p_max_w": -1.0}, "p_max_w"), ({"p_ul_max_w": 0.0}, "p_ul_max_w"),
    ({"noise_dbm": float("nan")}, "noise_dbm"), ({"rho0": -1e-6}, "rho0"),
    ({"alpha": 0.0}, "alpha"), ({"cell_radius_m": 0.0}, "cell_radius_m"),
    ({"clutter_angles_deg": (10.0, 100.0)}, "clutter_angles_deg"),
    ({"clutter_phases_deg": (0.0,)}, "clutter_phases_deg"),
    ({"speed_mps": 400.0}, "speed_mps"), ({"episode_steps": 0}, "episode_steps"),
    ({"min_dist_m": 300.0}, "min_dist_m"), ({"power_form": "abs"}, "power_form"),
    ({"mmse_receiver": "yes"}, "mmse_receiver"),
    ({"bs_height_m": 0.0}, "bs_height_m"),
])
def test_bad_params_name_the_field(kw, field):
    with pytest.raises(ValueError, match=field):
        FullDuplexParams(**kw)


def test_bad_actions_and_calls():
    env = FullDuplexEnv()
    _, s = env.reset(seed=0, batch=2)
    a = np.zeros((2, env.action_dim))
    for bad in (np.zeros((2, env.action_dim - 1)), np.zeros((3, env.action_dim)),
                np.zeros(env.action_dim)):
        with pytest.raises(ValueError, match="action"):
            env.step(s, bad)
    a[1, 3] = np.nan
    with pytest.raises(ValueError, match="action"):
        env.step(s, a)
    a[1, 3] = np.inf
    with pytest.raises(ValueError, match="action"):
        env.sum_rate(s, a)
    with pytest.raises(ValueError, match="seed"):
        env.reset(seed=-1)
    with pytest.raises(ValueError, match="batch"):
        env.reset(seed=0, batch=0)
    with pytest.raises(ValueError, match="ul_xy"):
        env.state_from_positions(np.zeros((1, 6, 2)), np.zeros((1, 3, 2)))


@pytest.mark.parametrize("n_tx,n_rx", [(6, 6), (4, 8)])
def test_array_gain_scales_channel_power_by_array_size(n_tx, n_rx):
    """``array_gain=True``: ‖g‖² = N_t ρ0 d^−α/σ², ‖h‖² = N_r ρ0 d^−α/σ²; False: no factor N."""
    for flag, kt, kr in ((True, n_tx, n_rx), (False, 1, 1)):
        env = small_env(n_tx=n_tx, n_rx=n_rx, array_gain=flag)
        s = env.state_from_positions([[[120.0, -40.0]]], [[[-10.0, 250.0]]])
        assert (np.abs(s.g[0, 0]) ** 2).sum() == pytest.approx(kt * gain(120.0, -40.0, 1),
                                                                rel=1e-12)
        assert (np.abs(s.h[0, 0]) ** 2).sum() == pytest.approx(kr * gain(-10.0, 250.0, 1),
                                                                rel=1e-12)
        lo, hi = env.observation_bounds()
        obs = env.observe(s)[0]
        assert np.all(obs >= lo) and np.all(obs <= hi)

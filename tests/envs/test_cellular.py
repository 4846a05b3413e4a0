"""Cellular env: deterministic-service queueing oracle, SINR/rate by hand, fading statistics,
observations, conservation, determinism, bad input."""
import numpy as np
import pytest

from radiorl.envs.cellular import CellularEnv, CellularParams
from radiorl.envs.scenarios import make_env
from radiorl.phy import dbm_to_watt, lte_macro_pathloss_db


def single_link(packet_bits, load_pps, batch=1, **kw):
    p = CellularParams(ap_xy=((0.0, 0.0),), device_xy=((100.0, 0.0),), ap_of_device=(0,),
                       n_subbands=1, fading="none", packet_bits=packet_bits, load_pps=load_pps,
                       episode_slots=10 ** 6, **kw)
    return CellularEnv(p, batch)


def slot_bits(env):
    # 100 m: SNR = 23 - 90.5 + 114 = 46.5 dB > 30 dB cap -> capped spectral efficiency
    return np.floor(env.params.bandwidth_hz * env.params.slot_s * np.log2(1001.0))


@pytest.mark.parametrize("D,a", [(1, 0.5), (2, 0.2), (2, 0.35)])
def test_single_link_deterministic_service_oracle(D, a):
    """Poisson(a) packets per slot, each needing exactly D slots of service:
    mean delay = E[V] + D·a/2 + D, E[V] = (D²(a + a²) − D a) / (2 (1 − D a))
    (work-conserving discrete queue; V = work ahead at slot start)."""
    env0 = single_link(1.0, 1.0)
    bits = slot_bits(env0)
    env = single_link(D * bits, a / 0.02, batch=100)
    obs, s = env.reset(seed=11)
    act = {"device": np.ones((100, 1, 1), np.int64), "power_level": np.full((100, 1, 1), 5)}
    d = []
    for t in range(3000):
        obs, r, te, tr, info, s = env.step(s, act)
        q = s.queues
        np.testing.assert_array_equal(q.n_generated, q.n_done + q.n_dropped + q.backlog_packets())
        if t >= 300:
            d.append(info["deliveries"].delay_slots)
            # the link is always capped: served bits are the slot capacity or the backlog
            assert np.all(info["served_bits"] <= bits)
    d = np.concatenate(d)
    EV = (D * D * (a + a * a) - D * a) / (2 * (1 - D * a))
    theory = EV + D * a / 2 + D
    se = d.std() / np.sqrt(len(d)) * 4
    assert d.mean() == pytest.approx(theory, abs=max(5 * se, 0.01))


def test_sinr_and_bits_by_hand():
    ap = ((0.0, 0.0), (1000.0, 0.0))
    dev = ((200.0, 0.0), (700.0, 0.0))
    p = CellularParams(ap_xy=ap, device_xy=dev, ap_of_device=(0, 1), n_subbands=2,
                       fading="none", load_pps=1e-6, packet_bits=1e9, episode_slots=10)
    env = CellularEnv(p, 1)
    obs, s = env.reset(seed=0)
    s.queues.enqueue(np.array([[1, 1]]), 0)
    s.zeta_bits = s.queues.backlog_bits()
    P0, P1 = 0.1, 0.05
    act = {"device": np.array([[[1, 1]], [[1, 0]]]).reshape(1, 2, 2),
           "power_w": np.array([[[P0, P0], [P1, 0.0]]])}
    obs, r, te, tr, info, s = env.step(s, act)
    g = lambda d: 10 ** (-lte_macro_pathloss_db(d) / 10)   # noqa: E731
    N0 = dbm_to_watt(-114.0)
    # subband 0: both APs on; subband 1: only AP 0
    sinr0_h0 = g(200) * P0 / (g(800) * P1 + N0)
    sinr1_h0 = g(300) * P1 / (g(700) * P0 + N0)
    sinr0_h1 = g(200) * P0 / N0
    np.testing.assert_allclose(info["sinr"][0, 0], [sinr0_h0, sinr1_h0], rtol=1e-5)
    np.testing.assert_allclose(info["sinr"][0, 1, 0], sinr0_h1, rtol=1e-5)
    cap = 1000.0
    WT = 20e6 * 0.02
    b0 = np.floor(WT * (np.log2(1 + min(sinr0_h0, cap)) + np.log2(1 + min(sinr0_h1, cap))))
    b1 = np.floor(WT * np.log2(1 + min(sinr1_h0, cap)))
    np.testing.assert_allclose(info["served_bits"][0], [b0, b1], rtol=1e-6)
    # delayed measurements now in the observation of the next slot (paper mode)
    f = env.device_features(s)
    assert f[0, 0, 1] == pytest.approx(10 * np.log10(g(200)), abs=1e-3)        # direct gain dB
    assert f[0, 0, 3] == pytest.approx(10 * np.log10(P0) + 30, abs=1e-3)       # power dBm
    assert f[0, 1, 4] == pytest.approx(env.params.off_power_dbm)               # dev 1 off on h1
    assert f[0, 0, 5] == pytest.approx(10 * np.log10(g(800) * P1 + N0) + 30, abs=1e-3)
    assert f[0, 0, 7] == pytest.approx(np.log2(1 + min(sinr0_h0, cap)), rel=1e-5)


def test_fading_power_and_correlation():
    env = make_env("cellular-19-hex", "light", batch=4)
    obs, s = env.reset(seed=0)
    act = {"device": np.zeros((4, 19, 3), np.int64), "power_level": np.zeros((4, 19, 3), np.int64)}
    prev = s.fade_re + 1j * s.fade_im
    p_acc, c_acc, n = 0.0, 0.0, 0
    for _ in range(60):
        obs, r, te, tr, info, s = env.step(s, act)
        cur = s.fade_re + 1j * s.fade_im
        p_acc += np.mean(np.abs(cur) ** 2)
        c_acc += np.mean(cur * np.conj(prev)).real
        prev = cur
        n += 1
        np.testing.assert_allclose(s.gain, env.alpha * np.abs(cur) ** 2, rtol=1e-5)
    assert p_acc / n == pytest.approx(1.0, abs=0.01)
    assert c_acc / n == pytest.approx(0.6425, abs=0.01)


def test_reference_compat_preset():
    env = make_env("cellular-19-random", "light", 1, reference_compat=True)
    assert env.params.bandwidth_hz == 10e6 and env.params.fading_power == pytest.approx(4 / np.pi)
    assert env.params.levels_dbm().tolist() == [0.0, 5.75, 11.5, 17.25, 23.0]
    obs, s = env.reset(0)
    assert obs.shape[-1] == env.obs_dim and env.n_features == 1 + 2 * 3


def test_random_deployment_and_neighbours():
    env = make_env("cellular-19-random", "light", 1)
    counts = np.bincount(env.ap_of_device, minlength=19)
    assert counts.min() >= 2 and counts.max() <= 5 and counts.sum() == 57
    d = env.dist_m[:, np.arange(57)]
    assert np.all(env.ap_of_device == d.argmin(axis=0))          # nearest AP
    assert d.min() >= 35.0
    adj = env.neighborhood & ~np.eye(19, dtype=bool)
    assert np.array_equal(adj, adj.T)
    hexe = make_env("cellular-19-hex", "light", 1)
    assert np.bincount(hexe.ap_of_device).tolist() == [3] * 19


def test_determinism_and_paired_channels():
    def run(seed, level):
        env = make_env("cellular-19-random", "heavy", 1)
        obs, s = env.reset(seed)
        act = {"device": np.ones((1, 19, 3), np.int64), "power_level": np.full((1, 19, 3), level)}
        gains, arr = [], []
        for _ in range(30):
            gains.append(s.gain.copy())
            obs, r, te, tr, info, s = env.step(s, act)
            arr.append(info["arrivals"].copy())
        return np.array(gains), np.array(arr), obs
    g1, a1, o1 = run(3, 5)
    g2, a2, o2 = run(3, 5)
    g3, a3, _ = run(3, 0)
    np.testing.assert_array_equal(o1, o2)
    np.testing.assert_array_equal(g1, g3)
    np.testing.assert_array_equal(a1, a3)


def test_bad_inputs():
    env = make_env("cellular-19-hex", "light", 1)
    obs, s = env.reset(0)
    K, H = 19, 3
    good = np.ones((1, K, H), np.int64)
    with pytest.raises(ValueError, match="power_w"):
        env.step(s, {"device": good, "power_w": np.full((1, K, H), -0.1)})
    with pytest.raises(ValueError, match="power_w"):
        env.step(s, {"device": good, "power_w": np.full((1, K, H), np.nan)})
    with pytest.raises(ValueError, match="power_w"):
        env.step(s, {"device": good, "power_w": np.full((1, K, H), 1.0)})     # > 23 dBm
    with pytest.raises(ValueError, match="power_level"):
        env.step(s, {"device": good, "power_level": np.full((1, K, H), 6)})
    with pytest.raises(ValueError, match=r"shape \(B, K, H\)"):
        env.step(s, {"device": np.ones((1, K)), "power_level": good})
    with pytest.raises(ValueError, match=r"\[0, \|N_k\|\]"):
        env.step(s, {"device": good * 4, "power_level": good})
    with pytest.raises(ValueError, match="p_max_dbm"):
        CellularEnv(CellularParams(p_max_dbm=float("nan")), 1)
    with pytest.raises(ValueError, match="ap_of_device"):
        CellularEnv(CellularParams(ap_xy=((0, 0),), device_xy=((10, 0),), ap_of_device=(1,)), 1)
    with pytest.raises(ValueError, match="ap_of_device"):
        CellularEnv(CellularParams(ap_xy=((0, 0),), device_xy=((10, 0),), ap_of_device=(-1,)), 1)
    with pytest.raises(ValueError, match="serve no device"):
        CellularEnv(CellularParams(ap_xy=((0, 0), (5, 5)), device_xy=((10, 0),),
                                   ap_of_device=(0,)), 1)
    with pytest.raises(ValueError, match="load"):
        make_env("cellular-19-hex", -3.0)
    with pytest.raises(ValueError, match="load"):
        make_env("cellular-19-hex", "extreme")
    with pytest.raises(ValueError, match="valid scenarios"):
        make_env("cellular-7")


def test_observe_kernel_equals_readable_features():
    """The numba observation gather equals the plain numpy features gathered by obs_index."""
    for rc in (False, True):
        env = make_env("cellular-19-random", "heavy", 3, reference_compat=rc)
        obs, s = env.reset(1)
        act = {"device": np.ones((3, 19, 3), np.int64), "power_level": np.full((3, 19, 3), 3)}
        for _ in range(4):
            obs, r, te, tr, info, s = env.step(s, act)
        f = env.device_features(s)
        f = np.concatenate([f, np.zeros((3, 1, f.shape[2]), np.float32)], axis=1)
        np.testing.assert_allclose(obs, f[:, env.obs_index].reshape(3, 19, -1), atol=1e-4)
        assert np.all(obs.reshape(3, 19, -1, env.n_features)[:, ~(env.obs_index < 57)] == 0)


def test_observation_carries_previous_slot_csi_only():
    """Learned agents see slot t−1 measurements; the genie view holds slot t's channel."""
    env = make_env("cellular-19-hex", "medium", 1)
    obs, s = env.reset(2)
    act = {"device": np.ones((1, 19, 3), np.int64), "power_level": np.full((1, 19, 3), 5)}
    prev_gain = s.gain.copy()
    obs, r, te, tr, info, s = env.step(s, act)
    f = env.device_features(s)                      # features of the obs for slot t
    n = np.arange(57)
    direct_prev = prev_gain[0][:, env.ap_of_device, n]          # [H, N] slot t-1
    direct_now = s.gain[0][:, env.ap_of_device, n]              # [H, N] slot t
    np.testing.assert_allclose(f[0, :, 1:4], 10 * np.log10(direct_prev.T), atol=1e-3)
    assert np.abs(f[0, :, 1:4] - 10 * np.log10(direct_now.T)).max() > 0.1
    view = env.policy_view(s, {"global_csi"})
    np.testing.assert_array_equal(view["csi"], s.gain)


@pytest.mark.parametrize("deployment,K,N,H", [("hex", 7, 14, 2), ("random", 37, 111, 4),
                                              ("hex", 1, 3, 1)])
def test_arbitrary_sizes(deployment, K, N, H):
    p = CellularParams(deployment=deployment, n_aps=K, n_devices=N, n_subbands=H,
                       episode_slots=20)
    env = CellularEnv(p, 2)
    obs, s = env.reset(0)
    assert obs.shape == (2, K, env.obs_dim) and env.n_devices == N
    act = {"device": np.ones((2, K, H), np.int64), "power_level": np.full((2, K, H), 2)}
    for _ in range(5):
        obs, r, te, tr, info, s = env.step(s, act)
    assert r.shape == (2, K)


def test_observation_caps_give_one_layout_for_networks_of_any_size():
    from radiorl.envs.scenarios import make_env
    envs = [make_env(n, "medium", 1, obs_max_neighbors=6, obs_max_devices=6)
            for n in ("cellular-19-random", "cellular-37-random", "cellular-37-hex")]
    assert len({e.obs_dim for e in envs}) == 1
    assert all(e.max_devices == 6 and e.dev_table.shape[1] == 7 for e in envs)
    e = make_env("cellular-19-hex", "medium", 1, obs_max_neighbors=1, obs_max_devices=3)
    for k in range(e.n_agents):
        assert len(e.obs_neighbors[k]) == min(1, len(e.neighbors[k]))
        if len(e.neighbors[k]):
            assert e.obs_neighbors[k][0] in e.neighbors[k]
    # rewards still use the whole neighbourhood
    full = make_env("cellular-19-hex", "medium", 1)
    assert np.array_equal(e.reward_matrix, full.reward_matrix)
    import pytest
    with pytest.raises(ValueError, match="obs_max_devices"):
        make_env("cellular-19-random", "medium", 1, obs_max_devices=2)



def test_cellular_restart_copies():
    from radiorl.envs.scenarios import make_env
    env = make_env("cellular-19-hex", "heavy", 2)
    obs, st = env.reset(0)
    idle = {"device": np.zeros((2, 19, 3), int), "power_level": np.zeros((2, 19, 3), int)}
    for _ in range(20):
        obs, r, te, tr, info, st = env.step(st, idle)
    env.restart_copies(st, np.array([False, True]))
    assert st.zeta_bits[1].sum() == 0 and st.zeta_bits[0].sum() > 0
    q = st.queues
    assert np.array_equal(q.n_generated, q.n_done + q.n_dropped + q.backlog_packets())

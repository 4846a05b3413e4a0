"""MF-TDMA ad hoc network: oracles of specs/oracles.md (C.2, C.5, C.6), the spec's worked
examples, routing on hand-built graphs, mean field, conservation and bad input."""
import numpy as np
import pytest

from radiorl.envs.adhoc_tdma import (AdhocParams, AdhocTDMAEnv, _allocate, normalize_requests)
from radiorl.envs.scenarios import get_scenario, make_env
from radiorl.phy.fastrng import new_streams
from radiorl.schedulers.policies import make_policy


def run(env, policy_fn, frames, seed=0):
    obs, st = env.reset(seed)
    infos = []
    for _ in range(frames):
        obs, rew, te, tr, info, st = env.step(st, policy_fn(obs, st))
        infos.append(info)
    return st, infos


def link_env(rate, dist_km=1.0, request=1, batch=16, frames=4000, **kw):
    p = AdhocParams(n_nodes=2, n_high=0, rates_pps=(rate, 0.0), positions=((1.0, 1.0),
                    (1.0 + dist_km, 1.0)), assignment="deterministic", queue_capacity=100_000,
                    ttl_ms=1e9, episode_frames=frames, **kw)
    env = AdhocTDMAEnv(p, batch)
    act = np.tile(np.array([[request, 0]]), (batch, 1))
    return env, act


def mean_delay(infos):
    d = np.concatenate([i["delivery_delay_ms"] for i in infos])
    return d.mean(), len(d)


# --------------------------------------------------------------------------- C.2
@pytest.mark.parametrize("rate, channels, req, expected", [
    (100.0, 4, 1, 5.50), (160.0, 4, 1, 13.00), (1000.0, 1, 10, 1.00), (1600.0, 1, 10, 1.75)])
def test_slotted_tdma_single_link_delay_oracle(rate, channels, req, expected):
    """Oracle C.2: T/2 + T·ρ/(2(1−ρ)) + T_tx with one RB per period at a fixed phase."""
    env, act = link_env(rate, request=req, n_channels=channels, fading="off")
    st, infos = run(env, lambda o, s: act, 4000)
    d, n = mean_delay(infos)
    assert n > 20_000
    assert d == pytest.approx(expected, rel=0.03)
    assert st.dropped.sum() == 0


# --------------------------------------------------------------------------- C.6
def test_retry_limit_drop_probability_and_attempts():
    """Limited RF at 3.6 km: p_s = 0.8119; drop = (1−p)^4 = 1.25e-3; attempts = 1.230."""
    env, act = link_env(500.0, dist_km=3.6, request=10, batch=32, frames=2500, rf="limited")
    obs, st = env.reset(3)
    assert st.link_ps[0, 0, 1] == pytest.approx(0.8119, abs=2e-4)
    tx = drops = deliv = 0
    for _ in range(2500):
        obs, rew, te, tr, info, st = env.step(st, act)
        tx += info["transmissions"].sum()
        drops += info["dropped"]["retry"].sum()
        deliv += info["served"].sum()
    done = drops + deliv
    assert done > 150_000
    assert tx / done == pytest.approx(1.230, abs=0.006)
    assert drops / done == pytest.approx(1.25e-3, rel=0.3)


def test_link_budget_table_of_the_spec():
    ideal, lim = AdhocParams(rf="ideal"), AdhocParams(rf="limited")
    assert ideal.noise_dbm == pytest.approx(-104.0, abs=0.02)
    assert [round(ideal.mean_snr_db(d), 1) for d in (1, 2, 3.6)] == [55.0, 49.0, 43.9]
    assert [round(lim.mean_snr_db(d), 1) for d in (1, 2, 3.6)] == [23.9, 17.9, 12.8]
    assert [round(lim.success_prob(d), 3) for d in (1, 2, 3.6)] == [0.984, 0.938, 0.812]
    assert ideal.success_prob(3.6) == pytest.approx(0.9998, abs=1e-4)
    assert AdhocParams(rf="limited", fading="off").success_prob(3.6) == 1.0


def test_limited_rf_failure_rate_per_link_matches_link_budget():
    env, act = link_env(400.0, dist_km=2.0, request=10, batch=16, frames=1500, rf="limited")
    st, infos = run(env, lambda o, s: act, 1500)
    tx = sum(i["transmissions"].sum() for i in infos)
    fail = sum(i["failures"].sum() for i in infos)
    assert fail / tx == pytest.approx(1 - 0.938, abs=0.004)


# --------------------------------------------------------------------------- A.3.6
@pytest.mark.parametrize("req, expected", [([10, 20, 30, 40], [4, 8, 12, 16]),
                                           ([13, 13, 13, 13], [10, 10, 10, 10]),
                                           ([7, 7, 7], [7, 7, 7])])
def test_normalization_worked_examples(req, expected):
    assert normalize_requests(req, 40, np.random.default_rng(0)).tolist() == expected


def test_normalization_random_tie_between_equal_remainders():
    seen = {tuple(normalize_requests([5, 30, 30], 40, np.random.default_rng(s)))
            for s in range(40)}
    assert seen == {(3, 19, 18), (3, 18, 19)}


def _popcount(x):
    return bin(int(x)).count("1")


def test_global_assignment_partitions_the_rbs():
    rng = np.random.default_rng(1)
    B, N = 50, 9
    req = rng.integers(0, 41, size=(B, N))
    owned, grant = np.zeros((B, N), np.uint64), np.zeros((B, N), np.int64)
    _allocate(req, 40, True, False, np.zeros((B, N), np.int64), np.zeros((B, N, 1), np.int64),
              new_streams(rng, B), owned, grant)
    for b in range(B):
        assert [_popcount(x) for x in owned[b]] == grant[b].tolist()
        union = 0
        for x in owned[b]:
            assert union & int(x) == 0                     # each RB owned at most once
            union |= int(x)
        s = req[b].sum()
        assert grant[b].sum() == min(s, 40)
        if s <= 40:
            assert (grant[b] == req[b]).all()
        else:                                              # largest remainder: floor or floor+1
            exact = req[b] * 40 / s
            assert np.all(grant[b] >= np.floor(exact)) and np.all(grant[b] <= np.floor(exact) + 1)


def test_local_reuse_never_shares_an_rb_within_two_hops():
    env = make_env("adhoc-60", "medium", batch=2)
    obs, st = env.reset(0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        obs, rew, te, tr, info, st = env.step(st, rng.integers(0, 41, size=(2, 60)))
        owned = env._owned
        for b in range(2):
            h = st.hops[b]
            for i in range(60):
                for j in range(i + 1, 60):
                    if 1 <= h[i, j] <= 2:
                        assert int(owned[b, i]) & int(owned[b, j]) == 0
            # spatial reuse happens: more RBs granted than one frame has
            assert info["grants"][b].sum() > 40


# --------------------------------------------------------------------------- routing
def route(positions, src, dst, radius=3.6):
    positions = [(x + 5.0, y + 5.0) for x, y in positions]
    p = AdhocParams(n_nodes=len(positions), n_high=0, positions=tuple(map(tuple, positions)),
                    radius_km=radius, area_km=20.0)
    env = AdhocTDMAEnv(p)
    _, st = env.reset(0)
    path, n = [src], src
    while n != dst:
        n = int(st.next_hop[0, n, dst])
        path.append(n)
    return path, st


def test_routing_line_relays_hop_by_hop():
    path, st = route([(0, 0), (3, 0), (6, 0), (9, 0)], 0, 3)
    assert path == [0, 1, 2, 3]
    assert st.hops[0, 0, 3] == 3 and st.hops[0, 3, 0] == 3
    assert route([(0, 0), (3, 0), (6, 0), (9, 0)], 3, 0)[0] == [3, 2, 1, 0]


def test_routing_prefers_min_hops_then_shorter_length_then_lower_id():
    # 0 -> 3 has two 2-hop paths, via 1 (shorter) or via 2 (longer): via 1 wins although its id
    # is lower anyway; swap ids so that the shorter one has the higher id.
    pos = [(0, 0), (3.0, 1.5), (2.0, 0.2), (4.0, 0.0)]   # via 2: 2.01 + 2.01; via 1: 3.35 + 1.80
    path, st = route(pos, 0, 3)
    assert path == [0, 2, 3]
    # exact tie in length -> lower next-hop id
    pos = [(0, 0), (2, 1), (2, -1), (4, 0)]
    assert route(pos, 0, 3)[0] == [0, 1, 3]
    # a direct link beats a shorter two-hop detour (min hops first)
    assert route([(0, 0), (1.7, 0.1), (3.5, 0)], 0, 2)[0] == [0, 2]


def test_disconnected_fixed_topology_is_rejected_when_connectivity_required():
    p = AdhocParams(n_nodes=2, n_high=0, positions=((0, 0), (9, 9)))
    with pytest.raises(ValueError, match="disconnected"):
        AdhocTDMAEnv(p).reset(0)
    AdhocTDMAEnv(AdhocParams(n_nodes=2, n_high=0, positions=((0, 0), (9, 9)),
                             connectivity="any")).reset(0)


@pytest.mark.parametrize("name", ["adhoc-8-2:6", "adhoc-9-4:5"])
def test_random_topologies_are_connected_and_differ_per_seed(name):
    env = make_env(name, "medium", batch=8)
    _, st0 = env.reset(0)
    _, st1 = env.reset(1)
    assert (st0.hops >= 0).all()                          # connected: every pair reachable
    assert not np.allclose(st0.positions, st1.positions)
    assert len({st0.positions[b].tobytes() for b in range(8)}) == 8


# --------------------------------------------------------------------------- A.3.8
def test_mean_field_is_the_neighbours_mean():
    env = make_env("adhoc-9-4:5", "heavy", batch=3)
    pol = make_policy("random", env)
    ps = pol.reset(env, 3, 0)
    obs, st = env.reset(5)
    for _ in range(30):
        a, ps = pol.act(obs, env.policy_view(st, pol.requires), ps)
        obs, rew, te, tr, info, st = env.step(st, a)
        for b in range(3):
            topo = env.topology(st, b)
            for i, nb in enumerate(topo["neighbors"]):
                assert np.allclose(info["mf_obs"][b, i], obs[b, nb].mean(axis=0))


def test_observation_fields_and_reward_definition():
    env = make_env("adhoc-8-4:4", "medium", batch=2)
    obs, st = env.reset(0)
    last = np.zeros((2, 8))
    for _ in range(50):
        obs, rew, te, tr, info, st = env.step(st, np.full((2, 8), 5))
        q = st.queues.size
        assert np.array_equal(obs[..., 0], q[..., 0]) and np.array_equal(obs[..., 2], q[..., 1])
        assert np.all(obs[..., 1] >= obs[..., 0]) and np.all(obs[..., 3] >= obs[..., 2])
        got = info["received"] > 0
        exp = np.where(got, -info["received_delay_ms"], last)
        assert np.allclose(rew, exp, atol=1e-4)
        last = rew
        # per-destination mean delay from the delivery list
        d = info["deliveries"]
        for b in range(2):
            for n in range(8):
                sel = (d.batch == b) & (d.device == n)
                if sel.any():
                    assert -rew[b, n] == pytest.approx(info["delivery_delay_ms"][sel].mean(),
                                                       rel=1e-5)


# --------------------------------------------------------------------------- C.5
@pytest.mark.parametrize("name, load, policy", [("adhoc-9-4:5-limited", "heavy", "random"),
                                                ("adhoc-8-2:6", "medium", "mixture")])
def test_conservation_every_frame(name, load, policy):
    env = make_env(name, load, batch=4, ttl_ms=60.0)
    pol = make_policy(policy, env)
    ps = pol.reset(env, 4, 1)
    obs, st = env.reset(2)
    causes = np.zeros(3, np.int64)
    for _ in range(300):
        a, ps = pol.act(obs, env.policy_view(st, pol.requires), ps)
        obs, rew, te, tr, info, st = env.step(st, a)
        queued = info["backlog_packets"].sum(axis=1)
        assert np.array_equal(info["generated_total"],
                              info["delivered_total"] + info["dropped_total"] + queued)
        causes += np.array([info["dropped"][c].sum() for c in ("overflow", "retry", "ttl")])
    if policy == "random":
        assert (causes > 0).all(), causes                   # every loss cause is exercised


def test_littles_law_lossless():
    """Slot-sampled queue content = delivered rate × (mean delay − T_s/2) (packets join at the
    first slot start after generation, half a slot later on average)."""
    env = make_env("adhoc-9-2:7", "light", batch=8)
    pol = make_policy("load-aware", env)
    ps = pol.reset(env, 8, 0)
    obs, st = env.reset(11)
    qint, delays = 0.0, []
    frames = 3000
    for _ in range(frames):
        a, ps = pol.act(obs, env.policy_view(st, pol.requires), ps)
        obs, rew, te, tr, info, st = env.step(st, a)
        qint += info["queue_packet_ms"].sum()
        delays.append(info["delivery_delay_ms"])
    assert st.dropped.sum() == 0
    d = np.concatenate(delays)
    T = frames * 5.0 * 8
    lam = len(d) / T
    assert qint / T == pytest.approx(lam * (d.mean() - 0.25), rel=0.02)


@pytest.mark.parametrize("name", ["adhoc-8-2:6", "adhoc-8-4:4", "adhoc-9-2:7", "adhoc-9-4:5"])
def test_ideal_rf_light_load_is_lossless(name):
    env = make_env(name, "light", batch=4)
    pol = make_policy("load-aware", env)
    ps = pol.reset(env, 4, 0)
    obs, st = env.reset(0)
    for _ in range(1000):
        a, ps = pol.act(obs, env.policy_view(st, pol.requires), ps)
        obs, rew, te, tr, info, st = env.step(st, a)
    assert st.dropped.sum() == 0 and st.delivered.sum() > 0


def test_ttl_drops_old_packets():
    env, act = link_env(800.0, request=1, batch=2, frames=200)
    env = env.with_params(ttl_ms=20.0, fading="off")
    st, infos = run(env, lambda o, s: act, 200)
    assert sum(i["dropped"]["ttl"].sum() for i in infos) > 0
    d = np.concatenate([i["delivery_delay_ms"] for i in infos])
    assert d.max() <= 20.0 + 0.5 + 1e-9


def test_half_duplex_blocks_reception_while_transmitting():
    p = AdhocParams(n_nodes=2, n_high=0, rates_pps=(400.0, 400.0),
                    positions=((1, 1), (2, 1)), assignment="deterministic", fading="off",
                    episode_frames=100)
    act = np.array([[1, 1]])                              # RB 0 and RB 1: the same slot
    for hd, ok in ((False, True), (True, False)):
        env = AdhocTDMAEnv(p if not hd else AdhocParams(**{**p.__dict__, "half_duplex": True}))
        st, infos = run(env, lambda o, s: act, 100)
        fails = sum(i["failures"].sum() for i in infos)
        tx = sum(i["transmissions"].sum() for i in infos)
        if ok:
            assert fails == 0 and tx > 100
        else:    # fails whenever the receiver also transmits (it almost always has a packet)
            assert fails / tx > 0.9


def test_mobility_moves_nodes_and_rebuilds_routes():
    env = make_env("adhoc-8-4:4", "medium", batch=2, speed_meaning="mobility",
                   speed_high_mps=2000.0)
    obs, st = env.reset(0)
    p0, h0 = st.positions.copy(), st.hops.copy()
    for _ in range(200):
        obs, rew, te, tr, info, st = env.step(st, np.full((2, 8), 5))
        queued = info["backlog_packets"].sum(axis=1)
        assert np.array_equal(info["generated_total"],
                              info["delivered_total"] + info["dropped_total"] + queued)
    moved = np.linalg.norm(st.positions - p0, axis=-1)
    assert (moved[:, :4] > 1.0).all()                     # high-speed nodes moved > 1 km
    assert not np.array_equal(st.hops, h0)


# --------------------------------------------------------------------------- determinism
def test_seeded_determinism_and_paired_arrivals():
    def trace(policy, seed):
        env = make_env("adhoc-9-4:5-limited", "medium", batch=2)
        pol = make_policy(policy, env)
        ps = pol.reset(env, 2, 0)
        obs, st = env.reset(seed)
        out = []
        for _ in range(100):
            a, ps = pol.act(obs, env.policy_view(st, pol.requires), ps)
            obs, rew, te, tr, info, st = env.step(st, a)
            out.append((info["arrivals"].copy(), rew.copy(), info["delivery_delay_ms"].copy()))
        return out, st.positions
    a1, p1 = trace("equal", 4)
    a2, p2 = trace("equal", 4)
    b, p3 = trace("random", 4)
    assert all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a1, a2))
    assert np.array_equal(p1, p3)                          # same topology for every policy
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a1, b))   # paired arrivals
    assert not all(np.array_equal(x[1], y[1]) for x, y in zip(a1, b))


def test_large_network_keeps_the_density_and_routes_within_three_hops():
    env = make_env("adhoc-1000", "medium", batch=1)
    obs, st = env.reset(0)
    side = env.params.area_km
    assert 1000 / side ** 2 == pytest.approx(9 / 100)     # the paper's density
    assert 3.0 < st.deg.mean() < 4.5
    h = st.hops[0]
    for i in range(1000):
        d = st.dest[0, i, :st.dest_cnt[0, i]]
        assert np.all((h[i, d] >= 1) & (h[i, d] <= 3))
        assert st.dest_cnt[0, i] == np.sum((h[i] >= 1) & (h[i] <= 3))
    for _ in range(3):
        obs, rew, te, tr, info, st = env.step(st, np.full((1, 1000), 4))
    assert obs.shape == (1, 1000, 4) and st.generated.sum() > 0


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, msg", [
    (np.full((2, 9), -1), r"\[0, 40\]"), (np.full((2, 9), 41), r"\[0, 40\]"),
    (np.full((2, 9), 2.5), "integers"), (np.full((2, 9), np.nan), "integers"),
    (np.zeros((2, 8), int), "shape")])
def test_bad_requests_are_rejected_before_any_change(bad, msg):
    env = make_env("adhoc-9-4:5", "medium", batch=2)
    obs, st = env.reset(0)
    before = st.copy()
    with pytest.raises(ValueError, match=msg):
        env.step(st, bad)
    assert st.frame == before.frame and np.array_equal(st.next_arrival_ms,
                                                       before.next_arrival_ms)


@pytest.mark.parametrize("kw, msg", [
    (dict(n_nodes=1), "n_nodes"), (dict(rate_high_pps=-1.0), "rate_high_pps"),
    (dict(rate_low_pps=float("inf")), "rate_low_pps"), (dict(rf="5g"), "rf"),
    (dict(n_slots=20, n_channels=4), "64"), (dict(max_request=41), "max_request"),
    (dict(reuse="partial"), "reuse"), (dict(n_high=10), "n_high")])
def test_bad_params(kw, msg):
    with pytest.raises(ValueError, match=msg):
        AdhocTDMAEnv(AdhocParams(**kw))


def test_scenario_names():
    with pytest.raises(ValueError, match="unknown scenario"):
        get_scenario("adhoc-9-5:4")
    with pytest.raises(ValueError, match=r"\[2, 100000\]"):
        get_scenario("adhoc-1")
    assert get_scenario("adhoc-9-4:5-limited").params("light").rf == "limited"
    assert get_scenario("adhoc-50").params("medium").area_km == pytest.approx(10 * (50 / 9) ** .5)


def test_impossible_connectivity_gives_a_clear_error():
    with pytest.raises(ValueError, match="no connected topology"):
        AdhocTDMAEnv(AdhocParams(n_nodes=200, n_high=0, max_draws=5, area_km=200.0)).reset(0)

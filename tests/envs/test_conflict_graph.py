"""Conflict-graph env: queueing oracles (C.3, Little), conservation, collisions, rewards,
determinism and bad input."""
import numpy as np
import pytest

from radiorl.envs.conflict_graph import ConflictGraphEnv, ConflictGraphParams, fig2_params
from radiorl.envs.scenarios import make_env

SPEC_IN_NEIGHBOURS = {0: [7, 1, 6], 1: [0, 2, 3], 2: [1, 3, 0], 3: [2, 4, 5], 4: [3, 5, 2],
                      5: [4, 6, 7], 6: [5, 7, 4], 7: [6, 0, 1]}


def test_fig2_structure_matches_spec():
    env = ConflictGraphEnv(fig2_params(), 1)
    for n, nb in SPEC_IN_NEIGHBOURS.items():
        assert sorted(np.nonzero(env.conflict[:, n])[0].tolist()) == sorted(nb)
    assert [sorted(x.tolist()) for x in env.neighbors] == [[1, 3], [0, 2], [1, 3], [0, 2]]


@pytest.mark.parametrize("a", [0.5, 0.8])
def test_batch_poisson_unit_service_oracle(a):
    """C.3: one device served every slot: mean sojourn = a / (2(1-a)) + 1 slots."""
    p = ConflictGraphParams(edges=(), agent_of_device=(0,), n_subbands=1, load=a,
                            episode_slots=10 ** 6)
    env = ConflictGraphEnv(p, batch=200)
    obs, s = env.reset(seed=3)
    act = np.ones((200, 1, 1), np.int64)
    delays = []
    for t in range(3000):
        obs, r, te, tr, info, s = env.step(s, act)
        if t >= 300:
            delays.append(info["deliveries"].delay_slots)
    d = np.concatenate(delays)
    theory = a / (2 * (1 - a)) + 1
    # standard error with positive autocorrelation: generous 5 sigma of i.i.d. times 4
    se = d.std() / np.sqrt(len(d)) * 4
    assert d.mean() == pytest.approx(theory, abs=max(5 * se, 0.01))


def test_conservation_and_little_law_under_gms():
    from radiorl.schedulers.policies import make_policy
    env = make_env("conflict-8", "medium", batch=8)
    obs, s = env.reset(seed=0)
    pol = make_policy("gms", env)
    ps = pol.reset(env, 8, 0)
    zeta_total, delay_total, n_del = 0.0, 0.0, 0
    T = 3000
    for t in range(T):
        zeta_total += s.zeta.sum()
        a, ps = pol.act(obs, env.policy_view(s, pol.requires), ps)
        obs, r, te, tr, info, s = env.step(s, a)
        q = s.queues
        np.testing.assert_array_equal(q.n_generated, q.n_done + q.n_dropped + q.backlog_packets())
        assert info["collisions"].sum() == 0          # GMS schedules independent sets
        d = info["deliveries"]
        delay_total += d.delay_slots.sum()
        n_del += len(d.delay_slots)
    # Little: time-average post-arrival backlog = throughput x mean delay (integer delays);
    # equality up to the packets still queued at the end.
    backlog_end = s.queues.backlog_packets().sum() - info["arrivals"].sum()
    lhs = zeta_total / T
    rhs = delay_total / T
    assert lhs == pytest.approx(rhs, rel=0.01, abs=backlog_end / T + 0.05)


def test_collision_model_and_reward_by_hand():
    env = ConflictGraphEnv(fig2_params(load=0.3), 1)
    obs, s = env.reset(seed=0)
    s.queues.enqueue(np.full((1, 8), 5), 0)          # make every queue nonempty
    s.zeta = s.queues.backlog_packets()
    before = s.zeta.copy()
    act = np.zeros((1, 4, 3), np.int64)
    act[0, 0, 0] = 2   # device 1 on subband 0
    act[0, 3, 0] = 2   # device 7 on subband 0: edge 1->7 kills 7; no edge 7->1
    act[0, 1, 1] = 1   # device 2 on subband 1
    act[0, 2, 1] = 1   # device 4 on subband 1: edge 2->4 kills 4; 4->2? no (4's out: 3,5,6)
    act[0, 0, 2] = 1   # device 0 on subband 2 alone
    obs, r, te, tr, info, s = env.step(s, act)
    served = info["served"][0]
    assert served.tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert info["collisions"][0].tolist() == [0, 0, 0, 0, 1, 0, 0, 1]
    q = info["queues"][0]
    np.testing.assert_array_equal(q, before[0] - served)
    # agent 0's reward = -(q0+q1 + q2+q3 + q6+q7)   (neighbours 1 and 3)
    assert r[0, 0] == -(q[0] + q[1] + q[2] + q[3] + q[6] + q[7])


def test_empty_queue_device_does_not_transmit():
    env = ConflictGraphEnv(ConflictGraphParams(edges=((0, 1),), agent_of_device=(0, 1),
                                               n_subbands=1, load=1e-9), 1)
    obs, s = env.reset(seed=0)
    s.queues.enqueue(np.array([[0, 3]]), 0)
    s.zeta = s.queues.backlog_packets()
    obs, r, te, tr, info, s = env.step(s, np.ones((1, 2, 1), np.int64))
    assert info["served"][0].tolist() == [0, 1] and info["transmissions"][0].tolist() == [0, 1]


def test_seeded_determinism_and_paired_arrivals():
    def run(seed, action_value):
        env = make_env("conflict-8", "heavy", batch=2)
        obs, s = env.reset(seed=seed)
        out = []
        for _ in range(200):
            obs, r, te, tr, info, s = env.step(s, np.full((2, 4, 3), action_value, np.int64))
            out.append(info["arrivals"].copy())
        return np.array(out), r
    a1, r1 = run(5, 1)
    a2, r2 = run(5, 1)
    a3, _ = run(5, 2)       # another "policy": same arrivals
    a4, _ = run(6, 1)
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(a1, a3)
    assert not np.array_equal(a1, a4)


def test_queue_threshold_terminates():
    env = make_env("conflict-8", "heavy", batch=1, queue_threshold=5)
    obs, s = env.reset(seed=0)
    for t in range(200):
        obs, r, te, tr, info, s = env.step(s, np.zeros((1, 4, 3), np.int64))
        if te[0]:
            break
    assert te[0] and info["queues"].max() > 5


@pytest.mark.parametrize("kw,match", [
    (dict(edges=((0, 9),), agent_of_device=(0, 0)), "missing device"),
    (dict(edges=((0, 0),), agent_of_device=(0, 0)), "self-loop"),
    (dict(edges=(), agent_of_device=(0, 0, 2)), "serve no device"),
    (dict(edges=(), agent_of_device=(0, -1)), "agent_of_device"),
    (dict(edges=(), agent_of_device=(0,), load=0.0), "load"),
    (dict(edges=(), agent_of_device=(0,), load=float("nan")), "load"),
    (dict(edges=(), agent_of_device=(0,), n_subbands=0), "n_subbands"),
])
def test_bad_topology_and_params(kw, match):
    with pytest.raises(ValueError, match=match):
        ConflictGraphEnv(ConflictGraphParams(**kw), 1)


def test_bad_actions():
    env = make_env("conflict-8", "light", batch=2)
    obs, s = env.reset(0)
    with pytest.raises(ValueError, match=r"shape \(B, K, H\)"):
        env.step(s, np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match=r"must be in \[0, \|N_k\|\]"):
        env.step(s, np.full((2, 4, 3), 3))
    with pytest.raises(ValueError, match=r"must be in \[0, \|N_k\|\]"):
        env.step(s, np.full((2, 4, 3), -1))
    with pytest.raises(ValueError, match="integers"):
        env.step(s, np.full((2, 4, 3), 0.5))
    assert s.slot == 0     # nothing happened



def test_restart_copies_empties_queues_and_keeps_conservation():
    from radiorl.envs.scenarios import make_env
    env = make_env("conflict-8", "heavy", 3)
    obs, st = env.reset(0)
    for _ in range(50):
        obs, r, te, tr, info, st = env.step(st, np.zeros((3, 4, 3), int))   # all idle
    before = st.queues.backlog_packets().copy()
    env.restart_copies(st, np.array([True, False, True]))
    q = st.queues
    assert q.backlog_packets()[[0, 2]].sum() == 0
    assert np.array_equal(q.backlog_packets()[1], before[1])
    assert np.array_equal(q.n_generated, q.n_done + q.n_dropped + q.backlog_packets())
    assert env.observe(st)[[0, 2]].sum() == 0

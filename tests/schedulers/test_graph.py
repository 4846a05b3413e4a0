"""Tests of the conflict-graph schedulers (GMS, Q-CSMA, LLQ) against independent oracles."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radiorl.schedulers.graph import (
    QCSMAState,
    conflict_adjacency,
    gms_schedule,
    is_independent_set,
    llq_conflict_schedule,
    qcsma_init,
    qcsma_log_weight,
    qcsma_step,
)

SETTINGS = settings(max_examples=60, deadline=None)


# ----------------------------------------------------------------------------- oracles

def py_conflicts(i, j, conflict, agents=None):
    """Pure-Python: do devices i != j conflict (either edge direction or same agent)?"""
    if i == j:
        return False
    if conflict[i][j] or conflict[j][i]:
        return True
    return agents is not None and agents[i] == agents[j]


def py_independent(active, conflict, agents=None):
    idx = [i for i, a in enumerate(active) if a]
    return all(not py_conflicts(i, j, conflict, agents) for i, j in itertools.combinations(idx, 2))


def py_gms(q, conflict, agents):
    """Pure-Python GMS for distinct nonzero queue values (no ties -> deterministic)."""
    remaining = {i for i in range(len(q)) if q[i] > 0}
    chosen = set()
    while remaining:
        i = max(remaining, key=lambda d: q[d])
        chosen.add(i)
        remaining = {j for j in remaining if j != i and not py_conflicts(i, j, conflict, agents)}
    return chosen


def fig2_conflict():
    """The 8-device graph of specs/cellular-conflict.md (paper Fig. 2)."""
    c = np.zeros((8, 8), bool)
    for i, j in [(0, 1), (2, 3), (4, 5), (6, 7), (1, 2), (3, 4), (5, 6), (7, 0)]:
        c[i, j] = c[j, i] = True
    for i, j in [(1, 7), (7, 5), (5, 3), (3, 1), (0, 2), (2, 4), (4, 6), (6, 0)]:
        c[i, j] = True
    return c


@st.composite
def instances(draw, max_n=8, max_b=3, max_q=4, one_agent_each=False):
    n = draw(st.integers(1, max_n))
    b = draw(st.integers(1, max_b))
    conflict = np.array(draw(st.lists(st.booleans(), min_size=n * n, max_size=n * n)),
                        bool).reshape(n, n)
    if one_agent_each:
        agents = np.arange(n)
    else:
        agents = np.array(draw(st.lists(st.integers(0, n - 1), min_size=n, max_size=n)))
    queues = np.array(draw(st.lists(st.integers(0, max_q), min_size=b * n, max_size=b * n)),
                      float).reshape(b, n)
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return queues, conflict, agents, seed


@st.composite
def distinct_queue_instances(draw, max_n=8):
    """Instances whose nonzero queues are all distinct (GMS is then deterministic)."""
    queues, conflict, agents, seed = draw(instances(max_n=max_n, max_b=1))
    n = conflict.shape[0]
    perm = draw(st.permutations(list(range(1, n + 1))))
    zero = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    q = np.where(zero, 0.0, np.array(perm, float) + 0.5)[None, :]
    return q, conflict, agents, seed


# ----------------------------------------------------------------------------- helpers

@given(instances())
@SETTINGS
def test_is_independent_set_matches_python_oracle(inst):
    queues, conflict, agents, seed = inst
    x = np.random.default_rng(seed).random((4, conflict.shape[0])) < 0.4
    got = is_independent_set(x, conflict, agents)
    want = [py_independent(row, conflict, agents) for row in x]
    assert got.tolist() == want
    got_plain = is_independent_set(x, conflict)
    assert got_plain.tolist() == [py_independent(row, conflict) for row in x]


def test_conflict_adjacency_symmetrizes_and_adds_agent_mates():
    c = np.zeros((4, 4), bool)
    c[0, 2] = True
    c[3, 3] = True                       # diagonal is ignored
    adj = conflict_adjacency(c, np.array([0, 0, 1, 2]))
    assert (adj == adj.T).all() and not adj.diagonal().any()
    assert adj[2, 0] and adj[0, 1] and not adj[1, 2] and not adj[3].any()


# ----------------------------------------------------------------------------- GMS

@given(instances(), st.sampled_from(["same", "per_subband"]), st.integers(1, 3))
@SETTINGS
def test_gms_independent_nonempty_and_shape(inst, mode, h):
    queues, conflict, agents, seed = inst
    x = gms_schedule(queues, conflict, agents, np.random.default_rng(seed), h, mode=mode)
    assert x.shape == (queues.shape[0], h, conflict.shape[0]) and x.dtype == bool
    for b in range(x.shape[0]):
        for hh in range(h):
            assert py_independent(x[b, hh], conflict, agents)
            assert not (x[b, hh] & (queues[b] == 0)).any()
    if mode == "same":
        assert (x == x[:, :1]).all()
    else:  # virtual queue decremented per subband: never more subbands than ceil(q)
        assert (x.sum(axis=1) <= np.ceil(queues)).all()


@given(instances())
@SETTINGS
def test_gms_is_maximal(inst):
    queues, conflict, agents, seed = inst
    x = gms_schedule(queues, conflict, agents, np.random.default_rng(seed), 1)[:, 0]
    n = conflict.shape[0]
    for b in range(x.shape[0]):
        for i in range(n):
            if queues[b, i] > 0 and not x[b, i]:
                assert any(x[b, j] and py_conflicts(i, j, conflict, agents) for j in range(n))


@given(distinct_queue_instances())
@SETTINGS
def test_gms_matches_python_oracle_without_ties(inst):
    q, conflict, agents, seed = inst
    x = gms_schedule(q, conflict, agents, np.random.default_rng(seed), 2)
    assert set(np.flatnonzero(x[0, 0])) == py_gms(q[0], conflict, agents)
    assert (x[0, 1] == x[0, 0]).all()


@given(st.integers(1, 8), st.integers(0, 2 ** 32 - 1))
@SETTINGS
def test_gms_complete_graph_picks_longest(n, seed):
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 6, size=(3, n)).astype(float)
    conflict = ~np.eye(n, dtype=bool)
    x = gms_schedule(q, conflict, np.arange(n), rng, 2)
    for b in range(3):
        if q[b].max() == 0:
            assert not x[b].any()
        else:
            on = np.flatnonzero(x[b, 0])
            assert len(on) == 1 and q[b, on[0]] == q[b].max()


@given(instances(one_agent_each=True))
@SETTINGS
def test_gms_empty_graph_activates_every_nonempty(inst):
    queues, conflict, agents, seed = inst
    empty = np.zeros_like(conflict)
    x = gms_schedule(queues, empty, agents, np.random.default_rng(seed), 3)
    assert (x == (queues > 0)[:, None, :]).all()


def test_gms_tie_break_is_uniform():
    n, b = 4, 40_000
    x = gms_schedule(np.ones((b, n)), ~np.eye(n, dtype=bool), np.arange(n),
                     np.random.default_rng(3), 1)[:, 0]
    freq = x.mean(axis=0)
    assert (x.sum(axis=1) == 1).all()
    assert np.all(np.abs(freq - 1 / n) < 5 * math.sqrt(0.25 * 0.75 / b))


def test_gms_removes_in_and_out_neighbours_on_fig2():
    """The reference code clears only in-neighbours; a true independent set needs both."""
    c = fig2_conflict()
    rng = np.random.default_rng(0)
    q = rng.integers(0, 6, size=(2000, 8)).astype(float)
    x = gms_schedule(q, c, np.arange(8) // 2, rng, 3)
    assert is_independent_set(x, c, np.arange(8) // 2).all()


def test_gms_per_subband_spreads_short_queues():
    # two non-conflicting devices of different agents, q = (1, 3): device 0 only once
    x = gms_schedule(np.array([[1.0, 3.0]]), np.zeros((2, 2), bool), np.arange(2),
                     np.random.default_rng(0), 3, mode="per_subband")
    assert x[0].astype(int).tolist() == [[1, 1], [0, 1], [0, 1]]
    # one agent owning both: the longer virtual queue wins each subband
    x = gms_schedule(np.array([[2.0, 3.0]]), np.zeros((2, 2), bool), np.zeros(2, int),
                     np.random.default_rng(0), 3, mode="per_subband")
    assert x[0, 0].tolist() == [False, True] and x[0].sum() == 3 and x[0].sum(axis=0)[1] >= 1


def test_gms_seeded_determinism():
    c = fig2_conflict()
    q = np.random.default_rng(1).integers(0, 3, size=(5, 8)).astype(float)
    for mode in ("same", "per_subband"):
        a = gms_schedule(q, c, np.arange(8) // 2, np.random.default_rng(42), 3, mode=mode)
        b = gms_schedule(q, c, np.arange(8) // 2, np.random.default_rng(42), 3, mode=mode)
        assert (a == b).all()


# ----------------------------------------------------------------------------- Q-CSMA

@given(instances(), st.integers(1, 3), st.sampled_from([None, 1, 3]))
@SETTINGS
def test_qcsma_state_stays_independent_and_never_serves_empty(inst, h, window):
    queues, conflict, agents, seed = inst
    b, n = queues.shape
    rng = np.random.default_rng(seed)
    state = qcsma_init(b, h, n)
    for _ in range(6):
        q = rng.integers(0, 4, size=(b, n)).astype(float)
        tx, state = qcsma_step(state, q, conflict, agents, rng, window=window)
        assert tx.shape == (b, h, n) and tx.dtype == bool
        assert (tx == state.x).all()
        assert not (tx & (q == 0)[:, None, :]).any()
        for bb in range(b):
            for hh in range(h):
                assert py_independent(state.x[bb, hh], conflict, agents)


def test_qcsma_product_form_path_graph():
    """Spec B.7 oracle: frozen weights -> pi(x) ∝ exp(sum_{l in x} w_l) over independent sets.

    200k independent chains (batch copies) run 60 slots from the empty schedule; their final
    states are i.i.d. samples, so each frequency has binomial s.d. sqrt(pi(1-pi)/B).
    """
    c = np.zeros((3, 3), bool)
    c[0, 1] = c[2, 1] = True            # one-way edges; symmetrization gives the path 0-1-2
    w = np.array([0.5, 1.0, 0.2])
    b = 200_000
    rng = np.random.default_rng(2024)
    q = np.ones((b, 3))
    state = qcsma_init(b, 1, 3)
    for _ in range(60):
        _, state = qcsma_step(state, q, c, np.arange(3), rng, window=4, fixed_weights=w)
    code = state.x[:, 0].astype(int) @ np.array([1, 2, 4])
    freq = np.bincount(code, minlength=8) / b
    sets = {0: (), 1: (0,), 2: (1,), 4: (2,), 5: (0, 2)}
    pi = {k: math.exp(sum(w[i] for i in s)) for k, s in sets.items()}
    z = sum(pi.values())
    for k in range(8):
        if k in sets:
            p = pi[k] / z
            assert abs(freq[k] - p) < 4.5 * math.sqrt(p * (1 - p) / b), (k, freq[k], p)
        else:
            assert freq[k] == 0


def test_qcsma_single_minislot_collisions():
    # W = 1: every contending link broadcasts in mini-slot 0, so neighbours always collide
    n = 4
    state = qcsma_init(5, 2, n)
    rng = np.random.default_rng(0)
    big = np.full(n, 60.0)              # p = 1
    for _ in range(5):
        tx, state = qcsma_step(state, np.ones((5, n)), ~np.eye(n, dtype=bool), np.arange(n),
                               rng, window=1, fixed_weights=big)
        assert not tx.any()
    # no conflicts: everyone is in D and switches on (except the empty queue)
    q = np.ones((5, n))
    q[:, 2] = 0
    tx, state = qcsma_step(qcsma_init(5, 2, n), q, np.zeros((n, n), bool), np.arange(n), rng,
                           window=1, fixed_weights=big)
    assert (tx == (q > 0)[:, None, :]).all()


@pytest.mark.parametrize("start", [(1, 0, 1), (0, 1, 0)])
def test_qcsma_links_keep_state_when_blocked(start):
    """With p = 1 on the path 0-1-2, {0, 2} and {1} are absorbing (decisions keep the state)."""
    c = np.zeros((3, 3), bool)
    c[0, 1] = c[1, 2] = True
    b = 50
    state = QCSMAState(x=np.broadcast_to(np.array(start, bool), (b, 2, 3)).copy())
    rng = np.random.default_rng(5)
    for _ in range(20):
        tx, state = qcsma_step(state, np.ones((b, 3)), c, np.arange(3), rng,
                               fixed_weights=np.full(3, 60.0))
        assert (tx == np.array(start, bool)).all()


def test_qcsma_empty_queue_forced_off_and_minus_inf_weight_never_on():
    state = QCSMAState(x=np.array([[[True, False]]]))
    tx, state = qcsma_step(state, np.array([[0.0, 1.0]]), np.zeros((2, 2), bool), np.arange(2),
                           np.random.default_rng(0))
    assert not state.x[0, 0, 0]
    rng = np.random.default_rng(1)
    state = qcsma_init(100, 1, 2)
    for _ in range(10):
        tx, state = qcsma_step(state, np.ones((100, 2)), np.zeros((2, 2), bool), np.arange(2),
                               rng, fixed_weights=np.array([-np.inf, 3.0]))
        assert not tx[..., 0].any()
    assert tx[..., 1].mean() > 0.5


def test_qcsma_log_weight_probability():
    q = np.array([0.0, 1.0, 4.0])
    w = qcsma_log_weight(q)
    with np.errstate(over="ignore"):
        p = 1 / (1 + np.exp(-w))
    assert np.allclose(p, 10 * q / (1 + 10 * q))


def test_qcsma_seeded_determinism_and_no_input_mutation():
    c = fig2_conflict()
    q = np.random.default_rng(0).integers(0, 4, size=(4, 8)).astype(float)
    s0 = qcsma_init(4, 3, 8)
    x0 = s0.x.copy()
    a, sa = qcsma_step(s0, q, c, np.arange(8) // 2, np.random.default_rng(9))
    b, sb = qcsma_step(s0, q, c, np.arange(8) // 2, np.random.default_rng(9))
    assert (a == b).all() and (sa.x == sb.x).all() and (s0.x == x0).all()


# ----------------------------------------------------------------------------- LLQ

@given(instances(one_agent_each=True), st.integers(1, 3))
@SETTINGS
def test_llq_local_rule_one_agent_per_device(inst, h):
    queues, conflict, agents, seed = inst
    x = llq_conflict_schedule(queues, conflict, agents, np.random.default_rng(seed), h)
    b, n = queues.shape
    assert x.shape == (b, h, n) and (x == x[:, :1]).all()
    for bb in range(b):
        for i in range(n):
            nbr = [queues[bb, j] for j in range(n) if py_conflicts(i, j, conflict)]
            m = max(nbr, default=-math.inf)
            if queues[bb, i] == 0 or queues[bb, i] < m:
                assert not x[bb, 0, i]
            elif queues[bb, i] > m:
                assert x[bb, 0, i]


@given(instances(), st.integers(1, 2))
@SETTINGS
def test_llq_agent_action_valid(inst, h):
    queues, conflict, agents, seed = inst
    x = llq_conflict_schedule(queues, conflict, agents, np.random.default_rng(seed), h)
    b, n = queues.shape
    for bb in range(b):
        for a in set(agents.tolist()):
            mine = [i for i in range(n) if agents[i] == a]
            on = [i for i in mine if x[bb, 0, i]]
            assert len(on) <= 1
            strict = [i for i in mine if queues[bb, i] > 0 and all(
                queues[bb, i] > queues[bb, j] for j in range(n) if py_conflicts(i, j, conflict))]
            if strict:   # a strict local maximum guarantees the agent serves someone that long
                assert len(on) == 1 and queues[bb, on[0]] >= max(queues[bb, i] for i in strict)
            for i in on:  # whoever is served passed the (non-strict) local rule
                assert queues[bb, i] > 0 and all(queues[bb, i] >= queues[bb, j]
                                                 for j in range(n) if py_conflicts(i, j, conflict))


def test_llq_tie_probability_is_one_over_j():
    """Star 0-{1,2} with equal queues: centre ties with 3 devices (p=1/3), leaves with 2 (1/2)."""
    c = np.zeros((3, 3), bool)
    c[0, 1] = c[2, 0] = True
    b = 60_000
    x = llq_conflict_schedule(np.full((b, 3), 2.0), c, np.arange(3), np.random.default_rng(11),
                              1)[:, 0]
    freq = x.mean(axis=0)
    for f, p in zip(freq, (1 / 3, 1 / 2, 1 / 2)):
        assert abs(f - p) < 5 * math.sqrt(p * (1 - p) / b)
    # independence of the coins: P(all three) = 1/12
    p_all = 1 / 12
    assert abs(x.all(axis=1).mean() - p_all) < 5 * math.sqrt(p_all * (1 - p_all) / b)
    # LLQ is not collision-free: conflicting tied devices are sometimes scheduled together
    assert (~is_independent_set(x, c)).mean() > 0.1


def test_llq_agent_keeps_longest_with_random_tie():
    none = np.zeros((2, 2), bool)
    x = llq_conflict_schedule(np.array([[3.0, 5.0]]), none, np.zeros(2, int),
                              np.random.default_rng(0), 2)
    assert x[0].astype(int).tolist() == [[0, 1], [0, 1]]
    b = 20_000
    x = llq_conflict_schedule(np.full((b, 2), 4.0), none, np.zeros(2, int),
                              np.random.default_rng(1), 1)[:, 0]
    assert (x.sum(axis=1) == 1).all()
    assert abs(x[:, 0].mean() - 0.5) < 5 * math.sqrt(0.25 / b)


def test_llq_seeded_determinism():
    c = fig2_conflict()
    q = np.random.default_rng(2).integers(0, 3, size=(6, 8)).astype(float)
    a = llq_conflict_schedule(q, c, np.arange(8) // 2, np.random.default_rng(5), 3)
    b = llq_conflict_schedule(q, c, np.arange(8) // 2, np.random.default_rng(5), 3)
    assert (a == b).all()


# ----------------------------------------------------------------------------- bad inputs

RNG = np.random.default_rng
C3 = np.zeros((3, 3), bool)
A3 = np.arange(3)
Q3 = np.ones((2, 3))


@pytest.mark.parametrize("call, match", [
    (lambda: gms_schedule(-Q3, C3, A3, RNG(0), 1), r"queues.*\[0, inf\)"),
    (lambda: gms_schedule(Q3 * np.nan, C3, A3, RNG(0), 1), "queues"),
    (lambda: gms_schedule(np.ones(3), C3, A3, RNG(0), 1), r"queues.*\[B, N\]"),
    (lambda: gms_schedule(np.ones((2, 4)), C3, A3, RNG(0), 1), "queues"),
    (lambda: gms_schedule(Q3, np.zeros((3, 2), bool), A3, RNG(0), 1), "conflict"),
    (lambda: gms_schedule(Q3, np.full((3, 3), 2), A3, RNG(0), 1), "conflict"),
    (lambda: gms_schedule(Q3, C3, np.array([0, -1, 1]), RNG(0), 1), r"agent_of_device.*\[0"),
    (lambda: gms_schedule(Q3, C3, np.array([0, 1]), RNG(0), 1), "agent_of_device"),
    (lambda: gms_schedule(Q3, C3, np.array([0, 0.5, 1]), RNG(0), 1), "agent_of_device"),
    (lambda: gms_schedule(Q3, C3, A3, RNG(0), 0), r"n_subbands.*\[1, inf\)"),
    (lambda: gms_schedule(Q3, C3, A3, RNG(0), 1, mode="bad"), "mode"),
    (lambda: qcsma_step(qcsma_init(2, 1, 4), Q3, C3, A3, RNG(0)), "state.x"),
    (lambda: qcsma_step(qcsma_init(2, 1, 3), Q3, C3, A3, RNG(0), window=0), "window"),
    (lambda: qcsma_step(qcsma_init(2, 1, 3), Q3, C3, A3, RNG(0),
                        fixed_weights=np.ones(4)), "fixed_weights"),
    (lambda: qcsma_step(qcsma_init(2, 1, 3), Q3, C3, A3, RNG(0),
                        fixed_weights=np.array([0, np.nan, 0])), "weights"),
    (lambda: qcsma_init(0, 1, 3), "batch_size"),
    (lambda: llq_conflict_schedule(-Q3, C3, A3, RNG(0), 1), "queues"),
    (lambda: llq_conflict_schedule(Q3, C3, np.array([0, 1, -2]), RNG(0), 1), "agent_of_device"),
    (lambda: is_independent_set(np.ones((2, 4), bool), C3), "x must have shape"),
])
def test_bad_inputs_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_non_generator_rng_is_type_error():
    with pytest.raises(TypeError, match="rng"):
        gms_schedule(Q3, C3, A3, np.random.RandomState(0), 1)
    with pytest.raises(TypeError, match="rng"):
        llq_conflict_schedule(Q3, C3, A3, 0, 1)

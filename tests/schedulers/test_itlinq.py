"""Tests of the cellular heuristics (per-AP LLQ, ITLinQ, Fair-ITLinQ) against independent
oracles."""
from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from radiorl.schedulers.itlinq import (
    FAIR_ITLINQ_HEXAGONAL,
    FAIR_ITLINQ_RANDOM,
    ITLINQ_PLAIN,
    ITLQ_ZHANG,
    ITLinQParams,
    itlinq_schedule,
    llq_cellular_schedule,
    schedule_to_mask,
)

SETTINGS = settings(max_examples=60, deadline=None)
P_W = 0.2                 # 23 dBm
NOISE_W = 10 ** (-114 / 10) * 1e-3
PRESETS = [(False, ITLINQ_PLAIN), (False, ITLQ_ZHANG), (True, FAIR_ITLINQ_HEXAGONAL),
           (True, FAIR_ITLINQ_RANDOM)]


# ----------------------------------------------------------------------------- oracles

def py_thresholds(snr_j, params, fair):
    rx = params.m_it * snr_j ** params.eta
    tx = rx
    if fair and snr_j > params.snr_th:
        tx = params.m_it_bar * snr_j ** params.eta_bar
    return rx, tx


def py_compatible(first, second, g, ap, params, fair):
    """May ``second`` be added while ``first`` is active? g: [K, N] gains of one subband."""
    scale = P_W / NOISE_W
    if ap[first] == ap[second]:
        return False
    snr = g[ap[second]][second] * scale
    rx, tx = py_thresholds(snr, params, fair)
    inr_in = g[ap[first]][second] * scale       # first's AP -> second's device
    inr_out = g[ap[second]][first] * scale      # second's AP -> first's device
    return inr_in <= rx and inr_out <= tx


def py_itlinq(order, q, g, ap, params, fair):
    """Pure-Python greedy scan of one subband in a given order; returns the active set."""
    active = []
    for j in order:
        if q[j] <= 0:
            continue
        if all(py_compatible(i, j, g, ap, params, fair) for i in active):
            active.append(j)
    return set(active)


def active_set(schedule_bh):
    return {int(d) for d in schedule_bh if d >= 0}


@st.composite
def cells(draw, max_k=4, max_n=7, distinct_queues=False):
    k = draw(st.integers(1, max_k))
    n = draw(st.integers(1, max_n))
    b = draw(st.integers(1, 2))
    h = draw(st.integers(1, 2))
    ap = np.array(draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    rng = np.random.default_rng(seed)
    # gains between -140 dB and -60 dB: SNR from about -3 dB to 77 dB at 23 dBm / -114 dBm
    gains = 10.0 ** rng.uniform(-14, -6, size=(b, h, k, n))
    if distinct_queues:
        q = np.stack([rng.permutation(n) + 1.0 for _ in range(b)])
        q[rng.random((b, n)) < 0.25] = 0.0
    else:
        q = rng.integers(0, 3, size=(b, n)).astype(float)
    return gains, ap, q, seed


# ----------------------------------------------------------------------------- LLQ (cellular)

@given(cells(distinct_queues=True), st.integers(1, 3))
@SETTINGS
def test_llq_cellular_argmax_per_ap(inst, h):
    gains, ap, q, seed = inst
    k = gains.shape[2]
    s = llq_cellular_schedule(q, ap, k, np.random.default_rng(seed), h)
    assert s.shape == (q.shape[0], h, k) and np.issubdtype(s.dtype, np.integer)
    assert (s == s[:, :1]).all()
    for b in range(q.shape[0]):
        for a in range(k):
            mine = [j for j in range(len(ap)) if ap[j] == a and q[b, j] > 0]
            if not mine:
                assert s[b, 0, a] == -1
            else:
                assert s[b, 0, a] == max(mine, key=lambda j: q[b, j])
                assert ap[s[b, 0, a]] == a


@given(cells())
@SETTINGS
def test_llq_cellular_with_ties_stays_valid(inst):
    gains, ap, q, seed = inst
    k = gains.shape[2]
    s = llq_cellular_schedule(q, ap, k, np.random.default_rng(seed), 2)
    for b in range(q.shape[0]):
        for a in range(k):
            d = s[b, 0, a]
            mine = [q[b, j] for j in range(len(ap)) if ap[j] == a]
            if d < 0:
                assert max(mine, default=0.0) == 0
            else:
                assert ap[d] == a and q[b, d] == max(mine) > 0


def test_llq_cellular_tie_break_uniform():
    b = 30_000
    s = llq_cellular_schedule(np.tile([[3.0, 3.0, 3.0, 1.0]], (b, 1)), np.array([0, 0, 0, 1]), 2,
                              np.random.default_rng(4), 1)
    counts = np.bincount(s[:, 0, 0], minlength=3)[:3] / b
    assert np.all(np.abs(counts - 1 / 3) < 5 * math.sqrt(2 / 9 / b))
    assert (s[:, 0, 1] == 3).all()


# ----------------------------------------------------------------------------- ITLinQ

@pytest.mark.parametrize("fair, params", PRESETS)
@given(inst=cells())
@SETTINGS
def test_itlinq_single_user_and_pairwise_tests_hold(fair, params, inst):
    gains, ap, q, seed = inst
    b, h, k, n = gains.shape
    s = itlinq_schedule(gains, ap, q, P_W, NOISE_W, np.random.default_rng(seed), fair=fair,
                        params=params)
    assert s.shape == (b, h, k)
    for bb in range(b):
        for hh in range(h):
            act = active_set(s[bb, hh])
            assert len(act) == len([d for d in s[bb, hh] if d >= 0])     # no device twice
            for a in range(k):
                if s[bb, hh, a] >= 0:
                    assert ap[s[bb, hh, a]] == a and q[bb, s[bb, hh, a]] > 0
            g = gains[bb, hh]
            for i, j in itertools.combinations(sorted(act), 2):
                # whichever was activated second passed both tests against the first
                assert py_compatible(i, j, g, ap, params, fair) or \
                    py_compatible(j, i, g, ap, params, fair)
            if any(q[bb] > 0):
                assert act                                              # first link always on


@pytest.mark.parametrize("fair, params", PRESETS)
@given(inst=cells(distinct_queues=True))
@SETTINGS
def test_itlinq_queue_priority_matches_python_oracle(fair, params, inst):
    gains, ap, q, seed = inst
    b, h, k, n = gains.shape
    s = itlinq_schedule(gains, ap, q, P_W, NOISE_W, np.random.default_rng(seed), fair=fair,
                        params=params, priority="queue")
    for bb in range(b):
        order = sorted(range(n), key=lambda j: -q[bb, j])
        for hh in range(h):
            assert active_set(s[bb, hh]) == py_itlinq(order, q[bb], gains[bb, hh], ap, params,
                                                      fair)


def three_link_instance():
    """Three cells; link 0 blocks link 1, link 1 would block link 2, 0 and 2 are compatible."""
    g = np.full((3, 3), 1e-16)             # weak cross gains
    np.fill_diagonal(g, 1e-9)              # SNR = 0.2e-9 / 4e-15 ≈ 5e4 for every link
    g[0, 1] = 1e-8                         # AP 0 -> device 1: strong interference at link 1
    g[1, 2] = 1e-8                         # AP 1 -> device 2: strong interference at link 2
    return g


def test_itlinq_three_links_greedy_order_semantics():
    g = three_link_instance()[None, None]
    ap = np.arange(3)
    s = itlinq_schedule(g, ap, np.array([[3.0, 2.0, 1.0]]), P_W, NOISE_W,
                        np.random.default_rng(0), priority="queue")
    assert active_set(s[0, 0]) == {0, 2}           # 1 is rejected, so 2 is not blocked by it
    s = itlinq_schedule(g, ap, np.array([[1.0, 3.0, 2.0]]), P_W, NOISE_W,
                        np.random.default_rng(0), priority="queue")
    assert active_set(s[0, 0]) == {1}              # 1 first blocks both 0 (tx side) and 2


def test_itlinq_three_links_random_priority_brute_force():
    """Random priority: the law of the outcome is the average over all 3! orders."""
    g = three_link_instance()
    ap = np.arange(3)
    q = np.ones(3)
    want = Counter()
    for perm in itertools.permutations(range(3)):
        want[frozenset(py_itlinq(perm, q, g, ap, ITLINQ_PLAIN, False))] += 1 / 6
    b = 30_000
    s = itlinq_schedule(np.broadcast_to(g, (b, 1, 3, 3)), ap, np.ones((b, 3)), P_W, NOISE_W,
                        np.random.default_rng(8))
    got = Counter(frozenset(active_set(row)) for row in s[:, 0])
    assert set(got) <= set(want)
    for outcome, p in want.items():
        assert abs(got[outcome] / b - p) < 5 * math.sqrt(p * (1 - p) / b), outcome


@pytest.mark.parametrize("fair, params", PRESETS)
@given(inst=cells())
@SETTINGS
def test_itlinq_without_interference_every_nonempty_ap_is_served(fair, params, inst):
    gains, ap, q, seed = inst
    own = ap[None, :] == np.arange(gains.shape[2])[:, None]               # [K, N]
    gains = np.where(own, gains, 0.0)
    s = itlinq_schedule(gains, ap, q, P_W, NOISE_W, np.random.default_rng(seed), fair=fair,
                        params=params, priority="queue")
    for bb in range(q.shape[0]):
        served = {a for a in range(gains.shape[2]) if any(q[bb, ap == a] > 0)}
        for hh in range(gains.shape[1]):
            assert {a for a in range(gains.shape[2]) if s[bb, hh, a] >= 0} == served


@given(inst=cells(), m_it=st.floats(0.1, 1000), eta=st.floats(0, 1))
@SETTINGS
def test_fair_with_infinite_threshold_equals_plain(inst, m_it, eta):
    gains, ap, q, seed = inst
    plain = ITLinQParams(m_it=m_it, eta=eta)
    fair = ITLinQParams(m_it=m_it, eta=eta, m_it_bar=0.01, eta_bar=0.1, snr_th=math.inf)
    a = itlinq_schedule(gains, ap, q, P_W, NOISE_W, np.random.default_rng(seed), params=plain)
    b = itlinq_schedule(gains, ap, q, P_W, NOISE_W, np.random.default_rng(seed), fair=True,
                        params=fair)
    assert (a == b).all()


def test_fair_threshold_makes_strong_links_polite():
    # link 1 is strong (SNR 5e4 > SNR_th) and would hurt link 0's receiver moderately
    g = np.full((2, 2), 1e-16)
    np.fill_diagonal(g, 1e-9)
    g[1, 0] = 4e-12          # INR_{1->0} = 200: below 10 * SNR^0.7 (~19k), above 0.1 * SNR^0.5
    g = g[None, None]
    q = np.array([[2.0, 1.0]])
    plain = itlinq_schedule(g, np.arange(2), q, P_W, NOISE_W, np.random.default_rng(0),
                            params=ITLinQParams(m_it=10, eta=0.7), priority="queue")
    fair = itlinq_schedule(g, np.arange(2), q, P_W, NOISE_W, np.random.default_rng(0),
                           fair=True, params=FAIR_ITLINQ_HEXAGONAL, priority="queue")
    assert active_set(plain[0, 0]) == {0, 1} and active_set(fair[0, 0]) == {0}


def test_itlinq_skips_empty_queues_and_handles_all_empty():
    g = np.ones((1, 2, 2, 4)) * 1e-10
    ap = np.array([0, 0, 1, 1])
    s = itlinq_schedule(g, ap, np.zeros((1, 4)), P_W, NOISE_W, np.random.default_rng(0))
    assert (s == -1).all()
    s = itlinq_schedule(g, ap, np.array([[0.0, 1.0, 0.0, 0.0]]), P_W, NOISE_W,
                        np.random.default_rng(0))
    assert (s[..., 0] == 1).all() and (s[..., 1] == -1).all()


def test_itlinq_seeded_determinism_and_presets():
    rng = np.random.default_rng(3)
    g = 10.0 ** rng.uniform(-13, -8, size=(2, 3, 5, 12))
    ap = np.repeat(np.arange(5), [3, 3, 2, 2, 2])
    q = rng.integers(0, 4, size=(2, 12)).astype(float)
    for fair, params in PRESETS:
        for priority in ("random", "queue"):
            a = itlinq_schedule(g, ap, q, P_W, NOISE_W, np.random.default_rng(1), fair=fair,
                                params=params, priority=priority)
            b = itlinq_schedule(g, ap, q, P_W, NOISE_W, np.random.default_rng(1), fair=fair,
                                params=params, priority=priority)
            assert (a == b).all()
    assert ITLINQ_PLAIN == ITLinQParams() and ITLINQ_PLAIN.m_it == pytest.approx(10 ** 2.5)
    assert (ITLQ_ZHANG.m_it, ITLQ_ZHANG.eta) == (20.0, 0.6)
    hexa = FAIR_ITLINQ_HEXAGONAL
    assert (hexa.eta, hexa.eta_bar, hexa.m_it, hexa.m_it_bar, hexa.snr_th) == \
        (0.7, 0.5, 10.0, 0.1, 1200.0)
    rnd = FAIR_ITLINQ_RANDOM
    assert (rnd.eta, rnd.eta_bar, rnd.m_it, rnd.m_it_bar, rnd.snr_th) == \
        (0.7, 0.5, 20.0, 2.0, 5000.0)


def test_schedule_to_mask_round_trip():
    s = np.array([[[2, -1], [0, 3]]])
    m = schedule_to_mask(s, 4)
    assert m.shape == (1, 2, 4)
    assert m[0].astype(int).tolist() == [[0, 0, 1, 0], [1, 0, 0, 1]]


# ----------------------------------------------------------------------------- bad inputs

RNG = np.random.default_rng
G = np.full((1, 1, 2, 3), 1e-10)
AP = np.array([0, 0, 1])
Q = np.ones((1, 3))


@pytest.mark.parametrize("call, match", [
    (lambda: llq_cellular_schedule(-Q, AP, 2, RNG(0), 1), r"queues.*\[0, inf\)"),
    (lambda: llq_cellular_schedule(Q, np.array([0, 2, 1]), 2, RNG(0), 1),
     r"ap_of_device.*\[0, 2\)"),
    (lambda: llq_cellular_schedule(Q, np.array([0, 1]), 2, RNG(0), 1), "ap_of_device"),
    (lambda: llq_cellular_schedule(Q, AP, 0, RNG(0), 1), "n_aps"),
    (lambda: llq_cellular_schedule(Q, AP, 2, RNG(0), 0), "n_subbands"),
    (lambda: itlinq_schedule(G[0], AP, Q, P_W, NOISE_W, RNG(0)), r"gain_ap_dev.*\[B, H, K, N\]"),
    (lambda: itlinq_schedule(-G, AP, Q, P_W, NOISE_W, RNG(0)), r"gain_ap_dev.*\[0, inf\)"),
    (lambda: itlinq_schedule(G * np.inf, AP, Q, P_W, NOISE_W, RNG(0)), "gain_ap_dev"),
    (lambda: itlinq_schedule(G, np.array([0, 0, 2]), Q, P_W, NOISE_W, RNG(0)),
     r"ap_of_device.*\[0, 2\)"),
    (lambda: itlinq_schedule(G, AP, np.ones((2, 3)), P_W, NOISE_W, RNG(0)), "queues"),
    (lambda: itlinq_schedule(G, AP, Q * np.nan, P_W, NOISE_W, RNG(0)), "queues"),
    (lambda: itlinq_schedule(G, AP, Q, 0.0, NOISE_W, RNG(0)), r"p_max_w.*\(0, inf\)"),
    (lambda: itlinq_schedule(G, AP, Q, P_W, -1.0, RNG(0)), "noise_w"),
    (lambda: itlinq_schedule(G, AP, Q, P_W, NOISE_W, RNG(0), priority="pf"), "priority"),
    (lambda: ITLinQParams(m_it=0.0), "m_it"),
    (lambda: ITLinQParams(eta=-1.0), "eta"),
    (lambda: ITLinQParams(snr_th=float("nan")), "snr_th"),
    (lambda: schedule_to_mask(np.array([[[5]]]), 3), "schedule"),
])
def test_bad_inputs_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_non_generator_rng_is_type_error():
    with pytest.raises(TypeError, match="rng"):
        itlinq_schedule(G, AP, Q, P_W, NOISE_W, 123)
    with pytest.raises(TypeError, match="params"):
        itlinq_schedule(G, AP, Q, P_W, NOISE_W, RNG(0), params={"m_it": 1})

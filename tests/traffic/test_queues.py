"""Packet FIFO queues against a brute-force deque reference and conservation."""
import collections

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from radiorl.traffic import PacketQueues


def reference_run(arrivals, service, L, fractional):
    """Plain per-packet reference: list of (arrival_slot, remaining_bits)."""
    q = collections.deque()
    delays = []
    for t, (a, bits) in enumerate(zip(arrivals, service)):
        for _ in range(a):
            q.append([t, L])
        budget, used = bits, 0.0
        while q and budget > 0:
            head = q[0]
            take = min(budget, head[1])
            head[1] -= take
            budget -= take
            used += take
            if head[1] == 0:
                q.popleft()
                delays.append(t - head[0] + (used / bits if fractional else 1.0))
    return delays, sum(r for _, r in q), len(q)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 7)), min_size=1, max_size=60),
       st.booleans())
def test_matches_reference_queue(steps, fractional):
    L = 3.0
    arrivals = [a for a, _ in steps]
    service = [float(s) for _, s in steps]
    q = PacketQueues.empty(1, 1, L, capacity=2)
    got = []
    for t, (a, s) in enumerate(zip(arrivals, service)):
        q.enqueue(np.array([[a]]), t)
        d = q.serve_bits(np.array([[s]]), t, fractional)
        got.extend(d.delay_slots.tolist())
        # conservation at every step
        assert q.n_generated[0, 0] == q.n_done[0, 0] + q.n_dropped[0, 0] + q.backlog_packets()[0, 0]
    ref, rem_bits, rem_pkts = reference_run(arrivals, service, L, fractional)
    assert got == pytest.approx(ref)
    assert q.backlog_bits()[0, 0] == pytest.approx(rem_bits)
    assert q.backlog_packets()[0, 0] == rem_pkts


def test_batched_independent_and_overflow_drops():
    rng = np.random.default_rng(1)
    B, N = 3, 4
    q = PacketQueues.empty(B, N, 1.0, capacity=2, max_packets=5)
    for t in range(50):
        dropped = q.enqueue(rng.poisson(1.5, (B, N)), t)
        assert (dropped >= 0).all()
        q.serve_bits(rng.integers(0, 2, (B, N)).astype(float), t, False)
        assert (q.backlog_packets() <= 5).all()
        np.testing.assert_array_equal(q.n_generated, q.n_done + q.n_dropped + q.backlog_packets())
    assert q.n_dropped.sum() > 0


def test_bad_packet_size():
    with pytest.raises(ValueError, match="packet_bits"):
        PacketQueues.empty(1, 1, 0.0)


def test_serve_packets_whole_packets():
    q = PacketQueues.empty(1, 2, 100.0)
    q.enqueue(np.array([[3, 1]]), 0)
    d = q.serve_packets(np.array([[2, 5]]), 1)
    assert d.count.tolist() == [[2, 1]] and d.delay_slots.tolist() == [2.0, 2.0, 2.0]
    assert q.backlog_packets().tolist() == [[1, 0]] and q.backlog_bits().tolist() == [[100.0, 0.0]]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 3)), min_size=1, max_size=60))
def test_serve_packets_matches_reference(steps):
    """Whole-packet service equals the deque reference with 1-bit packets."""
    q = PacketQueues.empty(1, 1, 1.0, capacity=2)
    got = []
    for t, (a, s) in enumerate(steps):
        q.enqueue(np.array([[a]]), t)
        got.extend(q.serve_packets(np.array([[s]]), t).delay_slots.tolist())
    ref, _, rem = reference_run([a for a, _ in steps], [float(s) for _, s in steps], 1.0, False)
    assert got == ref and q.backlog_packets()[0, 0] == rem

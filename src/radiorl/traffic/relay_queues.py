"""Bounded packet FIFO queues for multi-hop networks, usable inside numba kernels.

Every node of every copy has ``Q`` queues (the MF-TDMA ad hoc network uses ``Q = 2``: the
generation queue G and the forwarding queue F) of capacity ``C`` packets. A packet is a record
of ``PK_FIELDS`` float64 values (integers are exact in float64 up to 2^53):

==========  =====================================================================
field       meaning
==========  =====================================================================
PK_TGEN     generation time (ms, continuous)
PK_SRC      source node
PK_DST      final destination node
PK_ATT      failed attempts on the current hop
PK_ELIG     first slot index at which this node may transmit it (relay latency)
==========  =====================================================================

Layout: ``pkt[B, N, Q, C, PK_FIELDS]`` ring buffers with ``head[B, N, Q]`` and
``size[B, N, Q]``. The numba helpers push at the back (arrivals, relayed packets), pop at the
front (transmission) and push back at the front (a failed packet keeps its place at the head).
Callers copy a popped record out before pushing to the same queue again.

Example:
    >>> rq = RelayQueues.empty(batch=1, nodes=2, queues=2, capacity=4)
    >>> push_back(rq.pkt, rq.head, rq.size, 0, 0, 0, 1.5, 0, 1, 0, 0)
    True
    >>> int(rq.size[0, 0, 0])
    1
"""
from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

PK_TGEN, PK_SRC, PK_DST, PK_ATT, PK_ELIG = 0, 1, 2, 3, 4
PK_FIELDS = 5


@dataclass
class RelayQueues:
    """Arrays of the ring buffers (see module docstring)."""

    pkt: np.ndarray
    head: np.ndarray
    size: np.ndarray

    @classmethod
    def empty(cls, batch: int, nodes: int, queues: int, capacity: int) -> "RelayQueues":
        return cls(np.zeros((batch, nodes, queues, capacity, PK_FIELDS)),
                   np.zeros((batch, nodes, queues), np.int64),
                   np.zeros((batch, nodes, queues), np.int64))

    @property
    def capacity(self) -> int:
        return self.pkt.shape[3]

    def copy(self) -> "RelayQueues":
        return RelayQueues(self.pkt.copy(), self.head.copy(), self.size.copy())

    def packets(self, b: int, n: int, q: int) -> np.ndarray:
        """``float64[size, PK_FIELDS]`` records of one queue in FIFO order (head first)."""
        C = self.capacity
        idx = (self.head[b, n, q] + np.arange(self.size[b, n, q])) % C
        return self.pkt[b, n, q, idx].copy()


@nb.njit(cache=True, inline="always")
def _write(pkt, b, n, q, i, tgen, src, dst, att, elig):
    pkt[b, n, q, i, 0] = tgen
    pkt[b, n, q, i, 1] = src
    pkt[b, n, q, i, 2] = dst
    pkt[b, n, q, i, 3] = att
    pkt[b, n, q, i, 4] = elig


@nb.njit(cache=True, inline="always")
def push_back(pkt, head, size, b, n, q, tgen, src, dst, att, elig):
    """Append a packet; returns False (and changes nothing) when the queue is full."""
    k = size[b, n, q]
    if k >= pkt.shape[3]:
        return False
    _write(pkt, b, n, q, (head[b, n, q] + k) % pkt.shape[3], tgen, src, dst, att, elig)
    size[b, n, q] = k + 1
    return True


@nb.njit(cache=True, inline="always")
def push_front(pkt, head, size, b, n, q, tgen, src, dst, att, elig):
    """Put a packet back at the head; returns False when the queue is full."""
    k = size[b, n, q]
    if k >= pkt.shape[3]:
        return False
    i = (head[b, n, q] - 1) % pkt.shape[3]
    _write(pkt, b, n, q, i, tgen, src, dst, att, elig)
    head[b, n, q] = i
    size[b, n, q] = k + 1
    return True


@nb.njit(cache=True, inline="always")
def head_index(head, b, n, q):
    """Ring index of the head packet (valid only when ``size > 0``)."""
    return head[b, n, q]


@nb.njit(cache=True, inline="always")
def pop_front(pkt, head, size, b, n, q):
    """Remove the head packet; returns its ring index (read its fields before pushing again)."""
    C = pkt.shape[3]
    i = head[b, n, q]
    head[b, n, q] = (i + 1) % C
    size[b, n, q] -= 1
    return i

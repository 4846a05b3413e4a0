"""Batched packet FIFO queues with per-packet arrival times and partial service.

Layout: ``B`` independent copies × ``N`` queues. Packet ``i`` (the i-th packet ever accepted by a
queue) keeps its arrival slot at ``arrival_slot[b, n, i % capacity]`` (a ring buffer that doubles
when needed). All packets of a queue have the same size ``packet_bits``; the head packet may be
partly served (``head_served_bits``), so remaining bits are implicit:
``backlog_bits = (n_arrived − n_done)·packet_bits − head_served_bits``.

Timing convention (used by every env in the project): packets arriving in slot ``t`` join at the
*start* of slot ``t`` and may be served in slot ``t``. Bits are served at a constant rate over
the slot, so a packet whose last bit is sent when a fraction ``f ∈ (0, 1]`` of the slot's
transmitted bits has gone out departs at ``t + f``:

* ``fractional=False`` (conflict graph, whole-slot accounting): ``delay = t − t_arrival + 1``
  slots, i.e. a packet served in its arrival slot has delay 1 (oracle C.3: sojourn = W + 1).
* ``fractional=True`` (cellular): ``delay = t − t_arrival + f`` slots, with
  ``f = (bits of this slot's transmission up to and including the packet's last bit) / (bits
  transmitted in this slot)``.

Conservation holds exactly at every step:
``generated = delivered + dropped + queued`` (``n_generated == n_done + n_dropped + backlog``).
Drops happen only at arrival when a queue already holds ``max_packets`` packets
(cause ``"overflow"``); with the default cap this only triggers in runaway unstable runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numba as nb
import numpy as np


@dataclass
class Deliveries:
    """Packets that completed in one slot, flattened over copies and devices.

    Attributes: ``batch[M]``, ``device[M]`` (int64), ``delay_slots[M]`` (float64), in FIFO order
    per device. ``count[B, N]`` is the number delivered per queue.
    """

    batch: np.ndarray
    device: np.ndarray
    delay_slots: np.ndarray
    count: np.ndarray


@nb.njit(cache=True)
def _enqueue(arrival_slot, n_arrived, n_done, n_generated, n_dropped, counts, slot, max_packets):
    B, N, C = arrival_slot.shape
    peak = 0
    for b in range(B):
        for n in range(N):
            v = n_arrived[b, n] - n_done[b, n] + counts[b, n]
            if v > peak:
                peak = v
    if peak > C and C < max_packets:
        return np.zeros((0, 0), np.int64), min(peak, max_packets)
    dropped = np.zeros((B, N), np.int64)
    for b in range(B):
        for n in range(N):
            c = counts[b, n]
            if c == 0:
                continue
            n_generated[b, n] += c
            room = max_packets - (n_arrived[b, n] - n_done[b, n])
            acc = c if c <= room else max(room, 0)
            if acc < c:
                dropped[b, n] = c - acc
                n_dropped[b, n] += c - acc
            start = n_arrived[b, n]
            for i in range(acc):
                arrival_slot[b, n, (start + i) % C] = slot
            n_arrived[b, n] = start + acc
    return dropped, 0


@nb.njit(cache=True)
def _serve(arrival_slot, n_arrived, n_done, head_served, bits, packet_bits, slot, fractional):
    B, N, C = arrival_slot.shape
    count = np.zeros((B, N), np.int64)
    served = np.zeros((B, N), np.float64)
    # pass 1: how many packets complete in each queue
    total = 0
    for b in range(B):
        for n in range(N):
            budget = bits[b, n]
            backlog = n_arrived[b, n] - n_done[b, n]
            if budget <= 0.0 or backlog == 0:
                continue
            need = packet_bits - head_served[b, n]
            if budget >= need:
                k = 1 + int((budget - need) // packet_bits)
                if k > backlog:
                    k = backlog
            else:
                k = 0
            count[b, n] = k
            total += k
    out_b = np.empty(total, np.int64)
    out_n = np.empty(total, np.int64)
    out_d = np.empty(total, np.float64)
    m = 0
    for b in range(B):
        for n in range(N):
            budget = bits[b, n]
            backlog = n_arrived[b, n] - n_done[b, n]
            if budget <= 0.0 or backlog == 0:
                continue
            used = 0.0
            k = count[b, n]
            for _ in range(k):
                used += packet_bits - head_served[b, n]
                head_served[b, n] = 0.0
                idx = n_done[b, n]
                a = arrival_slot[b, n, idx % C]
                if fractional:
                    d = slot - a + used / budget
                else:
                    d = slot - a + 1.0
                out_b[m] = b
                out_n[m] = n
                out_d[m] = d
                m += 1
                n_done[b, n] = idx + 1
            if n_done[b, n] < n_arrived[b, n]:
                rest = budget - used
                if rest > 0.0:
                    head_served[b, n] += rest
                    used = budget
            served[b, n] = used
    return count, served, out_b, out_n, out_d


@nb.njit(cache=True)
def _serve_whole(arrival_slot, n_arrived, n_done, head_served, n_packets, slot):
    """Serve up to ``n_packets[b, n]`` whole packets (a partly served head counts as one)."""
    B, N, C = arrival_slot.shape
    count = np.zeros((B, N), np.int64)
    total = 0
    for b in range(B):
        for n in range(N):
            k = min(n_packets[b, n], n_arrived[b, n] - n_done[b, n])
            if k > 0:
                count[b, n] = k
                total += k
    out_b = np.empty(total, np.int64)
    out_n = np.empty(total, np.int64)
    out_d = np.empty(total, np.float64)
    m = 0
    for b in range(B):
        for n in range(N):
            for _ in range(count[b, n]):
                idx = n_done[b, n]
                out_b[m] = b
                out_n[m] = n
                out_d[m] = slot - arrival_slot[b, n, idx % C] + 1.0
                m += 1
                n_done[b, n] = idx + 1
            if count[b, n] > 0:
                head_served[b, n] = 0.0
    return count, out_b, out_n, out_d


@nb.njit(cache=True)
def _relayout(arrival_slot, n_done, n_arrived, new_c):
    """Copy every queued packet's arrival slot into a ring buffer of capacity ``new_c``."""
    B, N, C = arrival_slot.shape
    new = np.zeros((B, N, new_c), np.int64)
    for b in range(B):
        for n in range(N):
            for i in range(n_done[b, n], n_arrived[b, n]):
                new[b, n, i % new_c] = arrival_slot[b, n, i % C]
    return new


@dataclass
class PacketQueues:
    """State of ``B × N`` packet FIFO queues (all arrays are updated in place).

    Attributes:
        packet_bits: size of every packet (bits; use 1.0 to count whole packets).
        arrival_slot: ``int64[B, N, C]`` ring buffer of arrival slots.
        n_arrived, n_done, n_generated, n_dropped: ``int64[B, N]`` cumulative counters.
        head_served_bits: ``float64[B, N]`` bits already sent of each head packet.
        max_packets: per-queue cap; arrivals beyond it are dropped (cause ``overflow``).

    Example:
        >>> q = PacketQueues.empty(1, 1, packet_bits=100.0)
        >>> _ = q.enqueue(np.array([[2]]), slot=0)
        >>> d = q.serve_bits(np.array([[150.0]]), slot=0, fractional=True)
        >>> d.delay_slots.tolist(), q.backlog_bits().tolist()
        ([0.6666666666666666], [[50.0]])
    """

    packet_bits: float
    arrival_slot: np.ndarray
    n_arrived: np.ndarray
    n_done: np.ndarray
    n_generated: np.ndarray
    n_dropped: np.ndarray
    head_served_bits: np.ndarray
    max_packets: int = 1_000_000
    extra: dict = field(default_factory=dict)

    @classmethod
    def empty(cls, batch: int, n_queues: int, packet_bits: float, capacity: int = 64,
              max_packets: int = 1_000_000) -> "PacketQueues":
        if not (packet_bits > 0 and np.isfinite(packet_bits)):
            raise ValueError(f"packet_bits must be a finite number > 0, got {packet_bits}")
        z = lambda: np.zeros((batch, n_queues), np.int64)  # noqa: E731
        return cls(float(packet_bits), np.zeros((batch, n_queues, capacity), np.int64), z(), z(),
                   z(), z(), np.zeros((batch, n_queues)), int(max_packets))

    # ----------------------------------------------------------------- views
    def backlog_packets(self) -> np.ndarray:
        """``int64[B, N]`` packets in queue (a partly served head counts as one)."""
        return self.n_arrived - self.n_done

    def backlog_bits(self) -> np.ndarray:
        """``float64[B, N]`` bits still to send."""
        return (self.n_arrived - self.n_done) * self.packet_bits - self.head_served_bits

    def head_arrival_slot(self) -> np.ndarray:
        """``int64[B, N]`` arrival slot of each head packet (−1 where empty)."""
        C = self.arrival_slot.shape[2]
        head = np.take_along_axis(self.arrival_slot, (self.n_done % C)[..., None], 2)[..., 0]
        return np.where(self.n_arrived > self.n_done, head, -1)

    # ------------------------------------------------------------- updates
    def clear(self, copies: np.ndarray) -> np.ndarray:
        """Empty every queue of the selected copies (``bool[B]``), e.g. to restart a training
        episode. Removed packets leave the queue like served ones (``n_done``, so
        ``n_generated = n_done + n_dropped + queued`` still holds) and are also counted in
        ``extra["cleared"]``. Returns ``int64[B, N]`` packets removed."""
        sel = np.asarray(copies, bool)
        removed = np.where(sel[:, None], self.n_arrived - self.n_done, 0)
        self.extra["cleared"] = self.extra.get("cleared", 0) + removed
        self.n_done[sel] = self.n_arrived[sel]
        self.head_served_bits[sel] = 0.0
        return removed

    def _grow(self, needed: int) -> None:
        C = self.arrival_slot.shape[2]
        new_c = C
        while new_c < needed:
            new_c *= 2
        self.arrival_slot = _relayout(self.arrival_slot, self.n_done, self.n_arrived, new_c)

    def enqueue(self, counts: np.ndarray, slot: int) -> np.ndarray:
        """Append ``counts[B, N]`` packets arriving at ``slot``; returns ``dropped[B, N]``."""
        while True:
            dropped, need = _enqueue(self.arrival_slot, self.n_arrived, self.n_done,
                                     self.n_generated, self.n_dropped, counts, int(slot),
                                     int(self.max_packets))
            if need == 0:
                return dropped
            self._grow(need)

    def serve_bits(self, bits: np.ndarray, slot: int, fractional: bool) -> Deliveries:
        """Serve up to ``bits[B, N]`` bits from each queue in FIFO order during ``slot``.

        Returns the packets completed in this slot with their exact delays (see module doc).
        The bits actually used are in ``Deliveries``' companion ``self.extra['served_bits']``.
        """
        count, served, ob, on, od = _serve(self.arrival_slot, self.n_arrived, self.n_done,
                                           self.head_served_bits, bits.astype(np.float64, copy=False),
                                           self.packet_bits, int(slot), bool(fractional))
        self.extra["served_bits"] = served
        return Deliveries(ob, on, od, count)

    def serve_packets(self, n_packets: np.ndarray, slot: int) -> Deliveries:
        """Serve up to ``n_packets[B, N]`` whole packets per queue (unit-service networks such
        as the conflict graph); delays in whole slots (``t − t_arrival + 1``)."""
        count, ob, on, od = _serve_whole(self.arrival_slot, self.n_arrived, self.n_done,
                                         self.head_served_bits,
                                         np.asarray(n_packets, np.int64), int(slot))
        return Deliveries(ob, on, od, count)

    def copy(self) -> "PacketQueues":
        return PacketQueues(self.packet_bits, self.arrival_slot.copy(), self.n_arrived.copy(),
                            self.n_done.copy(), self.n_generated.copy(), self.n_dropped.copy(),
                            self.head_served_bits.copy(), self.max_packets, dict(self.extra))

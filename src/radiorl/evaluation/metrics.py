"""Per-episode QoS metrics from the env's per-step ``info``.

:class:`EpisodeMetrics` consumes ``info`` dicts of a batched env and produces, per copy: packet
delay statistics (mean, percentiles, max) over every delivered packet, throughput, drops by
cause, the fraction of collided transmissions, and an explicit ``unstable`` verdict.

Instability rule (our choice; every constant is an :class:`StabilityRule` field): a copy is
``unstable`` if it dropped packets for buffer overflow or lifetime expiry (ttl), was terminated by a queue threshold, or
its total backlog grows over the second half of the episode — least-squares slope above
``slope_per_device`` packets/slot/device *and* final backlog above
``growth_factor × first-half mean + margin_per_device × N``. Delay numbers of an unstable copy
describe only the packets that got through and are never reported without the verdict.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StabilityRule:
    slope_per_device: float = 2e-3
    growth_factor: float = 2.0
    margin_per_device: float = 2.0
    #: drop causes that mean the queues cannot keep up (PHY losses such as retry-limit drops
    #: are reported but are not instability)
    instability_causes: tuple = ("overflow", "ttl")


class EpisodeMetrics:
    """Accumulates an episode of ``B`` copies × ``N`` devices.

    Example:
        >>> m = EpisodeMetrics(batch=1, n_devices=8)
        >>> # for each step: m.update(info)
        >>> # rows = m.summary(slot_ms=None)
    """

    def __init__(self, batch: int, n_devices: int, rule: StabilityRule = StabilityRule()):
        self.B, self.N, self.rule = batch, n_devices, rule
        self.delays = [[] for _ in range(batch)]
        self.delivered = np.zeros(batch, np.int64)
        self.dropped: dict[str, np.ndarray] = {}
        self.transmissions = np.zeros(batch, np.int64)
        self.collisions = np.zeros(batch, np.int64)
        self.failures = np.zeros(batch, np.int64)
        self.reward_sum = np.zeros(batch)
        self.served_bits = np.zeros(batch)
        self.backlog = []            # [T, B] total packets in queue at end of slot
        self.slots = 0
        self.terminated = np.zeros(batch, bool)

    def update(self, info: dict, backlog_packets: np.ndarray, terminated=None,
               rewards=None) -> None:
        """Add one slot: ``info`` of ``env.step`` and the end-of-slot ``backlog_packets[B, N]``
        (``info["backlog_packets"]``); ``rewards[B, K]`` adds the mean reward per step."""
        d = info["deliveries"]
        if len(d.batch):
            if self.B == 1:
                self.delays[0].append(d.delay_slots)
            else:
                order = np.argsort(d.batch, kind="stable")
                cuts = np.searchsorted(d.batch[order], np.arange(1, self.B))
                for b, part in enumerate(np.split(d.delay_slots[order], cuts)):
                    if len(part):
                        self.delays[b].append(part)
        self.delivered += d.count.sum(axis=1)
        for cause, arr in info["dropped"].items():
            self.dropped.setdefault(cause, np.zeros(self.B, np.int64))
            self.dropped[cause] += np.asarray(arr).sum(axis=1)
        self.transmissions += info["transmissions"].sum(axis=1)
        if "collisions" in info:
            self.collisions += info["collisions"].sum(axis=1)
        if "failures" in info:
            self.failures += info["failures"].sum(axis=1)
        if rewards is not None:
            self.reward_sum += np.asarray(rewards, float).mean(axis=1)
        if "served_bits" in info:
            self.served_bits += info["served_bits"].sum(axis=1)
        self.backlog.append(backlog_packets.sum(axis=1))
        if terminated is not None:
            self.terminated |= np.asarray(terminated, bool)
        self.slots += 1

    def verdict(self) -> tuple[np.ndarray, np.ndarray]:
        """``(unstable[B], slope[B])`` with the slope in packets/slot/device."""
        bl = np.asarray(self.backlog, float)            # [T, B]
        T = len(bl)
        unstable = self.terminated.copy()
        for cause, arr in self.dropped.items():
            if cause in self.rule.instability_causes:
                unstable |= arr > 0
        slope = np.zeros(self.B)
        if T >= 8:
            half = bl[T // 2:]
            x = np.arange(len(half), dtype=float)
            x -= x.mean()
            slope = (x[:, None] * (half - half.mean(axis=0))).sum(0) / (x ** 2).sum() / self.N
            first = bl[: T // 2].mean(axis=0)
            grow = (slope > self.rule.slope_per_device) & (
                bl[-1] > self.rule.growth_factor * first + self.rule.margin_per_device * self.N)
            unstable |= grow
        return unstable, slope

    def summary(self, slot_ms: float | None = None, percentiles=(50, 90, 95, 99)) -> list[dict]:
        """One dict per copy. Delays in ms when ``slot_ms`` is given, else in slots."""
        unstable, slope = self.verdict()
        scale = slot_ms if slot_ms else 1.0
        rows = []
        for b in range(self.B):
            d = np.concatenate(self.delays[b]) * scale if self.delays[b] else np.zeros(0)
            row = {"slots": self.slots, "delivered": int(self.delivered[b]),
                   "mean_delay": float(d.mean()) if len(d) else float("nan"),
                   "max_delay": float(d.max()) if len(d) else float("nan")}
            for p in percentiles:
                row[f"p{p}_delay"] = float(np.percentile(d, p)) if len(d) else float("nan")
            row["throughput_pkt_per_slot"] = self.delivered[b] / max(self.slots, 1)
            if slot_ms:
                row["throughput_mbps"] = self.served_bits[b] / (self.slots * slot_ms * 1e-3) / 1e6
            for cause, arr in sorted(self.dropped.items()):
                row[f"dropped_{cause}"] = int(arr[b])
            row["collided_fraction"] = (self.collisions[b] / self.transmissions[b]
                                        if self.transmissions[b] else 0.0)
            n_drop = sum(int(arr[b]) for arr in self.dropped.values())
            row["packet_loss_rate"] = (n_drop / (n_drop + self.delivered[b])
                                       if n_drop + self.delivered[b] else 0.0)
            if self.failures[b]:
                row["failed_fraction"] = self.failures[b] / max(self.transmissions[b], 1)
            row["mean_reward"] = self.reward_sum[b] / max(self.slots, 1)
            row["final_backlog_pkts"] = float(self.backlog[-1][b]) if self.backlog else 0.0
            row["backlog_slope"] = float(slope[b])
            row["unstable"] = bool(unstable[b])
            row["delay_unit"] = "ms" if slot_ms else "slots"
            rows.append(row)
        return rows

    def all_delays(self, b: int = 0) -> np.ndarray:
        return np.concatenate(self.delays[b]) if self.delays[b] else np.zeros(0)

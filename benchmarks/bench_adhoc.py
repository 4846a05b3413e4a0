"""MF-TDMA ad hoc simulator throughput (frames/s), single thread, equal-share requests.

Rows: ``adhoc-9-4:5`` at B = 1 and B = 64, and ``adhoc-1000`` at B = 1. Baseline measured in
the same run: a plain per-packet Python implementation of the same model (deques of packet
records, per-node and per-RB loops, Python's ``random``), one network at a time — the way an
event simulator of this protocol is usually written. It also prints the mean delay of both,
as a sanity check that they simulate the same thing (they use different random streams, so
the numbers agree statistically, not exactly).

Usage: python benchmarks/bench_adhoc.py [--seconds S]
"""
from __future__ import annotations

import argparse
import collections
import math
import os
import random
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from radiorl.envs.scenarios import make_env  # noqa: E402


class PlainAdhoc:
    """Plain-Python reference of the env's model for one network (B = 1)."""

    def __init__(self, env, state, seed=0):
        p = env.params
        self.p = p
        self.N = p.n_nodes
        self.rng = random.Random(seed)
        self.rates = list(env.rates_pps)
        self.next_hop = state.next_hop[0].tolist()
        self.ps = state.link_ps[0].tolist()
        self.dests = [list(state.dest[0, i, :state.dest_cnt[0, i]]) for i in range(self.N)]
        self.domain = [list(state.dom[0, i, :state.dom_cnt[0, i]]) for i in range(self.N)]
        self.G = [collections.deque() for _ in range(self.N)]
        self.F = [collections.deque() for _ in range(self.N)]
        self.next_arr = [self.rng.expovariate(r / 1000.0) if r > 0 else math.inf
                         for r in self.rates]
        self.t = 0
        self.delays = []

    def allocate(self, req):
        p, n_rbs = self.p, self.p.n_rbs
        if p.reuse == "global":
            s = sum(req)
            if s <= n_rbs:
                want = list(req)
            else:
                want = [a * n_rbs // s for a in req]
                rem = sorted(range(self.N), key=lambda i: (-(req[i] * n_rbs % s),
                                                           self.rng.random()))
                for i in rem[: n_rbs - sum(want)]:
                    want[i] += 1
        else:
            want = []
            for i in range(self.N):
                s = req[i] + sum(req[j] for j in self.domain[i])
                want.append(req[i] if s <= n_rbs else req[i] * n_rbs // s)
        perm = list(range(n_rbs))
        self.rng.shuffle(perm)
        order = list(range(self.N))
        self.rng.shuffle(order)
        owner = [set() for _ in range(self.N)]
        if p.reuse == "global":
            k = 0
            for i in order:
                owner[i].update(perm[k:k + want[i]])
                k += want[i]
        else:
            for i in order:
                blocked = set().union(*(owner[j] for j in self.domain[i])) if self.domain[i] \
                    else set()
                for r in perm:
                    if len(owner[i]) >= want[i]:
                        break
                    if r not in blocked:
                        owner[i].add(r)
        return owner

    def frame(self, req):
        p = self.p
        owner = self.allocate(req)
        by_slot = [[] for _ in range(p.n_slots)]
        for i in range(self.N):
            for r in owner[i]:
                by_slot[r // p.n_channels].append((r % p.n_channels, i))
        for m in range(p.n_slots):
            g = self.t * p.n_slots + m
            s = g * p.slot_ms
            for i in range(self.N):
                while self.next_arr[i] < s:
                    tg = self.next_arr[i]
                    self.next_arr[i] = tg + self.rng.expovariate(self.rates[i] / 1000.0)
                    if self.dests[i]:
                        if len(self.G[i]) < p.queue_capacity:
                            self.G[i].append([tg, i, self.rng.choice(self.dests[i]), 0, g])
            sent = []
            for _, i in sorted(by_slot[m]):
                while True:
                    if self.F[i] and self.F[i][0][4] <= g:
                        q = self.F[i]
                    elif self.G[i]:
                        q = self.G[i]
                    else:
                        q = None
                        break
                    if s - q[0][0] > p.ttl_ms:
                        q.popleft()
                        continue
                    break
                if q is not None:
                    pk = q.popleft()
                    sent.append((i, q, pk))
            ok = [self.rng.random() < self.ps[i][self.next_hop[i][pk[2]]] for i, q, pk in sent]
            for (i, q, pk), o in reversed(list(zip(sent, ok))):
                if not o:
                    pk[3] += 1
                    if pk[3] < p.max_attempts:
                        q.appendleft(pk)
            for (i, q, pk), o in zip(sent, ok):
                if o:
                    nh = self.next_hop[i][pk[2]]
                    if nh == pk[2]:
                        self.delays.append(s + p.slot_ms - pk[0])
                    elif len(self.F[nh]) < p.queue_capacity:
                        self.F[nh].append([pk[0], pk[1], pk[2], 0, g + 1])
        self.t += 1


def equal_request(env):
    return np.full((env.batch, env.n_agents), math.ceil(40 / env.n_agents), np.int64) \
        if env.params.reuse == "global" else None


def measure_env(name, batch, seconds, windows=5):
    env = make_env(name, "medium", batch, episode_frames=10 ** 9)
    obs, st = env.reset(0)
    req = equal_request(env)
    if req is None:                                          # local reuse: 2-hop domain share
        req = np.ceil(40 / (st.dom_cnt + 1)).astype(np.int64)
    for _ in range(20):
        env.step(st, req)
    rates, delays = [], []
    for _ in range(windows):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / windows:
            obs, r, te, tr, info, st = env.step(st, req)
            delays.append(info["delivery_delay_ms"])
            n += 1
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates)), float(np.concatenate(delays).mean())


def delay_same_frames(name, frames):
    """Mean delay of ours over the first ``frames`` frames from reset (untimed), to compare with
    the plain baseline over the same frames of the same topology."""
    env = make_env(name, "medium", 1, episode_frames=10 ** 9)
    obs, st = env.reset(0)
    req = equal_request(env)
    if req is None:
        req = np.ceil(40 / (st.dom_cnt + 1)).astype(np.int64)
    d = []
    for _ in range(frames):
        obs, r, te, tr, info, st = env.step(st, req)
        d.append(info["delivery_delay_ms"])
    return float(np.concatenate(d).mean())


def measure_plain(name, seconds):
    env = make_env(name, "medium", 1, episode_frames=10 ** 9)
    obs, st = env.reset(0)
    sim = PlainAdhoc(env, st)
    req = equal_request(env)
    req = (req[0] if req is not None else np.ceil(40 / (st.dom_cnt[0] + 1))).astype(int).tolist()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sim.frame(req)
        n += 1
    rate = n / (time.perf_counter() - t0)
    return rate, float(np.mean(sim.delays)) if sim.delays else math.nan, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    print("| scenario | B | frames/s (median) | frame-copies/s | plain B=1 frames/s | ratio | "
          "mean delay ours / plain, same frames (ms) | target |")
    print("|---|---|---|---|---|---|---|---|")
    plain = {}
    for name, batch, target in (("adhoc-9-4:5", 1, ""), ("adhoc-9-4:5", 64, ""),
                                ("adhoc-1000", 1, ">= 100 frames/s")):
        if name not in plain:
            plain[name] = measure_plain(name, a.seconds)
        fps, _ = measure_env(name, batch, a.seconds)
        pf, pd, pn = plain[name]
        d = delay_same_frames(name, pn)
        met = "" if not target else (" **met**" if fps >= 100 else " **not met**")
        print(f"| {name} | {batch} | {fps:,.0f} | {fps * batch:,.0f} | {pf:,.1f} | "
              f"{fps * batch / pf:,.0f}x | {d:.2f} / {pd:.2f} | {target}{met} |", flush=True)


if __name__ == "__main__":
    main()

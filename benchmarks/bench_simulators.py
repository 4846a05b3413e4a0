"""Simulator throughput (slots/s and slot-copies/s) with a trivial fixed policy, single thread.

Baseline measured in the same run: a plain per-packet Python implementation of the same model
(lists of packet timestamps, per-device loops; the style of the public reference code), at B = 1.
Usage: python benchmarks/bench_simulators.py [--seconds S]
"""
from __future__ import annotations

import argparse
import collections
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from radiorl.envs.scenarios import make_env  # noqa: E402


def trivial_actions(env):
    """Every agent serves its first device on every subband (max power on cellular)."""
    a = np.ones((env.batch, env.n_agents, env.n_subbands), np.int64)
    if env.slot_ms is not None:
        return {"device": a, "power_level": np.full_like(a, len(env.levels_w) - 1)}
    return a


REPEATS = 5


def _rates(fn, seconds, chunk):
    """Run ``fn`` (``chunk`` slots per call) in ``REPEATS`` windows of ``seconds / REPEATS``;
    returns the slots/s of each window (the host is shared: report median and best)."""
    out = []
    for _ in range(REPEATS):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / REPEATS:
            fn()
            n += chunk
        out.append(n / (time.perf_counter() - t0))
    return np.array(out)


def measure(name, load, batch, seconds):
    """Median and best slots/s of the batched env with the trivial policy."""
    env = make_env(name, load, batch, episode_slots=10 ** 9)
    obs, s = env.reset(seed=0)
    act = trivial_actions(env)
    for _ in range(20):
        obs, r, te, tr, info, s = env.step(s, act)

    def run():
        for _ in range(10):
            env.step(s, act)
    r = _rates(run, seconds, 10)
    return np.median(r), r.max()


class PlainConflictGraph:
    """Per-packet, per-device Python reference of the conflict-graph model."""

    def __init__(self, env, seed=0):
        self.rng = np.random.default_rng(seed)
        self.N, self.H = env.n_devices, env.n_subbands
        self.inn = [list(np.nonzero(env.conflict[:, n])[0]) for n in range(self.N)]
        self.dev = env.devices_of_agent
        self.q = [collections.deque() for _ in range(self.N)]
        self.lam = env.load
        self.t = 0

    def step(self, actions):
        for n in range(self.N):
            for _ in range(self.rng.poisson(self.lam[n])):
                self.q[n].append(self.t)
        tx = [[False] * self.N for _ in range(self.H)]
        for k, devs in enumerate(self.dev):
            for h in range(self.H):
                a = actions[k][h]
                if a > 0 and self.q[devs[a - 1]]:
                    tx[h][devs[a - 1]] = True
        delays = []
        for h in range(self.H):
            for n in range(self.N):
                if tx[h][n] and not any(tx[h][i] for i in self.inn[n]) and self.q[n]:
                    delays.append(self.t - self.q[n].popleft() + 1)
        rewards = [-sum(len(self.q[n]) for n in devs) for devs in self.dev]
        self.t += 1
        return delays, rewards


class PlainCellular:
    """Per-link Python reference of the cellular model (loops over APs, devices, subbands)."""

    def __init__(self, env, seed=0):
        self.rng = np.random.default_rng(seed)
        self.env = env
        K, N, H = env.n_agents, env.n_devices, env.n_subbands
        self.K, self.N, self.H = K, N, H
        self.beta = (self.rng.standard_normal((H, K, N)) + 1j * self.rng.standard_normal((H, K, N))) / np.sqrt(2)
        self.q = [collections.deque() for _ in range(N)]
        self.t = 0

    def step(self, dev_choice, power):
        e, K, N, H = self.env, self.K, self.N, self.H
        rho = e.rho
        for h in range(H):
            for k in range(K):
                for n in range(N):
                    z = (self.rng.standard_normal() + 1j * self.rng.standard_normal()) / np.sqrt(2)
                    self.beta[h, k, n] = rho * self.beta[h, k, n] + np.sqrt(1 - rho * rho) * z
        for n in range(N):
            for _ in range(self.rng.poisson(e.load_per_slot[n])):
                self.q[n].append([self.t, e.params.packet_bits])
        bits = [0.0] * N
        for h in range(H):
            for k in range(K):
                n = dev_choice[k]
                if n < 0 or not self.q[n]:
                    continue
                sig = e.alpha[k, n] * abs(self.beta[h, k, n]) ** 2 * power
                intf = sum(e.alpha[j, n] * abs(self.beta[h, j, n]) ** 2 * power
                           for j in range(K) if j != k and dev_choice[j] >= 0)
                sinr = min(sig / (intf + e.noise_w), e.sinr_cap)
                bits[n] += e.rate_scale * np.log2(1 + sinr)
        delays = []
        for n in range(N):
            b = np.floor(bits[n])
            while b > 0 and self.q[n]:
                take = min(b, self.q[n][0][1])
                self.q[n][0][1] -= take
                b -= take
                if self.q[n][0][1] <= 0:
                    delays.append(self.t - self.q[n].popleft()[0] + 1)
        self.t += 1
        return delays


def measure_plain(kind, seconds):
    if kind == "conflict":
        env = make_env("conflict-8", "medium", 1)
        sim = PlainConflictGraph(env)
        act = [[1] * env.n_subbands for _ in range(env.n_agents)]
        fn = lambda: sim.step(act)  # noqa: E731
    else:
        env = make_env("cellular-19-random", "medium", 1)
        sim = PlainCellular(env)
        choice = [int(d[0]) for d in env.devices_of_agent]
        fn = lambda: sim.step(choice, env.p_max_w)  # noqa: E731
    return np.median(_rates(fn, seconds, 1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    plain = {"conflict-8": measure_plain("conflict", args.seconds),
             "cellular-19-random": measure_plain("cellular", args.seconds)}
    target = {("conflict-8", 1): ("slots/s", 50_000), ("cellular-19-random", 1): ("slots/s", 5_000),
              ("cellular-19-random", 64): ("slot-copies/s", 50_000)}
    print(f"{'scenario':20s} {'B':>4s} {'slots/s':>10s} {'slot-copies/s':>14s} {'best copies/s':>14s} "
          f"{'plain B=1':>10s} {'ratio':>8s}  target (on the median)")
    for name in ("conflict-8", "cellular-19-random"):
        for B in (1, 64):
            med, best = measure(name, "medium", B, args.seconds)
            unit, tv = target.get((name, B), ("", None))
            tgt = ""
            if tv:
                val = med if unit == "slots/s" else med * B
                tgt = f"{unit} >= {tv:,}: {'met' if val >= tv else 'NOT met'}"
            print(f"{name:20s} {B:4d} {med:10,.0f} {med * B:14,.0f} {best * B:14,.0f} "
                  f"{plain[name]:10,.0f} {med * B / plain[name]:7.1f}x  {tgt}")
    print(f"(median and best of {REPEATS} windows of {args.seconds / REPEATS:.1f} s each; ratio = "
          "median slot-copies/s over the plain simulator's median slots/s)")


if __name__ == "__main__":
    main()

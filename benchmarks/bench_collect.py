"""Offline dataset generation speed (agent-frames/s) on this machine's 2 cores.

Ours: ``radiorl.data.collect.collect`` (the same code as ``radiorl collect``) with the paper's
recipe (4 scenarios, 6,000-frame trajectories, default behaviours) at a reduced number of
trajectories, 2 workers, HDF5 file included. Baseline measured in the same run: the plain
per-packet Python reference simulator of ``bench_adhoc.py`` running the equal-share policy on
one network and appending per-frame records to Python lists, one process (as a per-network
event-driven generator would). Prints the projection for the paper dataset (1,000 x 6,000
frames, ~51M agent-frames) against the 30-minute target.

Usage: python benchmarks/bench_collect.py [--episodes 128] [--baseline-seconds 10]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(__file__))

import numpy as np  # noqa: E402

from bench_adhoc import PlainAdhoc  # noqa: E402
from radiorl.data.collect import collect, preset_config  # noqa: E402
from radiorl.envs.scenarios import make_env  # noqa: E402

PAPER_AGENT_FRAMES = 50_976_000


def baseline(seconds: float) -> float:
    env = make_env("adhoc-9-4:5", "medium", 1, episode_frames=10 ** 9)
    obs, st = env.reset(0)
    sim = PlainAdhoc(env, st)
    req = [5] * env.n_agents
    rows = []
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        sim.frame(req)
        rows.append([(len(sim.G[i]), len(sim.F[i]), req[i]) for i in range(sim.N)])
        n += 1
    return n * env.n_agents / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--episodes", type=int, default=128)
    ap.add_argument("--baseline-seconds", type=float, default=10.0)
    a = ap.parse_args()
    base = baseline(a.baseline_seconds)
    with tempfile.TemporaryDirectory() as d:
        cfg = preset_config("paper", episodes=a.episodes)
        t0 = time.perf_counter()
        res = collect(os.path.join(d, "bench.h5"), cfg, workers=2, show_progress=False)
        wall = time.perf_counter() - t0
        size = os.path.getsize(os.path.join(d, "bench.h5"))
    ours = res["agent_frames_now"] / wall
    print("| generator | agent-frames/s | paper dataset (51M agent-frames) | ratio |")
    print("|---|---|---|---|")
    print(f"| plain Python, 1 process | {base:,.0f} | {PAPER_AGENT_FRAMES / base / 60:,.1f} min | 1x |")
    print(f"| radiorl collect, 2 workers ({a.episodes} x 6,000 frames, HDF5 {size / 1e6:.0f} MB) "
          f"| {ours:,.0f} | {PAPER_AGENT_FRAMES / ours / 60:,.1f} min | {ours / base:,.0f}x |")
    print(f"target: paper dataset <= 30 min -> "
          f"{'met' if PAPER_AGENT_FRAMES / ours <= 1800 else 'NOT met'}")


if __name__ == "__main__":
    main()

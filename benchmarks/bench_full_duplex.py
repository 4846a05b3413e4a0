"""Full-duplex env throughput: copy-steps/s of one batched call vs a loop of B = 1 envs, and
the cost of the reference policies (single thread).

Usage: python benchmarks/bench_full_duplex.py [--batch B] [--steps T] [--mmse]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from radiorl.envs.full_duplex import FullDuplexEnv, FullDuplexParams  # noqa: E402
from radiorl.schedulers.full_duplex import mrt_action, optimize_sum_rate  # noqa: E402


def batched(env, batch, steps, actions):
    _, s = env.reset(seed=0, batch=batch)
    t0 = time.perf_counter()
    for t in range(steps):
        _, _, _, _, _, s = env.step(s, actions[t % len(actions)])
    return batch * steps / (time.perf_counter() - t0)


def looped(env, batch, steps, actions):
    states = [env.reset(seed=0, batch=1, first_copy=b)[1] for b in range(batch)]
    t0 = time.perf_counter()
    for t in range(steps):
        a = actions[t % len(actions)]
        for b in range(batch):
            states[b] = env.step(states[b], a[b:b + 1])[5]
    return batch * steps / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--mmse", action="store_true", help="MMSE receivers (76/77-dim actions)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    env = FullDuplexEnv(FullDuplexParams(mmse_receiver=args.mmse))
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, (args.batch, env.action_dim)) for _ in range(8)]
    fast = batched(env, args.batch, args.steps, actions)
    slow = looped(env, args.batch, max(args.steps // 10, 2), actions)
    print(f"env steps (B={args.batch}, action_dim={env.action_dim}): batched {fast:,.0f} "
          f"copy-steps/s, B=1 loop {slow:,.0f} copy-steps/s, ratio {fast / slow:.1f}x")
    _, s = env.reset(seed=1, batch=64)
    t0 = time.perf_counter()
    mrt_action(env, s, "waterfill")
    t_mrt = time.perf_counter() - t0
    t0 = time.perf_counter()
    optimize_sum_rate(env, s)
    t_opt = time.perf_counter() - t0
    print(f"references on 64 drops: MRT {t_mrt * 1e3:.1f} ms, sum-rate optimizer "
          f"(300 iterations x 4 restarts) {t_opt:.2f} s")


if __name__ == "__main__":
    main()

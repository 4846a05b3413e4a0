"""Per-slot decision time of the cellular baselines (N = 57, K = 19, H = 3, single thread), as
in Zhang & Guo Table IV (measured on the hexagonal network, Fig. 6a).

Each policy acts on real queue states and channels of a running episode (LLQ keeps the network
moving). Baseline measured in the same run: FP and WMMSE written the plain way (per-link Python
loops, over all 57 device links of each subband, full-power start, 100 iterations / 1e-3: the
reference code's approach), on the same instances. Paper Table IV: FP 58.1 ms, WMMSE 926.9 ms,
FITLinQ 5.2 ms, greedy 0.17 ms (4-core i7-1165G7).

Usage: python benchmarks/bench_policies.py [--slots N]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from radiorl.envs.base import PolicyView  # noqa: E402
from radiorl.envs.scenarios import make_env  # noqa: E402
from radiorl.schedulers import powercontrol as pc  # noqa: E402
from radiorl.schedulers.policies import make_policy  # noqa: E402


def snapshots(n, load="heavy", warmup=200):
    """``n`` (state, view) pairs from an LLQ-driven episode."""
    env = make_env("cellular-19-hex", load, 1, episode_slots=10 ** 9)
    obs, s = env.reset(seed=0)
    llq = make_policy("llq", env)
    ps = llq.reset(env, 1, 0)
    out = []
    for t in range(warmup + n * 5):
        a, ps = llq.act(obs, env.policy_view(s, llq.requires), ps)
        if t >= warmup and (t - warmup) % 5 == 0:
            out.append((obs.copy(), s.zeta_bits.copy(), s.gain.copy()))
        obs, r, te, tr, info, s = env.step(s, a)
    return env, out


def time_policy(env, name, snaps):
    pol = make_policy(name, env)
    ps = pol.reset(env, 1, 0)
    times = []
    for obs, q, g in snaps:
        data = {"queues": q}
        if "global_csi" in pol.requires:
            data["csi"] = g
        v = PolicyView(data, pol.requires)
        t0 = time.perf_counter()
        a, ps = pol.act(obs, v, ps)
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1e3


def time_plain(env, solver, snaps, limit):
    loop = pc.plain_fp_loop if solver == "fp" else pc.plain_wmmse_loop
    times = []
    for obs, q, g in snaps[:limit]:
        w = q[0] / max(q[0].sum(), 1e-12)
        t0 = time.perf_counter()
        for h in range(env.n_subbands):
            G = g[0, h][env.ap_of_device, :].T               # G[k, j]: from AP(j) to device k
            loop(G.astype(float), w, env.p_max_w, env.noise_w)
        times.append(time.perf_counter() - t0)
    return np.array(times) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--slots", type=int, default=60)
    ap.add_argument("--plain-slots", type=int, default=5)
    args = ap.parse_args()
    env, snaps = snapshots(args.slots)
    res = {n: time_policy(env, n, snaps) for n in ("llq", "fair-itlinq", "fp", "wmmse")}
    plain = {s: time_plain(env, s, snaps, args.plain_slots) for s in ("fp", "wmmse")}
    paper = {"llq": 0.166, "fair-itlinq": 5.223, "fp": 58.131, "wmmse": 926.882}
    print(f"{'policy':12s} {'mean ms':>9s} {'p95 ms':>8s} {'plain-loop ms':>14s} {'speed-up':>9s} "
          f"{'paper ms':>9s}  target")
    for n, t in res.items():
        pl = plain.get(n)
        tgt = "<= 3 ms: " + ("met" if t.mean() <= 3 else "NOT met") if n in ("fp", "wmmse") else ""
        print(f"{n:12s} {t.mean():9.3f} {np.percentile(t, 95):8.3f} "
              f"{(f'{pl.mean():14.1f}' if pl is not None else ' ' * 14)} "
              f"{(f'{pl.mean() / t.mean():8.0f}x' if pl is not None else ' ' * 9)} "
              f"{paper[n]:9.3f}  {tgt}")


if __name__ == "__main__":
    main()

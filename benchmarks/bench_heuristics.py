"""Per-call time of the classical heuristics (radiorl.schedulers.graph / .itlinq).

Run: ``python benchmarks/bench_heuristics.py [--calls 2000]``

* Cellular: ``llq_cellular_schedule`` and Fair-ITLinQ (hexagonal preset, random priority) at
  B=1, H=3, K=19, N=57 on random 19-cell instances (hexagonal lattice with two rings, 500 m
  cells, 3 devices per cell uniform in the hexagon at >= 35 m from the AP, path loss
  128.1 + 37.6 log10(d_km) dB, Rayleigh fading per subband, P = 23 dBm, noise -114 dBm).
* Conflict graph: GMS, Q-CSMA (one slot, state fed back) and LLQ on the 8-device graph of
  ``specs/cellular-conflict.md`` (H = 3, agent k owns devices 2k, 2k+1).

Each radiorl function is compared with a straightforward pure-Python loop implementation of the
same algorithm written below ("plain"), timed in the same run on the same inputs (given to it as
Python lists, converted outside the timed region). A second table repeats the measurement with
B = 256 copies per call (``--batch``), where the plain version loops over the copies. Timings
are single thread: the thread environment variables are set before numpy is imported. Inputs
cycle through pre-drawn instances (64 at B=1, 4 at B=256); the first 50 calls (numba
compilation, caches) are excluded as warm-up.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from radiorl.schedulers.graph import (gms_schedule, llq_conflict_schedule,  # noqa: E402
                                      qcsma_init, qcsma_step)
from radiorl.schedulers.itlinq import (FAIR_ITLINQ_HEXAGONAL, itlinq_schedule,  # noqa: E402
                                       llq_cellular_schedule)

N_INSTANCES = 64


# ----------------------------------------------------------------------------- instances

def hex_deployment(rng: np.random.Generator, radius_m=500.0, per_cell=3, min_dist_m=35.0):
    """19 AP positions (two rings, ISD = sqrt(3) R) and devices uniform in each hexagon."""
    isd = math.sqrt(3.0) * radius_m
    aps = []
    for qa in range(-2, 3):
        for ra in range(-2, 3):
            if abs(qa + ra) <= 2:
                aps.append((isd * (qa + ra / 2.0), isd * (math.sqrt(3.0) / 2.0) * ra))
    aps = np.array(aps)                                                # [19, 2]
    inradius = radius_m * math.sqrt(3.0) / 2.0
    normals = np.array([[math.cos(a), math.sin(a)] for a in (0.0, math.pi / 3, 2 * math.pi / 3)])
    devs, ap_of_device = [], []
    for k, c in enumerate(aps):
        got = 0
        while got < per_cell:
            p = rng.uniform(-radius_m, radius_m, size=2)
            if np.all(np.abs(normals @ p) <= inradius) and np.hypot(*p) >= min_dist_m:
                devs.append(c + p)
                ap_of_device.append(k)
                got += 1
    return aps, np.array(devs), np.array(ap_of_device)


def cellular_instances(rng: np.random.Generator, n_instances=N_INSTANCES, batch=1, n_subbands=3):
    """One deployment; ``n_instances`` draws of fading ``[B, H, K, N]`` and queues ``[B, N]``."""
    aps, devs, ap_of_device = hex_deployment(rng)
    d_km = np.linalg.norm(aps[:, None, :] - devs[None, :, :], axis=-1) / 1e3  # [K, N]
    pl_db = 128.1 + 37.6 * np.log10(d_km)
    k, n = d_km.shape
    fading = rng.exponential(1.0, size=(n_instances, batch, n_subbands, k, n))  # |h|^2 Rayleigh
    gains = 10.0 ** (-pl_db / 10.0) * fading
    queues = rng.integers(0, 8, size=(n_instances, batch, n)).astype(float)
    return gains, ap_of_device, queues


def fig2_conflict():
    c = np.zeros((8, 8), bool)
    for i, j in [(0, 1), (2, 3), (4, 5), (6, 7), (1, 2), (3, 4), (5, 6), (7, 0)]:
        c[i, j] = c[j, i] = True
    for i, j in [(1, 7), (7, 5), (5, 3), (3, 1), (0, 2), (2, 4), (4, 6), (6, 0)]:
        c[i, j] = True
    return c


# ----------------------------------------------------------------------------- plain baselines

def plain_llq_cellular(q, ap, n_aps, n_subbands, rnd):
    best = [-1] * n_aps
    best_q = [0.0] * n_aps
    n_tied = [0] * n_aps
    for j, qj in enumerate(q):
        if qj <= 0:
            continue
        a = ap[j]
        if qj > best_q[a]:
            best[a], best_q[a], n_tied[a] = j, qj, 1
        elif qj == best_q[a]:
            n_tied[a] += 1
            if rnd.random() * n_tied[a] < 1.0:       # reservoir sampling: uniform tie break
                best[a] = j
    return [list(best) for _ in range(n_subbands)]


def plain_itlinq(gain, ap, q, p_w, noise_w, params, fair, rnd):
    """gain: nested list [H][K][N]. Returns [H][K] device or -1."""
    n = len(q)
    scale = p_w / noise_w
    out = []
    for g in gain:
        order = [j for j in range(n) if q[j] > 0]
        rnd.shuffle(order)
        active, ap_used = [], set()
        sched = [-1] * len(g)
        for j in order:
            a = ap[j]
            if a in ap_used:
                continue
            snr = g[a][j] * scale
            thr_rx = params.m_it * snr ** params.eta
            thr_tx = params.m_it_bar * snr ** params.eta_bar \
                if (fair and snr > params.snr_th) else thr_rx
            ok = True
            for i in active:
                if g[ap[i]][j] * scale > thr_rx or g[a][i] * scale > thr_tx:
                    ok = False
                    break
            if ok:
                active.append(j)
                ap_used.add(a)
                sched[a] = j
        out.append(sched)
    return out


def plain_neighbours(conflict, agents):
    n = len(conflict)
    return [[j for j in range(n) if j != i and (conflict[i][j] or conflict[j][i]
                                                or agents[i] == agents[j])] for i in range(n)]


def plain_gms(q, nbrs, n_subbands, rnd):
    n = len(q)
    remaining = [i for i in range(n) if q[i] > 0]
    x = [False] * n
    while remaining:
        top = max(q[i] for i in remaining)
        pick = rnd.choice([i for i in remaining if q[i] == top])
        x[pick] = True
        gone = set(nbrs[pick])
        gone.add(pick)
        remaining = [i for i in remaining if i not in gone]
    return [list(x) for _ in range(n_subbands)]


def plain_qcsma(x_prev, q, nbrs, window, rnd):
    n = len(q)
    out = []
    for xh in x_prev:
        backoff = [rnd.randrange(window) if q[i] > 0 else None for i in range(n)]
        heard = [False] * n
        in_d = [False] * n
        for t in range(window):
            bc = [i for i in range(n) if backoff[i] == t and not heard[i]]
            bcs = set(bc)
            for i in bc:
                if not any(j in bcs for j in nbrs[i]):
                    in_d[i] = True
            for i in bc:
                for j in nbrs[i]:
                    heard[j] = True
        new = list(xh)
        for i in range(n):
            if in_d[i]:
                p = 10.0 * q[i] / (1.0 + 10.0 * q[i])
                new[i] = (not any(xh[j] for j in nbrs[i])) and rnd.random() < p
            if q[i] <= 0:
                new[i] = False
        out.append(new)
    return out


def plain_llq_conflict(q, sym_nbrs, agents, n_agents, n_subbands, rnd):
    n = len(q)
    sched = []
    for i in range(n):
        if q[i] <= 0:
            continue
        m = max((q[j] for j in sym_nbrs[i]), default=-math.inf)
        if q[i] > m:
            sched.append(i)
        elif q[i] == m:
            j = 1 + sum(1 for k in sym_nbrs[i] if q[k] == q[i])
            if rnd.random() < 1.0 / j:
                sched.append(i)
    kept = plain_llq_cellular([q[i] if i in sched else 0.0 for i in range(n)], agents,
                              n_agents, 1, rnd)[0]
    x = [False] * n
    for d in kept:
        if d >= 0:
            x[d] = True
    return [list(x) for _ in range(n_subbands)]


# ----------------------------------------------------------------------------- timing

def time_calls(fn, n_calls, n_warmup=50):
    for i in range(n_warmup):
        fn(i)
    t = np.empty(n_calls)
    for i in range(n_calls):
        t0 = time.perf_counter_ns()
        fn(i)
        t[i] = time.perf_counter_ns() - t0
    t /= 1e6
    return float(t.mean()), float(np.percentile(t, 95))


def run_cases(batch: int, n_calls: int, seed: int):
    """Time every algorithm at batch size ``batch``; the plain version loops over the copies."""
    rng = np.random.default_rng(seed)
    rnd = random.Random(seed)
    m = N_INSTANCES if batch == 1 else 4
    p_w = 10 ** (23 / 10) * 1e-3
    noise_w = 10 ** (-114 / 10) * 1e-3
    params = FAIR_ITLINQ_HEXAGONAL

    gains, ap_of_device, cq = cellular_instances(rng, n_instances=m, batch=batch)
    k = gains.shape[3]
    h_cell = gains.shape[2]
    gains_l = [g.tolist() for g in gains]            # [m][B][H][K][N]
    ap_l = ap_of_device.tolist()
    cq_l = [q.tolist() for q in cq]                  # [m][B][N]

    conflict = fig2_conflict()
    agents = np.arange(8) // 2
    gq = rng.integers(0, 5, size=(m, batch, 8)).astype(float)
    gq_l = [q.tolist() for q in gq]
    nbrs = plain_neighbours(conflict.tolist(), agents.tolist())
    sym_nbrs = plain_neighbours(conflict.tolist(), list(range(8)))
    h_graph = 3
    state = [qcsma_init(batch, h_graph, 8)]
    plain_state = [[[[False] * 8 for _ in range(h_graph)] for _ in range(batch)]]

    def q_step(i):
        _, state[0] = qcsma_step(state[0], gq[i % m], conflict, agents, rng)

    def q_plain(i):
        qs = gq_l[i % m]
        plain_state[0] = [plain_qcsma(plain_state[0][b], qs[b], nbrs, 16, rnd)
                          for b in range(batch)]

    cases = [
        (f"llq_cellular (B={batch},H=3,K=19,N=57)",
         lambda i: llq_cellular_schedule(cq[i % m], ap_of_device, k, rng, h_cell),
         lambda i: [plain_llq_cellular(q, ap_l, k, h_cell, rnd) for q in cq_l[i % m]]),
        (f"fair_itlinq (B={batch},H=3,K=19,N=57)",
         lambda i: itlinq_schedule(gains[i % m], ap_of_device, cq[i % m], p_w, noise_w, rng,
                                   fair=True, params=params),
         lambda i: [plain_itlinq(g, ap_l, q, p_w, noise_w, params, True, rnd)
                    for g, q in zip(gains_l[i % m], cq_l[i % m])]),
        (f"gms (B={batch},H=3,N=8)",
         lambda i: gms_schedule(gq[i % m], conflict, agents, rng, h_graph),
         lambda i: [plain_gms(q, nbrs, h_graph, rnd) for q in gq_l[i % m]]),
        (f"qcsma_step (B={batch},H=3,N=8,W=16)", q_step, q_plain),
        (f"llq_conflict (B={batch},H=3,N=8)",
         lambda i: llq_conflict_schedule(gq[i % m], conflict, agents, rng, h_graph),
         lambda i: [plain_llq_conflict(q, sym_nbrs, agents.tolist(), 4, h_graph, rnd)
                    for q in gq_l[i % m]]),
    ]
    rows = []
    for name, fast, plain in cases:
        mean, p95 = time_calls(fast, n_calls)
        pmean, pp95 = time_calls(plain, n_calls)
        rows.append((name, mean, p95, pmean, pp95))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="timed calls at B=1")
    parser.add_argument("--batch", type=int, default=256,
                        help="batch size of the second table (0 to skip)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"{platform.processor() or platform.machine()}, single thread")
    header = f"{'algorithm':36s} {'mean ms':>9s} {'p95 ms':>9s} {'plain mean':>11s} " \
             f"{'plain p95':>10s} {'speedup':>8s}"
    runs = [(1, args.calls)]
    if args.batch > 1:
        runs.append((args.batch, max(20, args.calls // 20)))
    for batch, n_calls in runs:
        print(f"\nB={batch}: {n_calls} timed calls per algorithm "
              f"(speedup = plain mean / mean)")
        print(header)
        print("-" * len(header))
        for name, mean, p95, pmean, pp95 in run_cases(batch, n_calls, args.seed):
            print(f"{name:36s} {mean:9.4f} {p95:9.4f} {pmean:11.4f} {pp95:10.4f} "
                  f"{pmean / mean:7.2f}x")


if __name__ == "__main__":
    main()

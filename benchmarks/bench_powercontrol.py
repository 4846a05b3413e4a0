"""Speed and quality of the power-control baselines on random 19-cell downlink instances.

Usage::

    python benchmarks/bench_powercontrol.py [--slots 200] [--loop-slots 6] [--seed 0]

Instances (one per slot, ``B = 1``): K = 19 APs on a hexagonal lattice of 500 m radius cells
(two rings around a center cell), 3 devices per cell uniform in the hexagon at >= 35 m from
the AP, path loss 128.1 + 37.6 log10(d_km) dB (spec C.9), unit-power Rayleigh fading drawn
independently per subband and slot, H = 3 subbands, P_max = 23 dBm per AP per subband, noise
-114 dBm per subband, weights = random queue lengths (integers 0..20, some zero) normalized
to sum 1. The deployment is redrawn every 20 slots.

Methods:

* ``ours FP/WMMSE`` - :func:`single_user_power_schedule` with its defaults (numba backend);
  also shown: the numpy backend, a looser inner tolerance, and 4 random restarts.
* ``plain multi-user FP/WMMSE`` - :func:`plain_multiuser_power` (the reference codes'
  approach: N = 57 links per subband, no single-user constraint), vectorized over subbands.
* ``plain loop FP/WMMSE`` - the same reference approach through :func:`plain_fp_loop` /
  :func:`plain_wmmse_loop` (Python loops over links), run on the first ``--loop-slots`` slots.

Every method is scored with the same evaluator: true weighted sum-rate (b/s/Hz, summed over
the 3 subbands) of the per-device powers it chose, where a device's interference comes from
every other transmitting link (so multi-user schedules pay their intra-cell interference);
the "cap" column clips the SINR at 30 dB as the reference code does. WSR ratios compare the
same slots. Timing is wall clock per slot (one call for the whole slot) on one thread.
"""
from __future__ import annotations

import argparse
import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from radiorl.schedulers.powercontrol import (  # noqa: E402
    plain_fp_loop,
    plain_multiuser_power,
    plain_wmmse_loop,
    single_user_power_schedule,
    weighted_sum_rate,
)

CELL_RADIUS_M = 500.0
MIN_DIST_M = 35.0
DEV_PER_CELL = 3
N_SUBBANDS = 3
P_MAX_W = 10 ** ((23.0 - 30.0) / 10.0)     # 23 dBm = 0.19953 W
NOISE_W = 10 ** ((-114.0 - 30.0) / 10.0)   # -114 dBm


def hex_centers(rings: int = 2, radius_m: float = CELL_RADIUS_M) -> np.ndarray:
    """``[K, 2]`` centers of a hexagonal lattice with ``rings`` rings (K = 19 for 2 rings).

    ``radius_m`` is the hexagon circumradius; the inter-site distance is ``sqrt(3) radius``.
    """
    isd = math.sqrt(3.0) * radius_m
    pts = []
    for q in range(-rings, rings + 1):
        for r in range(-rings, rings + 1):
            if abs(q + r) <= rings:
                pts.append((isd * (q + r / 2.0), isd * r * math.sqrt(3.0) / 2.0))
    pts.sort(key=lambda c: (round(math.hypot(*c), 6), math.atan2(c[1], c[0])))
    return np.array(pts)


def _in_hexagon(xy: np.ndarray, radius_m: float) -> np.ndarray:
    """Points (relative to the center) inside a pointy-top hexagon of circumradius radius_m."""
    x, y = np.abs(xy[..., 0]), np.abs(xy[..., 1])
    h = math.sqrt(3.0) / 2.0 * radius_m
    return (x <= h) & (x / math.sqrt(3.0) + y <= radius_m)


def drop_devices(rng, centers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Uniform devices in each cell at >= 35 m from the AP: ``(positions [N, 2], ap [N])``."""
    K = len(centers)
    pos = np.empty((K * DEV_PER_CELL, 2))
    n = 0
    for k in range(K):
        got = 0
        while got < DEV_PER_CELL:
            xy = rng.uniform(-CELL_RADIUS_M, CELL_RADIUS_M, size=2)
            if _in_hexagon(xy, CELL_RADIUS_M) and math.hypot(*xy) >= MIN_DIST_M:
                pos[n] = centers[k] + xy
                n += 1
                got += 1
    return pos, np.repeat(np.arange(K), DEV_PER_CELL)


def path_gain(centers: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``[K, N]`` linear path gain, PL = 128.1 + 37.6 log10(d_km) dB."""
    d = np.linalg.norm(centers[:, None, :] - pos[None, :, :], axis=-1)
    d = np.maximum(d, MIN_DIST_M)
    return 10.0 ** (-(128.1 + 37.6 * np.log10(d / 1000.0)) / 10.0)


def make_slots(n_slots: int, seed: int):
    """List of ``(gain [1, H, K, N], ap [N], weights [1, N])`` instances."""
    rng = np.random.default_rng(seed)
    centers = hex_centers()
    out = []
    for s in range(n_slots):
        if s % 20 == 0:
            pos, ap = drop_devices(rng, centers)
            pg = path_gain(centers, pos)
        fading = rng.exponential(1.0, size=(1, N_SUBBANDS) + pg.shape)  # |h|^2, unit power
        q = rng.integers(0, 21, size=(1, pg.shape[1])).astype(float)
        q[0, 0] += q.sum() == 0
        out.append((pg * fading, ap, q / q.sum()))
    return out


def evaluate(gain, ap, weights, dev_power):
    """True and 30-dB-capped WSR (b/s/Hz summed over subbands) of per-device powers
    ``dev_power [1, H, N]`` (device n served by AP ap[n] with that power; 0 = not served)."""
    G = np.swapaxes(gain[..., ap, :], -1, -2)          # [1, H, N, N] multi-user link gains
    w = weights[:, None, :]
    true = weighted_sum_rate(G, dev_power, w, NOISE_W, base=2).sum()
    cap = weighted_sum_rate(G, dev_power, w, NOISE_W, sinr_cap_db=30.0, base=2).sum()
    return float(true), float(cap)


def single_user_to_device_power(device, power, n_dev):
    out = np.zeros(device.shape[:2] + (n_dev,))
    b, h, k = np.nonzero(device >= 0)
    out[b, h, device[b, h, k]] = power[b, h, k]
    return out


def run_method(name, fn, slots):
    times, wsr, cap = [], [], []
    for gain, ap, w in slots:
        t0 = time.perf_counter()
        dev_power = fn(gain, ap, w)
        times.append(time.perf_counter() - t0)
        a, b = evaluate(gain, ap, w, dev_power)
        wsr.append(a)
        cap.append(b)
    return {"name": name, "t": np.array(times) * 1e3, "wsr": np.array(wsr),
            "cap": np.array(cap)}


def ours(solver, backend="auto", restarts=0, **kw):
    rng = np.random.default_rng(1)

    def fn(gain, ap, w):
        d, p, _ = single_user_power_schedule(gain, ap, w, P_MAX_W, NOISE_W, solver=solver,
                                             backend=backend, restarts=restarts, rng=rng, **kw)
        return single_user_to_device_power(d, p, gain.shape[-1])
    return fn


def plain_vec(solver):
    def fn(gain, ap, w):
        return plain_multiuser_power(gain, ap, w, P_MAX_W, NOISE_W, solver=solver).power
    return fn


def plain_loop(solver):
    loop = plain_fp_loop if solver == "fp" else plain_wmmse_loop

    def fn(gain, ap, w):
        G = np.swapaxes(gain[..., ap, :], -1, -2)
        out = np.zeros(gain.shape[:2] + (gain.shape[-1],))
        for h in range(gain.shape[1]):
            out[0, h] = loop(G[0, h], w[0], P_MAX_W, NOISE_W).power
        return out
    return fn


def main(argv=None):
    ap_ = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap_.add_argument("--slots", type=int, default=200, help="slots for the fast methods")
    ap_.add_argument("--loop-slots", type=int, default=20,
                     help="slots (the first ones) for the Python-loop methods")
    ap_.add_argument("--seed", type=int, default=0)
    args = ap_.parse_args(argv)

    slots = make_slots(args.slots, args.seed)
    loop_slots = slots[: max(1, min(args.loop_slots, len(slots)))]

    t0 = time.perf_counter()
    g, a, w = slots[0]
    for s in ("fp", "wmmse"):  # compile (or load the numba cache) before timing
        single_user_power_schedule(g, a, w, P_MAX_W, NOISE_W, solver=s)
    compile_s = time.perf_counter() - t0

    rows = [
        run_method("ours FP single-user", ours("fp"), slots),
        run_method("ours WMMSE single-user", ours("wmmse"), slots),
        run_method("ours FP single-user (numpy backend)", ours("fp", "numpy"), slots),
        run_method("ours WMMSE single-user (numpy backend)", ours("wmmse", "numpy"), slots),
        run_method("ours FP single-user, inner_tol=1e-4 (fast)", ours("fp", inner_tol=1e-4),
                   slots),
        run_method("ours FP single-user, 4 restarts", ours("fp", restarts=4), slots),
        run_method("plain multi-user FP (vectorized)", plain_vec("fp"), slots),
        run_method("plain multi-user WMMSE (vectorized)", plain_vec("wmmse"), slots),
        run_method("plain loop FP (per-link Python)", plain_loop("fp"), loop_slots),
        run_method("plain loop WMMSE (per-link Python)", plain_loop("wmmse"), loop_slots),
    ]
    byname = {r["name"]: r for r in rows}
    n_loop = len(loop_slots)

    try:
        from rich.console import Console
        from rich.table import Table
        table = Table(title=f"power control, K=19 APs, N=57 devices, H=3; {len(slots)} slots "
                            f"({n_loop} for the Python loops); WSR in b/s/Hz summed over "
                            f"subbands")
        for c in ("method", "slots", "mean ms", "p95 ms", "mean WSR", "mean WSR (30 dB cap)"):
            table.add_column(c, justify="left" if c == "method" else "right")
        for r in rows:
            table.add_row(r["name"], str(len(r["t"])), f"{r['t'].mean():.3f}",
                          f"{np.percentile(r['t'], 95):.3f}", f"{r['wsr'].mean():.4f}",
                          f"{r['cap'].mean():.4f}")
        Console(width=140).print(table)
    except ImportError:  # pragma: no cover
        print(f"{'method':42s} {'slots':>5s} {'mean ms':>9s} {'p95 ms':>9s} {'WSR':>8s} "
              f"{'WSR cap':>8s}")
        for r in rows:
            print(f"{r['name']:42s} {len(r['t']):5d} {r['t'].mean():9.3f} "
                  f"{np.percentile(r['t'], 95):9.3f} {r['wsr'].mean():8.4f} "
                  f"{r['cap'].mean():8.4f}")

    print(f"\nnumba compile/cache-load time (excluded above): {compile_s:.2f} s")
    for s, S in (("fp", "FP"), ("wmmse", "WMMSE")):
        o = byname[f"ours {S} single-user"]
        lp = byname[f"plain loop {S} (per-link Python)"]
        pv = byname[f"plain multi-user {S} (vectorized)"]
        print(f"{S}: speed-up vs plain loop x{lp['t'].mean() / o['t'][:n_loop].mean():.0f}, "
              f"vs plain vectorized x{pv['t'].mean() / o['t'].mean():.1f}; "
              f"WSR ratio ours/plain {o['wsr'].mean() / pv['wsr'].mean():.3f} "
              f"(ours >= plain on {np.mean(o['wsr'] >= pv['wsr'] - 1e-9):.0%} of slots); "
              f"ours/plain loop on the loop slots "
              f"{o['wsr'][:n_loop].mean() / lp['wsr'].mean():.3f}")


if __name__ == "__main__":
    main()

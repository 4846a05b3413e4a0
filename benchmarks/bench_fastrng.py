"""ns/sample of radiorl.phy.fastrng vs numpy ``Generator.standard_normal``, single thread.

Run: ``python benchmarks/bench_fastrng.py [--sizes 416000,4000000] [--repeats 15]``

Both generators fill a preallocated C-contiguous array in place (``GaussianStream.
fill_standard_normal(out)`` vs ``rng.standard_normal(out=out, dtype=...)``) for float32 and
float64 at each size; 416,000 ≈ 2 × 64·3·19·57 is one slot of Rayleigh innovations for the
B = 64 cellular simulator. Each configuration is warmed up (numba compilation / cache load,
page faults) and then timed ``--repeats`` times, alternating ours and numpy so both see the same
machine load; the table shows the median (and the minimum) ns per sample and the ratio
ours/numpy of the medians. Thread environment variables are set to 1 before numpy is imported;
neither generator uses threads.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from radiorl.phy.fastrng import GaussianStream  # noqa: E402

SLOT_NORMALS = 2 * 64 * 3 * 19 * 57     # real + imaginary innovations of one B=64 slot


def _time_once(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench(size: int, dtype, repeats: int, seed: int = 0) -> dict:
    ours = GaussianStream.from_seed(seed)
    rng = np.random.default_rng(seed)
    out_a = np.empty(size, dtype)
    out_b = np.empty(size, dtype)

    def run_ours():
        ours.fill_standard_normal(out_a)

    def run_numpy():
        rng.standard_normal(out=out_b, dtype=dtype)

    for _ in range(2):                                  # warm-up
        run_ours()
        run_numpy()
    t_ours, t_np = [], []
    for _ in range(repeats):
        t_ours.append(_time_once(run_ours))
        t_np.append(_time_once(run_numpy))
    ns = 1e9 / size
    return {
        "ours_med": statistics.median(t_ours) * ns, "ours_min": min(t_ours) * ns,
        "np_med": statistics.median(t_np) * ns, "np_min": min(t_np) * ns,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="416000,4000000",
                    help="comma-separated array sizes (default 416000,4000000)")
    ap.add_argument("--repeats", type=int, default=15, help="timed calls per configuration")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    print(f"python {platform.python_version()}, numpy {np.__version__}, "
          f"{platform.processor() or platform.machine()}, single thread; "
          f"median (min) of {args.repeats} calls")
    t0 = time.perf_counter()
    GaussianStream.from_seed(0).standard_normal(8, np.float32)
    GaussianStream.from_seed(0).standard_normal(8, np.float64)
    print(f"first call incl. numba compile/cache load: {time.perf_counter() - t0:.2f} s\n")

    header = (f"{'dtype':<8}{'size':>10}  {'fastrng ns/sample':>20}  {'numpy ns/sample':>20}"
              f"  {'ours/numpy':>10}")
    print(header)
    print("-" * len(header))
    slot = {}
    for dtype in (np.float32, np.float64):
        for size in sizes:
            r = bench(size, dtype, args.repeats)
            ratio = r["ours_med"] / r["np_med"]
            print(f"{np.dtype(dtype).name:<8}{size:>10}  "
                  f"{r['ours_med']:>10.2f} ({r['ours_min']:5.2f})  "
                  f"{r['np_med']:>10.2f} ({r['np_min']:5.2f})  {ratio:>10.3f}")
            if dtype is np.float32 and size == sizes[0]:
                slot = r
    if slot:
        per_slot_ours = slot["ours_med"] * SLOT_NORMALS * 1e-9
        per_slot_np = slot["np_med"] * SLOT_NORMALS * 1e-9
        print(f"\nB=64 slot ({SLOT_NORMALS} float32 normals, at the {sizes[0]}-size rate): "
              f"fastrng {per_slot_ours * 1e3:.2f} ms (normals alone cap "
              f"{64 / per_slot_ours:,.0f} slot-copies/s), numpy {per_slot_np * 1e3:.2f} ms "
              f"({64 / per_slot_np:,.0f} slot-copies/s)")
    print("goal: <= 2.5 ns/sample for fastrng")


if __name__ == "__main__":
    main()

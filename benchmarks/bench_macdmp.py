"""MA-CDMP planning speed (one core): time per frame for all agents, per-agent cost at larger
networks, and the faithful planner's time for a 1,000-frame episode.

The faithful planner is timed four ways: TorchScript (the default), with the guidance gradient
in a second thread (``parallel_guidance``), compiled with ``torch.compile`` (``compile``; the
first frame, which compiles, is not timed, and neither is any other planner's first frame),
and compiled with the gradient thread.

Planners (weights do not change the cost; models are built untrained unless --checkpoint /
--realtime-checkpoint are given):

* faithful: temporal U-Net (width 16, 4 down + 4 up blocks), K = 100 DDPM, classifier
  guidance at every step (the paper's pipeline);
* fast: the same model, 10 steps of DPM-Solver-1, guided;
* real-time (two candidates): the MLP denoiser and MLP return model with 5 guided
  DPM-Solver-1 steps (``--preset realtime``); the faithful U-Net with a single unguided
  DPM-Solver-1 step.

Baselines measured in the same run:

* the same faithful planner with PyTorch's library convolutions only (our small-input GEMM
  convolution path off: ``radiorl.nn.temporal.GEMM_MAX_ROWS = 0``);
* a Diffuser-size U-Net (width 32, dim_mults (1, 2, 4, 8), the public code's locomotion
  network) with the same sampler;
* the 5 ms frame deadline (real-time target).

    python benchmarks/bench_macdmp.py [--frames 20] [--nodes 9,100,1000]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

from radiorl.agents.macdmp import (MACDMPConfig, MACDMPPolicy, PlannerSettings,  # noqa: E402
                                   build_model, load_model)
from radiorl.agents.macdmp.model import PRESETS  # noqa: E402
from radiorl.data.normalizers import Normalizer  # noqa: E402
from radiorl.envs.scenarios import get_scenario  # noqa: E402
from radiorl.nn import temporal  # noqa: E402


def untrained(**over):
    cfg = MACDMPConfig(**over).validate()
    norm = Normalizer("limits", np.full(4, 25.0), np.full(4, 25.0))
    return build_model(cfg, 40, norm, 100.0)


def ms_per_frame(model, scenario: str, frames: int, **settings) -> float:
    """Mean wall time of the policy's ``act`` per frame (all agents of one network)."""
    env = get_scenario(scenario).make_env("medium", batch=1, episode_slots=frames + 2)
    pol = MACDMPPolicy(model, PlannerSettings.from_model(model, **settings)).bind(env)
    obs, state = env.reset(seed=0)
    ps = pol.reset(env, 1, seed=0)
    t_act = 0.0
    for f in range(frames + 1):
        view = env.policy_view(state, pol.requires)
        t0 = time.perf_counter()
        a, ps = pol.act(obs, view, ps)
        if f:                                          # frame 0 traces the denoiser
            t_act += time.perf_counter() - t0
        obs, *_, state = env.step(state, a)
    return 1e3 * t_act / frames


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=20, help="frames timed per configuration")
    ap.add_argument("--nodes", default="9,100,1000", help="network sizes for the per-agent cost")
    ap.add_argument("--checkpoint", default=None, help="a trained faithful planner.pt")
    ap.add_argument("--realtime-checkpoint", default=None, help="a trained real-time planner.pt")
    a = ap.parse_args(argv)
    faithful = load_model(a.checkpoint)[0] if a.checkpoint else untrained()
    rt = load_model(a.realtime_checkpoint)[0] if a.realtime_checkpoint else \
        untrained(**PRESETS["realtime"])
    rt_settings = dict(sampler="dpm1", steps=5, guide_last=None, warm_start=None)
    rt_settings.update({k: getattr(rt.cfg, k) for k in ("guide_last", "warm_start")
                        if getattr(rt.cfg, k) is not None})
    sc9 = "adhoc-9-4:5"
    print(f"# MA-CDMP planning time per frame, 9 agents ({sc9}), one core, "
          f"{a.frames} frames each (torch {torch.__version__})")
    res = {}
    res["faithful"] = ms_per_frame(faithful, sc9, a.frames, sampler="ddpm", guidance=0.1)
    res["faithful, guidance gradient in a 2nd thread (2 cores)"] = ms_per_frame(
        faithful, sc9, a.frames, sampler="ddpm", guidance=0.1, parallel_guidance=True)
    res["faithful, compiled (torch.compile)"] = ms_per_frame(
        faithful, sc9, a.frames, sampler="ddpm", guidance=0.1, compile=True)
    res["faithful, compiled + gradient thread (2 cores)"] = ms_per_frame(
        faithful, sc9, a.frames, sampler="ddpm", guidance=0.1, compile=True,
        parallel_guidance=True)
    saved = temporal.GEMM_MAX_ROWS
    temporal.GEMM_MAX_ROWS = 0
    try:
        res["faithful, library convolutions"] = ms_per_frame(faithful, sc9, a.frames,
                                                             sampler="ddpm", guidance=0.1)
    finally:
        temporal.GEMM_MAX_ROWS = saved
    res["Diffuser-size U-Net (dim 32)"] = ms_per_frame(untrained(dim=32), sc9,
                                                       max(3, a.frames // 4), sampler="ddpm",
                                                       guidance=0.1)
    res["fast: DPM-Solver-1 x10, guided"] = ms_per_frame(faithful, sc9, a.frames,
                                                         sampler="dpm1", steps=10,
                                                         guidance=0.1)
    res["real-time: MLP denoiser, 5 guided DPM-Solver-1 steps"] = ms_per_frame(
        rt, sc9, 5 * a.frames, **rt_settings)
    res["real-time: U-Net, 1 DPM-Solver-1 step, unguided"] = ms_per_frame(
        faithful, sc9, 5 * a.frames, sampler="dpm1", steps=1, guidance=0.0)
    base = res["faithful"]
    print("| planner | ms per frame | 1,000-frame episode | vs faithful | vs 5 ms deadline |")
    print("|---|---|---|---|---|")
    for k, v in res.items():
        print(f"| {k} | {v:.2f} | {v:.0f} s | {v / base:.2f}x | {v / 5.0:.2f}x |")
    print(f"\nfaithful speed-up from the GEMM convolution path: "
          f"{res['faithful, library convolutions'] / base:.2f}x; "
          f"vs the Diffuser-size U-Net: {res['Diffuser-size U-Net (dim 32)'] / base:.2f}x")

    nodes = [int(x) for x in a.nodes.split(",")]
    print("\n# per-agent decision cost vs network size (one frame plans every agent)")
    print("| nodes | planner | ms per frame | ms per agent | vs 9 nodes |")
    print("|---|---|---|---|---|")
    for label, model, st, frames in [
            ("faithful", faithful, dict(sampler="ddpm", guidance=0.1), 3),
            ("real-time", rt, rt_settings, 10)]:
        per9 = None
        for n in nodes:
            sc = sc9 if n == 9 else f"adhoc-{n}"
            ms = ms_per_frame(model, sc, frames, **st)
            per = ms / n
            per9 = per9 or per
            print(f"| {n} | {label} | {ms:.1f} | {per:.3f} | {per / per9:.2f}x |")
            sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Paper-preset budget of the MA-CDMP comparison (issue target: the whole comparison of Figs.
3-5 within 12 hours on the 2-core machine).

For every offline learner of the comparison this measures, on one core, with its paper-preset
network (MA-DT as in the quick preset and as d3rlpy's default, both reported):

* training speed: steps per second of ``train`` (batch of the preset) on the offline dataset,
  over ``--steps`` steps after a warm-up (validation and evaluation off);
* planning speed: ms per frame for the 8 agents of ``adhoc-8-4:4`` with the paper's planner
  (diffusion planners: K = 100 DDPM) and with the training-time evaluation planner (10 guided
  DPM-Solver-1 steps, the planners' ``eval_sampler``).

It then projects the paper preset of :mod:`radiorl.experiments.ma_cdmp` (its ``train`` and
``train_by_algo`` fields): 100 epochs x 1,000 steps per learner, the Fig. 3 evaluation
episodes during training (every ``eval_every`` epochs, one ``eval_frames`` episode per paper
scenario, for the learners with ``eval_every`` > 0), and the test episodes of Figs. 4-5
(1,000 frames; Fig. 4: 4 scenarios x 2 RF conditions x 3 seeds per DTDE method; Fig. 5: 4
scenarios x 3 seeds for MA-CDMP and MADiff), spread over 2 cores, and prints the ratio to the
12-hour target measured in the same run.

    python benchmarks/bench_offline_budget.py --dataset datasets/adhoc-quick.h5 [--steps 40]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

from radiorl.agents.offline.registry import get_learner  # noqa: E402
from radiorl.envs.scenarios import get_scenario  # noqa: E402
from radiorl.experiments.ma_cdmp import PAPER_SCENARIOS, PRESETS  # noqa: E402
from radiorl.evaluation.runner import rollout  # noqa: E402
from radiorl.schedulers.policies import make_policy  # noqa: E402

LEARNERS = [("MA-CDMP", "macdmp", {}), ("MA-Diffuser", "madiffuser", {}),
            ("MA-DD", "madd", {}), ("MADiff", "madiff", {}), ("MA-CQL", "cql", {}),
            ("MA-TD3+BC", "td3bc", {}), ("MA-DT (128-wide)", "dt", {"hidden": (128, 128)}),
            ("MA-DT (d3rlpy default, 256)", "dt", {})]
DIFFUSION = ("macdmp", "madiffuser", "madd", "madiff")
PAPER_STEPS = 100 * 1000
HOURS_TARGET = 12.0


def steps_per_s(algo: str, over: dict, dataset: str, steps: int, tmp: str) -> tuple[float, str]:
    """Training speed (after a first epoch of 5 warm-up steps) and the trained checkpoint."""
    learner = get_learner(algo)
    base = dict(eval_every=0, threads=1, **over)
    warm = learner.preset_config("paper", epochs=1, steps_per_epoch=5, **base)
    run = os.path.join(tmp, f"{algo}-{len(os.listdir(tmp))}")
    learner.train(dataset, warm, run, show_progress=False, log=lambda *a: None)
    cfg = learner.preset_config("paper", epochs=2, steps_per_epoch=steps, **base)
    t0 = time.perf_counter()
    res = learner.train(dataset, cfg, run + "-t", show_progress=False, log=lambda *a: None)
    h = res["history"]
    # epoch 2's wall time minus epoch 1's: one epoch of `steps` steps plus its validation
    dt = h[-1]["wall_s"] - h[0]["wall_s"] if len(h) > 1 else time.perf_counter() - t0
    return steps / dt, res["checkpoint"]


def ms_per_frame(policy: str, frames: int) -> float:
    env = get_scenario("adhoc-8-4:4").make_env("medium", batch=1, episode_slots=frames + 1)
    pol = make_policy(policy, env)
    _, t_act = rollout(env, pol, 0, frames)
    return 1e3 * t_act / frames


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="datasets/adhoc-quick.h5")
    ap.add_argument("--steps", type=int, default=40, help="timed training steps per learner")
    ap.add_argument("--frames", type=int, default=5, help="timed planning frames per learner")
    a = ap.parse_args(argv)
    print(f"# paper-preset budget of the MA-CDMP comparison (torch {torch.__version__}, "
          f"one core per job)")
    paper = PRESETS["paper"]
    print("| learner | training steps/s | 100k steps (h) | ms per frame, eval planner | "
          "Fig. 3 evaluation (h) | ms per frame, paper planner | test episodes | test (h) | "
          "total (h) |")
    print("|---|---|---|---|---|---|---|---|---|")
    total = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for label, algo, over in LEARNERS:
            sps, ck = steps_per_s(algo, over, a.dataset, a.steps, tmp)
            diffusion = algo in DIFFUSION
            ms = ms_per_frame(f"{algo}:{ck}" + ("?sampler=ddpm" if diffusion else ""), a.frames)
            ms_eval = ms_per_frame(f"{algo}:{ck}?sampler=dpm1&sample_steps=10", a.frames) \
                if diffusion else ms
            cfg = {**paper["train"], **paper.get("train_by_algo", {}).get(algo, {})}
            every = cfg.get("eval_every", 0)
            eval_frames = (PAPER_STEPS // 1000 // every) * len(PAPER_SCENARIOS) \
                * cfg.get("eval_frames", 200) if every else 0
            episodes = (24 if algo not in ("madiff",) else 0) + \
                (12 if algo in ("macdmp", "madiff") else 0)
            train_h = PAPER_STEPS / sps / 3600
            eval_h = eval_frames * ms_eval / 1e3 / 3600
            test_h = episodes * 1000 * ms / 1e3 / 3600
            if "256" not in label:                   # the comparison uses the 128-wide DT
                total += train_h + eval_h + test_h
            print(f"| {label} | {sps:.2f} | {train_h:.2f} | {ms_eval:.1f} | {eval_h:.2f} | "
                  f"{ms:.1f} | {episodes} | {test_h:.2f} | {train_h + eval_h + test_h:.2f} |",
                  flush=True)
    wall = total / 2
    print(f"\nprojected paper preset (128-wide MA-DT): {total:.1f} CPU-hours = {wall:.1f} h on "
          f"2 cores; ratio to the {HOURS_TARGET:.0f} h target: {wall / HOURS_TARGET:.2f}x")


if __name__ == "__main__":
    main()

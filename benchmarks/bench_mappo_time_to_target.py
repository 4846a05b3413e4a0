"""Wall time for MAPPO training to reach the classical schedulers' mean delay.

Reads a training run folder (``radiorl train mappo ... --out R`` → ``R/train-mappo/<t>/``:
``config.yaml`` and ``training.csv`` with the periodic evaluations) and, in this run, evaluates
the baselines (default FP and WMMSE) on exactly the periodic-evaluation episode of that run
(same scenario, load, seed, length, one copy, no queue threshold, same observation caps). It
prints, for each baseline, the first evaluation at which MAPPO's mean delay is at most the
baseline's, with its training slots and wall time, and the ratio of MAPPO's final delay to the
baseline's.

With ``--train`` it first runs the training itself (the README's command for the shipped
cellular policy unless ``--args`` is given) into ``--out``.

Usage:
    python benchmarks/bench_mappo_time_to_target.py --run runs/train-mappo/<t>
    python benchmarks/bench_mappo_time_to_target.py --train [--out runs-bench]
"""
from __future__ import annotations

import argparse
import csv
import os
import shlex
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import yaml  # noqa: E402

README_CELLULAR = ("--scenario cellular-19-random --load medium --mode shared --episodes 700 "
                   "--envs 16 --episode-slots 2000 --rollout-slots 128 --lr 1e-3 "
                   "--optimizer adam --set epochs=2 --set eval_every=20 --set threads=1")


def baseline_delay(name: str, cfg: dict) -> float:
    from radiorl.agents.mappo.train import MAPPOConfig, make_train_env
    from radiorl.evaluation.runner import rollout
    from radiorl.schedulers.policies import make_policy
    mc = MAPPOConfig.from_dict(cfg)
    env = make_train_env(cfg["scenario"], cfg["load"], mc, 1, mc.eval_slots, threshold=False)
    m, _ = rollout(env, make_policy(name, env), mc.eval_seed, mc.eval_slots)
    return float(m.summary(env.slot_ms)[0]["mean_delay"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="training run folder (holding config.yaml, training.csv)")
    ap.add_argument("--train", action="store_true", help="run the training first")
    ap.add_argument("--args", default=README_CELLULAR, help="radiorl train mappo arguments")
    ap.add_argument("--out", default="runs-bench", help="output root for --train")
    ap.add_argument("--baselines", default="fp,wmmse")
    a = ap.parse_args()
    if a.train:
        subprocess.run([sys.executable, "-m", "radiorl.cli", "train", "mappo",
                        *shlex.split(a.args), "--out", a.out], check=True)
        a.run = str(sorted((Path(a.out) / "train-mappo").iterdir())[-1])
    if not a.run:
        ap.error("give --run DIR or --train")
    run = Path(a.run)
    cfg = yaml.safe_load(open(run / "config.yaml"))
    rows = [r for r in csv.DictReader(open(run / "training.csv")) if r.get("eval_mean_delay")]
    if not rows:
        sys.exit(f"{run}/training.csv has no evaluation rows")
    greedy = cfg.get("eval_greedy", False)
    print(f"run {run}: {cfg['scenario']} ({cfg['load']}), {cfg['mode']}, {len(rows)} "
          f"evaluations of {cfg['eval_slots']} slots (seed {cfg['eval_seed']}, "
          f"{'most likely' if greedy else 'sampled'} actions)")
    final = float(rows[-1]["eval_mean_delay"])
    best = min(float(r["eval_mean_delay"]) for r in rows)
    print(f"MAPPO final {final:.3f}, best {best:.3f} after {int(float(rows[-1]['slots'])):,} "
          f"slots, {float(rows[-1]['wall_s']):.0f} s")
    print("| baseline | baseline delay | first eval ≤ baseline: slots | wall s | "
          "MAPPO final / baseline |")
    print("|---|---|---|---|---|")
    for name in a.baselines.split(","):
        d = baseline_delay(name, cfg)
        hit = next((r for r in rows if float(r["eval_mean_delay"]) <= d), None)
        when = (f"{int(float(hit['slots'])):,} | {float(hit['wall_s']):.0f}" if hit
                else "not reached | -")
        print(f"| {name} | {d:.3f} | {when} | {final / d:.2f} |")


if __name__ == "__main__":
    main()

"""MAPPO decision time (all agents of one network, one core) and training throughput.

Decision: the numpy actor used at execution (``MAPPOPolicy.act``) vs the same actor run with
the torch modules (``ActorCritic.actor_step`` + sampling, inference mode) — the baseline,
measured in the same run. Paper Table IV: 1.3-1.6 ms per decision for the MARL policies;
issue target <= 0.3 ms for 19 agents.

Training: slots per second of ``collect_rollout`` and of one PPO update (Table II network,
16 copies, 2,000-slot episodes, 5 epochs x 4 minibatches (2 for cellular as in the presets)).
The published code's training speed is quoted by the issue (about 12 s per 1,000 training
slots); it is not measured here.

Usage: python benchmarks/bench_mappo.py [--decisions N] [--train]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from radiorl.agents.mappo.model import ActionSpec, sample_actions  # noqa: E402
from radiorl.agents.mappo.policy import MAPPOPolicy  # noqa: E402
from radiorl.agents.mappo.train import (MAPPOConfig, build, collect_rollout,  # noqa: E402
                                        make_optimizer, make_train_env, ppo_update)
from radiorl.envs.scenarios import make_env  # noqa: E402

torch.set_num_threads(1)


def decision(name, mode, n):
    env = make_env(name, "medium", 1)
    spec = ActionSpec.of(env)
    net, layout = build(spec, MAPPOConfig(mode=mode))
    obs, st = env.reset(0)
    pol = MAPPOPolicy(net, layout, spec)
    ps = pol.reset(env, 1, 0)
    info = {"obs": obs}
    for _ in range(50):
        pol.act(obs, info, ps)
    t0 = time.perf_counter()
    for _ in range(n):
        pol.act(obs, info, ps)
    ours = (time.perf_counter() - t0) / n * 1e3
    h = net.actor_rnn.initial_state(1 if mode == "separate" else spec.n_agents)
    mask = spec.device_mask()[None] if mode == "shared" else spec.device_mask()[:, None]
    gen = torch.Generator().manual_seed(0)

    def torch_act():
        nonlocal h
        with torch.inference_mode():
            x = layout.to_m(torch.as_tensor(obs, dtype=torch.float32))
            lg, h = net.actor_step(net.obs_norm(x), h)
            dev, lv, _ = sample_actions(net, lg, mask, generator=gen)
            return layout.from_m(dev, 1).numpy()
    for _ in range(50):
        torch_act()
    t0 = time.perf_counter()
    for _ in range(n):
        torch_act()
    base = (time.perf_counter() - t0) / n * 1e3
    return ours, base


def training(name, mode):
    fam_epochs = 2 if name.startswith("cellular") else 5
    cfg = MAPPOConfig(mode=mode, envs=16, episode_slots=2000, epochs=fam_epochs, threads=1)
    env = make_train_env(name, "medium", cfg, cfg.envs, cfg.episode_slots)
    spec = ActionSpec.of(env)
    net, layout = build(spec, cfg)
    opt = make_optimizer(net, cfg)
    gen = torch.Generator().manual_seed(0)
    t0 = time.perf_counter()
    ro = collect_rollout(env, net, layout, spec, cfg, 0, gen,
                         torch.zeros(layout.M, cfg.envs * spec.n_agents // layout.M))
    t1 = time.perf_counter()
    ppo_update(net, opt, ro, spec, layout, cfg, gen, cfg.envs)
    t2 = time.perf_counter()
    slots = cfg.envs * cfg.episode_slots
    return slots / (t1 - t0), slots / (t2 - t1), (t2 - t0) / slots * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=3000)
    ap.add_argument("--train", action="store_true")
    a = ap.parse_args()
    print("| scenario | mode | agents | ours ms/decision | torch actor ms | ratio | target |")
    print("|---|---|---|---|---|---|---|")
    for name in ("conflict-8", "cellular-19-hex", "cellular-19-random"):
        for mode in ("shared", "separate"):
            ours, base = decision(name, mode, a.decisions)
            k = make_env(name, "medium", 1).n_agents
            tgt = "≤ 0.3 ms: " + ("met" if ours <= 0.3 else "**not met**") if k == 19 else ""
            print(f"| {name} | {mode} | {k} | {ours:.3f} | {base:.3f} | {base / ours:.1f}x | "
                  f"{tgt} |", flush=True)
    if a.train:
        print()
        print("| scenario | mode | rollout slots/s | update slots/s | s per 1,000 slots "
              "(1 core) | published code (quoted) |")
        print("|---|---|---|---|---|---|")
        for name in ("conflict-8", "cellular-19-random"):
            for mode in ("shared", "separate"):
                r, u, s = training(name, mode)
                print(f"| {name} | {mode} | {r:,.0f} | {u:,.0f} | {s:.2f} | 12 s |", flush=True)


if __name__ == "__main__":
    main()

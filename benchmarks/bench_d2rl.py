"""Milliseconds per D2RL update on one core (batch 256, P = 6): MLP-DDPG, GDM actor only, and full
D2RL (GDM actor + designed-GDM reward + SENPNN state exploration), with the ratio to MLP-DDPG
measured in the same run.

    .venv/bin/python benchmarks/bench_d2rl.py [--reps 20] [--precision highest medium]
        [--compile off on] [--grad-stats on off] [--obs-dim 130 --action-dim 125] [--gamma 0]
        [--relabel]

Dimensions default to the full-duplex environment's (``FullDuplexEnv()``: obs 130, action 125;
the paper's layout without the power level is 124). One update = both critics, the actor
(through the whole P-step chain for the GDM actor), the reward model's training step and the
SENPNN's training step, the soft target update and the per-layer gradient statistics. Times
are CPU time of this process (``time.process_time``; robust to other processes on a shared
machine), best of 3 blocks of ``reps`` updates after a warm-up. ``--precision medium`` runs
float32 matrix products through bfloat16 (``D2RLConfig.matmul_precision``); ``--compile on``
``torch.compile``s the update's losses (``D2RLConfig.compile``; compilation happens in the
warm-up and is not timed). Ratios are to MLP-DDPG with the same precision and compile setting.
The last row is the full update with the GDM actor's chain back-propagated by autograd instead of
the hand-written backward (``D2RLConfig.fused_chain=False``), the speed before that change.
``--grad-stats off`` leaves out the per-layer gradient statistics (the training loop's Fig. 5
metric, not part of the algorithm).
"""
from __future__ import annotations

import argparse
import itertools
import time

import torch

from radiorl.agents.d2rl import D2RLAgent, D2RLConfig

VARIANTS = {
    "MLP-DDPG (actor mlp, reward raw)": dict(actor="mlp", reward="raw"),
    "GDM actor only (reward raw)": dict(actor="gdm", reward="raw"),
    "full D2RL (gdm + designed-gdm + S.Exp.)":
        dict(actor="gdm", reward="designed-gdm", state_exploration=(1.0, 0.001)),
    "full D2RL, autograd chain (fused_chain=False)":
        dict(actor="gdm", reward="designed-gdm", state_exploration=(1.0, 0.001),
             fused_chain=False),
}


def random_batch(obs_dim: int, action_dim: int, n: int, g: torch.Generator) -> dict:
    return {"obs": torch.randn(n, obs_dim, generator=g),
            "action": torch.rand(n, action_dim, generator=g) * 2 - 1,
            "next_obs": torch.randn(n, obs_dim, generator=g),
            "terminated": torch.zeros(n), "target": torch.randn(n, generator=g) - 3.0,
            "reward": torch.randn(n, generator=g)}


def ms_per_update(overrides: dict, obs_dim: int, action_dim: int, reps: int = 20,
                  blocks: int = 3, warmup: int = 5, grad_stats: bool = True) -> float:
    cfg = D2RLConfig(**overrides)
    agent = D2RLAgent(cfg, obs_dim, action_dim)
    g = torch.Generator().manual_seed(0)
    batches = [random_batch(obs_dim, action_dim, cfg.batch_size, g) for _ in range(4)]
    agent.observe(batches[0]["obs"], batches[0]["target"])
    for i in range(warmup):
        agent.update(batches[i % 4], grad_stats=grad_stats)
    best = float("inf")
    for _ in range(blocks):
        t0 = time.process_time()
        for i in range(reps):
            agent.update(batches[i % 4], grad_stats=grad_stats)
        best = min(best, (time.process_time() - t0) / reps * 1e3)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--obs-dim", type=int, default=130)
    ap.add_argument("--action-dim", type=int, default=125)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--gamma", type=float, default=0.0)
    ap.add_argument("--relabel", action="store_true", help="reward_relabel=True")
    ap.add_argument("--precision", nargs="+", default=["highest", "medium"],
                    choices=["highest", "high", "medium"])
    ap.add_argument("--compile", nargs="+", default=["off", "on"], choices=["off", "on"])
    ap.add_argument("--grad-stats", nargs="+", default=["on"], choices=["on", "off"],
                    help="per-layer gradient statistics in the update (the training loop's "
                         "Fig. 5 metric; not part of the algorithm)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, batch 256, P = 6, obs_dim {args.obs_dim}, "
          f"action_dim {args.action_dim}, gamma {args.gamma}, reward_relabel {args.relabel}")
    for stats, comp, prec in itertools.product(args.grad_stats, args.compile, args.precision):
        print(f"matmul_precision={prec}, compile={comp}, gradient statistics={stats}")
        base = None
        for name, ov in VARIANTS.items():
            ms = ms_per_update({**ov, "gamma": args.gamma, "reward_relabel": args.relabel,
                                "matmul_precision": prec, "compile": comp == "on"},
                               args.obs_dim, args.action_dim, args.reps,
                               grad_stats=stats == "on")
            base = ms if base is None else base
            print(f"  {name:46s} {ms:7.2f} ms/update   x{ms / base:5.2f} vs MLP-DDPG",
                  flush=True)


if __name__ == "__main__":
    main()

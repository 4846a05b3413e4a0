"""Offline training of MA-CDMP (Zhang et al., Algorithm 1), top to bottom in :func:`train`.

Per step: sample a mini-batch of ``H``-frame windows (one agent's normalized observations
``x``, its mean-field observations ``x̄``, its requests, and the window's discounted return
``y``, eq. 14) from the offline dataset; draw ``k ~ U{1..K}`` and noise; noise ``[x, x̄]``
(first position clamped, as at execution); minimize eq. 19 = inverse-dynamics loss +
noise-prediction loss + return-model loss with one Adam step over the three networks
(parameter sharing across agents: every agent's windows train the same networks).

The loop is the shared one of :mod:`radiorl.agents.offline.trainer`, wired to MA-CDMP's
model, checkpoint format and policy by :func:`~radiorl.agents.offline.common.fit_planner`.
Every epoch (``steps_per_epoch`` steps): validation losses on held-out trajectories
(``valid_fraction`` of them, fixed batches, EMA weights), optionally (``eval_every``) one
evaluation episode of the EMA planner per scenario of ``eval_scenarios`` (default: the
dataset's) with a fast sampler and seeds ``eval_seed + i`` (never the test seeds), a row of
``training.csv`` and TensorBoard scalars, and the checkpoint ``checkpoints/last.pt``
(weights, EMA weights, optimizer, history; a killed run continues with ``resume``). The
final ``checkpoints/planner.pt`` holds the EMA weights of the last epoch
(``select_checkpoint="last"``, the paper) or of the epoch with the best evaluation reward
(``"best_eval"``, also kept as ``checkpoints/best.pt``): it is the policy
``macdmp:<run>/checkpoints/planner.pt``.

Batches and noise come from generators seeded by ``(seed, epoch)``, so a resumed run repeats
exactly the epochs an uninterrupted run would have done.
"""
from __future__ import annotations

from pathlib import Path

from radiorl.agents.macdmp.model import CHECKPOINTS, MACDMPConfig, MACDMPModel, build_model
from radiorl.agents.offline.common import (dataset_info, evaluate_policy,  # noqa: F401
                                           fit_planner, open_training_data, prepare_training,
                                           validation_losses)

__all__ = ["train", "evaluate_planner", "open_training_data", "dataset_info",
           "validation_losses", "plot_training"]
LABEL = "MA-CDMP"
#: Loss terms of eq. 19 (the training curves).
TERMS = ("inverse", "diffusion", "value")


def evaluate_planner(model: MACDMPModel, scenario: str, load, frames: int, seed: int,
                     **settings) -> dict:
    """One episode of the planner (planner ``settings``) in the simulator: reward and QoS."""
    from radiorl.agents.macdmp.planner import MACDMPPolicy
    return evaluate_policy(MACDMPPolicy.with_settings(model, **settings), scenario, load,
                           frames, seed)


def train(dataset_path, cfg: MACDMPConfig, run_dir, resume=None, show_progress: bool = True,
          log=print) -> dict:
    """Train MA-CDMP on the offline dataset ``dataset_path`` (see the module docstring).

    Returns ``{"history", "checkpoint" (planner.pt), "best_epoch", "run_dir"}``. ``resume``: a
    checkpoint or a run folder holding ``checkpoints/last.pt`` (same architecture and
    dataset).
    """
    from radiorl.agents.macdmp.planner import MACDMPPolicy
    data = prepare_training(dataset_path, cfg, run_dir, f"the {LABEL} planner")
    model = build_model(cfg, data.ds.max_request, data.windows.normalizer,
                        data.windows.return_scale)
    label = LABEL + ("" if cfg.mean_field else " w/o MF")
    return fit_planner(model, cfg, data, CHECKPOINTS, MACDMPPolicy, terms=TERMS, title=label,
                       progress=f"{label} H={cfg.horizon} on {Path(dataset_path).name}",
                       resume=resume, show_progress=show_progress, log=log)


def plot_training(history: list, path, title: str = "") -> Path:
    """Loss curves (train and validation) and, if evaluated, the episode reward per epoch."""
    from radiorl.agents.offline.trainer import plot_history
    return plot_history(history, path, TERMS, title)

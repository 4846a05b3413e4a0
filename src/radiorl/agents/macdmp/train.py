"""Offline training of MA-CDMP (Zhang et al., Algorithm 1), top to bottom in :func:`train`.

Per step: sample a mini-batch of ``H``-frame windows (one agent's normalized observations
``x``, its mean-field observations ``x̄``, its requests, and the window's discounted return
``y``, eq. 14) from the offline dataset; draw ``k ~ U{1..K}`` and noise; noise ``[x, x̄]``
(first position clamped, as at execution); minimize eq. 19 = inverse-dynamics loss +
noise-prediction loss + return-model loss with one Adam step over the three networks
(parameter sharing across agents: every agent's windows train the same networks).

The loop is the shared one of :mod:`radiorl.agents.offline.trainer`. Every epoch
(``steps_per_epoch`` steps): validation losses on held-out trajectories (``valid_fraction`` of
them, fixed batches, EMA weights), optionally (``eval_every``) one evaluation episode of the EMA
planner per scenario of ``eval_scenarios`` (default: the dataset's) with a fast sampler and
seeds ``eval_seed + i`` (never the test seeds), a row of ``training.csv`` and TensorBoard
scalars, and the checkpoint ``checkpoints/last.pt`` (weights, EMA weights, optimizer, history;
a killed run continues with ``resume``). The final ``checkpoints/planner.pt`` holds the EMA
weights of the last epoch (``select_checkpoint="last"``, the paper) or of the epoch with the
best evaluation reward (``"best_eval"``, also kept as ``checkpoints/best.pt``): it is the
policy ``macdmp:<run>/checkpoints/planner.pt``.

Batches and noise come from generators seeded by ``(seed, epoch)``, so a resumed run repeats
exactly the epochs an uninterrupted run would have done.
"""
from __future__ import annotations

from pathlib import Path

from radiorl.agents.macdmp.model import (ARCHITECTURE_FIELDS, MACDMPConfig, MACDMPModel,
                                         build_model, load_blob, save_model)
from radiorl.agents.offline.common import (check_same_architecture, check_same_dataset,
                                           dataset_info, evaluate_policy, evaluation_reward,
                                           open_training_data, prepare_training,
                                           validation_losses)

__all__ = ["train", "evaluate_planner", "open_training_data", "dataset_info",
           "validation_losses", "plot_training"]
LABEL = "MA-CDMP"


def _check_resume(blob: dict, cfg: MACDMPConfig, info: dict, path) -> None:
    stored = MACDMPConfig.from_dict(blob["config"])
    check_same_architecture(stored, cfg, ARCHITECTURE_FIELDS + ("gamma",), path)
    check_same_dataset(blob, info, path)


def _policy(model: MACDMPModel, **settings):
    from radiorl.agents.macdmp.planner import MACDMPPolicy, PlannerSettings
    return MACDMPPolicy(model, PlannerSettings.from_model(model, **settings))


def evaluate_planner(model: MACDMPModel, scenario: str, load, frames: int, seed: int,
                     **settings) -> dict:
    """One episode of the planner (planner ``settings``) in the simulator: reward and QoS."""
    return evaluate_policy(_policy(model, **settings), scenario, load, frames, seed)


def train(dataset_path, cfg: MACDMPConfig, run_dir, resume=None, show_progress: bool = True,
          log=print) -> dict:
    """Train MA-CDMP on the offline dataset ``dataset_path`` (see the module docstring).

    Returns ``{"history", "checkpoint" (planner.pt), "best_epoch", "run_dir"}``. ``resume``: a
    checkpoint or a run folder holding ``checkpoints/last.pt`` (same architecture and
    dataset).
    """
    from radiorl.agents.offline.trainer import fit

    run_dir, ds, windows, info, scenarios, train_w, valid_w = prepare_training(
        dataset_path, cfg, run_dir, f"the {LABEL} planner")
    model = build_model(cfg, ds.max_request, windows.normalizer, windows.return_scale)
    label = LABEL + ("" if cfg.mean_field else " w/o MF")

    def eval_policy(m):
        return lambda: _policy(m, sampler=cfg.eval_sampler, steps=cfg.eval_sample_steps)

    out = fit(model, cfg, sample=lambda rng: train_w.sample(cfg.batch_size, rng),
              run_dir=run_dir, resume=resume, final_name="planner.pt",
              save=lambda path, m, **extra: save_model(path, m, info, **extra),
              load=load_blob, check_resume=lambda blob, path: _check_resume(blob, cfg, info,
                                                                            path),
              validate=(lambda m: validation_losses(m, valid_w, cfg)) if valid_w else None,
              evaluate=lambda m: evaluation_reward(eval_policy(m), scenarios, cfg),
              label=f"{label} H={cfg.horizon} on {Path(dataset_path).name}",
              show_progress=show_progress, log=log)
    plot_training(out["history"], run_dir / "figures" / "training_curve.png", label)
    return {k: out[k] for k in ("history", "checkpoint", "best_epoch", "run_dir")}


def plot_training(history: list, path, title: str = "") -> Path:
    """Loss curves (train and validation) and, if evaluated, the episode reward per epoch."""
    from radiorl.agents.offline.trainer import plot_history
    return plot_history(history, path, ("inverse", "diffusion", "value"), title)

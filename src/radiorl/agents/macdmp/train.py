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

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from radiorl.agents.macdmp.model import (ARCHITECTURE_FIELDS, OBS_DIM, MACDMPConfig,
                                         MACDMPModel, build_model, load_blob, save_model)
from radiorl.data.hdf5 import OfflineDataset
from radiorl.data.schema import DatasetError
from radiorl.data.windows import WindowDataset


def open_training_data(dataset_path, cfg: MACDMPConfig) -> tuple[OfflineDataset, WindowDataset]:
    """Open and check ``dataset_path`` for ``cfg`` before any training work: the observation
    layout must be the planner's, and the horizon must fit inside the trajectories."""
    ds = OfflineDataset.open(dataset_path)
    if ds.obs_dim != OBS_DIM:
        raise DatasetError(f"dataset {ds.path} has observations of width obs_dim = {ds.obs_dim};"
                           f" the MA-CDMP planner needs the ad hoc layout o = [gen, gen_max, "
                           f"tran, tran_max] (obs_dim = {OBS_DIM})")
    longest = int(ds.agents["frames"].max()) if ds.n_trajectories else 0
    if cfg.horizon > longest:
        raise ValueError(f"horizon H = {cfg.horizon} is longer than the dataset's episodes: the "
                         f"longest trajectory of {ds.path} has {longest} frames (need "
                         f"2 <= H <= {longest})")
    windows = WindowDataset(ds, cfg.horizon, cfg.gamma, cfg.normalizer)
    return ds, windows


def dataset_info(ds: OfflineDataset, windows: WindowDataset) -> dict:
    """Facts about the training data stored with the model (and a fingerprint of it)."""
    h = hashlib.sha256()
    h.update(json.dumps([ds.n_frames, ds.n_trajectories, ds.scenario_names]).encode())
    h.update(np.asarray(windows.normalizer.offset).tobytes())
    h.update(np.asarray(windows.normalizer.scale).tobytes())
    return {"path": str(ds.path), "scenarios": list(ds.scenario_names),
            "n_frames": int(ds.n_frames), "n_trajectories": int(ds.n_trajectories),
            "obs_dim": int(ds.obs_dim), "max_request": int(ds.max_request),
            "n_slots": int(ds.n_slots), "n_channels": int(ds.n_channels),
            "fingerprint": h.hexdigest()[:16]}


def _check_resume(blob: dict, cfg: MACDMPConfig, info: dict, path) -> None:
    stored = MACDMPConfig.from_dict(blob["config"])
    for k in ARCHITECTURE_FIELDS + ("gamma",):
        a, b = getattr(stored, k), getattr(cfg, k)
        if (list(a) if isinstance(a, tuple) else a) != (list(b) if isinstance(b, tuple) else b):
            raise ValueError(f"--resume: checkpoint {path} has {k} = {a!r}, this run {k} = {b!r}")
    if blob["dataset"].get("fingerprint") != info["fingerprint"]:
        raise ValueError(f"--resume: checkpoint {path} was trained on dataset "
                         f"{blob['dataset'].get('path')} ({blob['dataset'].get('n_frames')} "
                         f"frames), not on {info['path']} ({info['n_frames']} frames)")


@torch.no_grad()
def validation_losses(model: MACDMPModel, windows: WindowDataset, cfg: MACDMPConfig) -> dict:
    """Mean eq.-19 losses over ``valid_batches`` fixed batches (same draws every call)."""
    rng = np.random.default_rng(cfg.seed + 99991)
    gen = torch.Generator().manual_seed(cfg.seed + 99991)
    acc: dict = {}
    for _ in range(cfg.valid_batches):
        out = model.losses(windows.sample(cfg.batch_size, rng), gen)
        for k, v in out.items():
            acc[k] = acc.get(k, 0.0) + float(v)
    return {f"valid_{k}": v / cfg.valid_batches for k, v in acc.items()}


def evaluate_planner(model: MACDMPModel, scenario: str, load, frames: int, seed: int,
                     **settings) -> dict:
    """One episode of the planner in the simulator; returns reward and QoS."""
    from radiorl.agents.macdmp.planner import MACDMPPolicy, PlannerSettings
    from radiorl.envs.scenarios import get_scenario
    from radiorl.evaluation.runner import rollout
    env = get_scenario(scenario).make_env(load, batch=1, episode_slots=frames)
    pol = MACDMPPolicy(model, PlannerSettings.from_model(model, **settings)).bind(env)
    m, t_act = rollout(env, pol, seed, frames)
    row = m.summary(env.slot_ms)[0]
    return {"eval_mean_reward": float(row["mean_reward"]),
            "eval_mean_delay": float(row["mean_delay"]),
            "eval_packet_loss_rate": float(row["packet_loss_rate"]),
            "eval_throughput_mbps": float(row.get("throughput_mbps", float("nan"))),
            "eval_ms_per_decision": 1e3 * t_act / max(m.slots, 1)}


def evaluation_reward(model: MACDMPModel, scenarios, cfg: MACDMPConfig) -> dict:
    """The training-time evaluation (``eval_every``): one ``eval_frames`` episode per scenario
    (seed ``eval_seed + i``, never a test seed), averaged; ``eval_mean_reward`` drives the
    ``best_eval`` checkpoint selection."""
    rows = [evaluate_planner(model, sc, "medium", cfg.eval_frames, cfg.eval_seed + i,
                             sampler=cfg.eval_sampler, steps=cfg.eval_sample_steps)
            for i, sc in enumerate(scenarios)]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def train(dataset_path, cfg: MACDMPConfig, run_dir, resume=None, show_progress: bool = True,
          log=print) -> dict:
    """Train MA-CDMP on the offline dataset ``dataset_path`` (see the module docstring).

    Returns ``{"history", "checkpoint" (planner.pt), "best_epoch", "run_dir"}``. ``resume``: a
    checkpoint or a run folder holding ``checkpoints/last.pt`` (same architecture and
    dataset).
    """
    from radiorl.agents.offline.trainer import fit

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(run_dir)
    ds, windows = open_training_data(dataset_path, cfg)
    info = dataset_info(ds, windows)
    scenarios = list(cfg.eval_scenarios) or list(ds.scenario_names)
    if cfg.eval_every:
        from radiorl.envs.scenarios import get_scenario
        for sc in scenarios:
            get_scenario(sc)                          # unknown names fail before training
    if cfg.valid_fraction > 0 and len(windows.trajectories) >= 2:
        train_w, valid_w = windows.split(cfg.valid_fraction, seed=cfg.seed)
    else:
        train_w, valid_w = windows, None
    model = build_model(cfg, ds.max_request, windows.normalizer, windows.return_scale)
    label = "MA-CDMP" + ("" if cfg.mean_field else " w/o MF")
    out = fit(model, cfg, sample=lambda rng: train_w.sample(cfg.batch_size, rng),
              run_dir=run_dir, resume=resume, final_name="planner.pt",
              save=lambda path, m, **extra: save_model(path, m, info, **extra),
              load=load_blob, check_resume=lambda blob, path: _check_resume(blob, cfg, info,
                                                                            path),
              validate=(lambda m: validation_losses(m, valid_w, cfg)) if valid_w else None,
              evaluate=lambda m: evaluation_reward(m, scenarios, cfg),
              label=f"{label} H={cfg.horizon} on {Path(dataset_path).name}",
              show_progress=show_progress, log=log)
    plot_training(out["history"], run_dir / "figures" / "training_curve.png", label)
    return {k: out[k] for k in ("history", "checkpoint", "best_epoch", "run_dir")}


def plot_training(history: list, path, title: str = "") -> Path:
    """Loss curves (train and validation) and, if evaluated, the episode reward per epoch."""
    from radiorl.agents.offline.trainer import plot_history
    return plot_history(history, path, ("inverse", "diffusion", "value"), title)

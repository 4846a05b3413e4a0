"""Offline training of MA-CDMP (Zhang et al., Algorithm 1), top to bottom in :func:`train`.

Per step: sample a mini-batch of ``H``-frame windows (one agent's normalized observations
``x``, its mean-field observations ``x̄``, its requests, and the window's discounted return
``y``, eq. 14) from the offline dataset; draw ``k ~ U{1..K}`` and noise; noise ``[x, x̄]``
(first position clamped, as at execution); minimize eq. 19 = inverse-dynamics loss +
noise-prediction loss + return-model loss with one Adam step over the three networks
(parameter sharing across agents: every agent's windows train the same networks).

Every epoch (``steps_per_epoch`` steps): validation losses on held-out trajectories
(``valid_fraction`` of them, fixed batches, EMA weights), optionally (``eval_every``) an
evaluation episode of the EMA planner in the simulator with a fast sampler, a row of
``training.csv`` and TensorBoard scalars, and the checkpoint ``checkpoints/last.pt``
(weights, EMA weights, optimizer, history; a killed run continues with ``resume``). The
final ``checkpoints/planner.pt`` holds the EMA weights: it is the policy
``macdmp:<run>/checkpoints/planner.pt``.

Batches and noise come from generators seeded by ``(seed, epoch)``, so a resumed run repeats
exactly the epochs an uninterrupted run would have done.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
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
def _ema_update(ema: MACDMPModel, model: MACDMPModel, decay: float, step: int) -> None:
    d = min(decay, (1.0 + step) / (10.0 + step))
    for pe, p in zip(ema.parameters(), model.parameters()):
        pe.mul_(d).add_(p.detach(), alpha=1.0 - d)
    for be, b in zip(ema.buffers(), model.buffers()):
        be.copy_(b)


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


def train(dataset_path, cfg: MACDMPConfig, run_dir, resume=None, show_progress: bool = True,
          log=print) -> dict:
    """Train MA-CDMP on the offline dataset ``dataset_path`` (see the module docstring).

    Returns ``{"history", "checkpoint" (planner.pt), "run_dir"}``. ``resume``: a checkpoint or
    a run folder holding ``checkpoints/last.pt`` (same architecture and dataset).
    """
    from torch.utils.tensorboard import SummaryWriter
    from radiorl.runtime.executor import progress_bar
    from radiorl.runtime.files import write_csv

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(run_dir)
    ds, windows = open_training_data(dataset_path, cfg)
    info = dataset_info(ds, windows)
    if cfg.valid_fraction > 0 and len(windows.trajectories) >= 2:
        train_w, valid_w = windows.split(cfg.valid_fraction, seed=cfg.seed)
    else:
        train_w, valid_w = windows, None
    model = build_model(cfg, ds.max_request, windows.normalizer, windows.return_scale)
    ema = copy.deepcopy(model) if cfg.ema > 0 else model
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start, history = 0, []
    if resume is not None:
        rp = Path(resume)
        if rp.is_dir():
            rp = rp / "checkpoints" / "last.pt"
        blob = load_blob(rp)
        _check_resume(blob, cfg, info, rp)
        if blob.get("optimizer") is None:
            raise ValueError(f"--resume: {rp} is a final planner checkpoint without optimizer "
                             "state; resume from the run's checkpoints/last.pt")
        model.load_state_dict(blob["train_model"])
        if cfg.ema > 0:
            ema.load_state_dict(blob["model"])
        opt.load_state_dict(blob["optimizer"])
        start = int(blob["epoch"])
        history = json.loads(blob["history"])
        log(f"resumed from {rp} at epoch {start}")
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    tb = SummaryWriter(str(run_dir / "tb"))
    eval_scenario = ds.scenario_names[0]
    t_start = time.perf_counter()
    wall0 = history[-1]["wall_s"] if history else 0.0
    total = cfg.epochs * cfg.steps_per_epoch
    label = "MA-CDMP" + ("" if cfg.mean_field else " w/o MF")
    with progress_bar(transient=False) as prog:
        tid = prog.add_task(f"{label} H={cfg.horizon} on {Path(dataset_path).name}",
                            total=total, completed=start * cfg.steps_per_epoch, rate="",
                            visible=show_progress)
        for epoch in range(start, cfg.epochs):
            rng = np.random.default_rng([cfg.seed, epoch])
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
            model.train()
            acc = {"total": 0.0, "inverse": 0.0, "diffusion": 0.0, "value": 0.0}
            t0 = time.perf_counter()
            for step in range(cfg.steps_per_epoch):
                out = model.losses(train_w.sample(cfg.batch_size, rng), gen)
                opt.zero_grad(set_to_none=True)
                out["total"].backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                if cfg.ema > 0:
                    _ema_update(ema, model, cfg.ema, epoch * cfg.steps_per_epoch + step)
                for k in acc:
                    acc[k] += float(out[k].detach())
                if step % 20 == 19 or step + 1 == cfg.steps_per_epoch:
                    done = step + 1
                    prog.update(tid, completed=epoch * cfg.steps_per_epoch + done,
                                rate=f"{done / (time.perf_counter() - t0):.1f} steps/s")
            ema.eval()
            row = {"epoch": epoch + 1, "steps": (epoch + 1) * cfg.steps_per_epoch,
                   "wall_s": wall0 + time.perf_counter() - t_start,
                   **{f"train_{k}": v / cfg.steps_per_epoch for k, v in acc.items()}}
            if valid_w is not None:
                row.update(validation_losses(ema, valid_w, cfg))
            if cfg.eval_every and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                row.update(evaluate_planner(
                    copy.deepcopy(ema), eval_scenario, "medium", cfg.eval_frames, cfg.eval_seed,
                    sampler=cfg.eval_sampler, steps=cfg.eval_sample_steps))
            history.append(row)
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "epoch":
                    tb.add_scalar(k, v, epoch + 1)
            if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
                save_model(run_dir / "checkpoints" / "last.pt", ema, info,
                           train_model=model.state_dict(), optimizer=opt.state_dict(),
                           epoch=epoch + 1, history=json.dumps(history))
                write_csv(run_dir / "training.csv", history)
    tb.close()
    ck = save_model(run_dir / "checkpoints" / "planner.pt", ema, info, epoch=cfg.epochs,
                    history=json.dumps(history))
    write_csv(run_dir / "training.csv", history)
    plot_training(history, run_dir / "figures" / "training_curve.png", label)
    return {"history": history, "checkpoint": str(ck), "run_dir": str(run_dir)}


def plot_training(history: list, path, title: str = "") -> Path:
    """Loss curves (train and validation) and, if evaluated, the episode reward per epoch."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from radiorl.evaluation.report import _save
    ev = [h for h in history if "eval_mean_reward" in h]
    fig, ax = plt.subplots(1, 2 if ev else 1, figsize=(10 if ev else 5.5, 3.6), squeeze=False)
    x = [h["epoch"] for h in history]
    for k in ("inverse", "diffusion", "value"):
        ax[0, 0].plot(x, [h[f"train_{k}"] for h in history], label=f"train {k}")
        if f"valid_{k}" in history[0]:
            ax[0, 0].plot(x, [h[f"valid_{k}"] for h in history], "--", label=f"valid {k}")
    ax[0, 0].set_yscale("log")
    ax[0, 0].set_xlabel("epoch")
    ax[0, 0].set_ylabel("loss (eq. 19 terms)")
    ax[0, 0].legend(fontsize=7)
    if ev:
        ax[0, 1].plot([h["epoch"] for h in ev], [h["eval_mean_reward"] for h in ev], "o-")
        ax[0, 1].set_xlabel("epoch")
        ax[0, 1].set_ylabel("evaluation reward per frame (−ms)")
    for a in ax.ravel():
        a.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)

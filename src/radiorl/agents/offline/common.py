"""Pieces shared by the offline diffusion planners (MA-CDMP, MA-Diffuser, MA-DD, MADiff).

Each method's module keeps what makes it that method (its networks, losses, planning rule and
the config fields of its own); what they all do the same way lives here:

- **configs**: :class:`PlannerConfig`, the base dataclass of the four configs (model size,
  schedule, training-loop, evaluation and default-sampler fields, seed and threads) with
  :func:`check_common_fields`; :class:`ConfigIO` (``to_dict``/``from_dict``),
  :func:`config_from_preset`, :func:`check_inverse_fields`, :func:`check_loss_weights`;
- **models**: :class:`PlannerModel` (config and dataset facts) and :class:`InverseDynamics`
  (the ``f(o_t, o_{t+1}) → request`` head of the methods that plan observations only);
- **checkpoints**: :class:`Checkpoints`, one method's blob layout, save/load and resume checks;
- **training**: :func:`open_training_data`, :func:`dataset_info`, :func:`prepare_training`,
  :func:`validation_losses`, :func:`evaluate_policy`, :func:`evaluation_reward` and
  :func:`fit_planner` (the shared loop of :mod:`.trainer` wired to one planner);
- **planning**: :func:`settings_from` and :func:`check_planner_settings` (planner settings),
  :class:`TracedCache` (TorchScript traces per input shape), :func:`plan_inputs` (inpainting
  of the current observation), :func:`return_conditioned` (classifier-free return guidance),
  :class:`DiffusionPlanner` (planner set-up) and :class:`PlannerPolicy` (the Policy plumbing
  of a per-agent planner).
"""
from __future__ import annotations

import hashlib
import json
import threading
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch
from torch import nn

from radiorl.agents.config import ConfigIO  # noqa: F401  (re-exported)
from radiorl.agents.offline.trainer import check_loop_config
from radiorl.data.hdf5 import OfflineDataset
from radiorl.data.schema import DatasetError
from radiorl.data.windows import WindowDataset
from radiorl.diffusion import SCHEDULES, Inpaint, classifier_free
from radiorl.envs.base import check_number
from radiorl.nn import MLP
from radiorl.schedulers.tdma import RequestPolicy

#: Observation width per agent in the ad hoc network: ``o = [gen, gen_max, tran, tran_max]``.
OBS_DIM = 4
#: Samplers of :func:`radiorl.diffusion.sample`.
SAMPLERS = ("ddpm", "ddim", "dpm1", "dpm2")


def check_sampler(sampler: str, steps, K: int, name: str = "sampler",
                  steps_name: str = "sample_steps") -> None:
    """Clear errors for an unknown sampler or a step count outside ``[1, K]`` (DDPM runs all
    ``K`` steps, so its step count must be ``K`` or unset)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"{name} must be one of {list(SAMPLERS)}, got {sampler!r}")
    if steps is not None:
        if isinstance(steps, bool):
            raise ValueError(f"{steps_name} must be an integer in [1, K={K}], got {steps!r}")
        check_number(steps_name, steps, low=1, high=K, integer=True)
        if sampler == "ddpm" and int(steps) != K:
            raise ValueError(f"{steps_name}: the ddpm sampler runs all K = {K} steps; got "
                             f"{steps} (use --sampler ddim|dpm1|dpm2 for fewer steps)")


# =========================================================================== configs
@dataclass
class PlannerConfig(ConfigIO):
    """The config fields every offline diffusion planner has, with the defaults they share
    (MA-CDMP's choices: see ``agents/macdmp/model.py`` and ``specs/diffusion-planning.md``).

    Model: horizon ``H``, diffusion steps ``K`` and noise ``schedule``, network output
    ``prediction`` (``"x0"`` or ``"epsilon"``), U-Net width ``dim`` and ``dim_mults``, the
    observation ``normalizer`` and the discount ``gamma`` of the window return. Training (the
    loop of :mod:`radiorl.agents.offline.trainer`): ``epochs`` x ``steps_per_epoch`` Adam steps
    on batches of ``batch_size``, ``lr``, ``ema``, ``grad_clip``, ``loss_weights`` (one per
    term of ``LOSS_TERMS``), the held-out share ``valid_fraction`` scored on ``valid_batches``
    batches, ``checkpoint_every``. Evaluation episodes during training (``eval_every`` epochs,
    0 = never) on ``eval_scenarios`` (empty = the dataset's) of ``eval_frames`` frames from
    ``eval_seed``, planned with ``eval_sampler`` / ``eval_sample_steps``, and the final
    checkpoint ``select_checkpoint``. Default planner stored with the model: ``sampler``,
    ``sample_steps``, ``guidance``, ``clip_x0``. Run: ``seed``, ``threads`` (0 = torch's
    default).

    A method's config subclasses this with its own fields (and defaults where they differ),
    sets ``LABEL``, ``TUPLES`` and ``LOSS_TERMS``, and extends :meth:`validate`.
    """

    TUPLES = ("dim_mults", "loss_weights", "eval_scenarios")
    #: Names of the weighted loss terms, in the order of ``loss_weights``.
    LOSS_TERMS = ()

    # model
    horizon: int = 16
    diffusion_steps: int = 100
    schedule: str = "cosine"
    prediction: str = "x0"
    dim: int = 16
    dim_mults: tuple = (1, 2, 4, 8)
    normalizer: str = "limits"
    gamma: float = 0.99
    # training (paper: 100 epochs x 1,000 steps)
    epochs: int = 100
    steps_per_epoch: int = 1000
    batch_size: int = 256
    lr: float = 2e-4
    ema: float = 0.995
    grad_clip: float = 1.0
    loss_weights: tuple = (1.0, 1.0)
    valid_fraction: float = 0.05
    valid_batches: int = 8
    checkpoint_every: int = 1
    # periodic evaluation in the simulator during training (0 = never)
    eval_every: int = 0
    eval_scenarios: tuple = ()                 # () = every scenario of the dataset
    eval_frames: int = 200
    eval_seed: int = 12345
    eval_sampler: str = "dpm1"
    eval_sample_steps: int = 10
    select_checkpoint: str = "last"            # or "best_eval" (agents.offline.trainer)
    # default planner (stored with the model; `radiorl evaluate` options override it)
    sampler: str = "ddpm"
    sample_steps: int | None = None
    guidance: float = 0.1
    clip_x0: float | None = 1.0
    # run
    seed: int = 0
    threads: int = 0

    def validate(self):
        """Check (and normalize: tuples, numbers) the shared fields; returns ``self``."""
        check_common_fields(self)
        return self


def check_common_fields(cfg) -> None:
    """Range checks of the fields of :class:`PlannerConfig` (model size, loop, evaluation,
    default sampler, seed and threads); ``loss_weights`` must have one weight per
    ``cfg.LOSS_TERMS``."""
    check_number("horizon", cfg.horizon, low=2, high=512, integer=True)
    check_number("diffusion_steps", cfg.diffusion_steps, low=1, high=10_000, integer=True)
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {cfg.schedule!r}")
    if cfg.prediction not in ("epsilon", "x0"):
        raise ValueError(f"prediction must be 'epsilon' or 'x0', got {cfg.prediction!r}")
    check_number("dim", cfg.dim, low=2, high=1024, integer=True)
    cfg.dim_mults = tuple(int(check_number("dim_mults", m, low=1, high=64, integer=True))
                          for m in (cfg.dim_mults or ()))
    if not cfg.dim_mults:
        raise ValueError("dim_mults must list at least one level, e.g. [1, 2, 4, 8]")
    if cfg.normalizer not in ("limits", "gaussian"):
        raise ValueError(f"normalizer must be 'limits' or 'gaussian', got {cfg.normalizer!r}")
    check_number("gamma", cfg.gamma, low=0, high=1, low_open=True)
    check_number("batch_size", cfg.batch_size, low=1, high=1 << 20, integer=True)
    cfg.loss_weights = check_loss_weights(cfg.loss_weights, cfg.LOSS_TERMS)
    check_number("valid_fraction", cfg.valid_fraction, low=0, high=0.5)
    check_number("valid_batches", cfg.valid_batches, low=1, high=10_000, integer=True)
    check_loop_config(cfg)
    cfg.eval_scenarios = tuple(str(x) for x in (cfg.eval_scenarios or ()))
    check_number("eval_frames", cfg.eval_frames, low=1, integer=True)
    check_number("eval_seed", cfg.eval_seed, low=0, integer=True)
    check_sampler(cfg.eval_sampler, cfg.eval_sample_steps, cfg.diffusion_steps,
                  "eval_sampler", "eval_sample_steps")
    check_sampler(cfg.sampler, cfg.sample_steps, cfg.diffusion_steps)
    check_number("guidance", cfg.guidance, low=0)
    check_number("clip_x0", cfg.clip_x0, low=0, low_open=True, allow_none=True)
    check_number("seed", cfg.seed, low=0, integer=True)
    check_number("threads", cfg.threads, low=0, high=1024, integer=True)


def check_loss_weights(value, names: tuple) -> tuple:
    """``value`` as a tuple of one weight ``>= 0`` per loss term of ``names``."""
    lw = tuple(value or ())
    if len(lw) != len(names):
        raise ValueError(f"loss_weights must be {len(names)} numbers >= 0 "
                         f"({', '.join(names)}), got {value!r}")
    return tuple(check_number("loss_weights", w, low=0) for w in lw)


def check_inverse_fields(cfg) -> None:
    """Checks of the inverse-dynamics fields (``inverse_hidden``, ``inverse_loss`` and, where
    the config has it, ``inverse_target``) of the methods with an :class:`InverseDynamics`
    head."""
    cfg.inverse_hidden = tuple(int(check_number("inverse_hidden", h, low=1, high=8192,
                                                integer=True))
                               for h in (cfg.inverse_hidden or ()))
    if cfg.inverse_loss not in ("mse", "ce"):
        raise ValueError(f"inverse_loss must be 'mse' or 'ce', got {cfg.inverse_loss!r}")
    target = getattr(cfg, "inverse_target", "request")
    if target not in ("request", "grant"):
        raise ValueError(f"inverse_target must be 'request' or 'grant', got {target!r}")


def config_from_preset(config_class, presets: dict, preset: str, overrides: dict):
    """``config_class`` of the named ``preset`` (a dict of field values in ``presets``) with
    ``overrides`` (``None`` values ignored), validated."""
    if preset not in presets:
        raise ValueError(f"preset must be one of {sorted(presets)}, got {preset!r}")
    kw = dict(presets[preset])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return config_class(**kw).validate()


# =========================================================================== models
class PlannerModel(nn.Module):
    """Base of the planner models: the validated config ``cfg`` and the dataset facts every
    planner needs, ``max_request`` (actions are ``0 … max_request`` RBs) and the observation
    ``normalizer`` (:class:`~radiorl.data.normalizers.Normalizer`)."""

    def __init__(self, cfg, max_request: int, normalizer):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.max_request = int(check_number("max_request", max_request, low=1, integer=True))
        self.normalizer = normalizer


class InverseDynamics:
    """Inverse dynamics ``f_φ(o_t, o_{t+1})`` → requested RBs (MA-CDMP eq. 18, Decision
    Diffuser, MADiff): a mixin of a :class:`PlannerModel` whose ``inverse_model`` is
    :meth:`inverse_mlp`. ``cfg.inverse_loss = "mse"`` regresses ``request / max_request`` (one
    output), ``"ce"`` classifies ``0 … max_request``."""

    def inverse_mlp(self) -> MLP:
        """A new inverse-dynamics MLP on two consecutive normalized observations."""
        n_out = 1 if self.cfg.inverse_loss == "mse" else self.max_request + 1
        return MLP(2 * OBS_DIM, n_out, hidden=self.cfg.inverse_hidden, activation="relu")

    def inverse_logits(self, o_t: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        """``[..., 4]`` normalized obs pairs → ``[..., 1]`` (mse) or ``[..., A+1]`` (ce)."""
        return self.inverse_model(torch.cat([o_t, o_next], dim=-1))

    def inverse_actions(self, o_t: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        """Requested RBs (int64, ``[...]``, in ``[0, max_request]``) for the transitions."""
        out = self.inverse_logits(o_t, o_next)
        if self.cfg.inverse_loss == "mse":
            return torch.round(out[..., 0].clamp(0.0, 1.0) * self.max_request).to(torch.int64)
        return out.argmax(dim=-1)

    def inverse_loss(self, o_t: torch.Tensor, o_next: torch.Tensor,
                     a: torch.Tensor) -> torch.Tensor:
        """Mean loss of the transitions ``(o_t, o_next)`` ``[..., 4]`` against the actions
        ``a`` (int, ``[...]``)."""
        out = self.inverse_logits(o_t, o_next)
        if self.cfg.inverse_loss == "mse":
            return ((out[..., 0] - a.to(out.dtype) / self.max_request) ** 2).mean()
        return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]),
                                           a.reshape(-1).clamp(0, self.max_request))


# =========================================================================== checkpoints
class Checkpoints:
    """The checkpoint format of one planner (``algo``, blob layout ``version``, ``label`` in
    messages).

    A blob is a dict loadable with ``torch.load(weights_only=True)``: ``version``, ``algo``,
    ``config`` (``cfg.to_dict()``), ``max_request``, ``normalizer``, the model's dataset
    ``facts`` (attributes passed to ``model_class`` after the normalizer, e.g.
    ``return_scale``), ``dataset`` (:func:`dataset_info`), ``model`` (the state dict) and the
    training loop's extras (``epoch``, ``history``, ``train_model``, ``optimizer``...).
    ``model_class(cfg, max_request, normalizer, *facts)`` rebuilds the model from
    ``config_class``; a run resumes only with equal ``architecture`` fields and ``gamma`` (the
    window returns depend on it) on the same dataset.
    """

    def __init__(self, algo: str, version: int, label: str, config_class, model_class,
                 facts: tuple = ("return_scale",), architecture: tuple = ()):
        self.algo, self.version, self.label = algo, int(version), label
        self.config_class, self.model_class = config_class, model_class
        self.facts = tuple(facts)
        self.resume_fields = tuple(dict.fromkeys(tuple(architecture) + ("gamma",)))

    def blob(self, model, dataset_info: dict, **extra) -> dict:
        """The checkpoint dict of ``model`` (weights plus everything needed to rebuild it)."""
        facts = {k: getattr(model, k) for k in self.facts}
        return {"version": self.version, "algo": self.algo, "config": model.cfg.to_dict(),
                "max_request": model.max_request, "normalizer": model.normalizer.to_dict(),
                **{k: list(v) if isinstance(v, list) else v for k, v in facts.items()},
                "dataset": dict(dataset_info), "model": model.state_dict(), **extra}

    def save(self, path, model, dataset_info: dict, **extra) -> Path:
        """Atomic save of :meth:`blob` (loadable with ``weights_only=True``)."""
        from radiorl.runtime.checkpoints import save_checkpoint
        return save_checkpoint(path, self.blob(model, dataset_info, **extra))

    def load_blob(self, path) -> dict:
        """The checkpoint dict (``torch.load(weights_only=True)``; a clear error if ``path`` is
        not a checkpoint of this method and version)."""
        from radiorl.runtime.checkpoints import load_checkpoint
        return load_checkpoint(path, self.algo, self.version, self.label)

    def load_model(self, path, weights: str = "model") -> tuple[Any, dict]:
        """Rebuild the model of checkpoint ``path``; returns ``(model, blob)``. ``weights``:
        ``"model"`` (the EMA weights) or ``"train_model"`` (the trained ones, in ``last.pt``)."""
        from radiorl.data.normalizers import Normalizer
        blob = self.load_blob(path)
        try:
            cfg = self.config_class.from_dict(blob["config"]).validate()
            model = self.model_class(cfg, blob["max_request"],
                                     Normalizer.from_dict(blob["normalizer"]),
                                     *(blob[k] for k in self.facts))
        except (KeyError, TypeError) as e:
            raise ValueError(f"checkpoint {path} is incomplete ({e})") from None
        state = blob.get(weights)
        if state is None:
            raise ValueError(f"checkpoint {path} holds no {weights!r} weights")
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"checkpoint {path} does not fit its own config ({e})") from None
        return model, blob

    def check_resume(self, blob: dict, cfg, info: dict, path) -> None:
        """Raise unless the stored run has this run's architecture, ``gamma`` and dataset."""
        stored = self.config_class.from_dict(blob["config"])
        check_same_architecture(stored, cfg, self.resume_fields, path)
        check_same_dataset(blob, info, path)


def check_same_architecture(stored, cfg, names, path, what: str = "--resume") -> None:
    """Raise naming the first field of ``names`` where configs ``stored`` and ``cfg`` differ."""
    for k in names:
        a, b = getattr(stored, k), getattr(cfg, k)
        if (list(a) if isinstance(a, tuple) else a) != (list(b) if isinstance(b, tuple) else b):
            raise ValueError(f"{what}: checkpoint {path} has {k} = {a!r}, this run {k} = {b!r}")


def check_same_dataset(blob: dict, info: dict, path) -> None:
    """Raise unless checkpoint ``blob`` was trained on the dataset of fingerprint ``info``."""
    if blob["dataset"].get("fingerprint") != info["fingerprint"]:
        raise ValueError(f"--resume: checkpoint {path} was trained on dataset "
                         f"{blob['dataset'].get('path')} ({blob['dataset'].get('n_frames')} "
                         f"frames), not on {info['path']} ({info['n_frames']} frames)")


# =========================================================================== training
def open_training_data(dataset_path, cfg, label: str = "the planner"
                       ) -> tuple[OfflineDataset, WindowDataset]:
    """Open and check ``dataset_path`` for ``cfg`` (fields ``horizon``, ``gamma``,
    ``normalizer``) before any training work: the observation layout must be the ad hoc one
    the planners use, and the horizon must fit inside the trajectories. ``label`` names the
    method in messages."""
    ds = OfflineDataset.open(dataset_path)
    if ds.obs_dim != OBS_DIM:
        raise DatasetError(f"dataset {ds.path} has observations of width obs_dim = {ds.obs_dim};"
                           f" {label} needs the ad hoc layout o = [gen, gen_max, "
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


@torch.no_grad()
def validation_losses(model, windows, cfg, batch_size: int | None = None) -> dict:
    """Mean ``model.losses`` over ``cfg.valid_batches`` fixed batches of ``batch_size``
    (default ``cfg.batch_size``) samples of ``windows`` (anything with ``sample(n, rng)``;
    the same draws every call, from ``cfg.seed``)."""
    n = cfg.batch_size if batch_size is None else batch_size
    rng = np.random.default_rng(cfg.seed + 99991)
    gen = torch.Generator().manual_seed(cfg.seed + 99991)
    acc: dict = {}
    for _ in range(cfg.valid_batches):
        out = model.losses(windows.sample(n, rng), gen)
        for k, v in out.items():
            acc[k] = acc.get(k, 0.0) + float(v)
    return {f"valid_{k}": v / cfg.valid_batches for k, v in acc.items()}


def evaluate_policy(policy, scenario: str, load, frames: int, seed: int) -> dict:
    """One ``frames``-frame episode of ``policy`` on ``scenario`` (batch 1): the training-time
    evaluation metrics. ``eval_unstable`` (1 = the runner's unstable verdict: drops or a growing
    backlog) ranks before the reward in checkpoint selection, because a policy that starves the
    network keeps the reward of an empty queue (``reward_when_empty="hold"``)."""
    from radiorl.envs.scenarios import get_scenario
    from radiorl.evaluation.runner import rollout
    env = get_scenario(scenario).make_env(load, batch=1, episode_slots=frames)
    policy.bind(env)
    m, t_act = rollout(env, policy, seed, frames)
    row = m.summary(env.slot_ms)[0]
    return {"eval_mean_reward": float(row["mean_reward"]),
            "eval_unstable": float(row["unstable"]),
            "eval_mean_delay": float(row["mean_delay"]),
            "eval_packet_loss_rate": float(row["packet_loss_rate"]),
            "eval_throughput_mbps": float(row.get("throughput_mbps", float("nan"))),
            "eval_ms_per_decision": 1e3 * t_act / max(m.slots, 1)}


def evaluation_reward(make_policy, scenarios, cfg) -> dict:
    """``eval_every`` evaluation: one ``eval_frames`` episode per scenario (seed
    ``eval_seed + i``, never a test seed) of a fresh ``make_policy()``, averaged
    (``eval_mean_reward_std``: the standard deviation of the episodes' rewards)."""
    rows = [evaluate_policy(make_policy(), sc, "medium", cfg.eval_frames, cfg.eval_seed + i)
            for i, sc in enumerate(scenarios)]
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    out["eval_mean_reward_std"] = float(np.std([r["eval_mean_reward"] for r in rows]))
    return out


class TrainingData(NamedTuple):
    """What :func:`prepare_training` returns: the run folder, the dataset and its windows, the
    dataset facts stored with the model, the evaluation scenarios, and the training and
    held-out (``None`` without a split) samples."""

    run_dir: Path
    ds: OfflineDataset
    windows: WindowDataset
    info: dict
    scenarios: list
    train: Any
    valid: Any


def prepare_training(dataset_path, cfg, run_dir, label: str = "the planner",
                     samples: Callable[[WindowDataset], Any] | None = None,
                     split_by: str = "trajectory") -> TrainingData:
    """Checks and data shared by the ``train`` functions, all before any training work.

    The batches are drawn from ``samples(windows)`` (default: the windows themselves; MADiff's
    joint windows), split into training and held-out parts (``cfg.valid_fraction``, seed
    ``cfg.seed``) by their own ``split`` when the windows come from at least two units of
    ``split_by`` (``"trajectory"`` or ``"episode"``, the unit that ``split`` keeps whole).
    """
    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ds, windows = open_training_data(dataset_path, cfg, label)
    data = windows if samples is None else samples(windows)
    info = dataset_info(ds, windows)
    scenarios = list(cfg.eval_scenarios) or list(ds.scenario_names)
    if cfg.eval_every:
        from radiorl.envs.scenarios import get_scenario
        for sc in scenarios:
            get_scenario(sc)                          # unknown names fail before training
    units = windows.window_trajectory if split_by == "trajectory" else \
        ds.agents["episode"][windows.window_trajectory]
    if cfg.valid_fraction > 0 and len(np.unique(units)) >= 2:
        train, valid = data.split(cfg.valid_fraction, seed=cfg.seed)
    else:
        train, valid = data, None
    return TrainingData(Path(run_dir), ds, windows, info, scenarios, train, valid)


def fit_planner(model, cfg, data: TrainingData, checkpoints: Checkpoints, policy, *,
                terms: tuple, title: str, progress: str, batch_size: int | None = None,
                resume=None, show_progress: bool = True, log=print) -> dict:
    """Train planner ``model`` with the shared loop :func:`~.trainer.fit` on ``data``
    (:func:`prepare_training`): batches of ``batch_size`` (default ``cfg.batch_size``) samples
    of ``data.train``; held-out losses on ``data.valid``; evaluation episodes of
    ``policy.with_settings(ema_model, sampler=cfg.eval_sampler, steps=cfg.eval_sample_steps)``
    (a :class:`PlannerPolicy` class) on ``data.scenarios``; checkpoints in the ``checkpoints``
    format, the final one ``checkpoints/planner.pt``; the loss curves of ``terms`` in
    ``figures/training_curve.png`` (``title``); ``progress`` labels the progress bar.

    Returns ``{"history", "checkpoint", "best_epoch", "run_dir"}``.
    """
    from radiorl.agents.offline.trainer import fit, plot_history
    n = cfg.batch_size if batch_size is None else batch_size
    train, valid, info = data.train, data.valid, data.info

    def make_eval_policy(m):
        return lambda: policy.with_settings(m, sampler=cfg.eval_sampler,
                                            steps=cfg.eval_sample_steps)

    out = fit(model, cfg, sample=lambda rng: train.sample(n, rng),
              run_dir=data.run_dir, resume=resume, final_name="planner.pt",
              save=lambda path, m, **extra: checkpoints.save(path, m, info, **extra),
              load=checkpoints.load_blob,
              check_resume=lambda blob, path: checkpoints.check_resume(blob, cfg, info, path),
              validate=(lambda m: validation_losses(m, valid, cfg, n)) if valid else None,
              evaluate=lambda m: evaluation_reward(make_eval_policy(m), data.scenarios, cfg),
              label=progress, show_progress=show_progress, log=log)
    plot_history(out["history"], data.run_dir / "figures" / "training_curve.png", terms, title)
    return {k: out[k] for k in ("history", "checkpoint", "best_epoch", "run_dir")}


# =========================================================================== planning
def settings_from(cls, cfg, base: dict, overrides: dict, K: int,
                  optional: tuple = ("steps", "clip_x0"), what: str = "planner settings"):
    """Planner settings ``cls`` from the model's defaults ``base`` plus ``overrides``: a new
    sampler without a step count drops the model's step count if either sampler is DDPM (which
    runs all ``K`` steps; the others keep the model's count); a ``None`` override counts only
    for the ``optional`` fields, where it means "unset". ``what`` names the settings in the
    error for unknown names."""
    s = cls(**base)
    names = {f.name for f in fields(cls)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise ValueError(f"unknown {what} {bad}; valid: {sorted(names)}")
    if "sampler" in overrides and "steps" not in overrides and \
            overrides["sampler"] != cfg.sampler:
        s.steps = None if overrides["sampler"] == "ddpm" or cfg.sampler == "ddpm" else s.steps
    s = replace(s, **{k: v for k, v in overrides.items() if v is not None or k in optional})
    return s.validate(K)


def check_planner_settings(s, K: int) -> None:
    """Checks of the settings every planner has: ``sampler`` and ``steps`` (``sample_steps``)
    for ``K`` diffusion steps, ``guidance >= 0``, ``clip_x0`` and ``jit``."""
    check_sampler(s.sampler, s.steps, K, "sampler", "sample_steps")
    check_number("guidance", s.guidance, low=0)
    check_number("clip_x0", s.clip_x0, low=0, low_open=True, allow_none=True)
    if not isinstance(s.jit, bool):
        raise ValueError(f"jit must be true or false, got {s.jit!r}")


class TracedCache:
    """A module called through ``torch.jit.trace`` (one trace per input shapes and dtypes, and
    per ``key(*args)`` if given; ``freeze`` for the denoiser, not for modules whose input
    gradient is needed) or eagerly if disabled. After ``max_traces`` traces, new inputs run
    eagerly (e.g. the many shapes of a mobile topology). ``traces`` maps a key to its trace;
    clear it to retrace after the weights change. Traces are made one at a time (MA-CDMP's
    parallel guidance may trace the return model in a second thread while the denoiser is
    traced: the warning filters silenced during a trace are process-wide)."""

    _lock = threading.Lock()

    def __init__(self, module: nn.Module, enabled: bool, freeze: bool,
                 key: Callable | None = None, max_traces: int | None = None):
        self.module, self.enabled, self.freeze = module, bool(enabled), bool(freeze)
        self.key, self.max_traces = key, max_traces
        self.traces: dict = {}

    def __call__(self, *args):
        if not self.enabled:
            return self.module(*args)
        key = tuple((tuple(a.shape), a.dtype) for a in args)
        if self.key is not None:
            key += (self.key(*args),)
        fn = self.traces.get(key)
        if fn is None:
            if self.max_traces is not None and len(self.traces) >= self.max_traces:
                return self.module(*args)
            with self._lock, torch.inference_mode(False), torch.no_grad(), \
                    warnings.catch_warnings():
                warnings.simplefilter("ignore")          # trace deprecation / shape notes
                fn = torch.jit.trace(self.module, tuple(a.detach() for a in args),
                                     check_trace=False)
                if self.freeze:
                    fn = torch.jit.freeze(fn.eval())
            self.traces[key] = fn
        return fn(*args)


def plan_inputs(first: torch.Tensor, horizon: int, channels: int):
    """``Inpaint`` of the normalized current values ``first [B, c]`` (``c <= channels``: the
    observation, or MA-CDMP's ``[o, ō]``) at position 0 of a ``[B, H, channels]`` trajectory,
    and its mask ``[1, H, channels]``."""
    B, c = first.shape
    values = torch.zeros(B, horizon, channels)
    values[:, 0, :c] = first
    mask = torch.zeros(1, horizon, channels, dtype=torch.bool)
    mask[:, 0, :c] = True
    return Inpaint(mask, values), mask


def return_conditioned(denoiser, cond: torch.Tensor, guidance: float, *extra):
    """``model_fn(x, k)`` of a return-conditioned denoiser ``denoiser(x, k, cond, drop_cond,
    *extra)`` with classifier-free guidance weight ``w = guidance`` (MA-DD, MADiff): both
    halves in one batched forward (:func:`~radiorl.diffusion.classifier_free`; ``extra``
    tensors are repeated for the second half), or a single half when ``w`` is 1 (conditional)
    or 0 (unconditional)."""
    w = float(guidance)
    if w in (0.0, 1.0):
        drop = torch.full((cond.shape[0],), w == 0.0, dtype=torch.bool)
        return lambda x, k: denoiser(x, k, cond, drop, *extra)
    extra2 = tuple(torch.cat([e, e], 0) for e in extra)
    return classifier_free(lambda x2, k2, c2, d2: denoiser(x2, k2, c2, d2, *extra2), cond,
                           scale=w)


class DiffusionPlanner:
    """Set-up shared by the batched planners: the model in eval mode with its weights frozen,
    its config ``cfg`` and the planner ``settings`` (an instance of ``settings_class``;
    default: the model's own, ``settings_class.from_model(model)``), validated for the
    model's ``K``."""

    settings_class: type = None

    def __init__(self, model, settings=None):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.cfg = model.cfg
        self.settings = (settings or self.settings_class.from_model(model)).validate(
            model.cfg.diffusion_steps)

    def normalized_obs(self, obs: np.ndarray) -> torch.Tensor:
        """Raw observations ``[M, 4]`` → normalized float32 ``[M, 4]``."""
        o = self.model.normalizer.normalize(np.asarray(obs, np.float32))
        return torch.as_tensor(np.asarray(o, np.float32))


class PlannerPolicy(RequestPolicy):
    """Shared Policy plumbing of the per-agent diffusion planners: one batched ``plan`` call
    for the ``B x N`` agents of the ad hoc env (agents folded into the batch), from the local
    observations only (a subclass that hands the planner more overrides ``_act`` and
    ``requires``).

    A subclass sets ``settings_class`` (its planner settings) and ``checkpoints`` (its
    :class:`Checkpoints`), and ``self.model`` and ``self.planner`` when built.
    """

    requires = frozenset({"local_obs"})
    settings_class: type = None
    checkpoints: Checkpoints = None
    #: Who was trained, in the error for a network with another action range.
    trained_label = "planner"

    @classmethod
    def with_settings(cls, model, **settings):
        """The policy of ``model`` with its stored planner settings overridden by
        ``settings``."""
        return cls(model, cls.settings_class.from_model(model, **settings))

    @classmethod
    def from_checkpoint(cls, path, env=None, **settings):
        """Load checkpoint ``path``; ``settings`` override the planner settings stored with the
        model (``None`` values are ignored, except where ``None`` means "unset"); bound to
        ``env`` if given."""
        model, _ = cls.checkpoints.load_model(path)
        pol = cls.with_settings(model, **settings)
        if env is not None:
            pol.bind(env)
        return pol

    def bind(self, env):
        super().bind(env)
        if env.params.max_request != self.model.max_request:
            raise ValueError(f"{self.trained_label} was trained with max_request = "
                             f"{self.model.max_request} RBs, the network {env.params.name} has "
                             f"max_request = {env.params.max_request}")
        return self

    def reset(self, env, batch: int, seed: int | None = 0):
        self.bind(env)
        self.generator = torch.Generator().manual_seed(int(seed or 0))
        return {"plans": None}

    def _act(self, obs, info, ps):
        o = np.asarray(info["obs"], np.float32)
        B, N, _ = o.shape
        with torch.inference_mode(False):
            req, plans = self.planner.plan(o.reshape(B * N, OBS_DIM), self.generator)
        return req.reshape(B, N), {"plans": plans}

"""MA-Diffuser: Diffuser (Janner et al. 2022) per agent, decentralized (DTDE), as a baseline of
the MA-CDMP comparison (Zhang et al., Sec. VI-A).

One parameter set is shared by all (homogeneous) agents; agents are folded into the batch, and
each agent plans from its **own** observation only (``requires = {"local_obs"}``; no mean
field, no neighbour information).

What is diffused
----------------
The joint state-action trajectory of one agent over ``H`` frames, ``x [H, C]`` with ``C = 5``
channels: the normalized local observation ``o_t = [gen, gen_max, tran, tran_max]`` (4 channels,
the dataset's per-dimension ``limits`` normalizer, as MA-CDMP) and the RB request
``a_t ∈ {0 … max_request}`` mapped to ``[−1, 1]`` as ``2 a_t / max_request − 1`` (1 channel).
Diffuser's conditioning is inpainting: the current observation is written into position 0
(its 4 observation channels; the request at position 0 is the free quantity being planned)
in the noisy training input and after every denoising step. The executed request is the first
action of the plan, decoded as ``round((z + 1) / 2 · max_request)`` clipped to the range; the
plan is discarded and re-sampled every frame (receding horizon).

Networks
--------
* Denoiser: :class:`~radiorl.nn.TemporalUNet` ``(C → C)``, the same layout and width as
  MA-CDMP's (``dim = 16``, ``dim_mults = (1, 2, 4, 8)``, 8 residual blocks).
* Value model ``J(x_k, k)``: :class:`~radiorl.nn.TemporalValueNet` (the U-Net's down half plus
  a linear head, Diffuser's ``ValueFunction`` and MA-CDMP's ``J_ψ``), trained on **noisy**
  trajectories ``x_k`` (same ``k`` draws as the denoiser; Diffuser issue #18) against the
  window's scaled return ``y_scaled``.
* Loss: ``loss_weights[0]`` x denoising loss (shared objective of :mod:`radiorl.diffusion`,
  no loss on the clamped entries, pitfall 8) plus the first-action term, and
  ``loss_weights[1]`` x value MSE; both networks in one Adam step (the shared loop).

Our choices where Diffuser's paper/code and the MA-CDMP paper are silent or differ (all
:class:`MADiffuserConfig` fields, chosen equal to MA-CDMP's where one exists, so that the
comparison differs only in the method):

* ``prediction = "x0"``: the network outputs the clean trajectory (Diffuser's locomotion
  setting, ``predict_epsilon=False``). Pitfall 1 of ``specs/diffusion-planning.md``: with the
  cosine schedule and ``K = 100``, ``ᾱ_K = 2.4e-7``, so a noise model's error is amplified about
  2,000x in ``x̂_0 = (x_k − √(1−ᾱ_k) ε̂)/√ᾱ_k`` at the first steps of a few-step solver
  (DPM-Solver, DDIM), and MA-CDMP measured that its ε-model ignores the clamped observation at
  high noise and plans far worse than the x0-model (``agents/macdmp/model.py``). The two are the
  same model up to the loss weighting over ``k``; x0 also makes ``clip_x0 = 1`` exact (data in
  ``[−1, 1]``).
* ``H = 16``, cosine schedule with ``K = 100``, ``dim = 16``, ``(1, 2, 4, 8)``, Adam 2e-4,
  batch 256, EMA 0.995, gradient norm clipped to 1: MA-CDMP's defaults (Diffuser uses H = 32,
  K = 20, dim 32 for locomotion).
* ``action_weight = 10`` (Diffuser's default): the first action's squared error is weighted
  ``action_weight`` times the other entries', as in Diffuser's weighted mean: the loss is
  ``mean_free(se) + (action_weight − 1) · se(a_0) / n_free`` (``n_free = H·C − 4`` entries per
  trajectory carry loss). The first action is the only part of the plan that is executed.
* Value target: the window's discounted return ``y = Σ_{k<H} γ^k r_{t+k}`` (MA-CDMP eq. 14,
  ``γ = 0.99``) divided by the dataset's ``max |y|`` (:class:`~radiorl.data.windows.WindowDataset`),
  so ``J ∈ [−1, 0]`` and the guidance scale is dataset-independent (pitfall 6). Diffuser uses
  the return-to-go to the episode end with a termination penalty; these episodes never
  terminate early, and using MA-CDMP's target makes ``ζ`` comparable between the two.
* Guidance: the shared sampler's classifier guidance (DDPM: mean ``+= ζ Σ_k ∇J``, MA-CDMP
  eq. 20; DDIM/DPM-Solver: ``ε̂ −= ζ √(1−ᾱ_k) ∇J``), ``ζ = 0.1`` (Diffuser's ``scale`` and
  MA-CDMP's default), no guidance at ``k <= guide_stop = 2`` (Diffuser's ``t_stopgrad``), the
  observation re-clamped after every step. Diffuser instead takes ``n_guide_steps = 2``
  gradient steps on ``x_k`` before each denoising step; one gradient per step keeps the cost
  equal to MA-CDMP's guided planner.
* ``candidates = 1``: one plan per agent per frame, as MA-CDMP. Diffuser samples 64 plans and
  executes the one with the highest ``J`` (set ``candidates = 64``; scored by ``J`` at
  ``k = 1``, the lowest trained noise level).
* The default planner is K = 100 DDPM (the paper's protocol); ``sampler``/``sample_steps``
  choose DDIM or DPM-Solver for fast runs (``radiorl evaluate`` options override them).

Use::

    cfg = preset_config("quick")
    res = train("datasets/adhoc-quick.h5", cfg, "runs/train-madiffuser/x")
    pol = MADiffuserPolicy.from_checkpoint(res["checkpoint"], env, sampler="dpm1", steps=10)

The pieces shared with MA-DD and MA-CDMP (config (de)serialization and checks, the
traced-module cache, the resume checks, the evaluation episodes) are in :mod:`.common`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from radiorl.agents.offline.common import (OBS_DIM, ConfigIO, PlannerPolicy,  # noqa: F401
                                           TracedCache, check_common_fields,
                                           check_loss_weights, check_same_architecture,
                                           check_same_dataset, check_sampler,
                                           evaluation_reward, plan_inputs, prepare_training,
                                           settings_from, validation_losses)
from radiorl.diffusion import NoiseSchedule, denoising_loss, noisy_inputs, \
    sample, value_guide
from radiorl.envs.base import check_number
from radiorl.nn import TemporalUNet, TemporalValueNet

ALGO = "madiffuser"
LABEL = "MA-Diffuser"
CHECKPOINT_VERSION = 1
#: Channels of a planned trajectory: the observation plus the normalized request.
CHANNELS = OBS_DIM + 1

__all__ = ["MADiffuserConfig", "MADiffuserModel", "DiffuserSettings", "DiffuserPlanner",
           "MADiffuserPolicy", "PRESETS", "preset_config", "build_model", "save_model",
           "load_model", "train"]


# =========================================================================== config
@dataclass
class MADiffuserConfig(ConfigIO):
    """Model, training and default planning settings (see the module docstring)."""

    TUPLES = ("dim_mults", "loss_weights", "eval_scenarios")
    LABEL = LABEL

    # model
    horizon: int = 16
    diffusion_steps: int = 100
    schedule: str = "cosine"
    prediction: str = "x0"
    dim: int = 16
    dim_mults: tuple = (1, 2, 4, 8)
    normalizer: str = "limits"
    gamma: float = 0.99
    action_weight: float = 10.0
    # training (paper: 100 epochs x 1,000 steps)
    epochs: int = 100
    steps_per_epoch: int = 1000
    batch_size: int = 256
    lr: float = 2e-4
    ema: float = 0.995
    grad_clip: float = 1.0
    loss_weights: tuple = (1.0, 1.0)           # (diffusion, value model)
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
    guide_stop: int = 2
    clip_x0: float | None = 1.0
    candidates: int = 1
    # run
    seed: int = 0
    threads: int = 0

    def validate(self) -> "MADiffuserConfig":
        check_common_fields(self)
        check_number("action_weight", self.action_weight, low=0)
        self.loss_weights = check_loss_weights(self.loss_weights, ("diffusion", "value model"))
        check_number("guide_stop", self.guide_stop, low=0, high=self.diffusion_steps,
                     integer=True)
        check_number("candidates", self.candidates, low=1, high=1024, integer=True)
        return self


#: Fields that define the networks (a checkpoint resumes / loads only with equal values).
ARCHITECTURE_FIELDS = ("horizon", "diffusion_steps", "schedule", "prediction", "dim",
                       "dim_mults", "normalizer")

#: ``paper``: the paper's budget (100 epochs x 1,000 steps) and MA-CDMP's planner protocol
#: (K = 100 DDPM, guidance 0.1); ``quick``: the same model on a 20x smaller budget.
PRESETS = {"paper": {}, "quick": dict(epochs=5, steps_per_epoch=1000)}


def preset_config(preset: str = "paper", **overrides) -> MADiffuserConfig:
    """:class:`MADiffuserConfig` of ``preset`` with ``overrides`` (``None`` values ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    kw = dict(PRESETS[preset])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return MADiffuserConfig(**kw).validate()


# =========================================================================== model
class MADiffuserModel(nn.Module):
    """Denoiser and value model of MA-Diffuser plus the dataset facts needed to run them.

    ``max_request``: largest RB request; ``normalizer``: the obs
    :class:`~radiorl.data.normalizers.Normalizer`; ``return_scale``: the dataset's ``max |y|``
    (``J`` predicts ``y / return_scale``).
    """

    def __init__(self, cfg: MADiffuserConfig, max_request: int, normalizer,
                 return_scale: float):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.max_request = int(check_number("max_request", max_request, low=1, integer=True))
        self.normalizer = normalizer
        self.return_scale = float(return_scale)
        H, C = cfg.horizon, CHANNELS
        self.eps_model = TemporalUNet(C, C, dim=cfg.dim, dim_mults=cfg.dim_mults)
        self.value_model = TemporalValueNet(C, H, dim=cfg.dim, dim_mults=cfg.dim_mults)
        self.schedule = NoiseSchedule.make(cfg.schedule, cfg.diffusion_steps)

    def encode_actions(self, a) -> torch.Tensor:
        """Requests (int, ``[...]``) → ``2 a / max_request − 1`` in ``[−1, 1]``."""
        return torch.as_tensor(a).to(torch.float32) * (2.0 / self.max_request) - 1.0

    def decode_actions(self, z: torch.Tensor) -> torch.Tensor:
        """Planned action channel ``[...]`` → requests (int64, ``0 … max_request``)."""
        a = torch.round((z.clamp(-1.0, 1.0) + 1.0) * (0.5 * self.max_request))
        return a.to(torch.int64)

    def trajectories(self, batch: dict) -> torch.Tensor:
        """``[B, H, 5]`` = normalized obs ``x`` and encoded requests of a window batch."""
        x = torch.as_tensor(batch["x"])
        a = self.encode_actions(batch["actions"]).to(x.dtype)
        return torch.cat([x, a.unsqueeze(-1)], dim=-1)

    def value(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``J(x_k, k)`` ``[B]`` in units of ``return_scale``."""
        return self.value_model(x, k)

    def losses(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """Losses on a batch of windows (``x`` float ``[B, H, 4]``, ``actions`` int ``[B, H]``,
        ``y_scaled`` ``[B]``): ``diffusion`` (free entries), ``first_action`` (the executed
        action's squared error), ``value``, and their weighted sum ``total``."""
        cfg = self.cfg
        traj = self.trajectories(batch)
        y = torch.as_tensor(batch["y_scaled"], dtype=traj.dtype)
        B, H, C = traj.shape
        known = torch.zeros(1, H, C, dtype=torch.bool)
        known[:, 0, :OBS_DIM] = True
        k, noise, xk = noisy_inputs(self.schedule, traj, known=known, generator=generator)
        out = self.eps_model(xk, k)
        l_diff = denoising_loss(out, traj, noise, prediction=cfg.prediction, known=known)
        target = noise if cfg.prediction == "epsilon" else traj
        l_first = ((out[:, 0, OBS_DIM] - target[:, 0, OBS_DIM]) ** 2).mean()
        l_val = ((self.value_model(xk, k) - y) ** 2).mean()
        n_free = H * C - OBS_DIM
        w = cfg.loss_weights
        total = w[0] * (l_diff + (cfg.action_weight - 1.0) * l_first / n_free) + w[1] * l_val
        return {"total": total, "diffusion": l_diff, "first_action": l_first, "value": l_val}


def build_model(cfg: MADiffuserConfig, max_request: int, normalizer, return_scale: float,
                seed: int | None = None) -> MADiffuserModel:
    """A freshly initialized model; ``seed`` (default ``cfg.seed``) fixes the initial weights."""
    torch.manual_seed(cfg.seed if seed is None else seed)
    return MADiffuserModel(cfg, max_request, normalizer, return_scale)


# =========================================================================== checkpoints
def model_blob(model: MADiffuserModel, dataset_info: dict, **extra) -> dict:
    return {"version": CHECKPOINT_VERSION, "algo": ALGO, "config": model.cfg.to_dict(),
            "max_request": model.max_request, "normalizer": model.normalizer.to_dict(),
            "return_scale": model.return_scale, "dataset": dict(dataset_info),
            "model": model.state_dict(), **extra}


def save_model(path, model: MADiffuserModel, dataset_info: dict, **extra):
    """Atomic save (loadable with ``weights_only=True``)."""
    from radiorl.runtime.checkpoints import save_checkpoint
    return save_checkpoint(path, model_blob(model, dataset_info, **extra))


def load_blob(path) -> dict:
    from radiorl.runtime.checkpoints import load_checkpoint
    return load_checkpoint(path, ALGO, CHECKPOINT_VERSION, LABEL)


def load_model(path, weights: str = "model") -> tuple[MADiffuserModel, dict]:
    """Rebuild the model of checkpoint ``path`` (``weights``: ``"model"`` (EMA) or
    ``"train_model"``)."""
    from radiorl.data.normalizers import Normalizer
    blob = load_blob(path)
    try:
        cfg = MADiffuserConfig.from_dict(blob["config"]).validate()
        model = MADiffuserModel(cfg, blob["max_request"],
                                Normalizer.from_dict(blob["normalizer"]), blob["return_scale"])
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


# =========================================================================== planner
@dataclass
class DiffuserSettings:
    """How MA-Diffuser plans at execution time: ``sampler`` ``ddpm|ddim|dpm1|dpm2`` and
    ``steps`` (``sample_steps``); ``guidance`` ζ and ``guide_stop``; ``clip_x0``;
    ``candidates`` (plans per agent, best ``J`` executed); ``jit`` (trace the networks)."""

    sampler: str = "ddpm"
    steps: int | None = None
    guidance: float = 0.1
    guide_stop: int = 2
    clip_x0: float | None = 1.0
    candidates: int = 1
    jit: bool = True

    @classmethod
    def from_model(cls, model: MADiffuserModel, **overrides) -> "DiffuserSettings":
        c = model.cfg
        base = dict(sampler=c.sampler, steps=c.sample_steps, guidance=c.guidance,
                    guide_stop=c.guide_stop, clip_x0=c.clip_x0, candidates=c.candidates)
        return settings_from(cls, c, base, overrides, c.diffusion_steps)

    def validate(self, K: int) -> "DiffuserSettings":
        check_sampler(self.sampler, self.steps, K, "sampler", "sample_steps")
        check_number("guidance", self.guidance, low=0)
        check_number("guide_stop", self.guide_stop, low=0, high=K, integer=True)
        check_number("clip_x0", self.clip_x0, low=0, low_open=True, allow_none=True)
        check_number("candidates", self.candidates, low=1, high=1024, integer=True)
        if not isinstance(self.jit, bool):
            raise ValueError(f"jit must be true or false, got {self.jit!r}")
        return self


class DiffuserPlanner:
    """Batched MA-Diffuser planning for ``M`` agents (see the module docstring)."""

    def __init__(self, model: MADiffuserModel, settings: DiffuserSettings | None = None):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.cfg = model.cfg
        self.settings = (settings or DiffuserSettings.from_model(model)).validate(
            model.cfg.diffusion_steps)
        self._eps = TracedCache(model.eps_model, self.settings.jit, freeze=True)
        self._value = TracedCache(model.value_model, self.settings.jit, freeze=False)

    def normalized_obs(self, obs: np.ndarray) -> torch.Tensor:
        """Raw observations ``[M, 4]`` → the clamped first position ``[M, 4]``."""
        o = self.model.normalizer.normalize(np.asarray(obs, np.float32))
        return torch.as_tensor(np.asarray(o, np.float32))

    @torch.no_grad()
    def plan(self, obs: np.ndarray, generator: torch.Generator
             ) -> tuple[np.ndarray, torch.Tensor]:
        """Plan for ``M`` agents from their raw observations ``obs [M, 4]``. Returns
        ``(requests int64 [M], plans [M, H, 5])`` (plans normalized; channel 4 = request)."""
        s, cfg = self.settings, self.cfg
        first = self.normalized_obs(obs)
        M, H, C, n = first.shape[0], cfg.horizon, CHANNELS, s.candidates
        if n > 1:
            first = first.repeat_interleave(n, dim=0)
        B = first.shape[0]
        inpaint, _ = plan_inputs(first, H, C)
        guide = value_guide(self._value) if s.guidance > 0 else None
        x0 = sample(self._eps, self.model.schedule, shape=(B, H, C), method=s.sampler,
                    steps=s.steps if s.sampler != "ddpm" else None, prediction=cfg.prediction,
                    inpaint=inpaint, guide=guide, guidance_scale=float(s.guidance),
                    guide_stop=int(s.guide_stop), clip_x0=s.clip_x0, generator=generator)
        if n > 1:
            score = self.model.value(x0, torch.ones(B, dtype=torch.int64))
            best = score.view(M, n).argmax(dim=1)
            x0 = x0.view(M, n, H, C)[torch.arange(M), best]
        a = self.model.decode_actions(x0[:, 0, OBS_DIM])
        return a.numpy().astype(np.int64), x0


class MADiffuserPolicy(PlannerPolicy):
    """A trained MA-Diffuser as a :class:`~radiorl.envs.base.Policy` for the ad hoc network
    (policy name ``madiffuser:<checkpoint.pt>``); ``requires = {"local_obs"}``."""

    name = "madiffuser"

    def __init__(self, model: MADiffuserModel, settings: DiffuserSettings | None = None):
        super().__init__()
        self.model = model
        self.planner = DiffuserPlanner(model, settings)

    @classmethod
    def from_checkpoint(cls, path, env=None, **settings) -> "MADiffuserPolicy":
        """Load ``path``; ``settings`` override the stored planner (``sampler``, ``steps``,
        ``guidance``, ``guide_stop``, ``clip_x0``, ``candidates``, ``jit``)."""
        model, _ = load_model(path)
        pol = cls(model, DiffuserSettings.from_model(model, **settings))
        if env is not None:
            pol.bind(env)
        return pol


# =========================================================================== training
def _check_resume(blob: dict, cfg: MADiffuserConfig, info: dict, path) -> None:
    stored = MADiffuserConfig.from_dict(blob["config"])
    check_same_architecture(stored, cfg, ARCHITECTURE_FIELDS + ("gamma",), path)
    check_same_dataset(blob, info, path)


def train(dataset_path, cfg: MADiffuserConfig, run_dir, resume=None, show_progress: bool = True,
          log=print) -> dict:
    """Train MA-Diffuser on the offline dataset ``dataset_path`` with the shared loop of
    :mod:`radiorl.agents.offline.trainer` (per epoch: validation losses on held-out
    trajectories, optional evaluation episodes, ``training.csv``, TensorBoard,
    ``checkpoints/last.pt``). The final ``checkpoints/planner.pt`` is the policy
    ``madiffuser:<run>/checkpoints/planner.pt``.

    Returns ``{"history", "checkpoint", "best_epoch", "run_dir"}``; ``resume``: a checkpoint
    or a run folder holding ``checkpoints/last.pt`` (same architecture and dataset).
    """
    from radiorl.agents.offline.trainer import fit, plot_history

    run_dir, ds, windows, info, scenarios, train_w, valid_w = prepare_training(
        dataset_path, cfg, run_dir, LABEL)
    model = build_model(cfg, ds.max_request, windows.normalizer, windows.return_scale)

    def make_eval_policy(m):
        return lambda: MADiffuserPolicy(m, DiffuserSettings.from_model(
            m, sampler=cfg.eval_sampler, steps=cfg.eval_sample_steps))

    out = fit(model, cfg, sample=lambda rng: train_w.sample(cfg.batch_size, rng),
              run_dir=run_dir, resume=resume, final_name="planner.pt",
              save=lambda path, m, **extra: save_model(path, m, info, **extra),
              load=load_blob,
              check_resume=lambda blob, path: _check_resume(blob, cfg, info, path),
              validate=(lambda m: validation_losses(m, valid_w, cfg)) if valid_w else None,
              evaluate=lambda m: evaluation_reward(make_eval_policy(m), scenarios, cfg),
              label=f"{LABEL} H={cfg.horizon} on {Path(dataset_path).name}",
              show_progress=show_progress, log=log)
    plot_history(out["history"], run_dir / "figures" / "training_curve.png",
                 ("diffusion", "first_action", "value"), LABEL)
    return {k: out[k] for k in ("history", "checkpoint", "best_epoch", "run_dir")}

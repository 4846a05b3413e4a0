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

The pieces shared with MA-DD, MADiff and MA-CDMP (the common config fields and checks, the
checkpoint format, the training wiring and evaluation episodes, the traced-module cache, the
planner set-up and the Policy plumbing) are in :mod:`.common`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from radiorl.agents.offline.common import (OBS_DIM, Checkpoints, DiffusionPlanner,  # noqa: F401
                                           PlannerConfig, PlannerModel, PlannerPolicy,
                                           TracedCache, check_planner_settings, check_sampler,
                                           config_from_preset, fit_planner, plan_inputs,
                                           prepare_training, settings_from)
from radiorl.diffusion import NoiseSchedule, denoising_loss, noisy_inputs, sample, value_guide
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
class MADiffuserConfig(PlannerConfig):
    """Model, training and default planning settings (see the module docstring; the shared
    fields are documented in :class:`~radiorl.agents.offline.common.PlannerConfig`)."""

    LABEL = LABEL
    LOSS_TERMS = ("diffusion", "value model")

    # model
    action_weight: float = 10.0
    # default planner
    guide_stop: int = 2
    candidates: int = 1

    def validate(self) -> "MADiffuserConfig":
        super().validate()
        check_number("action_weight", self.action_weight, low=0)
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
    return config_from_preset(MADiffuserConfig, PRESETS, preset, overrides)


# =========================================================================== model
class MADiffuserModel(PlannerModel):
    """Denoiser and value model of MA-Diffuser plus the dataset facts needed to run them.

    ``max_request``: largest RB request; ``normalizer``: the obs
    :class:`~radiorl.data.normalizers.Normalizer`; ``return_scale``: the dataset's ``max |y|``
    (``J`` predicts ``y / return_scale``).
    """

    def __init__(self, cfg: MADiffuserConfig, max_request: int, normalizer,
                 return_scale: float):
        super().__init__(cfg, max_request, normalizer)
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
#: The MA-Diffuser checkpoint format (``algo = "madiffuser"``; dataset fact ``return_scale``).
CHECKPOINTS = Checkpoints(ALGO, CHECKPOINT_VERSION, LABEL, MADiffuserConfig, MADiffuserModel,
                          facts=("return_scale",), architecture=ARCHITECTURE_FIELDS)
model_blob = CHECKPOINTS.blob
save_model = CHECKPOINTS.save
load_blob = CHECKPOINTS.load_blob
load_model = CHECKPOINTS.load_model


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
        check_planner_settings(self, K)
        check_number("guide_stop", self.guide_stop, low=0, high=K, integer=True)
        check_number("candidates", self.candidates, low=1, high=1024, integer=True)
        return self


class DiffuserPlanner(DiffusionPlanner):
    """Batched MA-Diffuser planning for ``M`` agents (see the module docstring)."""

    settings_class = DiffuserSettings

    def __init__(self, model: MADiffuserModel, settings: DiffuserSettings | None = None):
        super().__init__(model, settings)
        self._eps = TracedCache(model.eps_model, self.settings.jit, freeze=True)
        self._value = TracedCache(model.value_model, self.settings.jit, freeze=False)

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
    (policy name ``madiffuser:<checkpoint.pt>``); ``requires = {"local_obs"}``.
    ``from_checkpoint`` takes the planner settings (``sampler``, ``steps``, ``guidance``,
    ``guide_stop``, ``clip_x0``, ``candidates``, ``jit``) as overrides."""

    name = "madiffuser"
    settings_class = DiffuserSettings
    checkpoints = CHECKPOINTS

    def __init__(self, model: MADiffuserModel, settings: DiffuserSettings | None = None):
        super().__init__()
        self.model = model
        self.planner = DiffuserPlanner(model, settings)


# =========================================================================== training
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
    data = prepare_training(dataset_path, cfg, run_dir, LABEL)
    model = build_model(cfg, data.ds.max_request, data.windows.normalizer,
                        data.windows.return_scale)
    return fit_planner(model, cfg, data, CHECKPOINTS, MADiffuserPolicy,
                       terms=("diffusion", "first_action", "value"), title=LABEL,
                       progress=f"{LABEL} H={cfg.horizon} on {Path(dataset_path).name}",
                       resume=resume, show_progress=show_progress, log=log)

"""MA-DD: Decision Diffuser (Ajay et al. 2023) per agent, decentralized (DTDE), as a baseline of
the MA-CDMP comparison (Zhang et al., Sec. VI-A).

One parameter set is shared by all (homogeneous) agents; agents are folded into the batch, and
each agent plans from its **own** observation only (``requires = {"local_obs"}``).

Method
------
* **Observation-only diffusion**: ``x [H, 4]`` is the agent's normalized observation sequence
  ``o_t … o_{t+H−1}`` (the dataset's per-dimension ``limits`` normalizer, as MA-CDMP); the
  current observation is inpainted at position 0 (noisy training input and every sampling
  step; no loss there, pitfall 8).
* **Classifier-free return conditioning**: the denoiser :class:`~radiorl.nn.TemporalUNet`
  (``cond_dim = 1``) takes the window's scaled return ``R`` as its condition, embedded and
  concatenated to the step embedding (injected after the first convolution of every residual
  block, as DD). Training drops the condition embedding with probability
  ``condition_dropout = 0.25`` (DD); planning combines the conditional and unconditional
  outputs, ``out_u + w (out_c − out_u)`` with ``w = guidance = 1.2`` (DD), in **one** batched
  forward of ``2B`` rows (:func:`~radiorl.diffusion.classifier_free`; pitfall 9). ``w = 1``
  runs only the conditional half, ``w = 0`` only the unconditional one.
* **Inverse dynamics** ``f(o_t, o_{t+1}) → request``: an MLP on the agent's two consecutive
  normalized observations, trained jointly (DD) on the dataset's real transitions; at
  execution ``a_t = f(o_t, ô_{t+1})`` with ``ô_{t+1}`` the plan's second observation.
  ``inverse_loss = "mse"`` regresses ``request / max_request`` (MA-CDMP's default, same head),
  ``"ce"`` classifies ``0 … max_request`` (MADiff's discrete head).
* Loss ``= loss_weights[0] · inverse + loss_weights[1] · diffusion`` (DD: ``0.5 (diffusion +
  inverse)``, the same up to the learning rate), one Adam step per batch (the shared loop).

Our choices where the papers are silent or differ (all :class:`MADDConfig` fields; MA-CDMP's
values where one exists, so the comparison differs only in the method):

* ``prediction = "x0"`` (DD predicts ε). Pitfall 1 of ``specs/diffusion-planning.md``: with the
  cosine schedule and ``K = 100`` (``ᾱ_K = 2.4e-7``), an ε-model's error is amplified ~2,000x
  in the x0 estimate at the first steps of a few-step solver, and MA-CDMP measured that its
  ε-model ignores the clamped observation at high noise (``agents/macdmp/model.py``).
  Classifier-free guidance is unaffected by the parameterization: at a fixed ``x_k`` the map
  x0 ↔ ε is affine with the same coefficients for both halves, so ``x0_u + w (x0_c − x0_u)``
  is exactly the x0 of ``ε_u + w (ε_c − ε_u)``.
* Condition ``R`` = the window's discounted return ``y = Σ_{k<H} γ^k r_{t+k}`` (MA-CDMP eq. 14,
  ``γ = 0.99``) divided by the dataset's ``max |y|`` (``y_scaled ∈ [−1, 0]`` for these negative
  delay rewards; pitfall 6). DD conditions on the return-to-go to the episode end divided by a
  per-task ``returns_scale``; the window return is what MA-CDMP's ``J`` and MA-Diffuser's value
  model predict, so the three methods steer toward the same quantity.
* **Target return at execution** (DD's ``test_ret = 0.9`` of a scale whose maximum is about 1):
  ``target_return`` (in ``y_scaled`` units, ``[−1, 1]``) or, if unset (default), the
  ``target_quantile = 0.9`` quantile of ``y_scaled`` over the training windows, computed when
  the model is built and stored in the checkpoint. A high quantile rather than the maximum:
  the maximum is a handful of windows, and asking for returns never seen drives the
  conditional model out of its data (on ``adhoc-quick.h5``, H = 16: quantiles 0.5 / 0.9 / 1.0
  are −0.098 / −0.031 / −0.007). The planner setting ``target_return`` overrides it.
* ``temperature = 0.5`` (DD's low-temperature sampling: initial noise and every ancestral
  noise draw scaled by 0.5; only the initial noise for the deterministic DDIM/DPM-Solver).
* ``H = 16``, ``K = 100`` cosine, ``dim = 16``, ``(1, 2, 4, 8)``, inverse MLP (256, 256),
  Adam 2e-4, batch 256, EMA 0.995, gradient norm clipped to 1, planner K = 100 DDPM with
  ``clip_x0 = 1``: MA-CDMP's defaults (DD: H = 100, K = 200, dim 128, batch 32).

Use::

    cfg = preset_config("quick")
    res = train("datasets/adhoc-quick.h5", cfg, "runs/train-madd/x")
    pol = MADDPolicy.from_checkpoint(res["checkpoint"], env, sampler="dpm1", steps=10)

The pieces shared with MA-Diffuser, MADiff and MA-CDMP (the common config fields and checks,
the inverse-dynamics head, the checkpoint format, the training wiring, classifier-free return
guidance, the planner set-up and the Policy plumbing) are in :mod:`.common`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from radiorl.agents.offline.common import (OBS_DIM, Checkpoints, DiffusionPlanner,
                                           InverseDynamics, PlannerConfig, PlannerModel,
                                           PlannerPolicy, TracedCache, check_inverse_fields,
                                           check_planner_settings, config_from_preset,
                                           fit_planner, plan_inputs, prepare_training,
                                           return_conditioned, settings_from)
from radiorl.diffusion import NoiseSchedule, denoising_loss, noisy_inputs, sample
from radiorl.envs.base import check_number
from radiorl.nn import TemporalUNet

ALGO = "madd"
LABEL = "MA-DD"
CHECKPOINT_VERSION = 1

__all__ = ["MADDConfig", "MADDModel", "DDSettings", "DDPlanner", "MADDPolicy", "PRESETS",
           "preset_config", "build_model", "save_model", "load_model", "train"]


# =========================================================================== config
@dataclass
class MADDConfig(PlannerConfig):
    """Model, training and default planning settings (see the module docstring; the shared
    fields are documented in :class:`~radiorl.agents.offline.common.PlannerConfig`)."""

    TUPLES = PlannerConfig.TUPLES + ("inverse_hidden",)
    LABEL = LABEL
    LOSS_TERMS = ("inverse dynamics", "diffusion")

    # model
    inverse_hidden: tuple = (256, 256)
    inverse_loss: str = "mse"
    condition_dropout: float = 0.25
    # return condition at execution: target_return (y_scaled units) or, if None, this
    # quantile of the training windows' y_scaled
    target_return: float | None = None
    target_quantile: float = 0.9
    # default planner
    guidance: float = 1.2                      # classifier-free weight w
    temperature: float = 0.5

    def validate(self) -> "MADDConfig":
        super().validate()
        check_inverse_fields(self)
        check_number("condition_dropout", self.condition_dropout, low=0, high=1)
        if self.condition_dropout == 0 and self.guidance != 1:
            raise ValueError(f"guidance w = {self.guidance} needs the unconditional model: "
                             "condition_dropout must be in (0, 1] (or guidance = 1)")
        check_number("target_return", self.target_return, low=-1, high=1, allow_none=True)
        check_number("target_quantile", self.target_quantile, low=0, high=1)
        check_number("temperature", self.temperature, low=0)
        return self


#: Fields that define the networks (a checkpoint resumes / loads only with equal values).
ARCHITECTURE_FIELDS = ("horizon", "diffusion_steps", "schedule", "prediction", "dim",
                       "dim_mults", "inverse_hidden", "inverse_loss", "normalizer")

#: ``paper``: the paper's budget (100 epochs x 1,000 steps) and MA-CDMP's planner protocol
#: (K = 100 DDPM); ``quick``: the same model on a 20x smaller budget.
PRESETS = {"paper": {}, "quick": dict(epochs=5, steps_per_epoch=1000)}


def preset_config(preset: str = "paper", **overrides) -> MADDConfig:
    """:class:`MADDConfig` of ``preset`` with ``overrides`` (``None`` values ignored)."""
    return config_from_preset(MADDConfig, PRESETS, preset, overrides)


# =========================================================================== model
class MADDModel(InverseDynamics, PlannerModel):
    """Conditional denoiser and inverse dynamics of MA-DD plus the dataset facts needed to run
    them: ``max_request``, the obs ``normalizer``, ``return_scale`` (``max |y|``) and the
    default ``target_return`` (``y_scaled`` units). The inverse dynamics is the shared
    :class:`~radiorl.agents.offline.common.InverseDynamics` head."""

    def __init__(self, cfg: MADDConfig, max_request: int, normalizer, return_scale: float,
                 target_return: float):
        super().__init__(cfg, max_request, normalizer)
        self.return_scale = float(return_scale)
        self.target_return = check_number("target_return", target_return, low=-1, high=1)
        self.eps_model = TemporalUNet(OBS_DIM, OBS_DIM, dim=cfg.dim, dim_mults=cfg.dim_mults,
                                      cond_dim=1)
        self.inverse_model = self.inverse_mlp()
        self.schedule = NoiseSchedule.make(cfg.schedule, cfg.diffusion_steps)

    def losses(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """Losses on a batch of windows (``x`` float ``[B, H, 4]``, ``actions`` int ``[B, H]``,
        ``y_scaled`` ``[B]``): ``inverse``, ``diffusion`` (conditional with dropout) and the
        weighted sum ``total``."""
        cfg = self.cfg
        x = torch.as_tensor(batch["x"])
        a = torch.as_tensor(batch["actions"])
        cond = torch.as_tensor(batch["y_scaled"], dtype=x.dtype).reshape(-1, 1)
        B, H, C = x.shape
        l_inv = self.inverse_loss(x[:, :-1], x[:, 1:], a[:, :-1])
        known = torch.zeros(1, H, C, dtype=torch.bool)
        known[:, 0] = True
        k, noise, xk = noisy_inputs(self.schedule, x, known=known, generator=generator)
        drop = torch.rand(B, generator=generator) < cfg.condition_dropout
        pred = self.eps_model(xk, k, cond, drop)
        l_diff = denoising_loss(pred, x, noise, prediction=cfg.prediction, known=known)
        w = cfg.loss_weights
        return {"total": w[0] * l_inv + w[1] * l_diff, "inverse": l_inv, "diffusion": l_diff}


def target_from_windows(cfg: MADDConfig, y_scaled: np.ndarray) -> float:
    """The default execution condition: ``cfg.target_return`` or the ``target_quantile``
    quantile of ``y_scaled``."""
    if cfg.target_return is not None:
        return float(cfg.target_return)
    return float(np.quantile(np.asarray(y_scaled, np.float64), cfg.target_quantile))


def build_model(cfg: MADDConfig, max_request: int, normalizer, return_scale: float,
                target_return: float, seed: int | None = None) -> MADDModel:
    """A freshly initialized model; ``seed`` (default ``cfg.seed``) fixes the initial weights."""
    torch.manual_seed(cfg.seed if seed is None else seed)
    return MADDModel(cfg, max_request, normalizer, return_scale, target_return)


# =========================================================================== checkpoints
#: The MA-DD checkpoint format (``algo = "madd"``; dataset facts ``return_scale`` and the
#: default ``target_return``).
CHECKPOINTS = Checkpoints(ALGO, CHECKPOINT_VERSION, LABEL, MADDConfig, MADDModel,
                          facts=("return_scale", "target_return"),
                          architecture=ARCHITECTURE_FIELDS)
model_blob = CHECKPOINTS.blob
save_model = CHECKPOINTS.save
load_blob = CHECKPOINTS.load_blob
load_model = CHECKPOINTS.load_model


# =========================================================================== planner
@dataclass
class DDSettings:
    """How MA-DD plans at execution time: ``sampler`` ``ddpm|ddim|dpm1|dpm2`` and ``steps``
    (``sample_steps``); ``guidance`` = the classifier-free weight ``w``; ``target_return``
    (``None`` = the model's default, see the module docstring); ``clip_x0``; ``temperature``;
    ``jit`` (trace the denoiser)."""

    sampler: str = "ddpm"
    steps: int | None = None
    guidance: float = 1.2
    target_return: float | None = None
    clip_x0: float | None = 1.0
    temperature: float = 0.5
    jit: bool = True

    @classmethod
    def from_model(cls, model: MADDModel, **overrides) -> "DDSettings":
        c = model.cfg
        base = dict(sampler=c.sampler, steps=c.sample_steps, guidance=c.guidance,
                    clip_x0=c.clip_x0, temperature=c.temperature)
        return settings_from(cls, c, base, overrides, c.diffusion_steps,
                             optional=("steps", "clip_x0", "target_return"))

    def validate(self, K: int) -> "DDSettings":
        check_planner_settings(self, K)
        check_number("target_return", self.target_return, low=-1, high=1, allow_none=True)
        check_number("temperature", self.temperature, low=0)
        return self


class DDPlanner(DiffusionPlanner):
    """Batched MA-DD planning for ``M`` agents (see the module docstring)."""

    settings_class = DDSettings

    def __init__(self, model: MADDModel, settings: DDSettings | None = None):
        super().__init__(model, settings)
        self._eps = TracedCache(model.eps_model, self.settings.jit, freeze=True)

    @property
    def target_return(self) -> float:
        t = self.settings.target_return
        return self.model.target_return if t is None else float(t)

    def denoiser(self, cond: torch.Tensor):
        """``model_fn(x, k)`` with classifier-free guidance on ``cond [B, 1]``."""
        return return_conditioned(self._eps, cond, self.settings.guidance)

    @torch.no_grad()
    def plan(self, obs: np.ndarray, generator: torch.Generator
             ) -> tuple[np.ndarray, torch.Tensor]:
        """Plan for ``M`` agents from their raw observations ``obs [M, 4]``. Returns
        ``(requests int64 [M], plans [M, H, 4])`` (plans normalized)."""
        s, cfg = self.settings, self.cfg
        first = self.normalized_obs(obs)
        M, H = first.shape[0], cfg.horizon
        inpaint, _ = plan_inputs(first, H, OBS_DIM)
        cond = torch.full((M, 1), self.target_return)
        x0 = sample(self.denoiser(cond), self.model.schedule, shape=(M, H, OBS_DIM),
                    method=s.sampler, steps=s.steps if s.sampler != "ddpm" else None,
                    prediction=cfg.prediction, inpaint=inpaint, clip_x0=s.clip_x0,
                    temperature=float(s.temperature), generator=generator)
        a = self.model.inverse_actions(x0[:, 0], x0[:, 1])
        return a.numpy().astype(np.int64), x0


class MADDPolicy(PlannerPolicy):
    """A trained MA-DD as a :class:`~radiorl.envs.base.Policy` for the ad hoc network (policy
    name ``madd:<checkpoint.pt>``); ``requires = {"local_obs"}``. ``from_checkpoint`` takes the
    planner settings (``sampler``, ``steps``, ``guidance``, ``target_return``, ``clip_x0``,
    ``temperature``, ``jit``) as overrides."""

    name = "madd"
    settings_class = DDSettings
    checkpoints = CHECKPOINTS

    def __init__(self, model: MADDModel, settings: DDSettings | None = None):
        super().__init__()
        self.model = model
        self.planner = DDPlanner(model, settings)


# =========================================================================== training
def train(dataset_path, cfg: MADDConfig, run_dir, resume=None, show_progress: bool = True,
          log=print) -> dict:
    """Train MA-DD on the offline dataset ``dataset_path`` with the shared loop of
    :mod:`radiorl.agents.offline.trainer` (per epoch: validation losses on held-out
    trajectories, optional evaluation episodes, ``training.csv``, TensorBoard,
    ``checkpoints/last.pt``). The final ``checkpoints/planner.pt`` is the policy
    ``madd:<run>/checkpoints/planner.pt``.

    Returns ``{"history", "checkpoint", "best_epoch", "run_dir"}``; ``resume``: a checkpoint
    or a run folder holding ``checkpoints/last.pt`` (same architecture and dataset).
    """
    data = prepare_training(dataset_path, cfg, run_dir, LABEL)
    model = build_model(cfg, data.ds.max_request, data.windows.normalizer,
                        data.windows.return_scale, target_from_windows(cfg, data.train.y_scaled))
    return fit_planner(model, cfg, data, CHECKPOINTS, MADDPolicy,
                       terms=("inverse", "diffusion"), title=LABEL,
                       progress=f"{LABEL} H={cfg.horizon} on {Path(dataset_path).name}",
                       resume=resume, show_progress=show_progress, log=log)

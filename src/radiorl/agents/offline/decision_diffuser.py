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
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from radiorl.agents.offline.common import OBS_DIM
from radiorl.agents.offline.common import (ConfigIO, PlannerPolicy, TracedCache,
                                             check_common_fields, check_loss_weights,
                                             check_same_architecture, check_same_dataset,
                                             evaluation_reward, plan_inputs, prepare_training,
                                             settings_from)
from radiorl.diffusion import NoiseSchedule, classifier_free, denoising_loss, noisy_inputs, \
    sample
from radiorl.envs.base import check_number
from radiorl.nn import MLP, TemporalUNet

ALGO = "madd"
LABEL = "MA-DD"
CHECKPOINT_VERSION = 1

__all__ = ["MADDConfig", "MADDModel", "DDSettings", "DDPlanner", "MADDPolicy", "PRESETS",
           "preset_config", "build_model", "save_model", "load_model", "train"]


# =========================================================================== config
@dataclass
class MADDConfig(ConfigIO):
    """Model, training and default planning settings (see the module docstring)."""

    TUPLES = ("dim_mults", "inverse_hidden", "loss_weights", "eval_scenarios")
    LABEL = LABEL

    # model
    horizon: int = 16
    diffusion_steps: int = 100
    schedule: str = "cosine"
    prediction: str = "x0"
    dim: int = 16
    dim_mults: tuple = (1, 2, 4, 8)
    inverse_hidden: tuple = (256, 256)
    inverse_loss: str = "mse"
    normalizer: str = "limits"
    gamma: float = 0.99
    condition_dropout: float = 0.25
    # return condition at execution: target_return (y_scaled units) or, if None, this
    # quantile of the training windows' y_scaled
    target_return: float | None = None
    target_quantile: float = 0.9
    # training (paper: 100 epochs x 1,000 steps)
    epochs: int = 100
    steps_per_epoch: int = 1000
    batch_size: int = 256
    lr: float = 2e-4
    ema: float = 0.995
    grad_clip: float = 1.0
    loss_weights: tuple = (1.0, 1.0)           # (inverse dynamics, diffusion)
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
    guidance: float = 1.2                      # classifier-free weight w
    clip_x0: float | None = 1.0
    temperature: float = 0.5
    # run
    seed: int = 0
    threads: int = 0

    def validate(self) -> "MADDConfig":
        check_common_fields(self)
        self.inverse_hidden = tuple(int(check_number("inverse_hidden", h, low=1, high=8192,
                                                     integer=True))
                                    for h in (self.inverse_hidden or ()))
        if self.inverse_loss not in ("mse", "ce"):
            raise ValueError(f"inverse_loss must be 'mse' or 'ce', got {self.inverse_loss!r}")
        check_number("condition_dropout", self.condition_dropout, low=0, high=1)
        if self.condition_dropout == 0 and self.guidance != 1:
            raise ValueError(f"guidance w = {self.guidance} needs the unconditional model: "
                             "condition_dropout must be in (0, 1] (or guidance = 1)")
        check_number("target_return", self.target_return, low=-1, high=1, allow_none=True)
        check_number("target_quantile", self.target_quantile, low=0, high=1)
        check_number("temperature", self.temperature, low=0)
        self.loss_weights = check_loss_weights(self.loss_weights,
                                               ("inverse dynamics", "diffusion"))
        return self


#: Fields that define the networks (a checkpoint resumes / loads only with equal values).
ARCHITECTURE_FIELDS = ("horizon", "diffusion_steps", "schedule", "prediction", "dim",
                       "dim_mults", "inverse_hidden", "inverse_loss", "normalizer")

#: ``paper``: the paper's budget (100 epochs x 1,000 steps) and MA-CDMP's planner protocol
#: (K = 100 DDPM); ``quick``: the same model on a 20x smaller budget.
PRESETS = {"paper": {}, "quick": dict(epochs=5, steps_per_epoch=1000)}


def preset_config(preset: str = "paper", **overrides) -> MADDConfig:
    """:class:`MADDConfig` of ``preset`` with ``overrides`` (``None`` values ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    kw = dict(PRESETS[preset])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return MADDConfig(**kw).validate()


# =========================================================================== model
class MADDModel(nn.Module):
    """Conditional denoiser and inverse dynamics of MA-DD plus the dataset facts needed to run
    them: ``max_request``, the obs ``normalizer``, ``return_scale`` (``max |y|``) and the
    default ``target_return`` (``y_scaled`` units)."""

    def __init__(self, cfg: MADDConfig, max_request: int, normalizer, return_scale: float,
                 target_return: float):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.max_request = int(check_number("max_request", max_request, low=1, integer=True))
        self.normalizer = normalizer
        self.return_scale = float(return_scale)
        self.target_return = check_number("target_return", target_return, low=-1, high=1)
        self.eps_model = TemporalUNet(OBS_DIM, OBS_DIM, dim=cfg.dim, dim_mults=cfg.dim_mults,
                                      cond_dim=1)
        n_out = 1 if cfg.inverse_loss == "mse" else self.max_request + 1
        self.inverse_model = MLP(2 * OBS_DIM, n_out, hidden=cfg.inverse_hidden,
                                 activation="relu")
        self.schedule = NoiseSchedule.make(cfg.schedule, cfg.diffusion_steps)

    def inverse_logits(self, o_t: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        """``[..., 4]`` normalized obs pairs → ``[..., 1]`` (mse) or ``[..., A+1]`` (ce)."""
        return self.inverse_model(torch.cat([o_t, o_next], dim=-1))

    def inverse_actions(self, o_t: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        """Requested RBs (int64, ``[...]``, in ``[0, max_request]``) for the transitions."""
        out = self.inverse_logits(o_t, o_next)
        if self.cfg.inverse_loss == "mse":
            return torch.round(out[..., 0].clamp(0.0, 1.0) * self.max_request).to(torch.int64)
        return out.argmax(dim=-1)

    def losses(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """Losses on a batch of windows (``x`` float ``[B, H, 4]``, ``actions`` int ``[B, H]``,
        ``y_scaled`` ``[B]``): ``inverse``, ``diffusion`` (conditional with dropout) and the
        weighted sum ``total``."""
        cfg = self.cfg
        x = torch.as_tensor(batch["x"])
        a = torch.as_tensor(batch["actions"])
        cond = torch.as_tensor(batch["y_scaled"], dtype=x.dtype).reshape(-1, 1)
        B, H, C = x.shape
        out = self.inverse_logits(x[:, :-1], x[:, 1:])
        if cfg.inverse_loss == "mse":
            l_inv = ((out[..., 0] - a[:, :-1].to(out.dtype) / self.max_request) ** 2).mean()
        else:
            l_inv = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]),
                                                a[:, :-1].reshape(-1).clamp(0, self.max_request))
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
def model_blob(model: MADDModel, dataset_info: dict, **extra) -> dict:
    return {"version": CHECKPOINT_VERSION, "algo": ALGO, "config": model.cfg.to_dict(),
            "max_request": model.max_request, "normalizer": model.normalizer.to_dict(),
            "return_scale": model.return_scale, "target_return": model.target_return,
            "dataset": dict(dataset_info), "model": model.state_dict(), **extra}


def save_model(path, model: MADDModel, dataset_info: dict, **extra):
    """Atomic save (loadable with ``weights_only=True``)."""
    from radiorl.runtime.checkpoints import save_checkpoint
    return save_checkpoint(path, model_blob(model, dataset_info, **extra))


def load_blob(path) -> dict:
    from radiorl.runtime.checkpoints import load_checkpoint
    return load_checkpoint(path, ALGO, CHECKPOINT_VERSION, LABEL)


def load_model(path, weights: str = "model") -> tuple[MADDModel, dict]:
    """Rebuild the model of checkpoint ``path`` (``weights``: ``"model"`` (EMA) or
    ``"train_model"``)."""
    from radiorl.data.normalizers import Normalizer
    blob = load_blob(path)
    try:
        cfg = MADDConfig.from_dict(blob["config"]).validate()
        model = MADDModel(cfg, blob["max_request"], Normalizer.from_dict(blob["normalizer"]),
                          blob["return_scale"], blob["target_return"])
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
        from radiorl.agents.offline.common import check_sampler
        check_sampler(self.sampler, self.steps, K, "sampler", "sample_steps")
        check_number("guidance", self.guidance, low=0)
        check_number("target_return", self.target_return, low=-1, high=1, allow_none=True)
        check_number("clip_x0", self.clip_x0, low=0, low_open=True, allow_none=True)
        check_number("temperature", self.temperature, low=0)
        if not isinstance(self.jit, bool):
            raise ValueError(f"jit must be true or false, got {self.jit!r}")
        return self


class DDPlanner:
    """Batched MA-DD planning for ``M`` agents (see the module docstring)."""

    def __init__(self, model: MADDModel, settings: DDSettings | None = None):
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.cfg = model.cfg
        self.settings = (settings or DDSettings.from_model(model)).validate(
            model.cfg.diffusion_steps)
        self._eps = TracedCache(model.eps_model, self.settings.jit, freeze=True)

    @property
    def target_return(self) -> float:
        t = self.settings.target_return
        return self.model.target_return if t is None else float(t)

    def normalized_obs(self, obs: np.ndarray) -> torch.Tensor:
        """Raw observations ``[M, 4]`` → the clamped first position ``[M, 4]``."""
        o = self.model.normalizer.normalize(np.asarray(obs, np.float32))
        return torch.as_tensor(np.asarray(o, np.float32))

    def denoiser(self, cond: torch.Tensor):
        """``model_fn(x, k)`` with classifier-free guidance on ``cond [B, 1]``."""
        w, eps = float(self.settings.guidance), self._eps
        B = cond.shape[0]
        if w == 1.0 or w == 0.0:                       # one half only: skip the other forward
            drop = torch.full((B,), w == 0.0, dtype=torch.bool)
            return lambda x, k: eps(x, k, cond, drop)
        return classifier_free(eps, cond, scale=w)

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
    name ``madd:<checkpoint.pt>``); ``requires = {"local_obs"}``."""

    name = "madd"

    def __init__(self, model: MADDModel, settings: DDSettings | None = None):
        super().__init__()
        self.model = model
        self.planner = DDPlanner(model, settings)

    @classmethod
    def from_checkpoint(cls, path, env=None, **settings) -> "MADDPolicy":
        """Load ``path``; ``settings`` override the stored planner (``sampler``, ``steps``,
        ``guidance``, ``target_return``, ``clip_x0``, ``temperature``, ``jit``)."""
        model, _ = load_model(path)
        pol = cls(model, DDSettings.from_model(model, **settings))
        if env is not None:
            pol.bind(env)
        return pol


# =========================================================================== training
def _check_resume(blob: dict, cfg: MADDConfig, info: dict, path) -> None:
    stored = MADDConfig.from_dict(blob["config"])
    check_same_architecture(stored, cfg, ARCHITECTURE_FIELDS + ("gamma",), path)
    check_same_dataset(blob, info, path)


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
    from radiorl.agents.offline.common import validation_losses
    from radiorl.agents.offline.trainer import fit, plot_history

    run_dir, ds, windows, info, scenarios, train_w, valid_w = prepare_training(
        dataset_path, cfg, run_dir, LABEL)
    model = build_model(cfg, ds.max_request, windows.normalizer, windows.return_scale,
                        target_from_windows(cfg, train_w.y_scaled))

    def make_eval_policy(m):
        return lambda: MADDPolicy(m, DDSettings.from_model(
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
                 ("inverse", "diffusion"), LABEL)
    return {k: out[k] for k in ("history", "checkpoint", "best_epoch", "run_dir")}

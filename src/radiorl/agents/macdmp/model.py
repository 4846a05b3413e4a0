"""MA-CDMP networks (Zhang et al., Sec. IV; Sec. VI-A) and their configuration.

One parameter set is shared by all (homogeneous) agents; agents are folded into the batch.

- **Noise model** ``ε_θ([x_k, x̄_k], k)`` (eqs. 13, 17, 19): ``x`` is the agent's normalized
  observation sequence ``(o_t … o_{t+H−1})`` ``[H, 4]`` and ``x̄`` the sequence of its 1-hop
  mean-field observations ``[H, 4]``; they are concatenated along the channel axis
  (``C = 8``) and the network predicts the noise of both (eq. 20 denoises ``[x, x̄]``).
  ``denoiser="unet"``: :class:`~radiorl.nn.TemporalUNet` (paper: 8 residual blocks, 4 down /
  4 up, embeddings after the first convolution of each block); ``denoiser="mlp"``:
  :class:`~radiorl.nn.MLPDenoiser` (the real-time planner's small denoiser).
- **Return model** ``J_ψ([x_k, x̄_k], k)`` (eq. 16–17): ``value_net="unet"`` is the U-Net's
  down half with a linear head (:class:`~radiorl.nn.TemporalValueNet`, paper); ``"mlp"`` a
  flattened MLP (cheap input gradients for real-time guidance). Trained on noisy samples
  against the window's discounted return ``y`` (eq. 14) divided by the dataset's
  ``return_scale`` (so ``y ∈ [−1, 0]`` for this network's negative-delay rewards).
- **Inverse dynamics** ``f_φ(o_t, o_{t+1})`` (eq. 18): an MLP on the agent's own two
  consecutive normalized observations. ``inverse_loss="mse"`` (paper eq. 19) regresses the
  request divided by ``max_request``; ``"ce"`` classifies the request among
  ``0 … max_request``.
- **Without mean field** (``mean_field=False``, the ablation MA-CDMP w/o MF): the same model
  with ``C = 4`` (no ``x̄``).

**Parameterization** (``prediction``): the network's output is the clean trajectory ``x_0``
(``"x0"``, default; Diffuser's locomotion setting) or the noise ``ε`` (``"epsilon"``, eq. 19
as written). The two are the same model up to the loss weighting over ``k``
(``x̂_0 = (x_k − √(1−ᾱ_k) ε̂)/√ᾱ_k``), but on this data they plan very differently: a noise
model trained for 3,000 steps barely uses the clamped current observation at high noise
(its ``x̂_0`` of the next frame is 10–16 packets off at ``k = 80``, where the data move about
1 packet per frame), so its plans jump and the inverse model turns them into poor requests:
−22.2 ± 8.7 mean reward on ``adhoc-8-2:6`` (3 seeds x 300 frames, 10-step DPM-Solver, 2 of 3
seeds unstable), against −11.4 ± 5.9 (all stable) for the ``x_0`` model trained the same way
(H = 8, 3,000 steps), whose next-frame plans stay within about a packet of the data.
Pitfall 1 of ``specs/diffusion-planning.md`` names this fix.

Our choices where the paper is silent (all :class:`MACDMPConfig` fields; see
``specs/diffusion-planning.md``): horizon ``H = 16`` (the quick-preset Fig. 7 sweep, 2,000
training steps, 4 scenarios x 3 seeds: mean reward −12.39 / −12.98 / −9.71 for H = 4 / 8 / 16,
and only H = 16 stable on every seed of the 9-4:5 and 8-4:4 scenarios); cosine schedule
with ``K = 100`` (paper: K = 100 for Fig. 9); U-Net width ``dim = 16`` with
``dim_mults = (1, 2, 4, 8)`` (the paper's 4 + 4 layout at a width where one guided K = 100
plan for 9 agents takes about 0.4 s on one core; BENCHMARKS.md); per-dimension ``limits``
normalizer (data in [−1, 1], so ``clip_x0 = 1`` is meaningful; pitfall 1); discount
``γ = 0.99`` for eq. 14; Adam 2e-4, batch 256, EMA 0.995 of the weights (Diffuser /
Decision Diffuser); diffusion loss zero at the clamped first position and the clamped
position also clamped in the noisy training input (pitfall 8).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from radiorl.diffusion import SCHEDULES, NoiseSchedule, denoising_loss, noisy_inputs
from radiorl.agents.offline.common import OBS_DIM, SAMPLERS, check_sampler  # noqa: F401
from radiorl.agents.offline.trainer import check_loop_config
from radiorl.envs.base import check_number
from radiorl.nn import MLP, MLPDenoiser, TemporalUNet, TemporalValueNet

CHECKPOINT_VERSION = 1


@dataclass
class MACDMPConfig:
    """Model, training and default planning settings (see the module docstring)."""

    # model
    horizon: int = 16
    diffusion_steps: int = 100
    schedule: str = "cosine"
    prediction: str = "x0"
    mean_field: bool = True
    denoiser: str = "unet"
    value_net: str = "unet"
    dim: int = 16
    dim_mults: tuple = (1, 2, 4, 8)
    mlp_hidden: int = 256
    mlp_layers: int = 3
    inverse_hidden: tuple = (256, 256)
    inverse_loss: str = "mse"
    inverse_target: str = "request"
    normalizer: str = "limits"
    gamma: float = 0.99
    # training (paper: 100 epochs x 1,000 steps)
    epochs: int = 100
    steps_per_epoch: int = 1000
    batch_size: int = 256
    lr: float = 2e-4
    ema: float = 0.995
    grad_clip: float = 1.0
    loss_weights: tuple = (1.0, 1.0, 1.0)      # (inverse dynamics, diffusion, return model)
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
    guide_last: int | None = None
    warm_start: int | None = None
    # run
    seed: int = 0
    threads: int = 0

    def validate(self) -> "MACDMPConfig":
        check_number("horizon", self.horizon, low=2, high=512, integer=True)
        check_number("diffusion_steps", self.diffusion_steps, low=1, high=10_000, integer=True)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if self.prediction not in ("epsilon", "x0"):
            raise ValueError(f"prediction must be 'epsilon' or 'x0', got {self.prediction!r}")
        if not isinstance(self.mean_field, bool):
            raise ValueError(f"mean_field must be true or false, got {self.mean_field!r}")
        if self.denoiser not in ("unet", "mlp"):
            raise ValueError(f"denoiser must be 'unet' or 'mlp', got {self.denoiser!r}")
        if self.value_net not in ("unet", "mlp"):
            raise ValueError(f"value_net must be 'unet' or 'mlp', got {self.value_net!r}")
        check_number("dim", self.dim, low=1, high=1024, integer=True)
        self.dim_mults = tuple(int(check_number("dim_mults", m, low=1, high=64, integer=True))
                               for m in (self.dim_mults or ()))
        if not self.dim_mults:
            raise ValueError("dim_mults must list at least one level, e.g. [1, 2, 4, 8]")
        check_number("mlp_hidden", self.mlp_hidden, low=1, high=8192, integer=True)
        check_number("mlp_layers", self.mlp_layers, low=1, high=32, integer=True)
        self.inverse_hidden = tuple(int(check_number("inverse_hidden", h, low=1, high=8192,
                                                     integer=True))
                                    for h in (self.inverse_hidden or ()))
        if self.inverse_loss not in ("mse", "ce"):
            raise ValueError(f"inverse_loss must be 'mse' or 'ce', got {self.inverse_loss!r}")
        if self.inverse_target not in ("request", "grant"):
            raise ValueError(f"inverse_target must be 'request' or 'grant', got "
                             f"{self.inverse_target!r}")
        if self.normalizer not in ("limits", "gaussian"):
            raise ValueError(f"normalizer must be 'limits' or 'gaussian', got "
                             f"{self.normalizer!r}")
        check_number("gamma", self.gamma, low=0, high=1, low_open=True)
        check_number("batch_size", self.batch_size, low=1, high=1 << 20, integer=True)
        lw = tuple(self.loss_weights or ())
        if len(lw) != 3:
            raise ValueError("loss_weights must be 3 numbers >= 0 (inverse dynamics, diffusion, "
                             f"return model), got {self.loss_weights!r}")
        self.loss_weights = tuple(check_number("loss_weights", w, low=0) for w in lw)
        check_number("valid_fraction", self.valid_fraction, low=0, high=0.5)
        check_number("valid_batches", self.valid_batches, low=1, high=10_000, integer=True)
        check_loop_config(self)
        self.eval_scenarios = tuple(str(x) for x in (self.eval_scenarios or ()))
        check_number("eval_frames", self.eval_frames, low=1, integer=True)
        check_number("eval_seed", self.eval_seed, low=0, integer=True)
        check_sampler(self.eval_sampler, self.eval_sample_steps, self.diffusion_steps,
                      "eval_sampler", "eval_sample_steps")
        check_sampler(self.sampler, self.sample_steps, self.diffusion_steps)
        check_number("guidance", self.guidance, low=0)
        check_number("guide_stop", self.guide_stop, low=0, high=self.diffusion_steps,
                     integer=True)
        check_number("clip_x0", self.clip_x0, low=0, low_open=True, allow_none=True)
        check_number("candidates", self.candidates, low=1, high=1024, integer=True)
        check_number("guide_last", self.guide_last, low=1, high=self.diffusion_steps,
                     integer=True, allow_none=True)
        check_number("warm_start", self.warm_start, low=1, high=self.diffusion_steps,
                     integer=True, allow_none=True)
        check_number("seed", self.seed, low=0, integer=True)
        check_number("threads", self.threads, low=0, high=1024, integer=True)
        return self

    @property
    def channels(self) -> int:
        """Channels ``C`` of a planned trajectory: 8 with the mean field, 4 without."""
        return 2 * OBS_DIM if self.mean_field else OBS_DIM

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("dim_mults", "inverse_hidden", "loss_weights", "eval_scenarios"):
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MACDMPConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown MA-CDMP config fields {unknown}")
        kw = dict(d)
        for k in ("dim_mults", "inverse_hidden", "loss_weights", "eval_scenarios"):
            if k in kw and kw[k] is not None:
                kw[k] = tuple(kw[k])
        return cls(**kw)


#: Fields that define the networks: a checkpoint can only be resumed / loaded into a model
#: built with the same values.
ARCHITECTURE_FIELDS = ("horizon", "diffusion_steps", "schedule", "prediction", "mean_field",
                       "denoiser", "value_net", "dim", "dim_mults", "mlp_hidden", "mlp_layers",
                       "inverse_hidden", "inverse_loss", "inverse_target", "normalizer")



class MACDMPModel(nn.Module):
    """The three networks of MA-CDMP plus the dataset facts needed to run them.

    ``max_request``: largest RB request (actions are ``0 … max_request``);
    ``normalizer``: the obs :class:`~radiorl.data.normalizers.Normalizer` (used for ``x`` and
    ``x̄``); ``return_scale``: the dataset's ``max |y|`` (``J`` predicts ``y / return_scale``).
    """

    def __init__(self, cfg: MACDMPConfig, max_request: int, normalizer, return_scale: float):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.max_request = int(check_number("max_request", max_request, low=1, integer=True))
        self.normalizer = normalizer
        self.return_scale = float(return_scale)
        H, C = cfg.horizon, cfg.channels
        if cfg.denoiser == "unet":
            self.eps_model = TemporalUNet(C, C, dim=cfg.dim, dim_mults=cfg.dim_mults)
        else:
            self.eps_model = MLPDenoiser(C, H, C, hidden=cfg.mlp_hidden, layers=cfg.mlp_layers,
                                         dim=cfg.dim)
        if cfg.value_net == "unet":
            self.value_model = TemporalValueNet(C, H, dim=cfg.dim, dim_mults=cfg.dim_mults)
        else:
            self.value_model = _MLPValue(C, H, cfg.mlp_hidden, cfg.mlp_layers, cfg.dim)
        n_out = 1 if cfg.inverse_loss == "mse" else self.max_request + 1
        self.inverse_model = MLP(2 * OBS_DIM, n_out, hidden=cfg.inverse_hidden,
                                 activation="relu")
        self.schedule = NoiseSchedule.make(cfg.schedule, cfg.diffusion_steps)

    # ------------------------------------------------------------------ pieces
    def inverse_logits(self, o_t: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        """``[..., 4]`` normalized obs pairs → ``[..., 1]`` (mse) or ``[..., A+1]`` (ce)."""
        return self.inverse_model(torch.cat([o_t, o_next], dim=-1))

    def inverse_actions(self, o_t: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        """Requested RBs (int64, ``[...]``, in ``[0, max_request]``) for the transitions."""
        out = self.inverse_logits(o_t, o_next)
        if self.cfg.inverse_loss == "mse":
            a = torch.round(out[..., 0].clamp(0.0, 1.0) * self.max_request)
            return a.to(torch.int64)
        return out.argmax(dim=-1)

    def value(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``J_ψ(x_k, k)`` ``[B]`` in units of ``return_scale``."""
        return self.value_model(x, k)

    def losses(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """Eq. 19 on a batch of windows: ``x``, ``xbar`` float ``[B, H, 4]``, ``actions`` int
        ``[B, H]``, ``y_scaled`` float ``[B]``. Returns the three losses and their weighted
        sum ``total``."""
        cfg = self.cfg
        x = torch.as_tensor(batch["x"])
        traj = torch.cat([x, torch.as_tensor(batch["xbar"])], -1) if cfg.mean_field else x
        a = torch.as_tensor(batch["actions" if cfg.inverse_target == "request" else "grants"])
        y = torch.as_tensor(batch["y_scaled"], dtype=traj.dtype)
        B, H, C = traj.shape
        # inverse dynamics on every (o_t, o_{t+1}) pair of the window
        out = self.inverse_logits(x[:, :-1], x[:, 1:])
        if cfg.inverse_loss == "mse":
            l_inv = ((out[..., 0] - a[:, :-1].to(out.dtype) / self.max_request) ** 2).mean()
        else:
            l_inv = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]),
                                                a[:, :-1].reshape(-1).clamp(0, self.max_request))
        # diffusion: k ~ U{1..K}, forward noising, first position clamped (inpainted)
        known = torch.zeros(1, H, C, dtype=torch.bool)
        known[:, 0] = True
        k, noise, xk = noisy_inputs(self.schedule, traj, known=known, generator=generator)
        l_eps = denoising_loss(self.eps_model(xk, k), traj, noise, prediction=cfg.prediction,
                               known=known)
        l_val = ((self.value_model(xk, k) - y) ** 2).mean()
        w = cfg.loss_weights
        total = w[0] * l_inv + w[1] * l_eps + w[2] * l_val
        return {"total": total, "inverse": l_inv, "diffusion": l_eps, "value": l_val}


class _MLPValue(nn.Module):
    """Flattened-trajectory return model ``[B, H, C]`` + sinusoidal step embedding → ``[B]``."""

    def __init__(self, channels: int, horizon: int, hidden: int, layers: int, dim: int):
        super().__init__()
        from radiorl.nn.temporal import TimeEmbedding
        self.horizon, self.channels = horizon, channels
        self.time = TimeEmbedding(dim)
        self.mlp = MLP(horizon * channels + dim, 1, hidden=(hidden,) * layers,
                       activation="mish")

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[1] != self.horizon or x.shape[2] != self.channels:
            raise ValueError(f"value model expects x of shape [B, {self.horizon}, "
                             f"{self.channels}], got {tuple(x.shape)}")
        h = torch.cat([x.reshape(x.shape[0], -1), self.time(k)], dim=-1)
        return self.mlp(h)[..., 0]


def build_model(cfg: MACDMPConfig, max_request: int, normalizer, return_scale: float,
                seed: int | None = None) -> MACDMPModel:
    """A freshly initialized model; ``seed`` (default ``cfg.seed``) fixes the initial weights."""
    torch.manual_seed(cfg.seed if seed is None else seed)
    return MACDMPModel(cfg, max_request, normalizer, return_scale)


# --------------------------------------------------------------------------- checkpoints
def model_blob(model: MACDMPModel, dataset_info: dict, **extra) -> dict:
    """The checkpoint dict of ``model`` (weights plus everything needed to rebuild it)."""
    return {"version": CHECKPOINT_VERSION, "algo": "macdmp", "config": model.cfg.to_dict(),
            "max_request": model.max_request, "normalizer": model.normalizer.to_dict(),
            "return_scale": model.return_scale, "dataset": dict(dataset_info),
            "model": model.state_dict(), **extra}


def save_model(path, model: MACDMPModel, dataset_info: dict, **extra):
    """Atomic save of :func:`model_blob` (loadable with ``weights_only=True``)."""
    from radiorl.runtime.checkpoints import save_checkpoint
    return save_checkpoint(path, model_blob(model, dataset_info, **extra))


def load_blob(path) -> dict:
    """An MA-CDMP checkpoint dict (``torch.load(weights_only=True)``; clear error otherwise)."""
    from radiorl.runtime.checkpoints import load_checkpoint
    return load_checkpoint(path, "macdmp", CHECKPOINT_VERSION, "MA-CDMP")


def load_model(path, weights: str = "model") -> tuple[MACDMPModel, dict]:
    """Rebuild the model of checkpoint ``path`` (``weights``: ``"model"`` or ``"ema"``)."""
    from radiorl.data.normalizers import Normalizer
    blob = load_blob(path)
    try:
        cfg = MACDMPConfig.from_dict(blob["config"]).validate()
        model = MACDMPModel(cfg, blob["max_request"], Normalizer.from_dict(blob["normalizer"]),
                            blob["return_scale"])
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


#: Named starting points for :class:`MACDMPConfig` (``radiorl train macdmp --preset``).
#: ``paper``: the paper's budget (100 epochs x 1,000 steps) and planner (U-Net, K = 100 DDPM,
#: classifier guidance); ``quick``: the same model on a 20x smaller budget; ``realtime``:
#: the small MLP denoiser and return model, planned with a few DPM-Solver steps, guidance on
#: the last steps only and a warm start from the previous plan (per-frame decision within
#: one 5 ms frame on one core; see BENCHMARKS.md).
PRESETS = {
    "paper": {},
    "quick": dict(epochs=5, steps_per_epoch=1000),
    "realtime": dict(denoiser="mlp", value_net="mlp", mlp_hidden=256, mlp_layers=2,
                     sampler="dpm1", sample_steps=5, guide_last=None, warm_start=None),
}


def preset_config(preset: str = "paper", **overrides) -> MACDMPConfig:
    """:class:`MACDMPConfig` of ``preset`` with ``overrides`` (``None`` values ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    kw = dict(PRESETS[preset])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return MACDMPConfig(**kw).validate()

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

The fields, checks, checkpoint format and inverse-dynamics head that MA-CDMP shares with the
offline baselines are in :mod:`radiorl.agents.offline.common`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from radiorl.agents.offline.common import (OBS_DIM, SAMPLERS, Checkpoints,  # noqa: F401
                                           InverseDynamics, PlannerConfig, PlannerModel,
                                           check_inverse_fields, check_sampler,
                                           config_from_preset)
from radiorl.diffusion import NoiseSchedule, denoising_loss, noisy_inputs
from radiorl.envs.base import check_number
from radiorl.nn import MLP, MLPDenoiser, TemporalUNet, TemporalValueNet

CHECKPOINT_VERSION = 1


@dataclass
class MACDMPConfig(PlannerConfig):
    """Model, training and default planning settings (see the module docstring; the fields
    shared with the offline baselines are documented in
    :class:`~radiorl.agents.offline.common.PlannerConfig`)."""

    LABEL = "MA-CDMP"
    TUPLES = PlannerConfig.TUPLES + ("inverse_hidden",)
    LOSS_TERMS = ("inverse dynamics", "diffusion", "return model")

    # model
    mean_field: bool = True
    denoiser: str = "unet"
    value_net: str = "unet"
    mlp_hidden: int = 256
    mlp_layers: int = 3
    inverse_hidden: tuple = (256, 256)
    inverse_loss: str = "mse"
    inverse_target: str = "request"
    # training: (inverse dynamics, diffusion, return model)
    loss_weights: tuple = (1.0, 1.0, 1.0)
    # default planner
    guide_stop: int = 2
    candidates: int = 1
    guide_last: int | None = None
    warm_start: int | None = None

    def validate(self) -> "MACDMPConfig":
        super().validate()
        if not isinstance(self.mean_field, bool):
            raise ValueError(f"mean_field must be true or false, got {self.mean_field!r}")
        if self.denoiser not in ("unet", "mlp"):
            raise ValueError(f"denoiser must be 'unet' or 'mlp', got {self.denoiser!r}")
        if self.value_net not in ("unet", "mlp"):
            raise ValueError(f"value_net must be 'unet' or 'mlp', got {self.value_net!r}")
        check_number("mlp_hidden", self.mlp_hidden, low=1, high=8192, integer=True)
        check_number("mlp_layers", self.mlp_layers, low=1, high=32, integer=True)
        check_inverse_fields(self)
        check_number("guide_stop", self.guide_stop, low=0, high=self.diffusion_steps,
                     integer=True)
        check_number("candidates", self.candidates, low=1, high=1024, integer=True)
        check_number("guide_last", self.guide_last, low=1, high=self.diffusion_steps,
                     integer=True, allow_none=True)
        check_number("warm_start", self.warm_start, low=1, high=self.diffusion_steps,
                     integer=True, allow_none=True)
        return self

    @property
    def channels(self) -> int:
        """Channels ``C`` of a planned trajectory: 8 with the mean field, 4 without."""
        return 2 * OBS_DIM if self.mean_field else OBS_DIM


#: Fields that define the networks: a checkpoint can only be resumed / loaded into a model
#: built with the same values.
ARCHITECTURE_FIELDS = ("horizon", "diffusion_steps", "schedule", "prediction", "mean_field",
                       "denoiser", "value_net", "dim", "dim_mults", "mlp_hidden", "mlp_layers",
                       "inverse_hidden", "inverse_loss", "inverse_target", "normalizer")


class MACDMPModel(InverseDynamics, PlannerModel):
    """The three networks of MA-CDMP plus the dataset facts needed to run them.

    ``max_request``: largest RB request (actions are ``0 … max_request``);
    ``normalizer``: the obs :class:`~radiorl.data.normalizers.Normalizer` (used for ``x`` and
    ``x̄``); ``return_scale``: the dataset's ``max |y|`` (``J`` predicts ``y / return_scale``).
    The inverse dynamics ``f_φ`` (``inverse_model``, ``inverse_logits``, ``inverse_actions``)
    is the shared :class:`~radiorl.agents.offline.common.InverseDynamics` head.
    """

    def __init__(self, cfg: MACDMPConfig, max_request: int, normalizer, return_scale: float):
        super().__init__(cfg, max_request, normalizer)
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
        self.inverse_model = self.inverse_mlp()
        self.schedule = NoiseSchedule.make(cfg.schedule, cfg.diffusion_steps)

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
        l_inv = self.inverse_loss(x[:, :-1], x[:, 1:], a[:, :-1])
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
#: The MA-CDMP checkpoint format (``algo = "macdmp"``; dataset fact ``return_scale``).
CHECKPOINTS = Checkpoints("macdmp", CHECKPOINT_VERSION, "MA-CDMP", MACDMPConfig, MACDMPModel,
                          facts=("return_scale",), architecture=ARCHITECTURE_FIELDS)
model_blob = CHECKPOINTS.blob
save_model = CHECKPOINTS.save
load_blob = CHECKPOINTS.load_blob
load_model = CHECKPOINTS.load_model

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
    return config_from_preset(MACDMPConfig, PRESETS, preset, overrides)

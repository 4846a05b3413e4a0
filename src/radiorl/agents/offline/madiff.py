"""MADiff (Zhu et al.): centrally trained joint-trajectory diffusion with attention across
agents, executed decentrally with teammate modelling (the CTDE baseline of MA-CDMP's Fig. 5).

Model (``specs/diffusion-planning.md`` section 1.3; every choice is a :class:`MADiffConfig`
field):

- **Joint trajectories.** A training sample is a *joint window*
  (:class:`~radiorl.data.joint_windows.JointWindowDataset`): the ``H``-frame windows of an
  ego agent and of its teammates over the same frames, ``x [N, H, 4]`` (normalized local
  observations ``o = [gen, gen_max, tran, tran_max]``, 4 channels per agent; no mean field),
  padded to ``N = max_team`` rows with an agent mask.
- **Team** (``team``): ``"neighbors"`` (default) = the ego and its 1-hop neighbours, or
  ``"network"`` = every agent of the episode (MADiff's whole team). We default to the 1-hop
  team because (i) the team size then does not grow with the network, so the model runs on
  unseen, larger networks (MA-CDMP's Fig. 6 setting) at a per-agent cost independent of
  ``N``, where a whole-network team costs ``N²`` agent-trajectories per frame (pitfall 10);
  (ii) in a multi-hop MF-TDMA network an agent's delay is coupled mainly to the nodes it
  shares RBs and relays with, its neighbourhood. ``max_team = 6`` (the ego + 5 neighbours)
  covers 97 % of the agents of the paper scenarios (1-hop degree histogram of
  ``datasets/adhoc-quick.h5``, degrees 1..7: 37/65/76/65/20/8/1 agents); larger teams are cut to
  a random subset of ``max_team − 1`` teammates at training, and to ``max_team`` rows at
  execution.
- **Denoiser**: :class:`~radiorl.nn.agent_attention.MultiAgentTemporalUNet` — one temporal
  U-Net shared by all agents (agents folded into the batch; width ``dim = 16``,
  ``dim_mults = (1, 2, 4, 8)``, the same convolutional path as MA-CDMP's so the comparison is
  fair) with attention across the agents at the bottleneck and on every skip connection
  (MADiff's ``SharedConvAttentionDeconv`` design). It predicts ``x_0`` (``prediction``;
  pitfall 1: few-step solvers from ``ᾱ_K ≈ 2e-7``), cosine schedule, ``K = 100``.
- **Which row is the ego** (``ego_channel``, default on; our addition): a constant fifth input
  channel, 1 on the ego's row and 0 on the teammates'. The network is otherwise permutation
  equivariant across agents (no agent ids), and MADiff tells the conditioned agent apart only
  by its inpainted values.
- **Return conditioning, classifier-free** (Decision Diffuser / MADiff): the condition is the
  **team return** of the window — the mean over the ego and all its teammates of the per-agent
  discounted window return (MA-CDMP eq. 14, ``γ = 0.99``) — mapped to its quantile in the
  dataset (``cond ∈ (0, 1)``; the rewards are negative delays with a heavy tail, so a min-max
  scale would put most windows near 1, pitfall 6). Training drops the condition with
  probability ``condition_dropout = 0.25``; planning conditions on ``target_return = 0.9``
  (MADiff's ``test_ret``: here the dataset's 90th-percentile team return) with guidance weight
  ``guidance = w = 1.2``: ``x̂ = x̂_u + w (x̂_c − x̂_u)``, both halves in one batched forward
  (:func:`~radiorl.diffusion.classifier_free`; ``w = 1`` runs the conditional half only,
  ``w = 0`` the unconditional one).
- **Decentralized training target** (MADiff's ``decentralized_execution`` /
  ``agent_condition_type="single"``): only the ego's current observation (row 0, position 0)
  is clamped — in the noisy training input and at sampling (inpainting) — and the loss covers
  every other entry of every real agent (teammates' current observations included: they are
  imagined). Padded rows are clamped to 0 and carry no loss.
- **Inverse dynamics**, shared by all agents (MADiff's shared variant, MA-CDMP's network):
  ``f_φ(o_t, o_{t+1})`` → requested RBs, an MLP trained on every transition of every real
  agent of the window (``inverse_loss = "mse"`` on ``request / max_request`` or ``"ce"``).
  Loss = ``w_inv · L_inv + w_diff · L_diff`` (``loss_weights = (1, 1)``).
- **Normalizer**: the dataset's per-dimension ``limits`` map to ``[−1, 1]`` (as MA-CDMP), so
  ``clip_x0 = 1``.

**Batch size** (``batch_size = 256``) counts **agent rows** (agent-windows, padding included),
as MA-CDMP's batch counts agent-windows: a step draws ``batch_size // max_team`` joint windows
(42 with ``max_team = 6``: 252 rows, about 166 of them real agents at the paper scenarios' mean
team size of 4.0; padded rows cost no convolution), so the paper budget (100 epochs × 1,000
steps) costs about what MA-CDMP's does (below).

**Cost** (one core, measured 2026-11-22 on the shared 2-core machine under a load of about
5, each with MA-CDMP measured in the same run): training 6.6–7.2 steps/s at ``batch_size =
256`` (42 joint windows; MA-CDMP, H = 16: 4.9–5.0 steps/s), so the paper budget takes about
4 h; 256 *joint windows* per step (1,536 rows) would run at 1.5 steps/s. Planning all 9 agents
of ``adhoc-9-4:5`` (teams of 2–6 rows, 49 joint-plan rows): 10 DPM-Solver-1 steps 178–188 ms
per frame with classifier-free guidance (MA-CDMP, 10 guided steps: 72 ms), 106–108 ms with
``guidance = 1`` (conditional half only); K = 100 DDPM with guidance 1.8–1.9 s per frame.
The convolutional path skips padded rows; the cost grows with the team rows, ``Σ_i n_i``
(twice that with guidance), the price of teammate modelling (pitfall 10).

**Decentralized execution with teammate modelling** (:class:`MADiffPolicy`). Every frame,
every agent ``i`` independently:

1. builds a joint plan of its team — ``n_i = min(1 + degree_i, max_team)`` rows (``"network"``:
   ``min(n_nodes, max_team)``), padded to ``max_team`` — in which **only its own current
   observation** is inpainted (row 0, position 0); its teammates' rows, including their
   current observations, are imagined by the model (through the attention layers);
2. samples it (``sampler``, ``steps``, classifier-free guidance towards ``target_return``);
3. requests ``f_φ(o_t, ô_{t+1})`` RBs from its own row and discards the rest of the plan.

Information contract: ``requires = {"local_obs"}``. Agent ``i`` reads ``info["obs"][b, i]``
(its own observation) and ``info["degree"][b, i]`` (its number of 1-hop neighbours: static
neighbourhood knowledge, not an observation; ``"network"`` teams read ``info["n_nodes"]``
instead); never another agent's observation, the mean field, the topology or the queues.
All ``B × N`` agents' plans run in one batched sampler call (``B·N`` joint plans of
``max_team`` rows); each plan depends only on its own agent's inputs and its own rows of the
noise draws, whose shape is fixed (``max_team`` rows), so an agent's request does not change
when any other agent's observation does (tested).

Checkpoints (``algo = "madiff"``): config, normalizer, the dataset's team-return quantile table,
dataset fingerprint, weights (``torch.load(weights_only=True)``). The policy
``madiff:<run>/checkpoints/planner.pt`` takes the planner settings ``sampler``,
``steps``, ``guidance``, ``target_return``, ``clip_x0`` and ``jit`` as overrides.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from radiorl.agents.offline.common import OBS_DIM, check_sampler
from radiorl.agents.offline.trainer import check_loop_config
from radiorl.data.joint_windows import TEAMS, JointWindowDataset
from radiorl.diffusion import (SCHEDULES, Inpaint, NoiseSchedule, classifier_free,
                               denoising_loss, noisy_inputs, sample)
from radiorl.envs.base import check_number
from radiorl.nn import MLP
from radiorl.nn.agent_attention import MultiAgentTemporalUNet
from radiorl.schedulers.tdma import RequestPolicy

CHECKPOINT_VERSION = 1
#: Traced denoisers kept per policy (one per batch shape and real-row count), then eager.
MAX_TRACES = 8
ALGO = "madiff"
LABEL = "MADiff"


# =========================================================================== configuration
@dataclass
class MADiffConfig:
    """Model, training and default planning settings (see the module docstring)."""

    # model
    horizon: int = 16
    diffusion_steps: int = 100
    schedule: str = "cosine"
    prediction: str = "x0"
    team: str = "neighbors"
    max_team: int = 6
    ego_channel: bool = True
    dim: int = 16
    dim_mults: tuple = (1, 2, 4, 8)
    attention_heads: int = 1
    condition_dropout: float = 0.25
    inverse_hidden: tuple = (256, 256)
    inverse_loss: str = "mse"
    inverse_target: str = "request"
    normalizer: str = "limits"
    gamma: float = 0.99
    # training (paper: 100 epochs x 1,000 steps)
    epochs: int = 100
    steps_per_epoch: int = 1000
    batch_size: int = 256                       # agent rows per step (batch_size // max_team teams)
    lr: float = 2e-4
    ema: float = 0.995
    grad_clip: float = 1.0
    loss_weights: tuple = (1.0, 1.0)            # (inverse dynamics, diffusion)
    valid_fraction: float = 0.05
    valid_batches: int = 8
    checkpoint_every: int = 1
    # periodic evaluation in the simulator during training (0 = never)
    eval_every: int = 0
    eval_scenarios: tuple = ()                  # () = every scenario of the dataset
    eval_frames: int = 200
    eval_seed: int = 12345
    eval_sampler: str = "dpm1"
    eval_sample_steps: int = 10
    select_checkpoint: str = "last"
    # default planner (stored with the model; policy options override it)
    sampler: str = "ddpm"
    sample_steps: int | None = None
    guidance: float = 1.2
    target_return: float = 0.9
    clip_x0: float | None = 1.0
    # run
    seed: int = 0
    threads: int = 0

    def validate(self) -> "MADiffConfig":
        check_number("horizon", self.horizon, low=2, high=512, integer=True)
        check_number("diffusion_steps", self.diffusion_steps, low=1, high=10_000, integer=True)
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")
        if self.prediction not in ("epsilon", "x0"):
            raise ValueError(f"prediction must be 'epsilon' or 'x0', got {self.prediction!r}")
        if self.team not in TEAMS:
            raise ValueError(f"team must be one of {list(TEAMS)}, got {self.team!r}")
        if isinstance(self.max_team, bool):
            raise ValueError(f"max_team must be an integer in [1, 64] (agents), got "
                             f"{self.max_team!r}")
        check_number("max_team", self.max_team, low=1, high=64, integer=True)
        if not isinstance(self.ego_channel, bool):
            raise ValueError(f"ego_channel must be true or false, got {self.ego_channel!r}")
        check_number("dim", self.dim, low=2, high=1024, integer=True)
        self.dim_mults = tuple(int(check_number("dim_mults", m, low=1, high=64, integer=True))
                               for m in (self.dim_mults or ()))
        if not self.dim_mults:
            raise ValueError("dim_mults must list at least one level, e.g. [1, 2, 4, 8]")
        check_number("attention_heads", self.attention_heads, low=1, high=64, integer=True)
        for m in self.dim_mults:
            c = self.dim * m
            if max(self.attention_heads, c // 8) % self.attention_heads or \
                    max(self.attention_heads, c // 4) % self.attention_heads:
                raise ValueError(f"attention_heads = {self.attention_heads} must divide the "
                                 f"attention widths of every level (dim x dim_mults / 8 and / 4)")
        check_number("condition_dropout", self.condition_dropout, low=0, high=1)
        if self.condition_dropout >= 1:
            raise ValueError(f"condition_dropout must be in [0, 1), got {self.condition_dropout!r}")
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
        if self.batch_size < self.max_team:
            raise ValueError(f"batch_size counts agent rows and must be >= max_team = "
                             f"{self.max_team} (one joint window), got {self.batch_size}")
        lw = tuple(self.loss_weights or ())
        if len(lw) != 2:
            raise ValueError("loss_weights must be 2 numbers >= 0 (inverse dynamics, "
                             f"diffusion), got {self.loss_weights!r}")
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
        check_number("target_return", self.target_return, low=0, high=1)
        check_number("clip_x0", self.clip_x0, low=0, low_open=True, allow_none=True)
        check_number("seed", self.seed, low=0, integer=True)
        check_number("threads", self.threads, low=0, high=1024, integer=True)
        return self

    @property
    def in_channels(self) -> int:
        """Denoiser input channels: the 4 observation channels (+1 ego flag)."""
        return OBS_DIM + int(self.ego_channel)

    @property
    def teams_per_batch(self) -> int:
        """Joint windows per training step (``batch_size`` counts agent rows)."""
        return max(1, self.batch_size // self.max_team)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in _TUPLES:
            d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MADiffConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown MADiff config fields {unknown}")
        kw = dict(d)
        for k in _TUPLES:
            if k in kw and kw[k] is not None:
                kw[k] = tuple(kw[k])
        return cls(**kw)


_TUPLES = ("dim_mults", "inverse_hidden", "loss_weights", "eval_scenarios")

#: Fields that define the networks and their training data: a checkpoint can only be
#: resumed / loaded into a model built with the same values.
ARCHITECTURE_FIELDS = ("horizon", "diffusion_steps", "schedule", "prediction", "team",
                       "max_team", "ego_channel", "dim", "dim_mults", "attention_heads",
                       "inverse_hidden", "inverse_loss", "inverse_target", "normalizer", "gamma")

#: Named starting points (``radiorl train madiff --preset``): ``paper`` = the paper's budget
#: (100 epochs x 1,000 steps) and MADiff's DDPM planner; ``quick`` = a 20x smaller budget.
PRESETS = {"paper": {}, "quick": dict(epochs=5, steps_per_epoch=1000)}


def preset_config(preset: str = "paper", **overrides) -> MADiffConfig:
    """:class:`MADiffConfig` of ``preset`` with ``overrides`` (``None`` values ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    kw = dict(PRESETS[preset])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return MADiffConfig(**kw).validate()


# =========================================================================== model
class MADiffModel(nn.Module):
    """The joint denoiser and the shared inverse dynamics, plus the dataset facts to run them.

    ``max_request``: largest RB request; ``normalizer``: the obs
    :class:`~radiorl.data.normalizers.Normalizer`; ``quantile_table``: the dataset's team
    return at quantiles ``0, 0.01, …, 1`` (reward units; documents what a ``target_return``
    means).
    """

    def __init__(self, cfg: MADiffConfig, max_request: int, normalizer, quantile_table):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.max_request = int(check_number("max_request", max_request, low=1, integer=True))
        self.normalizer = normalizer
        self.quantile_table = [float(v) for v in quantile_table]
        self.eps_model = MultiAgentTemporalUNet(cfg.in_channels, OBS_DIM, dim=cfg.dim,
                                                dim_mults=cfg.dim_mults, cond_dim=1,
                                                attention_heads=cfg.attention_heads)
        n_out = 1 if cfg.inverse_loss == "mse" else self.max_request + 1
        self.inverse_model = MLP(2 * OBS_DIM, n_out, hidden=cfg.inverse_hidden,
                                 activation="relu")
        self.schedule = NoiseSchedule.make(cfg.schedule, cfg.diffusion_steps)

    def target_return_value(self, quantile: float) -> float:
        """The team return (reward units, per-agent window return) a condition stands for."""
        return float(np.interp(quantile, np.linspace(0, 1, len(self.quantile_table)),
                               self.quantile_table))

    def denoise(self, x: torch.Tensor, k: torch.Tensor, cond: torch.Tensor,
                drop_cond: torch.Tensor, agent_mask: torch.Tensor) -> torch.Tensor:
        """Joint prediction (``x_0`` or ``ε``) ``[B, N, H, 4]`` for noisy joint trajectories
        ``x [B, N, H, 4]`` whose row 0 is the ego; ``cond [B, 1]``, ``drop_cond [B]`` bool,
        ``agent_mask [B, N]`` bool."""
        if self.cfg.ego_channel:
            ego = torch.zeros_like(x[..., :1])
            ego[:, 0] = 1.0
            x = torch.cat([x, ego], dim=-1)
        return self.eps_model(x, k, cond, drop_cond, agent_mask)

    def inverse_logits(self, o_t: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        """``[..., 4]`` normalized obs pairs → ``[..., 1]`` (mse) or ``[..., A+1]`` (ce)."""
        return self.inverse_model(torch.cat([o_t, o_next], dim=-1))

    def inverse_actions(self, o_t: torch.Tensor, o_next: torch.Tensor) -> torch.Tensor:
        """Requested RBs (int64 ``[...]`` in ``[0, max_request]``) for the transitions."""
        out = self.inverse_logits(o_t, o_next)
        if self.cfg.inverse_loss == "mse":
            return torch.round(out[..., 0].clamp(0.0, 1.0) * self.max_request).to(torch.int64)
        return out.argmax(dim=-1)

    def losses(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        """Losses on a batch of joint windows (``x`` float ``[B, N, H, 4]``, ``agent_mask``
        bool ``[B, N]``, ``actions``/``grants`` int ``[B, N, H]``, ``cond`` float ``[B]``):
        ``{"total", "inverse", "diffusion"}``."""
        cfg = self.cfg
        x = torch.as_tensor(batch["x"])
        mask = torch.as_tensor(batch["agent_mask"]).to(torch.bool)
        a = torch.as_tensor(batch["actions" if cfg.inverse_target == "request" else "grants"])
        cond = torch.as_tensor(batch["cond"], dtype=x.dtype).reshape(-1, 1)
        B, N, H, C = x.shape
        # inverse dynamics on every (o_t, o_{t+1}) of every real agent
        sel = mask[:, :, None].expand(B, N, H - 1)
        out = self.inverse_logits(x[:, :, :-1][sel], x[:, :, 1:][sel])
        target = a[:, :, :-1][sel]
        if cfg.inverse_loss == "mse":
            l_inv = ((out[..., 0] - target.to(out.dtype) / self.max_request) ** 2).mean()
        else:
            l_inv = nn.functional.cross_entropy(out, target.clamp(0, self.max_request))
        # diffusion: only the ego's current observation is clamped; padded rows clamped to 0
        known = (~mask)[:, :, None, None].expand(B, N, H, C).clone()
        known[:, 0, 0] = True
        k, noise, xk = noisy_inputs(self.schedule, x, known=known, generator=generator)
        drop = torch.rand(B, generator=generator) < cfg.condition_dropout
        pred = self.denoise(xk, k, cond, drop, mask)
        l_diff = denoising_loss(pred, x, noise, prediction=cfg.prediction, known=known)
        w = cfg.loss_weights
        return {"total": w[0] * l_inv + w[1] * l_diff, "inverse": l_inv, "diffusion": l_diff}


def build_model(cfg: MADiffConfig, max_request: int, normalizer, quantile_table,
                seed: int | None = None) -> MADiffModel:
    """A freshly initialized model; ``seed`` (default ``cfg.seed``) fixes the initial weights."""
    torch.manual_seed(cfg.seed if seed is None else seed)
    return MADiffModel(cfg, max_request, normalizer, quantile_table)


# =========================================================================== checkpoints
def model_blob(model: MADiffModel, dataset_info: dict, **extra) -> dict:
    """The checkpoint dict of ``model`` (weights plus everything needed to rebuild it)."""
    return {"version": CHECKPOINT_VERSION, "algo": ALGO, "config": model.cfg.to_dict(),
            "max_request": model.max_request, "normalizer": model.normalizer.to_dict(),
            "quantile_table": list(model.quantile_table), "dataset": dict(dataset_info),
            "model": model.state_dict(), **extra}


def save_model(path, model: MADiffModel, dataset_info: dict, **extra):
    """Atomic save of :func:`model_blob` (loadable with ``weights_only=True``)."""
    from radiorl.runtime.checkpoints import save_checkpoint
    return save_checkpoint(path, model_blob(model, dataset_info, **extra))


def load_blob(path) -> dict:
    """A MADiff checkpoint dict (``torch.load(weights_only=True)``; clear error otherwise)."""
    from radiorl.runtime.checkpoints import load_checkpoint
    return load_checkpoint(path, ALGO, CHECKPOINT_VERSION, LABEL)


def load_model(path, weights: str = "model") -> tuple[MADiffModel, dict]:
    """Rebuild the model of checkpoint ``path`` (``weights``: ``"model"`` or ``"train_model"``)."""
    from radiorl.data.normalizers import Normalizer
    blob = load_blob(path)
    try:
        cfg = MADiffConfig.from_dict(blob["config"]).validate()
        model = MADiffModel(cfg, blob["max_request"], Normalizer.from_dict(blob["normalizer"]),
                            blob["quantile_table"])
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


# =========================================================================== training
def open_training_data(dataset_path, cfg: MADiffConfig):
    """Open and check ``dataset_path`` for ``cfg`` before any training work; returns
    ``(dataset, windows, joint_windows)``."""
    from radiorl.data.hdf5 import OfflineDataset
    from radiorl.data.schema import DatasetError
    from radiorl.data.windows import WindowDataset
    ds = OfflineDataset.open(dataset_path)
    if ds.obs_dim != OBS_DIM:
        raise DatasetError(f"dataset {ds.path} has observations of width obs_dim = {ds.obs_dim};"
                           f" the MADiff planner needs the ad hoc layout o = [gen, gen_max, "
                           f"tran, tran_max] (obs_dim = {OBS_DIM})")
    longest = int(ds.agents["frames"].max()) if ds.n_trajectories else 0
    if cfg.horizon > longest:
        raise ValueError(f"horizon H = {cfg.horizon} is longer than the dataset's episodes: the "
                         f"longest trajectory of {ds.path} has {longest} frames (need "
                         f"2 <= H <= {longest})")
    windows = WindowDataset(ds, cfg.horizon, cfg.gamma, cfg.normalizer)
    return ds, windows, JointWindowDataset(windows, cfg.max_team, cfg.team)


def _check_resume(blob: dict, cfg: MADiffConfig, info: dict, path) -> None:
    stored = MADiffConfig.from_dict(blob["config"])
    for k in ARCHITECTURE_FIELDS:
        a, b = getattr(stored, k), getattr(cfg, k)
        if (list(a) if isinstance(a, tuple) else a) != (list(b) if isinstance(b, tuple) else b):
            raise ValueError(f"--resume: checkpoint {path} has {k} = {a!r}, this run {k} = {b!r}")
    if blob["dataset"].get("fingerprint") != info["fingerprint"]:
        raise ValueError(f"--resume: checkpoint {path} was trained on dataset "
                         f"{blob['dataset'].get('path')} ({blob['dataset'].get('n_frames')} "
                         f"frames), not on {info['path']} ({info['n_frames']} frames)")


@torch.no_grad()
def validation_losses(model: MADiffModel, joint: JointWindowDataset, cfg: MADiffConfig) -> dict:
    """Mean losses over ``valid_batches`` fixed batches (same draws every call)."""
    rng = np.random.default_rng(cfg.seed + 99991)
    gen = torch.Generator().manual_seed(cfg.seed + 99991)
    acc: dict = {}
    for _ in range(cfg.valid_batches):
        out = model.losses(joint.sample(cfg.teams_per_batch, rng), gen)
        for k, v in out.items():
            acc[k] = acc.get(k, 0.0) + float(v)
    return {f"valid_{k}": v / cfg.valid_batches for k, v in acc.items()}


def evaluate_planner(model: MADiffModel, scenario: str, load, frames: int, seed: int,
                     **settings) -> dict:
    """One episode of the decentralized planner in the simulator; reward and QoS."""
    from radiorl.envs.scenarios import get_scenario
    from radiorl.evaluation.runner import rollout
    env = get_scenario(scenario).make_env(load, batch=1, episode_slots=frames)
    pol = MADiffPolicy(model, MADiffSettings.from_model(model, **settings)).bind(env)
    m, t_act = rollout(env, pol, seed, frames)
    row = m.summary(env.slot_ms)[0]
    return {"eval_mean_reward": float(row["mean_reward"]),
            "eval_mean_delay": float(row["mean_delay"]),
            "eval_packet_loss_rate": float(row["packet_loss_rate"]),
            "eval_throughput_mbps": float(row.get("throughput_mbps", float("nan"))),
            "eval_ms_per_decision": 1e3 * t_act / max(m.slots, 1)}


def evaluation_reward(model: MADiffModel, scenarios, cfg: MADiffConfig) -> dict:
    """Training-time evaluation (``eval_every``): one ``eval_frames`` episode per scenario
    (seed ``eval_seed + i``, never a test seed) with the fast sampler, averaged."""
    rows = [evaluate_planner(model, sc, "medium", cfg.eval_frames, cfg.eval_seed + i,
                             sampler=cfg.eval_sampler, steps=cfg.eval_sample_steps)
            for i, sc in enumerate(scenarios)]
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def train(dataset_path, cfg: MADiffConfig, run_dir, resume=None, show_progress: bool = True,
          log=print) -> dict:
    """Train MADiff on the offline dataset ``dataset_path`` (centralized training on joint
    windows; see the module docstring) with the shared loop
    :func:`radiorl.agents.offline.trainer.fit`.

    Returns ``{"history", "checkpoint" (planner.pt), "best_epoch", "run_dir"}``. ``resume``: a
    checkpoint or a run folder holding ``checkpoints/last.pt`` (same architecture and
    dataset).
    """
    from radiorl.agents.offline.common import dataset_info
    from radiorl.agents.offline.trainer import fit

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(run_dir)
    ds, windows, joint = open_training_data(dataset_path, cfg)
    info = dataset_info(ds, windows)
    scenarios = list(cfg.eval_scenarios) or list(ds.scenario_names)
    if cfg.eval_every:
        from radiorl.envs.scenarios import get_scenario
        for sc in scenarios:
            get_scenario(sc)                          # unknown names fail before training
    episodes = np.unique(ds.agents["episode"][windows.window_trajectory])
    if cfg.valid_fraction > 0 and len(episodes) >= 2:
        train_j, valid_j = joint.split(cfg.valid_fraction, seed=cfg.seed)
    else:
        train_j, valid_j = joint, None
    model = build_model(cfg, ds.max_request, windows.normalizer, joint.quantile_table)
    teams = cfg.teams_per_batch
    out = fit(model, cfg, sample=lambda rng: train_j.sample(teams, rng),
              run_dir=run_dir, resume=resume, final_name="planner.pt",
              save=lambda path, m, **extra: save_model(path, m, info, **extra),
              load=load_blob,
              check_resume=lambda blob, path: _check_resume(blob, cfg, info, path),
              validate=(lambda m: validation_losses(m, valid_j, cfg)) if valid_j else None,
              evaluate=lambda m: evaluation_reward(m, scenarios, cfg),
              label=f"{LABEL} H={cfg.horizon} team={cfg.team}<={cfg.max_team} on "
                    f"{Path(dataset_path).name}",
              show_progress=show_progress, log=log)
    plot_training(out["history"], run_dir / "figures" / "training_curve.png", LABEL)
    return {k: out[k] for k in ("history", "checkpoint", "best_epoch", "run_dir")}


def plot_training(history: list, path, title: str = "") -> Path:
    """Loss curves (train and validation) and, if evaluated, the episode reward per epoch."""
    from radiorl.agents.offline.trainer import plot_history
    return plot_history(history, path, ("inverse", "diffusion"), title)


# =========================================================================== execution
@dataclass
class MADiffSettings:
    """How plans are sampled at execution time: ``sampler`` ``ddpm|ddim|dpm1|dpm2`` and
    ``steps``; ``guidance`` (classifier-free weight ``w``); ``target_return`` (the team
    return quantile conditioned on); ``clip_x0``; ``jit`` (trace the denoiser with
    TorchScript for a faster small-batch forward)."""

    sampler: str = "ddpm"
    steps: int | None = None
    guidance: float = 1.2
    target_return: float = 0.9
    clip_x0: float | None = 1.0
    jit: bool = True

    @classmethod
    def from_model(cls, model: MADiffModel, **overrides) -> "MADiffSettings":
        c = model.cfg
        s = cls(sampler=c.sampler, steps=c.sample_steps, guidance=c.guidance,
                target_return=c.target_return, clip_x0=c.clip_x0)
        names = {f.name for f in fields(cls)}
        bad = sorted(set(overrides) - names)
        if bad:
            raise ValueError(f"unknown MADiff planner settings {bad}; valid: {sorted(names)}")
        if "sampler" in overrides and "steps" not in overrides and \
                overrides["sampler"] != c.sampler:
            s.steps = None if overrides["sampler"] == "ddpm" or c.sampler == "ddpm" else s.steps
        s = replace(s, **{k: v for k, v in overrides.items()
                          if v is not None or k in ("steps", "clip_x0")})
        return s.validate(c.diffusion_steps)

    def validate(self, K: int) -> "MADiffSettings":
        check_sampler(self.sampler, self.steps, K, "sampler", "sample_steps")
        check_number("guidance", self.guidance, low=0)
        check_number("target_return", self.target_return, low=0, high=1)
        check_number("clip_x0", self.clip_x0, low=0, low_open=True, allow_none=True)
        if not isinstance(self.jit, bool):
            raise ValueError(f"jit must be true or false, got {self.jit!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


class _Denoiser(nn.Module):
    """``model.denoise`` as a module (for tracing)."""

    def __init__(self, model: MADiffModel):
        super().__init__()
        self.model = model

    def forward(self, x, k, cond, drop_cond, agent_mask):
        return self.model.denoise(x, k, cond, drop_cond, agent_mask)


class MADiffPolicy(RequestPolicy):
    """A trained MADiff model as a decentralized :class:`~radiorl.envs.base.Policy` for the
    ad hoc network (policy name ``madiff:<planner.pt>``; see the module docstring).

    ``requires = {"local_obs"}``: agent ``i`` uses only its own row of ``info["obs"]`` and its
    own ``info["degree"]`` (``team="network"``: ``info["n_nodes"]``).
    """

    name = "madiff"
    requires = frozenset({"local_obs"})

    def __init__(self, model: MADiffModel, settings: MADiffSettings | None = None):
        super().__init__()
        self.model = model.eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.cfg = model.cfg
        self.settings = (settings or MADiffSettings.from_model(model)).validate(
            model.cfg.diffusion_steps)
        self.generator = torch.Generator().manual_seed(0)
        self._traced: dict = {}

    @classmethod
    def from_checkpoint(cls, path, env=None, **settings) -> "MADiffPolicy":
        model, _ = load_model(path)
        pol = cls(model, MADiffSettings.from_model(model, **settings))
        if env is not None:
            pol.bind(env)
        return pol

    def bind(self, env) -> "MADiffPolicy":
        super().bind(env)
        if env.params.max_request != self.model.max_request:
            raise ValueError(f"MADiff was trained with max_request = {self.model.max_request} "
                             f"RBs, the network {env.params.name} has max_request = "
                             f"{env.params.max_request}")
        return self

    def reset(self, env, batch: int, seed: int | None = 0):
        self.bind(env)
        self.generator = torch.Generator().manual_seed(int(seed or 0))
        return {"plans": None}

    # ------------------------------------------------------------------ planning
    def _denoiser(self, x, k, cond, drop, mask):
        """The denoiser, traced once per batch shape and number of real agent rows."""
        if not self.settings.jit:
            return self.model.denoise
        key = (tuple(x.shape), int(mask.sum()))
        if key not in self._traced:
            if len(self._traced) >= MAX_TRACES:       # e.g. mobile topologies: stay eager
                return self.model.denoise
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                traced = torch.jit.trace(_Denoiser(self.model), (x, k, cond, drop, mask),
                                         check_trace=False)
                self._traced[key] = torch.jit.freeze(traced.eval())
        return self._traced[key]

    def _model_fn(self, cond: torch.Tensor, mask: torch.Tensor, shape):
        """``model_fn(x, k)`` for the sampler: classifier-free guidance (one batched forward
        of both halves), or a single half when ``w`` is 1 (conditional) or 0
        (unconditional)."""
        w = float(self.settings.guidance)
        M = shape[0]
        if w in (0.0, 1.0):
            drop = torch.full((M,), w == 0.0, dtype=torch.bool)
            ex = (torch.zeros(shape), torch.ones(M, dtype=torch.int64), cond, drop, mask)
            den = self._denoiser(*ex)
            return lambda x, k: den(x, k, cond, drop, mask)
        mask2 = torch.cat([mask, mask], 0)
        ex = (torch.zeros((2 * M,) + tuple(shape[1:])), torch.ones(2 * M, dtype=torch.int64),
              torch.cat([cond, cond], 0), torch.zeros(2 * M, dtype=torch.bool), mask2)
        den = self._denoiser(*ex)
        return classifier_free(lambda x2, k2, c2, d2: den(x2, k2, c2, d2, mask2), cond,
                               scale=w)

    def team_sizes(self, info, B: int, N: int) -> np.ndarray:
        """Rows of each agent's joint plan ``[B*N]``: ``min(1 + degree, max_team)``
        (``"network"``: ``min(n_nodes, max_team)``)."""
        if self.cfg.team == "neighbors":
            n = 1 + np.asarray(info["degree"], np.int64).reshape(B * N)
        else:
            n = np.full(B * N, int(info["n_nodes"]), np.int64)
        return np.clip(n, 1, self.cfg.max_team)

    @torch.no_grad()
    def plan(self, obs: np.ndarray, team: np.ndarray, generator: torch.Generator
             ) -> tuple[np.ndarray, torch.Tensor]:
        """Decentralized plans for ``M`` agents: raw own observations ``obs [M, 4]``, team
        sizes ``team [M]`` (``1 .. max_team``). Returns ``(requests int64 [M], plans
        [M, max_team, H, 4])`` (normalized; row 0 is the agent itself, rows ``>= team`` are
        padding)."""
        s, cfg = self.settings, self.cfg
        o = np.asarray(obs, np.float32)
        if o.ndim != 2 or o.shape[1] != OBS_DIM:
            raise ValueError(f"obs must have shape [M, {OBS_DIM}] (one row per agent), got "
                             f"{o.shape}")
        team = np.asarray(team).reshape(-1)
        if team.shape[0] != o.shape[0] or team.min(initial=1) < 1 or \
                team.max(initial=1) > cfg.max_team:
            raise ValueError(f"team must hold one size in [1, max_team = {cfg.max_team}] per "
                             f"agent ({o.shape[0]}), got {team.tolist()}")
        first = torch.as_tensor(self.model.normalizer.normalize(o), dtype=torch.float32)
        M, Nt, H, C = o.shape[0], cfg.max_team, cfg.horizon, OBS_DIM
        mask = torch.arange(Nt)[None, :] < torch.as_tensor(team)[:, None]      # [M, Nt]
        known = (~mask)[:, :, None, None].expand(M, Nt, H, C).clone()
        known[:, 0, 0] = True                           # only the agent's own observation
        values = torch.zeros(M, Nt, H, C)
        values[:, 0, 0] = first
        cond = torch.full((M, 1), float(s.target_return))
        fn = self._model_fn(cond, mask, (M, Nt, H, C))
        x0 = sample(fn, self.model.schedule, shape=(M, Nt, H, C), method=s.sampler,
                    steps=s.steps if s.sampler != "ddpm" else None, prediction=cfg.prediction,
                    inpaint=Inpaint(known, values), clip_x0=s.clip_x0, generator=generator)
        a = self.model.inverse_actions(x0[:, 0, 0], x0[:, 0, 1])
        return a.numpy().astype(np.int64), x0

    def _act(self, obs, info, ps):
        o = np.asarray(info["obs"], np.float32)
        B, N, _ = o.shape
        team = self.team_sizes(info, B, N)
        with torch.inference_mode(False):
            req, plans = self.plan(o.reshape(B * N, OBS_DIM), team, self.generator)
        return req.reshape(B, N), {"plans": plans}


__all__ = ["MADiffConfig", "MADiffModel", "MADiffPolicy", "MADiffSettings", "PRESETS",
           "build_model", "load_model", "preset_config", "save_model", "train"]

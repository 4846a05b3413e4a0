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

The pieces shared with MA-CDMP, MA-Diffuser and MA-DD (the common config fields and checks, the
inverse-dynamics head, the checkpoint format, the dataset checks, training wiring and
evaluation episodes, classifier-free return guidance, the traced-module cache and the Policy
plumbing) are in :mod:`.common`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from radiorl.agents.offline.common import (OBS_DIM, Checkpoints, DiffusionPlanner,
                                           InverseDynamics, PlannerConfig, PlannerModel,
                                           PlannerPolicy, TracedCache, check_inverse_fields,
                                           check_planner_settings, config_from_preset,
                                           evaluate_policy, fit_planner, prepare_training,
                                           return_conditioned, settings_from)
from radiorl.agents.offline.common import open_training_data as open_windows
from radiorl.data.joint_windows import TEAMS, JointWindowDataset
from radiorl.diffusion import Inpaint, NoiseSchedule, denoising_loss, noisy_inputs, sample
from radiorl.envs.base import check_number
from radiorl.nn.agent_attention import MultiAgentTemporalUNet

CHECKPOINT_VERSION = 1
#: Traced denoisers kept per policy (one per batch shape and real-row count), then eager.
MAX_TRACES = 8
ALGO = "madiff"
LABEL = "MADiff"


# =========================================================================== configuration
@dataclass
class MADiffConfig(PlannerConfig):
    """Model, training and default planning settings (see the module docstring; the shared
    fields are documented in :class:`~radiorl.agents.offline.common.PlannerConfig`).
    ``batch_size`` counts agent rows per step (``batch_size // max_team`` joint windows)."""

    TUPLES = PlannerConfig.TUPLES + ("inverse_hidden",)
    LABEL = LABEL
    LOSS_TERMS = ("inverse dynamics", "diffusion")

    # model
    team: str = "neighbors"
    max_team: int = 6
    ego_channel: bool = True
    attention_heads: int = 1
    condition_dropout: float = 0.25
    inverse_hidden: tuple = (256, 256)
    inverse_loss: str = "mse"
    inverse_target: str = "request"
    # default planner (stored with the model; policy options override it)
    guidance: float = 1.2
    target_return: float = 0.9

    def validate(self) -> "MADiffConfig":
        super().validate()
        if self.team not in TEAMS:
            raise ValueError(f"team must be one of {list(TEAMS)}, got {self.team!r}")
        if isinstance(self.max_team, bool):
            raise ValueError(f"max_team must be an integer in [1, 64] (agents), got "
                             f"{self.max_team!r}")
        check_number("max_team", self.max_team, low=1, high=64, integer=True)
        if not isinstance(self.ego_channel, bool):
            raise ValueError(f"ego_channel must be true or false, got {self.ego_channel!r}")
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
        check_inverse_fields(self)
        if self.batch_size < self.max_team:
            raise ValueError(f"batch_size counts agent rows and must be >= max_team = "
                             f"{self.max_team} (one joint window), got {self.batch_size}")
        check_number("target_return", self.target_return, low=0, high=1)
        return self

    @property
    def in_channels(self) -> int:
        """Denoiser input channels: the 4 observation channels (+1 ego flag)."""
        return OBS_DIM + int(self.ego_channel)

    @property
    def teams_per_batch(self) -> int:
        """Joint windows per training step (``batch_size`` counts agent rows)."""
        return max(1, self.batch_size // self.max_team)


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
    return config_from_preset(MADiffConfig, PRESETS, preset, overrides)


# =========================================================================== model
class MADiffModel(InverseDynamics, PlannerModel):
    """The joint denoiser and the shared inverse dynamics, plus the dataset facts to run them.

    ``max_request``: largest RB request; ``normalizer``: the obs
    :class:`~radiorl.data.normalizers.Normalizer`; ``quantile_table``: the dataset's team
    return at quantiles ``0, 0.01, …, 1`` (reward units; documents what a ``target_return``
    means). The inverse dynamics is the shared
    :class:`~radiorl.agents.offline.common.InverseDynamics` head.
    """

    def __init__(self, cfg: MADiffConfig, max_request: int, normalizer, quantile_table):
        super().__init__(cfg, max_request, normalizer)
        self.quantile_table = [float(v) for v in quantile_table]
        self.eps_model = MultiAgentTemporalUNet(cfg.in_channels, OBS_DIM, dim=cfg.dim,
                                                dim_mults=cfg.dim_mults, cond_dim=1,
                                                attention_heads=cfg.attention_heads)
        self.inverse_model = self.inverse_mlp()
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
        l_inv = self.inverse_loss(x[:, :, :-1][sel], x[:, :, 1:][sel], a[:, :, :-1][sel])
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
#: The MADiff checkpoint format (``algo = "madiff"``; dataset fact ``quantile_table``).
CHECKPOINTS = Checkpoints(ALGO, CHECKPOINT_VERSION, LABEL, MADiffConfig, MADiffModel,
                          facts=("quantile_table",), architecture=ARCHITECTURE_FIELDS)
model_blob = CHECKPOINTS.blob
save_model = CHECKPOINTS.save
load_blob = CHECKPOINTS.load_blob
load_model = CHECKPOINTS.load_model


# =========================================================================== training
def joint_windows(windows, cfg: MADiffConfig) -> JointWindowDataset:
    """The training samples: the joint windows of ``cfg.team`` teams of at most
    ``cfg.max_team`` agents."""
    return JointWindowDataset(windows, cfg.max_team, cfg.team)


def open_training_data(dataset_path, cfg: MADiffConfig):
    """Open and check ``dataset_path`` for ``cfg`` before any training work
    (:func:`radiorl.agents.offline.common.open_training_data`); returns ``(dataset, windows,
    joint_windows)``."""
    ds, windows = open_windows(dataset_path, cfg, f"the {LABEL} planner")
    return ds, windows, joint_windows(windows, cfg)


def evaluate_planner(model: MADiffModel, scenario: str, load, frames: int, seed: int,
                     **settings) -> dict:
    """One episode of the decentralized planner in the simulator; reward and QoS."""
    return evaluate_policy(MADiffPolicy.with_settings(model, **settings), scenario, load,
                           frames, seed)


def train(dataset_path, cfg: MADiffConfig, run_dir, resume=None, show_progress: bool = True,
          log=print) -> dict:
    """Train MADiff on the offline dataset ``dataset_path`` (centralized training on joint
    windows, split into training and held-out parts by whole episodes; see the module
    docstring) with the shared loop :func:`radiorl.agents.offline.trainer.fit`.

    Returns ``{"history", "checkpoint" (planner.pt), "best_epoch", "run_dir"}``. ``resume``: a
    checkpoint or a run folder holding ``checkpoints/last.pt`` (same architecture and
    dataset).
    """
    data = prepare_training(dataset_path, cfg, run_dir, f"the {LABEL} planner",
                            samples=lambda w: joint_windows(w, cfg), split_by="episode")
    # the views of a split keep the full dataset's team-return quantiles
    model = build_model(cfg, data.ds.max_request, data.windows.normalizer,
                        data.train.quantile_table)
    return fit_planner(model, cfg, data, CHECKPOINTS, MADiffPolicy,
                       terms=("inverse", "diffusion"), title=LABEL,
                       progress=f"{LABEL} H={cfg.horizon} team={cfg.team}<={cfg.max_team} on "
                                f"{Path(dataset_path).name}",
                       batch_size=cfg.teams_per_batch, resume=resume,
                       show_progress=show_progress, log=log)


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
        base = dict(sampler=c.sampler, steps=c.sample_steps, guidance=c.guidance,
                    target_return=c.target_return, clip_x0=c.clip_x0)
        return settings_from(cls, c, base, overrides, c.diffusion_steps,
                             what="MADiff planner settings")

    def validate(self, K: int) -> "MADiffSettings":
        check_planner_settings(self, K)
        check_number("target_return", self.target_return, low=0, high=1)
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


def _real_rows(x, k, cond, drop_cond, agent_mask) -> int:
    """The traced denoiser depends on the number of real (unpadded) agent rows."""
    return int(agent_mask.sum())


class MADiffPolicy(PlannerPolicy, DiffusionPlanner):
    """A trained MADiff model as a decentralized :class:`~radiorl.envs.base.Policy` for the
    ad hoc network (policy name ``madiff:<planner.pt>``; see the module docstring). It is its
    own planner (:meth:`plan`, joint plans of each agent's team); the network checks, noise
    generator and planner set-up are the shared
    :class:`~radiorl.agents.offline.common.PlannerPolicy` and
    :class:`~radiorl.agents.offline.common.DiffusionPlanner`.

    ``requires = {"local_obs"}``: agent ``i`` uses only its own row of ``info["obs"]`` and its
    own ``info["degree"]`` (``team="network"``: ``info["n_nodes"]``).
    """

    name = "madiff"
    settings_class = MADiffSettings
    checkpoints = CHECKPOINTS
    trained_label = "MADiff"

    def __init__(self, model: MADiffModel, settings: MADiffSettings | None = None):
        super().__init__()                                  # the Policy state
        DiffusionPlanner.__init__(self, model, settings)   # model, cfg, settings
        self.generator = torch.Generator().manual_seed(0)
        self._denoise = TracedCache(_Denoiser(self.model), self.settings.jit, freeze=True,
                                    key=_real_rows, max_traces=MAX_TRACES)

    @property
    def _traced(self) -> dict:
        """The traced denoisers (clear to retrace after changing the weights)."""
        return self._denoise.traces

    # ------------------------------------------------------------------ planning
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
        padding). The denoiser runs with classifier-free guidance towards ``target_return``
        (one batched forward of both halves, or a single half when ``w`` is 1 or 0)."""
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
        first = self.normalized_obs(o)
        M, Nt, H, C = o.shape[0], cfg.max_team, cfg.horizon, OBS_DIM
        mask = torch.arange(Nt)[None, :] < torch.as_tensor(team)[:, None]      # [M, Nt]
        known = (~mask)[:, :, None, None].expand(M, Nt, H, C).clone()
        known[:, 0, 0] = True                           # only the agent's own observation
        values = torch.zeros(M, Nt, H, C)
        values[:, 0, 0] = first
        cond = torch.full((M, 1), float(s.target_return))
        fn = return_conditioned(self._denoise, cond, s.guidance, mask)
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

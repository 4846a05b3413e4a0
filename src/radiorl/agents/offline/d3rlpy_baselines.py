"""MA-CQL, MA-TD3+BC and MA-DT: the DTDE offline baselines of MA-CDMP (Zhang et al., Sec. VI-A)
trained through `d3rlpy <https://github.com/takuseno/d3rlpy>`_ (optional extra ``offline``).

**Multi-agent form (DTDE).** Independent learners with parameter sharing: every (episode,
agent) trajectory of the offline dataset is one d3rlpy episode of **one** learner that sees
only that agent's local observation ``o = [gen, gen_max, tran, tran_max]`` (no mean field, no
neighbours' data), its own request and its own reward. At execution one network acts for all
``B × N`` agents of the batched env in one call, each on its own observation
(:class:`D3rlpyPolicy`, ``requires = {"local_obs"}``).

**Representation** (our choices; the paper is silent):

- *Action*: the request ``a ∈ {0 … max_request}`` RBs as one continuous value
  ``u = 2a / max_request − 1 ∈ [−1, 1]`` (the tanh range of d3rlpy's actors); at execution
  ``a = round((u + 1) / 2 · max_request)``, clipped. Continuous because the request is ordinal
  (41 values with ``max_request = 40``: 20 and 21 RBs are neighbours, not unrelated classes),
  because TD3+BC exists only for continuous actions (the three baselines then share one
  action map), and because MA-CDMP's own inverse-dynamics head regresses the same
  ``a / max_request`` (``inverse_loss="mse"``), so the comparison uses one action space.
- *Observation*: the dataset's stored per-dimension statistics through
  :class:`radiorl.data.normalizers.Normalizer`, ``normalizer="gaussian"`` (z-score, as TD3+BC
  normalizes states; the queue counts are heavy-tailed, so a min–max map would squash most
  of them near −1) or ``"limits"``. The normalizer is stored with the model and applied at
  execution; d3rlpy's own scalers are not used.
- *Reward*: ``r / reward_scale``. ``reward_scale=None`` (auto): CQL / TD3+BC ``mean |r|``
  of the dataset (rewards of order 1, Q of order ``1/(1−γ)``); DT ``mean |r| · T`` with ``T``
  the longest trajectory (returns-to-go of order 1 at the start of a trajectory).
- *DT returns-to-go at execution*: the env hands a ``local_obs`` policy no reward, so the
  return-to-go cannot be decremented by the realized reward as in Chen et al.; it follows the
  schedule ``R̂_t = G · (T − t + 1) / T`` (``t = 1, 2, …`` the frame, clamped to ``T``), i.e.
  a constant per-frame target ``G / T``. ``G`` = ``dt_target_return`` (raw units: the sum of
  ``−delay`` ms over a trajectory of ``T`` frames); ``None`` (auto): the 90th percentile of
  the dataset's trajectory returns (each rescaled to ``T`` frames), i.e. ask for the best
  decile's behaviour. ``timesteps`` are ``min(t, max_timestep − 1)``.

**Hyper-parameters** (:class:`D3rlpyConfig`; ``None`` = d3rlpy 2.8's default for the method):
the paper gives only the budget, 100 epochs × 1,000 gradient steps (``paper`` preset;
``quick``: 5 × 1,000, MA-CDMP's quick budget). Everything else is d3rlpy's default:

- shared: encoders MLP ``hidden = (256, 256)`` ReLU; ``gamma = 0.99``; batch 256 (CQL,
  TD3+BC) / 64 (DT); Adam.
- CQL (Kumar et al.; continuous, SAC-based): actor lr 1e-4, critic lr 3e-4, temperature lr
  1e-4 (initial 1.0), Lagrangian α lr 1e-4 (initial 1.0, threshold τ = 10), conservative
  weight 5.0, 10 sampled actions for ``log Σ exp Q``, 2 critics, target τ = 0.005.
- TD3+BC (Fujimoto & Gu): actor and critic lr 3e-4, α = 2.5, target smoothing σ = 0.2 clipped
  at 0.5, actor every 2 steps, 2 critics, τ = 0.005.
- DT (Chen et al.): context 20, 3 layers, 1 head, dropout 0.1, lr 1e-4 (d3rlpy's plain Adam:
  no AdamW warm-up schedule, no gradient clipping), embedding = the encoder's last width
  (256), ``max_timestep`` = longest trajectory + 1 (d3rlpy's 1000 is shorter than the
  6,000-frame trajectories of the paper's dataset).

**Cost** (one torch thread, ``datasets/adhoc-quick.h5``, 1.6 M transitions, measured with the
machine's second core busy): CQL 6–8 steps/s (batch 256; 10 sampled actions per state for
``log Σ exp Q``), TD3+BC 60–95 steps/s (batch 256), DT 1.2–1.9 steps/s at its batch 64 and
0.3–0.4 at batch 256 (embedding 256: about 50 GFLOP per step at batch 64; with
``hidden=(128, 128)`` 3.5 steps/s at batch 64). Sampling is not the bottleneck (8,000
transition batches or 2,000 DT batches of 256 per second); loading and converting that dataset
takes 3 s. The paper budget (100,000 steps) is therefore hours for CQL and DT.

**Training** (:func:`train`): the dataset becomes a :class:`d3rlpy.dataset.ReplayBuffer`
(:func:`make_replay_buffer`) whose mini-batches are exactly those of d3rlpy's
``BasicTransitionPicker`` / ``BasicTrajectorySlicer`` (uniform over transitions; DT windows of
``context`` frames ending at the sampled one, front-padded and masked), drawn vectorized from a
seeded generator. We drive d3rlpy's ``algo.update(batch)`` ourselves rather than ``fit()``:
``fit`` samples one transition at a time from NumPy's global generator, writes
``d3rlpy_logs/``, prints through tqdm/structlog and restarts its epoch counter when called
again. Networks, losses, optimizers, target updates and the ``grad_step`` counter are all
d3rlpy's. Per epoch: mean of each loss d3rlpy reports (``train_<name>``), optionally
(``eval_every``) one simulator episode per ``eval_scenarios`` (seeds ``eval_seed + i``),
``training.csv``, TensorBoard (``tb/``), ``checkpoints/last.pt``; at the end the policy
``checkpoints/policy.pt`` (``select_checkpoint="best_eval"``: the epoch with the best
evaluation reward, also ``checkpoints/best.pt``) and ``figures/training_curve.png``.

**Checkpoints** are our format (:func:`radiorl.runtime.checkpoints.save_checkpoint`, loaded
with ``weights_only=True``): the config, the data facts (normalizer, reward scale, DT
schedule), the ``state_dict`` of every module and optimizer of the d3rlpy implementation, and
``grad_step``. d3rlpy's ``save``/``load_learnable`` are not used (they unpickle). Loading
rebuilds the algorithm with ``create_impl`` from the stored config and loads the state dicts.

**Resume.** Batches come from ``numpy.random.default_rng([seed, epoch])`` and, at every epoch
start, torch's global generator (d3rlpy draws CQL's action samples, TD3's target noise and
DT's dropout from it) is re-seeded with ``seed · 1,000,003 + epoch``; with the module and
optimizer states and ``grad_step`` restored, a resumed run repeats bit for bit the epochs an
uninterrupted run would have done (tested). Not restored: the partial epoch of a killed run
(it is redone from its start), and bit-exactness needs the same torch / d3rlpy versions and
thread count. Side effect: training re-seeds torch's global generator.

Example::

    cfg = preset_config("quick", method="td3bc")
    res = train("datasets/adhoc-quick.h5", cfg, "runs/td3bc")
    pol = D3rlpyPolicy.from_checkpoint(res["checkpoint"], env)   # policy "td3bc:<path>"
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from radiorl.agents.config import ConfigIO
from radiorl.agents.offline.common import OBS_DIM, evaluation_reward
from radiorl.agents.offline.trainer import check_selection_fields, run_epochs
from radiorl.data.normalizers import KINDS, Normalizer
from radiorl.data.schema import DatasetError
from radiorl.envs.base import check_number
from radiorl.schedulers.tdma import RequestPolicy

METHODS = ("cql", "td3bc", "dt")
LABELS = {"cql": "MA-CQL", "td3bc": "MA-TD3+BC", "dt": "MA-DT"}
#: Observation width per agent: ``o = [gen, gen_max, tran, tran_max]``.
CHECKPOINT_ALGO = "d3rlpy"
CHECKPOINT_VERSION = 1
#: Percentile of the dataset's (length-normalized) trajectory returns used as DT target.
TARGET_PERCENTILE = 90.0

#: d3rlpy 2.8 defaults that depend on the method (the ``None`` fields of the config).
METHOD_DEFAULTS = {
    "cql": dict(batch_size=256, lr=3e-4, actor_lr=1e-4),
    "td3bc": dict(batch_size=256, lr=3e-4, actor_lr=3e-4),
    "dt": dict(batch_size=64, lr=1e-4, actor_lr=None),
}


class MissingExtraError(ImportError, ValueError):
    """d3rlpy (the optional extra ``offline``) is not installed. Also a ``ValueError``, so the
    CLI's bad-input handling reports it like any other bad request."""


def import_d3rlpy(method: str | None = None):
    """The ``d3rlpy`` module, or :class:`MissingExtraError` naming the extra to install.

    gym 0.26 (a d3rlpy dependency) prints an "unmaintained" notice on import; it is hidden.
    """
    label = LABELS.get(method, "MA-CQL / MA-TD3+BC / MA-DT")
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            import d3rlpy
    except ImportError as e:
        missing = isinstance(e, ModuleNotFoundError) and (e.name or "").split(".")[0] == "d3rlpy"
        detail = "" if missing else f" (d3rlpy is installed but failed to import: {e})"
        raise MissingExtraError(f"{label} needs the optional extra 'offline': pip install "
                                f"'radiorl[offline]'{detail}") from None
    return d3rlpy


# =========================================================================== config
@dataclass
class D3rlpyConfig(ConfigIO):
    """One configuration for the three baselines (see the module docstring for the values).

    ``None`` fields take d3rlpy's default for ``method`` in :meth:`validate`.
    """

    TUPLES = ("hidden", "eval_scenarios")
    LABEL = "d3rlpy baseline"

    method: str = "cql"
    # budget (paper: 100 epochs x 1,000 steps)
    epochs: int = 100
    steps_per_epoch: int = 1000
    batch_size: int | None = None          # 256 (CQL, TD3+BC), 64 (DT)
    lr: float | None = None                # critic lr (CQL, TD3+BC: 3e-4); DT's lr (1e-4)
    actor_lr: float | None = None          # CQL 1e-4, TD3+BC 3e-4 (unused by DT)
    gamma: float = 0.99
    hidden: tuple = (256, 256)             # encoder MLP widths (DT: last = embedding size)
    # data
    normalizer: str = "gaussian"
    reward_scale: float | None = None      # None: mean|r| (CQL, TD3+BC); mean|r| * T (DT)
    # Q-learning (CQL, TD3+BC)
    tau: float = 0.005
    n_critics: int = 2
    # CQL
    cql_conservative_weight: float = 5.0
    cql_alpha_threshold: float = 10.0
    cql_initial_alpha: float = 1.0
    cql_alpha_lr: float = 1e-4
    cql_initial_temperature: float = 1.0
    cql_temp_lr: float = 1e-4
    cql_n_action_samples: int = 10
    # TD3+BC
    td3bc_alpha: float = 2.5
    td3bc_target_smoothing_sigma: float = 0.2
    td3bc_target_smoothing_clip: float = 0.5
    td3bc_update_actor_interval: int = 2
    # Decision Transformer
    dt_context: int = 20
    dt_layers: int = 3
    dt_heads: int = 1
    dt_dropout: float = 0.1
    dt_max_timestep: int | None = None     # None: longest trajectory + 1
    dt_target_return: float | None = None  # raw units over T frames; None: 90th percentile
    # evaluation in the simulator during training (0 = never)
    eval_every: int = 0
    eval_scenarios: tuple = ()             # () = every scenario of the dataset
    eval_frames: int = 200
    eval_seed: int = 12345
    select_checkpoint: str = "last"        # or "best_eval"
    checkpoint_every: int = 1
    # run
    seed: int = 0
    threads: int = 0

    @property
    def label(self) -> str:
        """``MA-CQL``, ``MA-TD3+BC`` or ``MA-DT``."""
        return LABELS.get(self.method, str(self.method))

    def validate(self) -> "D3rlpyConfig":
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {self.method!r}")
        defaults = METHOD_DEFAULTS[self.method]
        for k in ("batch_size", "lr", "actor_lr"):
            if getattr(self, k) is None:
                setattr(self, k, defaults[k])
        check_number("epochs", self.epochs, low=1, high=100_000, integer=True)
        check_number("steps_per_epoch", self.steps_per_epoch, low=1, high=10 ** 7, integer=True)
        check_number("batch_size", self.batch_size, low=1, high=1 << 20, integer=True)
        check_number("lr", self.lr, low=0, high=1, low_open=True)
        check_number("actor_lr", self.actor_lr, low=0, high=1, low_open=True,
                     allow_none=self.method == "dt")
        check_number("gamma", self.gamma, low=0, high=1, low_open=True)
        self.hidden = tuple(int(check_number("hidden", h, low=1, high=8192, integer=True))
                            for h in (self.hidden or ()))
        if not self.hidden:
            raise ValueError("hidden must list at least one layer width, e.g. [256, 256]")
        if self.normalizer not in KINDS:
            raise ValueError(f"normalizer must be one of {list(KINDS)}, got {self.normalizer!r}")
        check_number("reward_scale", self.reward_scale, low=0, low_open=True, allow_none=True)
        check_number("tau", self.tau, low=0, high=1, low_open=True)
        check_number("n_critics", self.n_critics, low=1, high=64, integer=True)
        check_number("cql_conservative_weight", self.cql_conservative_weight, low=0)
        check_number("cql_alpha_threshold", self.cql_alpha_threshold)
        check_number("cql_initial_alpha", self.cql_initial_alpha, low=0, low_open=True)
        check_number("cql_alpha_lr", self.cql_alpha_lr, low=0, high=1)
        check_number("cql_initial_temperature", self.cql_initial_temperature, low=0,
                     low_open=True)
        check_number("cql_temp_lr", self.cql_temp_lr, low=0, high=1)
        check_number("cql_n_action_samples", self.cql_n_action_samples, low=1, high=10_000,
                     integer=True)
        check_number("td3bc_alpha", self.td3bc_alpha, low=0)
        check_number("td3bc_target_smoothing_sigma", self.td3bc_target_smoothing_sigma, low=0)
        check_number("td3bc_target_smoothing_clip", self.td3bc_target_smoothing_clip, low=0)
        check_number("td3bc_update_actor_interval", self.td3bc_update_actor_interval, low=1,
                     high=10_000, integer=True)
        check_number("dt_context", self.dt_context, low=1, high=4096, integer=True)
        check_number("dt_layers", self.dt_layers, low=1, high=64, integer=True)
        check_number("dt_heads", self.dt_heads, low=1, high=64, integer=True)
        if self.method == "dt" and self.hidden[-1] % int(self.dt_heads):
            raise ValueError(f"dt_heads = {self.dt_heads} must divide the DT embedding size "
                             f"hidden[-1] = {self.hidden[-1]}")
        check_number("dt_dropout", self.dt_dropout, low=0, high=1)
        if self.dt_dropout >= 1:
            raise ValueError(f"dt_dropout must be in [0, 1), got {self.dt_dropout!r}")
        check_number("dt_max_timestep", self.dt_max_timestep, low=2, high=10 ** 8, integer=True,
                     allow_none=True)
        check_number("dt_target_return", self.dt_target_return, allow_none=True)
        self.eval_scenarios = tuple(str(x) for x in (self.eval_scenarios or ()))
        check_number("eval_frames", self.eval_frames, low=1, integer=True)
        check_number("eval_seed", self.eval_seed, low=0, integer=True)
        check_selection_fields(self)
        check_number("seed", self.seed, low=0, integer=True)
        check_number("threads", self.threads, low=0, high=1024, integer=True)
        return self


#: Fields that define the networks (and the data they see): a checkpoint can only be resumed
#: into a run with the same values.
ARCHITECTURE_FIELDS = ("method", "hidden", "normalizer", "n_critics", "dt_context", "dt_layers",
                       "dt_heads", "gamma")

#: Named starting points (``radiorl train cql|td3bc|dt --preset``): ``paper`` = the paper's
#: budget (100 x 1,000 steps), ``quick`` = MA-CDMP's quick budget (5 x 1,000).
PRESETS = {
    "paper": {},
    "quick": dict(epochs=5, steps_per_epoch=1000),
}


def preset_config(preset: str = "paper", **overrides) -> D3rlpyConfig:
    """:class:`D3rlpyConfig` of ``preset`` with ``overrides`` (``None`` values ignored)."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    kw = dict(PRESETS[preset])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return D3rlpyConfig(**kw).validate()


# =========================================================================== data
@dataclass
class AgentTrajectories:
    """The offline dataset in the learner's units, agent-major flat rows (as in the file).

    ``obs`` float32 ``[R, 4]`` (normalized), ``actions`` float32 ``[R, 1]`` in ``[−1, 1]``,
    ``rewards`` float32 ``[R, 1]`` (``r / reward_scale``), ``returns_to_go`` float32 ``[R, 1]``
    (undiscounted sum of the scaled rewards from the row to the end of its trajectory; DT
    only, else ``None``); trajectory ``a`` is rows ``row_start[a] : + frames[a]``;
    ``terminated`` bool ``[A]`` (a true termination at its last frame).
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    returns_to_go: np.ndarray | None
    row_start: np.ndarray
    frames: np.ndarray
    terminated: np.ndarray


def encode_requests(requests, max_request: int) -> np.ndarray:
    """RB requests ``0 … max_request`` → continuous actions ``2a/max_request − 1 ∈ [−1, 1]``."""
    return (2.0 * np.asarray(requests, np.float32) / float(max_request) - 1.0).astype(np.float32)


def decode_actions(u, max_request: int) -> np.ndarray:
    """Continuous actions → requests ``round((u + 1)/2 · max_request)`` int64, clipped."""
    a = np.rint((np.asarray(u, np.float64) + 1.0) * 0.5 * max_request)
    return np.clip(a, 0, max_request).astype(np.int64)


def open_training_data(dataset_path, cfg: D3rlpyConfig):
    """Open ``dataset_path`` and check its layout before any training work.

    Returns ``(dataset, data: AgentTrajectories, meta)``; ``meta`` holds the data facts stored
    with the model: ``normalizer`` (dict), ``reward_scale``, ``max_request``, ``ref_frames``
    ``T``, and for DT ``max_timestep`` and ``target_return``.
    """
    from radiorl.data.hdf5 import OfflineDataset
    cfg.validate()
    ds = OfflineDataset.open(dataset_path)
    if ds.obs_dim != OBS_DIM:
        raise DatasetError(f"dataset {ds.path} has observations of width obs_dim = {ds.obs_dim};"
                           f" {cfg.label} needs the ad hoc layout o = [gen, gen_max, tran, "
                           f"tran_max] (obs_dim = {OBS_DIM})")
    frames = ds.agents["frames"].astype(np.int64)
    if ds.n_trajectories == 0 or int(frames.max()) < 2:
        raise DatasetError(f"dataset {ds.path} has no trajectory of 2 frames or more (a "
                           "transition needs 2 frames)")
    T = int(frames.max())
    if cfg.method == "dt" and cfg.dt_max_timestep is not None and cfg.dt_max_timestep <= T - 1:
        raise ValueError(f"dt_max_timestep = {cfg.dt_max_timestep} is too small for the "
                         f"dataset's trajectories of up to {T} frames (need >= {T})")
    norm = ds.normalizer("obs", cfg.normalizer)
    r = np.asarray(ds.rewards, np.float64)
    mean_abs = float(np.abs(r).mean()) if r.size else 0.0
    mean_abs = mean_abs if mean_abs > 0 else 1.0
    if cfg.reward_scale is not None:
        scale = float(cfg.reward_scale)
    else:
        scale = mean_abs * T if cfg.method == "dt" else mean_abs
    row_start = ds.agents["row_start"].astype(np.int64)
    ends = row_start + frames
    terminated = np.asarray(ds.terminals, bool)[ends - 1]
    rewards = (r / scale).astype(np.float32)[:, None]
    rtg = None
    meta = {"normalizer": norm.to_dict(), "reward_scale": scale, "max_request": ds.max_request,
            "ref_frames": T}
    if cfg.method == "dt":
        c = np.cumsum(r / scale)
        traj = ds.frame_trajectory
        rtg = (c[ends[traj] - 1] - c + r / scale).astype(np.float32)[:, None]
        if cfg.dt_target_return is not None:
            target = float(cfg.dt_target_return)
        else:
            csum = np.concatenate([[0.0], np.cumsum(r)])
            returns = (csum[ends] - csum[row_start]) * T / frames
            target = float(np.percentile(returns, TARGET_PERCENTILE))
        meta.update(max_timestep=int(cfg.dt_max_timestep or T + 1), target_return=target)
    data = AgentTrajectories(
        obs=np.asarray(norm.normalize(np.asarray(ds.obs, np.float32)), np.float32),
        actions=encode_requests(ds.actions, ds.max_request)[:, None], rewards=rewards,
        returns_to_go=rtg, row_start=row_start, frames=frames, terminated=terminated)
    return ds, data, meta


def dataset_info(ds, meta: dict) -> dict:
    """Facts about the training data stored with the model (and a fingerprint of it)."""
    h = hashlib.sha256()
    h.update(json.dumps([ds.n_frames, ds.n_trajectories, ds.scenario_names,
                         meta["normalizer"]["offset"], meta["normalizer"]["scale"],
                         meta["reward_scale"]]).encode())
    return {"path": str(ds.path), "scenarios": list(ds.scenario_names),
            "n_frames": int(ds.n_frames), "n_trajectories": int(ds.n_trajectories),
            "obs_dim": int(ds.obs_dim), "max_request": int(ds.max_request),
            "n_slots": int(ds.n_slots), "n_channels": int(ds.n_channels),
            "fingerprint": h.hexdigest()[:16]}


class _TrajectoryIndex:
    """d3rlpy ``BufferProtocol`` over a fixed list of episodes: transition ``k`` →
    ``(episode, index)`` by binary search over the cumulative transition counts (no
    per-transition list: the paper's 51 M agent-frames would not fit as Python tuples)."""

    def __init__(self, episodes: list, counts: np.ndarray):
        self._episodes = list(episodes)
        self._counts = np.asarray(counts, np.int64)
        self._ends = np.cumsum(self._counts)

    def append(self, episode, index: int) -> None:
        raise TypeError("an offline radiorl replay buffer is read-only")

    @property
    def episodes(self):
        return self._episodes

    @property
    def transition_count(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __len__(self) -> int:
        return self.transition_count

    def __getitem__(self, k: int):
        a = int(np.searchsorted(self._ends, k, side="right"))
        return self._episodes[a], int(k - (self._ends[a] - self._counts[a]))


_BUFFER_CLASS = None


def _buffer_class():
    """:class:`d3rlpy.dataset.ReplayBuffer` subclass with vectorized, seeded sampling (built on
    first use: d3rlpy is optional)."""
    global _BUFFER_CLASS
    if _BUFFER_CLASS is not None:
        return _BUFFER_CLASS
    d3 = import_d3rlpy()
    from d3rlpy.dataset import TrajectoryMiniBatch, TransitionMiniBatch

    class AgentReplayBuffer(d3.dataset.ReplayBuffer):
        """One d3rlpy episode per (episode, agent) trajectory (see :func:`make_replay_buffer`).

        ``rng`` (a :class:`numpy.random.Generator`) draws every sample; batches are the same as
        d3rlpy's ``BasicTransitionPicker`` / ``BasicTrajectorySlicer`` would give for the same
        transition indices (:meth:`transition_batch_at`, :meth:`trajectory_batch_at`).
        """

        def __init__(self, data: AgentTrajectories, seed: int = 0):
            self.data = data
            eps = [d3.dataset.Episode(observations=data.obs[s:s + n],
                                      actions=data.actions[s:s + n],
                                      rewards=data.rewards[s:s + n], terminated=bool(t))
                   for s, n, t in zip(data.row_start.tolist(), data.frames.tolist(),
                                      data.terminated.tolist())]
            self._counts = np.where(data.terminated, data.frames, data.frames - 1)
            self._ends = np.cumsum(self._counts)
            f32 = np.dtype(np.float32)
            super().__init__(
                _TrajectoryIndex(eps, self._counts),
                observation_signature=d3.dataset.Signature(dtype=[f32], shape=[(OBS_DIM,)]),
                action_signature=d3.dataset.Signature(dtype=[f32], shape=[(1,)]),
                reward_signature=d3.dataset.Signature(dtype=[f32], shape=[(1,)]),
                action_space=d3.ActionSpace.CONTINUOUS, action_size=1)
            self.rng = np.random.default_rng(seed)

        # ------------------------------------------------------------ indices
        def _locate(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            a = np.searchsorted(self._ends, k, side="right")
            return a, k - (self._ends[a] - self._counts[a])

        def _draw(self, n: int) -> np.ndarray:
            return self.rng.integers(0, self.transition_count, size=n)

        # ------------------------------------------------------------ transitions
        def transition_batch_at(self, k) -> "TransitionMiniBatch":
            """The mini-batch of transitions ``k`` (int array)."""
            d = self.data
            a, t = self._locate(np.asarray(k, np.int64))
            rows = d.row_start[a] + t
            term = d.terminated[a] & (t == d.frames[a] - 1)
            nxt = np.where(term, rows, rows + 1)
            next_obs, next_act = d.obs[nxt], d.actions[nxt]
            next_obs[term] = 0.0
            next_act[term] = 0.0
            n = len(rows)
            return TransitionMiniBatch(
                observations=d.obs[rows], actions=d.actions[rows], rewards=d.rewards[rows],
                next_observations=next_obs, next_actions=next_act,
                terminals=term.astype(np.float32)[:, None],
                intervals=np.ones((n, 1), np.float32), transitions=[])

        def sample_transition_batch(self, batch_size: int) -> "TransitionMiniBatch":
            return self.transition_batch_at(self._draw(batch_size))

        def sample_transition(self):
            ep, i = self.buffer[int(self._draw(1)[0])]
            return self.transition_picker(ep, i)

        # ------------------------------------------------------------ trajectories
        def trajectory_batch_at(self, k, length: int) -> "TrajectoryMiniBatch":
            """Windows of ``length`` frames ending at transitions ``k`` (front zero padding,
            mask 0 on the padding; ``timesteps`` = frame index + 1)."""
            d = self.data
            if d.returns_to_go is None:
                raise ValueError("this buffer was built without returns-to-go (method != dt)")
            a, t = self._locate(np.asarray(k, np.int64))
            rel = t[:, None] + np.arange(1 - length, 1)[None, :]          # [n, L]
            valid = rel >= 0
            rows = d.row_start[a][:, None] + np.maximum(rel, 0)
            m = valid.astype(np.float32)
            terminals = np.zeros(rows.shape + (1,), np.float32)
            terminals[:, -1, 0] = d.terminated[a] & (t == d.frames[a] - 1)
            return TrajectoryMiniBatch(
                observations=d.obs[rows] * m[..., None], actions=d.actions[rows] * m[..., None],
                rewards=d.rewards[rows] * m[..., None],
                returns_to_go=d.returns_to_go[rows] * m[..., None], terminals=terminals,
                timesteps=((rel + 1) * valid).astype(np.float32), masks=m, length=int(length))

        def sample_trajectory_batch(self, batch_size: int, length: int) -> "TrajectoryMiniBatch":
            return self.trajectory_batch_at(self._draw(batch_size), length)

        def sample_trajectory(self, length: int):
            ep, i = self.buffer[int(self._draw(1)[0])]
            return self.trajectory_slicer(ep, i, length)

    _BUFFER_CLASS = AgentReplayBuffer
    return _BUFFER_CLASS


def make_replay_buffer(data: AgentTrajectories, seed: int = 0):
    """The offline dataset as a :class:`d3rlpy.dataset.ReplayBuffer` of one parameter-shared
    learner: one d3rlpy ``Episode`` per (episode, agent) trajectory (views of ``data``, no
    copy), continuous actions of size 1, observations of shape ``(4,)``."""
    return _buffer_class()(data, seed)


# =========================================================================== algorithm
def build_algo(cfg: D3rlpyConfig, meta: dict, seed: int | None = None):
    """A d3rlpy algorithm for ``cfg`` with freshly initialized networks (``seed``, default
    ``cfg.seed``, fixes them); observation shape ``(4,)``, action size 1, CPU."""
    d3 = import_d3rlpy(cfg.method)
    cfg.validate()
    enc = d3.models.VectorEncoderFactory(hidden_units=list(cfg.hidden))
    common = dict(batch_size=int(cfg.batch_size), gamma=float(cfg.gamma))
    if cfg.method == "cql":
        conf = d3.algos.CQLConfig(
            **common, actor_learning_rate=cfg.actor_lr, critic_learning_rate=cfg.lr,
            temp_learning_rate=cfg.cql_temp_lr, alpha_learning_rate=cfg.cql_alpha_lr,
            actor_encoder_factory=enc, critic_encoder_factory=enc, tau=cfg.tau,
            n_critics=int(cfg.n_critics), initial_temperature=cfg.cql_initial_temperature,
            initial_alpha=cfg.cql_initial_alpha, alpha_threshold=cfg.cql_alpha_threshold,
            conservative_weight=cfg.cql_conservative_weight,
            n_action_samples=int(cfg.cql_n_action_samples))
    elif cfg.method == "td3bc":
        conf = d3.algos.TD3PlusBCConfig(
            **common, actor_learning_rate=cfg.actor_lr, critic_learning_rate=cfg.lr,
            actor_encoder_factory=enc, critic_encoder_factory=enc, tau=cfg.tau,
            n_critics=int(cfg.n_critics), alpha=cfg.td3bc_alpha,
            target_smoothing_sigma=cfg.td3bc_target_smoothing_sigma,
            target_smoothing_clip=cfg.td3bc_target_smoothing_clip,
            update_actor_interval=int(cfg.td3bc_update_actor_interval))
    else:
        p = float(cfg.dt_dropout)
        conf = d3.algos.DecisionTransformerConfig(
            **common, learning_rate=cfg.lr, encoder_factory=enc,
            context_size=int(cfg.dt_context), max_timestep=int(meta["max_timestep"]),
            num_heads=int(cfg.dt_heads), num_layers=int(cfg.dt_layers), attn_dropout=p,
            resid_dropout=p, embed_dropout=p)
    torch.manual_seed(cfg.seed if seed is None else seed)
    algo = conf.create(device="cpu:0")
    algo.create_impl((OBS_DIM,), 1)
    return algo


def _parts(algo) -> tuple[dict, dict]:
    """``(modules, optimizers)`` of a built d3rlpy algorithm, by field name."""
    mods, opts = {}, {}
    m = algo.impl.modules
    for f in fields(m):
        v = getattr(m, f.name)
        if isinstance(v, torch.nn.Module):
            mods[f.name] = v
        elif v is not None and hasattr(v, "state_dict") and hasattr(v, "load_state_dict"):
            opts[f.name] = v
    return mods, opts


def algo_state(algo, optimizers: bool = True) -> dict:
    """Plain state of the algorithm: module (and optimizer) state dicts and ``grad_step``."""
    mods, opts = _parts(algo)
    return {"modules": {k: v.state_dict() for k, v in mods.items()},
            "optimizers": {k: v.state_dict() for k, v in opts.items()} if optimizers else None,
            "grad_step": int(algo.grad_step)}


def load_algo_state(algo, state: dict, path="checkpoint") -> None:
    """Load :func:`algo_state` into a built algorithm (optimizers only if stored)."""
    mods, opts = _parts(algo)
    try:
        for k, v in mods.items():
            v.load_state_dict(state["modules"][k])
        if state.get("optimizers") is not None:
            for k, v in opts.items():
                v.load_state_dict(state["optimizers"][k])
    except (KeyError, RuntimeError, ValueError) as e:
        raise ValueError(f"checkpoint {path} does not fit its own config ({e})") from None
    algo.set_grad_step(int(state.get("grad_step", 0)))


def save_blob(path, cfg: D3rlpyConfig, meta: dict, info: dict, algo, *, optimizers: bool,
              **extra) -> Path:
    """Atomic save of our checkpoint (loadable with ``weights_only=True``)."""
    from radiorl.runtime.checkpoints import save_checkpoint
    d3rlpy = import_d3rlpy(cfg.method)
    blob = {"algo": CHECKPOINT_ALGO, "version": CHECKPOINT_VERSION, "method": cfg.method,
            "config": cfg.to_dict(), "meta": dict(meta), "dataset": dict(info),
            "d3rlpy_version": str(d3rlpy.__version__),
            **algo_state(algo, optimizers=optimizers), **extra}
    return save_checkpoint(path, blob)


def load_blob(path) -> dict:
    """One of our d3rlpy-baseline checkpoints (``weights_only=True``; clear error otherwise)."""
    from radiorl.runtime.checkpoints import load_checkpoint
    return load_checkpoint(path, CHECKPOINT_ALGO, CHECKPOINT_VERSION,
                           "d3rlpy baseline (MA-CQL / MA-TD3+BC / MA-DT)")


def load_algo(path, method: str | None = None):
    """Rebuild the algorithm of checkpoint ``path``. Returns ``(algo, cfg, meta, blob)``;
    ``method`` (if given) must be the checkpoint's."""
    if method is not None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
        import_d3rlpy(method)
    blob = load_blob(path)
    if method is not None and blob.get("method") != method:
        raise ValueError(f"checkpoint {path} holds a {LABELS.get(blob.get('method'), '?')} "
                         f"model, not {LABELS[method]}")
    try:
        cfg = D3rlpyConfig.from_dict(blob["config"]).validate()
        meta = dict(blob["meta"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"checkpoint {path} is incomplete ({e})") from None
    algo = build_algo(cfg, meta)
    load_algo_state(algo, blob, path)
    return algo, cfg, meta, blob


# =========================================================================== policy
class D3rlpyPolicy(RequestPolicy):
    """A trained MA-CQL / MA-TD3+BC / MA-DT model acting for every agent of the ad hoc
    network on its own observation (policy names ``cql:<ck>``, ``td3bc:<ck>``, ``dt:<ck>``).

    ``act``: the ``B × N`` local observations ``info["obs"]`` are normalized and fed to the
    shared network in one batch; the continuous actions become requests (module docstring).
    CQL / TD3+BC: the deterministic actor (CQL: the tanh of the Gaussian mean). DT: the policy
    state keeps, per agent, the last ``context`` observations, actions, returns-to-go (the
    schedule of the module docstring, target ``target_return``) and timesteps as batched
    ``[B·N, context, ·]`` arrays; every agent's row is its own sequence (the transformer never
    mixes batch rows), so all agents are one forward pass.
    """

    name = "d3rlpy"
    requires = frozenset({"local_obs"})

    def __init__(self, algo, cfg: D3rlpyConfig, meta: dict, target_return: float | None = None):
        super().__init__()
        self.algo, self.cfg, self.meta = algo, cfg, dict(meta)
        self.method = cfg.method
        self.name = cfg.method
        self.normalizer = Normalizer.from_dict(meta["normalizer"])
        self.model_max_request = int(meta["max_request"])
        if self.method == "dt":
            t = meta["target_return"] if target_return is None else target_return
            self.target_return = float(check_number("target_return", t))
            self.ref_frames = int(meta["ref_frames"])
            self.max_timestep = int(meta["max_timestep"])
            self.reward_scale = float(meta["reward_scale"])
        elif target_return is not None:
            raise ValueError(f"target_return is a setting of MA-DT, not of {cfg.label}")

    @classmethod
    def from_checkpoint(cls, path, env=None, method: str | None = None,
                        **settings) -> "D3rlpyPolicy":
        """Load ``path`` (``method``: the expected method, checked). ``settings``: DT's
        ``target_return`` (raw units over the dataset's trajectory length)."""
        bad = sorted(set(settings) - {"target_return"})
        if bad:
            raise ValueError(f"unknown d3rlpy policy settings {bad}; valid: ['target_return'] "
                             "(MA-DT only)")
        algo, cfg, meta, _ = load_algo(path, method)
        pol = cls(algo, cfg, meta, **settings)
        if env is not None:
            pol.bind(env)
        return pol

    def bind(self, env) -> "D3rlpyPolicy":
        super().bind(env)
        if env.params.max_request != self.model_max_request:
            raise ValueError(f"{self.cfg.label} was trained with max_request = "
                             f"{self.model_max_request} RBs, the network {env.params.name} has "
                             f"max_request = {env.params.max_request}")
        return self

    # ------------------------------------------------------------------ DT context
    def _init_state(self, batch):
        if self.method != "dt":
            return None
        M, L = batch * self.env.n_agents, int(self.cfg.dt_context)
        return {"obs": np.zeros((M, L, OBS_DIM), np.float32),
                "actions": np.zeros((M, L, 1), np.float32),
                "rtg": np.zeros((M, L, 1), np.float32),
                "timesteps": np.zeros((M, L), np.int64),
                "masks": np.zeros((M, L), np.float32), "t": 0}

    def return_to_go(self, t: int) -> float:
        """Scaled return-to-go asked for at frame ``t`` (1-based): ``G (T − t + 1) / T``."""
        tc = min(max(int(t), 1), self.ref_frames)
        return self.target_return * (self.ref_frames - tc + 1) / self.ref_frames \
            / self.reward_scale

    def _dt_act(self, x: np.ndarray, ps: dict) -> tuple[np.ndarray, dict]:
        if ps is None or ps["obs"].shape[0] != x.shape[0]:
            raise ValueError(f"MA-DT policy state holds {0 if ps is None else ps['obs'].shape[0]}"
                             f" agents, the observation {x.shape[0]}; call reset(env, batch)")
        t = int(ps["t"]) + 1
        new = {k: np.concatenate([v[:, 1:], np.zeros_like(v[:, :1])], axis=1)
               for k, v in ps.items() if k != "t"}
        new["obs"][:, -1] = x
        new["rtg"][:, -1, 0] = self.return_to_go(t)
        new["timesteps"][:, -1] = min(t, self.max_timestep - 1)
        new["masks"][:, -1] = 1.0
        mods = self.algo.impl.modules
        mods.set_eval()
        with torch.no_grad():
            out = mods.transformer(torch.from_numpy(new["obs"]), torch.from_numpy(new["actions"]),
                                   torch.from_numpy(new["rtg"]),
                                   torch.from_numpy(new["timesteps"]),
                                   1 - torch.from_numpy(new["masks"]))
        u = out[:, -1, 0].numpy().astype(np.float32)
        new["actions"][:, -1, 0] = u
        new["t"] = t
        return u, new

    def continuous_actions(self, obs: np.ndarray, ps=None) -> tuple[np.ndarray, object]:
        """Raw local observations ``[M, 4]`` → continuous actions ``[M]`` in ``[−1, 1]`` (and
        the new DT state)."""
        x = np.ascontiguousarray(self.normalizer.normalize(np.asarray(obs, np.float32)),
                                 np.float32)
        if self.method == "dt":
            return self._dt_act(x, ps)
        return self.algo.predict(x)[:, 0].astype(np.float32), ps

    def _act(self, obs, info, ps):
        o = np.asarray(info["obs"], np.float32)
        B, N, _ = o.shape
        u, ps = self.continuous_actions(o.reshape(B * N, OBS_DIM), ps)
        return decode_actions(u, self.max_request).reshape(B, N), ps


# =========================================================================== training
def _check_resume(blob: dict, cfg: D3rlpyConfig, meta: dict, info: dict, path) -> None:
    stored = D3rlpyConfig.from_dict(blob["config"]).validate()
    for k in ARCHITECTURE_FIELDS:
        a, b = getattr(stored, k), getattr(cfg, k)
        if (list(a) if isinstance(a, tuple) else a) != (list(b) if isinstance(b, tuple) else b):
            raise ValueError(f"--resume: checkpoint {path} has {k} = {a!r}, this run {k} = {b!r}")
    for k in ("max_timestep", "reward_scale"):
        if blob["meta"].get(k) != meta.get(k):
            raise ValueError(f"--resume: checkpoint {path} has {k} = {blob['meta'].get(k)!r}, "
                             f"this run {meta.get(k)!r}")
    if blob["dataset"].get("fingerprint") != info["fingerprint"]:
        raise ValueError(f"--resume: checkpoint {path} was trained on dataset "
                         f"{blob['dataset'].get('path')} ({blob['dataset'].get('n_frames')} "
                         f"frames), not on {info['path']} ({info['n_frames']} frames)")
    if blob.get("optimizers") is None:
        raise ValueError(f"--resume: {path} is a final policy checkpoint without optimizer "
                         "state; resume from the run's checkpoints/last.pt")


def train(dataset_path, cfg: D3rlpyConfig, run_dir, resume=None, show_progress: bool = True,
          log=print) -> dict:
    """Train ``cfg.method`` on the offline dataset ``dataset_path`` (module docstring).

    Returns ``{"history", "checkpoint" (policy.pt), "best_epoch" (or None), "run_dir"}``.
    ``resume``: a checkpoint or a run folder holding ``checkpoints/last.pt`` (same method,
    networks and dataset). Raises :class:`MissingExtraError` without d3rlpy (before any work).
    """
    from radiorl.runtime.files import write_csv

    cfg.validate()
    import_d3rlpy(cfg.method)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(run_dir)
    ds, data, meta = open_training_data(dataset_path, cfg)
    info = dataset_info(ds, meta)
    scenarios = list(cfg.eval_scenarios) or list(ds.scenario_names)
    if cfg.eval_every:
        from radiorl.envs.scenarios import get_scenario
        for sc in scenarios:
            get_scenario(sc)                          # unknown names fail before training
    del ds
    buffer = make_replay_buffer(data, cfg.seed)
    algo = build_algo(cfg, meta)
    start, history = 0, []
    if resume is not None:
        from radiorl.runtime.checkpoints import resume_path
        rp = resume_path(resume)
        blob = load_blob(rp)
        _check_resume(blob, cfg, meta, info, rp)
        load_algo_state(algo, blob, rp)
        start = int(blob["epoch"])
        history = json.loads(blob["history"])
        log(f"resumed from {rp} at epoch {start}")
    cks = run_dir / "checkpoints"
    dt = cfg.method == "dt"

    def begin_epoch(epoch):
        buffer.rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)

    def train_step(_, epoch, step):
        batch = buffer.sample_trajectory_batch(cfg.batch_size, cfg.dt_context) if dt \
            else buffer.sample_transition_batch(cfg.batch_size)
        return algo.update(batch)

    history, best_epoch, best_score = run_epochs(
        cfg, run_dir, start=start, history=history, begin_epoch=begin_epoch,
        train_step=train_step,
        evaluate=lambda: evaluation_reward(lambda: D3rlpyPolicy(algo, cfg, meta), scenarios, cfg),
        save_best=lambda ep: save_blob(cks / "best.pt", cfg, meta, info, algo,
                                       optimizers=False, epoch=ep),
        save_last=lambda ep, h: save_blob(cks / "last.pt", cfg, meta, info, algo,
                                          optimizers=True, epoch=ep, history=json.dumps(h)),
        label=f"{cfg.label} on {Path(dataset_path).name}", show_progress=show_progress)
    chosen = None
    if cfg.select_checkpoint == "best_eval" and best_epoch and (cks / "best.pt").is_file():
        load_algo_state(algo, load_blob(cks / "best.pt"), cks / "best.pt")
        chosen = best_epoch
        log(f"selected the epoch-{best_epoch} weights (evaluation reward {best_score[1]:.3f})")
    ck = save_blob(cks / "policy.pt", cfg, meta, info, algo, optimizers=False, epoch=cfg.epochs,
                   history=json.dumps(history), selected_epoch=chosen or cfg.epochs)
    write_csv(run_dir / "training.csv", history)
    plot_training(history, run_dir / "figures" / "training_curve.png", cfg.label)
    return {"history": history, "checkpoint": str(ck), "best_epoch": chosen,
            "run_dir": str(run_dir)}


def plot_training(history: list, path, title: str = "") -> Path:
    """Every ``train_*`` metric d3rlpy reported (symlog scale: CQL's and TD3+BC's actor losses
    are negative) and, if evaluated, the evaluation reward per epoch (PNG)."""
    from radiorl.agents.offline.trainer import plot_history
    return plot_history(history, path, None, title, yscale="symlog")

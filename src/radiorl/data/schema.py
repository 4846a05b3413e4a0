"""Offline MF-TDMA datasets: the episode record and the HDF5 schema (version 1).

An *episode* is one simulated run of one copy of the MF-TDMA ad hoc network
(``specs/adhoc-mftdma.md``) with ``N`` agents (``N`` may differ between episodes) and ``T``
frames of 5 ms. It enters the dataset as an :class:`EpisodeRecord` and is stored
**agent-major and flat**: every (episode, agent) pair is one *trajectory*, and the ``T`` frames
of a trajectory are consecutive rows of the ``/frames`` tables. Ragged ``N`` therefore needs no
padding, and a window of ``H`` consecutive rows taken inside one trajectory never crosses an
agent or episode boundary.

HDF5 layout (``SCHEMA_VERSION = 1``)
------------------------------------
``E`` episodes, ``A = Σ_e N_e`` trajectories, ``R = Σ_e N_e·T_e`` agent-frames,
``K = Σ_a n_neighbors[a]`` neighbour entries.

File attributes (``/``):

=================== ==========================================================================
``format``          ``"radiorl-offline"``
``schema_version``  ``1`` (:data:`SCHEMA_VERSION`)
``generator``       ``"radiorl"``; ``generator_version``: ``radiorl.__version__``
``seed``            dataset (collection) seed, int
``created_utc``     ISO-8601 time of creation of the file
``complete``        ``True`` only once :meth:`DatasetWriter.finalize` has run
``n_episodes``      committed episode count (written last for every episode: crash safety)
``scenarios``       JSON ``{scenario name: params dict}``
``config``          JSON of the collection config (free-form dict given by the caller)
``obs_dim``         ``4`` (``o = [gen, gen_max, tran, tran_max]``)
``max_request``     largest allowed action (requested RBs per frame)
``n_slots``         ``M`` slots per frame; ``n_channels``: ``L`` channels
=================== ==========================================================================

``/episodes`` — one row per episode (length ``E``); group attributes ``scenario_names``
(JSON list, sorted names of ``scenarios``) and ``behaviour_names`` (JSON list, first-seen
order):

- ``scenario`` int32: index into ``scenario_names``; ``behaviour`` int32: index into
  ``behaviour_names`` (label of the behaviour policy, e.g. ``"mixture(eps=0.3)"``)
- ``seed`` int64: seed of the episode; ``truncated`` bool: ended by the time limit
- ``n_agents`` int32: ``N_e``; ``frames`` int64: ``T_e``
- ``agent_start`` int64: first row of the episode in ``/agents`` (``Σ_{e'<e} N_e'``)

``/agents`` — one row per trajectory (length ``A``), ordered by episode then agent:

- ``episode`` int64, ``agent`` int32 (index within the episode)
- ``row_start`` int64 (first row in ``/frames``), ``frames`` int64 (``T_e``)
- ``high_rate`` bool (high-speed traffic node), ``position`` float32 ``[A, 2]`` (km)
- ``neighbor_start`` int64 (offset into ``neighbor_index``), ``n_neighbors`` int32
- ``neighbor_index`` int64 ``[K]``: **global** ``/agents`` rows of the 1-hop neighbours of each
  trajectory, concatenated (always inside the same episode; symmetric)

``/frames`` — one row per agent-frame (length ``R``), agent-major: all ``T`` frames of agent 0
of episode 0, then agent 1, …:

- ``obs`` float32 ``[R, 4]``: raw queue counts ``[|G|, max|G|, |F|, max|F|]`` (packets)
- ``mf_obs`` float32 ``[R, 4]``: mean of the 1-hop neighbours' ``obs`` (MA-CDMP eq. 11)
- ``actions`` int16: requested RBs in ``[0, max_request]``; ``grants`` int16: granted RBs
- ``rewards`` float32: ``−`` mean delay (ms) of the packets delivered to the node (spec A.3.8)
- ``delays`` float32: mean delay (ms) of packets delivered to the node in the frame; NaN if none
- ``received`` int32: packets delivered to the node in the frame
- ``timeouts`` bool: ``True`` on the last frame of a truncated trajectory
- ``terminals`` bool: true environment terminations (always ``False`` for this env)

``/normalizers/<field>`` for ``obs``, ``mf_obs``, ``actions``, ``rewards`` — written by
``finalize``: datasets ``min``, ``max``, ``mean``, ``std`` (float64 ``[D]``, ``D = 4`` for
``obs``/``mf_obs`` and ``1`` for ``actions``/``rewards``; population std, ddof = 0) over all
``R`` rows; attribute ``count = R``.

All tables are chunked, resizable and lzf-compressed (:data:`CHUNK_ROWS`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from radiorl.envs.base import check_array, check_number

#: Version of the layout above. Bump it on any incompatible change.
SCHEMA_VERSION = 1
#: Value of the ``format`` file attribute.
FORMAT = "radiorl-offline"
#: Length of the per-agent observation ``o = [gen, gen_max, tran, tran_max]``.
OBS_DIM = 4
#: Fields that get normalizer statistics at finalize, with their dimension ``D``.
NORMALIZED_FIELDS: dict[str, int] = {"obs": OBS_DIM, "mf_obs": OBS_DIM, "actions": 1, "rewards": 1}
#: Statistics stored for every normalized field.
STAT_NAMES = ("min", "max", "mean", "std")

#: ``{table: {dataset: (dtype, trailing shape)}}``; the single source of truth for the writer
#: (creation) and the reader (validation).
TABLES: dict[str, dict[str, tuple[np.dtype, tuple[int, ...]]]] = {
    "episodes": {
        "scenario": (np.dtype(np.int32), ()),
        "seed": (np.dtype(np.int64), ()),
        "n_agents": (np.dtype(np.int32), ()),
        "frames": (np.dtype(np.int64), ()),
        "agent_start": (np.dtype(np.int64), ()),
        "behaviour": (np.dtype(np.int32), ()),
        "truncated": (np.dtype(np.bool_), ()),
    },
    "agents": {
        "episode": (np.dtype(np.int64), ()),
        "agent": (np.dtype(np.int32), ()),
        "row_start": (np.dtype(np.int64), ()),
        "frames": (np.dtype(np.int64), ()),
        "high_rate": (np.dtype(np.bool_), ()),
        "position": (np.dtype(np.float32), (2,)),
        "neighbor_start": (np.dtype(np.int64), ()),
        "n_neighbors": (np.dtype(np.int32), ()),
    },
    "frames": {
        "obs": (np.dtype(np.float32), (OBS_DIM,)),
        "mf_obs": (np.dtype(np.float32), (OBS_DIM,)),
        "actions": (np.dtype(np.int16), ()),
        "grants": (np.dtype(np.int16), ()),
        "rewards": (np.dtype(np.float32), ()),
        "delays": (np.dtype(np.float32), ()),
        "received": (np.dtype(np.int32), ()),
        "timeouts": (np.dtype(np.bool_), ()),
        "terminals": (np.dtype(np.bool_), ()),
    },
}
#: The neighbour list lives in the agents group but has its own length ``K``.
NEIGHBOR_INDEX = ("agents", "neighbor_index", np.dtype(np.int64))
#: Rows per HDF5 chunk of each table (frames: 64 Ki rows = 1 MiB of ``obs``).
CHUNK_ROWS = {"episodes": 1024, "agents": 4096, "frames": 65536, "neighbor_index": 16384}

_INT16_MAX = int(np.iinfo(np.int16).max)
_INT32_MAX = int(np.iinfo(np.int32).max)


class DatasetError(ValueError):
    """A dataset file is corrupt, truncated, incomplete, of another schema version, or does not
    match what the caller expects. The message names the file and the offending field."""


@dataclass
class EpisodeRecord:
    """One episode of one network copy: ``N`` agents, ``T`` frames (5 ms each).

    Arrays (time-major, as produced by the batched env for one copy):

    - ``obs`` float ``[T, N, 4]``: raw queue counts ``[|G|, max|G|, |F|, max|F|]`` (packets, ≥ 0)
    - ``mf_obs`` float ``[T, N, 4]``: mean of the 1-hop neighbours' ``obs`` (≥ 0)
    - ``actions`` int ``[T, N]``: requested RBs in ``[0, max_request]``
    - ``grants`` int ``[T, N]``: RBs actually granted, in ``[0, M·L]``
    - ``rewards`` float ``[T, N]``: per-agent reward (−ms), finite
    - ``delays`` float ``[T, N]``: mean delay (ms, ≥ 0) of packets delivered to node ``i`` in
      frame ``t``; NaN when none was delivered
    - ``received`` int ``[T, N]``: packets delivered to node ``i`` in frame ``t`` (≥ 0)
    - ``neighbors``: ``N`` integer arrays, the 1-hop neighbours of each agent (indices in
      ``[0, N-1]``, no self loops, no duplicates, symmetric)
    - ``positions`` float ``[N, 2]`` (km); ``high_rate`` bool ``[N]``

    Metadata: ``scenario`` (name, e.g. ``"adhoc-9-4:5"``), ``seed`` (int in ``[0, 2^63)``),
    ``behaviour`` (label of the behaviour policy), ``truncated`` (ended by the time limit).

    Any float width / integer width is accepted; the writer stores the dtypes of
    :data:`TABLES` after :meth:`validate` has checked that the values fit.
    """

    obs: np.ndarray
    mf_obs: np.ndarray
    actions: np.ndarray
    grants: np.ndarray
    rewards: np.ndarray
    delays: np.ndarray
    received: np.ndarray
    neighbors: Sequence[np.ndarray]
    positions: np.ndarray
    high_rate: np.ndarray
    scenario: str
    seed: int
    behaviour: str
    truncated: bool = True

    @property
    def n_agents(self) -> int:
        """``N``."""
        return int(np.shape(self.obs)[1])

    @property
    def frames(self) -> int:
        """``T``."""
        return int(np.shape(self.obs)[0])

    def validate(self, *, max_request: int | None = None,
                 n_rbs: int | None = None) -> "EpisodeRecord":
        """Check shapes, dtypes, finiteness, ranges and the neighbour lists.

        ``max_request`` bounds ``actions`` and ``n_rbs`` (= ``M·L``) bounds ``grants`` when
        given; otherwise the int16 range applies. Raises ``ValueError`` naming the field and the
        allowed range. Returns ``self``.
        """
        obs = np.asarray(self.obs)
        if obs.ndim != 3 or obs.shape[2] != OBS_DIM or obs.shape[0] < 1 or obs.shape[1] < 1:
            raise ValueError(f"EpisodeRecord.obs must have shape (T, N, {OBS_DIM}) with T >= 1 and "
                             f"N >= 1, got {obs.shape}")
        T, N = obs.shape[:2]
        tn = f"(T, N) = {(T, N)}"
        for name in ("obs", "mf_obs"):
            a = _check_kind(name, getattr(self, name), "f", (T, N, OBS_DIM),
                            f"(T, N, 4) = {(T, N, OBS_DIM)}")
            check_array(f"EpisodeRecord.{name}", a, low=0)
        a_hi = _INT16_MAX if max_request is None else int(max_request)
        g_hi = _INT16_MAX if n_rbs is None else int(n_rbs)
        check_array("EpisodeRecord.actions", _check_kind("actions", self.actions, "iu", (T, N), tn),
                    low=0, high=a_hi)
        check_array("EpisodeRecord.grants", _check_kind("grants", self.grants, "iu", (T, N), tn),
                    low=0, high=g_hi)
        check_array("EpisodeRecord.received",
                    _check_kind("received", self.received, "iu", (T, N), tn), low=0, high=_INT32_MAX)
        check_array("EpisodeRecord.rewards", _check_kind("rewards", self.rewards, "f", (T, N), tn))
        d = _check_kind("delays", self.delays, "f", (T, N), tn)
        fin = d[~np.isnan(d)]
        if fin.size and (not np.all(np.isfinite(fin)) or fin.min() < 0):
            raise ValueError("EpisodeRecord.delays must be finite and >= 0 (ms), or NaN for a frame "
                             f"without deliveries; got min {fin.min()}, max {fin.max()}")
        pos = _check_kind("positions", self.positions, "f", (N, 2), f"(N, 2) = {(N, 2)}")
        check_array("EpisodeRecord.positions", pos)
        _check_kind("high_rate", self.high_rate, "b", (N,), f"(N,) = {(N,)}")
        self._validate_neighbors(N)
        if not isinstance(self.scenario, str) or not self.scenario:
            raise ValueError(f"EpisodeRecord.scenario must be a non-empty str, got {self.scenario!r}")
        if not isinstance(self.behaviour, str) or not self.behaviour:
            raise ValueError("EpisodeRecord.behaviour must be a non-empty str, got "
                             f"{self.behaviour!r}")
        if isinstance(self.seed, (bool, np.bool_)):
            raise ValueError("EpisodeRecord.seed must be an integer in [0, 2^63 - 1], got "
                             f"{self.seed!r}")
        check_number("EpisodeRecord.seed", self.seed, low=0, high=2 ** 63 - 1, integer=True)
        if not isinstance(self.truncated, (bool, np.bool_)):
            raise ValueError(f"EpisodeRecord.truncated must be a bool, got {self.truncated!r}")
        return self

    def _validate_neighbors(self, N: int) -> None:
        nb = self.neighbors
        if isinstance(nb, np.ndarray) and nb.dtype != object:
            raise ValueError("EpisodeRecord.neighbors must be a list of N integer arrays "
                             "(ragged), not a single array")
        if len(nb) != N:
            raise ValueError(f"EpisodeRecord.neighbors must hold N = {N} arrays, got {len(nb)}")
        adj = np.zeros((N, N), bool)
        for i, row in enumerate(nb):
            r = np.asarray(row)
            if r.size == 0:
                continue
            if r.ndim != 1 or r.dtype.kind not in "iu":
                raise ValueError(f"EpisodeRecord.neighbors[{i}] must be a 1-D integer array, got "
                                 f"dtype {r.dtype} shape {r.shape}")
            if r.min() < 0 or r.max() > N - 1:
                raise ValueError(f"EpisodeRecord.neighbors[{i}] must hold agent indices in "
                                 f"[0, {N - 1}], got {r.tolist()}")
            if np.any(r == i):
                raise ValueError(f"EpisodeRecord.neighbors[{i}] must not contain the agent "
                                 f"itself ({i})")
            if len(np.unique(r)) != len(r):
                raise ValueError(f"EpisodeRecord.neighbors[{i}] has duplicate entries: {r.tolist()}")
            adj[i, r] = True
        asym = np.argwhere(adj != adj.T)
        if len(asym):
            i, j = (int(v) for v in asym[0])
            if not adj[i, j]:
                i, j = j, i
            raise ValueError(f"EpisodeRecord.neighbors must be symmetric: {j} is a neighbour of {i} "
                             f"but {i} is not a neighbour of {j}")


def _check_kind(name: str, value, kinds: str, shape: tuple, shape_txt: str) -> np.ndarray:
    """Array ``value`` with dtype kind in ``kinds`` (``f`` float, ``iu`` int, ``b`` bool) and
    exactly ``shape``; ``ValueError`` naming ``EpisodeRecord.<name>`` otherwise."""
    a = np.asarray(value)
    what = {"f": "a float", "iu": "an integer", "b": "a bool"}[kinds]
    if a.dtype.kind not in kinds:
        raise ValueError(f"EpisodeRecord.{name} must be {what} array, got dtype {a.dtype}")
    if a.shape != tuple(shape):
        raise ValueError(f"EpisodeRecord.{name} must have shape {shape_txt}, got {a.shape}")
    return a


def is_nan_or_equal(a, b) -> bool:
    """Element-wise equality that treats NaN == NaN (used to compare ``delays``)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    if a.dtype.kind == "f" or b.dtype.kind == "f":
        return bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))
    return bool(np.all(a == b))

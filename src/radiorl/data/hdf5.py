"""Write and read offline MF-TDMA datasets (HDF5 layout in :mod:`radiorl.data.schema`).

Writer::

    with DatasetWriter("data/adhoc.h5", scenarios={"adhoc-9-4:5": params}, config=cfg, seed=0,
                       max_request=40, n_slots=10, n_channels=4, resume=True) as w:
        for record in episodes_to_collect(skip=w.n_episodes_done):
            w.append(record)
    # a clean exit finalizes: normalizer stats, complete=True, rename <path>.partial -> <path>

Reader::

    ds = OfflineDataset.open("data/adhoc.h5")
    ds.check_compatible("adhoc-9-4:5", params)      # same scenario, same parameters
    ds.obs            # float32 [R, 4], agent-major rows
    ds.episode(0)     # the EpisodeRecord as appended
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

import radiorl
from radiorl.data.normalizers import Normalizer, RunningStats
from radiorl.data.schema import (CHUNK_ROWS, FORMAT, NEIGHBOR_INDEX, NORMALIZED_FIELDS, OBS_DIM,
                                 SCHEMA_VERSION, STAT_NAMES, TABLES, DatasetError, EpisodeRecord)
from radiorl.envs.base import check_number

PARTIAL_SUFFIX = ".partial"
#: Rows read at a time when computing the normalizer statistics at finalize.
STATS_CHUNK_ROWS = 1 << 20
#: File attributes that a resumed writer must find identical.
_RESUME_ATTRS = ("scenarios", "config", "seed", "max_request", "n_slots", "n_channels")


def partial_path(path) -> Path:
    """``<path>.partial``: where a dataset is written until it is finalized."""
    path = Path(path)
    return path.with_name(path.name + PARTIAL_SUFFIX)


# =========================================================================== JSON helpers
def _to_jsonable(value, where: str):
    """Plain JSON types from dicts/lists/tuples/numpy scalars and arrays/dataclasses/paths;
    ``ValueError`` naming ``where`` for anything else."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise ValueError(f"{where}: keys must be str, got {k!r}")
            out[str(k)] = _to_jsonable(v, f"{where}[{k!r}]")
        return out
    if isinstance(value, (list, tuple)):
        return [_to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _to_jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError(f"{where} must be JSON-serializable (dict/list/str/number/bool/None, numpy "
                     f"values, dataclasses); got {type(value).__name__}: {value!r}")


def _dumps(value) -> str:
    return json.dumps(value, sort_keys=True)


def _first_difference(stored, given, where: str) -> str | None:
    """Human-readable first difference between two JSON-like values, or None if equal."""
    if isinstance(stored, dict) and isinstance(given, dict):
        for k in sorted(set(stored) | set(given)):
            if k not in stored:
                return f"{where}[{k!r}]: not stored in the file, given {given[k]!r}"
            if k not in given:
                return f"{where}[{k!r}]: stored {stored[k]!r}, not given"
            d = _first_difference(stored[k], given[k], f"{where}[{k!r}]")
            if d:
                return d
        return None
    if isinstance(stored, list) and isinstance(given, list) and len(stored) == len(given):
        for i, (a, b) in enumerate(zip(stored, given)):
            d = _first_difference(a, b, f"{where}[{i}]")
            if d:
                return d
        return None
    if _same_value(stored, given):
        return None
    return f"{where}: stored {stored!r}, given {given!r}"


def _same_value(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return True
        return a == b
    return type(a) is type(b) and a == b


def _attr_value(v):
    """h5py attribute → python value (numpy scalars and bytes unwrapped)."""
    if isinstance(v, bytes):
        return v.decode("utf-8")
    if isinstance(v, np.generic):
        return v.item()
    return v


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


# =========================================================================== writer
class DatasetWriter:
    """Append :class:`EpisodeRecord` s to ``<path>.partial``; :meth:`finalize` renames it to
    ``path``.

    Parameters
    ----------
    path: final file name. Nothing is ever written there except by the atomic
        ``os.replace`` of :meth:`finalize`.
    scenarios: ``{scenario name: params}`` (params a dict or a params dataclass) for every
        scenario whose episodes will be appended; stored as JSON.
    config: the collection config (free-form, JSON-serializable); stored as JSON.
    seed: dataset seed (int ≥ 0).
    max_request: largest allowed action (RBs); ``n_slots`` (``M``), ``n_channels`` (``L``).
    overwrite: allow replacing an existing complete file at ``path`` (at finalize) and, unless
        resuming, discard a leftover ``<path>.partial``.
    resume: continue a leftover ``<path>.partial`` (its attributes must match the arguments);
        starts a new file if there is none.

    Crash safety (episode granularity): an episode's frames, agents and episode row are
    written first; the committed count (file attribute ``n_episodes``) is incremented last and
    the file is flushed. On resume, rows beyond the committed count are cut off. HDF5 is not
    journaled: if the process dies *inside* an HDF5 call the partial file may be unreadable, in
    which case resuming reports it and ``--overwrite`` starts over.

    As a context manager, a clean exit calls :meth:`finalize` (if not done yet) and an
    exception closes the partial file and leaves it in place for ``resume=True``.
    """

    def __init__(self, path, *, scenarios: Mapping[str, Any], config: Mapping[str, Any],
                 seed: int, max_request: int, n_slots: int, n_channels: int,
                 overwrite: bool = False, resume: bool = False):
        self.path = Path(path)
        self.partial = partial_path(self.path)
        if not isinstance(scenarios, Mapping) or not scenarios:
            raise ValueError("scenarios must be a non-empty dict {scenario name: params}")
        for name in scenarios:
            if not isinstance(name, str) or not name:
                raise ValueError(f"scenario names must be non-empty str, got {name!r}")
        if not isinstance(config, Mapping):
            raise ValueError(f"config must be a dict, got {type(config).__name__}")
        self.scenarios = _to_jsonable(dict(scenarios), "scenarios")
        self.config = _to_jsonable(dict(config), "config")
        self.seed = check_number("seed", seed, low=0, high=2 ** 63 - 1, integer=True)
        self.max_request = check_number("max_request", max_request, low=1,
                                        high=int(np.iinfo(np.int16).max), integer=True)
        self.n_slots = check_number("n_slots", n_slots, low=1, integer=True)
        self.n_channels = check_number("n_channels", n_channels, low=1, integer=True)
        self.n_rbs = self.n_slots * self.n_channels
        self.scenario_names = sorted(self.scenarios)
        self._file: h5py.File | None = None
        self._finalized = False

        if self.path.exists() and not overwrite:
            raise FileExistsError(f"dataset {self.path} already exists; pass --overwrite "
                                  "(overwrite=True) to replace it")
        if self.partial.exists():
            if resume:
                self._open_resume()
                return
            if not overwrite:
                raise FileExistsError(
                    f"a partial dataset {self.partial} from an interrupted collection exists; pass "
                    "--resume (resume=True) to continue it or --overwrite (overwrite=True) to "
                    "discard it")
            self.partial.unlink()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._create()

    # ------------------------------------------------------------------ file setup
    def _create(self) -> None:
        f = h5py.File(self.partial, "w")
        self._file = f
        a = f.attrs
        a["format"] = FORMAT
        a["schema_version"] = SCHEMA_VERSION
        a["generator"] = "radiorl"
        a["generator_version"] = radiorl.__version__
        a["seed"] = self.seed
        a["created_utc"] = _utc_now()
        a["complete"] = False
        a["n_episodes"] = 0
        a["scenarios"] = _dumps(self.scenarios)
        a["config"] = _dumps(self.config)
        a["obs_dim"] = OBS_DIM
        a["max_request"] = self.max_request
        a["n_slots"] = self.n_slots
        a["n_channels"] = self.n_channels
        for table, fields in TABLES.items():
            g = f.create_group(table)
            for name, (dtype, tail) in fields.items():
                g.create_dataset(name, shape=(0, *tail), maxshape=(None, *tail), dtype=dtype,
                                 chunks=(CHUNK_ROWS[table], *tail), compression="lzf")
        group, name, dtype = NEIGHBOR_INDEX
        f[group].create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype,
                                chunks=(CHUNK_ROWS["neighbor_index"],), compression="lzf")
        f["episodes"].attrs["scenario_names"] = _dumps(self.scenario_names)
        f["episodes"].attrs["behaviour_names"] = _dumps([])
        self.behaviour_names: list[str] = []
        self._n_episodes = self._n_traj = self._n_rows = self._n_nb = 0
        f.flush()

    def _open_resume(self) -> None:
        try:
            f = h5py.File(self.partial, "r+")
        except OSError as e:
            raise DatasetError(f"partial dataset {self.partial} is corrupt or truncated and cannot "
                               f"be resumed ({e}); pass --overwrite to start over") from None
        self._file = f
        try:
            a = f.attrs
            if _attr_value(a.get("format")) != FORMAT:
                raise DatasetError(f"{self.partial} is not a radiorl offline dataset (format "
                                   f"{_attr_value(a.get('format'))!r}, expected {FORMAT!r})")
            ver = _attr_value(a.get("schema_version"))
            if ver != SCHEMA_VERSION:
                raise DatasetError(f"partial dataset {self.partial} has schema_version {ver}, this "
                                   f"radiorl writes version {SCHEMA_VERSION}; pass --overwrite")
            given = {"scenarios": self.scenarios, "config": self.config, "seed": self.seed,
                     "max_request": self.max_request, "n_slots": self.n_slots,
                     "n_channels": self.n_channels}
            for key in _RESUME_ATTRS:
                stored = _attr_value(a.get(key))
                if key in ("scenarios", "config"):
                    stored = json.loads(stored) if stored is not None else None
                diff = _first_difference(stored, given[key], key)
                if diff:
                    raise ValueError(f"cannot resume {self.partial}: {diff}; resume with the "
                                     "original settings or pass --overwrite to start over")
            n_ep = int(_attr_value(a["n_episodes"]))
            self.behaviour_names = json.loads(_attr_value(f["episodes"].attrs["behaviour_names"]))
            self._truncate_to(n_ep)
            a["complete"] = False
            f.flush()
        except BaseException:
            f.close()
            self._file = None
            raise

    def _truncate_to(self, n_ep: int) -> None:
        """Cut every table back to the ``n_ep`` committed episodes."""
        f = self._file
        ep, ag = f["episodes"], f["agents"]
        for name in TABLES["episodes"]:
            if ep[name].shape[0] < n_ep:
                raise DatasetError(f"partial dataset {self.partial} is corrupt: /episodes/{name} "
                                   f"has {ep[name].shape[0]} rows but {n_ep} episodes are "
                                   "committed; pass --overwrite to start over")
        n_traj = n_rows = n_nb = 0
        if n_ep:
            last = n_ep - 1
            n_traj = int(ep["agent_start"][last]) + int(ep["n_agents"][last])
            if any(ag[name].shape[0] < n_traj for name in TABLES["agents"]):
                raise DatasetError(f"partial dataset {self.partial} is corrupt: /agents is shorter "
                                   f"than the {n_traj} committed trajectories")
            n_rows = int(ag["row_start"][n_traj - 1]) + int(ag["frames"][n_traj - 1])
            n_nb = int(ag["neighbor_start"][n_traj - 1]) + int(ag["n_neighbors"][n_traj - 1])
        for table, n in (("episodes", n_ep), ("agents", n_traj), ("frames", n_rows)):
            for name in TABLES[table]:
                if f[table][name].shape[0] < n:
                    raise DatasetError(f"partial dataset {self.partial} is corrupt: /{table}/{name} "
                                       f"has {f[table][name].shape[0]} rows, {n} committed")
                f[table][name].resize(n, axis=0)
        nbi = f[NEIGHBOR_INDEX[0]][NEIGHBOR_INDEX[1]]
        if nbi.shape[0] < n_nb:
            raise DatasetError(f"partial dataset {self.partial} is corrupt: /agents/neighbor_index "
                               f"has {nbi.shape[0]} entries, {n_nb} committed")
        nbi.resize(n_nb, axis=0)
        self._n_episodes, self._n_traj, self._n_rows, self._n_nb = n_ep, n_traj, n_rows, n_nb

    # ------------------------------------------------------------------ appending
    @property
    def n_episodes_done(self) -> int:
        """Episodes committed to the file (after a resume: those that survived the crash)."""
        return self._n_episodes

    def append(self, record: EpisodeRecord) -> None:
        """Validate ``record`` and append it (committed and flushed when this returns)."""
        if self._file is None:
            raise RuntimeError(f"DatasetWriter for {self.path} is closed")
        if not isinstance(record, EpisodeRecord):
            raise TypeError(f"append() takes an EpisodeRecord, got {type(record).__name__}")
        record.validate(max_request=self.max_request, n_rbs=self.n_rbs)
        if record.scenario not in self.scenarios:
            raise ValueError(f"EpisodeRecord.scenario {record.scenario!r} is not one of this "
                             f"dataset's scenarios {self.scenario_names}")
        f = self._file
        T, N = record.frames, record.n_agents
        if record.behaviour not in self.behaviour_names:
            self.behaviour_names.append(record.behaviour)
            f["episodes"].attrs["behaviour_names"] = _dumps(self.behaviour_names)

        # frames: agent-major ([T, N, ...] -> [N, T, ...] -> [N·T, ...])
        def agent_major(x, dtype):
            x = np.asarray(x)
            x = np.ascontiguousarray(np.swapaxes(x, 0, 1))
            return x.reshape(N * T, *x.shape[2:]).astype(dtype)

        fr = TABLES["frames"]
        timeouts = np.zeros((N, T), bool)
        if record.truncated:
            timeouts[:, -1] = True
        rows = {name: agent_major(getattr(record, name), fr[name][0])
                for name in ("obs", "mf_obs", "actions", "grants", "rewards", "delays", "received")}
        rows["timeouts"] = timeouts.reshape(-1)
        rows["terminals"] = np.zeros(N * T, bool)
        for name, data in rows.items():
            _append_rows(f["frames"][name], data)

        # agents + neighbour lists (global /agents rows)
        nbrs = [np.asarray(n, np.int64).reshape(-1) for n in record.neighbors]
        n_nb = np.array([len(n) for n in nbrs], np.int64)
        nb_start = self._n_nb + np.concatenate([[0], np.cumsum(n_nb)[:-1]]).astype(np.int64)
        nb_index = (np.concatenate(nbrs) if n_nb.sum() else np.zeros(0, np.int64)) + self._n_traj
        agents = {
            "episode": np.full(N, self._n_episodes, np.int64),
            "agent": np.arange(N, dtype=np.int32),
            "row_start": self._n_rows + np.arange(N, dtype=np.int64) * T,
            "frames": np.full(N, T, np.int64),
            "high_rate": np.asarray(record.high_rate, bool),
            "position": np.asarray(record.positions, np.float32),
            "neighbor_start": nb_start,
            "n_neighbors": n_nb.astype(np.int32),
        }
        for name, data in agents.items():
            _append_rows(f["agents"][name], data)
        _append_rows(f[NEIGHBOR_INDEX[0]][NEIGHBOR_INDEX[1]], nb_index.astype(np.int64))

        episode = {
            "scenario": self.scenario_names.index(record.scenario),
            "seed": int(record.seed), "n_agents": N, "frames": T, "agent_start": self._n_traj,
            "behaviour": self.behaviour_names.index(record.behaviour),
            "truncated": bool(record.truncated),
        }
        for name, value in episode.items():
            _append_rows(f["episodes"][name], np.array([value], TABLES["episodes"][name][0]))

        # commit last
        f.attrs["n_episodes"] = self._n_episodes + 1
        f.flush()
        self._n_episodes += 1
        self._n_traj += N
        self._n_rows += N * T
        self._n_nb += int(n_nb.sum())

    # ------------------------------------------------------------------ finishing
    def finalize(self) -> Path:
        """Compute the normalizer statistics over all frames (streamed), mark the file complete,
        close it and atomically rename ``<path>.partial`` to ``path``. Returns ``path``."""
        if self._finalized:
            return self.path
        if self._file is None:
            raise RuntimeError(f"DatasetWriter for {self.path} is closed; reopen with resume=True")
        if self._n_episodes == 0:
            raise ValueError(f"cannot finalize {self.path}: no episode was appended")
        f = self._file
        if "normalizers" in f:
            del f["normalizers"]
        g = f.create_group("normalizers")
        for name, dim in NORMALIZED_FIELDS.items():
            ds = f["frames"][name]
            rs = RunningStats(dim)
            for s in range(0, ds.shape[0], STATS_CHUNK_ROWS):
                rs.update(ds[s: s + STATS_CHUNK_ROWS])
            sg = g.create_group(name)
            for stat, value in rs.result().items():
                sg.create_dataset(stat, data=np.asarray(value, np.float64))
            sg.attrs["count"] = rs.count
        f.attrs["finalized_utc"] = _utc_now()
        f.attrs["complete"] = True
        f.flush()
        f.close()
        self._file = None
        with open(self.partial, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.partial, self.path)
        self._finalized = True
        return self.path

    def close(self) -> None:
        """Close without finalizing; the partial file stays for ``resume=True``."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None and not self._finalized and self._file is not None:
            try:
                self.finalize()
            finally:
                self.close()
        else:
            self.close()

    def __del__(self):  # pragma: no cover - best effort on garbage collection
        try:
            self.close()
        except Exception:
            pass


def _append_rows(ds: h5py.Dataset, data: np.ndarray) -> None:
    n = ds.shape[0]
    ds.resize(n + data.shape[0], axis=0)
    if data.shape[0]:
        ds[n:] = data


# =========================================================================== reader
class OfflineDataset:
    """A complete, validated dataset held in memory (numpy arrays).

    Frame arrays (``R`` agent-frames, agent-major; trajectory ``a`` occupies rows
    ``agents["row_start"][a] : + agents["frames"][a]``): ``obs``, ``mf_obs`` float32
    ``[R, 4]``; ``actions``, ``grants`` int16 ``[R]``; ``rewards``, ``delays`` (ms, NaN when
    nothing was received) float32 ``[R]``; ``received`` int32 ``[R]``; ``timeouts``,
    ``terminals`` bool ``[R]``. Derived: ``frame_trajectory`` ``[R]`` (trajectory of each row),
    ``frame_t`` ``[R]`` (frame index inside its trajectory).

    Tables: ``episodes`` and ``agents`` (dicts of arrays, see the schema), ``neighbor_index``.
    Metadata: ``scenarios`` ``{name: params}``, ``scenario_names``, ``behaviour_names``,
    ``config``, ``attrs`` (all file attributes), ``normalizers`` ``{field: {min, max, mean,
    std}}`` (float64 ``[D]``), ``seed``, ``max_request``, ``n_slots``, ``n_channels``,
    ``obs_dim``.

    Open with :meth:`open` (alias :func:`load_dataset`), which raises :class:`DatasetError`
    for a corrupt/truncated, foreign, wrong-version, incomplete or inconsistent file.
    """

    FRAME_FIELDS = tuple(TABLES["frames"])

    def __init__(self, path: Path, attrs: dict, episodes: dict, agents: dict,
                 neighbor_index: np.ndarray, frames: dict, normalizers: dict,
                 scenario_names: list, behaviour_names: list):
        self.path = Path(path)
        self.attrs = attrs
        self.episodes = episodes
        self.agents = agents
        self.neighbor_index = neighbor_index
        self.normalizers = normalizers
        self.scenario_names = scenario_names
        self.behaviour_names = behaviour_names
        for name in self.FRAME_FIELDS:
            setattr(self, name, frames[name])
        self.scenarios: dict = json.loads(attrs["scenarios"])
        self.config: dict = json.loads(attrs["config"])
        self.seed = int(attrs["seed"])
        self.max_request = int(attrs["max_request"])
        self.n_slots = int(attrs["n_slots"])
        self.n_channels = int(attrs["n_channels"])
        self.obs_dim = int(attrs["obs_dim"])
        self.generator_version = str(attrs.get("generator_version"))
        n_traj = len(agents["frames"])
        self.frame_trajectory = np.repeat(np.arange(n_traj, dtype=np.int64), agents["frames"])
        self.frame_t = (np.arange(self.n_frames, dtype=np.int64)
                        - np.repeat(agents["row_start"], agents["frames"]))

    # ------------------------------------------------------------------ sizes
    @property
    def n_episodes(self) -> int:
        return int(len(self.episodes["frames"]))

    @property
    def n_trajectories(self) -> int:
        """Number of (episode, agent) trajectories ``A``."""
        return int(len(self.agents["frames"]))

    @property
    def n_frames(self) -> int:
        """Number of agent-frames ``R`` (rows of the frame arrays)."""
        return int(self.obs.shape[0])

    def __repr__(self) -> str:
        return (f"OfflineDataset({str(self.path)!r}, episodes={self.n_episodes}, "
                f"trajectories={self.n_trajectories}, agent_frames={self.n_frames}, "
                f"scenarios={self.scenario_names})")

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, path) -> "OfflineDataset":
        """Read and validate ``path`` (see the class docstring for the errors)."""
        path = Path(path)
        if not path.exists():
            if partial_path(path).exists():
                raise DatasetError(f"dataset {path} does not exist but {partial_path(path)} does: "
                                   "incomplete dataset; resume collection with --resume")
            raise FileNotFoundError(f"dataset {path} does not exist")
        try:
            f = h5py.File(path, "r")
        except OSError as e:
            raise DatasetError(f"dataset {path} is corrupt or truncated (not a readable HDF5 file: "
                               f"{e})") from None
        try:
            with f:
                return cls._read(path, f)
        except (OSError, KeyError, TypeError, json.JSONDecodeError) as e:
            raise DatasetError(f"dataset {path} is corrupt or truncated ({type(e).__name__}: {e})") \
                from None

    @classmethod
    def _read(cls, path: Path, f: h5py.File) -> "OfflineDataset":
        attrs = {k: _attr_value(v) for k, v in f.attrs.items()}
        fmt = attrs.get("format")
        if fmt != FORMAT:
            raise DatasetError(f"{path} is not a radiorl offline dataset: attribute format is "
                               f"{fmt!r}, expected {FORMAT!r}")
        ver = attrs.get("schema_version")
        if ver != SCHEMA_VERSION:
            raise DatasetError(f"dataset {path} has schema_version {ver!r}, expected "
                               f"{SCHEMA_VERSION} (written by radiorl "
                               f"{attrs.get('generator_version')!r}; this is radiorl "
                               f"{radiorl.__version__}); regenerate it or use a matching radiorl")
        if attrs.get("complete") is not True:
            raise DatasetError(f"dataset {path} is an incomplete dataset (complete="
                               f"{attrs.get('complete')!r}); resume collection with --resume")
        for key in ("seed", "scenarios", "config", "obs_dim", "max_request", "n_slots",
                    "n_channels", "n_episodes"):
            if key not in attrs:
                raise DatasetError(f"dataset {path} lacks the file attribute {key!r}")
        if attrs["obs_dim"] != OBS_DIM:
            raise DatasetError(f"dataset {path}: obs_dim is {attrs['obs_dim']}, expected {OBS_DIM}")

        tables = {}
        for table, fields in TABLES.items():
            if table not in f:
                raise DatasetError(f"dataset {path} lacks the group /{table}")
            tables[table] = {name: _read_ds(path, f[table], table, name, dtype, tail)
                             for name, (dtype, tail) in fields.items()}
        g, name, dtype = NEIGHBOR_INDEX
        nb_index = _read_ds(path, f[g], g, name, dtype, ())
        normalizers = {}
        if "normalizers" not in f:
            raise DatasetError(f"dataset {path} lacks the group /normalizers")
        for field, dim in NORMALIZED_FIELDS.items():
            if field not in f["normalizers"]:
                raise DatasetError(f"dataset {path} lacks /normalizers/{field}")
            normalizers[field] = {s: _read_ds(path, f["normalizers"][field], f"normalizers/{field}",
                                              s, np.dtype(np.float64), (), length=dim)
                                  for s in STAT_NAMES}
        ep_attrs = f["episodes"].attrs
        for key in ("scenario_names", "behaviour_names"):
            if key not in ep_attrs:
                raise DatasetError(f"dataset {path} lacks the attribute /episodes.{key}")
        scenario_names = json.loads(_attr_value(ep_attrs["scenario_names"]))
        behaviour_names = json.loads(_attr_value(ep_attrs["behaviour_names"]))
        _check_consistency(path, attrs, tables, nb_index, scenario_names, behaviour_names)
        return cls(path, attrs, tables["episodes"], tables["agents"], nb_index, tables["frames"],
                   normalizers, scenario_names, behaviour_names)

    # ------------------------------------------------------------------ access
    def trajectory(self, a: int) -> dict[str, np.ndarray]:
        """Frame arrays of trajectory ``a`` (views), ``T`` rows each."""
        a = _check_index("trajectory", a, self.n_trajectories)
        s = int(self.agents["row_start"][a])
        sl = slice(s, s + int(self.agents["frames"][a]))
        return {name: getattr(self, name)[sl] for name in self.FRAME_FIELDS}

    def episode(self, e: int) -> EpisodeRecord:
        """Episode ``e`` rebuilt as the time-major :class:`EpisodeRecord` that was appended."""
        e = _check_index("episode", e, self.n_episodes)
        N = int(self.episodes["n_agents"][e])
        T = int(self.episodes["frames"][e])
        a0 = int(self.episodes["agent_start"][e])
        r0 = int(self.agents["row_start"][a0])
        rows = slice(r0, r0 + N * T)

        def time_major(x):
            x = x[rows]
            return np.swapaxes(x.reshape(N, T, *x.shape[1:]), 0, 1).copy()

        ag = slice(a0, a0 + N)
        nbrs = []
        for a in range(a0, a0 + N):
            s = int(self.agents["neighbor_start"][a])
            nbrs.append(self.neighbor_index[s: s + int(self.agents["n_neighbors"][a])] - a0)
        return EpisodeRecord(
            obs=time_major(self.obs), mf_obs=time_major(self.mf_obs),
            actions=time_major(self.actions), grants=time_major(self.grants),
            rewards=time_major(self.rewards), delays=time_major(self.delays),
            received=time_major(self.received), neighbors=nbrs,
            positions=self.agents["position"][ag].copy(),
            high_rate=self.agents["high_rate"][ag].copy(),
            scenario=self.scenario_names[int(self.episodes["scenario"][e])],
            seed=int(self.episodes["seed"][e]),
            behaviour=self.behaviour_names[int(self.episodes["behaviour"][e])],
            truncated=bool(self.episodes["truncated"][e]))

    def normalizer(self, field: str = "obs", kind: str = "limits") -> Normalizer:
        """:class:`Normalizer` of ``field`` (``obs``, ``mf_obs``, ``actions``, ``rewards``) from
        the stored statistics. Use the ``obs`` one for ``mf_obs`` too (pitfall 4)."""
        if field not in self.normalizers:
            raise ValueError(f"no normalizer statistics for {field!r}; available: "
                             f"{sorted(self.normalizers)}")
        return Normalizer.from_stats(self.normalizers[field], kind)

    # ------------------------------------------------------------------ compatibility
    def check_compatible(self, scenario_name: str, params: Mapping[str, Any] | Any) -> None:
        """Raise :class:`DatasetError` unless the dataset holds ``scenario_name`` and every key
        of ``params`` (a dict or a params dataclass) equals the stored parameter."""
        if scenario_name not in self.scenarios:
            raise DatasetError(f"dataset {self.path} was not made for scenario {scenario_name!r}; "
                               f"it holds {self.scenario_names}")
        given = _to_jsonable(params, "params")
        if not isinstance(given, dict):
            raise ValueError(f"params must be a dict or a dataclass, got {type(params).__name__}")
        stored = self.scenarios[scenario_name]
        for key in given:
            if key not in stored:
                raise DatasetError(f"dataset {self.path}, scenario {scenario_name!r}: parameter "
                                   f"{key!r} is not stored (given {given[key]!r}); stored "
                                   f"parameters: {sorted(stored)}")
            diff = _first_difference(stored[key], given[key], key)
            if diff:
                raise DatasetError(f"dataset {self.path}, scenario {scenario_name!r}: parameter "
                                   f"mismatch: {diff}")

    def check_env_shape(self, *, max_request: int | None = None, n_slots: int | None = None,
                        n_channels: int | None = None, obs_dim: int | None = None) -> None:
        """Raise :class:`DatasetError` if a given env dimension differs from the stored one."""
        for name, value in (("max_request", max_request), ("n_slots", n_slots),
                            ("n_channels", n_channels), ("obs_dim", obs_dim)):
            if value is not None and int(value) != getattr(self, name):
                raise DatasetError(f"dataset {self.path} has {name} = {getattr(self, name)}, the "
                                   f"environment has {name} = {value}")


def load_dataset(path) -> OfflineDataset:
    """Alias of :meth:`OfflineDataset.open`."""
    return OfflineDataset.open(path)


def _check_index(what: str, i, n: int) -> int:
    i = int(i)
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"{what} index out of range [0, {n - 1}]")
    return i


def _read_ds(path: Path, group, table: str, name: str, dtype: np.dtype, tail: tuple,
             length: int | None = None) -> np.ndarray:
    if name not in group:
        raise DatasetError(f"dataset {path} lacks /{table}/{name}")
    ds = group[name]
    if not isinstance(ds, h5py.Dataset):
        raise DatasetError(f"dataset {path}: /{table}/{name} is not a dataset")
    if ds.dtype != dtype:
        raise DatasetError(f"dataset {path}: /{table}/{name} has dtype {ds.dtype}, expected {dtype}")
    if ds.ndim != 1 + len(tail) or tuple(ds.shape[1:]) != tuple(tail):
        expected = ("n", *tail)
        raise DatasetError(f"dataset {path}: /{table}/{name} has shape {ds.shape}, expected "
                           f"({', '.join(map(str, expected))}{',' if not tail else ''})")
    if length is not None and ds.shape[0] != length:
        raise DatasetError(f"dataset {path}: /{table}/{name} has length {ds.shape[0]}, expected "
                           f"{length}")
    return ds[...]


def _check_consistency(path, attrs, tables, nb_index, scenario_names, behaviour_names) -> None:
    """Lengths, offsets and index ranges of the tables; DatasetError naming the dataset."""
    def bad(what: str):
        raise DatasetError(f"dataset {path} is inconsistent: {what}")

    for table, cols in tables.items():
        lens = {name: len(v) for name, v in cols.items()}
        if len(set(lens.values())) > 1:
            bad(f"the datasets of /{table} have different lengths {lens}")
    ep, ag, fr = tables["episodes"], tables["agents"], tables["frames"]
    E, A, R = len(ep["frames"]), len(ag["frames"]), len(fr["obs"])
    if E != attrs["n_episodes"]:
        bad(f"/episodes has {E} rows but the file attribute n_episodes is {attrs['n_episodes']}")
    if E == 0:
        bad("/episodes is empty")
    if np.any(ep["n_agents"] < 1) or np.any(ep["frames"] < 1):
        bad("/episodes/n_agents and /episodes/frames must be >= 1")
    if np.any((ep["scenario"] < 0) | (ep["scenario"] >= len(scenario_names))):
        bad(f"/episodes/scenario must index the {len(scenario_names)} scenario names")
    if np.any((ep["behaviour"] < 0) | (ep["behaviour"] >= len(behaviour_names))):
        bad(f"/episodes/behaviour must index the {len(behaviour_names)} behaviour names")
    if set(scenario_names) != set(json.loads(attrs["scenarios"])):
        bad("/episodes.scenario_names differs from the scenarios attribute")
    n_agents = ep["n_agents"].astype(np.int64)
    if int(n_agents.sum()) != A:
        bad(f"sum of /episodes/n_agents is {int(n_agents.sum())} but /agents has {A} rows")
    if not np.array_equal(ep["agent_start"], np.concatenate([[0], np.cumsum(n_agents)[:-1]])):
        bad("/episodes/agent_start is not the running sum of /episodes/n_agents")
    ep_of_agent = np.repeat(np.arange(E), n_agents)
    if not np.array_equal(ag["episode"], ep_of_agent):
        bad("/agents/episode does not match /episodes/agent_start and n_agents")
    if not np.array_equal(ag["agent"], np.arange(A) - np.repeat(ep["agent_start"], n_agents)):
        bad("/agents/agent is not 0..N-1 within each episode")
    if not np.array_equal(ag["frames"], np.repeat(ep["frames"], n_agents)):
        bad("/agents/frames differs from /episodes/frames of the trajectory's episode")
    if int(ag["frames"].sum()) != R:
        bad(f"sum of /agents/frames is {int(ag['frames'].sum())} but /frames has {R} rows")
    if not np.array_equal(ag["row_start"], np.concatenate([[0], np.cumsum(ag["frames"])[:-1]])):
        bad("/agents/row_start offsets out of range (not the running sum of /agents/frames)")
    K = len(nb_index)
    n_nb = ag["n_neighbors"].astype(np.int64)
    if np.any(n_nb < 0) or int(n_nb.sum()) != K:
        bad(f"sum of /agents/n_neighbors is {int(n_nb.sum())} but /agents/neighbor_index has {K}")
    if not np.array_equal(ag["neighbor_start"], np.concatenate([[0], np.cumsum(n_nb)[:-1]])):
        bad("/agents/neighbor_start offsets out of range (not the running sum of n_neighbors)")
    if K:
        if nb_index.min() < 0 or nb_index.max() >= A:
            bad(f"/agents/neighbor_index must hold /agents rows in [0, {A - 1}]")
        owner = np.repeat(np.arange(A), n_nb)
        if not np.array_equal(ag["episode"][nb_index], ag["episode"][owner]):
            bad("/agents/neighbor_index points to an agent of another episode")

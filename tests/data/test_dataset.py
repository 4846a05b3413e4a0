"""HDF5 offline datasets: round trip, atomic writes, crash-safe resume, bad files, compatibility
checks and EpisodeRecord validation."""
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import radiorl
import radiorl.data.hdf5 as hdf5_mod
from radiorl.data import (SCHEMA_VERSION, DatasetError, EpisodeRecord, OfflineDataset,
                          load_dataset, partial_path)
from tests.data.synth import CONFIG, SCENARIOS, make_records, write_dataset, writer

FRAME_FIELDS = ("obs", "mf_obs", "actions", "grants", "rewards", "delays", "received")


def assert_records_equal(got: EpisodeRecord, want: EpisodeRecord):
    for name in FRAME_FIELDS + ("positions", "high_rate"):
        g, w = getattr(got, name), np.asarray(getattr(want, name))
        assert g.shape == w.shape, name
        np.testing.assert_array_equal(g, w, err_msg=name)  # NaN == NaN for array_equal here
    assert [n.tolist() for n in got.neighbors] == [np.asarray(n).tolist() for n in want.neighbors]
    for name in ("scenario", "seed", "behaviour", "truncated"):
        assert getattr(got, name) == getattr(want, name), name


def read_all(path) -> dict:
    """Every dataset of a file as numpy, keyed by its HDF5 path."""
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda k, v: out.__setitem__(k, v[...]) if isinstance(v, h5py.Dataset) else None)
        out["@behaviour_names"] = f["episodes"].attrs["behaviour_names"]
    return out


@pytest.fixture(scope="module")
def records():
    return make_records(seed=0)


@pytest.fixture(scope="module")
def dataset_path(tmp_path_factory, records):
    return write_dataset(tmp_path_factory.mktemp("ds") / "d.h5", records)


# --------------------------------------------------------------------------- round trip
def test_round_trip_every_field(dataset_path, records):
    ds = OfflineDataset.open(dataset_path)
    assert ds.n_episodes == 3 and ds.n_trajectories == 3 + 4 + 3 and ds.n_frames == 10 * 50
    for e, rec in enumerate(records):
        assert_records_equal(ds.episode(e), rec)
    # agent-major flat layout: trajectory a of episode 1 is rows row_start..row_start+T
    a = int(ds.episodes["agent_start"][1]) + 2
    tr = ds.trajectory(a)
    np.testing.assert_array_equal(tr["obs"], records[1].obs[:, 2])
    np.testing.assert_array_equal(tr["actions"], records[1].actions[:, 2])
    assert tr["timeouts"].tolist() == [False] * 49 + [True]
    assert not ds.terminals.any()
    assert ds.timeouts.sum() == ds.n_trajectories
    # global neighbour rows stay inside the episode (agent 3 of episode 1 is isolated)
    assert ds.agents["n_neighbors"][int(ds.episodes["agent_start"][1]) + 3] == 0
    assert ds.obs.dtype == np.float32 and ds.actions.dtype == np.int16
    assert ds.received.dtype == np.int32 and ds.delays.dtype == np.float32


def test_metadata_attributes(dataset_path):
    ds = load_dataset(dataset_path)
    assert ds.attrs["format"] == "radiorl-offline"
    assert ds.attrs["schema_version"] == SCHEMA_VERSION == 1
    assert ds.attrs["generator"] == "radiorl"
    assert ds.generator_version == radiorl.__version__
    assert ds.attrs["complete"] is True
    assert ds.seed == 7 and ds.obs_dim == 4
    assert (ds.max_request, ds.n_slots, ds.n_channels) == (40, 10, 4)
    assert ds.scenarios == SCENARIOS and ds.config == CONFIG
    assert ds.scenario_names == sorted(SCENARIOS)
    assert ds.behaviour_names == ["equal", "mixture(eps=0.3)"]
    assert ds.episodes["seed"].tolist() == [100, 101, 102]
    assert ds.episodes["n_agents"].tolist() == [3, 4, 3]
    assert isinstance(ds.attrs["created_utc"], str) and "T" in ds.attrs["created_utc"]


def test_normalizer_stats_match_numpy(tmp_path, records, monkeypatch):
    monkeypatch.setattr(hdf5_mod, "STATS_CHUNK_ROWS", 37)  # many streamed chunks
    ds = OfflineDataset.open(write_dataset(tmp_path / "d.h5", records))
    for name, dim in (("obs", 4), ("mf_obs", 4), ("actions", 1), ("rewards", 1)):
        flat = np.concatenate([np.asarray(getattr(r, name), np.float64).reshape(-1, dim)
                               for r in records])
        st = ds.normalizers[name]
        np.testing.assert_array_equal(st["min"], flat.min(0), err_msg=name)
        np.testing.assert_array_equal(st["max"], flat.max(0), err_msg=name)
        np.testing.assert_allclose(st["mean"], flat.mean(0), rtol=1e-12, err_msg=name)
        np.testing.assert_allclose(st["std"], flat.std(0), rtol=1e-10, err_msg=name)
        assert st["std"].dtype == np.float64 and st["std"].shape == (dim,)


# --------------------------------------------------------------------------- atomicity
def test_only_partial_exists_before_finalize(tmp_path, records):
    path = tmp_path / "d.h5"
    w = writer(path)
    w.append(records[0])
    assert not path.exists() and partial_path(path).exists()
    with pytest.raises(DatasetError, match="--resume"):
        OfflineDataset.open(path)
    assert w.finalize() == path
    assert path.exists() and not partial_path(path).exists()
    assert OfflineDataset.open(path).n_episodes == 1


def test_overwrite_protection(tmp_path, records):
    path = write_dataset(tmp_path / "d.h5", records[:1])
    with pytest.raises(FileExistsError, match="--overwrite") as ei:
        writer(path)
    assert str(path) in str(ei.value)
    # overwrite keeps the old file until finalize replaces it
    w = writer(path, overwrite=True)
    assert OfflineDataset.open(path).n_episodes == 1
    w.append(records[0])
    w.append(records[1])
    w.close()
    with pytest.raises(FileExistsError, match="already exists; pass --overwrite"):
        writer(path)  # the complete file is checked first
    path.unlink()
    with pytest.raises(FileExistsError, match="--resume.*--overwrite"):
        writer(path)
    w = writer(path, overwrite=True)  # discards the partial
    assert w.n_episodes_done == 0
    w.append(records[2])
    w.finalize()
    assert OfflineDataset.open(path).n_episodes == 1


def test_exception_in_context_leaves_partial(tmp_path, records):
    path = tmp_path / "d.h5"
    with pytest.raises(RuntimeError, match="boom"):
        with writer(path) as w:
            w.append(records[0])
            raise RuntimeError("boom")
    assert not path.exists() and partial_path(path).exists()
    with writer(path, resume=True) as w:
        assert w.n_episodes_done == 1
    assert OfflineDataset.open(path).n_episodes == 1


def test_resume_after_crash_equals_one_shot(tmp_path, records):
    one_shot = write_dataset(tmp_path / "a.h5", records)
    path = tmp_path / "b.h5"
    w = writer(path)
    w.append(records[0])
    w.append(records[1])
    w.close()  # crash: never finalized
    w = writer(path, resume=True)
    assert w.n_episodes_done == 2
    w.append(records[2])
    w.finalize()
    _assert_same_content(one_shot, path)
    ds = OfflineDataset.open(path)
    for e, rec in enumerate(records):
        assert_records_equal(ds.episode(e), rec)


def test_resume_cuts_uncommitted_rows(tmp_path, records):
    """A crash after an episode's frames/agents were written but before the commit."""
    one_shot = write_dataset(tmp_path / "a.h5", records)
    path = tmp_path / "b.h5"
    w = writer(path)
    w.append(records[0])
    w.append(records[1])
    w.close()
    with h5py.File(partial_path(path), "r+") as f:
        for name in f["frames"]:
            ds = f["frames"][name]
            ds.resize(ds.shape[0] + 17, axis=0)
        for name in ("episode", "row_start", "frames"):
            f["agents"][name].resize(f["agents"][name].shape[0] + 2, axis=0)
        f["agents"]["neighbor_index"].resize(f["agents"]["neighbor_index"].shape[0] + 3, axis=0)
        f["episodes"]["seed"].resize(3, axis=0)
        assert f.attrs["n_episodes"] == 2
    w = writer(path, resume=True)
    assert w.n_episodes_done == 2
    w.append(records[2])
    w.finalize()
    _assert_same_content(one_shot, path)


def test_resume_after_killed_process(tmp_path, records):
    """A process that dies without closing the file (os._exit) leaves a resumable partial."""
    path = tmp_path / "k.h5"
    script = ("import os\nfrom tests.data.synth import make_records, writer\n"
              f"recs = make_records(seed=0)\nw = writer({str(path)!r})\n"
              "w.append(recs[0]); w.append(recs[1])\nos._exit(9)\n")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    assert partial_path(path).exists() and not path.exists()
    w = writer(path, resume=True)
    assert w.n_episodes_done == 2
    w.append(records[2])
    w.finalize()
    _assert_same_content(write_dataset(tmp_path / "a.h5", records), path)


def _assert_same_content(a, b):
    da, db = read_all(a), read_all(b)
    assert sorted(da) == sorted(db)
    for k in da:
        np.testing.assert_array_equal(da[k], db[k], err_msg=k)


@pytest.mark.parametrize("change, field", [
    ({"config": {**CONFIG, "frames": 60}}, "config['frames']"),
    ({"seed": 8}, "seed"),
    ({"max_request": 10}, "max_request"),
    ({"scenarios": {"adhoc-3": SCENARIOS["adhoc-3"]}}, "scenarios['adhoc-4']"),
])
def test_resume_with_other_settings_is_refused(tmp_path, records, change, field):
    path = tmp_path / "d.h5"
    w = writer(path)
    w.append(records[0])
    w.close()
    with pytest.raises(ValueError, match="cannot resume") as ei:
        writer(path, resume=True, **change)
    assert field in str(ei.value)
    assert writer(path, resume=True).n_episodes_done == 1  # partial left untouched


# --------------------------------------------------------------------------- bad files
def _copy(src, dst):
    shutil.copyfile(src, dst)
    return dst


def test_truncated_file(tmp_path, dataset_path):
    data = dataset_path.read_bytes()
    bad = tmp_path / "cut.h5"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="corrupt or truncated") as ei:
        OfflineDataset.open(bad)
    assert str(bad) in str(ei.value)


def test_not_hdf5(tmp_path):
    bad = tmp_path / "x.h5"
    bad.write_text("hello")
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        OfflineDataset.open(bad)
    with pytest.raises(FileNotFoundError):
        OfflineDataset.open(tmp_path / "missing.h5")


def test_wrong_schema_version(tmp_path, dataset_path):
    bad = _copy(dataset_path, tmp_path / "v.h5")
    with h5py.File(bad, "r+") as f:
        f.attrs["schema_version"] = 99
    with pytest.raises(DatasetError, match=r"schema_version 99, expected 1"):
        OfflineDataset.open(bad)


def test_wrong_format(tmp_path, dataset_path):
    bad = _copy(dataset_path, tmp_path / "f.h5")
    with h5py.File(bad, "r+") as f:
        f.attrs["format"] = "d4rl"
    with pytest.raises(DatasetError, match="'d4rl', expected 'radiorl-offline'"):
        OfflineDataset.open(bad)


def test_incomplete(tmp_path, dataset_path):
    bad = _copy(dataset_path, tmp_path / "i.h5")
    with h5py.File(bad, "r+") as f:
        f.attrs["complete"] = False
    with pytest.raises(DatasetError,
                       match=r"incomplete dataset \(complete=False\); resume collection "
                             r"with --resume"):
        OfflineDataset.open(bad)


def _mutate(src, dst, fn):
    bad = _copy(src, dst)
    with h5py.File(bad, "r+") as f:
        fn(f)
    return bad


def _replace(f, name, data):
    del f[name]
    f.create_dataset(name, data=data)


@pytest.mark.parametrize("fn, message", [
    (lambda f: f.__delitem__("frames/rewards"), "lacks /frames/rewards"),
    (lambda f: _replace(f, "frames/actions", f["frames/actions"][...].astype(np.int32)),
     "/frames/actions has dtype int32, expected int16"),
    (lambda f: _replace(f, "frames/obs", f["frames/obs"][:, :3]), "/frames/obs has shape"),
    (lambda f: [f[f"frames/{k}"].resize(f[f"frames/{k}"].shape[0] - 1, axis=0) for k in f["frames"]],
     "sum of /agents/frames is 500 but /frames has 499 rows"),
    (lambda f: f["frames/delays"].resize(10, axis=0), "datasets of /frames have different lengths"),
    (lambda f: f["agents/row_start"].__setitem__(1, 7), "/agents/row_start offsets out of range"),
    (lambda f: f["agents/neighbor_index"].__setitem__(0, 99), "/agents/neighbor_index"),
    (lambda f: f["agents/neighbor_index"].__setitem__(0, 5), "another episode"),
    (lambda f: f["episodes/n_agents"].__setitem__(0, 4), "/episodes/n_agents"),
    (lambda f: f["episodes/behaviour"].__setitem__(0, 5), "/episodes/behaviour"),
    (lambda f: f.__delitem__("normalizers/obs"), "lacks /normalizers/obs"),
])
def test_inconsistent_file_names_the_dataset(tmp_path, dataset_path, fn, message):
    bad = _mutate(dataset_path, tmp_path / "m.h5", fn)
    with pytest.raises(DatasetError) as ei:
        OfflineDataset.open(bad)
    assert message in str(ei.value)


# --------------------------------------------------------------------------- compatibility
@dataclasses.dataclass(frozen=True)
class FakeParams:
    n_nodes: int = 4
    lambda_high: float = 600.0
    mix: tuple = (2, 2)


def test_check_compatible(dataset_path):
    ds = OfflineDataset.open(dataset_path)
    ds.check_compatible("adhoc-4", SCENARIOS["adhoc-4"])
    ds.check_compatible("adhoc-4", {"rf": "limited"})  # a subset of the params is fine
    ds.check_compatible("adhoc-4", FakeParams())  # dataclass, tuple == stored list
    with pytest.raises(DatasetError, match=r"not made for scenario 'adhoc-9-4:5'.*adhoc-3"):
        ds.check_compatible("adhoc-9-4:5", {})
    with pytest.raises(DatasetError, match=r"lambda_high: stored 600.0, given 150.0"):
        ds.check_compatible("adhoc-4", {"rf": "limited", "lambda_high": 150.0})
    with pytest.raises(DatasetError, match=r"mix\[1\]: stored 2, given 3"):
        ds.check_compatible("adhoc-4", FakeParams(mix=(2, 3)))
    with pytest.raises(DatasetError, match=r"'fading' is not stored"):
        ds.check_compatible("adhoc-3", {"fading": True})


def test_check_env_shape(dataset_path):
    ds = OfflineDataset.open(dataset_path)
    ds.check_env_shape(max_request=40, n_slots=10, n_channels=4, obs_dim=4)
    with pytest.raises(DatasetError, match="max_request = 40, the environment has max_request = 10"):
        ds.check_env_shape(max_request=10)
    with pytest.raises(DatasetError, match="n_channels"):
        ds.check_env_shape(n_slots=10, n_channels=8)


# --------------------------------------------------------------------------- record validation
def _bad(rec, **changes):
    return dataclasses.replace(rec, **changes)


def _with(arr, idx, value):
    a = np.array(arr, copy=True)
    a[idx] = value
    return a


@pytest.mark.parametrize("mk, message", [
    (lambda r: _bad(r, obs=r.obs[:, :, :3]), r"obs must have shape \(T, N, 4\)"),
    (lambda r: _bad(r, mf_obs=r.mf_obs[:-1]), r"mf_obs must have shape \(T, N, 4\) = \(50, 3, 4\)"),
    (lambda r: _bad(r, actions=r.actions.astype(np.float32)), "actions must be an integer array"),
    (lambda r: _bad(r, actions=_with(r.actions, (0, 0), 41)), r"actions must be in \[0, 40\]"),
    (lambda r: _bad(r, grants=_with(r.grants, (0, 0), -1)), r"grants must be in \[0, 40\]"),
    (lambda r: _bad(r, rewards=_with(r.rewards, (3, 1), np.nan)), "rewards must be finite"),
    (lambda r: _bad(r, obs=_with(r.obs, (3, 1, 0), np.inf)), "obs must be finite"),
    (lambda r: _bad(r, delays=_with(r.delays, (3, 1), -2.0)), "delays must be finite and >= 0"),
    (lambda r: _bad(r, high_rate=r.high_rate.astype(int)), "high_rate must be a bool array"),
    (lambda r: _bad(r, positions=r.positions[:2]), r"positions must have shape \(N, 2\)"),
    (lambda r: _bad(r, neighbors=r.neighbors[:2]), "neighbors must hold N = 3 arrays"),
    (lambda r: _bad(r, neighbors=[np.array([1, 3]), np.array([0]), np.array([])]),
     r"neighbors\[0\] must hold agent indices in \[0, 2\]"),
    (lambda r: _bad(r, neighbors=[np.array([1]), np.array([0, 2]), np.array([], int)]),
     "must be symmetric: 2 is a neighbour of 1 but 1 is not a neighbour of 2"),
    (lambda r: _bad(r, neighbors=[np.array([0]), np.array([], int), np.array([], int)]),
     "must not contain the agent itself"),
    (lambda r: _bad(r, seed=-1), "seed must be"),
    (lambda r: _bad(r, scenario=""), "scenario must be a non-empty str"),
])
def test_record_validation(records, mk, message):
    with pytest.raises(ValueError, match=message):
        mk(records[0]).validate(max_request=40, n_rbs=40)


def test_record_validation_accepts_nan_delays_and_other_widths(records):
    r = _bad(records[0], actions=records[0].actions.astype(np.int64),
             obs=records[0].obs.astype(np.float64))
    assert np.isnan(r.delays).any()
    assert r.validate(max_request=40, n_rbs=40) is r


def test_append_checks_the_writer_limits(tmp_path, records):
    w = writer(tmp_path / "d.h5", max_request=10)
    with pytest.raises(ValueError, match=r"actions must be in \[0, 10\]"):
        w.append(records[0])
    with pytest.raises(ValueError, match="scenario 'adhoc-9' is not one of"):
        w.append(_bad(records[0], scenario="adhoc-9", actions=np.minimum(records[0].actions, 10)))
    assert w.n_episodes_done == 0
    with pytest.raises(ValueError, match="no episode was appended"):
        w.finalize()
    w.close()


def test_writer_argument_validation(tmp_path):
    with pytest.raises(ValueError, match=r"max_request must be in \[1, 32767\]"):
        writer(tmp_path / "a.h5", max_request=0)
    with pytest.raises(ValueError, match="config.*JSON-serializable"):
        writer(tmp_path / "b.h5", config={"fn": object()})
    assert not list(tmp_path.iterdir())  # nothing written before the checks pass

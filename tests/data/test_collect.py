"""``radiorl collect``: the paper's recipe at test size, determinism across executors, resume
after a crash, the Ray path, overwrite protection and bad configurations."""
import numpy as np
import pytest
from typer.testing import CliRunner

from radiorl.cli import app
from radiorl.data import OfflineDataset
from radiorl.data import collect as collect_mod
from radiorl.data.collect import CollectConfig, collect, collect_task, make_tasks

FIELDS = ("obs", "mf_obs", "actions", "grants", "rewards", "delays", "received")


def small(**kw):
    base = dict(episodes=6, frames=40, copies=4, seed=3)
    base.update(kw)
    return CollectConfig(**base)


def arrays(path):
    ds = OfflineDataset.open(path)
    return ds, {f: np.asarray(getattr(ds, f)) for f in FIELDS}


def same(a, b):
    for f in FIELDS:
        assert np.array_equal(a[f], b[f], equal_nan=True), f


def test_collect_records_the_simulation(tmp_path):
    cfg = small()
    res = collect(tmp_path / "d.h5", cfg, workers=1, show_progress=False)
    assert res["agent_frames_now"] == 6 * 8 * 40                   # episodes x agents x frames
    ds, arr = arrays(tmp_path / "d.h5")
    assert len(ds.episodes["seed"]) == 6
    # tasks: 4 copies of adhoc-8-2:6, then 2 copies of adhoc-8-4:4 (round robin)
    assert [ds.scenario_names[i] for i in ds.episodes["scenario"]] == \
        ["adhoc-8-2:6"] * 4 + ["adhoc-8-4:4"] * 2
    assert sorted(set(ds.behaviour_names)) == ["mixture(eps=0)", "mixture(eps=0.1)",
                                               "mixture(eps=0.3)", "mixture(eps=1)"]
    # episode 1 equals a direct re-simulation of task 0, copy 1
    rec = collect_task(make_tasks(cfg)[0])[1]
    ep = ds.episode(1)
    for f in FIELDS:
        assert np.array_equal(getattr(ep, f), getattr(rec, f), equal_nan=True), f
    # stored mean field = mean of the stored neighbours' observations, every frame
    for e in range(6):
        ep = ds.episode(e)
        for i, nb in enumerate(ep.neighbors):
            assert np.allclose(ep.mf_obs[:, i], ep.obs[:, nb].mean(axis=1))
    assert ds.episodes["frames"].tolist() == [40] * 6
    ds.check_compatible("adhoc-8-2:6", {"n_slots": 10, "rf": "ideal"})
    with pytest.raises(ValueError, match="rf"):
        ds.check_compatible("adhoc-8-2:6", {"rf": "limited"})
    with pytest.raises(ValueError, match="not made for"):
        ds.check_compatible("adhoc-9-4:5", {})


def test_process_pool_and_inline_give_the_same_dataset(tmp_path):
    collect(tmp_path / "a.h5", small(), workers=1, show_progress=False)
    collect(tmp_path / "b.h5", small(), workers=2, show_progress=False)
    same(arrays(tmp_path / "a.h5")[1], arrays(tmp_path / "b.h5")[1])


def test_resume_after_a_crash_equals_one_shot(tmp_path, monkeypatch):
    collect(tmp_path / "ref.h5", small(episodes=10, copies=3), workers=1, show_progress=False)
    real = collect_mod.DatasetWriter.append
    calls = {"n": 0}

    def crashing(self, rec):
        if calls["n"] == 4:                          # dies in the middle of the second task
            raise KeyboardInterrupt("simulated crash")
        calls["n"] += 1
        return real(self, rec)

    monkeypatch.setattr(collect_mod.DatasetWriter, "append", crashing)
    with pytest.raises(KeyboardInterrupt):
        collect(tmp_path / "d.h5", small(episodes=10, copies=3), workers=1, show_progress=False)
    assert not (tmp_path / "d.h5").exists() and (tmp_path / "d.h5.partial").exists()
    monkeypatch.setattr(collect_mod.DatasetWriter, "append", real)
    with pytest.raises(Exception, match="resume"):
        collect(tmp_path / "d.h5", small(episodes=10, copies=3), workers=1, show_progress=False)
    res = collect(tmp_path / "d.h5", small(episodes=10, copies=3), workers=1, resume=True,
                  show_progress=False)
    assert res["episodes_collected_now"] == 6
    same(arrays(tmp_path / "ref.h5")[1], arrays(tmp_path / "d.h5")[1])
    # a partial file from another configuration is refused, naming the difference
    calls["n"] = 0
    monkeypatch.setattr(collect_mod.DatasetWriter, "append", crashing)
    with pytest.raises(KeyboardInterrupt):
        collect(tmp_path / "e.h5", small(episodes=10, copies=3), workers=1, show_progress=False)
    monkeypatch.setattr(collect_mod.DatasetWriter, "append", real)
    with pytest.raises(ValueError, match="frames"):
        collect(tmp_path / "e.h5", small(episodes=10, copies=3, frames=50), workers=1,
                show_progress=False, resume=True)


def test_ray_backend_on_a_local_instance(tmp_path):
    pytest.importorskip("ray")
    collect(tmp_path / "a.h5", small(), workers=1, show_progress=False)
    collect(tmp_path / "r.h5", small(), workers=2, backend="ray", show_progress=False)
    same(arrays(tmp_path / "a.h5")[1], arrays(tmp_path / "r.h5")[1])


def test_overwrite_protection_before_anything_is_written(tmp_path):
    p = tmp_path / "d.h5"
    collect(p, small(episodes=2, copies=2), workers=1, show_progress=False)
    before = p.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        collect(p, small(episodes=4, copies=2), workers=1, show_progress=False)
    assert p.read_bytes() == before and not (tmp_path / "d.h5.partial").exists()
    collect(p, small(episodes=4, copies=2), workers=1, overwrite=True, show_progress=False)
    assert len(OfflineDataset.open(p).episodes["seed"]) == 4


@pytest.mark.parametrize("kw, msg", [
    (dict(rf="5g"), "rf"), (dict(episodes=0), "episodes"), (dict(frames=-3), "frames"),
    (dict(scenarios=("conflict-8",)), "ad hoc"), (dict(scenarios=("adhoc-7-1:6",)), "unknown"),
    (dict(behaviours=("mixture:2",)), "epsilon"), (dict(behaviours=("gms",)), "adhoc"),
    (dict(load="extreme"), "load")])
def test_bad_collect_config(tmp_path, kw, msg):
    with pytest.raises(ValueError, match=msg):
        collect(tmp_path / "d.h5", small(**kw), workers=1, show_progress=False)
    assert not any(tmp_path.iterdir())


def test_collect_cli(tmp_path):
    r = CliRunner()
    out = str(tmp_path / "d.h5")
    args = ["collect", "--episodes", "16", "--frames", "30", "--out", out, "--workers", "1",
            "--rf", "both"]
    res = r.invoke(app, args)
    assert res.exit_code == 0, res.output
    ds = OfflineDataset.open(out)
    assert set(ds.scenario_names) >= {"adhoc-8-2:6", "adhoc-8-2:6-limited"}
    res = r.invoke(app, args)
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = r.invoke(app, ["collect", "--preset", "huge", "--out", out])
    assert res.exit_code == 2 and "preset" in res.output

"""Training windows: inside trajectories only, counts, discounted window returns (eq. 14),
x̄ normalized with the obs normalizer, sampling and splits."""
import numpy as np
import pytest

from radiorl.data import OfflineDataset, WindowDataset
from tests.data.synth import make_records, write_dataset

H = 8


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    # third episode (N = 3) is shorter than H: its trajectories contribute no window
    records = make_records(seed=1, frames=(50, 37, 6))
    return OfflineDataset.open(write_dataset(tmp_path_factory.mktemp("w") / "w.h5", records))


@pytest.fixture(scope="module")
def win(ds):
    return WindowDataset(ds, horizon=H, gamma=0.9)


def test_window_count(ds, win):
    frames = ds.agents["frames"]
    assert len(win) == int(np.maximum(frames - H + 1, 0).sum()) == 3 * 43 + 4 * 30
    short = np.nonzero(frames < H)[0]
    assert len(short) == 3 and not np.isin(win.window_trajectory, short).any()


def test_windows_never_cross_a_trajectory_boundary(ds, win):
    rows = win.starts[:, None] + np.arange(H)
    assert rows.max() < ds.n_frames
    traj = ds.frame_trajectory[rows]
    assert np.all(traj == win.window_trajectory[:, None])
    assert np.all(np.diff(ds.frame_t[rows], axis=1) == 1)
    # every admissible start is present exactly once (also the last one, t = T - H)
    for a in range(ds.n_trajectories):
        t = win.window_t[win.window_trajectory == a]
        assert t.tolist() == list(range(max(0, int(ds.agents["frames"][a]) - H + 1)))


def test_y_is_the_discounted_window_return(ds, win):
    want = []
    for a in range(ds.n_trajectories):
        r = ds.trajectory(a)["rewards"].astype(np.float64)
        for t in range(len(r) - H + 1):
            want.append(sum(0.9 ** k * r[t + k] for k in range(H)))
    np.testing.assert_allclose(win.y, np.array(want), rtol=1e-12)
    assert win.return_scale == pytest.approx(np.abs(want).max())
    assert np.abs(win.y_scaled).max() == pytest.approx(1.0)
    fixed = WindowDataset(ds, horizon=H, gamma=0.9, return_scale=50.0)
    np.testing.assert_allclose(fixed.y_scaled, win.y / 50.0)


def test_batch_contents(ds, win):
    idx = np.array([0, 5, len(win) - 1, 77])
    b = win.batch(idx)
    assert b["x"].shape == (4, H, 4) and b["x"].dtype == np.float32
    assert b["xbar"].shape == (4, H, 4) and b["actions"].shape == (4, H)
    assert b["actions"].dtype == np.int64 and b["y"].shape == (4,)
    rows = win.starts[idx][:, None] + np.arange(H)
    norm = ds.normalizer("obs", "limits")
    np.testing.assert_allclose(b["x"], norm.normalize(ds.obs[rows]), rtol=1e-6)
    np.testing.assert_array_equal(b["actions"], ds.actions[rows])
    np.testing.assert_array_equal(b["rewards"], ds.rewards[rows])
    np.testing.assert_allclose(b["y"], win.y[idx], rtol=1e-6)
    assert np.abs(b["x"]).max() <= 1.0 + 1e-6
    one = win[5]
    np.testing.assert_array_equal(one["x"], b["x"][1])
    assert one["y"] == pytest.approx(float(b["y"][1]))
    np.testing.assert_array_equal(win[-1]["xbar"], b["xbar"][2])
    with pytest.raises(IndexError):
        win[len(win)]


@pytest.mark.parametrize("kind", ["limits", "gaussian"])
def test_xbar_uses_the_obs_normalizer(ds, kind):
    w = WindowDataset(ds, horizon=H, gamma=0.9, normalizer_kind=kind)
    b = w.batch(np.arange(len(w)))
    rows = w.starts[:, None] + np.arange(H)
    obs_norm = ds.normalizer("obs", kind)
    np.testing.assert_allclose(b["xbar"], obs_norm.normalize(ds.mf_obs[rows]), rtol=1e-5, atol=1e-6)
    # the mf_obs statistics differ, so using them would give other values
    mf_norm = ds.normalizer("mf_obs", kind)
    assert not np.allclose(b["xbar"], mf_norm.normalize(ds.mf_obs[rows]), atol=1e-3)


@pytest.mark.parametrize("kind", ["limits", "gaussian"])
def test_mean_of_normalized_neighbours_is_normalized_mean(ds, kind):
    norm = ds.normalizer("obs", kind)
    rec = ds.episode(0)
    for i, nb in enumerate(rec.neighbors):
        mean_of_norm = norm.normalize(rec.obs[:, nb].astype(np.float64)).mean(axis=1)
        norm_of_mean = norm.normalize(rec.mf_obs[:, i].astype(np.float64))
        np.testing.assert_allclose(mean_of_norm, norm_of_mean, rtol=1e-6, atol=1e-9)


def test_sample_is_vectorized_and_seeded(win):
    a = win.sample(256, np.random.default_rng(3))
    b = win.sample(256, 3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["x"].shape == (256, H, 4)
    again = win.batch(np.searchsorted(win.starts, a["row"]))
    np.testing.assert_array_equal(again["x"], a["x"])


@pytest.mark.parametrize("by", ["trajectory", "episode"])
def test_split_by_whole_units(ds, win, by):
    train, valid = win.split(0.3, seed=0, by=by)
    assert len(train) + len(valid) == len(win)
    assert not set(train.trajectories) & set(valid.trajectories)
    if by == "episode":
        ep = ds.agents["episode"]
        assert not set(ep[train.trajectories]) & set(ep[valid.trajectories])
    assert train.return_scale == valid.return_scale == win.return_scale
    np.testing.assert_array_equal(np.sort(np.concatenate([train.starts, valid.starts])),
                                  np.sort(win.starts))
    b = valid.batch(np.arange(len(valid)))
    np.testing.assert_allclose(b["y"], valid.y, rtol=1e-6)
    assert np.isin(b["trajectory"], valid.trajectories).all()
    t2, v2 = win.split(0.3, seed=0, by=by)
    np.testing.assert_array_equal(v2.starts, valid.starts)


@pytest.mark.parametrize("kw, message", [
    ({"horizon": 0}, r"horizon must be >= 1"),
    ({"horizon": 2.5}, r"horizon must be an integer"),
    ({"horizon": 51}, r"H = 51 leaves no window.*50 frames"),
    ({"horizon": H, "gamma": 0.0}, r"gamma \(discount\) must be in \(0, 1\], got 0.0"),
    ({"horizon": H, "gamma": 1.5}, r"gamma \(discount\) must be in \(0, 1\], got 1.5"),
    ({"horizon": H, "normalizer_kind": "cdf"}, "normalizer_kind must be one of"),
    ({"horizon": H, "return_scale": "max"}, "return_scale must be 'auto' or a number"),
    ({"horizon": H, "return_scale": -1.0}, "return_scale must be"),
])
def test_window_argument_validation(ds, kw, message):
    with pytest.raises(ValueError, match=message):
        WindowDataset(ds, **kw)


def test_split_argument_validation(win):
    for frac in (0.0, 1.0, -0.2):
        with pytest.raises(ValueError, match="valid_fraction"):
            win.split(frac)
    with pytest.raises(ValueError, match="split by"):
        win.split(0.2, by="agent")

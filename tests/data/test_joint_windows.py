"""Joint (team) windows for MADiff: one per per-agent window, teammates at the same frames of
the same episode, padding and the max_team cut, team returns and their quantiles, episode
splits and bad input."""
import numpy as np
import pytest

from radiorl.data import OfflineDataset, WindowDataset
from radiorl.data.joint_windows import JointWindowDataset
from tests.data.synth import make_record, make_records, write_dataset

H = 6


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    # N = 3 (ring), 4 (ring of 3 + an isolated agent), 3, and a 6-agent ring
    records = make_records(seed=2, frames=(30, 25, 20))
    records.append(make_record(np.random.default_rng(9), 6, 18, scenario="adhoc-4", seed=9))
    return OfflineDataset.open(write_dataset(tmp_path_factory.mktemp("j") / "j.h5", records))


@pytest.fixture(scope="module")
def win(ds):
    return WindowDataset(ds, horizon=H, gamma=0.9)


@pytest.fixture(scope="module")
def joint(win):
    return JointWindowDataset(win, max_team=4)


def _neighbors(ds, a):
    s = int(ds.agents["neighbor_start"][a])
    return ds.neighbor_index[s: s + int(ds.agents["n_neighbors"][a])].tolist()


def test_one_joint_window_per_agent_window_and_the_teams(ds, win, joint):
    assert len(joint) == len(win)
    for a in range(ds.n_trajectories):
        mates = joint.teammates[a][joint.teammates[a] >= 0].tolist()
        assert mates == _neighbors(ds, a)
        assert joint.team_size[a] == 1 + len(mates)
    iso = [a for a in range(ds.n_trajectories) if ds.agents["n_neighbors"][a] == 0]
    assert iso and all(joint.team_size[a] == 1 for a in iso)


def test_batch_gathers_the_teammates_windows_at_the_same_frames(ds, win, joint):
    idx = np.arange(0, len(joint), 7)
    b = joint.batch(idx, np.random.default_rng(0))
    assert b["x"].shape == (len(idx), 4, H, 4) and b["x"].dtype == np.float32
    assert b["actions"].shape == (len(idx), 4, H) and b["agent_mask"].dtype == bool
    per_agent = win.batch(idx)
    assert np.array_equal(b["x"][:, 0], per_agent["x"])                # the ego is row 0
    assert np.array_equal(b["actions"][:, 0], per_agent["actions"])
    assert np.array_equal(b["members"][:, 0], per_agent["trajectory"])
    for r in range(len(idx)):
        ego, t = int(per_agent["trajectory"][r]), int(per_agent["t"][r])
        real = b["members"][r][b["agent_mask"][r]].tolist()
        assert real == [ego] + _neighbors(ds, ego)
        for n, m in enumerate(real):
            rows = ds.agents["row_start"][m] + t + np.arange(H)
            assert ds.agents["episode"][m] == ds.agents["episode"][ego]
            assert np.array_equal(b["x"][r, n], win.normalizer.normalize(ds.obs[rows])
                                  .astype(np.float32))
            assert np.array_equal(b["grants"][r, n], ds.grants[rows])
        pad = ~b["agent_mask"][r]
        assert np.all(b["x"][r, pad] == 0) and np.all(b["actions"][r, pad] == 0)
        assert np.all(b["members"][r, pad] == -1)


def test_team_return_is_the_mean_window_return_and_its_quantile(ds, win, joint):
    first = {a: np.nonzero(win.window_trajectory == a)[0][0] for a in range(ds.n_trajectories)}
    for w in range(0, len(win), 11):
        a, t = int(win.window_trajectory[w]), int(win.window_t[w])
        ys = [win.y[first[m] + t] for m in [a] + _neighbors(ds, a)]
        assert joint.team_return[w] == pytest.approx(np.mean(ys))
    q = joint.team_quantile
    assert q.min() > 0 and q.max() < 1
    order = np.argsort(joint.team_return, kind="stable")
    assert np.all(np.diff(q[order]) >= 0)                               # monotone in the return
    assert joint.return_at(0.0) == pytest.approx(joint.team_return.min())
    assert joint.return_at(1.0) == pytest.approx(joint.team_return.max())
    assert abs(np.mean(joint.team_return <= joint.return_at(0.5)) - 0.5) < 0.05
    b = joint.batch(np.array([3, 5]))
    assert np.allclose(b["cond"], q[[3, 5]]) and np.allclose(b["team_return"],
                                                             joint.team_return[[3, 5]])


def test_large_teams_are_cut_to_a_random_subset(ds, win):
    joint = JointWindowDataset(win, max_team=2)                         # ego + 1 of 2 neighbours
    big = np.nonzero(joint.team_size[win.window_trajectory] == 3)[0]
    idx = np.repeat(big[:1], 200)
    b = joint.batch(idx, np.random.default_rng(1))
    ego = int(win.window_trajectory[big[0]])
    assert b["x"].shape[1] == 2 and b["agent_mask"].all()
    assert np.all(b["members"][:, 0] == ego)
    kept = set(b["members"][:, 1].tolist())
    assert kept == set(_neighbors(ds, ego))                             # both drawn over 200 draws
    again = joint.batch(idx, np.random.default_rng(1))
    assert np.array_equal(again["members"], b["members"])               # seeded
    # the team return still averages over the whole team
    assert joint.team_return[big[0]] == JointWindowDataset(win, 8).team_return[big[0]]


def test_network_teams_hold_every_agent_of_the_episode(ds, win):
    joint = JointWindowDataset(win, max_team=6, team="network")
    b = joint.batch(np.arange(0, len(joint), 13))
    for r in range(len(b["window"])):
        ego = int(win.window_trajectory[b["window"][r]])
        ep = ds.agents["episode"][ego]
        everyone = np.nonzero(ds.agents["episode"] == ep)[0].tolist()
        real = b["members"][r][b["agent_mask"][r]].tolist()
        assert real[0] == ego and sorted(real) == everyone


def test_split_by_episode(ds, win, joint):
    train, valid = joint.split(0.3, seed=0)
    assert len(train) + len(valid) == len(joint)
    assert not set(train.ego.tolist()) & set(valid.ego.tolist())
    ep = ds.agents["episode"][win.window_trajectory]
    assert not set(ep[train.ego].tolist()) & set(ep[valid.ego].tolist())
    b = valid.sample(16, np.random.default_rng(0))
    members = b["members"][b["agent_mask"]]
    assert set(ds.agents["episode"][members].tolist()) <= set(ep[valid.ego].tolist())
    assert train.team_quantile is joint.team_quantile                   # full-dataset statistics


def test_bad_input(ds, win, joint):
    with pytest.raises(ValueError, match="full WindowDataset"):
        JointWindowDataset(win.split(0.3)[0], max_team=4)
    with pytest.raises(ValueError, match="team must be one of"):
        JointWindowDataset(win, max_team=4, team="clique")
    with pytest.raises(ValueError, match="max_team"):
        JointWindowDataset(win, max_team=0)
    with pytest.raises(ValueError, match="max_team"):
        JointWindowDataset(win, max_team=True)
    with pytest.raises(TypeError, match="WindowDataset"):
        JointWindowDataset(ds, max_team=4)
    with pytest.raises(IndexError, match="joint window indices"):
        joint.batch([len(joint)])
    with pytest.raises(ValueError, match="batch_size"):
        joint.sample(0)
    with pytest.raises(ValueError, match="quantile"):
        joint.return_at(1.5)

"""MA-CQL, MA-TD3+BC and MA-DT through d3rlpy: data conversion, training, the policy and its
information contract, checkpoints, resume, the missing-extra error and bad input."""
from __future__ import annotations

import sys

import h5py
import numpy as np
import pytest
import torch

from radiorl.agents.offline.d3rlpy_baselines import (D3rlpyConfig, D3rlpyPolicy,
                                                     MissingExtraError, decode_actions,
                                                     encode_requests, load_algo,
                                                     open_training_data, preset_config, train)
from radiorl.envs.scenarios import get_scenario

torch.set_num_threads(1)

METHODS = ("cql", "td3bc", "dt")
TINY = dict(hidden=(32, 32), batch_size=32, epochs=2, steps_per_epoch=3, dt_context=4,
            dt_layers=1, cql_n_action_samples=2)
QUIET = dict(show_progress=False, log=lambda *a: None)


def tiny(method: str, **over) -> D3rlpyConfig:
    return D3rlpyConfig(method=method, **{**TINY, **over}).validate()


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    """One tiny training run per method: {method: (run_dir, result)}."""
    pytest.importorskip("d3rlpy")
    out = {}
    for m in METHODS:
        run = tmp_path_factory.mktemp(f"run-{m}")
        out[m] = (run, train(dataset, tiny(m), run, **QUIET))
    return out


def _env(batch=2, **kw):
    return get_scenario("adhoc-8-2:6").make_env("medium", batch=batch, episode_slots=20, **kw)


def _actions(pol, env, frames=4, seed=3):
    """Requests of ``frames`` consecutive frames (the env driven by the policy)."""
    obs, state = env.reset(seed=seed)
    ps = pol.reset(env, env.batch, seed=0)
    out = []
    for _ in range(frames):
        a, ps = pol.act(obs, env.policy_view(state, pol.requires), ps)
        out.append(a)
        obs, *_, state = env.step(state, a)
    return np.stack(out)


# ----------------------------------------------------------------------------- data
def test_action_map_round_trips_every_request():
    a = np.arange(41)
    u = encode_requests(a, 40)
    assert u.dtype == np.float32 and u.min() == -1.0 and u.max() == 1.0
    assert np.array_equal(decode_actions(u, 40), a)
    assert decode_actions(np.array([-3.0, 3.0]), 40).tolist() == [0, 40]


def test_replay_buffer_is_one_episode_per_agent_and_matches_d3rlpy_sampling(dataset):
    d3 = pytest.importorskip("d3rlpy")
    from radiorl.agents.offline.d3rlpy_baselines import make_replay_buffer
    ds, data, meta = open_training_data(dataset, tiny("dt"))
    buf = make_replay_buffer(data, seed=0)
    assert len(buf.episodes) == ds.n_trajectories == 64
    assert buf.transition_count == ds.n_frames - ds.n_trajectories      # truncated episodes
    ep = buf.episodes[5]
    s = int(ds.agents["row_start"][5])
    assert np.array_equal(decode_actions(ep.actions[:, 0], 40), ds.actions[s:s + 120])
    # our vectorized batches are d3rlpy's picker / slicer on the same transition indices
    k = np.array([0, 1, 118, 119, 120, 4000, buf.transition_count - 1])
    ours = buf.transition_batch_at(k)
    ref = d3.dataset.TransitionMiniBatch.from_transitions(
        [d3.dataset.BasicTransitionPicker()(*buf.buffer[int(i)]) for i in k])
    for f in ("observations", "actions", "rewards", "next_observations", "next_actions",
              "terminals", "intervals"):
        assert np.array_equal(getattr(ours, f), getattr(ref, f)), f
    ours = buf.trajectory_batch_at(k, 6)
    ref = d3.dataset.TrajectoryMiniBatch.from_partial_trajectories(
        [d3.dataset.BasicTrajectorySlicer()(*buf.buffer[int(i)], 6) for i in k])
    for f in ("observations", "actions", "rewards", "terminals", "timesteps", "masks"):
        assert np.array_equal(getattr(ours, f), getattr(ref, f)), f
    assert np.allclose(ours.returns_to_go, ref.returns_to_go, rtol=1e-5, atol=1e-6)
    # seeded: same generator state, same batch
    buf.rng = np.random.default_rng(7)
    a = buf.sample_transition_batch(16).observations
    buf.rng = np.random.default_rng(7)
    assert np.array_equal(a, buf.sample_transition_batch(16).observations)


def test_reward_scale_and_dt_target_return_come_from_the_dataset(dataset):
    ds, _, meta = open_training_data(dataset, tiny("cql"))
    assert meta["reward_scale"] == pytest.approx(float(np.abs(ds.rewards).mean()), rel=1e-6)
    _, data, meta_dt = open_training_data(dataset, tiny("dt"))
    assert meta_dt["reward_scale"] == pytest.approx(meta["reward_scale"] * 120, rel=1e-6)
    assert meta_dt["max_timestep"] == 121
    # returns-to-go of the first trajectory: suffix sums of its scaled rewards
    r = data.rewards[:120, 0].astype(np.float64)
    assert np.allclose(data.returns_to_go[:120, 0], np.cumsum(r[::-1])[::-1], atol=1e-5)
    assert meta_dt["target_return"] <= 0
    _, _, m2 = open_training_data(dataset, tiny("dt", dt_target_return=-500.0, reward_scale=2.0))
    assert m2["target_return"] == -500.0 and m2["reward_scale"] == 2.0


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("method", METHODS)
def test_training_writes_history_checkpoints_and_figure(trained, method):
    run, res = trained[method]
    h = res["history"]
    assert [r["epoch"] for r in h] == [1, 2] and h[-1]["steps"] == 6
    losses = [k for k in h[0] if k.startswith("train_")]
    assert losses and all(np.isfinite(r[k]) for r in h for k in losses)
    assert ("train_loss" in losses) == (method == "dt")
    for f in ("checkpoints/last.pt", "checkpoints/policy.pt", "training.csv",
              "figures/training_curve.png"):
        assert (run / f).is_file(), f
    assert list((run / "tb").iterdir())
    assert res["checkpoint"] == str(run / "checkpoints" / "policy.pt")


@pytest.mark.parametrize("method", METHODS)
def test_policy_acts_for_every_agent_on_local_obs_only(trained, method):
    run, res = trained[method]
    env = _env(batch=2)
    pol = D3rlpyPolicy.from_checkpoint(res["checkpoint"], env, method=method)
    assert pol.requires == frozenset({"local_obs"}) and pol.name == method
    obs, state = env.reset(seed=1)
    view = env.policy_view(state, pol.requires)
    assert set(view) == {"obs", "degree", "domain_size", "n_nodes"}
    with pytest.raises(KeyError, match="mf_obs"):
        view["mf_obs"]
    ps = pol.reset(env, 2, seed=0)
    a, ps = pol.act(obs, view, ps)
    assert a.shape == (2, env.n_agents) and a.dtype == np.int64
    assert a.min() >= 0 and a.max() <= env.params.max_request
    # the whole episode through the evaluation runner (it hands over policy_view only)
    from radiorl.evaluation.runner import rollout
    m, _ = rollout(env, pol, seed=2, slots=10)
    assert m.slots == 10


@pytest.mark.parametrize("method", METHODS)
def test_an_agents_request_depends_only_on_its_own_observations(trained, method):
    """Changing every other agent's observations (for several frames, so DT's context
    differs too) leaves agent i's requests unchanged."""
    _, res = trained[method]
    env = _env(batch=1)
    pol = D3rlpyPolicy.from_checkpoint(res["checkpoint"], env)
    rng = np.random.default_rng(0)
    seq = rng.integers(0, 40, (5, 1, env.n_agents, 4)).astype(np.float32)
    other = seq.copy()
    other[:, :, 1:] = rng.integers(0, 40, other[:, :, 1:].shape)

    def run(obs_seq):
        ps = pol.reset(env, 1, seed=0)
        req, u = [], []
        for o in obs_seq:
            ps0 = ps
            a, ps = pol.act(o, {"obs": o}, ps)           # nothing but the local obs
            req.append(a[0, 0])
            u.append(pol.continuous_actions(o[0], ps0)[0][0])
        return req, np.array(u)
    req, u = run(seq)
    req2, u2 = run(other)
    assert req == req2 and np.allclose(u, u2, rtol=0, atol=1e-6)
    own = seq.copy()
    own[:, :, 0] = rng.integers(0, 40, own[:, :, 0].shape)
    assert not np.allclose(run(own)[1], u, rtol=0, atol=1e-6)    # it does use its own obs


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip_gives_identical_actions(trained, method):
    run, res = trained[method]
    env = _env(batch=2)
    a = _actions(D3rlpyPolicy.from_checkpoint(res["checkpoint"], env), env)
    b = _actions(D3rlpyPolicy.from_checkpoint(res["checkpoint"], env), env)
    c = _actions(D3rlpyPolicy.from_checkpoint(run / "checkpoints" / "last.pt", env), env)
    assert np.array_equal(a, b) and np.array_equal(a, c)
    blob = torch.load(res["checkpoint"], weights_only=True)          # our format, no pickle
    assert blob["algo"] == "d3rlpy" and blob["method"] == method and blob["optimizers"] is None


@pytest.mark.parametrize("method", METHODS)
def test_resume_continues_from_last_checkpoint_exactly(dataset, trained, tmp_path, method):
    _, res = trained[method]
    train(dataset, tiny(method, epochs=1), tmp_path, **QUIET)
    out = train(dataset, tiny(method), tmp_path, resume=tmp_path, **QUIET)
    assert [r["epoch"] for r in out["history"]] == [1, 2]
    a, *_ = load_algo(res["checkpoint"])
    b, *_ = load_algo(out["checkpoint"])
    assert a.grad_step == b.grad_step == 6
    for (name, p), (_, q) in zip(a.impl.modules.transformer.state_dict().items()
                                 if method == "dt" else
                                 a.impl.modules.policy.state_dict().items(),
                                 b.impl.modules.transformer.state_dict().items()
                                 if method == "dt" else
                                 b.impl.modules.policy.state_dict().items()):
        assert torch.equal(p, q), name


def test_evaluation_during_training_and_best_eval_selection(dataset, tmp_path):
    pytest.importorskip("d3rlpy")
    cfg = tiny("td3bc", eval_every=1, eval_frames=10, select_checkpoint="best_eval")
    res = train(dataset, cfg, tmp_path, **QUIET)
    h = res["history"]
    assert all(np.isfinite(r["eval_mean_reward"]) for r in h)
    best = max(h, key=lambda r: r["eval_mean_reward"])["epoch"]
    assert res["best_epoch"] == best and (tmp_path / "checkpoints" / "best.pt").is_file()
    assert torch.load(res["checkpoint"], weights_only=True)["selected_epoch"] == best


def test_resume_rejects_another_method_or_network(dataset, trained, tmp_path):
    run, _ = trained["cql"]
    with pytest.raises(ValueError, match="method"):
        train(dataset, tiny("td3bc"), tmp_path, resume=run, **QUIET)
    with pytest.raises(ValueError, match="hidden"):
        train(dataset, tiny("cql", hidden=(16, 16)), tmp_path, resume=run, **QUIET)
    with pytest.raises(ValueError, match="without optimizer state"):
        train(dataset, tiny("cql"), tmp_path, resume=run / "checkpoints" / "policy.pt",
              **QUIET)


# ----------------------------------------------------------------------------- bad input
def test_missing_extra_is_named_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "d3rlpy", None)          # import d3rlpy -> ImportError
    msg = "MA-CQL needs the optional extra 'offline': pip install 'radiorl\\[offline\\]'"
    with pytest.raises(MissingExtraError, match=msg):
        train(tmp_path / "no-such-dataset.h5", tiny("cql"), tmp_path / "run", **QUIET)
    assert not (tmp_path / "run").exists()
    with pytest.raises(MissingExtraError, match="MA-TD3\\+BC needs the optional extra"):
        train(tmp_path / "no-such-dataset.h5", tiny("td3bc"), tmp_path / "run", **QUIET)
    with pytest.raises(MissingExtraError, match="MA-DT needs the optional extra 'offline'"):
        D3rlpyPolicy.from_checkpoint(tmp_path / "no-such.pt", method="dt")


def test_bad_config_values_name_the_field_and_range():
    with pytest.raises(ValueError, match=r"method must be one of \['cql', 'td3bc', 'dt'\]"):
        D3rlpyConfig(method="bcq").validate()
    with pytest.raises(ValueError, match=r"epochs must be in \[1, 100000\]"):
        D3rlpyConfig(epochs=0).validate()
    with pytest.raises(ValueError, match=r"steps_per_epoch must be in \[1, 10000000\]"):
        D3rlpyConfig(steps_per_epoch=-5).validate()
    with pytest.raises(ValueError, match="batch_size"):
        D3rlpyConfig(batch_size=0).validate()
    with pytest.raises(ValueError, match="lr must be"):
        D3rlpyConfig(lr=0.0).validate()
    with pytest.raises(ValueError, match="dt_context"):
        D3rlpyConfig(method="dt", dt_context=0).validate()
    with pytest.raises(ValueError, match="dt_heads = 3 must divide"):
        D3rlpyConfig(method="dt", dt_heads=3).validate()
    with pytest.raises(ValueError, match="normalizer must be one of"):
        D3rlpyConfig(normalizer="cdf").validate()
    with pytest.raises(ValueError, match="preset must be one of"):
        preset_config("fast")
    cfg = preset_config("quick", method="dt")
    assert (cfg.epochs, cfg.steps_per_epoch, cfg.batch_size, cfg.lr) == (5, 1000, 64, 1e-4)
    assert D3rlpyConfig.from_dict(cfg.to_dict()) == cfg


def test_dataset_with_another_observation_layout_is_refused(dataset, tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(dataset.read_bytes())
    with h5py.File(bad, "r+") as f:
        f.attrs["obs_dim"] = 6
    with pytest.raises(ValueError, match="obs_dim"):
        open_training_data(bad, tiny("cql"))


def test_dt_max_timestep_shorter_than_the_trajectories_is_refused(dataset):
    with pytest.raises(ValueError, match=r"dt_max_timestep = 50 is too small"):
        open_training_data(dataset, tiny("dt", dt_max_timestep=50))


def test_policy_refuses_another_network_method_or_setting(trained, tmp_path):
    _, res = trained["td3bc"]
    with pytest.raises(ValueError, match="max_request"):
        D3rlpyPolicy.from_checkpoint(res["checkpoint"], _env(max_request=10))
    with pytest.raises(ValueError, match="holds a MA-TD3\\+BC model, not MA-CQL"):
        D3rlpyPolicy.from_checkpoint(res["checkpoint"], method="cql")
    with pytest.raises(ValueError, match="target_return is a setting of MA-DT"):
        D3rlpyPolicy.from_checkpoint(res["checkpoint"], target_return=-100.0)
    with pytest.raises(ValueError, match="unknown d3rlpy policy settings"):
        D3rlpyPolicy.from_checkpoint(res["checkpoint"], temperature=2)
    torch.save({"algo": "macdmp", "version": 1}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match="it was written by macdmp"):
        D3rlpyPolicy.from_checkpoint(tmp_path / "m.pt")


def test_dt_target_return_setting_changes_the_returns_to_go(trained):
    _, res = trained["dt"]
    pol = D3rlpyPolicy.from_checkpoint(res["checkpoint"], target_return=-1000.0)
    T, s = pol.ref_frames, pol.reward_scale
    assert pol.return_to_go(1) == pytest.approx(-1000.0 / s)
    assert pol.return_to_go(T) == pytest.approx(-1000.0 / T / s)
    assert pol.return_to_go(10 * T) == pol.return_to_go(T)

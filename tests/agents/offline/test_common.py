"""The pieces the offline diffusion planners share (agents/offline/common.py), tested on all
four (MA-CDMP, MA-Diffuser, MA-DD, MADiff): training artifacts, exact resume and its checks,
checkpoint format, round trip and kind, the local planners' information contract, dataset
checks, planner-setting and config checks, the network's action range; and the shared
building blocks on their own (traced-module cache, classifier-free return guidance,
inpainting inputs)."""
from __future__ import annotations

import hashlib

import h5py
import numpy as np
import pytest
import torch

from radiorl.agents.macdmp import model as macdmp_model
from radiorl.agents.offline import decision_diffuser, diffuser, madiff
from radiorl.agents.offline.common import TracedCache, plan_inputs, return_conditioned
from radiorl.data.normalizers import Normalizer
from radiorl.envs.base import PolicyView
from tests.agents.planners import (METHODS, QUIET, checkpoint, make_env, run_episode,
                                  tiny_config)

torch.set_num_threads(1)

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")

NAMES = list(METHODS)


# ----------------------------------------------------------------------------- training
@pytest.mark.parametrize("name", NAMES)
def test_training_writes_history_checkpoints_and_figure(tiny_runs, name):
    run, res = tiny_runs[name]
    h = res["history"]
    assert [r["epoch"] for r in h] == [1, 2]
    for k in METHODS[name].history_keys:
        assert all(np.isfinite(r[k]) for r in h), k
    for f in ("checkpoints/last.pt", "checkpoints/planner.pt", "training.csv",
              "figures/training_curve.png"):
        assert (run / f).is_file(), f
    assert res["checkpoint"].endswith("planner.pt") and list((run / "tb").iterdir())


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_weights_resume_is_exact_and_refuses_another_config(
        dataset, tiny_runs, tmp_path, name):
    m = METHODS[name]
    run, _ = tiny_runs[name]
    m.train(dataset, tiny_config(name, epochs=1), tmp_path, **QUIET)
    m.train(dataset, tiny_config(name), tmp_path, resume=tmp_path, **QUIET)
    a, _ = m.load_model(run / "checkpoints" / "planner.pt")
    b, _ = m.load_model(tmp_path / "checkpoints" / "planner.pt")
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(p, q), n
    for i, (change, field_name) in enumerate(m.resume_changes):
        with pytest.raises(ValueError, match=field_name):
            m.train(dataset, tiny_config(name, **change), tmp_path / f"other-{i}", resume=run,
                    **QUIET)


# ----------------------------------------------------------------------------- checkpoints
#: Config fields every planner stores (agents.offline.common.PlannerConfig).
SHARED_CONFIG_KEYS = {
    "horizon", "diffusion_steps", "schedule", "prediction", "dim", "dim_mults", "normalizer",
    "gamma", "epochs", "steps_per_epoch", "batch_size", "lr", "ema", "grad_clip",
    "loss_weights", "valid_fraction", "valid_batches", "checkpoint_every", "eval_every",
    "eval_scenarios", "eval_frames", "eval_seed", "eval_sampler", "eval_sample_steps",
    "select_checkpoint", "sampler", "sample_steps", "guidance", "clip_x0", "seed", "threads"}
#: The checkpoint layouts written before the planners shared agents.offline.common (frozen
#: from that code): per case the ``algo``, ``version``, blob keys (a final checkpoint's, with
#: the training loop's ``epoch``, ``history``, ``selected_epoch``), the config fields beyond
#: the shared ones, and the number of weight tensors with a digest of their sorted
#: ``name:shape`` lines. Checkpoints written by either code load with the other.
FROZEN = {
    "macdmp": ("macdmp", 1, ("return_scale",),
               {"mean_field", "denoiser", "value_net", "mlp_hidden", "mlp_layers",
                "inverse_hidden", "inverse_loss", "inverse_target", "guide_stop", "candidates",
                "guide_last", "warm_start"}, 94, "3767029871021fba"),
    "macdmp-mlp": ("macdmp", 1, ("return_scale",),
                   {"mean_field", "denoiser", "value_net", "mlp_hidden", "mlp_layers",
                    "inverse_hidden", "inverse_loss", "inverse_target", "guide_stop",
                    "candidates", "guide_last", "warm_start"}, 20, "9e483624f6639476"),
    "madiffuser": ("madiffuser", 1, ("return_scale",),
                   {"action_weight", "guide_stop", "candidates"}, 94, "9953e9516b89902a"),
    "madd": ("madd", 1, ("return_scale", "target_return"),
             {"inverse_hidden", "inverse_loss", "condition_dropout", "target_return",
              "target_quantile", "temperature"}, 68, "26a1fbe930a870c0"),
    "madiff": ("madiff", 1, ("quantile_table",),
               {"team", "max_team", "ego_channel", "attention_heads", "condition_dropout",
                "inverse_hidden", "inverse_loss", "inverse_target", "target_return"},
               90, "fe67a45973d39e12"),
}


def _frozen_case_model(case: str):
    """The (untrained) models the frozen layouts were recorded with, and their module."""
    norm = Normalizer("limits", np.full(4, 20.0), np.full(4, 20.0))
    tiny = dict(horizon=4, dim=8, dim_mults=(1, 2), diffusion_steps=20)
    if case == "macdmp":
        cfg = macdmp_model.MACDMPConfig(**tiny, inverse_hidden=(32,)).validate()
        return macdmp_model, macdmp_model.build_model(cfg, 40, norm, 2.0)
    if case == "macdmp-mlp":
        cfg = macdmp_model.MACDMPConfig(**tiny, denoiser="mlp", value_net="mlp", mlp_hidden=16,
                                        mlp_layers=1, inverse_hidden=(32,)).validate()
        return macdmp_model, macdmp_model.build_model(cfg, 40, norm, 2.0)
    if case == "madiffuser":
        cfg = diffuser.MADiffuserConfig(**tiny).validate()
        return diffuser, diffuser.build_model(cfg, 40, norm, 2.0)
    if case == "madd":
        cfg = decision_diffuser.MADDConfig(**tiny, inverse_hidden=(32,)).validate()
        return decision_diffuser, decision_diffuser.build_model(cfg, 40, norm, 2.0, -0.1)
    cfg = madiff.MADiffConfig(**tiny, inverse_hidden=(32,), max_team=4, batch_size=32).validate()
    return madiff, madiff.build_model(cfg, 40, norm, np.linspace(-1, 0, 101))


@pytest.mark.parametrize("case", list(FROZEN))
def test_checkpoint_layout_is_the_frozen_one(tmp_path, case):
    algo, version, facts, own_fields, n_weights, digest = FROZEN[case]
    mod, model = _frozen_case_model(case)
    info = {"path": "x.h5", "fingerprint": "abc", "n_frames": 1}
    path = mod.save_model(tmp_path / "m.pt", model, info, epoch=3, history="[]",
                          selected_epoch=3)
    blob = torch.load(path, weights_only=True)
    assert set(blob) == {"version", "algo", "config", "max_request", "normalizer", *facts,
                         "dataset", "model", "epoch", "history", "selected_epoch"}
    assert blob["algo"] == algo and blob["version"] == version
    assert set(blob["config"]) == SHARED_CONFIG_KEYS | own_fields
    lines = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in sorted(blob["model"].items()))
    assert len(blob["model"]) == n_weights
    assert hashlib.sha256(lines.encode()).hexdigest()[:16] == digest
    back, blob2 = mod.load_model(path)
    assert blob2["config"] == model.cfg.to_dict()
    for k, v in back.state_dict().items():
        assert torch.equal(v, model.state_dict()[k]), k
    for k in facts:
        assert getattr(back, k) == getattr(model, k), k


@pytest.mark.parametrize("name", NAMES)
def test_trained_checkpoint_round_trips(tiny_runs, name):
    """The final checkpoint rebuilds the model exactly, and two policies loaded from it act
    alike on the same episode."""
    m = METHODS[name]
    ck = checkpoint(tiny_runs[name])
    blob = torch.load(ck, weights_only=True)
    model, blob2 = m.load_model(ck)
    assert blob2["config"] == blob["config"] and blob["algo"] == name
    for k, v in model.state_dict().items():
        assert torch.equal(v, blob["model"][k]), k
    assert model.normalizer.to_dict() == blob["normalizer"]
    assert blob["dataset"]["fingerprint"]
    env = make_env(batch=2, slots=10)
    acts = []
    for _ in range(2):
        pol = m.policy.from_checkpoint(ck, env, **dict(m.episode_settings))
        assert pol.name == name
        acts.append(run_episode(pol, env, frames=3)[0])
    assert np.array_equal(acts[0], acts[1])


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_of_another_kind_is_refused(tmp_path, name):
    m = METHODS[name]
    torch.save({"algo": m.other_algo, "version": 1}, tmp_path / "m.pt")
    with pytest.raises(ValueError, match=f"not a {m.label} checkpoint.*{m.other_algo}"):
        m.load_model(tmp_path / "m.pt")
    with pytest.raises(ValueError, match=f"not a {m.label} checkpoint"):
        m.policy.from_checkpoint(tmp_path / "m.pt")


@pytest.mark.parametrize("name", NAMES)
def test_network_with_another_action_range_is_refused(tiny_runs, name):
    env = make_env(batch=1, slots=10, max_request=10)
    with pytest.raises(ValueError, match="max_request"):
        METHODS[name].policy.from_checkpoint(checkpoint(tiny_runs[name]), env)


# ----------------------------------------------------------------------------- acting
@pytest.mark.parametrize("name,settings", [("madiffuser", {"sampler": "ddpm", "guidance": 0.5}),
                                           ("madd", {"sampler": "ddpm"})])
def test_request_depends_only_on_the_agents_own_observation(tiny_runs, name, settings):
    """Information contract of the local planners (PlannerPolicy): only local observations are
    handed over, and agent i's request and plan are unchanged when every other agent's
    observation changes (same generator state)."""
    env = make_env(batch=1)
    pol = METHODS[name].policy.from_checkpoint(checkpoint(tiny_runs[name]), env, **settings)
    assert pol.requires == frozenset({"local_obs"})
    obs, state = env.reset(seed=1)
    for _ in range(4):
        obs, *_, state = env.step(state, np.full((1, env.n_agents), 6))
    view = env.policy_view(state, pol.requires)
    assert "mf_obs" not in view and "queues" not in view

    def act(o):
        ps = pol.reset(env, 1, seed=9)
        return pol.act(o[None], PolicyView({"obs": o[None]}, pol.requires), ps)
    o = np.asarray(view["obs"], np.float32)[0]
    base, ps = act(o.copy())
    for i in (0, env.n_agents - 1):
        changed = o.copy()
        others = [j for j in range(env.n_agents) if j != i]
        changed[others] = np.random.default_rng(i).integers(0, 40, (len(others), 4))
        a, ps2 = act(changed)
        assert a[0, i] == base[0, i]
        assert torch.equal(ps2["plans"][i], ps["plans"][i])


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", NAMES)
def test_bad_datasets_are_refused_before_training(dataset, tmp_path, name):
    m = METHODS[name]
    too_long = tiny_config(name, horizon=121)
    msg = r"horizon H = 121 is longer than the dataset's episodes"
    with pytest.raises(ValueError, match=msg):
        m.train(dataset, too_long, tmp_path, **QUIET)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(dataset.read_bytes())
    with h5py.File(bad, "r+") as f:
        f.attrs["obs_dim"] = 6
    with pytest.raises(ValueError, match="obs_dim"):
        m.train(bad, tiny_config(name), tmp_path, **QUIET)
    assert not (tmp_path / "checkpoints").exists()
    if m.open_training_data is not None:
        with pytest.raises(ValueError, match=msg):
            m.open_training_data(dataset, too_long)
        with pytest.raises(ValueError, match="obs_dim"):
            m.open_training_data(bad, tiny_config(name))


@pytest.mark.parametrize("name", NAMES)
def test_bad_planner_settings(tiny_runs, name):
    m = METHODS[name]
    ck = checkpoint(tiny_runs[name])
    with pytest.raises(ValueError, match="sampler must be one of"):
        m.policy.from_checkpoint(ck, sampler="euler")
    with pytest.raises(ValueError, match=r"sample_steps must be .*\[1, 20\]"):
        m.policy.from_checkpoint(ck, sampler="dpm1", steps=0)
    with pytest.raises(ValueError, match="ddpm sampler runs all K"):
        m.policy.from_checkpoint(ck, sampler="ddpm", steps=5)
    with pytest.raises(ValueError, match="guidance must be"):
        m.policy.from_checkpoint(ck, guidance=-1)
    with pytest.raises(ValueError, match="guidance must be"):
        m.policy.from_checkpoint(ck, guidance=-0.5)
    with pytest.raises(ValueError, match=m.unknown_message):
        m.policy.from_checkpoint(ck, **m.unknown_setting)


@pytest.mark.parametrize("name", NAMES)
def test_bad_config_values(name):
    m = METHODS[name]
    C = m.config
    with pytest.raises(ValueError, match="diffusion_steps"):
        C(diffusion_steps=0).validate()
    with pytest.raises(ValueError, match="horizon"):
        C(horizon=1).validate()
    with pytest.raises(ValueError, match="sampler must be one of"):
        C(sampler="heun").validate()
    with pytest.raises(ValueError, match=r"sample_steps must be .*\[1, 100\]"):
        C(sampler="dpm1", sample_steps=-2).validate()
    with pytest.raises(ValueError, match=f"loss_weights must be {m.n_loss_weights} numbers"):
        C(loss_weights=(1,) * (m.n_loss_weights + 1)).validate()
    with pytest.raises(ValueError, match="epochs"):
        C(epochs=0).validate()
    with pytest.raises(ValueError, match="steps_per_epoch"):
        C(steps_per_epoch=0).validate()
    with pytest.raises(ValueError, match=f"unknown {m.label} config fields"):
        C.from_dict({"no_such_field": True})
    with pytest.raises(ValueError, match="preset"):
        m.preset_config("fast")
    paper = m.preset_config("paper")
    assert paper.epochs * paper.steps_per_epoch == 100_000 and paper.steps_per_epoch == 1000
    assert m.preset_config("quick").epochs == 5


# ----------------------------------------------------------------------------- building blocks
class _Affine(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(2.0))

    def forward(self, x, mask):
        return self.w * x * mask.to(x.dtype)


def test_traced_cache_traces_per_shape_and_key_then_runs_eagerly():
    f = _Affine()
    cache = TracedCache(f, enabled=True, freeze=True, key=lambda x, m: int(m.sum()),
                        max_traces=2)
    x = torch.ones(3, 2)
    m1 = torch.tensor([[True, False]] * 3)
    m2 = torch.tensor([[True, True]] * 3)
    assert torch.equal(cache(x, m1), f(x, m1)) and len(cache.traces) == 1
    assert torch.equal(cache(x, m2), f(x, m2)) and len(cache.traces) == 2
    assert torch.equal(cache(torch.ones(4, 2), m2[:1].expand(4, 2)), 2 * torch.ones(4, 2))
    assert len(cache.traces) == 2                                    # over the limit: eager
    cache.traces.clear()
    assert torch.equal(cache(x, m1), f(x, m1)) and len(cache.traces) == 1      # retraced
    eager = TracedCache(f, enabled=False, freeze=True)
    assert torch.equal(eager(x, m1), f(x, m1)) and not eager.traces


def test_return_conditioned_runs_one_half_or_both_in_one_batch():
    calls = []

    def den(x, k, cond, drop, extra):
        calls.append((x.shape[0], drop.tolist(), extra.shape[0]))
        return x + cond.reshape(-1, 1) * (~drop).to(x.dtype).reshape(-1, 1) + extra

    x, k = torch.zeros(2, 3), torch.ones(2, dtype=torch.int64)
    cond, extra = torch.tensor([[1.0], [2.0]]), torch.zeros(2, 3)
    assert torch.equal(return_conditioned(den, cond, 1.0, extra)(x, k), cond.expand(2, 3))
    assert calls[-1] == (2, [False, False], 2)
    assert torch.equal(return_conditioned(den, cond, 0.0, extra)(x, k), torch.zeros(2, 3))
    assert calls[-1] == (2, [True, True], 2)
    out = return_conditioned(den, cond, 1.5, extra)(x, k)          # u + w (c - u)
    assert torch.allclose(out, 1.5 * cond.expand(2, 3))
    assert calls[-1] == (4, [False, False, True, True], 4)


def test_plan_inputs_clamp_the_given_channels_of_the_first_position():
    first = torch.arange(8.0).reshape(2, 4)
    inpaint, mask = plan_inputs(first, horizon=3, channels=5)
    assert mask.shape == (1, 3, 5) and mask[0, 0, :4].all() and mask.sum() == 4
    assert torch.equal(inpaint.values[:, 0, :4], first) and inpaint.values.abs().sum() == 28
    full, mask8 = plan_inputs(torch.ones(2, 8), horizon=3, channels=8)       # MA-CDMP's [o, ō]
    assert mask8[0, 0].all() and mask8.sum() == 8
    assert torch.equal(full.values[:, 0], torch.ones(2, 8))

"""D2RL experiments on a tiny preset: every figure writes its CSVs, PNGs and report through the
CLI, runs are shared between figures through the store, and the references are ordered."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from radiorl.cli import app
from radiorl.experiments import d2rl

torch.set_num_threads(1)
runner = CliRunner()

TINY = {
    "train": dict(epochs=10, eval_every=5, eval_batch=4, batch_size=8, buffer_size=64,
                  hidden=16, time_dim=4, ma_window=2, checkpoint_every=4),
    "seeds": [0, 1],
    "sweep_m": [0.5],
    "sweep_eta": [0.1, 0.5],
    "sweep_seeds": [0],
    "sweep_epochs": 6,
    "sweep_rewards": ["designed", "gdm"],
    "env": {"n_dl": 2, "n_ul": 1},
    "optimizer": dict(iterations=5, restarts=1),
}


@pytest.fixture()
def tiny(monkeypatch):
    monkeypatch.setitem(d2rl.PRESETS, "quick", TINY)


def _rows(path):
    return list(csv.DictReader(open(path)))


def _run(name, out):
    r = runner.invoke(app, ["run", name, "--preset", "quick", "--workers", "1", "--out",
                            str(out)])
    assert r.exit_code == 0, r.output
    return next((out / name).iterdir())


def test_d2rl_figures_write_results_and_share_runs(tiny, tmp_path):
    d = _run("d2rl-action", tmp_path)
    curves = _rows(d / "fig2_3_curves.csv")
    assert {r["variant"] for r in curves} == {"A. w/o GDM", "A. w/ GDM"}
    assert sorted({int(r["epoch"]) for r in curves}) == [5, 10]
    times = _rows(d / "fig2_3_times.csv")
    assert all(int(r["seeds"]) == 2 and float(r["cpu_per_epoch_s"]) > 0 for r in times)
    for f in ("fig2_3_curves.png", "fig2_3_times.png"):
        assert (d / "figures" / f).is_file()
    rep = (d / "report.md").read_text()
    assert "paper: −8.3 %" in rep and "optimizer" in rep
    store = tmp_path / "d2rl-runs" / "quick"
    assert len(list(store.iterdir())) == 4                 # 2 variants x 2 seeds

    d = _run("d2rl-reward", tmp_path)
    assert {r["variant"] for r in _rows(d / "fig4_6_times.csv")} == set(d2rl.REWARD_LABELS
                                                                          .values())
    grads = _rows(d / "fig5_gradients.csv")
    assert {r["kind"] for r in grads} == {"weight", "bias"}
    assert all(float(r["mean_abs_grad"]) >= 0 for r in grads)
    assert any(p.name.startswith("fig5_gradients_") for p in (d / "figures").iterdir())
    # "A. w/ GDM" of d2rl-action is "Designed R." here: reused, 4 new variants x 2 seeds
    assert len(list(store.iterdir())) == 4 + 8
    assert "target: a cut of at least 50 %" in (d / "report.md").read_text()

    d = _run("d2rl-state", tmp_path)
    t = {r["variant"] for r in _rows(d / "fig8_9_times.csv")}
    assert len(t) == 10 and "Designed R. + S. Exp." in t
    assert len(list(store.iterdir())) == 12 + 10            # only the S. Exp. runs are new

    d = _run("d2rl-state-sweep", tmp_path)
    sweep = _rows(d / "fig7_sweep.csv")
    assert len(sweep) == 2 * (1 + 2)                         # (baseline + M x eta) per design
    assert (d / "figures" / "fig7_sweep.png").is_file()


def test_references_are_ordered(tiny):
    """On the evaluation draws: MRT equal ≤ MRT water-filled ≤ optimizer ≤ R′."""
    r = d2rl.references("quick")
    assert r["mrt_equal"] <= r["mrt_waterfill"] + 1e-9
    assert r["mrt_waterfill"] <= r["optimizer"] + 1e-9
    assert r["optimizer"] <= r["bound"] + 1e-9


def test_unknown_preset_is_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        d2rl.preset_config("fast")


def test_a_run_has_converged_only_if_it_stayed_in_the_band():
    assert d2rl.settled({"converged_epoch": 800, "epochs": 1000})
    assert not d2rl.settled({"converged_epoch": 801, "epochs": 1000})
    assert not d2rl.settled({"converged_epoch": None, "epochs": 1000})


def test_tail_rise_measures_the_climb_over_the_last_fifth():
    nan = float("nan")
    flat = [{"epoch": e, "ma_sum_rate": 2.0 if e else nan} for e in range(0, 101, 10)]
    assert d2rl.tail_rise(flat) == 0.0
    # linear 1 -> 2 over 100 epochs: value at epoch 80 is 1.8, last 2.0 -> +11.1 %
    lin = [{"epoch": e, "ma_sum_rate": 1 + e / 100} for e in range(0, 101, 10)]
    assert d2rl.tail_rise(lin) == pytest.approx(2.0 / 1.8 - 1)
    assert np.isnan(d2rl.tail_rise(lin[:1]))


@pytest.mark.parametrize("preset", sorted(d2rl.PRESETS))
def test_every_preset_gives_valid_configs_for_every_variant(preset):
    """Every figure's variants validate under every preset; ``quick`` and ``paper`` share the
    sample-efficient protocol, ``table2`` keeps Table II's collection and the paper's T."""
    from radiorl.agents.d2rl import D2RLConfig
    p = d2rl.PRESETS[preset]
    for reward in d2rl.REWARD_LABELS:
        for se in (None, d2rl.PAPER_STATE_EXPLORATION[reward]):
            cfg = d2rl.variant_config(preset, actor="gdm", reward=reward, state_exploration=se)
            for k, v in (d2rl.PROTOCOL.items() if preset != "table2" else ()):
                assert cfg[k] == v, (preset, k)
    d2rl.make_env(p["env"])                                   # env fields valid
    assert p["sweep_epochs"] <= p["train"]["epochs"]
    if preset == "table2":
        ref = D2RLConfig()
        cfg = d2rl.variant_config(preset)
        for k in ("n_envs", "updates_per_step", "epsilon", "noise_std", "state_loss_threshold"):
            assert cfg[k] == getattr(ref, k), k
        assert not p["env"].get("mmse_receiver", False)


TINY_BEST = dict(TINY, env={"n_dl": 2, "n_ul": 1, "mmse_receiver": True}, best_epochs=12)


def _tiny_agent_env():
    from radiorl.agents.d2rl import D2RLAgent, D2RLConfig
    env = d2rl.make_env(TINY_BEST["env"])
    agent = D2RLAgent(D2RLConfig(hidden=16, time_dim=4, batch_size=8), env.obs_dim,
                      env.action_dim)
    return agent, env


def test_grad_cosine_is_plus_or_minus_one_for_the_true_gradient_or_its_opposite():
    """A 'critic' that is C itself (or -C) has cosine 1 (-1) with the true action gradient."""
    from radiorl.schedulers.full_duplex import torch_action_sum_rate
    agent, env = _tiny_agent_env()
    obs, st = env.reset(seed=3, batch=8)

    class TrueC(torch.nn.Module):
        def __init__(self, sign):
            super().__init__()
            self.sign = sign

        def forward(self, o, a):
            c = self.sign * torch_action_sum_rate(env, st, a).float()
            return torch.stack([c, c + 1.0])                 # min = the first head

    assert d2rl.grad_cosine(agent, env, obs, st) == pytest.approx(
        d2rl.grad_cosine(agent, env, obs, st))               # deterministic
    agent.critic = TrueC(1.0)
    assert d2rl.grad_cosine(agent, env, obs, st) == pytest.approx(1.0, abs=1e-5)
    agent.critic = TrueC(-1.0)
    assert d2rl.grad_cosine(agent, env, obs, st) == pytest.approx(-1.0, abs=1e-5)


def test_exact_gradient_actor_climbs_and_is_seeded():
    cfg = dict(hidden=16, actor_layers=2, batch_size=16, actor_lr=3e-3, eval_batch=32)
    rows = d2rl.exact_gradient_actor(TINY_BEST["env"], cfg, updates=150, evals=5)
    assert [r["update"] for r in rows] == [30, 60, 90, 120, 150]
    assert rows[-1]["sum_rate"] > rows[0]["sum_rate"]
    assert d2rl.exact_gradient_actor(TINY_BEST["env"], cfg, updates=30, evals=1) == rows[:1]


def test_d2rl_best_through_the_cli(monkeypatch, tmp_path):
    monkeypatch.setitem(d2rl.PRESETS, "quick", TINY_BEST)
    d = _run("d2rl-best", tmp_path)
    t = {r["variant"]: r for r in _rows(d / "best_times.csv")}
    assert set(t) == {"A. w/o GDM", "A. w/ GDM", "A. w/o GDM, data-rich",
                      "A. w/ GDM, data-rich"}
    assert all(-1 <= float(r["critic_grad_cosine"]) <= 1 for r in t.values())
    assert len(_rows(d / "best_exact_gradient.csv")) >= 1
    rep = (d / "report.md").read_text()
    assert "Exact-gradient actor" in rep and "target is" in rep
    assert (d / "figures" / "best_curves.png").is_file()
    assert (d / "figures" / "best_exact_gradient.png").is_file()
    store = tmp_path / "d2rl-runs" / "quick"
    n = len(list(store.iterdir()))
    assert n == 4 * 2 + 1                                  # 4 variants x 2 seeds + exact run
    _run("d2rl-best", tmp_path)                            # everything reused
    assert len(list(store.iterdir())) == n


def test_d2rl_best_needs_a_data_rich_preset():
    with pytest.raises(ValueError, match="quick, paper"):
        d2rl.best("table2", "unused")


def test_d2rl_long_branches_from_a_shared_stem(monkeypatch, tmp_path):
    """d2rl-long: per seed one stem run to E1, then two branches from its checkpoint to E2
    (constant rates; rates x LONG_DECAY from E1 on): both branches repeat the stem's first E1
    epochs, the decayed one ends at the decayed rates; a repeat reuses every run."""
    monkeypatch.setitem(d2rl.PRESETS, "quick", dict(TINY_BEST, long=(6, 9)))
    monkeypatch.setattr(d2rl, "LONG", dict(actor="mlp", reward="designed", eval_every=3,
                                           threads=1))
    d = _run("d2rl-long", tmp_path)
    t = {r["variant"]: r for r in _rows(d / "long_times.csv")}
    const, dec = "constant learning rates", "learning rates x 0.25 from epoch 6"
    assert set(t) == {const, dec}
    assert "target is" in (d / "report.md").read_text()
    assert (d / "figures" / "long_curves.png").is_file()
    store = tmp_path / "d2rl-runs" / "quick"
    runs = sorted(store.iterdir())
    assert len(runs) == 2 * 3                                  # 2 seeds x (stem + 2 branches)
    base = d2rl.variant_config("quick", actor="mlp")["actor_lr"]
    for seed in (0, 1):
        branches = [Path(d2rl.run_task("quick", d, seed=seed, **over).run_dir) for over in (
            dict(d2rl.LONG, epochs=9),
            dict(d2rl.LONG, epochs=9, lr_decay_epoch=6, lr_decay_factor=0.25))]
        assert all(b in runs for b in branches)
        lrs = [torch.load(b / "checkpoints" / "last.pt", weights_only=True)["agent"][
            "optimizers"]["actor"]["param_groups"][0]["lr"] for b in branches]
        assert lrs == pytest.approx([base, 0.25 * base])
    # the constant branch (stem to 6, then resumed to 9) is the run trained to 9 in one go
    task = d2rl.run_task("quick", d, seed=0, **dict(d2rl.LONG, epochs=9))
    d2rl._run_task(d2rl.RunTask(task.config, task.env, str(tmp_path / "fresh")))
    skip = {"wall_s", "cpu_s", "wall_total_s", "cpu_total_s", "eval_s"}
    one_go, branched = _rows(tmp_path / "fresh" / "history.csv"), _rows(
        Path(task.run_dir) / "history.csv")
    assert len(one_go) == len(branched) == 9
    for a, b in zip(one_go, branched):
        assert {k: v for k, v in a.items() if k not in skip} == \
            {k: v for k, v in b.items() if k not in skip}
    _run("d2rl-long", tmp_path)                                # everything reused
    assert sorted(store.iterdir()) == runs


def test_d2rl_long_needs_a_long_preset():
    with pytest.raises(ValueError, match="quick, paper"):
        d2rl.long_runs("table2", "unused")

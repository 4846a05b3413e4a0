"""The marl-multicell experiments run end to end (with test-sized budgets patched in) and
reuse trained models across experiments."""
import csv

import pytest
from rich.console import Console

from radiorl.experiments import get_experiment
from radiorl.experiments import marl_multicell as mm
from radiorl.runtime.files import make_run_dir


@pytest.fixture
def tiny(monkeypatch):
    small = dict(envs=2, episode_slots=64, episodes=2, lr=1e-3, optimizer="adam", seq_len=32,
                 eval_every=2, eval_slots=100, epochs=1)
    monkeypatch.setitem(mm.TRAIN, "quick", {"conflict_graph": small, "cellular": small})
    monkeypatch.setitem(mm.EVAL, "quick", dict(slots=150, seeds=[0]))
    monkeypatch.setitem(mm.USE_PRETRAINED, "quick", False)


def test_fig7_and_table5_share_the_model_store(tmp_path, tiny):
    con = Console(file=open(tmp_path / "log.txt", "w"))
    fn, _, cfg_fn = get_experiment("marl-multicell-fig7")
    d1 = make_run_dir("marl-multicell-fig7", tmp_path, cfg_fn("quick"))
    summary = fn("quick", d1, workers=1, console=con)
    pols = {s["policy"] for s in summary}
    assert pols == {"gms", "llq", "qcsma", "mappo-shared", "mappo-separate"}
    assert (d1 / "figures").glob("*delay_cdf_light.png")
    rows = list(csv.DictReader(open(d1 / "conflict-8_results.csv")))
    assert {r["policy"] for r in rows} == pols
    store = tmp_path / "marl-multicell-models" / "quick"
    models = sorted(p.name for p in store.iterdir())
    assert len(models) == 2 and all("conflict-8-medium" in m for m in models)
    mtimes = {m: (store / m / "checkpoints" / "policy.pt").stat().st_mtime for m in models}
    fn4, _, _ = get_experiment("marl-multicell-table4")
    d4 = make_run_dir("marl-multicell-table4", tmp_path, {})
    rows4 = fn4("quick", d4, workers=1, console=con)
    assert {r["policy"] for r in rows4 if r["scenario"] == "conflict-8"} == pols
    assert all(r["ms_per_decision"] > 0 for r in rows4)
    for m in models:                                            # reused, not retrained
        assert (store / m / "checkpoints" / "policy.pt").stat().st_mtime == mtimes[m]
    assert "Table IV" in (d4 / "report.md").read_text()


def test_unknown_preset():
    _, _, cfg_fn = get_experiment("marl-multicell-fig8")
    with pytest.raises(ValueError, match="preset"):
        cfg_fn("huge")


def test_scalability_runs_one_shared_policy_on_larger_networks(tmp_path, tiny, monkeypatch):
    monkeypatch.setattr(mm, "SCALE_NETWORKS", ["cellular-19-random", "cellular-37-random"])
    con = Console(file=open(tmp_path / "log.txt", "w"))
    fn, _, cfg_fn = get_experiment("marl-multicell-scalability")
    d = make_run_dir("marl-multicell-scalability", tmp_path, cfg_fn("quick"))
    rows = fn("quick", d, workers=1, console=con)
    nets = {(r["network"], r["policy"]) for r in rows}
    assert ("cellular-37-random", "mappo-shared (19 cells)") in nets
    assert "Scalability" in (d / "report.md").read_text()


def test_quick_preset_uses_a_shipped_pretrained_policy_instead_of_training(tmp_path, tiny,
                                                                            monkeypatch):
    from radiorl import pretrained
    from radiorl.agents.mappo import MAPPOConfig
    from radiorl.agents.mappo.model import ActionSpec
    from radiorl.agents.mappo.train import build, save_checkpoint
    from radiorl.envs.scenarios import make_env
    monkeypatch.setitem(mm.USE_PRETRAINED, "quick", True)
    monkeypatch.setattr(pretrained, "HERE", tmp_path / "shipped")
    spec = ActionSpec.of(make_env("conflict-8", "medium", 1))
    cfg = MAPPOConfig(hidden=8)
    net, _ = build(spec, cfg)
    ck = save_checkpoint(tmp_path / "shipped" / "mappo-shared_conflict-8_medium.pt", net, None,
                         cfg, spec, "conflict-8", "medium", 3, [{"episode": 3, "slots": 9}])
    run_dir = tmp_path / "runs" / "x"
    con = Console(file=open(tmp_path / "log.txt", "w"))
    models = mm.get_models([("conflict-8", "medium", "shared"), ("conflict-8", "medium",
                                                                 "separate")],
                           "quick", run_dir, 1, con)
    assert models[("conflict-8", "medium", "shared")]["checkpoint"] == str(ck)
    assert models[("conflict-8", "medium", "shared")]["history"] == [{"episode": 3, "slots": 9}]
    store = mm.model_store(run_dir, "quick")
    assert [p.name.startswith("conflict-8-medium-separate") for p in store.iterdir()] == [True]

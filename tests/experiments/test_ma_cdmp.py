"""MA-CDMP experiments on a tiny preset: every figure writes its CSV, PNG and report, models
and data are shared through the store, and the CLI runs them."""
from __future__ import annotations

import csv

import pytest
import torch

from radiorl.experiments import ma_cdmp
from radiorl.experiments.registry import get_experiment

torch.set_num_threads(1)

TINY = {
    "dataset": {"preset": "quick", "episodes": 8, "frames": 60},
    "train": dict(epochs=1, steps_per_epoch=3, batch_size=16),
    "train_by_algo": {
        "macdmp": dict(dim=8, dim_mults=(1, 2), mlp_hidden=32, mlp_layers=1,
                       inverse_hidden=(32,), valid_batches=1),
        "madiffuser": dict(dim=8, dim_mults=(1, 2), valid_batches=1, horizon=4,
                           diffusion_steps=10),
        "madd": dict(dim=8, dim_mults=(1, 2), inverse_hidden=(16,), valid_batches=1,
                     horizon=4, diffusion_steps=10),
        "madiff": dict(dim=8, dim_mults=(1, 2), inverse_hidden=(16,), valid_batches=1,
                       horizon=4, diffusion_steps=10, max_team=3),
        "cql": dict(hidden=(16,)), "td3bc": dict(hidden=(16,)),
        "dt": dict(dt_context=4, dt_layers=1),
    },
    "eval": dict(frames=12, seeds=[0, 1], sampler="dpm1", sample_steps=2),
    "fig6_scenarios": ["adhoc-8-2:6", "adhoc-12"],
    "horizons": [4, 6],
    "guidance": [0.0, 0.1],
    "steps": [100, 3],
    "fig9_scenarios": ["adhoc-8-2:6"],
    "fig9_frames": 12,
    "scaling_nodes": [9, 30],
    "scaling_frames": 4,
    "realtime_scenarios": ["adhoc-8-2:6"],
    "realtime_frames": 6,
}


@pytest.fixture()
def tiny(monkeypatch):
    monkeypatch.setitem(ma_cdmp.PRESETS, "quick", TINY)
    monkeypatch.setattr(ma_cdmp, "PAPER_SCENARIOS", ["adhoc-8-2:6"])


def _rows(path):
    return list(csv.DictReader(open(path)))


def test_fig6_fig8_share_data_and_models(tiny, tmp_path):
    fn, _, _ = get_experiment("ma-cdmp-fig6")
    run = tmp_path / "ma-cdmp-fig6" / "a"
    (run / "figures").mkdir(parents=True)
    summary = fn("quick", run, workers=1)
    pols = {s["policy"] for s in summary}
    assert {"MA-CDMP", "MA-CDMP w/o MF", "behaviour ε=0", "load-aware"} <= pols
    assert {s["scenario"] for s in summary} == {"adhoc-8-2:6", "adhoc-12"}
    rows = _rows(run / "fig6.csv")
    assert len(rows) == 2 * len(pols) * 2                   # scenarios x policies x seeds
    assert (run / "figures" / "fig6_reward.png").is_file()
    report = (run / "report.md").read_text()
    assert "Quality target" in report and "beats w/o MF" in report
    store = tmp_path / "ma-cdmp-models" / "quick"
    models = sorted(p.name for p in store.iterdir())
    assert len(models) == 2 and len(list((tmp_path / "ma-cdmp-data").glob("*.h5"))) == 1
    stamp = {p: (p / "checkpoints" / "planner.pt").stat().st_mtime for p in store.iterdir()}
    fn8, _, _ = get_experiment("ma-cdmp-fig8")
    run8 = tmp_path / "ma-cdmp-fig8" / "a"
    (run8 / "figures").mkdir(parents=True)
    s8 = fn8("quick", run8, workers=1)
    assert {s["policy"] for s in s8} == {"ζ=0", "ζ=0.1"}
    assert (run8 / "figures" / "fig8_guidance.png").is_file()
    # the base model was reused, not retrained
    assert sorted(p.name for p in store.iterdir()) == models
    assert all((p / "checkpoints" / "planner.pt").stat().st_mtime == t for p, t in stamp.items())


def test_fig7_fig9_scaling_realtime(tiny, tmp_path):
    for name, png in [("ma-cdmp-fig7", "fig7_horizon.png"), ("ma-cdmp-fig9", "fig9_steps.png"),
                      ("ma-cdmp-scaling", "scaling_latency.png"),
                      ("ma-cdmp-realtime", None)]:
        fn, _, _ = get_experiment(name)
        run = tmp_path / name / "a"
        (run / "figures").mkdir(parents=True)
        summary = fn("quick", run, workers=1)
        assert summary, name
        assert (run / "report.md").is_file()
        if png:
            assert (run / "figures" / png).is_file(), name
    s7 = _rows(tmp_path / "ma-cdmp-fig7" / "a" / "fig7_summary.csv")
    assert {r["policy"] for r in s7} == {"H=4", "H=6"}
    s9 = _rows(tmp_path / "ma-cdmp-fig9" / "a" / "fig9_summary.csv")
    assert {r["policy"] for r in s9} == {"K=100 (DDPM)", "K=3 (DPM-Solver-1)"}
    t = {r["policy"]: float(r["ms_per_decision"]) for r in s9}
    assert t["K=100 (DDPM)"] > t["K=3 (DPM-Solver-1)"]      # fewer steps, less time
    sc = _rows(tmp_path / "ma-cdmp-scaling" / "a" / "scaling_summary.csv")
    assert {r["scenario"] for r in sc} == {"adhoc-9-4:5", "adhoc-30"}
    rt = (tmp_path / "ma-cdmp-realtime" / "a" / "report.md").read_text()
    assert "real-time" in rt and "ms per frame" in rt


def test_fig3_fig4_fig5_compare_the_offline_learners(tiny, tmp_path, monkeypatch):
    """The baseline comparison on the tiny preset: every method trains through the shared
    store, Fig. 3 reads the per-epoch evaluation of every method, Figs. 4 and 5 evaluate the
    final models (ideal and limited RF) and say who wins."""
    from radiorl.experiments import ma_cdmp_baselines as cmp
    tiny_eval = {**TINY["train"], "eval_every": 1, "eval_scenarios": ("adhoc-8-2:6",),
                 "eval_frames": 6}
    monkeypatch.setitem(ma_cdmp.PRESETS["quick"], "train", tiny_eval)
    monkeypatch.setitem(cmp.PRESETS, "quick", {"fig4_scenarios": ["adhoc-8-2:6"],
                                               "fig5_scenarios": ["adhoc-8-2:6"]})
    have_d3 = True
    try:
        import d3rlpy  # noqa: F401
    except ImportError:
        have_d3 = False
        monkeypatch.setattr(cmp, "DTDE", {k: v for k, v in cmp.DTDE.items()
                                          if v.get("algo") not in ("cql", "td3bc", "dt")})
    labels = list(cmp.DTDE)
    assert have_d3 or labels == ["MA-CDMP", "MA-Diffuser", "MA-DD"]
    runs = {}
    for name in ("ma-cdmp-fig3", "ma-cdmp-fig4", "ma-cdmp-fig5"):
        fn, _, _ = get_experiment(name)
        runs[name] = tmp_path / name / "a"
        (runs[name] / "figures").mkdir(parents=True)
        fn("quick", runs[name], workers=1)
        assert "MA-CDMP" in (runs[name] / "report.md").read_text()
    f3 = _rows(runs["ma-cdmp-fig3"] / "fig3.csv")
    assert {r["method"] for r in f3} == set(labels)
    assert all(r["epoch"] == "1" for r in f3)
    assert (runs["ma-cdmp-fig3"] / "figures" / "fig3_training.png").is_file()
    f4 = _rows(runs["ma-cdmp-fig4"] / "fig4.csv")
    assert {r["policy"] for r in f4} == set(labels)
    assert {r["rf"] for r in f4} == {"ideal", "limited"}
    assert {r["scenario"] for r in f4} == {"adhoc-8-2:6", "adhoc-8-2:6-limited"}
    report4 = (runs["ma-cdmp-fig4"] / "report.md").read_text()
    assert "Who wins" in report4 and "limited RF, packet loss" in report4
    assert (runs["ma-cdmp-fig4"] / "figures" / "fig4_throughput_mbps.png").is_file()
    f5 = _rows(runs["ma-cdmp-fig5"] / "fig5.csv")
    assert {r["policy"] for r in f5} == {"MA-CDMP", "MADiff"}
    # one model per learner in the store, reused across the three figures
    store = tmp_path / "ma-cdmp-models" / "quick"
    assert len(list(store.iterdir())) == len(labels) + 1


def test_unknown_preset_is_refused():
    _, _, config = get_experiment("ma-cdmp-fig6")
    with pytest.raises(ValueError, match="unknown preset"):
        config("fast")


def test_who_wins_counts_ties_and_losses():
    """The comparison reports: a better mean wins, means within 0.5 % tie, and MA-CDMP losing
    is said plainly."""
    from radiorl.experiments.ma_cdmp_baselines import _verdicts
    st = {("ideal", "MA-CDMP"): {"mean_reward": (-5.13, 0), "throughput_mbps": (2.6001, 0),
                                 "mean_delay": (5.27, 0), "packet_loss_rate": (0.0, 0)},
          ("ideal", "MADiff"): {"mean_reward": (-4.62, 0), "throughput_mbps": (2.6003, 0),
                                "mean_delay": (4.76, 0), "packet_loss_rate": (0.01, 0)}}
    lines = _verdicts(st, ["MA-CDMP", "MADiff"], ["ideal"]).splitlines()
    by = {m: next(x for x in lines if m in x) for m in ("reward", "throughput", "delay", "loss")}
    assert "best **MADiff**" in by["reward"] and "does not win" in by["reward"]
    assert "does not win" in by["delay"]
    assert "MA-CDMP wins (tie)" in by["throughput"]
    assert "best **MA-CDMP**" in by["loss"] and "MA-CDMP wins" in by["loss"] \
        and "tie" not in by["loss"]


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_fig3_learners_evaluate_during_training_in_every_preset(preset):
    """Fig. 3 is the reward during training: with each preset's full config every DTDE learner
    of the figure evaluates on the paper scenarios, and the budget is the preset's."""
    from radiorl.experiments.ma_cdmp_baselines import DTDE
    p = ma_cdmp.PRESETS[preset]
    for label, variant in DTDE.items():
        algo = variant.get("algo", "macdmp")
        cfg = ma_cdmp.full_config(algo, {**p["train"], **p.get("train_by_algo", {}).get(algo, {})})
        assert cfg["eval_every"] >= 1, (preset, label)
        assert list(cfg["eval_scenarios"]) == ma_cdmp.PAPER_SCENARIOS, (preset, label)
        assert cfg["epochs"] * cfg["steps_per_epoch"] == (100_000 if preset == "paper" else 2_000)

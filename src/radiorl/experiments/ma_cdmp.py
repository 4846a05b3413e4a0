"""Experiments of Zhang et al., "MA-CDMP" (``papers/ma-cdmp.txt``, Sec. VI): one function per
figure, each with a ``quick`` and a ``paper`` preset (``radiorl run ma-cdmp-<name>``).

=========  ==========================================================================
name       what it reproduces
=========  ==========================================================================
fig6       MA-CDMP vs MA-CDMP w/o MF on 8 and 9 nodes (unseen random topologies) and on
           larger networks never seen in training; the dataset's behaviour policies and
           the pure heuristics as references (the quality target of the issue)
fig7       planning horizon H (one model per H)
fig8       guidance scale ζ (one model, ζ varied at execution)
fig9       diffusion steps with first-order DPM-Solver from the K = 100 model (reward and
           decision time)
scaling    decision latency per agent and QoS for 100 and 1,000 nodes
realtime   real-time planners (the MLP denoiser with 5 DPM-Solver steps, with and without
           warm start; the U-Net with one DPM-Solver step) next to the faithful one:
           reward, QoS and time per frame
=========  ==========================================================================

Every point is the mean ± std over 3 scenario seeds (random topologies and traffic never in
the dataset: the dataset's seeds are ``seed · 1,000,003 + task``, the test seeds 0, 1, 2 are
the evaluation runner's), as the paper reports. Data and models live in a store shared by
the experiments of one output root: ``<out>/ma-cdmp-data/<preset>.h5`` (``radiorl collect``
with the preset of the same name) and ``<out>/ma-cdmp-models/<preset>/<name>-<hash>/`` (one
training run per distinct full config, whatever the experiment calls it; resumed if
interrupted, reused otherwise).

Presets:

* ``quick``: the 32-trajectory dataset; models trained 8 epochs x 250 steps (2,000 steps,
  1/50 of the paper's budget), with one 200-frame evaluation episode per paper scenario
  after every epoch (evaluation seeds, never the test seeds) and the best evaluated epoch
  kept (``select_checkpoint = "best_eval"``: on this data the evaluation reward falls as
  training goes on, e.g. −6.05 / −7.95 / −9.51 after 500 / 1,000 / 1,500 steps);
  300-frame test episodes planned with 10 steps of first-order
  DPM-Solver (the faithful K = 100 DDPM planner is used in ``paper``; Fig. 9 runs it on two
  scenarios with 200-frame episodes). Timed decisions share the 2 cores with a second worker.
* ``paper``: the 1,000-trajectory dataset; 100 epochs x 1,000 steps; 1,000-frame (5 s) test
  episodes with the faithful planner (K = 100 DDPM, classifier guidance).

Reported as measured, including where MA-CDMP falls short of a heuristic.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from radiorl.evaluation.report import summarize
from radiorl.evaluation.runner import evaluate
from radiorl.experiments.registry import register
from radiorl.runtime.executor import run_tasks
from radiorl.runtime.files import append_report, write_csv

PAPER_SCENARIOS = ["adhoc-8-2:6", "adhoc-8-4:4", "adhoc-9-2:7", "adhoc-9-4:5"]
BEHAVIOURS = ["mixture:0", "mixture:0.1", "mixture:0.3", "mixture:1"]
HEURISTICS = ["equal", "proportional", "load-aware"]

PRESETS = {
    "quick": {
        "dataset": {"preset": "quick"},
        "train": dict(epochs=8, steps_per_epoch=250, eval_every=1,
                      select_checkpoint="best_eval", eval_scenarios=tuple(PAPER_SCENARIOS),
                      eval_frames=200),
        # MA-DT's transformer with 128-wide embeddings (d3rlpy default 256: about 1.5 steps/s
        # at batch 64 on one core, 22 min for the quick budget alone)
        "train_by_algo": {"dt": dict(hidden=(128, 128))},
        "eval": dict(frames=300, seeds=[0, 1, 2], sampler="dpm1", sample_steps=10),
        "fig6_scenarios": PAPER_SCENARIOS + ["adhoc-12", "adhoc-16"],
        "fig9_scenarios": PAPER_SCENARIOS[:2],
        "fig9_frames": 200,
        "horizons": [4, 8, 16],
        "guidance": [0.0, 0.1, 1.0, 10.0],
        "steps": [100, 20, 10, 5],
        "scaling_nodes": [9, 100, 1000],
        "scaling_frames": 100,
        "realtime_scenarios": PAPER_SCENARIOS[:2],
        "realtime_frames": 200,
    },
    "paper": {
        "dataset": {"preset": "paper"},
        # Fig. 3 plots the reward during training: an evaluation point every 2nd epoch (50
        # points; 10 guided DPM-Solver-1 steps, the planners' eval_sampler) keeps its cost at
        # about 0.6 CPU-h per diffusion model; the last epoch is kept, as in the paper.
        "train": dict(epochs=100, steps_per_epoch=1000, eval_every=2,
                      eval_scenarios=tuple(PAPER_SCENARIOS), eval_frames=200),
        # the same 128-wide MA-DT as the quick preset (d3rlpy's 256-wide default: about 15
        # CPU-hours for the paper budget alone; BENCHMARKS.md)
        "train_by_algo": {"dt": dict(hidden=(128, 128)), "madiff": dict(eval_every=0)},
        "eval": dict(frames=1000, seeds=[0, 1, 2], sampler="ddpm", sample_steps=None),
        "fig6_scenarios": PAPER_SCENARIOS + ["adhoc-12", "adhoc-16", "adhoc-25"],
        "fig9_scenarios": PAPER_SCENARIOS,
        "fig9_frames": 1000,
        "horizons": [4, 8, 16, 32],
        "guidance": [0.0, 0.01, 0.1, 1.0, 10.0],
        "steps": [100, 50, 20, 10, 5, 3],
        "scaling_nodes": [9, 100, 1000],
        "scaling_frames": 200,
        "realtime_scenarios": PAPER_SCENARIOS,
        "realtime_frames": 1000,
    },
}


def preset_config(preset: str) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {sorted(PRESETS)}")
    return {"preset": preset, **PRESETS[preset]}


# --------------------------------------------------------------------------- data and models
def store_root(run_dir) -> Path:
    return Path(run_dir).parent.parent


def get_dataset(preset: str, run_dir, workers: int, console: Console) -> Path:
    """The preset's offline dataset (collected once per output root)."""
    from radiorl.data.collect import collect, preset_config as collect_config
    spec = dict(PRESETS[preset]["dataset"])
    name = spec.pop("preset")
    tag = name + "".join(f"-{k}{v}" for k, v in sorted(spec.items()))
    path = store_root(run_dir) / "ma-cdmp-data" / f"{tag}.h5"
    if not path.exists():
        console.print(f"collecting the {tag} dataset into {path}")
        from radiorl.data.hdf5 import partial_path
        collect(path, collect_config(name, **spec), workers=workers,
                resume=partial_path(path).exists())
    return path


@dataclass
class ModelTask:
    dataset: str
    config: dict
    run_dir: str
    algo: str = "macdmp"


def _train_task(task: ModelTask) -> str:
    """Train (or resume, or reuse) one offline learner; returns its final checkpoint."""
    import torch
    from radiorl.agents.offline.registry import get_learner
    torch.set_num_threads(1)
    cks = Path(task.run_dir) / "checkpoints"
    final = _final_checkpoint(cks)
    if final is None:
        learner = get_learner(task.algo)
        cfg = learner.config_cls()(**{**task.config, "threads": 1}).validate()
        resume = task.run_dir if (cks / "last.pt").exists() else None
        res = learner.train(task.dataset, cfg, task.run_dir, resume=resume,
                            show_progress=False, log=lambda *a: None)
        final = Path(res["checkpoint"])
    return str(final)


#: Names of the final checkpoint of a training run (diffusion planners / d3rlpy learners).
FINAL_NAMES = ("planner.pt", "policy.pt", "final.pt")


def _final_checkpoint(cks: Path) -> Path | None:
    return next((cks / n for n in FINAL_NAMES if (cks / n).is_file()), None)


def full_config(algo: str, overrides: dict) -> dict:
    """The learner's complete, validated config for ``overrides`` (the store's key)."""
    from radiorl.agents.offline.registry import get_learner
    learner = get_learner(algo)
    return learner.config_cls()(**{**overrides, **learner.fixed, "threads": 1}
                                ).validate().to_dict()


def get_models(variants: dict[str, dict], preset: str, run_dir, workers: int,
               console: Console) -> dict[str, str]:
    """Train (or reuse) one model per ``{name: config overrides}`` (an ``"algo"`` key picks
    the offline learner, default ``macdmp``). The preset's ``train`` fields (budget, evaluation
    and checkpoint selection) apply to every learner, its ``train_by_algo[algo]`` fields to
    that learner only. Returns ``{name: final checkpoint}``."""
    data = get_dataset(preset, run_dir, workers, console)
    store = store_root(run_dir) / "ma-cdmp-models" / preset
    existing = _trained_configs(store)
    tasks = []
    for name, over in variants.items():
        over = dict(over)
        algo = over.pop("algo", "macdmp")
        cfg = {**PRESETS[preset]["train"],
               **PRESETS[preset].get("train_by_algo", {}).get(algo, {}), **over}
        full = full_config(algo, cfg)
        h = hashlib.sha1(json.dumps([algo, full], sort_keys=True).encode()).hexdigest()[:8]
        same = [d for d, a, c in existing if a == algo and c == full]   # trained under any name
        tasks.append(ModelTask(str(data), {**cfg, **get_learner_fixed(algo)},
                               str(same[0] if same else store / f"{name}-{h}"), algo))
    todo = [t for t in tasks if _final_checkpoint(Path(t.run_dir) / "checkpoints") is None]
    if todo:
        console.print(f"training {len(todo)} model(s) into {store} "
                      f"({len(tasks) - len(todo)} reused)")
    paths = run_tasks(_train_task, tasks, workers=workers, description="train offline models")
    return dict(zip(variants, paths))


def get_learner_fixed(algo: str) -> dict:
    from radiorl.agents.offline.registry import get_learner
    return dict(get_learner(algo).fixed)


def _trained_configs(store: Path) -> list[tuple[Path, str, dict]]:
    """``(run folder, algo, full config)`` of every finished model in the store (read with
    ``weights_only=True``; unreadable files are skipped)."""
    import torch
    out = []
    for run in sorted(Path(store).glob("*/checkpoints")):
        ck = _final_checkpoint(run)
        if ck is None:
            continue
        try:
            blob = torch.load(ck, map_location="cpu", weights_only=True)
            out.append((run.parent, _algo_name(blob), blob["config"]))
        except Exception:                                   # noqa: BLE001
            continue
    return out


def _algo_name(blob: dict) -> str:
    """The registry name of a checkpoint's learner (d3rlpy checkpoints carry ``method``)."""
    algo = blob.get("algo")
    if algo == "d3rlpy":
        return str(blob.get("config", {}).get("method"))
    return str(algo)


def planner_name(checkpoint: str, **settings) -> str:
    """``macdmp:<checkpoint>?key=value&...`` (``None`` values left to the model's default)."""
    q = "&".join(f"{k}={v}" for k, v in settings.items() if v is not None)
    return f"macdmp:{checkpoint}" + (f"?{q}" if q else "")


def _eval_settings(preset: str, **over) -> dict:
    ev = PRESETS[preset]["eval"]
    return {"sampler": ev["sampler"], "sample_steps": ev["sample_steps"], **over}


def run_policies(scenarios: list[str], policies: dict[str, str], preset: str, workers: int,
                 frames: int | None = None, seeds: list[int] | None = None) -> list[dict]:
    """Evaluate ``{label: policy name}`` on every scenario (medium load); per-seed rows with
    a ``label`` column."""
    ev = PRESETS[preset]["eval"]
    rows = []
    back = {v: k for k, v in policies.items()}
    for sc in scenarios:
        r, _ = evaluate(sc, list(policies.values()), ["medium"], seeds or ev["seeds"],
                        frames or ev["frames"], workers=workers)
        for x in r:
            x["label"] = back[x["policy"]]
            x["policy"] = x["label"]
        rows += r
    return rows


def _summary(rows: list[dict]) -> list[dict]:
    return summarize(rows)


def _cell(s: dict, key: str, fmt: str, scale: float = 1.0) -> str:
    v, sd = s[key] * scale, s.get(f"{key}_std", 0.0) * scale
    return f"{v:{fmt}} ± {sd:{fmt}}"


def _md_table(summary: list[dict], title: str, labels: list[str]) -> str:
    out = [f"## {title}\n", "| scenario | policy | mean reward | throughput (Mbps) | "
           "mean delay (ms) | packet loss (%) | ms / frame |", "|---|---|---|---|---|---|---|"]
    for s in sorted(summary, key=lambda s: (s["scenario"], labels.index(s["policy"])
                                            if s["policy"] in labels else 99)):
        delay = (f"unstable ({s['unstable_runs']}/{s['runs']})" if s["unstable_runs"] else
                 f"{s['mean_delay']:.2f} ± {s['mean_delay_std']:.2f}")
        out.append(f"| {s['scenario']} | {s['policy']} | {_cell(s, 'mean_reward', '.2f')} | "
                   f"{_cell(s, 'throughput_mbps', '.3f')} | {delay} | "
                   f"{_cell(s, 'packet_loss_rate', '.2f', 100)} | {s['ms_per_decision']:.2f} |")
    return "\n".join(out) + "\n"


def _write(run_dir, name: str, rows: list[dict], summary: list[dict], md: str,
           console: Console) -> None:
    run_dir = Path(run_dir)
    write_csv(run_dir / f"{name}.csv", rows)
    write_csv(run_dir / f"{name}_summary.csv", summary)
    append_report(run_dir, md + "\n")
    console.print(md)


def _plot(path, xs, series: dict[str, tuple], xlabel: str, ylabel: str, title: str,
          logx: bool = False, categorical: bool = False):
    """Line plot with error bars: ``series[label] = (means, stds)`` over ``xs``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from radiorl.evaluation.report import _save
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    pos = np.arange(len(xs)) if categorical else np.asarray(xs, float)
    for label, (m, s) in series.items():
        ax.errorbar(pos, m, yerr=s, marker="o", capsize=3, label=label)
    if categorical:
        ax.set_xticks(pos)
        ax.set_xticklabels([str(x) for x in xs], rotation=20)
    if logx:
        ax.set_xscale("symlog", linthresh=min([x for x in xs if x > 0] or [1]))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


def _mean_over(rows, label, key="mean_reward", scenario=None):
    v = [r[key] for r in rows if r["label"] == label and (scenario is None
                                                          or r["scenario"] == scenario)]
    return float(np.mean(v)), float(np.std(v))


# --------------------------------------------------------------------------- experiments
@register("ma-cdmp-fig6", "MA-CDMP vs w/o mean field on 8, 9 and more nodes (Fig. 6)",
          preset_config)
def fig6(preset, run_dir, workers=2, console=None):
    console = console or Console()
    cfg = PRESETS[preset]
    models = get_models({"macdmp": {}, "macdmp-womf": {"mean_field": False}}, preset, run_dir,
                        workers, console)
    st = _eval_settings(preset)
    pols = {"MA-CDMP": planner_name(models["macdmp"], **st),
            "MA-CDMP w/o MF": planner_name(models["macdmp-womf"], **st),
            **{b.replace("mixture:", "behaviour ε="): b for b in BEHAVIOURS},
            **{h: h for h in HEURISTICS}}
    rows = run_policies(cfg["fig6_scenarios"], pols, preset, workers)
    summary = _summary(rows)
    labels = list(pols)
    md = _md_table(summary, "Fig. 6: MA-CDMP vs w/o MF (medium load, mean ± std over seeds)",
                   labels)
    md += "\n" + _fig6_verdict(summary, cfg["fig6_scenarios"])
    _write(run_dir, "fig6", rows, summary, md, console)
    scen = cfg["fig6_scenarios"]
    series = {lab: ([_mean_over(rows, lab, scenario=s)[0] for s in scen],
                    [_mean_over(rows, lab, scenario=s)[1] for s in scen])
              for lab in ["MA-CDMP", "MA-CDMP w/o MF", "behaviour ε=0", "load-aware"]}
    _plot(Path(run_dir) / "figures" / "fig6_reward.png", scen, series, "scenario",
          "average reward (−ms)", "MA-CDMP vs w/o mean field", categorical=True)
    return summary


def _fig6_verdict(summary, scenarios) -> str:
    by = {(s["scenario"], s["policy"]): s for s in summary}
    out = ["### Quality target (Sec. VI-B), checked per scenario\n"]
    for sc in scenarios:
        m = by.get((sc, "MA-CDMP"))
        if m is None:
            continue
        beh = [by[(sc, b.replace("mixture:", "behaviour ε="))] for b in BEHAVIOURS
               if (sc, b.replace("mixture:", "behaviour ε=")) in by]
        w = by.get((sc, "MA-CDMP w/o MF"))
        best = max(beh, key=lambda s: s["mean_reward"]) if beh else None
        ok_b = best is not None and m["mean_reward"] > best["mean_reward"] and \
            m["mean_delay"] < min(b["mean_delay"] for b in beh) and \
            m["packet_loss_rate"] <= min(b["packet_loss_rate"] for b in beh)
        ok_w = w is not None and m["mean_reward"] > w["mean_reward"]
        b_txt = f"{best['policy']}: {best['mean_reward']:.2f}" if best else "-"
        w_txt = f"{w['mean_reward']:.2f}" if w else "-"
        out.append(f"- {sc}: MA-CDMP reward {m['mean_reward']:.2f}; best dataset behaviour "
                   f"({b_txt}) → beats every behaviour in reward, delay and loss: "
                   f"**{'yes' if ok_b else 'no'}**; w/o MF {w_txt} → beats w/o MF: "
                   f"**{'yes' if ok_w else 'no'}**")
    return "\n".join(out) + "\n"


@register("ma-cdmp-fig7", "planning horizon H (Fig. 7)", preset_config)
def fig7(preset, run_dir, workers=2, console=None):
    console = console or Console()
    cfg = PRESETS[preset]
    hs = cfg["horizons"]
    models = get_models({f"macdmp-h{h}": {"horizon": h} for h in hs}, preset, run_dir, workers,
                        console)
    st = _eval_settings(preset)
    pols = {f"H={h}": planner_name(models[f"macdmp-h{h}"], **st) for h in hs}
    rows = run_policies(PAPER_SCENARIOS, pols, preset, workers)
    summary = _summary(rows)
    md = _md_table(summary, "Fig. 7: planning horizon H", list(pols))
    md += "\n| H | mean reward over the four scenarios |\n|---|---|\n" + "\n".join(
        f"| {h} | {_mean_over(rows, f'H={h}')[0]:.2f} ± {_mean_over(rows, f'H={h}')[1]:.2f} |"
        for h in hs) + "\n"
    _write(run_dir, "fig7", rows, summary, md, console)
    _plot(Path(run_dir) / "figures" / "fig7_horizon.png", hs,
          {"MA-CDMP": ([_mean_over(rows, f"H={h}")[0] for h in hs],
                       [_mean_over(rows, f"H={h}")[1] for h in hs])},
          "planning horizon H (frames)", "average reward (−ms)", "planning horizon")
    return summary


@register("ma-cdmp-fig8", "guidance scale zeta (Fig. 8)", preset_config)
def fig8(preset, run_dir, workers=2, console=None):
    console = console or Console()
    cfg = PRESETS[preset]
    models = get_models({"macdmp": {}}, preset, run_dir, workers, console)
    zs = cfg["guidance"]
    pols = {f"ζ={z:g}": planner_name(models["macdmp"], **_eval_settings(preset, guidance=z))
            for z in zs}
    rows = run_policies(PAPER_SCENARIOS, pols, preset, workers)
    summary = _summary(rows)
    md = _md_table(summary, "Fig. 8: guidance scale ζ", list(pols))
    _write(run_dir, "fig8", rows, summary, md, console)
    _plot(Path(run_dir) / "figures" / "fig8_guidance.png", zs,
          {"MA-CDMP": ([_mean_over(rows, f"ζ={z:g}")[0] for z in zs],
                       [_mean_over(rows, f"ζ={z:g}")[1] for z in zs])},
          "guidance scale ζ", "average reward (−ms)", "guidance scale", logx=True)
    return summary


@register("ma-cdmp-fig9", "diffusion steps with DPM-Solver from a K = 100 model (Fig. 9)",
          preset_config)
def fig9(preset, run_dir, workers=2, console=None):
    console = console or Console()
    cfg = PRESETS[preset]
    models = get_models({"macdmp": {}}, preset, run_dir, workers, console)
    steps = cfg["steps"]
    pols = {}
    for n in steps:
        st = dict(sampler="ddpm") if n == 100 else dict(sampler="dpm1", sample_steps=n)
        pols[f"K={n}" + (" (DDPM)" if n == 100 else " (DPM-Solver-1)")] = \
            planner_name(models["macdmp"], **st)
    rows = run_policies(cfg["fig9_scenarios"], pols, preset, workers, frames=cfg["fig9_frames"])
    summary = _summary(rows)
    md = _md_table(summary, "Fig. 9: diffusion steps (DPM-Solver-1 from the K = 100 model)",
                   list(pols))
    _write(run_dir, "fig9", rows, summary, md, console)
    labs = list(pols)
    _plot(Path(run_dir) / "figures" / "fig9_steps.png", steps,
          {"reward": ([_mean_over(rows, lab)[0] for lab in labs],
                      [_mean_over(rows, lab)[1] for lab in labs])},
          "diffusion steps K", "average reward (−ms)", "sampling steps", logx=True)
    _plot(Path(run_dir) / "figures" / "fig9_time.png", steps,
          {"decision time": ([_mean_over(rows, lab, "ms_per_decision")[0] for lab in labs],
                             [_mean_over(rows, lab, "ms_per_decision")[1] for lab in labs])},
          "diffusion steps K", "ms per frame (all agents)", "decision time", logx=True)
    return summary


@register("ma-cdmp-scaling", "decision latency per agent and QoS for 100 and 1,000 nodes",
          preset_config)
def scaling(preset, run_dir, workers=2, console=None):
    console = console or Console()
    cfg = PRESETS[preset]
    models = get_models({"macdmp": {}, "macdmp-realtime": _realtime_overrides()}, preset,
                        run_dir, workers, console)
    rows = []
    for n in cfg["scaling_nodes"]:
        sc = "adhoc-9-4:5" if n == 9 else f"adhoc-{n}"
        pols = {"MA-CDMP (U-Net)": planner_name(models["macdmp"], **_eval_settings(preset)),
                "MA-CDMP (real-time)": planner_name(models["macdmp-realtime"]),
                "load-aware": "load-aware", "proportional": "proportional"}
        r = run_policies([sc], pols, preset, workers=1, frames=cfg["scaling_frames"],
                         seeds=[0])
        for x in r:
            x["nodes"] = n
            x["ms_per_agent"] = x["ms_per_decision"] / n
        rows += r
    summary = _summary(rows)
    for s in summary:
        s["nodes"] = next(r["nodes"] for r in rows if r["scenario"] == s["scenario"])
        s["ms_per_agent"] = s["ms_per_decision"] / s["nodes"]
    md = _md_table(summary, f"Scaling: QoS and decision time (one seed; U-Net planner: "
                            f"{_sampler_text(preset)})",
                   ["MA-CDMP (U-Net)", "MA-CDMP (real-time)", "load-aware", "proportional"])
    md += "\n| nodes | planner | ms per frame (all agents) | ms per agent | vs 9 nodes |\n" \
          "|---|---|---|---|---|\n"
    for lab in ("MA-CDMP (U-Net)", "MA-CDMP (real-time)"):
        base = next(s["ms_per_agent"] for s in summary if s["policy"] == lab and
                    s["nodes"] == cfg["scaling_nodes"][0])
        for s in sorted((s for s in summary if s["policy"] == lab), key=lambda s: s["nodes"]):
            md += (f"| {s['nodes']} | {lab} | {s['ms_per_decision']:.1f} | "
                   f"{s['ms_per_agent']:.3f} | {s['ms_per_agent'] / base:.2f}x |\n")
    _write(run_dir, "scaling", rows, summary, md, console)
    ns = cfg["scaling_nodes"]
    series = {lab: ([next(s["ms_per_agent"] for s in summary if s["policy"] == lab and
                          s["nodes"] == n) for n in ns], [0.0] * len(ns))
              for lab in ("MA-CDMP (U-Net)", "MA-CDMP (real-time)")}
    _plot(Path(run_dir) / "figures" / "scaling_latency.png", ns, series, "nodes",
          "decision time per agent (ms)", "per-agent decision cost", logx=True)
    return summary


def _sampler_text(preset: str) -> str:
    ev = PRESETS[preset]["eval"]
    return ("K = 100 DDPM with guidance" if ev["sampler"] == "ddpm" else
            f"{ev['sampler']} x {ev['sample_steps']} steps with guidance")


def _realtime_overrides() -> dict:
    from radiorl.agents.macdmp.model import PRESETS as TRAIN_PRESETS
    return dict(TRAIN_PRESETS["realtime"])


@register("ma-cdmp-realtime", "real-time planner vs the faithful planner: reward, QoS, time",
          preset_config)
def realtime(preset, run_dir, workers=2, console=None):
    console = console or Console()
    cfg = PRESETS[preset]
    models = get_models({"macdmp": {}, "macdmp-realtime": _realtime_overrides()}, preset,
                        run_dir, workers, console)
    faithful = "MA-CDMP (faithful: K = 100 DDPM, guided)"
    pols = {faithful: planner_name(models["macdmp"], sampler="ddpm"),
            "MA-CDMP (U-Net, DPM-Solver-1 x 10)": planner_name(models["macdmp"], sampler="dpm1",
                                                              sample_steps=10),
            "MA-CDMP (U-Net, 1 DPM-Solver step, unguided)": planner_name(
                models["macdmp"], sampler="dpm1", sample_steps=1, guidance=0),
            "MA-CDMP (real-time)": planner_name(models["macdmp-realtime"]),
            "MA-CDMP (real-time, warm start k0=30)": planner_name(models["macdmp-realtime"],
                                                                  warm_start=30)}
    rows = run_policies(cfg["realtime_scenarios"], pols, preset, workers=1,
                        frames=cfg["realtime_frames"])
    summary = _summary(rows)
    md = _md_table(summary, "Real-time vs faithful planner (ms / frame: all agents, one core)",
                   list(pols))
    f = _mean_over(rows, faithful)[0]
    lines = []
    for lab in list(pols)[2:]:
        r = _mean_over(rows, lab)[0]
        t = max(s["ms_per_decision"] for s in summary if s["policy"] == lab)
        lines.append(f"- {lab}: mean reward {r:.2f} vs faithful {f:.2f} "
                     f"({100 * (r - f) / abs(f) if f else 0:+.1f} %), slowest scenario "
                     f"{t:.2f} ms per frame (targets: ≤ 5 ms, at most 5 % lower reward)")
    md += "\n" + "\n".join(lines) + "\n"
    _write(run_dir, "realtime", rows, summary, md, console)
    return summary

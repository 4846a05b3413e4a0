"""Experiments of Zhang & Guo, "Traffic-driven MARL for multi-cell scheduling"
(``papers/marl-multicell.txt``, Sec. IV): one function per figure or table, each with a
``quick`` and a ``paper`` preset (``radiorl run marl-multicell-<name> --preset quick|paper``).

=================  ====================================================================
name               what it reproduces
=================  ====================================================================
fig7               delay CDF, 8-device conflict graph, light load
fig8               mean delay vs load, conflict graph (GMS, LLQ, Q-CSMA, MAPPO x 2)
fig9               mean delay vs load, hexagonal 19-cell network (FP, WMMSE, Fair-ITLinQ, LLQ)
fig10              mean delay vs load, random 19-cell network
fig11              delay CDF, random network, medium load
table4             information used and execution time per decision of every method
fig12-13           training curves (reward per slot) of both modes, conflict graph and cellular
table5             train/test load mismatch (trained at one load, tested at every load)
scalability        shared policy trained on 19 cells, tested on 37 and 61 cells
=================  ====================================================================

Trained policies come from a model store shared by the experiments of one output root
(``<out>/marl-multicell-models/<preset>/``): a model is trained once per (scenario, training
load, mode, training config) and reused. Presets:

* ``quick``: one model per scenario and mode at the medium load, tested at every load; one
  seed, 2,000-slot test episodes. The shipped pretrained policies (``radiorl/pretrained``,
  medium load, made by the README's training commands: ``conflict-8`` shared and separate,
  ``cellular-19-random`` and ``cellular-19-hex`` shared) are used where they exist; the other
  models are trained with a short budget
  (Adam 1e-3, 16 copies updated every 64 slots; conflict graph 150 updates = 154k slots,
  cellular 60 updates = 61k slots), so their numbers are what such a budget gives, not
  converged policies.
* ``paper``: one model per scenario, load and mode, all trained here (16 copies, 2,000-slot
  episodes; conflict graph 1,000 updates every 64 slots = 1.0M slots; cellular 700 updates
  every 128 slots = 1.4M slots, 2 PPO epochs; learning rate annealed linearly from 1e-3), the
  checkpoint with the best periodic evaluation (``best.pt``) is tested; 3 seeds of 5,000-slot
  test episodes.

Every result table reports what was measured, including where MAPPO falls short of a baseline.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.console import Console

from radiorl.evaluation.report import print_table, write_evaluation
from radiorl.evaluation.runner import evaluate
from radiorl.experiments.registry import register
from radiorl.runtime.executor import run_tasks
from radiorl.runtime.files import append_report, write_csv

CONFLICT = "conflict-8"
HEX, RANDOM = "cellular-19-hex", "cellular-19-random"
LOADS = ["light", "medium", "heavy"]
BASELINES = {CONFLICT: ["gms", "llq", "qcsma"],
             HEX: ["fp", "wmmse", "fair-itlinq", "llq"],
             RANDOM: ["fp", "wmmse", "fair-itlinq", "llq"]}
MODES = ("shared", "separate")

TRAIN = {
    "quick": {"conflict_graph": dict(envs=16, episode_slots=2000, rollout_slots=64,
                                     episodes=150, lr=1e-3, optimizer="adam", eval_every=50,
                                     eval_slots=1000),
              "cellular": dict(envs=16, episode_slots=2000, rollout_slots=64, episodes=60,
                               lr=1e-3, optimizer="adam", epochs=2, eval_every=20,
                               eval_slots=1000)},
    "paper": {"conflict_graph": dict(envs=16, episode_slots=2000, rollout_slots=64,
                                     episodes=1000, lr=1e-3, lr_schedule="linear",
                                     optimizer="adam", eval_every=25, eval_slots=2000),
              "cellular": dict(envs=16, episode_slots=2000, rollout_slots=128, episodes=700,
                               lr=1e-3, lr_schedule="linear", optimizer="adam", epochs=2,
                               eval_every=20, eval_slots=2000)},
}
#: presets that use the shipped pretrained policies (``radiorl/pretrained``) for the models
#: they exist for (medium load) instead of training them
USE_PRETRAINED = {"quick": True, "paper": False}
EVAL = {"quick": dict(slots=2000, seeds=[0]), "paper": dict(slots=5000, seeds=[0, 1, 2])}


def _family(scenario: str) -> str:
    return "conflict_graph" if scenario.startswith("conflict") else "cellular"


def preset_config(preset: str) -> dict:
    if preset not in TRAIN:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {sorted(TRAIN)}")
    return {"preset": preset, "train": TRAIN[preset], "eval": EVAL[preset]}


# --------------------------------------------------------------------------- model store
@dataclass
class ModelTask:
    scenario: str
    load: str
    mode: str
    config: dict
    run_dir: str


#: fixed observation layout of the scalability run (the paper caps the neighbourhood so that
#: one policy runs on any network size)
SCALE_CAPS = dict(obs_max_neighbors=6, obs_max_devices=6)
SCALE_NETWORKS = ["cellular-19-random", "cellular-37-random", "cellular-61-random"]


def _train_task(task: ModelTask) -> dict:
    """Train (or resume, or reuse) one model; the tested checkpoint is ``best.pt`` (lowest
    periodic-evaluation delay) when the run has one, else the final ``policy.pt``."""
    from radiorl.agents.mappo import MAPPOConfig, train
    cfg = MAPPOConfig(**{**task.config, "mode": task.mode, "threads": 1})
    cks = Path(task.run_dir) / "checkpoints"
    if not (cks / "policy.pt").exists():
        resume = str(task.run_dir) if (cks / "last.pt").exists() else None
        train(task.scenario, task.load, cfg, task.run_dir, resume=resume,
              show_progress=False, log=lambda *a: None)
    best = cks / "best.pt"
    return {"checkpoint": str(best if best.exists() else cks / "policy.pt"),
            "history": _read_history(Path(task.run_dir))}


def _read_history(run_dir: Path) -> list:
    import csv
    f = run_dir / "training.csv"
    if not f.exists():
        return []
    out = []
    for r in csv.DictReader(open(f)):
        out.append({k: _num(v) for k, v in r.items()})
    return out


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def model_store(run_dir: Path, preset: str) -> Path:
    return Path(run_dir).parent.parent / "marl-multicell-models" / preset


def get_models(needs: list[tuple], preset: str, run_dir, workers: int,
               console: Console, extra: dict | None = None) -> dict:
    """Train (or reuse) a MAPPO model for every ``(scenario, train_load, mode)``; returns
    ``{key: {"checkpoint", "history"}}``. Training runs in parallel workers and resumes from
    the last checkpoint if interrupted."""
    from radiorl import pretrained
    store = model_store(run_dir, preset)
    tasks, shipped = [], {}
    for sc, load, mode in needs:
        ck = pretrained.lookup(f"mappo-{mode}", sc, load) \
            if USE_PRETRAINED.get(preset) and not extra else None
        if ck is not None:
            from radiorl.agents.mappo.train import load_checkpoint
            shipped[(sc, load, mode)] = {"checkpoint": str(ck), "pretrained": True,
                                         "history": json.loads(load_checkpoint(ck)["history"])}
            continue
        cfg = {**TRAIN[preset][_family(sc)], **(extra or {})}
        h = hashlib.sha1(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:8]
        tasks.append(ModelTask(sc, load, mode, cfg, str(store / f"{sc}-{load}-{mode}-{h}")))
    todo = [t for t in tasks if not (Path(t.run_dir) / "checkpoints" / "policy.pt").exists()]
    if shipped:
        console.print("using the shipped pretrained policies for " +
                      ", ".join(f"{sc} {ld} {m}" for sc, ld, m in shipped))
    if todo:
        console.print(f"training {len(todo)} MAPPO model(s) into {store} "
                      f"({len(tasks) - len(todo)} reused)")
    res = run_tasks(_train_task, tasks, workers=workers, description="train MAPPO models") \
        if tasks else []
    out = {(t.scenario, t.load, t.mode): r for t, r in zip(tasks, res)}
    return {k: shipped.get(k) or out[k] for k in needs}


def _policies(scenario, models, train_load, modes=MODES):
    return BASELINES[scenario] + [f"mappo:{models[(scenario, train_load, m)]['checkpoint']}"
                                  for m in modes]


def _relabel(rows, delays, models):
    """Readable policy names (``mappo-shared`` instead of the checkpoint path)."""
    names = {}
    for (sc, ld, mode), r in models.items():
        names[f"mappo:{r['checkpoint']}"] = f"mappo-{mode}"
    for r in rows:
        r["policy"] = names.get(r["policy"], r["policy"])
    return rows, {(names.get(p, p), ld): d for (p, ld), d in delays.items()}


def _delay_vs_load(scenario, preset, run_dir, workers, console, title):
    ev = EVAL[preset]
    models = get_models([(scenario, "medium", m) for m in MODES] if preset == "quick" else
                        [(scenario, ld, m) for ld in LOADS for m in MODES],
                        preset, run_dir, workers, console)
    rows, delays = [], {}
    for ld in LOADS:
        tl = "medium" if preset == "quick" else ld
        r, d = evaluate(scenario, _policies(scenario, models, tl), [ld], ev["seeds"],
                        ev["slots"], workers=workers)
        r, d = _relabel(r, d, models)
        rows += r
        delays.update(d)
    summary = write_evaluation(run_dir, rows, delays, title=title, prefix=f"{scenario}_")
    print_table(summary, title=title, console=console)
    return summary, models


# --------------------------------------------------------------------------- experiments
@register("marl-multicell-fig8", "mean delay vs load, 8-device conflict graph (Fig. 8)",
          preset_config)
def fig8(preset, run_dir, workers=2, console=None):
    return _delay_vs_load(CONFLICT, preset, run_dir, workers, console or Console(),
                          "Fig. 8: conflict graph, mean delay (slots) vs load")[0]


@register("marl-multicell-fig9", "mean delay vs load, hexagonal 19-cell network (Fig. 9)",
          preset_config)
def fig9(preset, run_dir, workers=2, console=None):
    return _delay_vs_load(HEX, preset, run_dir, workers, console or Console(),
                          "Fig. 9: hexagonal network, mean delay (ms) vs load")[0]


@register("marl-multicell-fig10", "mean delay vs load, random 19-cell network (Fig. 10)",
          preset_config)
def fig10(preset, run_dir, workers=2, console=None):
    return _delay_vs_load(RANDOM, preset, run_dir, workers, console or Console(),
                          "Fig. 10: random network, mean delay (ms) vs load")[0]


def _cdf(scenario, load, preset, run_dir, workers, console, title):
    ev = EVAL[preset]
    tl = "medium" if preset == "quick" else load
    models = get_models([(scenario, tl, m) for m in MODES], preset, run_dir, workers, console)
    rows, delays = evaluate(scenario, _policies(scenario, models, tl), [load], ev["seeds"],
                            ev["slots"], workers=workers)
    rows, delays = _relabel(rows, delays, models)
    summary = write_evaluation(run_dir, rows, delays, title=title, prefix=f"{scenario}_")
    print_table(summary, title=title, console=console)
    return summary


@register("marl-multicell-fig7", "delay CDF, conflict graph, light load (Fig. 7)",
          preset_config)
def fig7(preset, run_dir, workers=2, console=None):
    return _cdf(CONFLICT, "light", preset, run_dir, workers, console or Console(),
                "Fig. 7: conflict graph, light load, delay CDF")


@register("marl-multicell-fig11", "delay CDF, random 19-cell network, medium load (Fig. 11)",
          preset_config)
def fig11(preset, run_dir, workers=2, console=None):
    return _cdf(RANDOM, "medium", preset, run_dir, workers, console or Console(),
                "Fig. 11: random network, medium load, delay CDF")


@register("marl-multicell-fig12-13", "training reward curves, both modes (Figs. 12-13)",
          preset_config)
def fig12_13(preset, run_dir, workers=2, console=None):
    from radiorl.agents.mappo.train import plot_training
    console = console or Console()
    needs = [(sc, "medium", m) for sc in (CONFLICT, RANDOM) for m in MODES]
    models = get_models(needs, preset, run_dir, workers, console)
    rows = []
    for (sc, ld, mode), r in models.items():
        for h in r["history"]:
            rows.append({"scenario": sc, "load": ld, "mode": mode, **h})
        plot_training(r["history"], Path(run_dir) / "figures" / f"training_{sc}_{mode}.png",
                      f"MAPPO {mode}, {sc} ({ld})")
    write_csv(Path(run_dir) / "training_curves.csv", rows)
    md = ["## Figs. 12-13: training curves\n", "| scenario | mode | iterations | training "
          "slots | final eval mean delay |", "|---|---|---|---|---|"]
    for (sc, ld, mode), r in models.items():
        ev = [h for h in r["history"] if _isnum(h.get("eval_mean_delay"))]
        last = ev[-1] if ev else {}
        md.append(f"| {sc} | {mode} | {len(r['history'])} | "
                  f"{int(r['history'][-1]['slots']) if r['history'] else 0:,} | "
                  f"{last.get('eval_mean_delay', float('nan')):.3f} |")
    md += [f"![{sc}-{m}](figures/training_{sc}_{m}.png)" for sc, _, m in models]
    append_report(run_dir, "\n".join(md) + "\n\n")
    console.print("\n".join(md))
    return rows


def _isnum(v):
    return isinstance(v, (int, float)) and np.isfinite(v)


@register("marl-multicell-table4", "information used and time per decision (Table IV)",
          preset_config)
def table4(preset, run_dir, workers=2, console=None):
    from radiorl.envs.scenarios import make_env
    from radiorl.evaluation.runner import rollout
    from radiorl.schedulers.policies import make_policy
    console = console or Console()
    models = get_models([(sc, "medium", m) for sc in (CONFLICT, RANDOM) for m in MODES],
                        preset, run_dir, workers, console)
    rows = []
    slots = 500 if preset == "quick" else 2000
    for sc in (CONFLICT, RANDOM):
        for name in _policies(sc, models, "medium"):
            env = make_env(sc, "medium", 1, episode_slots=slots)
            pol = make_policy(name, env)
            m, t_act = rollout(env, pol, seed=0, slots=slots)
            label = name if not name.startswith("mappo:") else \
                f"mappo-{'shared' if 'shared' in name else 'separate'}"
            rows.append({"scenario": sc, "policy": label,
                         "information": ", ".join(sorted(pol.requires)),
                         "ms_per_decision": 1e3 * t_act / m.slots,
                         "agents": env.n_agents})
    write_csv(Path(run_dir) / "table4.csv", rows)
    md = ["## Table IV: information and execution time per decision (all agents, one core)\n",
          "| scenario | method | information used | ms per decision |", "|---|---|---|---|"]
    md += [f"| {r['scenario']} | {r['policy']} | {r['information']} | "
           f"{r['ms_per_decision']:.3f} |" for r in rows]
    append_report(run_dir, "\n".join(md) + "\n\n")
    console.print("\n".join(md))
    return rows


@register("marl-multicell-table5", "train/test load mismatch (Table V)", preset_config)
def table5(preset, run_dir, workers=2, console=None):
    console = console or Console()
    ev = EVAL[preset]
    train_loads = ["light", "heavy"] if preset == "quick" else LOADS
    models = get_models([(CONFLICT, tl, "shared") for tl in train_loads], preset, run_dir,
                        workers, console)
    rows = []
    for tl in train_loads:
        ck = models[(CONFLICT, tl, "shared")]["checkpoint"]
        r, _ = evaluate(CONFLICT, [f"mappo:{ck}"], LOADS, ev["seeds"], ev["slots"],
                        workers=workers)
        for x in r:
            x["train_load"] = tl
            x["policy"] = f"mappo-shared (trained {tl})"
        rows += r
    write_csv(Path(run_dir) / "table5.csv", rows)
    md = ["## Table V: conflict graph, MAPPO-shared trained at one load and tested at each "
          "load (mean delay, slots)\n", "| trained \\ tested | " + " | ".join(LOADS) + " |",
          "|---|" + "---|" * len(LOADS)]
    for tl in train_loads:
        cells = []
        for ld in LOADS:
            rs = [r for r in rows if r["train_load"] == tl and r["load"] == ld]
            unst = sum(r["unstable"] for r in rs)
            d = np.mean([r["mean_delay"] for r in rs])
            cells.append(f"unstable ({unst}/{len(rs)})" if unst else f"{d:.3f}")
        md.append(f"| {tl} | " + " | ".join(cells) + " |")
    append_report(run_dir, "\n".join(md) + "\n\n")
    console.print("\n".join(md))
    return rows


@register("marl-multicell-scalability",
          "shared MAPPO trained on 19 random cells, tested on 37 and 61 cells", preset_config)
def scalability(preset, run_dir, workers=2, console=None):
    console = console or Console()
    ev = EVAL[preset]
    models = get_models([(RANDOM, "medium", "shared")], preset, run_dir, workers, console,
                        extra=SCALE_CAPS)
    ck = models[(RANDOM, "medium", "shared")]["checkpoint"]
    rows, delays = [], {}
    for net in SCALE_NETWORKS:
        r, d = evaluate(net, ["fp", "fair-itlinq", "llq", f"mappo:{ck}"], ["medium"],
                        ev["seeds"], ev["slots"], workers=workers, overrides=dict(SCALE_CAPS))
        for x in r:
            x["policy"] = "mappo-shared (19 cells)" if x["policy"].startswith("mappo:") \
                else x["policy"]
            x["network"] = net
        rows += r
    write_csv(Path(run_dir) / "scalability.csv", rows)
    md = ["## Scalability: trained on 19 random cells, medium load (mean delay, ms)\n",
          "| network | " + " | ".join(["fp", "fair-itlinq", "llq", "mappo-shared (19 cells)"]) +
          " |", "|---|---|---|---|---|"]
    for net in SCALE_NETWORKS:
        cells = []
        for pol in ["fp", "fair-itlinq", "llq", "mappo-shared (19 cells)"]:
            rs = [r for r in rows if r["network"] == net and r["policy"] == pol]
            unst = sum(r["unstable"] for r in rs)
            cells.append(f"unstable ({unst}/{len(rs)})" if unst else
                         f"{np.mean([r['mean_delay'] for r in rs]):.2f}")
        md.append(f"| {net} | " + " | ".join(cells) + " |")
    append_report(run_dir, "\n".join(md) + "\n\n")
    console.print("\n".join(md))
    return rows

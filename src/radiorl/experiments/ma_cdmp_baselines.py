"""MA-CDMP against its offline baselines (Zhang et al., Sec. VI-A, Figs. 3–5):
``radiorl run ma-cdmp-<name>`` with a ``quick`` and a ``paper`` preset.

=========  ==========================================================================
name       what it reproduces
=========  ==========================================================================
fig3       average reward vs training epoch of MA-CDMP and the DTDE baselines (MA-CQL,
           MA-TD3+BC, MA-DT, MA-Diffuser, MA-DD)
fig4       throughput, delay and packet loss of the same methods under ideal and limited
           RF, from the final models
fig5       MA-CDMP (DTDE) vs MADiff (CTDE, decentralized execution)
=========  ==========================================================================

Protocol (the same for every method, so the comparison differs only in the method):

* one offline dataset (:func:`radiorl.experiments.ma_cdmp.get_dataset`, ideal RF), one
  parameter-shared model per method trained with the preset's budget (``quick``: 8 epochs x
  250 steps; ``paper``: 100 epochs x 1,000 steps, the paper's) and training seed 0;
* during training (``quick``: every epoch, ``paper``: every 2nd), one 200-frame evaluation
  episode per paper scenario, each with its own scenario seed (``eval_seed + i``, never a test
  seed): these rewards are Fig. 3, mean ± std over the 4 episodes. The paper reports "mean and
  standard deviation across 3 independent scenario seeds" (Sec. VI-A), i.e. the spread is over
  test scenarios, not over training runs; we take one seed per paper scenario, so the spread
  also covers the 4 topologies. The ``quick`` preset keeps the best evaluated epoch of every
  method (``select_checkpoint = "best_eval"``: fewest unstable episodes, then the highest
  reward), the ``paper`` preset the last one, as the paper;
* the final models are tested on random topologies and traffic never in the dataset (scenario
  seeds 0, 1, 2), medium load; mean ± std over the seeds (Figs. 4, 5). Diffusion planners
  plan with the preset's sampler (``quick``: 10 guided DPM-Solver-1 steps; ``paper``: K = 100
  DDPM).

Models are shared with the other MA-CDMP experiments through the store of
:mod:`radiorl.experiments.ma_cdmp` (one training run per distinct learner and config).
The reports state, per metric and RF condition, which method wins and whether MA-CDMP does.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from rich.console import Console

from radiorl.experiments import ma_cdmp as base
from radiorl.experiments.registry import register
from radiorl.runtime.files import append_report, write_csv

#: label -> model variant (``algo`` picks the learner; see agents/offline/registry.py)
DTDE = {"MA-CDMP": {}, "MA-CQL": {"algo": "cql"}, "MA-TD3+BC": {"algo": "td3bc"},
        "MA-DT": {"algo": "dt"}, "MA-Diffuser": {"algo": "madiffuser"},
        "MA-DD": {"algo": "madd"}}
CTDE = {"MA-CDMP": {}, "MADiff": {"algo": "madiff"}}
#: Planner options understood by every diffusion learner's policy name.
DIFFUSION = ("macdmp", "madiffuser", "madd", "madiff")

PRESETS = {
    "quick": {"fig4_scenarios": ["adhoc-8-4:4", "adhoc-9-4:5"], "fig5_scenarios":
              ["adhoc-8-2:6", "adhoc-8-4:4", "adhoc-9-2:7", "adhoc-9-4:5"]},
    "paper": {"fig4_scenarios": list(base.PAPER_SCENARIOS), "fig5_scenarios":
              list(base.PAPER_SCENARIOS)},
}


def preset_config(preset: str) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {sorted(PRESETS)}")
    return {**base.preset_config(preset), **PRESETS[preset]}


def _variants(methods: dict) -> dict:
    """``{store name: variant}``: the learner's registry name (``macdmp`` for MA-CDMP, as in the
    other MA-CDMP experiments, so the same model is found under the same folder)."""
    return {v.get("algo", "macdmp"): v for v in methods.values()}


def get_models(methods: dict, preset: str, run_dir, workers: int, console) -> dict[str, str]:
    """``{label: final checkpoint}`` of every method (trained or reused from the store)."""
    keys = _variants(methods)
    paths = base.get_models(keys, preset, run_dir, workers, console)
    return {label: paths[k] for label, k in zip(methods, keys)}


def policy_name(methods: dict, label: str, checkpoint: str, preset: str) -> str:
    algo = methods[label].get("algo", "macdmp")
    if algo in DIFFUSION:
        q = "&".join(f"{k}={v}" for k, v in base._eval_settings(preset).items()
                     if v is not None)
        return f"{algo}:{checkpoint}" + (f"?{q}" if q else "")
    return f"{algo}:{checkpoint}"


def _history(checkpoint: str) -> list[dict]:
    path = Path(checkpoint).parent.parent / "training.csv"
    return [{k: float(v) if v not in ("", None) else float("nan") for k, v in r.items()}
            for r in csv.DictReader(open(path))] if path.is_file() else []


def _bars(path, labels, groups, values, errors, ylabel, title):
    """Grouped bars: ``values[g][i]`` for group ``g`` (e.g. RF condition) and method ``i``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from radiorl.evaluation.report import _save
    fig, ax = plt.subplots(figsize=(7.2, 3.8))
    w = 0.8 / max(len(groups), 1)
    x = np.arange(len(labels))
    for g, name in enumerate(groups):
        ax.bar(x + (g - (len(groups) - 1) / 2) * w, values[g], w, yerr=errors[g], capsize=3,
               label=name)
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=20)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- Fig. 3
@register("ma-cdmp-fig3", "average reward vs training epoch: MA-CDMP and the DTDE baselines "
          "(Fig. 3)", preset_config)
def fig3(preset, run_dir, workers=2, console=None):
    console = console or Console()
    models = get_models(DTDE, preset, run_dir, workers, console)
    rows = []
    for label, ck in models.items():
        for h in _history(ck):
            if np.isfinite(h.get("eval_mean_reward", float("nan"))):
                rows.append({"method": label, "epoch": int(h["epoch"]),
                             "steps": int(h["steps"]),
                             "eval_mean_reward": h["eval_mean_reward"],
                             "eval_mean_reward_std": h.get("eval_mean_reward_std",
                                                           float("nan")),
                             "eval_unstable": h.get("eval_unstable", float("nan")),
                             "wall_s": h.get("wall_s", float("nan"))})
    if not rows:
        raise ValueError("no evaluated epochs in the training histories: the preset's training "
                         "config needs eval_every >= 1")
    write_csv(Path(run_dir) / "fig3.csv", rows)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from radiorl.evaluation.report import _save
    fig, ax = plt.subplots(figsize=(6.8, 4.0))
    for label in models:
        r = [x for x in rows if x["method"] == label]
        if not r:
            continue
        e = np.array([x["epoch"] for x in r])
        m = np.array([x["eval_mean_reward"] for x in r])
        s = np.nan_to_num(np.array([x["eval_mean_reward_std"] for x in r]))
        ax.plot(e, m, "o-", label=label)
        ax.fill_between(e, m - s, m + s, alpha=0.15)
    ax.set_xlabel("training epoch")
    ax.set_ylabel("average reward (−ms)")
    ax.set_title("Fig. 3: average reward during training")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, Path(run_dir) / "figures" / "fig3_training.png")
    md = ["## Fig. 3: average reward vs training epoch\n",
          "Evaluation episodes during training (one per paper scenario, each with its own "
          "scenario seed, never a test seed); mean ± std over those 4 independent scenario "
          "seeds (the paper: over 3 scenario seeds; one training seed per method).\n",
          "| method | first epoch | best epoch (reward) | last epoch | unstable episodes at the "
          "last epoch |", "|---|---|---|---|---|"]
    final, peak = {}, {}
    for label in models:
        r = [x for x in rows if x["method"] == label]
        if not r:
            md.append(f"| {label} | - | - | - | - |")
            continue
        b = max(r, key=lambda x: (-x["eval_unstable"] if np.isfinite(x["eval_unstable"])
                                  else 0.0, x["eval_mean_reward"]))
        final[label] = r[-1]["eval_mean_reward"]
        peak[label] = b["eval_mean_reward"]
        md.append(f"| {label} | {r[0]['eval_mean_reward']:.2f} | {b['epoch']} "
                  f"({b['eval_mean_reward']:.2f}) | {r[-1]['eval_mean_reward']:.2f} ± "
                  f"{np.nan_to_num(r[-1]['eval_mean_reward_std']):.2f} | "
                  f"{r[-1]['eval_unstable']:.2f} |")
    if final:
        best = max(final, key=final.get)
        md.append(f"\nHighest reward at the last epoch: **{best}** ({final[best]:.2f}); "
                  + ("MA-CDMP is best." if best == "MA-CDMP" else
                     f"MA-CDMP ({final.get('MA-CDMP', float('nan')):.2f}) is **not** best."))
        top = max(peak, key=peak.get)
        md.append(f"At each method's best epoch: **{top}** ({peak[top]:.2f}) is best"
                  + ("." if top == "MA-CDMP" else
                     f"; MA-CDMP ({peak.get('MA-CDMP', float('nan')):.2f}) is **not**."))
    md = "\n".join(md) + "\n"
    append_report(run_dir, md + "\n")
    console.print(md)
    return rows


# --------------------------------------------------------------------------- Figs. 4 and 5
def _compare(methods, scenarios, preset, run_dir, workers, console, rfs=("ideal", "limited")):
    models = get_models(methods, preset, run_dir, workers, console)
    pols = {label: policy_name(methods, label, ck, preset) for label, ck in models.items()}
    rows = []
    for rf in rfs:
        scen = [s if rf == "ideal" else f"{s}-limited" for s in scenarios]
        r = base.run_policies(scen, pols, preset, workers)
        for x in r:
            x["rf"] = rf
        rows += r
    return pols, rows


#: Relative difference under which two methods' means count as a tie in the "who wins" list
#: (e.g. the throughput of stable policies, which all deliver the offered load).
TIE_TOLERANCE = 0.005
METRICS = [("mean_reward", "average reward (−ms)", True, 1.0),
           ("throughput_mbps", "throughput (Mbps)", True, 1.0),
           ("mean_delay", "mean delay (ms)", False, 1.0),
           ("packet_loss_rate", "packet loss (%)", False, 100.0)]


def _per_rf(rows, labels, rfs):
    """``{(rf, label): {metric: (mean, std)}}`` over all scenarios and seeds of an RF."""
    out = {}
    for rf in rfs:
        for lab in labels:
            r = [x for x in rows if x["rf"] == rf and x["label"] == lab]
            out[(rf, lab)] = {m: (float(np.nanmean([x[m] for x in r])),
                                  float(np.nanstd([x[m] for x in r])))
                              for m, *_ in METRICS}
            out[(rf, lab)]["unstable"] = sum(bool(x["unstable"]) for x in r), len(r)
    return out


def _verdicts(stats, labels, rfs, hero="MA-CDMP") -> str:
    out = ["### Who wins (mean over scenarios and seeds)\n"]
    for rf in rfs:
        for m, name, higher, scale in METRICS:
            vals = {lab: stats[(rf, lab)][m][0] for lab in labels}
            finite = {k: v for k, v in vals.items() if np.isfinite(v)}
            if not finite:
                continue
            best = (max if higher else min)(finite, key=finite.get)
            tie = [k for k, v in finite.items()
                   if abs(v - finite[best]) <= TIE_TOLERANCE * max(abs(finite[best]), 1e-12)]
            ok = hero in tie
            tied = f" (tied within {TIE_TOLERANCE:.1%}: {', '.join(tie)})" if len(tie) > 1 else ""
            out.append(f"- {rf} RF, {name}: best **{best}** ({finite[best] * scale:.3g}){tied}; "
                       f"{hero} {vals.get(hero, float('nan')) * scale:.3g} → "
                       + ("MA-CDMP wins" + (" (tie)" if len(tie) > 1 else "") if ok
                          else "**MA-CDMP does not win**"))
    return "\n".join(out) + "\n"


def _table(stats, labels, rfs, title) -> str:
    out = [f"## {title}\n", "| RF | method | average reward | throughput (Mbps) | mean delay "
           "(ms) | packet loss (%) | unstable runs |", "|---|---|---|---|---|---|---|"]
    for rf in rfs:
        for lab in labels:
            s = stats[(rf, lab)]
            cells = [f"{s[m][0] * sc:.3g} ± {s[m][1] * sc:.2g}" for m, _, _, sc in METRICS]
            out.append(f"| {rf} | {lab} | " + " | ".join(cells) +
                       f" | {s['unstable'][0]}/{s['unstable'][1]} |")
    return "\n".join(out) + "\n"


def _plots(stats, labels, rfs, run_dir, name, title):
    for m, ylabel, _, scale in METRICS[1:]:
        _bars(Path(run_dir) / "figures" / f"{name}_{m}.png", labels, list(rfs),
              [[stats[(rf, lab)][m][0] * scale for lab in labels] for rf in rfs],
              [[stats[(rf, lab)][m][1] * scale for lab in labels] for rf in rfs],
              ylabel, f"{title}: {ylabel}")


@register("ma-cdmp-fig4", "throughput, delay and packet loss under ideal and limited RF: "
          "MA-CDMP and the DTDE baselines (Fig. 4)", preset_config)
def fig4(preset, run_dir, workers=2, console=None):
    console = console or Console()
    cfg = preset_config(preset)
    rfs = ("ideal", "limited")
    pols, rows = _compare(DTDE, cfg["fig4_scenarios"], preset, run_dir, workers, console, rfs)
    labels = list(pols)
    stats = _per_rf(rows, labels, rfs)
    md = _table(stats, labels, rfs, "Fig. 4: QoS under ideal and limited RF (scenarios "
                + ", ".join(cfg["fig4_scenarios"]) + "; mean ± std over scenarios and seeds)")
    md += "\n" + _verdicts(stats, labels, rfs)
    summary = base._summary(rows)
    base._write(run_dir, "fig4", rows, summary, md, console)
    _plots(stats, labels, rfs, run_dir, "fig4", "Fig. 4")
    return summary


@register("ma-cdmp-fig5", "MA-CDMP (DTDE) vs MADiff (CTDE) (Fig. 5)", preset_config)
def fig5(preset, run_dir, workers=2, console=None):
    console = console or Console()
    cfg = preset_config(preset)
    rfs = ("ideal",)
    pols, rows = _compare(CTDE, cfg["fig5_scenarios"], preset, run_dir, workers, console, rfs)
    labels = list(pols)
    stats = _per_rf(rows, labels, rfs)
    md = _table(stats, labels, rfs, "Fig. 5: MA-CDMP vs MADiff (scenarios "
                + ", ".join(cfg["fig5_scenarios"]) + "; mean ± std over scenarios and seeds)")
    md += "\n" + _verdicts(stats, labels, rfs)
    md += ("\nTime per frame (all agents planned): " + ", ".join(
        f"{lab} {np.mean([x['ms_per_decision'] for x in rows if x['label'] == lab]):.1f} ms"
        for lab in labels) + "\n")
    summary = base._summary(rows)
    base._write(run_dir, "fig5", rows, summary, md, console)
    _plots(stats, labels, rfs, run_dir, "fig5", "Fig. 5")
    return summary

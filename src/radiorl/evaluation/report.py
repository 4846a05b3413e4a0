"""Tables and figures of an evaluation: per-seed CSV, summary CSV (mean ± std over seeds), delay
CDF CSV, PNG figures (delay vs load, delay CDF per load) and a ``report.md``.

An unstable configuration is reported as ``unstable (k/n seeds)``, never as a bare number.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from radiorl.runtime.files import append_report, write_csv  # noqa: E402


def summarize(rows: list[dict]) -> list[dict]:
    """Aggregate per-seed rows over seeds and copies for each (scenario, policy, load)."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["scenario"], r["policy"], r["load"]), []).append(r)
    out = []
    for (sc, pol, load), rs in groups.items():
        md = np.array([r["mean_delay"] for r in rs], float)
        n_unst = sum(bool(r["unstable"]) for r in rs)
        s = {"scenario": sc, "policy": pol, "load": load, "load_value": rs[0]["load_value"],
             "runs": len(rs), "unstable_runs": n_unst,
             "mean_delay": float(np.nanmean(md)),
             "mean_delay_std": float(np.nanstd(md)) if len(md) > 1 else 0.0,
             "p99_delay": float(np.nanmean([r["p99_delay"] for r in rs])),
             "max_delay": float(np.nanmax([r["max_delay"] for r in rs])),
             "throughput_pkt_per_slot": float(np.mean([r["throughput_pkt_per_slot"] for r in rs])),
             "collided_fraction": float(np.mean([r["collided_fraction"] for r in rs])),
             "ms_per_decision": float(np.mean([r["ms_per_decision"] for r in rs])),
             "delay_unit": rs[0]["delay_unit"], "load_unit": rs[0].get("load_unit", "")}
        s["family"] = rs[0].get("family", "")
        for key in ("throughput_mbps", "packet_loss_rate", "mean_reward"):
            if key in rs[0]:
                v = np.array([r[key] for r in rs], float)
                s[key] = float(np.nanmean(v))
                s[f"{key}_std"] = float(np.nanstd(v)) if len(v) > 1 else 0.0
        s["verdict"] = "stable" if n_unst == 0 else f"unstable ({n_unst}/{len(rs)} runs)"
        out.append(s)
    out.sort(key=lambda s: (s["scenario"], s["load_value"], s["policy"]))
    return out


def _fmt_delay(s: dict) -> str:
    if s["unstable_runs"]:
        return f"unstable ({s['unstable_runs']}/{s['runs']})"
    if s["runs"] > 1:
        return f"{s['mean_delay']:.3f} ± {s['mean_delay_std']:.3f}"
    return f"{s['mean_delay']:.3f}"


def _pm(s: dict, key: str, fmt: str = ".3f", scale: float = 1.0) -> str:
    v = s[key] * scale
    if s["runs"] > 1:
        return f"{v:{fmt}} ± {s[f'{key}_std'] * scale:{fmt}}"
    return f"{v:{fmt}}"


def _columns(summary: list[dict]) -> list[tuple]:
    """``(header, formatter)`` of the table columns; the ad hoc networks report the MA-CDMP
    metrics (mean reward, throughput, delay, packet-loss rate), mean ± std over runs."""
    unit = summary[0]["delay_unit"] if summary else "slots"
    cols = [("scenario", lambda s: s["scenario"]),
            ("load", lambda s: f"{s['load']} ({s['load_value']:g})"),
            ("policy", lambda s: s["policy"])]
    if summary and summary[0].get("family") == "adhoc":
        cols += [("mean reward", lambda s: _pm(s, "mean_reward", ".2f")),
                 ("throughput (Mbps)", lambda s: _pm(s, "throughput_mbps", ".3f")),
                 (f"mean delay ({unit})", _fmt_delay),
                 ("packet loss (%)", lambda s: _pm(s, "packet_loss_rate", ".2f", 100.0))]
    else:
        cols += [(f"mean delay ({unit})", _fmt_delay),
                 (f"p99 ({unit})", lambda s: f"{s['p99_delay']:.2f}"),
                 (f"max ({unit})", lambda s: f"{s['max_delay']:.2f}"),
                 ("throughput (pkt/slot)", lambda s: f"{s['throughput_pkt_per_slot']:.3f}"),
                 ("collided", lambda s: f"{100 * s['collided_fraction']:.1f}%")]
    cols.append(("ms/decision", lambda s: f"{s['ms_per_decision']:.3f}"))
    return cols


def markdown_table(summary: list[dict]) -> str:
    cols = _columns(summary)
    head = "| " + " | ".join(c for c, _ in cols) + " |\n|" + "---|" * len(cols) + "\n"
    lines = ["| " + " | ".join(f(s) for _, f in cols) + " |" for s in summary]
    return head + "\n".join(lines) + "\n"


def print_table(summary: list[dict], title: str = "", console: Console | None = None) -> None:
    console = console or Console()
    cols = _columns(summary)
    t = Table(title=title)
    for c, _ in cols:
        t.add_column(c, justify="right" if c not in ("scenario", "policy") else "left")
    for s in summary:
        t.add_row(*[f(s) for _, f in cols])
    console.print(t)


def cdf_rows(delays: dict, points: int = 200) -> list[dict]:
    rows = []
    for (pol, load), d in delays.items():
        if not len(d):
            continue
        qs = np.linspace(0, 1, points)
        xs = np.quantile(d, qs)
        rows.extend({"policy": pol, "load": load, "delay": float(x), "cdf": float(q)}
                    for x, q in zip(xs, qs))
    return rows


def plot_delay_vs_load(summary: list[dict], path, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    unit = summary[0]["delay_unit"] if summary else "slots"
    styles = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("x", "--")]
    for i, pol in enumerate(dict.fromkeys(s["policy"] for s in summary)):
        ss = sorted([s for s in summary if s["policy"] == pol], key=lambda s: s["load_value"])
        x = np.array([s["load_value"] for s in ss])
        y = np.array([s["mean_delay"] for s in ss])
        e = np.array([s["mean_delay_std"] for s in ss])
        unst = np.array([s["unstable_runs"] > 0 for s in ss])
        mk, ls = styles[i % len(styles)]
        line = ax.errorbar(x[~unst], y[~unst], yerr=e[~unst], marker=mk, ls=ls, capsize=3,
                           label=pol, alpha=0.85)
        if unst.any():
            ax.scatter(x[unst], np.full(unst.sum(), np.nanmax(y) if np.isfinite(y).any() else 1),
                       marker="x", s=80, color=line[0].get_color())
            for xi in x[unst]:
                ax.annotate("unstable", (xi, np.nanmax(y)), fontsize=7,
                            color=line[0].get_color(), rotation=90, va="top")
    ax.set_xlabel(f"load ({summary[0].get('load_unit', '')})" if summary else "load")
    ax.set_ylabel(f"mean packet delay ({unit})")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def plot_qos_panels(summary: list[dict], path, title: str = "") -> Path:
    """MA-CDMP's four QoS metrics (mean reward, throughput, delay, packet loss) vs load, one
    panel each, mean ± std over runs (unstable delays drawn hollow)."""
    keys = [("mean_reward", "mean reward", 1.0), ("throughput_mbps", "throughput (Mbps)", 1.0),
            ("mean_delay", f"mean delay ({summary[0]['delay_unit']})", 1.0),
            ("packet_loss_rate", "packet loss (%)", 100.0)]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6))
    for i, pol in enumerate(dict.fromkeys(s["policy"] for s in summary)):
        ss = sorted([s for s in summary if s["policy"] == pol], key=lambda s: s["load_value"])
        x = np.array([s["load_value"] for s in ss])
        for ax, (k, label, sc) in zip(axes, keys):
            y = np.array([s[k] for s in ss]) * sc
            e = np.array([s.get(f"{k}_std", 0.0) for s in ss]) * sc
            ax.errorbar(x, y, yerr=e, marker="osD^vx"[i % 6], capsize=3, label=pol, alpha=0.85)
            ax.set_xlabel(f"load ({summary[0].get('load_unit', '')})")
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_delay_cdf(delays: dict, load: str, path, unit: str = "slots", title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    styles = ["-", "--", "-.", ":"]
    for i, ((pol, ld), d) in enumerate(delays.items()):
        if ld != load or not len(d):
            continue
        xs = np.sort(d)
        ys = np.arange(1, len(xs) + 1) / len(xs)
        step = max(1, len(xs) // 2000)
        line, = ax.step(xs[::step], ys[::step], where="post", label=pol,
                        ls=styles[i % len(styles)])
        ax.axvline(xs[-1], ls="--", lw=0.8, color=line.get_color())
    ax.set_xlabel(f"packet delay ({unit})")
    ax.set_ylabel("CDF")
    ax.set_title(title or f"delay CDF, load {load} (dashed: max)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def _save(fig, path) -> Path:
    import io
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    from radiorl.runtime.files import atomic_write_bytes
    return atomic_write_bytes(path, buf.getvalue())


def write_evaluation(run_dir, rows: list[dict], delays: dict, title: str = "",
                     prefix: str = "") -> list[dict]:
    """Write CSVs, figures and append a section to ``report.md``; returns the summary."""
    run_dir = Path(run_dir)
    summary = summarize(rows)
    write_csv(run_dir / f"{prefix}results.csv", rows)
    write_csv(run_dir / f"{prefix}summary.csv", summary)
    write_csv(run_dir / f"{prefix}delay_cdf.csv", cdf_rows(delays))
    unit = summary[0]["delay_unit"] if summary else "slots"
    figs = [plot_delay_vs_load(summary, run_dir / "figures" / f"{prefix}delay_vs_load.png", title)]
    if summary and summary[0].get("family") == "adhoc":
        figs.append(plot_qos_panels(summary, run_dir / "figures" / f"{prefix}qos_vs_load.png",
                                    title))
    for load in dict.fromkeys(s["load"] for s in summary):
        figs.append(plot_delay_cdf(delays, load, run_dir / "figures" / f"{prefix}delay_cdf_{load}.png",
                                   unit, f"{title} delay CDF, load {load} (dashed: max)"))
    append_report(run_dir, f"## {title or 'evaluation'}\n\n{markdown_table(summary)}\n" + "".join(
        f"![{f.stem}](figures/{f.name})\n" for f in figs) + "\n")
    return summary

"""The quickstart tour: classical schedulers on the paper's networks at the three named loads,
next to the shipped pretrained MAPPO policies.

``quick`` (≤ 5 minutes on 2 cores): LLQ, Fair-ITLinQ, FP, WMMSE and the pretrained shared
MAPPO policy on ``cellular-19-random``; GMS, LLQ, Q-CSMA and the pretrained shared and separate
MAPPO policies on ``conflict-8`` (all pretrained policies were trained at the medium load by
the README's commands and are tested at every load); light/medium/heavy, one seed, 2,000 slots
per episode (40 s of network time for the cellular network); the MF-TDMA request heuristics on
``adhoc-9-4:5-limited`` (1,000-frame = 5 s test episodes). ``paper``: 5,000-slot episodes
(the paper's test length) and 3 seeds.
"""
from __future__ import annotations

from rich.console import Console

from radiorl.evaluation.report import print_table, write_evaluation
from radiorl.evaluation.runner import evaluate
from radiorl.experiments.registry import register

PRESETS = {
    "quick": {"slots": 2000, "seeds": [0]},
    "paper": {"slots": 5000, "seeds": [0, 1, 2]},
}

PARTS = [
    ("cellular-19-random", ["llq", "fair-itlinq", "fp", "wmmse", "mappo-shared"]),
    ("conflict-8", ["gms", "llq", "qcsma", "mappo-shared", "mappo-separate"]),
    ("adhoc-9-4:5-limited", ["equal", "proportional", "load-aware", "mixture", "random"]),
]
#: episode length of the ad hoc network in frames (the paper's 5 s test episode)
ADHOC_FRAMES = 1000


def preset_config(preset: str) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; valid presets: {sorted(PRESETS)}")
    cfg = dict(PRESETS[preset])
    cfg["parts"] = [{"scenario": s, "policies": p, "loads": ["light", "medium", "heavy"]}
                    for s, p in PARTS]
    return cfg


@register("quickstart", "classical schedulers and pretrained MAPPO on cellular-19-random and "
          "conflict-8, MF-TDMA "
          "heuristics on adhoc-9-4:5-limited (3 loads)",
          preset_config)
def quickstart(preset: str, run_dir, workers: int = 2, console: Console | None = None):
    console = console or Console()
    cfg = preset_config(preset)
    all_summary = []
    for part in cfg["parts"]:
        slots = ADHOC_FRAMES if part["scenario"].startswith("adhoc") else cfg["slots"]
        rows, delays = evaluate(part["scenario"], part["policies"], part["loads"], cfg["seeds"],
                                slots, workers=workers)
        summary = write_evaluation(run_dir, rows, delays, title=part["scenario"],
                                   prefix=f"{part['scenario']}_")
        print_table(summary, title=part["scenario"], console=console)
        all_summary.extend(summary)
    return all_summary

"""Experiment registry: name -> (function(preset, run_dir, **kw) -> summary rows, description)."""
from __future__ import annotations

EXPERIMENTS: dict = {}


def register(name: str, description: str):
    def deco(fn):
        EXPERIMENTS[name] = (fn, description)
        return fn
    return deco


def get_experiment(name: str):
    import radiorl.experiments.quickstart  # noqa: F401  (registers)
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; valid experiments: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]

"""Experiment registry: name -> (function(preset, run_dir, **kw) -> summary rows, description,
config(preset) -> dict). ``config`` validates the preset (clear error) before any work starts."""
from __future__ import annotations

EXPERIMENTS: dict = {}


def register(name: str, description: str, config):
    def deco(fn):
        EXPERIMENTS[name] = (fn, description, config)
        return fn
    return deco


def get_experiment(name: str):
    from radiorl.experiments import (d2rl, ma_cdmp, ma_cdmp_baselines,  # noqa: F401
                                     marl_multicell, quickstart)
    if name not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {name!r}; valid experiments: {sorted(EXPERIMENTS)}")
    return EXPERIMENTS[name]

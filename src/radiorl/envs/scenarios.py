"""Named scenarios of the papers and their named loads.

``make_env("cellular-19-random", load="medium", batch=4)`` builds a batched env; numeric loads
are accepted too (packets/slot per device for conflict graphs, packets/s per device for
cellular networks). To add a scenario, register a :class:`Scenario` (see README).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Callable

from radiorl.envs.cellular import CellularEnv, CellularParams
from radiorl.envs.conflict_graph import ConflictGraphEnv, fig2_params


@dataclass(frozen=True)
class Scenario:
    """A named network with named loads.

    Attributes:
        name: registry key.
        family: ``"conflict_graph"`` or ``"cellular"``.
        description: one line for ``radiorl scenarios``.
        loads: named loads ``{"light": x, "medium": y, "heavy": z}``.
        load_unit: unit of numeric loads.
        make_params: ``load -> params`` (a frozen params dataclass).
        env_cls: the batched env class taking ``(params, batch)``.
    """

    name: str
    family: str
    description: str
    loads: dict
    load_unit: str
    make_params: Callable
    env_cls: type
    delay_unit: str = "slots"
    extra: dict = field(default_factory=dict)

    def resolve_load(self, load) -> float:
        if isinstance(load, str):
            if load in self.loads:
                return float(self.loads[load])
            try:
                load = float(load)
            except ValueError:
                raise ValueError(f"load {load!r} is not a known load of {self.name}; use one of "
                                 f"{sorted(self.loads)} or a number > 0 ({self.load_unit})") from None
        try:
            v = float(load)
        except (TypeError, ValueError):
            raise ValueError(f"load must be a number > 0 ({self.load_unit}) or one of "
                             f"{sorted(self.loads)}, got {load!r}") from None
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f"load must be a finite number > 0 ({self.load_unit}), got {load!r}")
        return v

    def params(self, load="medium", reference_compat: bool = False, **overrides):
        p = self.make_params(self.resolve_load(load))
        if reference_compat:
            if not hasattr(p, "reference_compat"):
                raise ValueError(f"scenario {self.name} has no reference_compat preset")
            p = p.reference_compat()
        return replace(p, **overrides) if overrides else p

    def make_env(self, load="medium", batch: int = 1, reference_compat: bool = False,
                 **overrides):
        return self.env_cls(self.params(load, reference_compat, **overrides), batch)

    def load_label(self, load) -> str:
        for k, v in self.loads.items():
            if isinstance(load, str) and load == k:
                return k
        return str(load)


SCENARIOS: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    SCENARIOS[scenario.name] = scenario
    return scenario


def get_scenario(name: str) -> Scenario:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; valid scenarios: {sorted(SCENARIOS)}")
    return SCENARIOS[name]


def make_env(name: str, load="medium", batch: int = 1, reference_compat: bool = False,
             **overrides):
    return get_scenario(name).make_env(load, batch, reference_compat, **overrides)


register(Scenario(
    "conflict-8", "conflict_graph",
    "8 devices, 4 agents, 3 subbands: the directed conflict graph of Zhang & Guo Fig. 2",
    {"light": 0.3, "medium": 0.4, "heavy": 0.5}, "packets/slot per device",
    lambda load: fig2_params(load=load), ConflictGraphEnv, "slots"))
register(Scenario(
    "cellular-19-hex", "cellular",
    "19 hexagonal cells (R = 500 m), 3 devices each, 3 x 20 MHz subbands (Fig. 6a)",
    {"light": 15.0, "medium": 20.0, "heavy": 25.0}, "packets/s per device",
    lambda load: CellularParams(deployment="hex", load_pps=load, name="cellular-19-hex"),
    CellularEnv, "ms"))
register(Scenario(
    "cellular-19-random", "cellular",
    "19 randomly perturbed cells, 57 devices (2-5 per AP), 3 x 20 MHz subbands (Fig. 6b)",
    {"light": 20.0, "medium": 25.0, "heavy": 30.0}, "packets/s per device",
    lambda load: CellularParams(deployment="random", load_pps=load, name="cellular-19-random"),
    CellularEnv, "ms"))

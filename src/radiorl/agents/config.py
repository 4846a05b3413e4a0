"""What every agent's config dataclass shares: ``to_dict``/``from_dict`` with the tuple fields
stored as lists (YAML, JSON and checkpoints keep no tuples) and a clear error for unknown
fields. Used by MA-CDMP and its offline baselines, the d3rlpy learners and D2RL.

Example:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Cfg(ConfigIO):
    ...     TUPLES = ("hidden",)
    ...     LABEL = "Demo"
    ...     hidden: tuple = (8, 8)
    >>> Cfg.from_dict(Cfg().to_dict()) == Cfg()
    True
"""
from __future__ import annotations

from dataclasses import asdict, fields


class ConfigIO:
    """Mixin for config dataclasses: ``TUPLES`` names the tuple fields (stored as lists;
    ``None`` stays ``None``); ``LABEL`` names the method in the unknown-field error."""

    TUPLES: tuple = ()
    LABEL = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in self.TUPLES:
            if d[k] is not None:
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.LABEL} config fields {unknown}")
        kw = dict(d)
        for k in cls.TUPLES:
            if k in kw and kw[k] is not None:
                kw[k] = tuple(kw[k])
        return cls(**kw)

"""Pretrained policies shipped with radiorl (small checkpoints produced by our own training
commands; the exact commands are in the README). ``make_policy("mappo-shared", env)`` loads the
one made for ``env``'s scenario."""
from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent


def available() -> list[str]:
    return sorted(p.stem for p in HERE.glob("*.pt"))


def pretrained_path(name: str, scenario: str) -> Path:
    """``name`` is ``mappo-shared`` or ``mappo-separate``; files are
    ``<name>_<scenario>_<load>.pt``."""
    hits = sorted(HERE.glob(f"{name}_{scenario}_*.pt"))
    if not hits:
        raise ValueError(f"no pretrained {name} policy for scenario {scenario!r}; available: "
                         f"{available() or 'none'} (train one with `radiorl train mappo`)")
    return hits[0]


def lookup(name: str, scenario: str, load: str) -> Path | None:
    """The shipped ``<name>_<scenario>_<load>.pt`` if it exists, else None."""
    p = HERE / f"{name}_{scenario}_{load}.pt"
    return p if p.is_file() else None

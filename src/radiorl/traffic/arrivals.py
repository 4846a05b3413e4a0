"""Arrival processes.

Exogenous randomness (arrivals, channels) is drawn from its own generator, never from the one a
policy uses, so every policy evaluated at a seed sees exactly the same arrivals (paired
evaluation). ``ArrivalTape`` pre-draws arrivals in chunks, which removes a per-slot generator call
from the hot loop; the chunk length is fixed, so a seed always gives the same sequence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def poisson_arrivals(rng: np.random.Generator, mean_per_slot: np.ndarray, batch: int) -> np.ndarray:
    """Poisson packet arrivals for one slot.

    Args:
        rng: generator for exogenous randomness.
        mean_per_slot: ``[N]`` mean packets per slot per device (λ·T), ≥ 0.
        batch: number of independent copies B.
    Returns:
        ``int64[B, N]`` packet counts.

    Example: ``poisson_arrivals(np.random.default_rng(0), np.full(8, 0.5), 2).shape == (2, 8)``.
    """
    return rng.poisson(mean_per_slot, size=(batch, len(mean_per_slot)))


@dataclass
class ArrivalTape:
    """Pre-drawn Poisson arrivals ``counts[B, chunk, N]``, consumed one slot at a time.

    Attributes:
        rng: exogenous generator (owned by the tape).
        mean_per_slot: ``[N]`` mean packets per slot per device.
        batch: B.
        chunk: slots drawn at once (fixed, so the stream depends only on the seed).
    """

    rng: np.random.Generator
    mean_per_slot: np.ndarray
    batch: int
    chunk: int = 256
    counts: np.ndarray | None = None
    pos: int = 0

    def next(self) -> np.ndarray:
        """Arrivals of the next slot, ``int64[B, N]`` (a view; do not modify)."""
        if self.counts is None or self.pos >= self.chunk:
            n = len(self.mean_per_slot)
            self.counts = self.rng.poisson(self.mean_per_slot, size=(self.chunk, self.batch, n))
            self.pos = 0
        out = self.counts[self.pos]
        self.pos += 1
        return out

    def copy(self) -> "ArrivalTape":
        rng = np.random.Generator(type(self.rng.bit_generator)())
        rng.bit_generator.state = self.rng.bit_generator.state
        return ArrivalTape(rng, self.mean_per_slot.copy(), self.batch, self.chunk,
                           None if self.counts is None else self.counts.copy(), self.pos)

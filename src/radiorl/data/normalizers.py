"""Per-dimension affine normalizers built from the statistics stored in a dataset file.

Two kinds, both *per dimension* (never one global scale; diffusers#10636):

- ``"gaussian"``: ``y = (x − mean) / max(std, eps)`` (z-score; the std floor keeps constant
  dimensions at 0 instead of dividing by zero);
- ``"limits"``: ``y = (x − c) / max(h, eps)`` with ``c = (max + min)/2`` and
  ``h = (max − min)/2``, which maps ``[min, max]`` onto ``[−1, 1]``; a constant dimension
  (``max == min``) maps to 0.

Both are **affine**, ``y = (x − offset) / scale``, so the mean of normalized neighbours equals
the normalized mean: ``mean_j norm(o_j) = norm(mean_j o_j)``. This is why the mean-field
observation ``x̄`` may be computed from raw observations and normalized afterwards, and it is
the property a CDF normalizer would lose (``specs/diffusion-planning.md`` pitfall 4).

**Use the ``obs`` normalizer for both ``obs`` and ``mf_obs``** (pitfall 4): the planner compares
``x`` and ``x̄`` in one space, and at execution time ``x̄`` is the mean of neighbours' obs, so it
must go through exactly the same map in data generation, training and execution.
The ``mf_obs`` statistics are stored for inspection only.

``normalize``/``unnormalize`` use only arithmetic, so they work on numpy arrays and on torch
tensors (the parameters are converted to a tensor of the input's dtype and device). The last
axis of the input is the feature axis ``D`` (``D = 1`` statistics broadcast over any shape).

Example::

    >>> import numpy as np
    >>> stats = {"min": np.array([0.0]), "max": np.array([10.0]),
    ...          "mean": np.array([4.0]), "std": np.array([2.0])}
    >>> Normalizer.from_stats(stats, "limits").normalize(np.array([0.0, 5.0, 10.0]))
    array([-1.,  0.,  1.])
"""
from __future__ import annotations

import sys
from typing import Mapping

import numpy as np

KINDS = ("gaussian", "limits")
#: Floor of the scale (std for ``gaussian``, half-range for ``limits``).
DEFAULT_EPS = 1e-6


class Normalizer:
    """Affine per-dimension map ``y = (x − offset) / scale``.

    Build it with :meth:`from_stats` (statistics ``min``/``max``/``mean``/``std``, each ``[D]``)
    or :meth:`from_dict` (a :meth:`to_dict` snapshot, e.g. from a checkpoint).
    """

    def __init__(self, kind: str, offset, scale, stats: Mapping[str, np.ndarray] | None = None):
        if kind not in KINDS:
            raise ValueError(f"normalizer kind must be one of {list(KINDS)}, got {kind!r}")
        self.kind = kind
        self.offset = np.atleast_1d(np.asarray(offset, np.float64)).copy()
        self.scale = np.atleast_1d(np.asarray(scale, np.float64)).copy()
        if self.offset.ndim != 1 or self.offset.shape != self.scale.shape:
            raise ValueError(f"normalizer offset and scale must be 1-D of equal length, got shapes "
                             f"{self.offset.shape} and {self.scale.shape}")
        if not (np.all(np.isfinite(self.offset)) and np.all(np.isfinite(self.scale))
                and np.all(self.scale > 0)):
            raise ValueError("normalizer offset must be finite and scale finite and > 0, got "
                             f"offset={self.offset.tolist()}, scale={self.scale.tolist()}")
        self.stats = {k: np.asarray(v, np.float64).copy() for k, v in (stats or {}).items()}
        self._cache: dict = {}

    @property
    def dim(self) -> int:
        """Number of feature dimensions ``D``."""
        return int(self.offset.shape[0])

    @classmethod
    def from_stats(cls, stats: Mapping[str, np.ndarray], kind: str = "limits", *,
                   eps: float = DEFAULT_EPS) -> "Normalizer":
        """From per-dimension ``stats`` (``min``, ``max``, ``mean``, ``std``; each ``[D]``).

        ``eps`` (> 0) floors the std (gaussian) or the half-range (limits).
        """
        if kind not in KINDS:
            raise ValueError(f"normalizer kind must be one of {list(KINDS)}, got {kind!r}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps!r}")
        need = ("mean", "std") if kind == "gaussian" else ("min", "max")
        missing = [k for k in need if k not in stats]
        if missing:
            raise ValueError(f"a {kind!r} normalizer needs stats {list(need)}; missing {missing}")
        if kind == "gaussian":
            offset = np.asarray(stats["mean"], np.float64)
            scale = np.maximum(np.asarray(stats["std"], np.float64), eps)
        else:
            lo = np.asarray(stats["min"], np.float64)
            hi = np.asarray(stats["max"], np.float64)
            if np.any(hi < lo):
                raise ValueError(f"limits normalizer needs max >= min per dimension, got "
                                 f"min={lo.tolist()}, max={hi.tolist()}")
            offset = (hi + lo) / 2.0
            scale = np.maximum((hi - lo) / 2.0, eps)
        return cls(kind, offset, scale, stats)

    # ------------------------------------------------------------------ maps
    def normalize(self, x):
        """``(x − offset) / scale`` over the last axis (numpy array or torch tensor)."""
        x, offset, scale = self._prepare(x)
        return (x - offset) / scale

    def unnormalize(self, y):
        """Inverse map ``y · scale + offset`` (numpy array or torch tensor)."""
        y, offset, scale = self._prepare(y)
        return y * scale + offset

    def _prepare(self, x):
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(x, torch.Tensor):
            if not x.is_floating_point():
                x = x.to(torch.get_default_dtype())
            key = (x.dtype, x.device)
            if key not in self._cache:
                self._cache[key] = (torch.as_tensor(self.offset, dtype=x.dtype, device=x.device),
                                    torch.as_tensor(self.scale, dtype=x.dtype, device=x.device))
            offset, scale = self._cache[key]
        else:
            x = np.asarray(x)
            if x.dtype.kind != "f":
                x = x.astype(np.float64)
            offset, scale = self.offset.astype(x.dtype), self.scale.astype(x.dtype)
        if x.ndim == 0 or (x.shape[-1] != self.dim and self.dim != 1):
            raise ValueError(f"{self.kind} normalizer has D = {self.dim} dimensions; the input's "
                             f"last axis must have length {self.dim}, got shape {tuple(x.shape)}")
        return x, offset, scale

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict:
        """Plain-python snapshot (lists), JSON/YAML/torch-save friendly."""
        return {"kind": self.kind, "offset": self.offset.tolist(), "scale": self.scale.tolist(),
                "stats": {k: v.tolist() for k, v in self.stats.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Normalizer":
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(d["kind"], d["offset"], d["scale"], d.get("stats"))
        except KeyError as e:
            raise ValueError(f"normalizer dict is missing key {e.args[0]!r}; expected keys "
                             "kind, offset, scale (and optionally stats)") from None

    def __repr__(self) -> str:
        return (f"Normalizer(kind={self.kind!r}, offset={np.round(self.offset, 4).tolist()}, "
                f"scale={np.round(self.scale, 4).tolist()})")


class RunningStats:
    """Streaming per-dimension count, min, max, mean and population std (float64).

    Batches are merged with Chan et al.'s parallel update, so the result matches
    ``np.mean``/``np.std`` over the concatenation without holding it in memory.
    """

    def __init__(self, dim: int):
        self.dim = int(dim)
        self.count = 0
        self.mean = np.zeros(self.dim)
        self.m2 = np.zeros(self.dim)
        self.min = np.full(self.dim, np.inf)
        self.max = np.full(self.dim, -np.inf)

    def update(self, batch) -> None:
        """Add ``batch`` ``[n, D]`` (or ``[n]`` when ``D = 1``)."""
        b = np.asarray(batch, np.float64).reshape(-1, self.dim)
        n = b.shape[0]
        if n == 0:
            return
        bmean = b.mean(axis=0)
        bm2 = ((b - bmean) ** 2).sum(axis=0)
        tot = self.count + n
        delta = bmean - self.mean
        self.mean = self.mean + delta * (n / tot)
        self.m2 = self.m2 + bm2 + delta ** 2 * (self.count * n / tot)
        self.count = tot
        self.min = np.minimum(self.min, b.min(axis=0))
        self.max = np.maximum(self.max, b.max(axis=0))

    def result(self) -> dict[str, np.ndarray]:
        """``{"min", "max", "mean", "std"}``, each float64 ``[D]``."""
        if self.count == 0:
            raise ValueError("no data: statistics of an empty set are undefined")
        return {"min": self.min.copy(), "max": self.max.copy(), "mean": self.mean.copy(),
                "std": np.sqrt(self.m2 / self.count)}

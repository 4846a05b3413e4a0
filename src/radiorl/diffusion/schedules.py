"""Discrete noise schedules and the forward (noising) process.

Conventions
-----------
A schedule has ``K`` diffusion steps. Every table is indexed by the noise level
``k = 0..K`` (length ``K + 1``): ``k = 0`` is clean data, ``k = K`` is (near) pure noise.
The paper (MA-CDMP, Sec. IV-A) indexes the steps ``k in {1, ..., K}`` with
``alpha_k = 1 - beta_k`` and ``alpha_bar_k = prod_{s<=k} alpha_s``; entry 0 of our tables
is the clean-data convention ``beta_0 = 0, alpha_bar_0 = 1`` so ``table[k]`` is the paper's
quantity at step ``k``.

Forward process (paper Algorithm 1, line 9)::

    x_k = sqrt(alpha_bar_k) * x_0 + sqrt(1 - alpha_bar_k) * eps,   eps ~ N(0, I)

Tables are ``torch.float64`` (exact enough that ``alpha_bar_K ~ 1e-7`` keeps its digits);
functions acting on data return tensors in the dtype of the data (``float32`` typically).

Kinds (``NoiseSchedule.make``)
------------------------------
``"cosine"``  Nichol & Dhariwal (2021): ``f(t) = cos^2((t + s) / (1 + s) * pi / 2)``,
              ``alpha_bar(k) = f(k/K) / f(0)``, ``beta_k = min(1 - alpha_bar(k)/alpha_bar(k-1),
              max_beta)`` with ``s = 0.008``, ``max_beta = 0.999``; the tables are then rebuilt from
              the clipped betas, so ``alpha_bar_K`` is ``alpha_bar(K-1) * (1 - max_beta)`` (the
              unclipped closed form would give exactly 0). With ``K = 100``,
              ``alpha_bar_K = 2.4e-7``.
``"linear"``  ``beta_k`` linear from ``beta_start`` to ``beta_end`` (k = 1..K). Defaults scale the
              classic DDPM values (1e-4 .. 0.02 for K = 1000) by ``1000 / K`` (each capped at
              0.999) so that ``sum beta`` -- and hence ``alpha_bar_K ~ exp(-sum beta) ~ 4e-5`` -- is
              the same for any K: K = 100 still ends near pure noise.
``"vp"``      Discretised VP-SDE (Song et al. 2021, the paper's eq. (2)):
              ``beta(t) = beta_min + t (beta_max - beta_min)``, ``t = k / K``,
              ``alpha_bar_k = exp(-int_0^t beta) = exp(-(beta_min t + (beta_max - beta_min) t^2 / 2))``
              with ``beta_min = 0.1``, ``beta_max = 20``; ``beta_k = 1 - alpha_bar_k / alpha_bar_{k-1}``.
              ``alpha_bar_K = exp(-10.05) = 4.3e-5``. Betas are capped at 0.999 like the other
              kinds, which only changes K <= 2.

Example
-------
>>> sch = NoiseSchedule.make("cosine", steps=100)
>>> sch.K, float(sch.alpha_bars[0]), float(sch.alpha_bars[100]) < 1e-6
(100, 1.0, True)
>>> x0 = torch.zeros(4, 8, 3); k = torch.tensor([0, 10, 50, 100])
>>> sch.q_sample(x0, k, torch.randn_like(x0)).shape
torch.Size([4, 8, 3])
"""
from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
import torch

SCHEDULES = ("cosine", "linear", "vp")

# Allowed keyword arguments per kind, with their defaults (None = depends on K).
_KIND_KW = {
    "cosine": {"s": 0.008, "max_beta": 0.999},
    "linear": {"beta_start": None, "beta_end": None},
    "vp": {"beta_min": 0.1, "beta_max": 20.0},
}
_MAX_BETA = 0.999


def _is_int(v) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _finite_float(name: str, v, lo: float | None = None, hi: float | None = None,
                  lo_open: bool = True, hi_open: bool = True) -> float:
    """Validate a real scalar in an interval; return it as a python float."""
    lo_s = "-inf" if lo is None else repr(lo)
    hi_s = "inf" if hi is None else repr(hi)
    rng = f"{'(' if lo_open else '['}{lo_s}, {hi_s}{')' if hi_open else ']'}"
    if isinstance(v, bool) or not isinstance(v, (Real, torch.Tensor)) or (
            isinstance(v, torch.Tensor) and v.numel() != 1):
        raise ValueError(f"{name} must be a finite number in {rng}, got {v!r}")
    f = float(v)
    ok = math.isfinite(f)
    if ok and lo is not None:
        ok = f > lo if lo_open else f >= lo
    if ok and hi is not None:
        ok = f < hi if hi_open else f <= hi
    if not ok:
        raise ValueError(f"{name} must be a finite number in {rng}, got {v!r}")
    return f


class NoiseSchedule:
    """Discrete diffusion with K steps; index k = 0..K, k = 0 is clean data (paper: k in 1..K).

    Args:
        betas: 1-D array-like of length ``K >= 1`` with ``beta_1..beta_K``, each in (0, 1).
        kind: label stored with the schedule (``"custom"`` for hand-made betas).

    Attributes (all ``torch.float64`` of shape ``[K + 1]``, entry ``k`` is step ``k``):
        betas: ``beta_k``; ``betas[0] = 0``.
        alphas: ``1 - beta_k``; ``alphas[0] = 1``.
        alpha_bars: ``prod_{s<=k} alpha_s``; ``alpha_bars[0] = 1``; strictly decreasing.
        sqrt_alpha_bars, sqrt_one_minus_alpha_bars: ``alpha_k`` and ``sigma_k`` of the
            marginal ``q(x_k | x_0) = N(alpha_k x_0, sigma_k^2 I)`` (DPM-Solver's notation).
        lambdas: half log-SNR ``log(alpha_k / sigma_k)``; ``lambdas[0] = +inf``.
        posterior_variance: ``Sigma_k = (1 - abar_{k-1}) / (1 - abar_k) * beta_k`` (paper
            eq. (20)); ``[0] = 0`` and ``[1] = 0`` (the last reverse step adds no noise).
        posterior_mean_coef1, posterior_mean_coef2: mean of ``q(x_{k-1} | x_k, x_0)`` is
            ``coef1[k] * x_0 + coef2[k] * x_k``; ``[0] = 0``.
        K: number of steps. kind: schedule kind. kw: keyword arguments of ``make`` (for
            ``to_dict``).
    """

    def __init__(self, betas, kind: str = "custom"):
        b = torch.as_tensor(np.asarray(betas, dtype=np.float64))
        if b.ndim != 1 or b.numel() < 1:
            raise ValueError(f"betas must be a 1-D array of length K >= 1, got shape {tuple(b.shape)}")
        bad = ~(torch.isfinite(b) & (b > 0) & (b < 1))
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0])
            raise ValueError(f"betas must all lie in the open interval (0, 1), "
                             f"got betas[{i}] = {float(b[i])!r} (step k = {i + 1})")
        self.K: int = int(b.numel())
        self.kind: str = str(kind)
        self.kw: dict = {}
        zero = torch.zeros(1, dtype=torch.float64)
        self.betas = torch.cat([zero, b])
        self.alphas = 1.0 - self.betas
        self.alpha_bars = torch.cumprod(self.alphas, 0)
        self.sqrt_alpha_bars = self.alpha_bars.sqrt()
        self.sqrt_one_minus_alpha_bars = (1.0 - self.alpha_bars).sqrt()
        self.lambdas = torch.log(self.sqrt_alpha_bars) - torch.log(self.sqrt_one_minus_alpha_bars)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bars[:-1]])
        one_m = 1.0 - self.alpha_bars
        denom = torch.where(one_m > 0, one_m, torch.ones_like(one_m))  # only k = 0 has 1-abar = 0
        pv = (1.0 - abar_prev) / denom * self.betas
        pv[0] = 0.0
        self.posterior_variance = pv
        c1 = self.betas * abar_prev.sqrt() / denom
        c2 = (1.0 - abar_prev) * self.alphas.sqrt() / denom
        c1[0] = 0.0
        c2[0] = 0.0
        self.posterior_mean_coef1 = c1
        self.posterior_mean_coef2 = c2

    # ------------------------------------------------------------------ construction
    @classmethod
    def make(cls, kind: str = "cosine", steps: int = 100, **kw) -> "NoiseSchedule":
        """Build a named schedule with ``steps = K`` diffusion steps.

        Args:
            kind: one of ``SCHEDULES`` (``"cosine"``, ``"linear"``, ``"vp"``).
            steps: K, an integer >= 1.
            **kw: ``cosine``: ``s`` (> 0, default 0.008), ``max_beta`` (in (0, 1), default 0.999);
                ``linear``: ``beta_start``, ``beta_end`` (in (0, 1); defaults
                ``min(1e-4 * 1000 / K, 0.999)`` and ``min(0.02 * 1000 / K, 0.999)``);
                ``vp``: ``beta_min`` (> 0, default 0.1), ``beta_max`` (>= beta_min, default 20).
        Returns:
            NoiseSchedule with tables of shape ``[K + 1]``.
        """
        if kind not in SCHEDULES:
            raise ValueError(f"kind must be one of {list(SCHEDULES)}, got {kind!r}")
        if not _is_int(steps) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        allowed = _KIND_KW[kind]
        unknown = sorted(set(kw) - set(allowed))
        if unknown:
            raise ValueError(f"unknown keyword(s) {unknown} for kind={kind!r}; allowed: {sorted(allowed)}")
        K = int(steps)
        k = np.arange(K + 1, dtype=np.float64)
        if kind == "cosine":
            s = _finite_float("s", kw.get("s", allowed["s"]), lo=0.0)
            max_beta = _finite_float("max_beta", kw.get("max_beta", allowed["max_beta"]), 0.0, 1.0)
            f = np.cos((k / K + s) / (1.0 + s) * math.pi / 2.0) ** 2
            abar = f / f[0]
            betas = np.minimum(1.0 - abar[1:] / abar[:-1], max_beta)
            params = {"s": s, "max_beta": max_beta}
        elif kind == "linear":
            b0 = kw.get("beta_start")
            b1 = kw.get("beta_end")
            b0 = min(1e-4 * 1000.0 / K, _MAX_BETA) if b0 is None else b0
            b1 = min(0.02 * 1000.0 / K, _MAX_BETA) if b1 is None else b1
            b0 = _finite_float("beta_start", b0, 0.0, 1.0)
            b1 = _finite_float("beta_end", b1, 0.0, 1.0)
            betas = np.linspace(b0, b1, K, dtype=np.float64)
            params = {"beta_start": b0, "beta_end": b1}
        else:  # vp
            bmin = _finite_float("beta_min", kw.get("beta_min", allowed["beta_min"]), lo=0.0)
            bmax = _finite_float("beta_max", kw.get("beta_max", allowed["beta_max"]), lo=bmin,
                                 lo_open=False)
            t = k / K
            log_abar = -(bmin * t + 0.5 * (bmax - bmin) * t * t)
            # 1 - abar_k / abar_{k-1}, computed without cancellation; capped at 0.999 like the
            # other kinds (only binds for K <= 2)
            betas = np.minimum(-np.expm1(log_abar[1:] - log_abar[:-1]), _MAX_BETA)
            params = {"beta_min": bmin, "beta_max": bmax}
        sch = cls(betas, kind=kind)
        sch.kw = params
        return sch

    def to_dict(self) -> dict:
        """Plain-python description (YAML/JSON friendly) that ``from_dict`` rebuilds exactly.

        Returns ``{"kind", "K", "kw"}`` for named kinds, ``{"kind": "custom", "K", "betas"}``
        (list of K floats) otherwise.
        """
        if self.kind in SCHEDULES:
            return {"kind": self.kind, "K": self.K, "kw": dict(self.kw)}
        return {"kind": self.kind, "K": self.K, "betas": [float(v) for v in self.betas[1:]]}

    @classmethod
    def from_dict(cls, d: dict) -> "NoiseSchedule":
        """Inverse of ``to_dict``."""
        if not isinstance(d, dict) or "kind" not in d:
            raise ValueError(f"d must be a dict produced by NoiseSchedule.to_dict, got {d!r}")
        if "betas" in d:
            return cls(d["betas"], kind=d["kind"])
        if "K" not in d:
            raise ValueError("d must contain 'K' (number of steps) for a named schedule kind")
        return cls.make(d["kind"], d["K"], **dict(d.get("kw", {})))

    def __repr__(self) -> str:
        return (f"NoiseSchedule(kind={self.kind!r}, K={self.K}, "
                f"alpha_bar_K={float(self.alpha_bars[-1]):.3g})")

    # ------------------------------------------------------------------ lookups
    def _check_k(self, k, name: str = "k") -> torch.Tensor:
        if isinstance(k, torch.Tensor):
            if k.dtype.is_floating_point or k.dtype == torch.bool or k.is_complex():
                raise ValueError(f"{name} must be an integer tensor with values in [0, K={self.K}], "
                                 f"got dtype {k.dtype}")
            kt = k.long()
        elif _is_int(k):
            kt = torch.tensor([int(k)], dtype=torch.long)
        else:
            raise ValueError(f"{name} must be a LongTensor [B] or an int in [0, K={self.K}], got {k!r}")
        if kt.ndim != 1:
            raise ValueError(f"{name} must be 1-D [B], got shape {tuple(kt.shape)}")
        # (the value check reads the data: skipped inside torch.compile, where it would split
        # the graph; compiled callers draw k themselves)
        if kt.numel() and not torch.compiler.is_compiling() and (
                int(kt.min()) < 0 or int(kt.max()) > self.K):
            raise ValueError(f"{name} values must be integers in [0, K={self.K}], "
                             f"got min {int(kt.min())}, max {int(kt.max())}")
        return kt

    def sqrt_alpha_bar(self, k) -> torch.Tensor:
        """``sqrt(alpha_bar_k)``. k: LongTensor ``[B]`` in [0, K] -> float64 ``[B]`` (CPU)."""
        return self.sqrt_alpha_bars[self._check_k(k).cpu()]

    def sqrt_one_minus_alpha_bar(self, k) -> torch.Tensor:
        """``sqrt(1 - alpha_bar_k)``. k: LongTensor ``[B]`` in [0, K] -> float64 ``[B]`` (CPU)."""
        return self.sqrt_one_minus_alpha_bars[self._check_k(k).cpu()]

    def q_sample(self, x0: torch.Tensor, k, noise: torch.Tensor) -> torch.Tensor:
        """Forward noising ``x_k = sqrt(abar_k) x0 + sqrt(1 - abar_k) noise``.

        Args:
            x0: clean data ``[B, ...]`` (floating point).
            k: LongTensor ``[B]`` (or an int, applied to the whole batch) with values in [0, K].
            noise: same shape as ``x0``.
        Returns:
            ``x_k``, shape and dtype of ``x0``.
        """
        if not isinstance(x0, torch.Tensor) or not x0.dtype.is_floating_point or x0.ndim < 1:
            raise ValueError("x0 must be a floating-point tensor [B, ...]")
        if not isinstance(noise, torch.Tensor) or noise.shape != x0.shape:
            raise ValueError(f"noise must be a tensor of x0's shape {tuple(x0.shape)}, got "
                             f"{tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise)}")
        kt = self._check_k(k)
        if kt.numel() == 1:
            kt = kt.expand(x0.shape[0])
        if kt.shape[0] != x0.shape[0]:
            raise ValueError(f"k must have length B={x0.shape[0]}, got {kt.shape[0]}")
        view = (-1,) + (1,) * (x0.ndim - 1)
        a = self.sqrt_alpha_bars[kt.cpu()].to(device=x0.device, dtype=x0.dtype).view(view)
        s = self.sqrt_one_minus_alpha_bars[kt.cpu()].to(device=x0.device, dtype=x0.dtype).view(view)
        return a * x0 + s * noise.to(x0.dtype)

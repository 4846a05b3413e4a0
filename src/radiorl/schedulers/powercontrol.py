"""Power control for interfering single-antenna links: WMMSE, FP, random restarts, and the
multi-subband downlink with per-subband single-user scheduling.

Specification: ``specs/classical-schedulers.md`` B.2-B.6, oracles in ``specs/oracles.md`` C.11.

Conventions (all functions are pure and work on numpy arrays):

* ``gain[..., k, j]`` is the linear power gain from transmitter ``j`` to receiver ``k``
  (``g_kj`` in the spec); ``gain[..., k, k]`` is link ``k``'s direct gain. Leading dimensions
  ``...`` are batch dimensions (environment copies, subbands, restarts) and every routine is
  vectorized over them.
* ``weights[..., K] >= 0`` (dimensionless), ``p_max`` and ``noise`` in watts, scalar or
  ``[..., K]``. ``noise`` must be strictly positive.
* ``SINR_k = g_kk p_k / (sum_{j != k} g_kj p_j + noise_k)`` and
  ``WSR = sum_k weights_k * ln(1 + SINR_k)``. **Rates are in nats** unless a ``base`` argument
  says otherwise (divide by ``ln 2`` for bit/s/Hz).

Public entry points:

* :func:`sinr`, :func:`weighted_sum_rate` - evaluation.
* :func:`wmmse_power`, :func:`fp_power` - single-band power control (batched).
* :func:`best_of_restarts` - full-power start plus random feasible starts, best per element.
* :func:`single_user_power_schedule` - alternating per-AP device choice and power control over
  ``[B, H]`` (environment copy x subband) downlink instances; this is what the cellular
  baselines call every slot.
* :func:`plain_multiuser_power`, :func:`plain_fp_loop`, :func:`plain_wmmse_loop` - the
  reference codes' approach and naive per-link loops, for comparison and benchmarking only.

Note: for single-antenna links the closed-form FP iteration and the WMMSE sweep are the same
map ``p -> p'`` (substitute ``y_k^2 = a_k w_k u_k^2``; Shen & Yu, Part II), so both solvers
return the same powers up to rounding. Both are kept because the spec and the papers name both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

try:  # numba is a core dependency, but keep a pure-numpy fallback.
    from numba import njit

    _HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only without numba
    _HAVE_NUMBA = False

__all__ = [
    "PowerResult",
    "SingleUserSchedule",
    "sinr",
    "weighted_sum_rate",
    "wmmse_receiver_update",
    "wmmse_power",
    "fp_power",
    "best_of_restarts",
    "snap_power_to_levels",
    "single_user_power_schedule",
    "plain_multiuser_power",
    "plain_fp_loop",
    "plain_wmmse_loop",
]


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PowerResult:
    """Output of a power-control solver.

    Attributes:
        power: ``[..., K]`` transmit powers in watts, ``0 <= power <= p_max``.
        wsr: ``[...]`` weighted sum-rate at ``power``, in nats (``/ ln 2`` for b/s/Hz).
        iterations: ``[...]`` int, iterations run for each batch element before it converged
            (or hit ``max_iter``).
        history: ``[T + 1, ...]`` WSR in nats at the starting point and after each of the ``T``
            iterations run for the whole batch (converged elements repeat their last value);
            only filled when the solver is called with ``trace=True``, else ``None``.
        start: ``[...]`` int, index of the winning start in :func:`best_of_restarts`
            (0 = full power); ``None`` for the plain solvers.
    """

    power: np.ndarray
    wsr: np.ndarray
    iterations: np.ndarray
    history: np.ndarray | None = None
    start: np.ndarray | None = None


class SingleUserSchedule(NamedTuple):
    """Output of :func:`single_user_power_schedule` (unpacks as ``device, power, wsr``).

    Attributes:
        device: ``[B, H, K]`` int, global index of the device AP ``k`` serves on subband ``h``,
            or ``-1`` when AP ``k`` is silent there.
        power: ``[B, H, K]`` AP transmit power in watts (0 exactly where ``device == -1``).
        wsr: ``[B, H]`` weighted sum-rate of the scheduled links in nats.
    """

    device: np.ndarray
    power: np.ndarray
    wsr: np.ndarray


# ----------------------------------------------------------------------------------------------
# Input validation (called once per public call; cheap)
# ----------------------------------------------------------------------------------------------
def _float_array(name: str, x) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a real numeric array; got {type(x).__name__}") from exc
    return a


def _check_nonneg(name: str, x, unit: str = "") -> np.ndarray:
    """Float array, finite and >= 0; otherwise ``ValueError`` naming ``name`` and the range."""
    a = _float_array(name, x)
    if a.size and not (np.isfinite(a).all() and a.min() >= 0.0):
        bad = a[~(np.isfinite(a) & (a >= 0.0))].flat[0]
        raise ValueError(f"{name} must be finite and in [0, inf){unit}; got {bad!r}")
    return a


def _check_positive(name: str, x, unit: str = "") -> np.ndarray:
    a = _float_array(name, x)
    if a.size and not (np.isfinite(a).all() and a.min() > 0.0):
        bad = a[~(np.isfinite(a) & (a > 0.0))].flat[0]
        raise ValueError(f"{name} must be finite and in (0, inf){unit}; got {bad!r}")
    return a


def _broadcast_field(name: str, a: np.ndarray, shape: tuple, what: str) -> np.ndarray:
    try:
        return np.broadcast_to(a, shape)
    except ValueError as exc:
        raise ValueError(f"{name} has shape {a.shape}, which does not broadcast to {what} "
                         f"{shape}") from exc


def _check_int(name: str, x) -> int:
    if isinstance(x, bool) or not isinstance(x, (int, np.integer)) or x < 0:
        raise ValueError(f"{name} must be an integer in [0, inf); got {x!r}")
    return int(x)


def _check_tol(name: str, x) -> float:
    x = float(x)
    if not (math.isfinite(x) and x >= 0.0):
        raise ValueError(f"{name} must be finite and in [0, inf); got {x!r}")
    return x


def _prepare_links(gain, weights, p_max, noise, p_init=None):
    """Validate and broadcast single-band link inputs to a common batch shape.

    Returns ``(G, alpha, pmax, sigma2, p0)`` with shapes ``[*b, K, K]``, ``[*b, K]`` x 4
    (``p0`` is ``p_max`` when ``p_init`` is None; weight-0 links start at 0).
    """
    G = _check_nonneg("gain", gain, " (linear power gain)")
    if G.ndim < 2 or G.shape[-1] != G.shape[-2] or G.shape[-1] == 0:
        raise ValueError(f"gain must have shape [..., K, K] with K >= 1; got {G.shape}")
    K = G.shape[-1]
    alpha = _check_nonneg("weights", weights)
    if alpha.ndim < 1 or alpha.shape[-1] not in (1, K):
        raise ValueError(f"weights must have shape [..., K] with K = {K}; got {alpha.shape}")
    pmax = _check_nonneg("p_max", p_max, " W")
    sigma2 = _check_positive("noise", noise, " W")
    shapes = [G.shape[:-2], alpha.shape[:-1]]
    for a in (pmax, sigma2):
        if a.ndim:
            shapes.append(a.shape[:-1])
    p0 = None
    if p_init is not None:
        p0 = _check_nonneg("p_init", p_init, " W")
        if p0.ndim < 1:
            raise ValueError(f"p_init must have shape [..., K] with K = {K}; got {p0.shape}")
        shapes.append(p0.shape[:-1])
    try:
        batch = np.broadcast_shapes(*shapes)
    except ValueError as exc:
        raise ValueError(f"batch shapes of gain {G.shape[:-2]}, weights {alpha.shape[:-1]}, "
                         f"p_max, noise and p_init do not broadcast") from exc
    shp = batch + (K,)
    G = _broadcast_field("gain", G, batch + (K, K), "[..., K, K]")
    alpha = _broadcast_field("weights", alpha, shp, "[..., K]")
    pmax = _broadcast_field("p_max", pmax, shp, "[..., K]")
    sigma2 = _broadcast_field("noise", sigma2, shp, "[..., K]")
    if p0 is None:
        p0 = pmax
    else:
        p0 = _broadcast_field("p_init", p0, shp, "[..., K]")
        if np.any(p0 > pmax * (1.0 + 1e-12)):
            raise ValueError("p_init must lie in [0, p_max] W elementwise")
        p0 = np.minimum(p0, pmax)
    p0 = np.where(alpha > 0.0, p0, 0.0)
    return G, alpha, pmax, sigma2, p0


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
def _signal_interference(G_off, g_dir, p, sigma2):
    """``S = g_kk p_k`` and ``IN = sum_{j!=k} g_kj p_j + noise`` (no cancellation)."""
    S = g_dir * p
    IN = (G_off @ p[..., None])[..., 0] + sigma2
    return S, IN


def _off_diagonal(G):
    K = G.shape[-1]
    return G * (1.0 - np.eye(K))


def sinr(gain, power, noise) -> np.ndarray:
    """SINR of every link.

    Args:
        gain: ``[..., K, K]`` linear power gains, ``gain[..., k, j]`` from tx ``j`` to rx ``k``.
        power: ``[..., K]`` transmit powers in watts.
        noise: scalar or ``[..., K]`` noise power in watts (> 0).
    Returns:
        ``[..., K]`` linear SINR ``g_kk p_k / (sum_{j!=k} g_kj p_j + noise)``.

    Example:
        >>> sinr([[1.0, 0.5], [0.3, 0.8]], [1.0, 1.0], 0.1).round(4)
        array([1.6667, 2.    ])
    """
    G = _check_nonneg("gain", gain)
    p = _check_nonneg("power", power, " W")
    s2 = _check_positive("noise", noise, " W")
    S, IN = _signal_interference(_off_diagonal(G), np.diagonal(G, axis1=-2, axis2=-1), p, s2)
    return S / IN


def weighted_sum_rate(gain, power, weights, noise, sinr_cap_db: float | None = None,
                      base: float = math.e) -> np.ndarray:
    """Weighted sum-rate ``sum_k w_k log_base(1 + min(SINR_k, cap))``.

    Args:
        gain: ``[..., K, K]`` linear power gains (``gain[..., k, j]``: tx ``j`` -> rx ``k``).
        power: ``[..., K]`` watts.
        weights: ``[..., K]`` link weights ``>= 0``.
        noise: scalar or ``[..., K]`` watts (> 0).
        sinr_cap_db: optional SINR cap in dB (the reference code uses 30 dB); ``None`` = no cap.
        base: logarithm base; ``e`` (default) gives nats, ``2`` gives bit/s/Hz.
    Returns:
        ``[...]`` weighted sum-rate in nats (or in ``log_base`` units).

    Example (spec B.6, example 1, both links on):
        >>> float(weighted_sum_rate([[1, .5], [.3, .8]], [1, 1], [1, 1], 0.1, base=2)).__round__(3)
        3.0
    """
    s = sinr(gain, power, noise)
    alpha = _check_nonneg("weights", weights)
    if sinr_cap_db is not None:
        s = np.minimum(s, 10.0 ** (float(sinr_cap_db) / 10.0))
    return (alpha * np.log1p(s)).sum(axis=-1) / math.log(base)


def wmmse_receiver_update(gain, power, noise):
    """WMMSE receive scalar and MSE weight for given powers (spec B.3 steps 2-3).

    ``u_k = h_kk v_k / (sum_j g_kj v_j^2 + noise)`` and ``w_k = 1 / (1 - u_k h_kk v_k)`` with
    ``v_k = sqrt(p_k)`` and ``h_kk = sqrt(g_kk)``. ``1 - u_k h_kk v_k`` is evaluated as
    ``(interference + noise) / (total received power)`` (the same quantity, without
    cancellation at high SINR), so ``w_k = 1 + SINR_k`` holds to rounding.

    Args:
        gain: ``[..., K, K]`` linear power gains.
        power: ``[..., K]`` watts.
        noise: scalar or ``[..., K]`` watts (> 0).
    Returns:
        ``(u, w)``, both ``[..., K]``: ``u`` in 1/sqrt(W), ``w`` dimensionless (>= 1).

    Example:
        >>> u, w = wmmse_receiver_update([[1.0]], [1.0], 0.25)
        >>> float(u[0]), float(w[0])     # w = 1 + SINR = 1 + 1/0.25
        (0.8, 5.0)
    """
    G = _check_nonneg("gain", gain)
    p = _check_nonneg("power", power, " W")
    s2 = _check_positive("noise", noise, " W")
    g_dir = np.diagonal(G, axis1=-2, axis2=-1)
    S, IN = _signal_interference(_off_diagonal(G), g_dir, p, s2)
    T = S + IN
    return np.sqrt(g_dir) * np.sqrt(p) / T, T / IN


# ----------------------------------------------------------------------------------------------
# Single-band FP and WMMSE (batched numpy core)
# ----------------------------------------------------------------------------------------------
def _fp_update(GT, g_dir, alpha, pmax, p, S, IN):
    """One FP (quadratic transform) step from the terms of the current point (spec B.4)."""
    gamma = S / IN                                  # 1. gamma_k = SINR_k
    a1g = alpha * (1.0 + gamma)
    T = S + IN
    y2 = a1g * S / (T * T)                          # 2. y_k^2 = alpha(1+gamma) g_kk p_k / T^2
    num = a1g * g_dir * y2
    den = (GT @ y2[..., None])[..., 0]              # sum_j y_j^2 g_jk
    den = den * den
    p = np.divide(num, den, out=np.zeros_like(num), where=num > 0.0)
    return np.minimum(p, pmax)                      # 3. p_k = min(P_k, ...)


def _wmmse_update(GT, g_dir, alpha, pmax, p, S, IN):
    """One WMMSE Gauss-Seidel sweep: v-block from the current (u, w) (spec B.3)."""
    T = S + IN
    h = np.sqrt(g_dir)
    u = h * np.sqrt(p) / T                                        # u = h v / T
    w = T / IN                                                    # w = 1/(1 - u h v)
    aw = alpha * w
    num = aw * u * h
    den = (GT @ (aw * u * u)[..., None])[..., 0]  # sum_j alpha_j w_j u_j^2 g_jk
    v = np.divide(num, den, out=np.zeros_like(num), where=num > 0.0)
    v = np.minimum(v, np.sqrt(pmax))
    return np.minimum(v * v, pmax)          # guard sqrt(P)^2 > P by rounding


_UPDATES = {"fp": _fp_update, "wmmse": _wmmse_update}


def _iterate(kind, G, alpha, pmax, sigma2, p, max_iter, tol_abs, tol_rel, active=None,
             trace=False):
    """Run FP/WMMSE maps ``p -> p_new`` on a batch until each element converges.

    Element ``b`` stops when ``|WSR_new - WSR_old| <= tol_abs + tol_rel * |WSR_new|`` (true WSR
    in nats) or after ``max_iter`` sweeps; stopped elements are frozen. The result is never
    worse than the start: an element whose final WSR is below its initial one (only possible
    by rounding) returns its initial point.

    Returns ``(p, wsr, iterations, history)``.
    """
    update = _UPDATES[kind]
    G_off = _off_diagonal(G)
    g_dir = np.diagonal(G, axis1=-2, axis2=-1)
    GT = np.swapaxes(G, -1, -2)
    S, IN = _signal_interference(G_off, g_dir, p, sigma2)
    wsr = (alpha * np.log1p(S / IN)).sum(-1)
    p_start, wsr_start = p, wsr
    act = np.ones(wsr.shape, bool) if active is None else np.array(active, bool, copy=True)
    iters = np.zeros(wsr.shape, np.int64)
    hist = [wsr] if trace else None
    for _ in range(max_iter):
        if not act.any():
            break
        p_new = update(GT, g_dir, alpha, pmax, p, S, IN)
        S_new, IN_new = _signal_interference(G_off, g_dir, p_new, sigma2)
        wsr_new = (alpha * np.log1p(S_new / IN_new)).sum(-1)
        a = act[..., None]
        p = np.where(a, p_new, p)
        S = np.where(a, S_new, S)
        IN = np.where(a, IN_new, IN)
        iters = iters + act
        done = np.abs(wsr_new - wsr) <= tol_abs + tol_rel * np.abs(wsr_new)
        wsr = np.where(act, wsr_new, wsr)
        act = act & ~done
        if trace:
            hist.append(wsr)
    worse = wsr < wsr_start
    if worse.any():
        p = np.where(worse[..., None], p_start, p)
        wsr = np.where(worse, wsr_start, wsr)
    history = np.stack(hist) if trace else None
    return p, wsr, iters, history


def _solve(kind, gain, weights, p_max, noise, p_init, max_iter, tol, trace):
    G, alpha, pmax, sigma2, p0 = _prepare_links(gain, weights, p_max, noise, p_init)
    max_iter = _check_int("max_iter", max_iter)
    tol = _check_tol("tol", tol)
    p, wsr, iters, hist = _iterate(kind, G, alpha, pmax, sigma2, p0, max_iter, tol, 0.0,
                                   trace=trace)
    return PowerResult(power=p, wsr=wsr, iterations=iters, history=hist)


def wmmse_power(gain, weights, p_max, noise, p_init=None, max_iter: int = 100,
                tol: float = 1e-3, trace: bool = False) -> PowerResult:
    """WMMSE power control (Shi et al. 2011, SISO; spec B.3), batched.

    Starts from ``v = sqrt(p_init)`` (``sqrt(p_max)`` by default) and runs Gauss-Seidel sweeps
    ``v -> (u, w)``: ``v_k = clip(a_k w_k u_k h_kk / sum_j a_j w_j u_j^2 g_jk, 0, sqrt(P_k))``,
    ``u_k = h_kk v_k / (sum_j g_kj v_j^2 + s_k)``, ``w_k = 1/(1 - u_k h_kk v_k)``. Because
    ``w_k = 1 + SINR_k`` after the ``u/w`` update, ``sum_k a_k ln w_k`` is the WSR in nats; an
    element stops when it changes by at most ``tol`` (absolute, nats), or after ``max_iter``
    sweeps. Links with weight 0 start (and stay) at power 0. The WSR is monotone non-decreasing
    over sweeps and the result is never below the starting point's WSR.

    Args:
        gain: ``[..., K, K]`` linear power gains, ``gain[..., k, j]`` from tx ``j`` to rx ``k``.
        weights: ``[..., K]`` link weights ``>= 0``.
        p_max: scalar or ``[..., K]`` power limits in watts.
        noise: scalar or ``[..., K]`` noise powers in watts (> 0).
        p_init: optional ``[..., K]`` starting powers in ``[0, p_max]`` W (may add batch dims).
        max_iter: maximum number of sweeps.
        tol: stopping tolerance on the WSR change, nats.
        trace: if True, ``history`` holds the WSR after every sweep.
    Returns:
        :class:`PowerResult` (power ``[..., K]`` W, wsr ``[...]`` nats, iterations ``[...]``).

    Example (spec B.6 example 1: full power is a stationary point; 3.000 b/s/Hz):
        >>> r = wmmse_power([[1, .5], [.3, .8]], [1, 1], 1.0, 0.1)
        >>> r.power.round(3), round(float(r.wsr) / math.log(2), 3)
        (array([1., 1.]), 3.0)
    """
    return _solve("wmmse", gain, weights, p_max, noise, p_init, max_iter, tol, trace)


def fp_power(gain, weights, p_max, noise, p_init=None, max_iter: int = 100,
             tol: float = 1e-3, trace: bool = False) -> PowerResult:
    """FP power control (Shen & Yu 2018 closed-form quadratic transform; spec B.4), batched.

    Each iteration from the current ``p``: ``g_k = SINR_k(p)``;
    ``y_k = sqrt(a_k (1+g_k) g_kk p_k) / (sum_j g_kj p_j + s_k)``;
    ``p_k = min(P_k, a_k (1+g_k) g_kk y_k^2 / (sum_j y_j^2 g_jk)^2)``. Stops per element when the
    **true** WSR changes by at most ``tol`` (absolute, nats) or after ``max_iter`` iterations.
    Weight-0 links are forced to 0. Monotone non-decreasing WSR; the result is never below the
    starting point's WSR.

    Args / Returns: as :func:`wmmse_power`.

    Example (K = 1: FP returns full power; WSR = ln(1 + 10)):
        >>> r = fp_power([[1.0]], [1.0], 2.0, 0.2)
        >>> float(r.power[0]), round(float(r.wsr), 4)
        (2.0, 2.3979)
    """
    return _solve("fp", gain, weights, p_max, noise, p_init, max_iter, tol, trace)


def _random_starts(rng, pmax: np.ndarray, restarts: int, spread_db: float | None):
    """``[1 + R, *pmax.shape]`` starting powers: full power, then ``R`` random feasible starts
    ``p = p_max * 10^(-spread_db * U / 10)`` with ``U ~ U(0, 1)`` per link (log-uniform over
    the top ``spread_db`` dB), or ``p = p_max * U`` when ``spread_db`` is None."""
    starts = np.empty((restarts + 1,) + pmax.shape)
    starts[0] = pmax
    u = rng.uniform(0.0, 1.0, size=(restarts,) + pmax.shape)
    if spread_db is None:
        starts[1:] = u * pmax
    else:
        starts[1:] = np.power(10.0, -float(spread_db) * u / 10.0) * pmax
    return starts


def best_of_restarts(solver: Callable[..., PowerResult], gain, weights, p_max, noise, rng=None,
                     restarts: int = 8, start_spread_db: float | None = 30.0,
                     **solver_kwargs) -> PowerResult:
    """Run ``solver`` from full power and from ``restarts`` random feasible starts; keep the
    best WSR per batch element (spec B.6).

    The starts are stacked as an extra leading batch dimension, so the whole thing is one
    vectorized solver call. Random starts are log-uniform over the top ``start_spread_db`` dB
    below ``p_max``, independently per link (``p_max * U(0, 1)`` if ``start_spread_db`` is
    None). Log-uniform starts reach the small basins of attraction of "one link off" corners
    more often: on 8000 random equal-weight K = 2 instances with 8 restarts, 30 dB log-uniform
    starts missed the (binary) optimum on 0.3 % of them (16 restarts: 0.03 %), ``U(0, 1)``
    starts on 1.3 %. Ties go to the earliest start (full power first).

    Args:
        solver: :func:`fp_power` or :func:`wmmse_power` (or anything with that signature).
        gain, weights, p_max, noise: as in :func:`wmmse_power`.
        rng: ``numpy.random.Generator`` or seed.
        restarts: number of random starts ``R >= 0``.
        start_spread_db: dB range of the log-uniform random starts (None: uniform in watts).
        **solver_kwargs: forwarded (``max_iter``, ``tol``).
    Returns:
        :class:`PowerResult` over the original batch shape; ``start[...]`` is the winning
        start's index (0 = full power), ``iterations`` that start's iteration count.

    Example (spec B.6 example 1: the optimum 3.459 b/s/Hz is at (1, 0)):
        >>> r = best_of_restarts(fp_power, [[1, .5], [.3, .8]], [1, 1], 1.0, 0.1,
        ...                      rng=0, restarts=8, tol=1e-9, max_iter=2000)
        >>> round(float(r.wsr) / math.log(2), 3), r.power.round(2)
        (3.459, array([1., 0.]))
    """
    G, alpha, pmax, sigma2, _ = _prepare_links(gain, weights, p_max, noise)
    R = _check_int("restarts", restarts)
    rng = np.random.default_rng(rng)
    if start_spread_db is not None:
        start_spread_db = _check_tol("start_spread_db", start_spread_db)
    starts = _random_starts(rng, pmax, R, start_spread_db)
    res = solver(G, alpha, pmax, sigma2, p_init=starts, **solver_kwargs)
    best = np.argmax(res.wsr, axis=0)
    power = np.take_along_axis(res.power, best[None, ..., None], axis=0)[0]
    wsr = np.take_along_axis(res.wsr, best[None], axis=0)[0]
    its = np.take_along_axis(np.broadcast_to(res.iterations, res.wsr.shape), best[None], 0)[0]
    return PowerResult(power=power, wsr=wsr, iterations=its, start=best)


# ----------------------------------------------------------------------------------------------
# Power levels
# ----------------------------------------------------------------------------------------------
def snap_power_to_levels(power, levels) -> np.ndarray:
    """Snap each positive power to the nearest positive level in dB; 0 stays 0.

    Args:
        power: ``[...]`` watts, ``>= 0``.
        levels: ``[L]`` allowed powers in watts (``>= 0``; a 0 entry means "off" and is only
            used for powers that are already 0).
    Returns:
        ``[...]`` snapped powers in watts (0 where ``power == 0`` or no positive level exists).

    Example (off + 0, 5.75, 11.5, 17.25, 23 dBm):
        >>> lv = 10 ** ((np.array([0, 5.75, 11.5, 17.25, 23.0]) - 30) / 10)
        >>> snap_power_to_levels(np.array([0.0, 0.0012, 0.05, 0.2]), np.r_[0.0, lv]).round(5)
        array([0.     , 0.001  , 0.05309, 0.19953])
    """
    p = _check_nonneg("power", power, " W")
    lv = _check_nonneg("power_levels", levels, " W").ravel()
    pos = lv[lv > 0.0]
    if pos.size == 0:
        return np.zeros_like(p)
    lp = np.log(pos)
    with np.errstate(divide="ignore"):
        lq = np.log(p)
    idx = np.abs(lq[..., None] - lp).argmin(axis=-1)
    return np.where(p > 0.0, pos[idx], 0.0)


# ----------------------------------------------------------------------------------------------
# Multi-subband downlink with per-subband single-user scheduling
# ----------------------------------------------------------------------------------------------
class _DownlinkProblem:
    """Precomputed arrays for the single-user procedure (numpy reference path)."""

    def __init__(self, gain, ap, alpha_dev, noise, K):
        N = gain.shape[-1]
        self.gain = gain                                    # [..., K, N]
        self.ap = ap                                        # [N]
        onehot = np.arange(K)[:, None] == ap[None, :]      # [K, N]
        self.gain_off = gain * ~onehot                      # interference gains only
        self.own = gain[..., ap, np.arange(N)]              # [..., N]
        self.alpha = alpha_dev                              # [..., N]
        self.pos = alpha_dev > 0.0
        counts = onehot.sum(1)
        D = max(int(counts.max()), 1)
        table = np.full((K, D), -1, np.int64)
        for k in range(K):  # K small; once per call
            d = np.flatnonzero(onehot[k])
            table[k, :d.size] = d
        self.valid = table >= 0                             # [K, D]
        self.table = np.where(self.valid, table, 0)
        self.has_dev = (self.pos[..., None, :] & onehot).any(-1)   # [..., K]
        self.noise = noise
        self.kidx = np.arange(K)

    def schedule(self, p):
        """Scheduling step at powers ``p [..., K]``: per-AP best device and the WSR."""
        IN = (p[..., None, :] @ self.gain_off)[..., 0, :] + self.noise
        sig = self.own * p[..., self.ap]
        metric = np.where(self.pos, self.alpha * np.log1p(sig / IN), -np.inf)
        cand = np.where(self.valid, metric[..., self.table], -np.inf)   # [..., K, D]
        best = cand.argmax(-1)
        val = np.take_along_axis(cand, best[..., None], -1)[..., 0]
        ok = val > -np.inf
        dev = np.where(ok, self.table[self.kidx, best], -1)
        wsr = np.where(ok, val, 0.0).sum(-1)
        return dev, wsr

    def links(self, dev):
        """Gains ``[..., K, K]`` and weights ``[..., K]`` of the links ``k -> dev[k]``."""
        idx = np.where(dev >= 0, dev, 0)
        K, N = self.gain.shape[-2:]
        batch = np.broadcast_shapes(self.gain.shape[:-2], idx.shape[:-1])
        gt = np.take_along_axis(np.broadcast_to(self.gain, batch + (K, N)),
                                np.broadcast_to(idx[..., None, :], batch + (K, K)),
                                axis=-1)                  # gt[..., j, k] = gain[..., j, dev_k]
        G = np.swapaxes(gt, -1, -2)
        a = np.take_along_axis(np.broadcast_to(self.alpha, batch + (N,)), idx, axis=-1)
        return G, np.where(dev >= 0, a, 0.0)


def _su_numpy(gain, ap, alpha_dev, p_max, noise, p0, solver, max_outer, rel_tol, inner_max,
              inner_tol):
    """Numpy reference of the alternating procedure; ``p0 [S, B, H, K]`` starting powers.

    Returns ``(device, power, wsr)`` with a leading ``S`` (start) axis.
    """
    K = gain.shape[-2]
    prob = _DownlinkProblem(gain, ap, alpha_dev, noise, K)
    p = p0 * prob.has_dev
    dev, w_prev = prob.schedule(p)
    act = w_prev > 0.0
    for _ in range(max_outer):
        if not act.any():
            break
        G, alpha = prob.links(dev)
        p_on = np.where(dev >= 0, p, 0.0)
        p_new, w_new, _, _ = _iterate(solver, G, alpha, p_max, noise, p_on, inner_max, 0.0,
                                      inner_tol, active=act)
        p = np.where(act[..., None], p_new, p)
        done = w_new - w_prev <= rel_tol * np.abs(w_prev)
        w_prev = np.where(act, w_new, w_prev)
        act = act & ~done
        if act.any():
            dev_new, _ = prob.schedule(p)
            dev = np.where(act[..., None], dev_new, dev)
    dev, wsr = prob.schedule(p)                      # final scheduling step (cannot hurt)
    dev = np.where(p > 0.0, dev, -1)
    p = np.where(dev >= 0, p, 0.0)
    return dev, p, wsr


if _HAVE_NUMBA:

    @njit(cache=True, nogil=True)
    def _nb_schedule(gain, alpha, table, counts, p, noise, dev, val):
        """Scheduling step for one instance: gain [K, N], alpha [N], powers p [K].

        Writes the per-AP best device ``dev[K]`` (-1: no positive-weight device) and its rate
        term ``val[K]``; returns the WSR (sum of ``val``).
        """
        K = gain.shape[0]
        tot = 0.0
        for k in range(K):
            best = -1
            bval = -np.inf
            for t in range(counts[k]):
                n = table[k, t]
                if alpha[n] > 0.0:
                    IN = noise
                    for j in range(K):
                        if j != k:
                            IN += gain[j, n] * p[j]
                    r = alpha[n] * np.log1p(gain[k, n] * p[k] / IN)
                    if r > bval:
                        bval = r
                        best = n
            dev[k] = best
            val[k] = bval if best >= 0 else 0.0
            tot += val[k]
        return tot

    @njit(cache=True, nogil=True)
    def _nb_link_terms(G_off, g_dir, p, noise, S, IN):
        """S_k = g_kk p_k, IN_k = sum_{j!=k} g_kj p_j + noise (G_off has a zero diagonal)."""
        K = G_off.shape[0]
        for k in range(K):
            acc = noise
            for j in range(K):
                acc += G_off[k, j] * p[j]
            IN[k] = acc
            S[k] = g_dir[k] * p[k]

    @njit(cache=True, nogil=True)
    def _nb_wsr(alpha, S, IN):
        w = 0.0
        for k in range(S.shape[0]):
            w += alpha[k] * np.log1p(S[k] / IN[k])
        return w

    @njit(cache=True, nogil=True)
    def _nb_power_step(G_off, g_dir, alpha, p, p_max, noise, solver, max_iter, tol_rel, work):
        """FP (solver 0) or WMMSE (solver 1) on K links from p (updated in place).

        Mirrors :func:`_iterate` for one instance (relative tolerance). ``work`` is a
        ``[6, K]`` scratch array. Returns the final WSR (never below the starting one).
        """
        K = G_off.shape[0]
        S, IN, c, num, den, p0 = (work[0], work[1], work[2], work[3], work[4], work[5])
        _nb_link_terms(G_off, g_dir, p, noise, S, IN)
        wsr = _nb_wsr(alpha, S, IN)
        wsr0 = wsr
        for k in range(K):
            p0[k] = p[k]
        sqrt_pmax = np.sqrt(p_max)
        for _ in range(max_iter):
            for k in range(K):
                T = S[k] + IN[k]
                if solver == 0:       # FP: c = y^2, num = a(1+gamma) g_kk y^2
                    a1g = alpha[k] * (1.0 + S[k] / IN[k])
                    c[k] = a1g * S[k] / (T * T)
                    num[k] = a1g * g_dir[k] * c[k]
                else:                 # WMMSE: c = a w u^2, num = a w u h
                    h = np.sqrt(g_dir[k])
                    u = h * np.sqrt(p[k]) / T
                    aw = alpha[k] * T / IN[k]
                    c[k] = aw * u * u
                    num[k] = aw * u * h
                den[k] = c[k] * g_dir[k]
            for j in range(K):        # den_k = sum_j c_j g_jk
                cj = c[j]
                if cj != 0.0:
                    for k in range(K):
                        den[k] += cj * G_off[j, k]
            for k in range(K):
                if num[k] > 0.0:
                    if solver == 0:
                        q = num[k] / (den[k] * den[k])
                        p[k] = q if q < p_max else p_max
                    else:
                        v = num[k] / den[k]
                        if v > sqrt_pmax:
                            v = sqrt_pmax
                        v = v * v
                        p[k] = v if v < p_max else p_max
                else:
                    p[k] = 0.0
            _nb_link_terms(G_off, g_dir, p, noise, S, IN)
            w_new = _nb_wsr(alpha, S, IN)
            done = abs(w_new - wsr) <= tol_rel * abs(w_new)
            wsr = w_new
            if done:
                break
        if wsr < wsr0:
            for k in range(K):
                p[k] = p0[k]
            wsr = wsr0
        return wsr

    @njit(cache=True, nogil=True)
    def _nb_single_user(gain, alpha, table, counts, p_max, noise, p0, solver, max_outer,
                        rel_tol, inner_max, inner_tol, out_dev, out_p, out_wsr):
        """Compiled version of :func:`_su_numpy`, one instance at a time (same steps and
        stopping rules). gain [M, K, N], alpha [M, N], p0 [S, M, K] starts; table [K, D] /
        counts [K] list each AP's devices. Writes the best start's result per instance m."""
        M, K, N = gain.shape
        S = p0.shape[0]
        dev = np.empty(K, np.int64)
        val = np.empty(K)
        G_off = np.empty((K, K))
        g_dir = np.empty(K)
        work = np.empty((6, K))
        a_l = np.empty(K)
        p = np.empty(K)
        has = np.zeros(K, np.bool_)
        for m in range(M):
            g = gain[m]
            al = alpha[m]
            for k in range(K):
                has[k] = False
                for t in range(counts[k]):
                    if al[table[k, t]] > 0.0:
                        has[k] = True
            best_w = -1.0
            for s in range(S):
                for k in range(K):
                    p[k] = p0[s, m, k] if has[k] else 0.0
                w_prev = _nb_schedule(g, al, table, counts, p, noise, dev, val)
                if w_prev > 0.0:
                    for it in range(max_outer):
                        for k in range(K):
                            d = dev[k]
                            if d < 0:
                                d = 0
                                a_l[k] = 0.0
                                p[k] = 0.0
                            else:
                                a_l[k] = al[d]
                            for j in range(K):
                                G_off[k, j] = g[j, d] if j != k else 0.0
                            g_dir[k] = g[k, d]
                        w_new = _nb_power_step(G_off, g_dir, a_l, p, p_max, noise, solver,
                                               inner_max, inner_tol, work)
                        done = w_new - w_prev <= rel_tol * abs(w_prev)
                        w_prev = w_new
                        if done:
                            break
                        if it + 1 < max_outer:
                            _nb_schedule(g, al, table, counts, p, noise, dev, val)
                w = _nb_schedule(g, al, table, counts, p, noise, dev, val)
                if w > best_w:
                    best_w = w
                    out_wsr[m] = w
                    for k in range(K):
                        if p[k] > 0.0 and dev[k] >= 0:
                            out_dev[m, k] = dev[k]
                            out_p[m, k] = p[k]
                        else:
                            out_dev[m, k] = -1
                            out_p[m, k] = 0.0


def _check_downlink(gain_ap_dev, ap_of_device, weights, p_max, noise):
    g = _check_nonneg("gain_ap_dev", gain_ap_dev, " (linear power gain)")
    if g.ndim != 4 or 0 in g.shape:
        raise ValueError(f"gain_ap_dev must have shape [B, H, K, N] (all >= 1); got {g.shape}")
    B, H, K, N = g.shape
    ap = np.asarray(ap_of_device)
    if ap.shape != (N,):
        raise ValueError(f"ap_of_device must have shape [N] = ({N},); got {ap.shape}")
    if ap.dtype.kind not in "iu":
        if ap.dtype.kind == "f" and np.all(np.isfinite(ap)) and np.all(ap == np.round(ap)):
            ap = ap.astype(np.int64)
        else:
            raise ValueError(f"ap_of_device must be integers in [0, {K}); got dtype {ap.dtype}")
    if ap.size and (ap.min() < 0 or ap.max() >= K):
        bad = ap[(ap < 0) | (ap >= K)][0]
        raise ValueError(f"ap_of_device must be integers in [0, {K}) (K = number of APs); "
                         f"got {bad}")
    ap = ap.astype(np.int64)
    w = _check_nonneg("weights", weights)
    if w.ndim == 1:
        w = w[None, :]
    if w.shape not in ((B, N), (1, N)):
        raise ValueError(f"weights must have shape [B, N] = ({B}, {N}); got {w.shape}")
    w = np.broadcast_to(w, (B, N))
    pm = _check_nonneg("p_max", p_max, " W")
    if pm.ndim != 0:
        raise ValueError(f"p_max must be a scalar (W per AP per subband); got shape {pm.shape}")
    s2 = _check_positive("noise", noise, " W")
    if s2.ndim != 0:
        raise ValueError(f"noise must be a scalar (W per subband); got shape {s2.shape}")
    return g, ap, w, float(pm), float(s2)


def single_user_power_schedule(gain_ap_dev, ap_of_device, weights, p_max, noise,
                               solver: str = "fp", max_outer: int = 20, rel_tol: float = 1e-3,
                               restarts: int = 0, rng=None, power_levels=None,
                               start_spread_db: float | None = None,
                               inner_max_iter: int = 100, inner_tol: float = 1e-6,
                               backend: str = "auto") -> SingleUserSchedule:
    """Per-subband single-user scheduling with FP/WMMSE power control (spec B.5, recommended).

    For every environment copy ``b`` and subband ``h`` independently (downlink: the
    interference a device sees depends only on the other APs' powers):

    1. ``p_k = p_max`` for every AP with a positive-weight device, else 0.
    2. Scheduling step: AP ``k`` picks ``argmax_n a_n ln(1 + g_kn p_k / (sum_{j!=k} g_jn p_j +
       noise))`` over its own devices with ``a_n > 0`` (none if there is no such device).
    3. Power step: FP (``solver="fp"``) or WMMSE iterations on the ``K`` links
       ``k -> device_k`` from the current ``p``; stop when the WSR changes by at most
       ``inner_tol`` relative, or after ``inner_max_iter`` iterations.
    4. Repeat 2-3 until a round improves the WSR by at most ``rel_tol`` relative (``max_outer``
       rounds at most), then a final scheduling step at the final powers. Every step is
       monotone, so the WSR is at least that of the first scheduling step at full power.
    5. With ``restarts = R > 0``, steps 1-4 are also run from ``R`` random starts
       ``p_k ~ U(0, p_max)`` per AP (or log-uniform over the top ``start_spread_db`` dB, as in
       :func:`best_of_restarts`) and the best WSR per ``(b, h)`` is kept (ties: full-power
       start). On 19-cell instances uniform starts did slightly better than 30 dB log-uniform
       ones (4 restarts: +0.5 % vs +0.4 % WSR over no restart), hence the default.
    6. With ``power_levels``, each power is snapped to the nearest level in dB (0 stays 0) and
       a last scheduling step re-picks the devices for the snapped powers.

    APs whose final power is 0 report device ``-1``. At most one device per AP per subband.

    Args:
        gain_ap_dev: ``[B, H, K, N]`` linear power gain from AP ``k`` to device ``n`` on subband
            ``h``.
        ap_of_device: ``[N]`` int in ``[0, K)``, serving AP of each device.
        weights: ``[B, N]`` (or ``[N]``) device weights ``>= 0`` (e.g. normalized queues);
            weight-0 devices are never scheduled.
        p_max: scalar, watts per AP per subband.
        noise: scalar, watts per subband (> 0).
        solver: ``"fp"`` or ``"wmmse"`` for the power step.
        max_outer: maximum scheduling/power rounds.
        rel_tol: relative WSR gain per round below which the procedure stops.
        restarts: number of extra random starts ``R``.
        rng: ``numpy.random.Generator`` or seed for the random starts.
        start_spread_db: None (default) for ``U(0, p_max)`` starts, else the dB range of
            log-uniform starts.
        power_levels: optional ``[L]`` allowed powers in watts (e.g. 0 plus 6 log-spaced).
        inner_max_iter, inner_tol: power-step iteration cap and relative WSR tolerance. FP
            has a slow tail (links drifting towards 0), so the tolerance matters: on the 19-cell
            benchmark, ``inner_tol=1e-4`` is ~3x faster than the default 1e-6 (0.23 vs 0.62 ms
            per slot) but gives ~0.9 % less WSR.
        backend: ``"numba"`` (compiled loop over instances), ``"numpy"`` (vectorized reference)
            or ``"auto"`` (numba when available).
    Returns:
        :class:`SingleUserSchedule` ``(device [B, H, K] int, power [B, H, K] W, wsr [B, H]
        nats)``.

    Example (one AP, two devices; the one with the larger ``a ln(1 + SNR)`` is served):
        >>> g = np.array([1e-10, 1e-11]).reshape(1, 1, 1, 2)
        >>> d, p, w = single_user_power_schedule(g, [0, 0], [[0.5, 0.5]], 0.2, 1e-13)
        >>> d.tolist(), p.tolist(), round(float(w[0, 0]), 4)   # 0.5 ln(1 + 200)
        ([[[0]]], [[[0.2]]], 2.6517)
    """
    g, ap, w, pm, s2 = _check_downlink(gain_ap_dev, ap_of_device, weights, p_max, noise)
    B, H, K, N = g.shape
    if solver not in ("fp", "wmmse"):
        raise ValueError(f"solver must be 'fp' or 'wmmse'; got {solver!r}")
    if backend not in ("auto", "numba", "numpy"):
        raise ValueError(f"backend must be 'auto', 'numba' or 'numpy'; got {backend!r}")
    if backend == "numba" and not _HAVE_NUMBA:  # pragma: no cover
        raise ValueError("backend 'numba' requested but numba is not installed")
    max_outer = _check_int("max_outer", max_outer)
    inner_max_iter = _check_int("inner_max_iter", inner_max_iter)
    rel_tol = _check_tol("rel_tol", rel_tol)
    inner_tol = _check_tol("inner_tol", inner_tol)
    R = _check_int("restarts", restarts)
    levels = None
    if power_levels is not None:
        levels = _check_nonneg("power_levels", power_levels, " W").ravel()
        if levels.size == 0:
            raise ValueError("power_levels must hold at least one level in [0, inf) W")
    if start_spread_db is not None:
        start_spread_db = _check_tol("start_spread_db", start_spread_db)
    p0 = np.full((1, B, H, K), pm)
    if R:
        p0 = _random_starts(np.random.default_rng(rng), p0[0], R, start_spread_db)

    if backend == "numpy" or (backend == "auto" and not _HAVE_NUMBA):
        alpha_dev = np.broadcast_to(w[:, None, :], (B, H, N))
        dev, p, wsr = _su_numpy(g, ap, alpha_dev, pm, s2, p0, solver, max_outer, rel_tol,
                                inner_max_iter, inner_tol)
        best = np.argmax(wsr, axis=0)[None]           # first (full-power) start wins ties
        dev = np.take_along_axis(dev, best[..., None], 0)[0]
        p = np.take_along_axis(p, best[..., None], 0)[0]
        wsr = np.take_along_axis(wsr, best, 0)[0]
    else:
        M = B * H
        onehot = np.arange(K)[:, None] == ap[None, :]
        counts = onehot.sum(1).astype(np.int64)
        table = np.zeros((K, max(int(counts.max()), 1)), np.int64)
        for k in range(K):
            d = np.flatnonzero(onehot[k])
            table[k, :d.size] = d
        gm = np.ascontiguousarray(g.reshape(M, K, N))
        am = np.ascontiguousarray(np.broadcast_to(w[:, None, :], (B, H, N)).reshape(M, N))
        out_dev = np.full((M, K), -1, np.int64)
        out_p = np.zeros((M, K))
        out_w = np.zeros(M)
        _nb_single_user(gm, am, table, counts, pm, s2,
                        np.ascontiguousarray(p0.reshape(R + 1, M, K)),
                        0 if solver == "fp" else 1, max_outer, rel_tol, inner_max_iter,
                        inner_tol, out_dev, out_p, out_w)
        dev = out_dev.reshape(B, H, K)
        p = out_p.reshape(B, H, K)
        wsr = out_w.reshape(B, H)

    if levels is not None:
        p = snap_power_to_levels(p, levels)
        prob = _DownlinkProblem(g, ap, np.broadcast_to(w[:, None, :], (B, H, N)), s2, K)
        dev, wsr = prob.schedule(p)
        dev = np.where(p > 0.0, dev, -1)
        p = np.where(dev >= 0, p, 0.0)
    return SingleUserSchedule(device=dev, power=p, wsr=wsr)


# ----------------------------------------------------------------------------------------------
# Reference approach and naive loops (comparison / benchmark only)
# ----------------------------------------------------------------------------------------------
def _multiuser_links(gain_ap_dev, ap):
    """``G[b, h, n, m] = gain_ap_dev[b, h, ap[m], n]``: link m (AP ap[m] -> device m) at rx n."""
    return np.swapaxes(gain_ap_dev[..., ap, :], -1, -2)


def plain_multiuser_power(gain_ap_dev, ap_of_device, weights, p_max, noise, solver: str = "fp",
                          max_iter: int = 100, tol: float = 1e-3) -> PowerResult:
    """The reference codes' baseline (spec B.5, first list): per subband, plain FP/WMMSE over
    all ``N`` device links (link ``n`` = AP ``ap_of_device[n]`` -> device ``n``), each link with
    its own power in ``[0, p_max]``, no single-user constraint (two devices of one AP interfere
    at full direct strength), full-power start, ``max_iter`` iterations / ``tol`` nats.

    Args:
        gain_ap_dev: ``[B, H, K, N]`` linear gains; ap_of_device ``[N]``; weights ``[B, N]``;
        p_max, noise: scalars in watts.
        solver: ``"fp"`` or ``"wmmse"``.
    Returns:
        :class:`PowerResult` with power ``[B, H, N]`` W (per device link) and wsr ``[B, H]``
        nats (true SINR, no cap).

    Example (one AP with two devices: both links interfere fully, so one is switched off):
        >>> g = np.array([1e-10, 1e-10]).reshape(1, 1, 1, 2)
        >>> r = plain_multiuser_power(g, [0, 0], [[0.7, 0.3]], 0.2, 1e-13)
        >>> r.power.round(3).tolist()
        [[[0.2, 0.0]]]
    """
    g, ap, w, pm, s2 = _check_downlink(gain_ap_dev, ap_of_device, weights, p_max, noise)
    if solver not in ("fp", "wmmse"):
        raise ValueError(f"solver must be 'fp' or 'wmmse'; got {solver!r}")
    G = _multiuser_links(g, ap)
    fn = fp_power if solver == "fp" else wmmse_power
    return fn(G, w[:, None, :], pm, s2, max_iter=max_iter, tol=tol)


def _loop_prepare(gain, weights, p_max, noise, p_init):
    G, alpha, pmax, sigma2, p0 = _prepare_links(gain, weights, p_max, noise, p_init)
    if G.ndim != 2:
        raise ValueError(f"gain must have shape [K, K] for the loop solvers; got {G.shape}")
    return G.tolist(), alpha.tolist(), pmax.tolist(), sigma2.tolist(), p0.tolist()


def _loop_wsr(G, a, p, s2):
    K = len(p)
    tot = 0.0
    for k in range(K):
        interf = s2[k]
        for j in range(K):
            if j != k:
                interf += G[k][j] * p[j]
        tot += a[k] * math.log1p(G[k][k] * p[k] / interf)
    return tot


def plain_fp_loop(gain, weights, p_max, noise, p_init=None, max_iter: int = 100,
                  tol: float = 1e-3) -> PowerResult:
    """FP (spec B.4) written the obvious way: Python loops over links, one instance.

    Same iteration and stopping rule as :func:`fp_power` (true WSR, absolute ``tol`` nats),
    so it returns the same point up to rounding; it exists to measure the speed-up.

    Args:
        gain: ``[K, K]``; weights ``[K]``; p_max, noise: scalar or ``[K]`` watts.
    Returns:
        :class:`PowerResult` (power ``[K]`` W, wsr scalar nats, iterations scalar).

    Example:
        >>> float(plain_fp_loop([[1.0]], [1.0], 2.0, 0.2).power[0])
        2.0
    """
    G, a, pm, s2, p = _loop_prepare(gain, weights, p_max, noise, p_init)
    K = len(p)
    wsr = _loop_wsr(G, a, p, s2)
    it = 0
    for it in range(1, max_iter + 1):
        y = [0.0] * K
        c = [0.0] * K
        for k in range(K):
            signal = G[k][k] * p[k]
            interf = s2[k]
            for j in range(K):
                if j != k:
                    interf += G[k][j] * p[j]
            gamma = signal / interf
            c[k] = a[k] * (1.0 + gamma)
            y[k] = math.sqrt(c[k] * signal) / (interf + signal)
        new = [0.0] * K
        for k in range(K):
            den = 0.0
            for j in range(K):
                den += y[j] * y[j] * G[j][k]
            num = c[k] * G[k][k] * y[k] * y[k]
            new[k] = min(pm[k], num / (den * den)) if num > 0.0 else 0.0
        p = new
        w_new = _loop_wsr(G, a, p, s2)
        done = abs(w_new - wsr) <= tol
        wsr = w_new
        if done:
            break
    return PowerResult(power=np.array(p), wsr=np.array(wsr), iterations=np.array(it))


def plain_wmmse_loop(gain, weights, p_max, noise, p_init=None, max_iter: int = 100,
                     tol: float = 1e-3) -> PowerResult:
    """WMMSE (spec B.3) written the obvious way: Python loops over links, one instance.

    Same iteration and stopping rule as :func:`wmmse_power` (``|sum a ln w - prev| <= tol``).

    Args / Returns: as :func:`plain_fp_loop`.

    Example:
        >>> round(float(plain_wmmse_loop([[1.0]], [1.0], 2.0, 0.2).power[0]), 12)
        2.0
    """
    G, a, pm, s2, p = _loop_prepare(gain, weights, p_max, noise, p_init)
    K = len(p)
    h = [math.sqrt(G[k][k]) for k in range(K)]
    v = [math.sqrt(x) for x in p]

    def receivers(v):
        u = [0.0] * K
        w = [0.0] * K
        for k in range(K):
            interf = s2[k]
            for j in range(K):
                if j != k:
                    interf += G[k][j] * v[j] * v[j]
            total = interf + G[k][k] * v[k] * v[k]
            u[k] = h[k] * v[k] / total
            w[k] = total / interf          # = 1 / (1 - u_k h_kk v_k)
        return u, w

    u, w = receivers(v)
    obj = sum(a[k] * math.log(w[k]) for k in range(K))
    it = 0
    for it in range(1, max_iter + 1):
        new = [0.0] * K
        for k in range(K):
            num = a[k] * w[k] * u[k] * h[k]
            if num > 0.0:
                den = 0.0
                for j in range(K):
                    den += a[j] * w[j] * u[j] * u[j] * G[j][k]
                new[k] = min(num / den, math.sqrt(pm[k]))
        v = new
        u, w = receivers(v)
        o_new = sum(a[k] * math.log(w[k]) for k in range(K))
        done = abs(o_new - obj) <= tol
        obj = o_new
        if done:
            break
    return PowerResult(power=np.minimum(np.array([x * x for x in v]), pm), wsr=np.array(obj),
                       iterations=np.array(it))

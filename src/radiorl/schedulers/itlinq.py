"""Cellular-network heuristics: per-AP longest queue (LLQ), ITLinQ and Fair-ITLinQ.

Downlink setting of ``specs/cellular-conflict.md``: K APs, N devices, H subbands, device ``j``
is served by AP ``ap_of_device[j]``; "link j" is the pair (AP ``ap_of_device[j]`` -> device j).
Every scheduler returns ``int[B, H, K]``: the global index of the device AP k serves on subband
h of copy b, or ``-1`` when AP k is silent there. At most one device per AP per subband; the
caller applies full power ``P_max`` to every served device.

Randomness comes only from the ``numpy.random.Generator`` argument (same state, same output).

Spec: ``specs/classical-schedulers.md`` B.9 (LLQ) and B.10 (ITLinQ / Fair-ITLinQ).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from .graph import _check_groups, _check_positive_int, _check_queues, _check_rng, \
    _longest_per_group

__all__ = [
    "llq_cellular_schedule",
    "ITLinQParams",
    "ITLINQ_PLAIN",
    "ITLQ_ZHANG",
    "FAIR_ITLINQ_HEXAGONAL",
    "FAIR_ITLINQ_RANDOM",
    "itlinq_schedule",
    "schedule_to_mask",
]


# ----------------------------------------------------------------------------- LLQ

def llq_cellular_schedule(queues, ap_of_device, n_aps: int, rng: np.random.Generator,
                          n_subbands: int) -> np.ndarray:
    """Per-AP longest-queue scheduling (spec B.9).

    Each AP serves its single longest-queue device on all subbands; ties are broken uniformly at
    random and devices with an empty queue are never chosen. Full power is applied by the caller.

    Args:
        queues: ``[B, N]`` queue lengths (packets or bits, >= 0).
        ap_of_device: ``[N]`` int in ``[0, K)``, serving AP of each device.
        n_aps: K >= 1.
        rng: random generator for the tie breaks.
        n_subbands: H >= 1.
    Returns:
        ``int[B, H, K]``: served device (global index) per AP, identical on every subband;
        ``-1`` for an AP whose devices all have empty queues.

    Example (2 APs; AP 0 owns devices 0, 1; AP 1 owns device 2, which is empty):
        >>> llq_cellular_schedule(np.array([[2., 7., 0.]]), np.array([0, 0, 1]), 2,
        ...                       np.random.default_rng(0), n_subbands=2)
        array([[[ 1, -1],
                [ 1, -1]]])
    """
    _check_rng(rng)
    k = _check_positive_int(n_aps, "n_aps")
    h_count = _check_positive_int(n_subbands, "n_subbands")
    q = _check_queues(queues)
    ap = _check_groups(ap_of_device, q.shape[1], "ap_of_device", k)
    pick = _longest_per_group(q, q > 0, ap, k, rng)                    # [B, K]
    return np.repeat(pick[:, None, :], h_count, axis=1)


# ----------------------------------------------------------------------------- ITLinQ

@dataclass(frozen=True)
class ITLinQParams:
    """Thresholds of the ITLinQ / Fair-ITLinQ tests (all linear, not dB).

    A candidate link j is compatible with an active link i iff
    ``INR_{i->j} <= m_it * SNR_j**eta`` (receiver side) and ``INR_{j->i} <= thr_tx_j``
    (transmitter side), where ``thr_tx_j = m_it * SNR_j**eta`` for plain ITLinQ, and for
    Fair-ITLinQ ``thr_tx_j = m_it_bar * SNR_j**eta_bar`` when ``SNR_j > snr_th`` (else the plain
    threshold). ``m_it_bar``, ``eta_bar`` and ``snr_th`` are used only by the fair variant.

    Presets (spec B.10): :meth:`plain` (Naderializadeh: ``m_it = 10**2.5``, ``eta = 0.5``),
    :meth:`zhang_itlq` (``m_it = 20``, ``eta = 0.6``), :meth:`fair_hexagonal` (``eta = 0.7``,
    ``eta_bar = 0.5``, ``m_it = 10``, ``m_it_bar = 0.1``, ``snr_th = 1200``) and
    :meth:`fair_random` (``eta = 0.7``, ``eta_bar = 0.5``, ``m_it = 20``, ``m_it_bar = 2``,
    ``snr_th = 5000``). The default instance equals :meth:`plain`.

    Example:
        >>> ITLinQParams.fair_hexagonal().snr_th
        1200.0
    """

    m_it: float = 10.0 ** 2.5
    eta: float = 0.5
    m_it_bar: float = 10.0 ** 2.5
    eta_bar: float = 0.5
    snr_th: float = math.inf

    def __post_init__(self):
        for name in ("m_it", "m_it_bar"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be in the range (0, inf), got {v!r}")
        for name in ("eta", "eta_bar"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be in the range [0, inf), got {v!r}")
        if math.isnan(self.snr_th) or self.snr_th < 0:
            raise ValueError(f"snr_th must be in the range [0, inf], got {self.snr_th!r}")
        object.__setattr__(self, "snr_th", float(self.snr_th))

    @classmethod
    def plain(cls) -> "ITLinQParams":
        """Naderializadeh & Avestimehr's baseline: M = 10^2.5 (25 dB), eta = 0.5."""
        return cls(m_it=10.0 ** 2.5, eta=0.5, m_it_bar=10.0 ** 2.5, eta_bar=0.5,
                   snr_th=math.inf)

    @classmethod
    def zhang_itlq(cls) -> "ITLinQParams":
        """Zhang & Guo's ITLQ: M = 20 (linear), eta = 0.6."""
        return cls(m_it=20.0, eta=0.6, m_it_bar=20.0, eta_bar=0.6, snr_th=math.inf)

    @classmethod
    def fair_hexagonal(cls) -> "ITLinQParams":
        """Fair-ITLinQ, hexagonal deployment: eta=0.7, eta_bar=0.5, M=10, M_bar=0.1, SNR_th=1200."""
        return cls(m_it=10.0, eta=0.7, m_it_bar=0.1, eta_bar=0.5, snr_th=1200.0)

    @classmethod
    def fair_random(cls) -> "ITLinQParams":
        """Fair-ITLinQ, random deployment: eta=0.7, eta_bar=0.5, M=20, M_bar=2, SNR_th=5000."""
        return cls(m_it=20.0, eta=0.7, m_it_bar=2.0, eta_bar=0.5, snr_th=5000.0)


ITLINQ_PLAIN = ITLinQParams.plain()
ITLQ_ZHANG = ITLinQParams.zhang_itlq()
FAIR_ITLINQ_HEXAGONAL = ITLinQParams.fair_hexagonal()
FAIR_ITLINQ_RANDOM = ITLinQParams.fair_random()


def _check_scalar_positive(value, name: str) -> float:
    v = np.asarray(value, dtype=np.float64)
    if v.ndim != 0 or not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a finite scalar in the range (0, inf), got {value!r}")
    return float(v)


def itlinq_schedule(gain_ap_dev, ap_of_device, queues, p_max_w, noise_w,
                    rng: np.random.Generator, *, fair: bool = False,
                    params: ITLinQParams | None = None, priority: str = "random") -> np.ndarray:
    """ITLinQ / Fair-ITLinQ scheduling, independently on every (copy, subband) (spec B.10).

    Link j = (AP ``ap(j)`` -> device j), with ``SNR_j = g[ap(j), j] P / sigma^2`` and
    ``INR_{i->j} = g[ap(i), j] P / sigma^2`` (gains of the current subband). Only devices with a
    nonempty queue are candidates. Per (b, h) the candidates are ordered by priority and scanned:
    the first is activated, and each next link j is activated iff its AP has no active link yet
    on this subband (single-user constraint) and, for every already active link i,

    * receiver side: ``INR_{i->j} <= m_it * SNR_j**eta``, and
    * transmitter side: ``INR_{j->i} <= m_it * SNR_j**eta`` (Fair-ITLinQ: the threshold becomes
      ``m_it_bar * SNR_j**eta_bar`` when ``SNR_j > snr_th``).

    Args:
        gain_ap_dev: ``[B, H, K, N]`` linear power gain from AP k to device n on subband h
            (path loss x fading), >= 0.
        ap_of_device: ``[N]`` int in ``[0, K)``, serving AP of each device.
        queues: ``[B, N]`` queue lengths (>= 0); only their emptiness matters for
            ``priority="random"``.
        p_max_w: transmit power per AP per subband in W (scalar > 0).
        noise_w: noise power per subband in W (scalar > 0).
        rng: random generator (priority keys; one ``rng.random((B, H, N))`` draw).
        fair: use the Fair-ITLinQ transmitter-side threshold.
        params: thresholds; default :data:`FAIR_ITLINQ_HEXAGONAL` when ``fair`` else
            :data:`ITLINQ_PLAIN`.
        priority: ``"random"`` (independent uniform permutation per (b, h), Zhang's code) or
            ``"queue"`` (descending queue length, uniform random tie break).
    Returns:
        ``int[B, H, K]``: the device served by AP k on subband h, or ``-1``.

    Example (2 isolated cells, no cross gain: both APs serve their nonempty device):
        >>> g = np.zeros((1, 1, 2, 3)); g[0, 0, 0, 0] = g[0, 0, 0, 1] = g[0, 0, 1, 2] = 1e-9
        >>> itlinq_schedule(g, np.array([0, 0, 1]), np.array([[0., 4., 2.]]), 0.2, 4e-15,
        ...                 np.random.default_rng(0), fair=True)
        array([[[1, 2]]])
    """
    _check_rng(rng)
    g = np.asarray(gain_ap_dev)
    if g.ndim != 4:
        raise ValueError(f"gain_ap_dev must have shape [B, H, K, N], got shape {g.shape}")
    if not np.issubdtype(g.dtype, np.number):
        raise ValueError(f"gain_ap_dev must be numeric, got dtype {g.dtype}")
    g = g.astype(np.float64, copy=False)
    b, h_count, k, n = g.shape
    if not np.all(np.isfinite(g)) or np.any(g < 0):
        raise ValueError("gain_ap_dev must be finite and in the range [0, inf)")
    ap = _check_groups(ap_of_device, n, "ap_of_device", k)
    q = _check_queues(queues, n)
    if q.shape[0] != b:
        raise ValueError(f"queues must have shape [B, N] = ({b}, {n}), got shape {q.shape}")
    p_max = _check_scalar_positive(p_max_w, "p_max_w")
    noise = _check_scalar_positive(noise_w, "noise_w")
    if params is None:
        params = FAIR_ITLINQ_HEXAGONAL if fair else ITLINQ_PLAIN
    if not isinstance(params, ITLinQParams):
        raise TypeError(f"params must be an ITLinQParams, got {type(params).__name__}")
    if priority not in ("random", "queue"):
        raise ValueError(f"priority must be one of 'random', 'queue', got {priority!r}")

    scale = p_max / noise
    idx = np.arange(n)
    snr = g[:, :, ap, idx] * scale                                      # [B, H, N]
    thr_rx = params.m_it * snr ** params.eta
    if fair:
        thr_tx = np.where(snr > params.snr_th, params.m_it_bar * snr ** params.eta_bar, thr_rx)
    else:
        thr_tx = thr_rx

    keys = rng.random((b, h_count, n))
    if priority == "random":
        order = np.argsort(keys, axis=-1)
    else:
        order = np.lexsort((keys, np.broadcast_to(-q[:, None, :], keys.shape)), axis=-1)
    eligible = np.broadcast_to((q > 0)[:, None, :], (b, h_count, n))

    r = b * h_count
    out = _itlinq_scan(
        np.ascontiguousarray(order.reshape(r, n), dtype=np.int64),
        np.ascontiguousarray(eligible.reshape(r, n)),
        np.ascontiguousarray(g.reshape(r, k, n)), ap, scale,
        np.ascontiguousarray(thr_rx.reshape(r, n)), np.ascontiguousarray(thr_tx.reshape(r, n)),
    )
    return out.reshape(b, h_count, k)


@njit(cache=True)
def _itlinq_scan(order, eligible, gain, ap, scale, thr_rx, thr_tx):
    """Compiled ITLinQ greedy scan, one (copy, subband) row at a time.

    ``order`` int64[R, N], ``eligible`` bool[R, N], ``gain`` float64[R, K, N], ``ap`` int64[N],
    ``thr_rx`` / ``thr_tx`` float64[R, N] (thresholds of the candidate link). When link j is
    activated, every still-free link m is struck out if it shares j's AP, if
    ``INR_{j->m} > thr_rx[m]`` (receiver side of m) or if ``INR_{m->j} > thr_tx[m]``
    (transmitter side of m). A link is activated iff it is still free when its turn comes,
    which is the sequential test "compatible with every active link". Returns int64[R, K].
    """
    r_count, n = order.shape
    k = gain.shape[1]
    out = np.full((r_count, k), -1, dtype=np.int64)
    free = np.empty(n, dtype=np.bool_)
    for r in range(r_count):
        for m in range(n):
            free[m] = eligible[r, m]
        for p in range(n):
            j = order[r, p]
            if not free[j]:
                continue
            aj = ap[j]
            out[r, aj] = j
            free[j] = False
            for m in range(n):
                if free[m]:
                    am = ap[m]
                    if am == aj or gain[r, aj, m] * scale > thr_rx[r, m] \
                            or gain[r, am, j] * scale > thr_tx[r, m]:
                        free[m] = False
    return out


def schedule_to_mask(schedule, n_devices: int) -> np.ndarray:
    """Convert an ``int[B, H, K]`` per-AP schedule (``-1`` = silent) to ``bool[B, H, N]``.

    Example:
        >>> schedule_to_mask(np.array([[[1, -1]]]), 3).astype(int)
        array([[[0, 1, 0]]])
    """
    s = np.asarray(schedule)
    n = _check_positive_int(n_devices, "n_devices")
    if s.ndim != 3 or np.any(s < -1) or np.any(s >= n):
        raise ValueError(f"schedule must be int[B, H, K] with values in [-1, {n}), got shape "
                         f"{s.shape}")
    mask = np.zeros(s.shape[:2] + (n,), dtype=bool)
    bb, hh, kk = np.nonzero(s >= 0)
    mask[bb, hh, s[bb, hh, kk]] = True
    return mask

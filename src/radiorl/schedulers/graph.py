"""Conflict-graph schedulers: GMS, Q-CSMA and LLQ (baselines of the traffic-driven MARL paper).

Conventions shared by every function of this module:

* ``queues``: ``[B, N]`` float, nonnegative queue lengths in packets (``B`` independent
  environment copies, ``N`` devices). Devices with an empty queue are never scheduled.
* ``conflict``: ``[N, N]`` bool, ``conflict[i, j]`` is True iff a transmission of device ``i``
  makes the reception of device ``j`` fail (directed edge ``i -> j``). The diagonal is ignored.
  For independent-set purposes two devices conflict if either direction is an edge,
  ``sym = conflict | conflict.T``.
* ``agent_of_device``: ``[N]`` int in ``[0, K)``, the agent (AP) that owns each device. An agent
  schedules at most one of its devices per subband (its action per subband is "idle or one of
  its devices").
* Outputs are ``bool[B, H, N]`` schedules: ``x[b, h, n]`` = device ``n`` transmits on subband
  ``h`` in copy ``b``.
* Randomness comes only from the ``numpy.random.Generator`` argument: the same generator state
  gives the same output.

Spec: ``specs/classical-schedulers.md`` B.7 (Q-CSMA), B.8 (GMS); LLQ follows the paper's text
(``papers/marl-multicell.txt`` Sec. IV-A).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from numba import njit

__all__ = [
    "gms_schedule",
    "QCSMAState",
    "qcsma_init",
    "qcsma_step",
    "qcsma_log_weight",
    "llq_conflict_schedule",
    "is_independent_set",
    "conflict_adjacency",
]


# ----------------------------------------------------------------------------- input checks

def _check_rng(rng) -> None:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer in [1, inf), got {value!r}")
    return int(value)


def _check_queues(queues, n: int | None = None) -> np.ndarray:
    q = np.asarray(queues)
    if q.ndim != 2:
        raise ValueError(f"queues must have shape [B, N], got shape {q.shape}")
    if n is not None and q.shape[1] != n:
        raise ValueError(f"queues must have shape [B, N] with N={n}, got shape {q.shape}")
    if q.dtype.kind not in "biuf":
        raise ValueError(f"queues must be numeric, got dtype {q.dtype}")
    q = q.astype(np.float64, copy=False)
    # min >= 0 fails for NaN and -inf, max < inf fails for +inf
    if q.size and not (q.min() >= 0.0 and q.max() < np.inf):
        raise ValueError("queues must be finite and in the range [0, inf)")
    return q


def _check_conflict(conflict) -> np.ndarray:
    c = np.asarray(conflict)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"conflict must have shape [N, N], got shape {c.shape}")
    if c.dtype != np.bool_:
        if c.dtype.kind not in "iuf" or not np.all((c == 0) | (c == 1)):
            raise ValueError("conflict must be boolean (or 0/1 valued)")
        c = c.astype(bool)
    return c


def _check_groups(group_of, n: int, name: str, n_groups: int | None = None) -> np.ndarray:
    g = np.asarray(group_of)
    allowed = f"[0, {n_groups})" if n_groups is not None else "[0, inf)"
    if g.shape != (n,):
        raise ValueError(f"{name} must have shape [N]=({n},), got shape {g.shape}")
    if n and g.dtype.kind not in "iu":
        if g.dtype.kind != "f" or not np.all(np.isfinite(g)) or not np.all(g == np.round(g)):
            raise ValueError(f"{name} must hold integers in the range {allowed}")
    g = g.astype(np.int64, copy=False)
    if n:
        lo, hi = g.min(), g.max()
        if lo < 0 or (n_groups is not None and hi >= n_groups):
            raise ValueError(f"{name} must hold integers in the range {allowed}, "
                             f"got values in [{lo}, {hi}]")
    return g


# ----------------------------------------------------------------------------- helpers

def conflict_adjacency(conflict, agent_of_device=None) -> np.ndarray:
    """Symmetric "cannot both be active" adjacency of a directed conflict graph.

    Args:
        conflict: ``[N, N]`` bool directed conflict graph (``i -> j``: i's transmission
            breaks j's reception). The diagonal is ignored.
        agent_of_device: optional ``[N]`` int; when given, two devices of the same agent are
            also adjacent (an agent serves at most one device per subband).
    Returns:
        ``[N, N]`` bool, symmetric, zero diagonal: ``conflict | conflict.T`` (| same-agent).

    Example:
        >>> c = np.array([[0, 1, 0], [0, 0, 0], [0, 0, 0]], bool)
        >>> conflict_adjacency(c, agent_of_device=np.array([0, 1, 1])).astype(int)
        array([[0, 1, 0],
               [1, 0, 1],
               [0, 1, 0]])
    """
    c = _check_conflict(conflict)
    adj = c | c.T
    if agent_of_device is not None:
        a = _check_groups(agent_of_device, c.shape[0], "agent_of_device")
        adj = adj | (a[:, None] == a[None, :])
    adj = adj.copy()
    np.fill_diagonal(adj, False)
    return adj


def is_independent_set(x, conflict, agent_of_device=None) -> np.ndarray:
    """Whether each schedule is an independent set of the (symmetrized) conflict graph.

    Args:
        x: ``[..., N]`` bool, active devices.
        conflict: ``[N, N]`` bool directed conflict graph; devices i, j conflict if
            ``conflict[i, j] or conflict[j, i]``.
        agent_of_device: optional ``[N]`` int; when given, two active devices of the same
            agent also count as a conflict.
    Returns:
        ``bool[...]``: True where no two active devices conflict.

    Example:
        >>> c = np.zeros((3, 3), bool); c[0, 1] = True          # one-way edge 0 -> 1
        >>> is_independent_set(np.array([[1, 1, 0], [1, 0, 1]], bool), c)
        array([False,  True])
    """
    adj = conflict_adjacency(conflict, agent_of_device)
    xb = np.asarray(x)
    if xb.shape[-1:] != (adj.shape[0],):
        raise ValueError(f"x must have shape [..., N] with N={adj.shape[0]}, got {xb.shape}")
    xb = xb.astype(bool)
    hit = (xb @ adj) & xb        # hit[..., j]: j active and some active neighbour
    return ~hit.any(axis=-1)


@njit(cache=True)
def _greedy_scan(order, eligible, block):
    """Sequential greedy activation (compiled), one row at a time.

    Args: ``order`` int64[R, N] scan order of the device indices, ``eligible`` bool[R, N],
    ``block`` bool[R', N, N] with R' in {1, R} (1 = shared by all rows): ``block[r, i, j]``
    means "once i is active, j may not be added". Each device in turn is activated if it is
    eligible and not blocked by an earlier activation. Returns bool[R, N].
    """
    r_count, n = order.shape
    shared = block.shape[0] == 1
    out = np.zeros((r_count, n), dtype=np.bool_)
    free = np.empty(n, dtype=np.bool_)
    for r in range(r_count):
        br = 0 if shared else r
        for m in range(n):
            free[m] = eligible[r, m]
        for p in range(n):
            j = order[r, p]
            if free[j]:
                out[r, j] = True
                for m in range(n):
                    if block[br, j, m]:
                        free[m] = False
    return out


@njit(cache=True)
def _qcsma_decision_schedule(backoff, contend, adj, window):
    """Q-CSMA control phase, compiled; returns the decision schedule D as bool[R, N].

    ``backoff`` int64[R, N] in [0, window), ``contend`` bool[R, N] (links that take part),
    ``adj`` bool[N, N] symmetric conflict adjacency. Mini-slot by mini-slot: a contending link
    that has not heard an INTENT yet broadcasts at its backoff; it joins D iff no neighbour
    broadcast in the same mini-slot; every neighbour of a broadcaster hears it.
    """
    r_count, n = backoff.shape
    in_d = np.zeros((r_count, n), dtype=np.bool_)
    heard = np.empty(n, dtype=np.bool_)
    bc = np.empty(n, dtype=np.bool_)
    for r in range(r_count):
        heard[:] = False
        for t in range(window):
            any_bc = False
            for i in range(n):
                bc[i] = contend[r, i] and backoff[r, i] == t and not heard[i]
                any_bc = any_bc or bc[i]
            if not any_bc:
                continue
            for i in range(n):
                if bc[i]:
                    collided = False
                    for j in range(n):
                        if adj[i, j]:
                            collided = collided or bc[j]
                            heard[j] = True
                    if not collided:
                        in_d[r, i] = True
    return in_d


@njit(cache=True)
def _argmax_per_group_kernel(values, eligible, tie_key, group_of, n_groups):
    b_count, n = values.shape
    out = np.full((b_count, n_groups), -1, dtype=np.int64)
    for b in range(b_count):
        for j in range(n):
            if eligible[b, j]:
                g = group_of[j]
                cur = out[b, g]
                if cur < 0 or values[b, j] > values[b, cur] or (
                        values[b, j] == values[b, cur] and tie_key[b, j] < tie_key[b, cur]):
                    out[b, g] = j
    return out


def _longest_per_group(values: np.ndarray, eligible: np.ndarray, group_of: np.ndarray,
                       n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """Per group, the eligible member with the largest value (uniform random tie break).

    Args: ``values`` ``[B, N]`` finite float, ``eligible`` ``[B, N]`` bool, ``group_of`` ``[N]``
    int in ``[0, n_groups)``. Returns ``int[B, n_groups]`` device index, ``-1`` for a group
    without an eligible member. Ties go to the smallest of i.i.d. uniform keys, i.e. to a
    uniformly random tied member; draws exactly one ``rng.random((B, N))``.
    """
    tie_key = rng.random(values.shape)
    return _argmax_per_group_kernel(np.ascontiguousarray(values, dtype=np.float64),
                                    np.ascontiguousarray(eligible, dtype=np.bool_), tie_key,
                                    np.ascontiguousarray(group_of, dtype=np.int64),
                                    int(n_groups))


# ----------------------------------------------------------------------------- GMS

def gms_schedule(queues, conflict, agent_of_device, rng: np.random.Generator, n_subbands: int,
                 mode: str = "same") -> np.ndarray:
    """Greedy maximal scheduling (longest queue first), spec B.8.

    Starting from the devices with ``q > 0``, repeatedly activate the remaining device with the
    longest queue (ties broken uniformly at random) and remove it together with *all* devices it
    conflicts with — in-neighbours and out-neighbours of the directed graph, and the other
    devices of the same agent (added as conflicts so every agent serves at most one device per
    subband). The result is a maximal independent set of that graph. (The public reference code
    removes only in-neighbours, so its schedules collide; this one never does.)

    Args:
        queues: ``[B, N]`` queue lengths (packets, >= 0).
        conflict: ``[N, N]`` bool directed conflict graph.
        agent_of_device: ``[N]`` int agent of each device.
        rng: random generator for the tie breaks.
        n_subbands: H >= 1.
        mode: ``"same"`` (default, Zhang's active version): one GMS set applied to all H
            subbands. ``"per_subband"``: GMS is run on subband 0, 1, ... in turn on a virtual
            queue that starts at ``q`` and is decremented by 1 for each device scheduled on a
            subband; devices whose virtual queue is <= 0 are not eligible on later subbands
            (so a device never gets more subbands than ``ceil(q)``).
    Returns:
        ``bool[B, H, N]`` schedule; every ``[b, h]`` slice is a maximal independent set among
        the eligible devices.

    Example (path 0-1-2, one agent per device, device 1 longest; 0 and 2 are then blocked):
        >>> c = np.zeros((3, 3), bool); c[0, 1] = c[1, 2] = True
        >>> gms_schedule(np.array([[2., 5., 3.]]), c, np.arange(3),
        ...              np.random.default_rng(0), n_subbands=2).astype(int)
        array([[[0, 1, 0],
                [0, 1, 0]]])
    """
    _check_rng(rng)
    c = _check_conflict(conflict)
    n = c.shape[0]
    q = _check_queues(queues, n)
    h_count = _check_positive_int(n_subbands, "n_subbands")
    adj = conflict_adjacency(c, agent_of_device)
    b = q.shape[0]
    # Weights never change during the greedy, so "take the longest remaining device, remove its
    # neighbours, repeat" equals one scan in (queue desc, i.i.d. uniform key) order that takes
    # every device not yet removed; the key makes each pick uniform among the tied ones.
    if mode == "same":
        u = rng.random((b, n))
        order = np.lexsort((u, -q), axis=-1)
        x = _greedy_scan(order, q > 0, adj[None])
        return np.repeat(x[:, None, :], h_count, axis=1)
    if mode == "per_subband":
        v = q.copy()
        out = np.zeros((b, h_count, n), dtype=bool)
        for h in range(h_count):
            u = rng.random((b, n))
            order = np.lexsort((u, -v), axis=-1)
            out[:, h] = _greedy_scan(order, v > 0, adj[None])
            v = v - out[:, h]
        return out
    raise ValueError(f"mode must be one of 'same', 'per_subband', got {mode!r}")


# ----------------------------------------------------------------------------- Q-CSMA

@dataclass(frozen=True)
class QCSMAState:
    """Q-CSMA memory between slots.

    Attributes:
        x: ``bool[B, H, N]`` schedule of the previous data slot (an independent set of the
            symmetrized conflict graph, agent-mates included, on every ``[b, h]``).
    """

    x: np.ndarray


def qcsma_init(batch_size: int, n_subbands: int, n_devices: int) -> QCSMAState:
    """Initial Q-CSMA state: nobody active, ``x`` = ``bool[B, H, N]`` zeros.

    Example: ``qcsma_init(2, 3, 8).x.shape == (2, 3, 8)``.
    """
    b = _check_positive_int(batch_size, "batch_size")
    h = _check_positive_int(n_subbands, "n_subbands")
    n = _check_positive_int(n_devices, "n_devices")
    return QCSMAState(x=np.zeros((b, h, n), dtype=bool))


def qcsma_log_weight(queues: np.ndarray) -> np.ndarray:
    """Zhang & Guo's Q-CSMA weight ``w = ln(10 q)`` (``-inf`` for an empty queue).

    Then ``p = e^w / (1 + e^w) = 10 q / (1 + 10 q)``.

    Example:
        >>> qcsma_log_weight(np.array([0.0, 0.1, 1.0])).round(3)
        array([ -inf, 0.   , 2.303])
    """
    q = np.asarray(queues, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.log(10.0 * q)


def qcsma_step(state: QCSMAState, queues, conflict, agent_of_device, rng: np.random.Generator,
               window: int | None = None,
               weight_fn: Callable[[np.ndarray], np.ndarray] = qcsma_log_weight,
               fixed_weights=None) -> tuple[np.ndarray, QCSMAState]:
    """One Q-CSMA slot (control phase + data phase) on every subband, spec B.7.

    Runs independently on each of the H subbands of each of the B copies (vectorized):

    * Control phase over ``window`` mini-slots. Each link with a nonempty queue draws a backoff
      ``T_l`` uniform in ``{0, ..., W-1}`` (links with an empty queue stay silent). A link that
      heard an INTENT from a conflicting link at an earlier mini-slot stays silent and is not in
      D; otherwise it broadcasts at its mini-slot and joins the decision schedule D only if no
      conflicting link broadcast in the same mini-slot.
    * Data phase: for ``l`` in D, if no conflicting link was active in the previous data slot,
      ``x_l = 1`` with probability ``p_l = e^{w_l} / (1 + e^{w_l})`` and 0 otherwise; otherwise
      ``x_l = 0``. Links not in D keep their previous state. Links with an empty queue are forced
      off (in the state too). The transmitting set is ``x & (q > 0)`` (= the new ``x``).

    "Conflicting" means adjacent in ``conflict | conflict.T`` or owned by the same agent (agent
    mates are added as conflicts so the action of each agent stays valid). With this, D and x
    are independent sets at every slot (given an independent initial state).

    Args:
        state: previous :class:`QCSMAState` with ``x`` of shape ``[B, H, N]``.
        queues: ``[B, N]`` queue lengths (packets, >= 0).
        conflict: ``[N, N]`` bool directed conflict graph.
        agent_of_device: ``[N]`` int agent of each device.
        rng: random generator (backoffs, then the data-phase coins).
        window: number of control mini-slots W >= 1; default ``2 N``.
        weight_fn: maps ``queues [B, N]`` to weights ``w [B, N]`` (``-inf`` = never on);
            default ``ln(10 q)``.
        fixed_weights: optional ``[N]`` (or ``[B, N]``) weights overriding ``weight_fn`` (frozen
            weights give the product-form stationary law ``pi(x) ∝ exp(sum_{l in x} w_l)``).
    Returns:
        ``(transmit, new_state)``: ``transmit`` ``bool[B, H, N]``, and the state holding it.

    Example (two non-conflicting links, one empty; very large weights so p = 1):
        >>> st = qcsma_init(1, 1, 2)
        >>> tx, st = qcsma_step(st, np.array([[3., 0.]]), np.zeros((2, 2), bool), np.arange(2),
        ...                     np.random.default_rng(0), fixed_weights=np.array([50., 50.]))
        >>> tx.astype(int)
        array([[[1, 0]]])
    """
    _check_rng(rng)
    c = _check_conflict(conflict)
    n = c.shape[0]
    q = _check_queues(queues, n)
    b = q.shape[0]
    x_prev = np.asarray(state.x)
    if x_prev.ndim != 3 or x_prev.shape[0] != b or x_prev.shape[2] != n:
        raise ValueError(f"state.x must have shape [B, H, N] = ({b}, H, {n}), got {x_prev.shape}")
    x_prev = x_prev.astype(bool, copy=False)
    h_count = x_prev.shape[1]
    w_count = 2 * n if window is None else _check_positive_int(window, "window")
    adj = conflict_adjacency(c, agent_of_device)

    if fixed_weights is not None:
        w = np.asarray(fixed_weights, dtype=np.float64)
        try:
            w = np.broadcast_to(w, (b, n))
        except ValueError:
            raise ValueError(f"fixed_weights must have shape [N] or [B, N] = ({b}, {n}), "
                             f"got {w.shape}") from None
    else:
        w = np.asarray(weight_fn(q), dtype=np.float64)
        if w.shape != (b, n):
            raise ValueError(f"weight_fn must return shape [B, N] = ({b}, {n}), got {w.shape}")
    if np.any(np.isnan(w)):
        raise ValueError("weights must not be NaN (allowed range [-inf, inf])")
    with np.errstate(over="ignore"):
        p_on = 1.0 / (1.0 + np.exp(-w))                               # [B, N]; w=-inf -> 0

    nonempty = (q > 0)[:, None, :]                                    # [B, 1, N]
    backoff = rng.integers(0, w_count, size=(b, h_count, n))
    coins = rng.random((b, h_count, n))

    # control phase (compiled loop over mini-slots, one (copy, subband) row at a time)
    contend = np.ascontiguousarray(np.broadcast_to(nonempty, (b, h_count, n)))
    in_d = _qcsma_decision_schedule(backoff.reshape(b * h_count, n).astype(np.int64, copy=False),
                                    contend.reshape(b * h_count, n), adj,
                                    w_count).reshape(b, h_count, n)

    # data phase
    nb_prev_active = x_prev @ adj
    turn_on = (coins < p_on[:, None, :]) & ~nb_prev_active
    x_new = np.where(in_d, turn_on, x_prev) & nonempty
    return x_new.copy(), QCSMAState(x=x_new)


# ----------------------------------------------------------------------------- LLQ (conflict graph)

def llq_conflict_schedule(queues, conflict, agent_of_device, rng: np.random.Generator,
                          n_subbands: int) -> np.ndarray:
    """Local longest-queue scheduling on a conflict graph (paper Sec. IV-A, "LLQ").

    A nonempty device is scheduled if its queue is strictly longer than the queues of all devices
    it conflicts with (either edge direction). If it ties with the longest of them, i.e. it is
    one of ``j`` devices (itself and ``j - 1`` neighbours) sharing the maximal queue, it is
    scheduled independently with probability ``1/j``; otherwise it stays off. Ties use exact
    equality of the queue values. The same set is used on all subbands. If this leaves an agent
    with several scheduled devices, only its longest one is kept (uniform random tie break), so
    each agent's action stays valid.

    LLQ is a distributed heuristic, not collision-free: tied neighbours can both be scheduled,
    so the output is NOT always an independent set (collisions are part of the baseline).

    Args:
        queues: ``[B, N]`` queue lengths (packets, >= 0).
        conflict: ``[N, N]`` bool directed conflict graph.
        agent_of_device: ``[N]`` int agent of each device.
        rng: random generator (tie coins, then the per-agent tie breaks).
        n_subbands: H >= 1.
    Returns:
        ``bool[B, H, N]`` schedule (identical on every subband).

    Example (path 0-1-2, queues 4, 1, 3: devices 0 and 2 are local maxima):
        >>> c = np.zeros((3, 3), bool); c[0, 1] = c[2, 1] = True
        >>> llq_conflict_schedule(np.array([[4., 1., 3.]]), c, np.arange(3),
        ...                       np.random.default_rng(0), n_subbands=1).astype(int)
        array([[[1, 0, 1]]])
    """
    _check_rng(rng)
    c = _check_conflict(conflict)
    n = c.shape[0]
    q = _check_queues(queues, n)
    h_count = _check_positive_int(n_subbands, "n_subbands")
    agents = _check_groups(agent_of_device, n, "agent_of_device")
    adj = conflict_adjacency(c)
    b = q.shape[0]

    qn = np.where(adj[None], q[:, None, :], -np.inf)                  # [B, N(i), N(nbr)]
    nb_max = qn.max(axis=-1, initial=-np.inf)                         # [B, N]
    n_tied = (qn == q[:, :, None]).sum(axis=-1)                       # tied neighbours
    nonempty = q > 0
    coins = rng.random((b, n))
    sched = nonempty & ((q > nb_max) | ((q == nb_max) & (coins * (1 + n_tied) < 1.0)))

    n_agents = int(agents.max()) + 1 if n else 0
    keep = _longest_per_group(q, sched, agents, n_agents, rng)        # [B, K]
    x = np.zeros((b, n), dtype=bool)
    bb, kk = np.nonzero(keep >= 0)
    x[bb, keep[bb, kk]] = True
    return np.repeat(x[:, None, :], h_count, axis=1)

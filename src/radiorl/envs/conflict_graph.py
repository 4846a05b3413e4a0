"""Directed conflict-graph scheduling network (Zhang & Guo, Sec. II-B; spec cellular-conflict.md).

Model, per slot ``t`` and copy ``b``:

1. Poisson(λ) packets arrive at every device at the start of the slot; ``ζ = q + Y`` (eq. 5).
2. Agent ``k`` chooses per subband ``h`` an action in ``{0, 1, …, |N_k|}`` (0 idle, ι its ι-th
   device, eq. 13). A chosen device with an empty queue does not transmit.
3. A transmission of device ``n`` on subband ``h`` succeeds iff no in-neighbour ``i`` (edge
   ``i → n``) transmits on ``h`` (collision model, eq. 3). Each success serves one packet.
   A device scheduled on several subbands transmits on all of them (each may serve a packet).
4. Queues are FIFO with exact per-packet delays (``delay = t_served − t_arrival + 1`` slots).
5. Reward of agent ``k`` (eqs. 9–10): ``−Σ_{i∈C(k)} Σ_{n∈N_i} q_n`` with end-of-slot queues.
6. The observation of agent ``k`` is ``X_k = (O_k, O_ν1, …)`` with ``O_k`` the post-arrival queue
   lengths ``ζ`` of its devices (eqs. 7–8), padded with zeros to a fixed size
   ``(1 + max_neighbours) · max_devices``; ``obs_mask`` marks real entries.

Shapes: ``B`` copies, ``K`` agents, ``N`` devices, ``H`` subbands. Actions ``int[B, K, H]``.

Example:
    >>> env = ConflictGraphEnv(fig2_params(load=0.3), batch=2)
    >>> obs, state = env.reset(seed=0)
    >>> obs.shape
    (2, 4, 6)
    >>> obs, rew, term, trunc, info, state = env.step(state, np.zeros((2, 4, 3), int))
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numba as nb
import numpy as np

from radiorl.envs.base import (AgentStructure, PolicyView, check_array, check_number,
                               seed_streams)
from radiorl.traffic import ArrivalTape, PacketQueues

#: Mutual and one-way edges of the paper's Fig. 2 (0-based device indices).
FIG2_MUTUAL = ((0, 1), (2, 3), (4, 5), (6, 7), (1, 2), (3, 4), (5, 6), (7, 0))
FIG2_ONE_WAY = ((1, 7), (7, 5), (5, 3), (3, 1), (0, 2), (2, 4), (4, 6), (6, 0))


@dataclass(frozen=True)
class ConflictGraphParams:
    """Static parameters.

    Attributes:
        edges: directed conflict edges ``(i, j)``: if ``i`` transmits on a subband, ``j``'s
            reception on it fails.
        agent_of_device: serving agent of each device (``b_n``), values in ``[0, K)``.
        n_subbands: ``H``.
        load: mean Poisson arrivals per device per slot (λ), scalar or one per device.
        episode_slots: truncation length (paper: 5,000 evaluation, 2,000 training).
        queue_threshold: terminate a copy when any queue exceeds this many packets
            (training only; ``None`` disables).
        max_queue_packets: per-queue buffer; arrivals beyond it are dropped (cause ``overflow``).
        name: scenario name.
    """

    edges: tuple
    agent_of_device: tuple
    n_subbands: int = 3
    load: float | tuple = 0.3
    episode_slots: int = 5000
    queue_threshold: float | None = None
    max_queue_packets: int = 100_000
    name: str = "conflict-graph"

    @property
    def n_devices(self) -> int:
        return len(self.agent_of_device)

    @property
    def n_agents(self) -> int:
        return int(max(self.agent_of_device)) + 1 if self.agent_of_device else 0

    def validate(self) -> "ConflictGraphParams":
        n = len(self.agent_of_device)
        if n == 0:
            raise ValueError("agent_of_device must list at least one device")
        a = check_array("agent_of_device", self.agent_of_device, low=0, high=n - 1, integer=True)
        k = int(a.max()) + 1
        missing = sorted(set(range(k)) - set(a.tolist()))
        if missing:
            raise ValueError(f"agent_of_device: agents {missing} serve no device; agent indices "
                             f"must be contiguous in [0, {k - 1}]")
        for e in self.edges:
            if len(e) != 2:
                raise ValueError(f"edges: each edge must be a pair (i, j), got {e!r}")
            i, j = e
            if not (0 <= int(i) < n and 0 <= int(j) < n):
                raise ValueError(f"edges: edge {e!r} refers to a missing device; device indices "
                                 f"must be in [0, {n - 1}]")
            if int(i) == int(j):
                raise ValueError(f"edges: self-loop {e!r} is not allowed (i != j)")
        check_number("n_subbands", self.n_subbands, low=1, integer=True)
        load = np.broadcast_to(np.asarray(self.load, float), (n,)) if np.ndim(self.load) == 0 \
            else np.asarray(self.load, float)
        check_array("load", load, shape=(n,))
        if np.any(load <= 0):
            raise ValueError(f"load must be > 0 packets/slot (finite), got {self.load!r}")
        check_number("episode_slots", self.episode_slots, low=1, integer=True)
        check_number("queue_threshold", self.queue_threshold, low=0, allow_none=True)
        check_number("max_queue_packets", self.max_queue_packets, low=1, integer=True)
        return self


def fig2_params(load: float = 0.3, **kw) -> ConflictGraphParams:
    """The 8-device, 4-agent conflict graph of the paper's Fig. 2 (agent k serves 2k, 2k+1)."""
    edges = tuple(FIG2_MUTUAL) + tuple((j, i) for i, j in FIG2_MUTUAL) + tuple(FIG2_ONE_WAY)
    return ConflictGraphParams(edges=edges, agent_of_device=(0, 0, 1, 1, 2, 2, 3, 3), load=load,
                               name=kw.pop("name", "conflict-8"), **kw)


@dataclass
class ConflictGraphState:
    """Dynamic state (arrays updated in place by ``step``; ``copy()`` to branch).

    ``zeta[B, N]``: queue lengths after this slot's arrivals (what agents observe).
    """

    slot: int
    queues: PacketQueues
    zeta: np.ndarray
    tape: ArrivalTape
    done: np.ndarray

    def copy(self) -> "ConflictGraphState":
        return ConflictGraphState(self.slot, self.queues.copy(), self.zeta.copy(),
                                  self.tape.copy(), self.done.copy())


@nb.njit(cache=True)
def _resolve(actions, dev_table, local_sizes, zeta, in_ptr, in_idx):
    """Collision resolution. Returns successes, transmissions, collisions ``int64[B, N]`` and
    the transmit mask ``bool[B, H, N]``; the last value is False if an action is out of range
    (nothing is modified in that case)."""
    B, K, H = actions.shape
    N = zeta.shape[1]
    tx = np.zeros((B, H, N), np.bool_)
    succ = np.zeros((B, N), np.int64)
    ntx = np.zeros((B, N), np.int64)
    ncol = np.zeros((B, N), np.int64)
    for b in range(B):
        for k in range(K):
            for h in range(H):
                a = actions[b, k, h]
                if a < 0 or a > local_sizes[k]:
                    return succ, ntx, ncol, tx, False
                if a > 0:
                    n = dev_table[k, a]
                    if zeta[b, n] > 0:
                        tx[b, h, n] = True
    for b in range(B):
        for h in range(H):
            for n in range(N):
                if tx[b, h, n]:
                    ntx[b, n] += 1
                    ok = True
                    for p in range(in_ptr[n], in_ptr[n + 1]):
                        if tx[b, h, in_idx[p]]:
                            ok = False
                            break
                    if ok:
                        succ[b, n] += 1
                    else:
                        ncol[b, n] += 1
    return succ, ntx, ncol, tx, True


class ConflictGraphEnv:
    """Batched conflict-graph environment (see module docstring).

    Derived static arrays (computed once): ``conflict[N, N]`` (``conflict[i, j]`` iff edge
    ``i → j``) and the :class:`~radiorl.envs.base.AgentStructure` attributes, with agents
    neighbours when their devices conflict (either direction); ``obs_mask`` marks real entries.
    """

    def __init__(self, params: ConflictGraphParams, batch: int = 1):
        self.params = params.validate()
        self.batch = check_number("batch", batch, low=1, integer=True)
        p = self.params
        N, K, H = p.n_devices, p.n_agents, p.n_subbands
        self.n_devices, self.n_agents, self.n_subbands = N, K, H
        self.agent_of_device = np.asarray(p.agent_of_device, np.int64)
        self.conflict = np.zeros((N, N), bool)
        for i, j in p.edges:
            self.conflict[int(i), int(j)] = True
        in_lists = [np.nonzero(self.conflict[:, n])[0] for n in range(N)]
        self._in_ptr = np.concatenate([[0], np.cumsum([len(x) for x in in_lists])]).astype(np.int64)
        self._in_idx = (np.concatenate(in_lists) if N else np.zeros(0)).astype(np.int64)
        sym = self.conflict | self.conflict.T
        agent_adj = np.zeros((K, K), bool)
        ii, jj = np.nonzero(sym)
        agent_adj[self.agent_of_device[ii], self.agent_of_device[jj]] = True
        AgentStructure(self.agent_of_device, K, agent_adj).apply_to(self)
        self.obs_dim = self.obs_index.shape[1]
        self.obs_mask = self.obs_index < N
        self.load = np.broadcast_to(np.asarray(p.load, float), (N,)).copy()
        self.n_actions = self.max_devices + 1
        self.slot_ms = None
        self._zpad = np.zeros((self.batch, N + 1), np.float32)
        self._true, self._false = np.ones(self.batch, bool), np.zeros(self.batch, bool)

    # ------------------------------------------------------------------ API
    def reset(self, seed: int = 0) -> tuple[np.ndarray, ConflictGraphState]:
        (arr_rng,) = seed_streams(seed, 1)
        B, N = self.batch, self.n_devices
        queues = PacketQueues.empty(B, N, 1.0, max_packets=self.params.max_queue_packets)
        tape = ArrivalTape(arr_rng, self.load, B)
        state = ConflictGraphState(0, queues, np.zeros((B, N), np.int64), tape,
                                   np.zeros(B, bool))
        self._arrive(state)
        return self.observe(state), state

    def _arrive(self, state: ConflictGraphState):
        y = state.tape.next()
        dropped = state.queues.enqueue(y, state.slot)
        state.zeta = state.queues.backlog_packets()
        return y, dropped

    def observe(self, state: ConflictGraphState) -> np.ndarray:
        """``float32[B, K, D]`` aggregate observations X_k (post-arrival queues, zero-padded)."""
        self._zpad[:, :-1] = state.zeta
        return self._zpad[:, self.obs_index]

    def _action_range_error(self) -> ValueError:
        return ValueError("actions[b, k, h] must be in [0, |N_k|] (0 idle, ι the ι-th device of "
                          f"agent k); |N_k| = {self.local_sizes.tolist()}")

    def check_actions(self, actions) -> np.ndarray:
        """Shape and dtype check (the range is checked inside the step kernel, before any
        state changes)."""
        a = np.asarray(actions)
        B, K, H = self.batch, self.n_agents, self.n_subbands
        if a.shape != (B, K, H):
            raise ValueError(f"actions must have shape (B, K, H) = {(B, K, H)}, got {a.shape}")
        if a.dtype != np.int64:
            if not np.issubdtype(a.dtype, np.integer):
                a = check_array("actions", a, integer=True)
            a = a.astype(np.int64)
        return a

    def step(self, state: ConflictGraphState, actions):
        """Advance all copies by one slot (in place). Returns
        ``(obs, rewards[B, K], terminated[B], truncated[B], info, state)``.

        ``info``: ``arrivals[B, N]`` (of the *next* slot, already queued), ``deliveries``
        (:class:`~radiorl.traffic.Deliveries` of this slot), ``dropped[B, N]`` (overflow),
        ``transmissions[B, N]``, ``collisions[B, N]``, ``served[B, N]`` packets,
        ``queues[B, N]`` and ``backlog_packets[B, N]`` end-of-slot queues (packets), ``slot`` (the slot just simulated).
        """
        a = self.check_actions(actions)
        succ, ntx, ncol, _, ok = _resolve(a, self.dev_table, self.local_sizes, state.zeta,
                                          self._in_ptr, self._in_idx)
        if not ok:
            raise self._action_range_error()
        t = state.slot
        deliveries = state.queues.serve_packets(succ, t)
        q_end = state.queues.backlog_packets()
        rewards = -(q_end @ self.reward_matrix)
        p = self.params
        terminated = (q_end > p.queue_threshold).any(axis=1) if p.queue_threshold is not None \
            else np.zeros(self.batch, bool)
        state.slot = t + 1
        truncated = self._true if state.slot >= p.episode_slots else self._false
        y, dropped = self._arrive(state)
        info = {"slot": t, "deliveries": deliveries, "served": deliveries.count,
                "transmissions": ntx, "collisions": ncol, "queues": q_end,
                "backlog_packets": q_end, "arrivals": y,
                "dropped": {"overflow": dropped}}
        state.done = terminated | truncated
        return self.observe(state), rewards, terminated, truncated, info, state

    def restart_copies(self, state: ConflictGraphState, copies) -> None:
        """Restart the selected copies (``bool[B]``) with empty queues, in place (training
        episodes that hit the queue threshold). Arrivals continue from the copy's stream."""
        state.queues.clear(copies)
        state.zeta = state.queues.backlog_packets()
        state.done = state.done & ~np.asarray(copies, bool)

    # ------------------------------------------------------------ policies
    def policy_view(self, state: ConflictGraphState, requires) -> PolicyView:
        """Information handed to a policy that declared ``requires``."""
        data = {}
        if {"local_queues", "neighbor_queues", "global_queues"} & set(requires):
            data["queues"] = state.zeta
        if "local_obs" in requires:
            data["obs"] = self.observe(state)
        return PolicyView(data, requires)

    def topology(self) -> dict:
        """Static structure available to every policy (graph, device-to-agent map)."""
        return {"conflict": self.conflict, "agent_of_device": self.agent_of_device,
                "devices_of_agent": self.devices_of_agent, "neighbors": self.neighbors}

    def with_params(self, **changes) -> "ConflictGraphEnv":
        return ConflictGraphEnv(replace(self.params, **changes), self.batch)

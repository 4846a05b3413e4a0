"""MF-TDMA multi-hop ad hoc network (the MA-CDMP environment; spec ``adhoc-mftdma.md``).

Model (every choice the paper leaves open is a field of :class:`AdhocParams`):

* **Topology** (A.3.1). ``N`` nodes uniform in a ``side × side`` km square; link iff distance
  ≤ 3.6 km; positions redrawn until the graph is connected (``connectivity="redraw"``), or
  placed connected by construction (``placement="sequential"``, large networks). Every batch
  copy draws its own topology at ``reset`` (random unseen topologies per seed). Static min-hop
  routing, ties to the shorter Euclidean path, then the lower next-hop id.
* **Traffic** (A.3.4). Poisson packet generation (exponential gaps), ``rate_high_pps`` at the
  first ``n_high`` nodes and ``rate_low_pps`` at the rest (positions are i.i.d., so this is a
  uniformly random choice of the high-rate nodes), all multiplied by ``load_scale``.
  Destinations uniform over the other reachable nodes (within ``dest_max_hops`` if > 0).
* **Frame** (A.3.2, A.3.6, A.3.7). ``M = 10`` slots × ``L = 4`` channels per 5 ms frame; one RB
  carries one packet (``bits_per_rb`` bits). At the frame start every node requests
  ``a_i ∈ {0..max_request}`` RBs; requests are normalized (largest remainder, random ties) so
  that the total is ≤ M·L, and RBs are assigned at random (a random RB permutation walked in a
  random node order). ``reuse="local"`` normalizes within each node's ``interference_hops``
  domain instead and lets nodes farther apart reuse a block.
* **PHY** (A.3.3). FSPL; Rayleigh block fading per transmission; success iff the instantaneous
  SNR ≥ 6 dB, i.e. with probability ``exp(−γ_th / SNR̄(d))``. ``rf="ideal"`` (300 MHz,
  33 dBm) or ``"limited"`` (2.4 GHz, 20 dBm), or ``"limited-harsh"`` (2.4 GHz, 10 dBm).
* **Queues and losses** (A.3.5). Generation queue G and forwarding queue F per node, 50 packets
  each; relay first. Losses by cause: ``overflow`` (arrival to a full queue), ``retry`` (4 failed
  attempts on one hop), ``ttl`` (older than 200 ms when it reaches the head).
* **Events** (A.3.7). Packets generated before a slot start join G at that slot start; on an
  owned RB the head-of-line packet is sent; on success it reaches the next hop at the slot end
  (delivered with delay ``s + T_s − t_gen``, or appended to F there and eligible from the next
  slot).
* **Observation** (A.3.8). ``o_i = [|G_i|, max|G_i|, |F_i|, max|F_i|]`` at the frame start, the
  maxima over the previous frame (raw packet counts; divide by ``queue_capacity`` for a neural
  network). Mean field ``ō_i`` (eq. 11) = mean of the 1-hop neighbours' ``o_j``.
* **Reward** (eq. 12). ``r_i = −(mean delay in ms of packets whose destination is i delivered
  in the frame)``; if none, the previous reward is held (initially 0).

Shapes: ``B`` copies, ``N`` nodes (agents). Actions ``int[B, N]`` (requested RBs).
Observations ``float32[B, N, 4]``. Rewards ``float32[B, N]``. One env step is one frame.

Example:
    >>> env = AdhocTDMAEnv(AdhocParams(n_nodes=8, n_high=2), batch=2)
    >>> obs, state = env.reset(seed=0)
    >>> obs.shape
    (2, 8, 4)
    >>> obs, rew, term, trunc, info, state = env.step(state, np.full((2, 8), 5))
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numba as nb
import numpy as np

from radiorl.envs.base import PolicyView, check_array, check_number, seed_streams
from radiorl.envs.topology import (build_adhoc_graph, sequential_nodes, uniform_nodes,
                                   unit_disk_connected)
from radiorl.phy.channel import fspl_db_scalar
from radiorl.phy.fastrng import (new_streams, stream_exponential, stream_integer,
                                 stream_uniform)
from radiorl.phy.link import thermal_noise_dbm, threshold_success_prob
from radiorl.traffic.queues import Deliveries
from radiorl.traffic.relay_queues import (PK_ATT, PK_DST, PK_ELIG, PK_SRC, PK_TGEN, RelayQueues,
                                          pop_front, push_back, push_front)

#: RF profiles: name -> (carrier frequency MHz, transmit power dBm) (spec A.3.3).
RF_PROFILES = {"ideal": (300.0, 33.0), "limited": (2400.0, 20.0),
               "limited-harsh": (2400.0, 10.0)}
GEN, TRAN = 0, 1
#: Loss causes, in the order of the ``dropped`` counters.
DROP_CAUSES = ("overflow", "retry", "ttl")
OBS_FIELDS = ("gen", "gen_max", "tran", "tran_max")

_CHOICES = {
    "placement": ("uniform", "sequential"),
    "connectivity": ("redraw", "any"),
    "fading": ("rayleigh", "off"),
    "reuse": ("global", "local"),
    "assignment": ("random", "deterministic"),
    "service_order": ("relay_first", "oldest_first"),
    "reward_mode": ("destination", "relay"),
    "reward_when_empty": ("hold", "zero", "hol_age"),
    "speed_meaning": ("traffic", "mobility"),
}


@dataclass(frozen=True)
class AdhocParams:
    """Static parameters (spec tags: [paper] stated in the paper, else our assumption).

    Attributes:
        n_nodes: N nodes = agents.
        n_high: number of high-rate nodes (the first ``n_high``) [paper ratios 2:6, 4:4, 2:7, 4:5].
        rate_high_pps, rate_low_pps: Poisson generation rates (packets/s) before ``load_scale``.
        rates_pps: optional per-node rates (packets/s) overriding the two classes.
        load_scale: multiplies every rate (the named loads).
        area_km: side of the square area [paper 10 km].
        radius_km: one-hop radius [paper 3.6 km].
        placement: ``"uniform"`` or ``"sequential"`` (connected by construction).
        connectivity: ``"redraw"`` (reject disconnected uniform draws) or ``"any"``.
        max_draws: redraw limit before a clear error.
        positions: fixed ``[N, 2]`` positions (km) shared by every copy (tests, hand-built).
        n_slots, n_channels: M, L [paper 10, 4]. ``n_slots·n_channels ≤ 64``.
        frame_ms: frame duration [5 ms = 30 s / 6000 frames].
        bits_per_rb: bits per RB = packet size (one packet per RB) [2 Mbps × 0.5 ms].
        rf: RF profile name (``RF_PROFILES``); ``carrier_mhz``/``tx_power_dbm`` override it.
        bandwidth_hz, noise_figure_db: noise ``−174 + 10 log10 B + NF`` dBm.
        snr_threshold_db: success threshold γ_th.
        fading: ``"rayleigh"`` (block fading per transmission) or ``"off"``.
        queue_capacity: packets per queue (G and F each).
        max_attempts: attempts per hop before a retry drop.
        ttl_ms: packets older than this are dropped when they reach the head of a queue.
        max_request: largest request per node (action range ``0..max_request``); ``None`` means
            M·L (40) [spec A.3.6; 10 is a smaller alternative].
        reuse: ``"global"`` (one partition of the M·L RBs) or ``"local"`` (normalize within the
            ``interference_hops`` domain; a node owns a block only if no node of its domain does).
        assignment: ``"random"`` or ``"deterministic"`` (RB index order, node id order).
        service_order: ``"relay_first"`` (head of F before G) or ``"oldest_first"``.
        half_duplex: a node transmitting in a slot cannot receive in it.
        dest_max_hops: destinations within this many hops (0 = any reachable node).
        reward_mode: ``"destination"`` (packets whose final destination is i) or ``"relay"``
            (also packets i received as a relay, delay from generation so far).
        reward_when_empty: ``"hold"`` (previous reward), ``"zero"`` or ``"hol_age"``
            (−mean head-of-line age in ms of i's queues).
        speed_meaning: ``"traffic"`` (high/low = generation rate) or ``"mobility"`` (random
            waypoint at ``speed_high_mps``/``speed_low_mps``, every node at
            ``mobility_rate_pps``, routes rebuilt every frame).
        episode_frames: truncation length [paper 6000 training, 1000 test].
        name: scenario name.
    """

    n_nodes: int = 9
    n_high: int = 4
    rate_high_pps: float = 600.0
    rate_low_pps: float = 150.0
    rates_pps: tuple | None = None
    load_scale: float = 1.0
    area_km: float = 10.0
    radius_km: float = 3.6
    placement: str = "uniform"
    connectivity: str = "redraw"
    max_draws: int = 10_000
    positions: tuple | None = None
    n_slots: int = 10
    n_channels: int = 4
    frame_ms: float = 5.0
    bits_per_rb: int = 1000
    rf: str = "ideal"
    carrier_mhz: float | None = None
    tx_power_dbm: float | None = None
    bandwidth_hz: float = 2e6
    noise_figure_db: float = 7.0
    snr_threshold_db: float = 6.0
    fading: str = "rayleigh"
    queue_capacity: int = 50
    max_attempts: int = 4
    ttl_ms: float = 200.0
    max_request: int | None = None
    reuse: str = "global"
    interference_hops: int = 2
    assignment: str = "random"
    service_order: str = "relay_first"
    half_duplex: bool = False
    dest_max_hops: int = 0
    reward_mode: str = "destination"
    reward_when_empty: str = "hold"
    speed_meaning: str = "traffic"
    speed_high_mps: float = 20.0
    speed_low_mps: float = 2.0
    mobility_rate_pps: float = 300.0
    episode_frames: int = 1000
    name: str = "adhoc"

    def __post_init__(self):
        if self.max_request is None:
            try:
                object.__setattr__(self, "max_request", int(self.n_slots) * int(self.n_channels))
            except (TypeError, ValueError):
                pass                                   # validate() names the bad field

    # ------------------------------------------------------------------ derived
    @property
    def n_rbs(self) -> int:
        return self.n_slots * self.n_channels

    @property
    def slot_ms(self) -> float:
        return self.frame_ms / self.n_slots

    @property
    def carrier(self) -> float:
        return self.carrier_mhz if self.carrier_mhz is not None else RF_PROFILES[self.rf][0]

    @property
    def power_dbm(self) -> float:
        return self.tx_power_dbm if self.tx_power_dbm is not None else RF_PROFILES[self.rf][1]

    @property
    def noise_dbm(self) -> float:
        return float(thermal_noise_dbm(self.bandwidth_hz, self.noise_figure_db))

    def mean_snr_db(self, d_km):
        """SNR̄(d) = P_t − FSPL(d, f_c) − N in dB (scalar distance in km)."""
        return self.power_dbm - fspl_db_scalar(float(d_km) * 1e3, self.carrier * 1e6) \
            - self.noise_dbm

    def success_prob(self, d_km) -> float:
        """Per-attempt success probability on a link of ``d_km`` km (oracle C.6)."""
        return float(threshold_success_prob(self.mean_snr_db(d_km), self.snr_threshold_db,
                                            self.fading == "rayleigh"))

    def node_rates_pps(self) -> np.ndarray:
        """``[N]`` generation rates (packets/s) including ``load_scale``."""
        if self.rates_pps is not None:
            r = np.asarray(self.rates_pps, float)
        elif self.speed_meaning == "mobility":
            r = np.full(self.n_nodes, self.mobility_rate_pps)
        else:
            r = np.where(np.arange(self.n_nodes) < self.n_high, self.rate_high_pps,
                         self.rate_low_pps)
        return r * self.load_scale

    def to_dict(self) -> dict:
        """Plain-python dict of every field (JSON-able; positions as nested lists)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = [list(map(float, p)) for p in v] if f.name == "positions" and v \
                else (list(v) if isinstance(v, tuple) else v)
        return out

    def validate(self) -> "AdhocParams":
        for name, allowed in _CHOICES.items():
            v = getattr(self, name)
            if v not in allowed:
                raise ValueError(f"{name} must be one of {list(allowed)}, got {v!r}")
        if self.rf not in RF_PROFILES:
            raise ValueError(f"rf must be one of {sorted(RF_PROFILES)}, got {self.rf!r}")
        n = check_number("n_nodes", self.n_nodes, low=2, high=100_000, integer=True)
        check_number("n_high", self.n_high, low=0, high=n, integer=True)
        check_number("rate_high_pps", self.rate_high_pps, low=0)
        check_number("rate_low_pps", self.rate_low_pps, low=0)
        if self.rates_pps is not None:
            check_array("rates_pps", np.asarray(self.rates_pps, float), shape=(n,), low=0)
        check_number("load_scale", self.load_scale, low=0)
        check_number("area_km", self.area_km, low=0, low_open=True)
        check_number("radius_km", self.radius_km, low=0, low_open=True)
        check_number("max_draws", self.max_draws, low=1, integer=True)
        if self.positions is not None:
            p = check_array("positions", np.asarray(self.positions, float), shape=(n, 2))
            if np.any(p < 0) or np.any(p > self.area_km):
                raise ValueError(f"positions must lie in [0, area_km={self.area_km}] km")
        m = check_number("n_slots", self.n_slots, low=1, integer=True)
        ll = check_number("n_channels", self.n_channels, low=1, integer=True)
        if m * ll > 64:
            raise ValueError(f"n_slots·n_channels must be <= 64 RBs per frame, got {m * ll}")
        check_number("frame_ms", self.frame_ms, low=0, low_open=True)
        check_number("bits_per_rb", self.bits_per_rb, low=1, integer=True)
        check_number("carrier_mhz", self.carrier_mhz, low=0, low_open=True, allow_none=True)
        check_number("tx_power_dbm", self.tx_power_dbm, low=-100, high=100, allow_none=True)
        check_number("bandwidth_hz", self.bandwidth_hz, low=0, low_open=True)
        check_number("noise_figure_db", self.noise_figure_db, low=0)
        check_number("snr_threshold_db", self.snr_threshold_db, low=-50, high=100)
        check_number("queue_capacity", self.queue_capacity, low=1, integer=True)
        check_number("max_attempts", self.max_attempts, low=1, integer=True)
        check_number("ttl_ms", self.ttl_ms, low=0, low_open=True)
        check_number("max_request", self.max_request, low=1, high=m * ll, integer=True)
        check_number("interference_hops", self.interference_hops, low=1, integer=True)
        check_number("dest_max_hops", self.dest_max_hops, low=0, integer=True)
        check_number("speed_high_mps", self.speed_high_mps, low=0)
        check_number("speed_low_mps", self.speed_low_mps, low=0)
        check_number("mobility_rate_pps", self.mobility_rate_pps, low=0)
        check_number("episode_frames", self.episode_frames, low=1, integer=True)
        return self


@dataclass
class AdhocState:
    """Dynamic state of ``B`` copies (arrays updated in place by ``step``; ``copy()`` to branch).

    Per-copy topology: ``positions[B, N, 2]`` km, ``deg[B, N]``, ``nbr[B, N, N]`` (−1 padded),
    ``hops[B, N, N]``, ``next_hop[B, N, N]``, ``link_ps[B, N, N]`` (per-attempt success),
    ``dom_cnt/dom`` (interference domain), ``dest_cnt/dest`` (destination candidates).
    """

    frame: int
    queues: RelayQueues
    next_arrival_ms: np.ndarray
    rng_arrival: np.ndarray
    rng_fading: np.ndarray
    rng_alloc: np.ndarray
    rng_mobility: np.ndarray
    positions: np.ndarray
    waypoints: np.ndarray
    deg: np.ndarray
    nbr: np.ndarray
    hops: np.ndarray
    next_hop: np.ndarray
    link_ps: np.ndarray
    dom_cnt: np.ndarray
    dom: np.ndarray
    dest_cnt: np.ndarray
    dest: np.ndarray
    last_reward: np.ndarray
    obs: np.ndarray
    mf_obs: np.ndarray
    generated: np.ndarray
    delivered: np.ndarray
    dropped: np.ndarray
    last_traffic: np.ndarray
    done: np.ndarray

    def copy(self) -> "AdhocState":
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            kw[f.name] = v.copy() if hasattr(v, "copy") and not isinstance(v, int) else v
        return AdhocState(**kw)


# =========================================================================== kernels
@nb.njit(cache=True)
def _graph_tables(pos, radius_km, interference_hops, dest_max_hops, pt_dbm, f_hz, noise_dbm,
                  thr_db, rayleigh, deg, nbr, hops, next_hop, link_ps, dom_cnt, dom, dest_cnt,
                  dest, dist):
    """Fill one copy's topology tables (see :class:`AdhocState`)."""
    N = pos.shape[0]
    build_adhoc_graph(pos, radius_km, deg, nbr, hops, next_hop, dist)
    for i in range(N):
        dom_cnt[i] = 0
        dest_cnt[i] = 0
        for j in range(N):
            link_ps[i, j] = 0.0
            h = hops[i, j]
            if i != j and h >= 1:
                if h <= interference_hops:
                    dom[i, dom_cnt[i]] = j
                    dom_cnt[i] += 1
                if dest_max_hops <= 0 or h <= dest_max_hops:
                    dest[i, dest_cnt[i]] = j
                    dest_cnt[i] += 1
        for k in range(deg[i]):
            j = nbr[i, k]
            snr = pt_dbm - fspl_db_scalar(dist[i, j] * 1e3, f_hz) - noise_dbm
            link_ps[i, j] = threshold_success_prob(snr, thr_db, rayleigh)


@nb.njit(cache=True)
def _allocate(req, n_rbs, global_reuse, deterministic, dom_cnt, dom, rng, owned, grant):
    """Normalize requests ``req[B, N]`` and assign RBs; writes ``owned[B, N]`` (uint64 bit
    masks, bit ``m·L + l`` = RB (m, l)) and ``grant[B, N]`` (RBs granted)."""
    B, N = req.shape
    want = np.empty(N, np.int64)
    key = np.empty(N)
    perm = np.empty(n_rbs, np.int64)
    order = np.empty(N, np.int64)
    one = np.uint64(1)
    for b in range(B):
        if global_reuse:
            S = 0
            for i in range(N):
                S += req[b, i]
            if S <= n_rbs:
                for i in range(N):
                    want[i] = req[b, i]
            else:
                tot = 0
                for i in range(N):
                    want[i] = (req[b, i] * n_rbs) // S
                    tot += want[i]
                    rem = (req[b, i] * n_rbs) % S        # exact integer remainders
                    if deterministic:
                        u = 1.0 - (i + 1.0) / (N + 1.0)    # ties to the lower id
                    else:
                        u = stream_uniform(rng, b)         # random ties
                    key[i] = -(rem + u)
                idx = np.argsort(key)
                for r in range(n_rbs - tot):
                    want[idx[r]] += 1
        else:
            for i in range(N):
                S = req[b, i]
                for k in range(dom_cnt[b, i]):
                    S += req[b, dom[b, i, k]]
                want[i] = req[b, i] if S <= n_rbs else (req[b, i] * n_rbs) // S
        for r in range(n_rbs):
            perm[r] = r
        for i in range(N):
            order[i] = i
        if not deterministic:
            for r in range(n_rbs - 1, 0, -1):
                j = stream_integer(rng, b, r + 1)
                perm[r], perm[j] = perm[j], perm[r]
            for i in range(N - 1, 0, -1):
                j = stream_integer(rng, b, i + 1)
                order[i], order[j] = order[j], order[i]
        for i in range(N):
            owned[b, i] = np.uint64(0)
            grant[b, i] = 0
        if global_reuse:
            p = 0
            for oi in range(N):
                i = order[oi]
                for _ in range(want[i]):
                    owned[b, i] |= one << np.uint64(perm[p])
                    p += 1
                grant[b, i] = want[i]
        else:
            for oi in range(N):
                i = order[oi]
                blocked = np.uint64(0)
                for k in range(dom_cnt[b, i]):
                    blocked |= owned[b, dom[b, i, k]]
                c = 0
                for r in range(n_rbs):
                    if c >= want[i]:
                        break
                    bit = one << np.uint64(perm[r])
                    if (blocked & bit) == 0:
                        owned[b, i] |= bit
                        c += 1
                grant[b, i] = c


@nb.njit(cache=True)
def _frame(t, M, L, slot_ms, ttl_ms, max_att, relay_first, half_duplex, relay_reward,
           owned, pkt, head, size, next_arr, rate_pps, dest_cnt, dest, next_hop, link_ps,
           rng_arr, rng_fade,
           gen, drop, ntx, nfail, wasted, relayed, rcv_cnt, rcv_sum, rew_cnt, rew_sum,
           max_g, max_f, q_integral, hol_age, del_b, del_src, del_dst, del_ms):
    """Simulate frame ``t`` of every copy (event order of spec A.3.7); returns the number of
    end-to-end deliveries written to ``del_*``. Per-frame counters must be zero on entry."""
    B, N = owned.shape
    Lmask = np.uint64((1 << L) - 1)
    cap_tx = M * L * N
    tx_n = np.empty(cap_tx, np.int64)
    tx_q = np.empty(cap_tx, np.int64)
    tx_rec = np.empty((cap_tx, 5))
    tx_nh = np.empty(cap_tx, np.int64)
    tx_ok = np.empty(cap_tx, np.bool_)
    txing = np.zeros(N, np.bool_)
    nd = 0
    for b in range(B):
        for n in range(N):
            max_g[b, n] = size[b, n, 0]
            max_f[b, n] = size[b, n, 1]
        for m in range(M):
            g = t * M + m
            s = g * slot_ms
            # ---- arrivals generated before the slot start join G
            for n in range(N):
                if rate_pps[n] <= 0.0:
                    continue
                gap = 1000.0 / rate_pps[n]
                while next_arr[b, n] < s:
                    tg = next_arr[b, n]
                    next_arr[b, n] = tg + gap * stream_exponential(rng_arr, b)
                    c = dest_cnt[b, n]
                    if c == 0:
                        continue                          # isolated node: nothing to send
                    d = dest[b, n, stream_integer(rng_arr, b, c)]
                    gen[b, n] += 1
                    if push_back(pkt, head, size, b, n, 0, tg, n, d, 0, g):
                        if size[b, n, 0] > max_g[b, n]:
                            max_g[b, n] = size[b, n, 0]
                    else:
                        drop[0, b, n] += 1
            tot = 0
            for n in range(N):
                tot += size[b, n, 0] + size[b, n, 1]
            q_integral[b] += slot_ms * tot
            # ---- pick the packets sent on the owned RBs of this slot
            k = 0
            for n in range(N):
                bits = (owned[b, n] >> np.uint64(m * L)) & Lmask
                if bits == 0:
                    continue
                for l in range(L):
                    if ((bits >> np.uint64(l)) & np.uint64(1)) == 0:
                        continue
                    sent = False
                    while True:
                        f_ok = size[b, n, 1] > 0 and pkt[b, n, 1, head[b, n, 1], PK_ELIG] <= g
                        g_ok = size[b, n, 0] > 0
                        if f_ok and g_ok and not relay_first:
                            q = 1 if pkt[b, n, 1, head[b, n, 1], PK_TGEN] <= \
                                pkt[b, n, 0, head[b, n, 0], PK_TGEN] else 0
                        elif f_ok:
                            q = 1
                        elif g_ok:
                            q = 0
                        else:
                            break
                        i = head[b, n, q]
                        if s - pkt[b, n, q, i, PK_TGEN] > ttl_ms:
                            pop_front(pkt, head, size, b, n, q)
                            drop[2, b, n] += 1
                            continue
                        nh = next_hop[b, n, int(pkt[b, n, q, i, PK_DST])]
                        if nh < 0:
                            break                         # no route (mobility): hold the head
                        pop_front(pkt, head, size, b, n, q)
                        for f in range(5):
                            tx_rec[k, f] = pkt[b, n, q, i, f]
                        tx_n[k] = n
                        tx_q[k] = q
                        tx_nh[k] = nh
                        k += 1
                        sent = True
                        break
                    if not sent:
                        wasted[b, n] += 1
            if half_duplex:
                for j in range(k):
                    txing[tx_n[j]] = True
            for j in range(k):
                n = tx_n[j]
                nh = tx_nh[j]
                ok = stream_uniform(rng_fade, b) < link_ps[b, n, nh]
                if half_duplex and txing[nh]:
                    ok = False
                tx_ok[j] = ok
                ntx[b, n] += 1
                if not ok:
                    nfail[b, n] += 1
            if half_duplex:
                for j in range(k):
                    txing[tx_n[j]] = False
            # ---- failures keep their place at the head (reverse order keeps FIFO order)
            for j in range(k - 1, -1, -1):
                if not tx_ok[j]:
                    n = tx_n[j]
                    att = tx_rec[j, PK_ATT] + 1.0
                    if att >= max_att:
                        drop[1, b, n] += 1
                    else:
                        push_front(pkt, head, size, b, n, tx_q[j], tx_rec[j, PK_TGEN],
                                   tx_rec[j, PK_SRC], tx_rec[j, PK_DST], att, tx_rec[j, PK_ELIG])
            # ---- successes reach the next hop at the slot end
            arrive = s + slot_ms
            for j in range(k):
                if not tx_ok[j]:
                    continue
                nh = tx_nh[j]
                dst = int(tx_rec[j, PK_DST])
                age = arrive - tx_rec[j, PK_TGEN]
                if nh == dst:
                    rcv_cnt[b, dst] += 1
                    rcv_sum[b, dst] += age
                    rew_cnt[b, dst] += 1
                    rew_sum[b, dst] += age
                    del_b[nd] = b
                    del_src[nd] = int(tx_rec[j, PK_SRC])
                    del_dst[nd] = dst
                    del_ms[nd] = age
                    nd += 1
                elif push_back(pkt, head, size, b, nh, 1, tx_rec[j, PK_TGEN], tx_rec[j, PK_SRC],
                               tx_rec[j, PK_DST], 0.0, g + 1):
                    relayed[b, nh] += 1
                    if size[b, nh, 1] > max_f[b, nh]:
                        max_f[b, nh] = size[b, nh, 1]
                    if relay_reward:
                        rew_cnt[b, nh] += 1
                        rew_sum[b, nh] += age
                else:
                    drop[0, b, nh] += 1
        # ---- head-of-line age at the frame end (for reward_when_empty="hol_age")
        t_end = (t + 1) * M * slot_ms
        for n in range(N):
            a, c = 0.0, 0
            for q in range(2):
                if size[b, n, q] > 0:
                    a += t_end - pkt[b, n, q, head[b, n, q], PK_TGEN]
                    c += 1
            hol_age[b, n] = a / c if c else 0.0
    return nd


@nb.njit(cache=True)
def _mean_field(obs, deg, nbr, out):
    """``out[b, i] = mean_{j ∈ N_i} obs[b, j]`` (zeros for a node without neighbours)."""
    B, N, D = obs.shape
    for b in range(B):
        for i in range(N):
            for d in range(D):
                out[b, i, d] = 0.0
            c = deg[b, i]
            if c == 0:
                continue
            for k in range(c):
                j = nbr[b, i, k]
                for d in range(D):
                    out[b, i, d] += obs[b, j, d]
            for d in range(D):
                out[b, i, d] /= c


@nb.njit(cache=True)
def _move(pos, way, speed_mps, dt_s, side_km, rng):
    """Random waypoint: move every node ``speed·dt`` toward its waypoint; on arrival draw a new
    waypoint uniform in the area."""
    B, N, _ = pos.shape
    for b in range(B):
        for n in range(N):
            step = speed_mps[n] * dt_s / 1000.0
            while step > 0.0:
                dx = way[b, n, 0] - pos[b, n, 0]
                dy = way[b, n, 1] - pos[b, n, 1]
                dist = np.sqrt(dx * dx + dy * dy)
                if dist > step:
                    pos[b, n, 0] += dx / dist * step
                    pos[b, n, 1] += dy / dist * step
                    step = 0.0
                else:
                    pos[b, n, 0] = way[b, n, 0]
                    pos[b, n, 1] = way[b, n, 1]
                    step -= dist
                    way[b, n, 0] = stream_uniform(rng, b) * side_km
                    way[b, n, 1] = stream_uniform(rng, b) * side_km


# packed per-frame counters: int64 [_NI, B, N] and float64 [_NF, B, N]
_GEN, _DROP, _NTX, _NFAIL, _WASTED, _RELAYED, _RCV, _REWC, _MAXG, _MAXF, _GRANT, _BACKLOG = (
    0, 1, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13)
_NI = 14
_RCV_SUM, _REW_SUM, _HOL, _RCV_DELAY = 0, 1, 2, 3
_NF = 4
_EMPTY_MODES = {"hold": 0, "zero": 1, "hol_age": 2}


@nb.njit(cache=True)
def _step_kernel(t, req, M, L, slot_ms, ttl_ms, max_att, global_reuse, deterministic,
                 relay_first, half_duplex, relay_reward, empty_mode, dom_cnt, dom, owned, grant,
                 pkt, head, size, next_arr, rate_pps, dest_cnt, dest, next_hop, link_ps, deg, nbr,
                 rng_arr, rng_fade, rng_alloc, ci, cf, q_int, dint, dms, last_reward, rewards,
                 obs, mf_obs, last_traffic, generated, delivered, dropped):
    """One frame of every copy: allocation, the frame's events, rewards, observations, mean
    field and cumulative counters (one compiled call per env step)."""
    B, N = req.shape
    _allocate(req, M * L, global_reuse, deterministic, dom_cnt, dom, rng_alloc, owned, grant)
    nd = _frame(t, M, L, slot_ms, ttl_ms, max_att, relay_first, half_duplex, relay_reward,
                owned, pkt, head, size, next_arr, rate_pps, dest_cnt, dest, next_hop, link_ps,
                rng_arr, rng_fade, ci[_GEN], ci[_DROP:_DROP + 3], ci[_NTX], ci[_NFAIL],
                ci[_WASTED], ci[_RELAYED], ci[_RCV], cf[_RCV_SUM], ci[_REWC], cf[_REW_SUM],
                ci[_MAXG], ci[_MAXF], q_int, cf[_HOL], dint[0], dint[1], dint[2], dms)
    for b in range(B):
        for n in range(N):
            ci[_GRANT, b, n] = grant[b, n]
            c = ci[_RCV, b, n]
            cf[_RCV_DELAY, b, n] = cf[_RCV_SUM, b, n] / c if c > 0 else np.nan
            if ci[_REWC, b, n] > 0:
                r = -cf[_REW_SUM, b, n] / ci[_REWC, b, n]
            elif empty_mode == 0:
                r = last_reward[b, n]
            elif empty_mode == 1:
                r = 0.0
            else:
                r = -cf[_HOL, b, n]
            rewards[b, n] = r
            last_reward[b, n] = r
            obs[b, n, 0] = size[b, n, 0]
            obs[b, n, 1] = ci[_MAXG, b, n]
            obs[b, n, 2] = size[b, n, 1]
            obs[b, n, 3] = ci[_MAXF, b, n]
            ci[_BACKLOG, b, n] = size[b, n, 0] + size[b, n, 1]
            generated[b] += ci[_GEN, b, n]
            delivered[b] += c
            for k in range(3):
                dropped[b, k] += ci[_DROP + k, b, n]
            last_traffic[b, n, 0] = ci[_GEN, b, n]
            last_traffic[b, n, 1] = ci[_RELAYED, b, n]
            last_traffic[b, n, 2] = ci[_NTX, b, n] - ci[_NFAIL, b, n]
            last_traffic[b, n, 3] = ci[_NFAIL, b, n]
            last_traffic[b, n, 4] = grant[b, n]
    _mean_field(obs, deg, nbr, mf_obs)
    return nd


# =========================================================================== environment
class AdhocTDMAEnv:
    """Batched MF-TDMA ad hoc network (see module docstring).

    Attributes: ``n_agents = n_devices = N``; ``obs_dim = 4``; ``n_actions = max_request + 1``;
    ``slot_ms`` = the duration of one env step (a frame, ms), so delays reported in
    ``Deliveries.delay_slots`` are in frames.
    """

    family = "adhoc"

    def __init__(self, params: AdhocParams, batch: int = 1):
        self.params = params.validate()
        self.batch = check_number("batch", batch, low=1, integer=True)
        p = self.params
        self.n_agents = self.n_devices = p.n_nodes
        self.obs_dim = 4
        self.n_actions = p.max_request + 1
        self.slot_ms = p.frame_ms
        self.rates_pps = p.node_rates_pps()
        speeds = np.where(np.arange(p.n_nodes) < p.n_high, p.speed_high_mps, p.speed_low_mps)
        self.speeds_mps = speeds.astype(float)
        B, N = self.batch, p.n_nodes
        self._owned = np.zeros((B, N), np.uint64)
        self._grant = np.zeros((B, N), np.int64)
        self._cap_del = B * N * p.n_rbs
        self._del = (np.zeros(self._cap_del, np.int64), np.zeros(self._cap_del, np.int64),
                     np.zeros(self._cap_del, np.int64), np.zeros(self._cap_del))
        self._dist = np.zeros((N, N))

    # ------------------------------------------------------------------ topology
    def _draw_positions(self, rng: np.random.Generator) -> np.ndarray:
        p = self.params
        if p.positions is not None:
            pos = np.asarray(p.positions, float)
            if p.connectivity == "redraw" and p.speed_meaning == "traffic" \
                    and not unit_disk_connected(pos, p.radius_km):
                raise ValueError("positions: the given topology is disconnected (one-hop radius "
                                 f"{p.radius_km} km) but connectivity='redraw' requires a "
                                 "connected graph; use connectivity='any' to allow it")
            return pos
        if p.placement == "sequential":
            return sequential_nodes(rng, p.n_nodes, p.area_km, p.radius_km)
        for _ in range(p.max_draws):
            pos = uniform_nodes(rng, p.n_nodes, p.area_km)
            if p.connectivity == "any" or unit_disk_connected(pos, p.radius_km):
                return pos
        raise ValueError(f"no connected topology in max_draws={p.max_draws} uniform draws of "
                         f"{p.n_nodes} nodes in {p.area_km} km x {p.area_km} km (radius "
                         f"{p.radius_km} km); use placement='sequential' or connectivity='any'")

    def _tables(self, st: AdhocState, b: int) -> None:
        p = self.params
        _graph_tables(st.positions[b], p.radius_km, p.interference_hops, p.dest_max_hops,
                      p.power_dbm, p.carrier * 1e6, p.noise_dbm, p.snr_threshold_db,
                      p.fading == "rayleigh", st.deg[b], st.nbr[b], st.hops[b], st.next_hop[b],
                      st.link_ps[b], st.dom_cnt[b], st.dom[b], st.dest_cnt[b], st.dest[b],
                      self._dist)

    # ------------------------------------------------------------------ API
    def reset(self, seed: int = 0) -> tuple[np.ndarray, AdhocState]:
        """Empty queues, a fresh topology per copy (unless ``positions`` is fixed)."""
        p = self.params
        B, N = self.batch, p.n_nodes
        topo_rng, arr_rng, fade_rng, alloc_rng, mob_rng = seed_streams(seed, 5)
        pos = np.stack([self._draw_positions(topo_rng) for _ in range(B)])
        st = AdhocState(
            frame=0, queues=RelayQueues.empty(B, N, 2, p.queue_capacity),
            next_arrival_ms=np.zeros((B, N)),
            rng_arrival=new_streams(arr_rng, B), rng_fading=new_streams(fade_rng, B),
            rng_alloc=new_streams(alloc_rng, B), rng_mobility=new_streams(mob_rng, B),
            positions=pos, waypoints=topo_rng.random((B, N, 2)) * p.area_km,
            deg=np.zeros((B, N), np.int64), nbr=np.full((B, N, N), -1, np.int64),
            hops=np.zeros((B, N, N), np.int64), next_hop=np.zeros((B, N, N), np.int64),
            link_ps=np.zeros((B, N, N)), dom_cnt=np.zeros((B, N), np.int64),
            dom=np.zeros((B, N, N), np.int64), dest_cnt=np.zeros((B, N), np.int64),
            dest=np.zeros((B, N, N), np.int64), last_reward=np.zeros((B, N), np.float32),
            obs=np.zeros((B, N, 4), np.float32), mf_obs=np.zeros((B, N, 4), np.float32),
            generated=np.zeros(B, np.int64), delivered=np.zeros(B, np.int64),
            dropped=np.zeros((B, 3), np.int64), last_traffic=np.zeros((B, N, 5), np.float32),
            done=np.zeros(B, bool))
        for b in range(B):
            self._tables(st, b)
        # first generation instants: Exp gaps from t = 0 (per node, arrival stream of the copy)
        for b in range(B):
            for n in range(N):
                r = self.rates_pps[n]
                st.next_arrival_ms[b, n] = np.inf if r <= 0 else \
                    1000.0 / r * float(_exp1(st.rng_arrival, b))
        return st.obs.copy(), st

    def check_actions(self, actions) -> np.ndarray:
        """``int64[B, N]`` requests in ``[0, max_request]``; a clear ``ValueError`` otherwise."""
        a = np.asarray(actions)
        if a.dtype == np.int64 and a.shape == (self.batch, self.n_agents) \
                and _in_range(a, self.params.max_request):
            return a
        shape = (self.batch, self.n_agents)
        if a.shape != shape:
            raise ValueError(f"actions (RB requests) must have shape (B, N) = {shape}, "
                             f"got {a.shape}")
        a = check_array("actions (RB requests)", a, integer=True, low=0,
                        high=self.params.max_request)
        return a.astype(np.int64, copy=False)

    def step(self, state: AdhocState, actions):
        """Simulate one frame of every copy (in place). Returns
        ``(obs, rewards[B, N], terminated[B], truncated[B], info, state)``.

        ``info``: ``frame``/``slot`` (index of the frame just simulated); ``requests``,
        ``grants`` [B, N]; ``deliveries`` (:class:`~radiorl.traffic.Deliveries`: ``device`` =
        destination, ``delay_slots`` in frames) and ``delivery_src``/``delivery_delay_ms``;
        ``served`` and ``received`` [B, N] (packets delivered to each destination);
        ``received_delay_ms`` [B, N] (their mean delay, NaN if none); ``served_bits`` [B, N];
        ``arrivals`` [B, N] (packets generated); ``dropped`` {cause: [B, N]};
        ``transmissions``, ``failures``, ``wasted_rbs``, ``relayed`` [B, N]; ``queues`` and
        ``backlog_packets`` [B, N] (G + F at the frame end); ``mf_obs`` [B, N, 4];
        ``queue_packet_ms`` [B] (Σ over slots of T_s × packets queued after the slot's
        arrivals; Little's law); ``generated_total``, ``delivered_total``,
        ``dropped_total`` [B] (cumulative, conservation:
        ``generated = delivered + dropped + queued``).
        """
        p = self.params
        a = self.check_actions(actions)
        B, N = self.batch, p.n_nodes
        ci = np.zeros((_NI, B, N), np.int64)
        cf = np.zeros((_NF, B, N))
        q_int = np.zeros(B)
        rewards = np.empty((B, N), np.float32)
        obs = np.empty((B, N, 4), np.float32)
        dint = np.empty((3, self._cap_del), np.int64)
        dms = np.empty(self._cap_del)
        q = state.queues
        t = state.frame
        nd = _step_kernel(
            t, a, p.n_slots, p.n_channels, p.slot_ms, p.ttl_ms, p.max_attempts,
            p.reuse == "global", p.assignment == "deterministic",
            p.service_order == "relay_first", p.half_duplex, p.reward_mode == "relay",
            _EMPTY_MODES[p.reward_when_empty], state.dom_cnt, state.dom, self._owned,
            self._grant, q.pkt, q.head, q.size, state.next_arrival_ms, self.rates_pps,
            state.dest_cnt, state.dest, state.next_hop, state.link_ps, state.deg, state.nbr,
            state.rng_arrival, state.rng_fading, state.rng_alloc, ci, cf, q_int, dint, dms,
            state.last_reward, rewards, obs, state.mf_obs, state.last_traffic,
            state.generated, state.delivered, state.dropped)
        state.obs = obs
        state.frame = t + 1
        if p.speed_meaning == "mobility":
            _move(state.positions, state.waypoints, self.speeds_mps, p.frame_ms * 1e-3,
                  p.area_km, state.rng_mobility)
            for b in range(B):
                self._tables(state, b)
        terminated = np.zeros(B, bool)
        truncated = np.full(B, state.frame >= p.episode_frames)
        state.done = terminated | truncated
        rcv = ci[_RCV]
        backlog = ci[_BACKLOG]
        deliveries = Deliveries(dint[0, :nd], dint[2, :nd], dms[:nd] / p.frame_ms, rcv)
        info = {"frame": t, "slot": t, "requests": a, "grants": ci[_GRANT],
                "deliveries": deliveries, "delivery_src": dint[1, :nd],
                "delivery_delay_ms": dms[:nd], "served": rcv, "received": rcv,
                "received_delay_ms": cf[_RCV_DELAY], "served_bits": rcv * float(p.bits_per_rb),
                "arrivals": ci[_GEN],
                "dropped": {c: ci[_DROP + i] for i, c in enumerate(DROP_CAUSES)},
                "transmissions": ci[_NTX], "failures": ci[_NFAIL], "wasted_rbs": ci[_WASTED],
                "relayed": ci[_RELAYED], "queues": backlog, "backlog_packets": backlog,
                "mf_obs": state.mf_obs.copy(), "queue_packet_ms": q_int,
                "generated_total": state.generated.copy(),
                "delivered_total": state.delivered.copy(),
                "dropped_total": state.dropped.sum(axis=1)}
        return obs.copy(), rewards, terminated, truncated, info, state

    # ------------------------------------------------------------ policies
    def policy_view(self, state: AdhocState, requires) -> PolicyView:
        """Information handed to a policy that declared ``requires``.

        ``local_obs``: ``obs`` [B, N, 4] plus the node's own static neighbourhood knowledge
        ``degree`` and ``domain_size`` [B, N] (its interference domain incl. itself) and
        ``n_nodes``; ``mean_field_obs``: ``mf_obs`` [B, N, 4]; ``local_traffic``: ``traffic``
        [B, N, 5] = last frame's own [generated, relayed in, sent ok, failed, granted RBs].
        """
        data = {}
        req = set(requires)
        if "local_obs" in req:
            data.update(obs=state.obs, degree=state.deg, domain_size=state.dom_cnt + 1,
                        n_nodes=self.n_agents)
        if "mean_field_obs" in req:
            data["mf_obs"] = state.mf_obs
        if "local_traffic" in req:
            data["traffic"] = state.last_traffic
        if {"local_queues", "neighbor_queues", "global_queues"} & req:
            data["queues"] = state.queues.size.sum(axis=2)
        return PolicyView(data, requires)

    def topology(self, state: AdhocState, b: int = 0) -> dict:
        """Copy ``b``'s graph: positions (km), neighbour lists, hop counts, next hops, success
        probabilities."""
        deg = state.deg[b]
        return {"positions": state.positions[b].copy(),
                "neighbors": [state.nbr[b, i, :deg[i]].copy() for i in range(self.n_agents)],
                "hops": state.hops[b].copy(), "next_hop": state.next_hop[b].copy(),
                "link_ps": state.link_ps[b].copy(), "high_rate": np.arange(self.n_agents)
                < self.params.n_high}

    def with_params(self, **changes) -> "AdhocTDMAEnv":
        return AdhocTDMAEnv(replace(self.params, **changes), self.batch)


@nb.njit(cache=True)
def _in_range(a, hi):
    for v in a.flat:
        if v < 0 or v > hi:
            return False
    return True


@nb.njit(cache=True)
def _exp1(rng, b):
    return stream_exponential(rng, b)


def normalize_requests(requests, n_rbs: int = 40, rng: np.random.Generator | None = None):
    """Global normalization of one network's requests (spec A.3.6), for inspection and tests.

    ``normalize_requests([10, 20, 30, 40]) -> [4, 8, 12, 16]``; ``[5, 30, 30]`` gives
    ``[3, 19, 18]`` or ``[3, 18, 19]`` (random tie of the two 0.46 remainders).
    """
    a = check_array("requests", np.asarray(requests), integer=True, low=0)
    if a.ndim != 1:
        raise ValueError(f"requests must be a 1-D list of integers >= 0, got shape {a.shape}")
    rng = rng or np.random.default_rng()
    streams = new_streams(rng, 1)
    owned = np.zeros((1, len(a)), np.uint64)
    grant = np.zeros((1, len(a)), np.int64)
    _allocate(a[None].astype(np.int64), n_rbs, True, False, np.zeros((1, len(a)), np.int64),
              np.zeros((1, len(a), 1), np.int64), streams, owned, grant)
    return grant[0]

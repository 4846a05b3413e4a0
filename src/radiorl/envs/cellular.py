"""Multi-cell downlink with H subbands (Zhang & Guo, Sec. II-C; spec cellular-conflict.md).

Per slot ``t`` (duration ``T``) and copy ``b``:

1. Packets (``L`` bits) arrive at the start of the slot (Poisson, ``load_pps·T`` per device);
   the channel of slot ``t`` is ``g_{k→n,h} = α_{k,n}·|β_{k,n,h}|²`` with Gauss–Markov Rayleigh
   fading ``β`` (ρ = J0(2π f_d T)) between every AP ``k`` and device ``n``.
2. AP ``k`` chooses per subband a device (``0`` idle, ``ι`` its ι-th device) and a power: either
   a level index into ``power_levels_dbm`` or a continuous power in watts ``≤ P_max``. At most
   one device per AP per subband holds by construction. A chosen device with an empty queue is
   not served and its AP stays silent on that subband.
3. SINR of an active link on subband ``h``: ``g_{k→n} p_k / (Σ_{j≠k} g_{j→n} p_j + σ²)``
   (eq. 12; downlink interference depends only on the other APs' powers). Bits served:
   ``⌊W·T·Σ_h log2(1 + min(SINR_h, cap))⌋`` (spec), in FIFO order with partial head service;
   delay counted when the last bit is delivered, fractional within the slot (see
   :mod:`radiorl.traffic.queues`).
4. Reward of agent ``k`` (eqs. 9–10): minus the end-of-slot queues (bits, or packets with a
   partly served packet counting as one under ``reward_unit="packets"``) of its own and its
   neighbours' devices.
5. Observation per device (eq. 18), from measurements of the *previous* slot (one-slot delayed
   CSI) and the timely post-arrival queue:
   ``obs_mode="paper"``: ``[ζ/L (packets), g_direct (dB), p (dBm, off = off_power_dbm),
   I+N (dBm), SE (b/s/Hz)]``, the last four per subband → ``1 + 4H`` features;
   ``obs_mode="reference"``: ``[ζ/L, 10·SE/SE_max, log10((I+N)/g(R))]`` per subband.
   The agent observation ``X_k`` concatenates its own devices (padded to ``max_devices``) and its
   neighbours' (padded to ``max_neighbors``) → ``[B, K, (1+max_nbrs)·max_dev·F]``.

Neighbourhood (our reading of "within 8 dB"): agents ``j ≠ k`` are neighbours if AP ``j``'s
path gain to some device of ``k`` is within ``neighbor_threshold_db`` of the serving AP's, or
vice versa (made symmetric, so reward and observation sharing are mutual).

Genie baselines see the current channel (``info["csi"]``, requires ``global_csi``); learned
agents see only the delayed local measurements inside ``obs``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numba as nb
import numpy as np

from radiorl.envs.base import (AgentStructure, PolicyView, check_array, check_number,
                               seed_streams)
from radiorl.envs.topology import Deployment, hexagonal_deployment, random_deployment
from radiorl.phy import dbm_to_watt, jakes_rho, lte_macro_pathloss_db
from radiorl.phy.fastrng import new_state as new_gaussian_state
from radiorl.phy.fastrng import normal_fill_f32
from radiorl.traffic import ArrivalTape, PacketQueues


@nb.njit(cache=True)
def _fading_step(re, im, gain, alpha, rho, c, rng_state, noise):
    """Gauss–Markov update of ``re, im`` (``[B, H, K, N]`` float32, in place) with fresh
    standard normals scaled by ``c`` (= √(1−ρ²)·√(P/2)), then ``gain = α·(re² + im²)``.

    Normals are drawn one (b, h) block at a time into ``noise`` (length ≥ 2·K·N, rounded up
    to a multiple of 32 so the stream does not depend on block boundaries), which keeps them
    in cache."""
    B, H, K, N = re.shape
    kn = K * N
    r = re.reshape(-1)
    q = im.reshape(-1)
    g = gain.reshape(-1)
    a = alpha.reshape(-1)
    for i in range(B * H):
        normal_fill_f32(rng_state, noise)
        o = i * kn
        for j in range(kn):
            x = rho * r[o + j] + c * noise[j]
            y = rho * q[o + j] + c * noise[kn + j]
            r[o + j] = x
            q[o + j] = y
            g[o + j] = a[j] * (x * x + y * y)


@nb.njit(cache=True)
def _links(gain, dev, p, ap_of_device, noise_w, sinr_cap, rate_scale, meas, sinr, se, bits, ntx):
    """SINR, spectral efficiency and bits of the active links, and the per-device measurements.

    Args: ``gain[B, H, K, N]``; ``dev[B, H, K]`` served device (−1 none); ``p[B, H, K]`` watts
    (0 = silent). Outputs (written in place): ``sinr, se [B, H, K]``, ``bits[B, N]``
    (⌊W·T·Σ_h SE⌋), ``ntx[B, N]`` and ``meas[B, 4, H, N]`` = direct gain, power, interference
    plus noise (everything but the device's own signal), SE.
    """
    B, H, K, N = gain.shape
    total = np.empty(N, np.float64)
    for b in range(B):
        for n in range(N):
            bits[b, n] = 0.0
            ntx[b, n] = 0
        for h in range(H):
            for n in range(N):
                total[n] = 0.0
            for k in range(K):
                pk = p[b, h, k]
                if pk > 0.0:
                    for n in range(N):
                        total[n] += gain[b, h, k, n] * pk
            for n in range(N):
                meas[b, 0, h, n] = gain[b, h, ap_of_device[n], n]
                meas[b, 1, h, n] = 0.0
                meas[b, 2, h, n] = total[n] + noise_w
                meas[b, 3, h, n] = 0.0
            for k in range(K):
                d = dev[b, h, k]
                pk = p[b, h, k]
                if d >= 0 and pk > 0.0:
                    sig = gain[b, h, k, d] * pk
                    intf = total[d] - sig + noise_w
                    x = sig / intf
                    e = np.log2(1.0 + min(x, sinr_cap))
                    sinr[b, h, k] = x
                    se[b, h, k] = e
                    bits[b, d] += e * rate_scale
                    ntx[b, d] += 1
                    meas[b, 1, h, d] = pk
                    meas[b, 2, h, d] = intf
                    meas[b, 3, h, d] = e
                else:
                    sinr[b, h, k] = 0.0
                    se[b, h, k] = 0.0
        for n in range(N):
            bits[b, n] = np.floor(bits[b, n])


@nb.njit(cache=True)
def _features(zeta_bits, meas, packet_bits, paper, off_power_dbm, se_max, g_ref, obs_index,
              out):
    """Device features o_n (see module docstring) gathered into ``out[B, K, S, F]`` by
    ``obs_index[K, S]`` (index ``N`` = zero padding)."""
    B, _, H, N = meas.shape
    K, S = obs_index.shape
    F = out.shape[3]
    f = np.zeros((N + 1, F), np.float32)
    for b in range(B):
        for n in range(N):
            f[n, 0] = zeta_bits[b, n] / packet_bits
            for h in range(H):
                # logs in float32: the features are float32 anyway (and it is 1.4x faster)
                if paper:
                    f[n, 1 + h] = 10.0 * np.log10(np.float32(max(meas[b, 0, h, n], 1e-30)))
                    pw = meas[b, 1, h, n]
                    f[n, 1 + H + h] = (10.0 * np.log10(np.float32(pw)) + 30.0 if pw > 0
                                       else off_power_dbm)
                    f[n, 1 + 2 * H + h] = 10.0 * np.log10(np.float32(meas[b, 2, h, n])) + 30.0
                    f[n, 1 + 3 * H + h] = meas[b, 3, h, n]
                else:
                    f[n, 1 + h] = 10.0 * meas[b, 3, h, n] / se_max
                    f[n, 1 + H + h] = np.log10(np.float32(meas[b, 2, h, n] / g_ref))
        for k in range(K):
            for j in range(S):
                src = obs_index[k, j]
                for c in range(F):
                    out[b, k, j, c] = f[src, c]


#: Queue threshold (packets) at which the public reference code ends a training episode.
REFERENCE_TRAIN_QUEUE_THRESHOLD = 50


@dataclass(frozen=True)
class CellularParams:
    """Static parameters (defaults: the paper's Table I; ``reference_compat()`` for the public
    code's conventions).

    Attributes:
        deployment: ``"hex"`` or ``"random"``; ``n_aps``, ``n_devices`` (hex: multiple of K),
            ``deployment_seed`` fixes the positions (the network of a figure);
            ``ap_xy`` / ``device_xy`` / ``ap_of_device`` override with explicit positions.
        cell_radius_m, min_dist_m: geometry (m).
        n_subbands: H. bandwidth_hz: W per subband. slot_s: T. packet_bits: L.
        noise_dbm: σ² per subband. p_max_dbm: per AP per subband.
        power_levels_dbm: the discrete action set (paper: 6 log-spaced from p_min to p_max).
        doppler_hz: f_d; ρ = J0(2π f_d T). fading: ``"rayleigh"`` (Gauss–Markov) or ``"none"``
            (|β|² = fading_power always; deterministic links for oracles and debugging).
        fading_power: E|β|² (1, or 4/π in reference code).
        sinr_cap_db: SINR cap for the rate.
        load_pps: mean packet arrivals per device per second.
        neighbor_threshold_db: neighbourhood rule (see module docstring).
        reward_unit: ``"bits"`` (paper) or ``"packets"`` (reference code).
        obs_mode: ``"paper"`` or ``"reference"``.
        off_power_dbm: value standing for "no power" in dB-valued observations.
        episode_slots: truncation. queue_threshold_packets: training termination (None: off).
        obs_max_neighbors, obs_max_devices: fixed observation/action sizes (None: this
            network's maxima); set both to run one policy on networks of different sizes.
        max_queue_packets: per-queue buffer (overflow drops beyond it).
    """

    deployment: str = "random"
    n_aps: int = 19
    n_devices: int = 57
    deployment_seed: int = 0
    ap_xy: tuple | None = None
    device_xy: tuple | None = None
    ap_of_device: tuple | None = None
    cell_radius_m: float = 500.0
    min_dist_m: float = 35.0
    n_subbands: int = 3
    bandwidth_hz: float = 20e6
    slot_s: float = 0.020
    packet_bits: float = 0.5e6
    noise_dbm: float = -114.0
    p_max_dbm: float = 23.0
    p_min_dbm: float = 0.0
    n_power_levels: int = 6
    power_levels_dbm: tuple | None = None
    doppler_hz: float = 10.0
    fading: str = "rayleigh"
    fading_power: float = 1.0
    sinr_cap_db: float = 30.0
    load_pps: float = 20.0
    neighbor_threshold_db: float = 8.0
    reward_unit: str = "bits"
    obs_mode: str = "paper"
    off_power_dbm: float = -30.0
    episode_slots: int = 5000
    queue_threshold_packets: float | None = None
    obs_max_neighbors: int | None = None
    obs_max_devices: int | None = None
    max_queue_packets: int = 100_000
    name: str = "cellular"

    # ---------------------------------------------------------------- presets
    def reference_compat(self) -> "CellularParams":
        """The public reference code's conventions (spec table): 10 MHz, E|β|² = 4/π, power
        levels off + {0, 5.75, 11.5, 17.25, 23} dBm, rewards in packets, its observation.
        Its training termination threshold is ``REFERENCE_TRAIN_QUEUE_THRESHOLD`` = 50 packets;
        trainers set ``queue_threshold_packets`` themselves (evaluation never terminates)."""
        return replace(self, bandwidth_hz=10e6, fading_power=4.0 / np.pi,
                       power_levels_dbm=(0.0, 5.75, 11.5, 17.25, 23.0), reward_unit="packets",
                       obs_mode="reference", queue_threshold_packets=self.queue_threshold_packets)

    def levels_dbm(self) -> np.ndarray:
        if self.power_levels_dbm is not None:
            return np.asarray(self.power_levels_dbm, float)
        return np.linspace(self.p_min_dbm, self.p_max_dbm, self.n_power_levels)

    def validate(self) -> "CellularParams":
        if self.deployment not in ("hex", "random"):
            raise ValueError(f"deployment must be one of ['hex', 'random'], got {self.deployment!r}")
        check_number("n_aps", self.n_aps, low=1, integer=True)
        check_number("n_devices", self.n_devices, low=1, integer=True)
        for nm in ("cell_radius_m", "bandwidth_hz", "slot_s", "packet_bits", "load_pps"):
            check_number(nm, getattr(self, nm), low=0, low_open=True)
        check_number("min_dist_m", self.min_dist_m, low=0)
        check_number("n_subbands", self.n_subbands, low=1, integer=True)
        for nm in ("noise_dbm", "p_max_dbm", "p_min_dbm", "sinr_cap_db", "off_power_dbm",
                   "neighbor_threshold_db"):
            check_number(nm, getattr(self, nm))
        check_number("doppler_hz", self.doppler_hz, low=0)
        check_number("fading_power", self.fading_power, low=0, low_open=True)
        check_number("n_power_levels", self.n_power_levels, low=1, integer=True)
        lv = self.levels_dbm()
        check_array("power_levels_dbm", lv, high=self.p_max_dbm + 1e-9)
        if self.fading not in ("rayleigh", "none"):
            raise ValueError(f"fading must be 'rayleigh' or 'none', got {self.fading!r}")
        if self.reward_unit not in ("bits", "packets"):
            raise ValueError(f"reward_unit must be 'bits' or 'packets', got {self.reward_unit!r}")
        if self.obs_mode not in ("paper", "reference"):
            raise ValueError(f"obs_mode must be 'paper' or 'reference', got {self.obs_mode!r}")
        check_number("episode_slots", self.episode_slots, low=1, integer=True)
        check_number("obs_max_neighbors", self.obs_max_neighbors, low=0, high=10_000,
                     integer=True, allow_none=True)
        check_number("obs_max_devices", self.obs_max_devices, low=1, high=10_000, integer=True,
                     allow_none=True)
        check_number("queue_threshold_packets", self.queue_threshold_packets, low=0,
                     allow_none=True)
        if self.deployment == "hex" and self.ap_xy is None and self.n_devices % self.n_aps:
            raise ValueError(f"n_devices must be a multiple of n_aps={self.n_aps} for the "
                             f"hexagonal deployment, got {self.n_devices}")
        return self

    def build_deployment(self) -> Deployment:
        if self.ap_xy is not None or self.device_xy is not None or self.ap_of_device is not None:
            if self.ap_xy is None or self.device_xy is None or self.ap_of_device is None:
                raise ValueError("ap_xy, device_xy and ap_of_device must be given together")
            ap = check_array("ap_xy", self.ap_xy)
            dev = check_array("device_xy", self.device_xy)
            if ap.ndim != 2 or ap.shape[1] != 2:
                raise ValueError(f"ap_xy must have shape (K, 2), got {ap.shape}")
            if dev.ndim != 2 or dev.shape[1] != 2:
                raise ValueError(f"device_xy must have shape (N, 2), got {dev.shape}")
            K, N = len(ap), len(dev)
            assoc = check_array("ap_of_device", self.ap_of_device, shape=(N,), low=0, high=K - 1,
                                integer=True)
            d = np.linalg.norm(ap[:, None] - dev[None], axis=-1)
            if d.min() <= 0:
                raise ValueError("device_xy: every device must be at a distance > 0 m from "
                                 "every AP")
            return Deployment(ap, dev, assoc, float(self.cell_radius_m))
        rng = np.random.default_rng(self.deployment_seed)
        if self.deployment == "hex":
            return hexagonal_deployment(rng, self.n_aps, self.n_devices // self.n_aps,
                                        self.cell_radius_m, self.min_dist_m)
        return random_deployment(rng, self.n_aps, self.n_devices, self.cell_radius_m,
                                 self.min_dist_m)


@dataclass
class CellularState:
    """Dynamic state (updated in place by ``step``; ``copy()`` to branch).

    Attributes:
        slot: index of the upcoming slot ``t``.
        queues: packet FIFOs (bits).
        zeta_bits: ``[B, N]`` post-arrival queue of slot ``t``.
        fade_re, fade_im: ``float32[B, H, K, N]`` fading amplitudes of slot ``t``.
        fade_rng: ``uint64[68]`` state of the fading stream (:mod:`radiorl.phy.fastrng`: exact
            ziggurat normals, ~8x faster than numpy's generator); copy it to branch.
        gain: ``float32[B, H, K, N]`` channel gains of slot ``t`` (genie CSI).
        meas: ``float64[B, 4, H, N]`` measurements of slot ``t−1``: direct gain (linear), power
            (W), interference+noise (W), spectral efficiency (b/s/Hz).
    """

    slot: int
    queues: PacketQueues
    zeta_bits: np.ndarray
    fade_re: np.ndarray
    fade_im: np.ndarray
    gain: np.ndarray
    meas: np.ndarray
    tape: ArrivalTape
    fade_rng: np.ndarray
    done: np.ndarray
    extra: dict = field(default_factory=dict)

    def copy(self) -> "CellularState":
        return CellularState(self.slot, self.queues.copy(), self.zeta_bits.copy(),
                             self.fade_re.copy(), self.fade_im.copy(), self.gain.copy(),
                             self.meas.copy(), self.tape.copy(), self.fade_rng.copy(),
                             self.done.copy(),
                             dict(self.extra))


class CellularEnv:
    """Batched multi-cell downlink environment (see module docstring).

    Actions: ``{"device": int[B, K, H], "power_level": int[B, K, H]}`` or
    ``{"device": ..., "power_w": float[B, K, H]}`` (``0 ≤ p ≤ P_max``).

    Example:
        >>> env = CellularEnv(CellularParams(deployment="hex", load_pps=15), batch=2)
        >>> obs, state = env.reset(seed=1)
        >>> act = {"device": np.ones((2, 19, 3), int), "power_level": np.full((2, 19, 3), 5)}
        >>> obs, rew, term, trunc, info, state = env.step(state, act)
        >>> rew.shape
        (2, 19)
    """

    def __init__(self, params: CellularParams, batch: int = 1):
        self.params = p = params.validate()
        self.batch = check_number("batch", batch, low=1, integer=True)
        self.deployment = dep = p.build_deployment()
        K, N, H = len(dep.ap_xy), len(dep.device_xy), p.n_subbands
        self.n_agents, self.n_devices, self.n_subbands = K, N, H
        self.ap_of_device = np.asarray(dep.ap_of_device, np.int64)
        missing = sorted(set(range(K)) - set(self.ap_of_device.tolist()))
        if missing:
            raise ValueError(f"ap_of_device: APs {missing} serve no device; every AP needs at "
                             f"least one device (ap indices in [0, {K - 1}])")
        self.dist_m = dep.distances()
        self.pathloss_db = lte_macro_pathloss_db(np.maximum(self.dist_m, 1e-3))
        self.alpha = (10.0 ** (-self.pathloss_db / 10.0)).astype(np.float32)   # [K, N]
        self.noise_w = float(dbm_to_watt(p.noise_dbm))
        self.p_max_w = float(dbm_to_watt(p.p_max_dbm))
        self.levels_w = dbm_to_watt(p.levels_dbm())
        self.rho = jakes_rho(p.doppler_hz, p.slot_s)
        self.rate_scale = p.bandwidth_hz * p.slot_s                             # bits per b/s/Hz
        self.sinr_cap = 10.0 ** (p.sinr_cap_db / 10.0)
        # neighbourhood
        serving = self.alpha[self.ap_of_device, np.arange(N)]                    # [N]
        strong = self.alpha >= serving[None, :] * 10.0 ** (-p.neighbor_threshold_db / 10.0)
        adj = np.zeros((K, K), bool)
        kk, nn = np.nonzero(strong)
        adj[kk, self.ap_of_device[nn]] = True
        coupling = np.zeros((K, K))
        np.maximum.at(coupling, (kk, self.ap_of_device[nn]), self.alpha[kk, nn] / serving[nn])
        AgentStructure(self.ap_of_device, K, adj, p.obs_max_neighbors, p.obs_max_devices,
                       strength=coupling + coupling.T).apply_to(self)
        # observations
        self.n_features = 1 + (4 if p.obs_mode == "paper" else 2) * H
        slots = self.obs_index.shape[1]
        self.obs_mask = np.repeat(self.obs_index < N, self.n_features, axis=1)
        self.obs_dim = slots * self.n_features
        self.load_per_slot = np.full(N, p.load_pps * p.slot_s)
        self._serve_idx = self.ap_of_device                                      # [N]
        self._dev_range = np.arange(N)
        self._g_ref = float(10.0 ** (-lte_macro_pathloss_db(p.cell_radius_m) / 10.0))
        self.slot_ms = p.slot_s * 1e3
        self._true, self._false = np.ones(self.batch, bool), np.zeros(self.batch, bool)
        self._noise = np.empty(-(-2 * K * N // 32) * 32, np.float32)    # scratch for normals

    # ------------------------------------------------------------------ dynamics
    def _update_gain(self, state: CellularState) -> None:
        np.multiply(state.fade_re, state.fade_re, out=state.gain)
        state.gain += state.fade_im * state.fade_im
        state.gain *= self.alpha

    def _evolve_fading(self, state: CellularState, first: bool = False) -> None:
        """Draw the next slot's fading (``first``: the stationary initial draw, ρ = 0)."""
        p = self.params
        if p.fading == "none":
            state.fade_re[...] = np.sqrt(p.fading_power)
            state.fade_im[...] = 0.0
            self._update_gain(state)
            return
        rho = 0.0 if first else self.rho
        c = np.sqrt(1.0 - rho * rho) * np.sqrt(p.fading_power / 2.0)
        _fading_step(state.fade_re, state.fade_im, state.gain, self.alpha, np.float32(rho),
                     np.float32(c), state.fade_rng, self._noise)

    def reset(self, seed: int = 0) -> tuple[np.ndarray, CellularState]:
        arr_rng, fade_rng = seed_streams(seed, 2)
        B, H, K, N = self.batch, self.n_subbands, self.n_agents, self.n_devices
        queues = PacketQueues.empty(B, N, self.params.packet_bits,
                                    max_packets=self.params.max_queue_packets)
        meas = np.zeros((B, 4, H, N))
        z = lambda: np.zeros((B, H, K, N), np.float32)  # noqa: E731
        state = CellularState(0, queues, np.zeros((B, N)), z(), z(), z(), meas,
                              ArrivalTape(arr_rng, self.load_per_slot, B),
                              new_gaussian_state(fade_rng), np.zeros(B, bool))
        self._evolve_fading(state, first=True)
        # initial "previous slot" measurements: nothing transmitted
        meas[:, 0] = self._direct_gain(state.gain)
        meas[:, 2] = self.noise_w
        self._arrive(state)
        return self.observe(state), state

    def _direct_gain(self, gain) -> np.ndarray:
        return gain[:, :, self._serve_idx, self._dev_range]                       # [B, H, N]

    def _arrive(self, state: CellularState):
        y = state.tape.next()
        dropped = state.queues.enqueue(y, state.slot)
        state.zeta_bits = state.queues.backlog_bits()
        return y, dropped

    def ap_power(self, actions) -> tuple[np.ndarray, np.ndarray]:
        """Validate actions; return ``device[B, H, K]`` (global index or −1) and
        ``power_w[B, H, K]`` before the empty-queue rule."""
        if not isinstance(actions, dict) or "device" not in actions:
            raise ValueError("actions must be a dict with 'device' and one of 'power_level' / "
                             "'power_w'")
        B, K, H = self.batch, self.n_agents, self.n_subbands
        dev = np.asarray(actions["device"])
        if dev.shape != (B, K, H):
            raise ValueError(f"actions['device'] must have shape (B, K, H) = {(B, K, H)}, got "
                             f"{dev.shape}")
        if not np.issubdtype(dev.dtype, np.integer):
            dev = check_array("actions['device']", dev, integer=True)
        if dev.min(initial=0) < 0 or np.any(dev > self.local_sizes[None, :, None]):
            raise ValueError("actions['device'][b, k, h] must be in [0, |N_k|] (0 idle); "
                             f"|N_k| = {self.local_sizes.tolist()}")
        if "power_level" in actions:
            lv = np.asarray(actions["power_level"])
            if lv.shape != (B, K, H):
                raise ValueError(f"actions['power_level'] must have shape {(B, K, H)}, got "
                                 f"{lv.shape}")
            if not np.issubdtype(lv.dtype, np.integer):
                lv = check_array("actions['power_level']", lv, integer=True)
            if lv.min(initial=0) < 0 or lv.max(initial=0) >= len(self.levels_w):
                raise ValueError(f"actions['power_level'] must be in [0, {len(self.levels_w) - 1}]"
                                 f" (levels {np.round(self.params.levels_dbm(), 2).tolist()} dBm)")
            pw = self.levels_w[lv]
        elif "power_w" in actions:
            pw = np.asarray(actions["power_w"], float)
            if pw.shape != (B, K, H):
                raise ValueError(f"actions['power_w'] must have shape {(B, K, H)}, got {pw.shape}")
            if not np.all(np.isfinite(pw)) or pw.min(initial=0) < 0 or \
                    pw.max(initial=0) > self.p_max_w * (1 + 1e-9):
                raise ValueError(f"actions['power_w'] must be finite and in [0, {self.p_max_w:.6g}]"
                                 f" W (P_max = {self.params.p_max_dbm} dBm)")
        else:
            raise ValueError("actions must contain 'power_level' or 'power_w'")
        gdev = self.dev_table[np.arange(K)[None, :, None], dev]             # [B, K, H]
        return gdev.transpose(0, 2, 1), np.where(dev > 0, pw, 0.0).transpose(0, 2, 1)

    def step(self, state: CellularState, actions):
        """Advance all copies by one slot (in place). Returns
        ``(obs, rewards[B, K], terminated[B], truncated[B], info, state)``.

        ``info``: ``deliveries`` (this slot's packets with delays in slots; multiply by
        ``slot_ms``), ``served_bits[B, N]``, ``sinr[B, H, K]`` of the active links,
        ``transmissions[B, N]`` (device-subband transmissions), ``collisions[B, N]`` (always 0:
        interference lowers rates instead), ``queues[B, N]`` end-of-slot bits,
        ``backlog_packets[B, N]`` end-of-slot packets (a partly sent packet counts as one),
        ``arrivals`` / ``dropped`` of the next slot, ``slot``.
        """
        dev, pw = self.ap_power(actions)                        # [B, H, K]
        B, H, K, N = self.batch, self.n_subbands, self.n_agents, self.n_devices
        t = state.slot
        # an AP whose chosen device has no data stays silent
        has_data = np.take_along_axis(state.zeta_bits[:, None, :], np.maximum(dev, 0), 2) > 0
        on = (dev >= 0) & has_data
        p = np.where(on, pw, 0.0)
        dev = np.where(on, dev, -1)
        sinr = np.empty((B, H, K))
        se = np.empty((B, H, K))
        bits = np.empty((B, N))
        ntx = np.empty((B, N), np.int64)
        _links(state.gain, dev, p, self.ap_of_device, self.noise_w, self.sinr_cap,
               self.rate_scale, state.meas, sinr, se, bits, ntx)
        deliveries = state.queues.serve_bits(bits, t, fractional=True)
        served = state.queues.extra["served_bits"]
        q_bits = state.queues.backlog_bits()
        q_pkts = state.queues.backlog_packets()
        q_unit = q_bits if self.params.reward_unit == "bits" else q_pkts.astype(float)
        rewards = -(q_unit @ self.reward_matrix)
        par = self.params
        terminated = (q_pkts > par.queue_threshold_packets).any(axis=1) \
            if par.queue_threshold_packets is not None else self._false
        # advance to slot t+1
        state.slot = t + 1
        truncated = self._true if state.slot >= par.episode_slots else self._false
        self._evolve_fading(state)
        y, dropped = self._arrive(state)
        info = {"slot": t, "deliveries": deliveries, "served": deliveries.count,
                "served_bits": served, "sinr": sinr, "transmissions": ntx,
                "collisions": np.zeros((B, N), np.int64), "queues": q_bits,
                "backlog_packets": q_pkts, "arrivals": y,
                "dropped": {"overflow": dropped}}
        state.done = terminated | truncated
        return self.observe(state), rewards, terminated, truncated, info, state

    # ------------------------------------------------------------------ observations
    def device_features(self, state: CellularState) -> np.ndarray:
        """``float32[B, N, F]`` local observation o_n of every device (module docstring)."""
        p = self.params
        q = (state.zeta_bits / p.packet_bits)[:, :, None]
        m = state.meas
        if p.obs_mode == "paper":
            g_db = 10.0 * np.log10(np.maximum(m[:, 0], 1e-30))
            p_dbm = np.where(m[:, 1] > 0, 10.0 * np.log10(np.maximum(m[:, 1], 1e-30)) + 30.0,
                             p.off_power_dbm)
            in_dbm = 10.0 * np.log10(m[:, 2]) + 30.0
            feats = np.concatenate([g_db, p_dbm, in_dbm, m[:, 3]], axis=1)       # [B, 4H, N]
        else:
            se_max = np.log2(1.0 + self.sinr_cap)
            feats = np.concatenate([10.0 * m[:, 3] / se_max,
                                    np.log10(m[:, 2] / self._g_ref)], axis=1)
        return np.concatenate([q, feats.transpose(0, 2, 1)], axis=2).astype(np.float32)

    def restart_copies(self, state: CellularState, copies) -> None:
        """Restart the selected copies (``bool[B]``) with empty queues, in place (training
        episodes that hit the queue threshold). Channels and arrivals continue."""
        state.queues.clear(copies)
        state.zeta_bits = state.queues.backlog_bits()
        state.done = state.done & ~np.asarray(copies, bool)

    def observe(self, state: CellularState) -> np.ndarray:
        """``float32[B, K, obs_dim]`` aggregate observations X_k (zero-padded)."""
        K, S = self.obs_index.shape
        out = np.empty((self.batch, K, S, self.n_features), np.float32)
        p = self.params
        _features(state.zeta_bits, state.meas, p.packet_bits, p.obs_mode == "paper",
                  p.off_power_dbm, np.log2(1.0 + self.sinr_cap), self._g_ref, self.obs_index, out)
        return out.reshape(self.batch, K, S * self.n_features)

    # ------------------------------------------------------------------ policies
    def policy_view(self, state: CellularState, requires) -> PolicyView:
        req = set(requires)
        data = {}
        if {"local_queues", "neighbor_queues", "global_queues"} & req:
            data["queues"] = state.zeta_bits
        if "global_csi" in req:
            data["csi"] = state.gain
        if "local_csi" in req:
            data["delayed_csi"] = state.meas
        if "local_obs" in req:
            data["obs"] = self.observe(state)
        return PolicyView(data, req)

    def topology(self) -> dict:
        return {"ap_of_device": self.ap_of_device, "devices_of_agent": self.devices_of_agent,
                "neighbors": self.neighbors, "p_max_w": self.p_max_w, "noise_w": self.noise_w,
                "levels_w": self.levels_w, "n_subbands": self.n_subbands}

    def with_params(self, **changes) -> "CellularEnv":
        return CellularEnv(replace(self.params, **changes), self.batch)

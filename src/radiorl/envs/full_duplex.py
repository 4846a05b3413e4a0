"""Full-duplex base station: downlink beamforming, uplink power and receive beamforming
(D2RL paper, Sec. III; spec ``full-duplex.md``).

System model (paper eqs. 11–13). A BS at the origin, ``bs_height_m`` above ground, has an
``N_t``-element transmit ULA and an ``N_r``-element receive ULA (half-wavelength spacing). It
serves ``K`` single-antenna downlink (DL) users with beamformers ``v_k`` (``Σ‖v_k‖² ≤ P_max``)
while receiving ``L`` single-antenna uplink (UL) users with powers ``0 ≤ p_l ≤ P_l`` through
receive beamformers ``w_l``. ``F`` clutter interferers reflect the DL signal into the receive
array through ``G = Σ_f β_f a_r(θ_f) a_t(θ_f)ᴴ``. Per user (LoS):
``g_k = √(N_t ρ0 d_k^−α) a_t(θ_k)``, ``h_l = √(N_r ρ0 d_l^−α) a_r(θ_l)``, so
``‖g_k‖² = N_t ρ0 d_k^−α`` (``ρ0`` is a power gain, times the array gain: spec "Units and
numerics"; ``array_gain=False`` drops the factor ``N``) and a beam of power ``P`` gives
``|g_kᴴ v|² = N_t ρ0 d_k^−α·P·|a_tᴴ v̂|²`` with array factor ``|a_tᴴ v̂|² ≤ 1``.

* DL SNR (eq. 11): ``γ_k = |g_kᴴ v_k|² / σ²`` (inter-user interference assumed suppressed).
* UL SINR (eq. 12): ``γ_l = p_l|w_lᴴ h_l|² / w_lᴴ(Σ_{l'≠l} p_l' h_l' h_l'ᴴ + G Q Gᴴ + σ² I) w_l``
  with ``Q = Σ_k v_k v_kᴴ``.
* Sum rate (eq. 13, the reward "Raw R."): ``C = Σ_l log2(1+γ_l) + Σ_k log2(1+γ_k)`` bit/s/Hz.
* Bound (spec "Designed reward"): ``R' = waterfill(P_max; ‖g_k‖²/σ²) + Σ_l log2(1+P_l‖h_l‖²/σ²)``,
  ``R' ≥ C`` for every feasible action; it depends only on the state.

Units. The noise "−97 dBm/Hz" of Table I is a total power ``σ² = −97 dBm`` per receiver and
``|β_f|²/σ² = clutter_inr_db`` (spec). Internally everything is **noise-normalized**: the state
holds ``g̃ = g/σ``, ``h̃ = h/σ`` (``|g̃|²`` is the SNR per watt) and the env holds ``G̃ = G/σ``;
powers stay in watts, ``V`` in √W. Then eq. 11/12 have noise 1 and all numbers are O(1).

Geometry and mobility [assumption, config values]. Users are dropped uniformly (in area) in the
annulus ``min_dist_m ≤ r ≤ cell_radius_m`` around the BS; ``d = √(r² + bs_height_m²)``; the
angle θ of a user is its azimuth from the arrays' broadside (the +x axis): ``θ = atan2(y, x)``,
so ``sin θ = y/r`` (elevation is ignored, as in the paper's 2-D angle model; a user directly
below the BS has θ = 0). Clutter angles use the same convention. Between steps every user moves
``speed_mps·step_s`` metres in a fresh uniformly random direction (random walk); a step that
would leave the annulus is not taken (the user stays for that step). This is a Metropolis chain
with a symmetric proposal, so the uniform drop is its stationary distribution. Every
``episode_steps`` steps the episode is truncated; a new episode starts with a fresh drop
(``reset`` or :meth:`redrop`).
The next state never depends on the action (a contextual bandit per step): agents that use a
discount γ = 1 should treat every step as terminal.

Optional extended model (``extended_interference=True``, off by default): DL users also see
the other DL users' beams and the UL users' transmissions,
``γ_k = |g_kᴴ v_k|² / (Σ_{j≠k}|g_kᴴ v_j|² + Σ_l p_l c_kl + σ²)`` with ground-to-ground LoS gains
``c_kl = ρ0 max(d_kl, ue_min_dist_m)^−α``. ``R'`` stays an upper bound.

Action (``float[B, action_dim]`` in [−1, 1]; values outside are clipped, non-finite values or a
wrong shape raise ``ValueError`` naming ``action``). Blocks, in this order (``action_slices``):

==========  ===========  =====================================================================
block       size         meaning
==========  ===========  =====================================================================
v_re, v_im  K·N_t each   Re/Im of Ṽ; entry ``k·N_t + n`` is element ``n`` of user ``k``'s beam
p_ul        L            ``p_l = P_l (a_l + 1)/2``
w_re, w_im  L·N_r each   Re/Im of w̃; entry ``l·N_r + n`` (absent if ``mmse_receiver``)
v_level     1            ``a_P`` (only ``power_form="direction_level"``)
==========  ===========  =====================================================================

``action_dim`` = 124 (paper layout) / 76 (MMSE receivers) with ``power_form="projection"``, and
one more (125 / 77) with the default ``"direction_level"``, whose level is the last entry so the
other offsets do not change. DL power: ``"direction_level"``: ``V = √(P_max (a_P+1)/2)·Ṽ/‖Ṽ‖_F``
(``V = 0`` if ``Ṽ = 0``); ``"projection"``: ``V = Ṽ·min(1, √P_max/‖Ṽ‖_F)`` (Ṽ in √W; almost always
at full power). Receive beamformers ``w_l = w̃_l/‖w̃_l‖`` (``w̃_l = 0`` gives ``e_1``); with
``mmse_receiver=True`` they are the closed-form MMSE receivers ``w_l ∝ R_l⁻¹ h_l`` for the
chosen ``V, p`` (:func:`mmse_receiver`). Every mapped action is feasible.

Observation (``float32[B, obs_dim]``; scaled features, never raw channel entries): per user, DL
users first then UL users, ``[x/R, y/R, log10(‖g̃‖²), cos(π n sin θ), sin(π n sin θ) for
n = 1…N−1]`` with ``N = N_t`` (DL) or ``N_r`` (UL); ``log10(‖g̃‖²)`` is the log10 SNR per watt
(≈ −0.9 at the cell edge, ≈ 0.9 below the BS with Table I values and the array gain of 6)
and the phase features are
the normalized steering vector without its constant first element. 13 features per user with
6 antennas: ``obs_dim = 130`` for Table I.

Randomness. Copy ``b`` of ``reset(seed, batch, first_copy)`` draws from a counter-based stream
keyed by ``(seed, first_copy + b)`` only, so a batch equals the same copies run one by one, and
the same seed gives identical numbers.

Genie policies (MRT, the sum-rate optimizer) declare ``requires={"global_csi"}`` and receive
the current :class:`FullDuplexState` as ``info["csi"]`` (:meth:`FullDuplexEnv.policy_view`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from radiorl.envs.base import PolicyView, check_array, check_number
from radiorl.phy.array import clutter_channel, ula_steering
from radiorl.phy.channel import db_to_linear, dbm_to_watt

__all__ = [
    "FullDuplexParams", "FullDuplexState", "FullDuplexEnv", "FullDuplexGymEnv",
    "downlink_snr", "downlink_sinr_extended", "uplink_sinr", "uplink_covariances",
    "mmse_receiver", "waterfill", "rates_from_beamformers", "rate_upper_bound",
    "los_channels",
]

POWER_FORMS = ("direction_level", "projection")


# =============================================================================== pure functions
def downlink_snr(g: np.ndarray, V: np.ndarray, noise: float = 1.0) -> np.ndarray:
    """Downlink SNR of eq. 11, ``γ_k = |g_kᴴ v_k|² / σ²``.

    Args:
        g: ``complex[..., K, N_t]`` DL channels (row ``k`` is ``g_k``).
        V: ``complex[..., N_t, K]`` beamformers (column ``k`` is ``v_k``, √W).
        noise: ``σ²`` in the units of ``|g|²·W`` (1 in noise-normalized units).

    Returns:
        ``float[..., K]``.

    Example:
        >>> g = np.array([[1.0 + 0j, 1j]]) / np.sqrt(2)          # K = 1, N_t = 2
        >>> v = np.array([[1.0 + 0j], [1j]])                      # ‖v‖² = 2 W, matched
        >>> downlink_snr(g, v, noise=0.5)
        array([4.])
    """
    return np.abs(np.einsum("...kn,...nk->...k", g.conj(), V)) ** 2 / noise


def downlink_sinr_extended(g: np.ndarray, V: np.ndarray, c: np.ndarray, p: np.ndarray,
                           noise: float = 1.0) -> np.ndarray:
    """Downlink SINR of the extended model:
    ``|g_kᴴ v_k|² / (Σ_{j≠k}|g_kᴴ v_j|² + Σ_l c_kl p_l + σ²)``.

    Args: ``g [..., K, N_t]``, ``V [..., N_t, K]``, ``c [..., K, L]`` UL→DL user power gains,
    ``p [..., L]`` UL powers (W), ``noise`` σ². Returns ``float[..., K]``.

    Example:
        >>> g = np.eye(2, dtype=complex)                           # user k sees antenna k
        >>> V = np.array([[1.0, 1.0], [0.0, 1.0]], complex)       # beam 1 leaks into user 0
        >>> downlink_sinr_extended(g, V, c=np.array([[0.5], [0.0]]), p=np.array([2.0]))
        array([0.33333333, 1.        ])
    """
    M = np.abs(g.conj() @ V) ** 2                                   # [..., K(user), K(beam)]
    sig = np.diagonal(M, axis1=-2, axis2=-1)
    ul = np.einsum("...kl,...l->...k", c, p)
    return sig / (M.sum(-1) - sig + ul + noise)


def uplink_covariances(h: np.ndarray, p: np.ndarray, G: np.ndarray, V: np.ndarray,
                       noise: float = 1.0) -> np.ndarray:
    """Interference-plus-noise covariance of every UL user,
    ``R_l = Σ_{l'≠l} p_l' h_l' h_l'ᴴ + G Q Gᴴ + σ² I`` with ``Q = V Vᴴ`` (eq. 12's denominator).

    Args: ``h [..., L, N_r]``, ``p [..., L]`` (W), ``G [..., N_r, N_t]``, ``V [..., N_t, K]``.
    Returns: ``complex[..., L, N_r, N_r]`` (Hermitian, ≥ σ² I).
    """
    GV = G @ V                                                       # [..., N_r, K]
    clutter = GV @ np.swapaxes(GV, -1, -2).conj()                     # G Q Gᴴ
    hh = h[..., :, :, None] * h[..., :, None, :].conj()               # [..., L, N_r, N_r]
    ph = p[..., :, None, None] * hh
    total = ph.sum(-3) + clutter + noise * np.eye(h.shape[-1])
    return total[..., None, :, :] - ph


def uplink_sinr(h: np.ndarray, p: np.ndarray, W: np.ndarray, G: np.ndarray, V: np.ndarray,
                noise: float = 1.0) -> np.ndarray:
    """Uplink SINR of eq. 12 for given receive beamformers.

    Args:
        h: ``complex[..., L, N_r]`` UL channels (row ``l`` is ``h_l``).
        p: ``float[..., L]`` UL powers (W).
        W: ``complex[..., N_r, L]`` receive beamformers (column ``l`` is ``w_l``, any norm).
        G: ``complex[..., N_r, N_t]`` clutter channel. V: ``complex[..., N_t, K]`` DL beams.
        noise: σ_r².

    Returns:
        ``float[..., L]``:
        ``p_l|w_lᴴh_l|² / (Σ_{l'≠l} p_l'|w_lᴴh_l'|² + Σ_k|w_lᴴ G v_k|² + σ²‖w_l‖²)``.

    Example (two orthogonal users, no clutter, matched receivers):
        >>> from radiorl.phy.array import ula_steering
        >>> h = ula_steering(2, np.array([0.0, np.pi / 2]))       # sin θ = 0 and 1: orthogonal
        >>> uplink_sinr(h, np.array([1.0, 3.0]), h.T, np.zeros((2, 1)), np.zeros((1, 1)))
        array([1., 3.])
    """
    WH = np.swapaxes(W, -1, -2).conj()                                # [..., L(w), N_r]
    X = np.abs(WH @ np.swapaxes(h, -1, -2)) ** 2                       # [..., L(w), L(h)]
    sig = np.diagonal(X, axis1=-2, axis2=-1) * p
    inter = (X * p[..., None, :]).sum(-1) - sig
    clutter = (np.abs(WH @ (G @ V)) ** 2).sum(-1)                      # Σ_k |w_lᴴ G v_k|²
    wn = (np.abs(W) ** 2).sum(-2)
    return sig / (inter + clutter + noise * wn)


def mmse_receiver(h: np.ndarray, p: np.ndarray, G: np.ndarray, V: np.ndarray,
                  noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form MMSE (max-SINR) receive beamformers ``w_l = R_l⁻¹h_l / ‖R_l⁻¹h_l‖`` and
    their SINR ``γ_l = p_l h_lᴴ R_l⁻¹ h_l`` (the maximum of eq. 12 over ``w_l``).

    Args: as :func:`uplink_covariances`. Returns ``(W complex[..., N_r, L] unit-norm columns,
    sinr float[..., L])``.

    Example (one user, no clutter: MMSE = matched filter, SINR = p‖h‖²/σ²):
        >>> h = np.array([[3.0 + 0j, 4.0j]])
        >>> W, s = mmse_receiver(h, np.array([2.0]), np.zeros((2, 1)), np.zeros((1, 1)))
        >>> np.round(W[:, 0], 3), s
        (array([0.6+0.j , 0. +0.8j]), array([50.]))
    """
    R = uplink_covariances(h, p, G, V, noise)
    x = np.linalg.solve(R, h[..., None])[..., 0]                      # [..., L, N_r] R_l⁻¹ h_l
    q = np.einsum("...ln,...ln->...l", h.conj(), x).real
    nrm = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.swapaxes(x / nrm, -1, -2), p * q


def waterfill(gains: np.ndarray, total_power) -> np.ndarray:
    """Water-filling: the powers maximizing ``Σ_k log2(1 + a_k P_k)`` s.t. ``Σ_k P_k = P``,
    ``P_k ≥ 0``: ``P_k = max(0, μ − 1/a_k)`` with the water level μ set by the budget.

    Args:
        gains: ``float[..., K]`` ``a_k ≥ 0`` (SNR per watt; 0 never gets power).
        total_power: ``P > 0`` (W), scalar or ``[...]``.

    Returns:
        ``float[..., K]`` powers summing to ``P`` (all zero if every gain is 0).

    Example:
        >>> waterfill(np.array([1.0, 0.5, 0.01]), 2.0)             # μ = 2.5: 1.5 + 0.5 + 0
        array([1.5, 0.5, 0. ])
    """
    a = np.asarray(gains, dtype=float)
    P = np.broadcast_to(np.asarray(total_power, dtype=float), a.shape[:-1])[..., None]
    with np.errstate(divide="ignore"):
        inv = np.where(a > 0, 1.0 / np.where(a > 0, a, 1.0), np.inf)
    s = np.sort(inv, axis=-1)
    m = np.arange(1, a.shape[-1] + 1)
    finite = np.isfinite(s)
    csum = np.cumsum(np.where(finite, s, 0.0), axis=-1)
    mu = (P + csum) / m                                               # level if m users active
    ok = finite & (mu > s)                                            # user m−1 gets power > 0
    n_act = ok.sum(-1, keepdims=True)                                 # the ok set is a prefix
    level = np.take_along_axis(mu, np.maximum(n_act - 1, 0), axis=-1)
    out = np.maximum(level - inv, 0.0)
    return np.where(n_act > 0, out, 0.0)


def rates_from_beamformers(g, h, G, V, p, W, c=None, noise: float = 1.0):
    """Per-user rates of eq. 13 for given ``(V, p, W)``.

    Args: ``g [..., K, N_t]``, ``h [..., L, N_r]``, ``G [N_r, N_t]``, ``V [..., N_t, K]``,
    ``p [..., L]``, ``W [..., N_r, L]``; ``c [..., K, L]`` selects the extended DL model
    (``None``: eq. 11). Returns ``(rate_dl [..., K], rate_ul [..., L], snr_dl, sinr_ul)`` in
    bit/s/Hz and linear SINR.
    """
    snr = downlink_snr(g, V, noise) if c is None else downlink_sinr_extended(g, V, c, p, noise)
    sinr = uplink_sinr(h, p, W, G, V, noise)
    return np.log2(1.0 + snr), np.log2(1.0 + sinr), snr, sinr


def rate_upper_bound(g: np.ndarray, h: np.ndarray, p_max, p_ul_max, noise: float = 1.0):
    """Spec's ``R' = waterfill(P_max; ‖g_k‖²/σ²) + Σ_l log2(1 + P_l‖h_l‖²/σ²)`` (bit/s/Hz).

    Args: ``g [..., K, N_t]``, ``h [..., L, N_r]``, ``p_max`` (W), ``p_ul_max`` (W, scalar or
    ``[L]``). Returns ``float[...]``.

    Example:
        >>> g = np.array([[1.0 + 0j], [np.sqrt(0.5)]]); h = np.array([[np.sqrt(3.0) + 0j]])
        >>> round(float(rate_upper_bound(g, h, 2.0, 1.0)), 6)      # log2(2.5)+log2(1.25)+2
        3.643856
    """
    a = (np.abs(g) ** 2).sum(-1) / noise
    pk = waterfill(a, p_max)
    ul = np.log2(1.0 + np.asarray(p_ul_max) * (np.abs(h) ** 2).sum(-1) / noise).sum(-1)
    return np.log2(1.0 + a * pk).sum(-1) + ul


def los_channels(xy: np.ndarray, n_antennas: int, rho0: float, alpha: float,
                 bs_height_m: float, noise_w: float = 1.0, array_gain: bool = False):
    """LoS channels ``√(G ρ0 d^−α / σ²)·a_N(θ)`` of users at horizontal positions ``xy``,
    with the array gain ``G = N`` (``array_gain``) or ``G = 1``.

    Args:
        xy: ``float[..., U, 2]`` user positions (m), BS at the origin.
        n_antennas: array size ``N``. rho0: power gain at 1 m. alpha: path-loss exponent.
        bs_height_m: BS height (m); ``d = √(x² + y² + height²)``.
        noise_w: σ² (W); 1 gives unnormalized channels.
        array_gain: include the factor ``N`` in the power gain.

    Returns:
        ``(channel complex[..., U, N], gain float[..., U] = G ρ0 d^−α/σ², theta float[..., U])``.

    Example (a user right below a 100 m BS, Table I values, σ² = −97 dBm):
        >>> ch, gain, th = los_channels(np.zeros((1, 2)), 6, 4.16e-6, 3.6, 100.0, 2.0e-13)
        >>> round(float(gain[0]), 4), round(float((np.abs(ch) ** 2).sum()), 4)
        (1.3124, 1.3124)
    """
    xy = np.asarray(xy, dtype=float)
    r2 = (xy ** 2).sum(-1)
    d = np.sqrt(r2 + bs_height_m ** 2)
    gain = (n_antennas if array_gain else 1) * rho0 * d ** (-alpha) / noise_w
    theta = np.arctan2(xy[..., 1], xy[..., 0])
    return np.sqrt(gain)[..., None] * ula_steering(n_antennas, theta), gain, theta


# =============================================================================== randomness
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finalizer on ``uint64`` arrays (wrapping arithmetic)."""
    z = np.asarray(z, dtype=np.uint64)
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def _copy_keys(seed: int, first_copy: int, batch: int) -> np.ndarray:
    idx = np.arange(first_copy, first_copy + batch, dtype=np.uint64)
    s = _mix64(np.array([seed], dtype=np.uint64))
    return _mix64(s ^ _mix64((idx + np.uint64(1)) * _GOLDEN))


def _uniform(key: np.ndarray, counter: np.ndarray, n: int) -> np.ndarray:
    """``float64[B, n]`` uniforms in [0, 1) from the stream of each copy at ``counter[B]``."""
    base = _mix64(key ^ _mix64(counter * _GOLDEN + np.uint64(0x632BE59BD9B4E019)))
    z = _mix64(base[:, None] + (np.arange(1, n + 1, dtype=np.uint64) * _GOLDEN)[None, :])
    return (z >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)


def _direction(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors along the last axis of ``x`` and the norms, without under/overflow
    (zero vectors give zeros and norm 0)."""
    m = np.maximum(np.abs(x.real), np.abs(x.imag)).max(-1, keepdims=True)
    safe = np.where(m > 0, m, 1.0)
    u = x.real / safe + 1j * (x.imag / safe)         # real divisions: exact for subnormals
    n = np.linalg.norm(u, axis=-1, keepdims=True)
    u = np.where(m > 0, u / np.where(n > 0, n, 1.0), 0.0)
    return u, (n * m)[..., 0]


# =============================================================================== params, state
@dataclass(frozen=True)
class FullDuplexParams:
    """Static parameters (defaults: the paper's Table I and Sec. V-A; spec ``full-duplex.md``).

    Attributes:
        n_tx, n_rx: ``N_t``, ``N_r`` antennas (1…256). n_dl, n_ul: ``K``, ``L`` users (1…256).
        p_max_w: BS power budget ``P_max`` (W). p_ul_max_w: UL user budget ``P_l`` (W).
        noise_dbm: ``σ_k² = σ_r²``, total noise power per receiver (dBm) [assumption: Table I's
            "dBm/Hz" read as a total power].
        clutter_angles_deg: ``θ_f`` (degrees in [−90, 90]); ``()`` for no clutter.
        clutter_inr_db: ``|β_f|²/σ_r²`` (dB) of every interferer.
        clutter_phases_deg: phases of ``β_f`` (degrees; ``None`` = all 0) [assumption: the paper
            gives only |β_f|].
        rho0: channel power gain at 1 m. alpha: path-loss exponent.
        array_gain: ``True``: a user's channel carries the array gain, ``‖g_k‖² = N_t ρ0
            d^−α``, ``‖h_l‖² = N_r ρ0 d^−α`` (``√N·a_N(θ)``, the unnormalized steering vector),
            as the spec reads Table I ("|channel|² = ρ0 d^−α times the array gain"): a 6-element
            beam towards a user gains 6x (7.8 dB). ``False``: the paper's formula taken with its
            unit-norm ``a_N(θ)`` (``‖g_k‖² = ρ0 d^−α``, no beamforming gain; every rate is then
            lower than the paper's curves: R' ≈ 2.0 bit/s/Hz on average against the paper's
            ≈ 3.5 for its worst agent). The clutter ``G`` uses the unit-norm vectors either way
            (its strength is defined by ``|β_f|²/σ_r²``).
        cell_radius_m: users' horizontal distance ≤ this. bs_height_m: BS height.
        min_dist_m: users' horizontal distance ≥ this [assumption].
        speed_mps, step_s: users move ``speed_mps·step_s`` m per step (random walk)
            [assumption]; at most ``cell_radius_m − min_dist_m``. A step leaving the annulus
            is not taken.
        episode_steps: steps per episode (a fresh drop per episode) [assumption].
        mmse_receiver: closed-form MMSE receive beamformers instead of actions (D 124 → 76).
        power_form: ``"direction_level"`` or ``"projection"`` (module docstring).
        extended_interference: the spec's optional extended DL model (module docstring).
        ue_min_dist_m: minimum UL→DL user distance of the extended model (m) [assumption].
        name: scenario name.
    """

    n_tx: int = 6
    n_rx: int = 6
    n_dl: int = 6
    n_ul: int = 4
    p_max_w: float = 3.0
    p_ul_max_w: float = 1.0
    noise_dbm: float = -97.0
    clutter_angles_deg: tuple = (-50.0, 20.0)
    clutter_inr_db: float = 20.0
    clutter_phases_deg: tuple | None = None
    rho0: float = 4.16e-6
    alpha: float = 3.6
    array_gain: bool = True
    cell_radius_m: float = 300.0
    bs_height_m: float = 100.0
    min_dist_m: float = 0.0
    speed_mps: float = 3.0
    step_s: float = 1.0
    episode_steps: int = 100
    mmse_receiver: bool = False
    power_form: str = "direction_level"
    extended_interference: bool = False
    ue_min_dist_m: float = 10.0
    name: str = "full_duplex"

    def __post_init__(self):
        for nm in ("n_tx", "n_rx", "n_dl", "n_ul"):
            check_number(nm, getattr(self, nm), low=1, high=256, integer=True)
        for nm in ("p_max_w", "p_ul_max_w", "rho0", "cell_radius_m", "step_s"):
            check_number(nm, getattr(self, nm), low=0, low_open=True)
        check_number("noise_dbm", self.noise_dbm, low=-300.0, high=100.0)
        check_number("clutter_inr_db", self.clutter_inr_db, low=-300.0, high=300.0)
        check_number("alpha", self.alpha, low=0, high=10.0, low_open=True)
        check_number("bs_height_m", self.bs_height_m, low=0)
        check_number("min_dist_m", self.min_dist_m, low=0, high=self.cell_radius_m)
        if self.min_dist_m >= self.cell_radius_m:
            raise ValueError(f"min_dist_m must be in [0, cell_radius_m={self.cell_radius_m}), "
                             f"got {self.min_dist_m!r}")
        if self.bs_height_m == 0 and self.min_dist_m == 0:
            raise ValueError("bs_height_m must be > 0 when min_dist_m = 0 (a user at the BS would "
                             "have an infinite channel gain)")
        check_number("speed_mps", self.speed_mps, low=0)
        move = self.speed_mps * self.step_s
        if move > self.cell_radius_m - self.min_dist_m:
            raise ValueError(f"speed_mps·step_s must be in [0, cell_radius_m − min_dist_m = "
                             f"{self.cell_radius_m - self.min_dist_m}] m, got {move!r}")
        check_number("episode_steps", self.episode_steps, low=1, integer=True)
        check_number("ue_min_dist_m", self.ue_min_dist_m, low=0, low_open=True)
        ang = np.atleast_1d(np.asarray(self.clutter_angles_deg, dtype=float))
        if ang.ndim != 1:
            raise ValueError(f"clutter_angles_deg must be a flat tuple of angles, got "
                             f"{self.clutter_angles_deg!r}")
        check_array("clutter_angles_deg", ang, low=-90.0, high=90.0)
        if self.clutter_phases_deg is not None:
            check_array("clutter_phases_deg", np.asarray(self.clutter_phases_deg, float),
                        shape=ang.shape)
        if self.power_form not in POWER_FORMS:
            raise ValueError(f"power_form must be one of {list(POWER_FORMS)}, got "
                             f"{self.power_form!r}")
        for nm in ("mmse_receiver", "extended_interference", "array_gain"):
            if not isinstance(getattr(self, nm), (bool, np.bool_)):
                raise ValueError(f"{nm} must be a bool, got {getattr(self, nm)!r}")

    @property
    def noise_w(self) -> float:
        return float(dbm_to_watt(self.noise_dbm))


@dataclass
class FullDuplexState:
    """State of ``B`` copies (numpy arrays with a leading batch axis).

    Attributes:
        dl_xy: ``float64[B, K, 2]`` DL user positions (m), BS at the origin.
        ul_xy: ``float64[B, L, 2]`` UL user positions (m).
        g: ``complex128[B, K, N_t]`` noise-normalized DL channels ``g_k/σ``.
        h: ``complex128[B, L, N_r]`` noise-normalized UL channels ``h_l/σ``.
        c: ``float64[B, K, L]`` noise-normalized UL→DL user gains (extended model; else 0).
        t: ``int64[B]`` steps since the copy's drop.
        key: ``uint64[B]`` random key of each copy. counter: ``uint64[B]`` draws used.
    """

    dl_xy: np.ndarray
    ul_xy: np.ndarray
    g: np.ndarray
    h: np.ndarray
    c: np.ndarray
    t: np.ndarray
    key: np.ndarray
    counter: np.ndarray
    extra: dict = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return self.g.shape[0]

    def copy(self) -> "FullDuplexState":
        return FullDuplexState(self.dl_xy.copy(), self.ul_xy.copy(), self.g.copy(), self.h.copy(),
                               self.c.copy(), self.t.copy(), self.key.copy(),
                               self.counter.copy(), dict(self.extra))


# =============================================================================== environment
class FullDuplexEnv:
    """Batched full-duplex BS environment (module docstring).

    Attributes: ``params``; ``obs_dim``; ``action_dim``; ``action_slices`` (block name →
    ``slice``); ``G`` (``complex[N_r, N_t]`` noise-normalized clutter channel); ``noise_w``.

    Example:
        >>> env = FullDuplexEnv()
        >>> obs, state = env.reset(seed=0, batch=3)
        >>> obs.shape, env.action_dim
        ((3, 130), 125)
        >>> act = np.zeros((3, env.action_dim))
        >>> obs, reward, term, trunc, info, state = env.step(state, act)
        >>> reward.shape, bool(np.all(info["rate_bound"] >= reward))
        ((3,), True)
    """

    family = "full_duplex"

    def __init__(self, params: FullDuplexParams = FullDuplexParams()):
        if not isinstance(params, FullDuplexParams):
            raise ValueError(f"params must be a FullDuplexParams, got {type(params).__name__}")
        self.params = p = params
        self.noise_w = p.noise_w
        K, L, Nt, Nr = p.n_dl, p.n_ul, p.n_tx, p.n_rx
        ang = np.deg2rad(np.atleast_1d(np.asarray(p.clutter_angles_deg, dtype=float)))
        ph = np.zeros_like(ang) if p.clutter_phases_deg is None else \
            np.deg2rad(np.asarray(p.clutter_phases_deg, dtype=float))
        beta = np.sqrt(db_to_linear(p.clutter_inr_db)) * np.exp(1j * ph)   # |β|/σ
        self.G = clutter_channel(Nr, Nt, ang, beta)
        sizes = [("v_re", K * Nt), ("v_im", K * Nt), ("p_ul", L)]
        if not p.mmse_receiver:
            sizes += [("w_re", L * Nr), ("w_im", L * Nr)]
        if p.power_form == "direction_level":
            sizes += [("v_level", 1)]
        self.action_slices, o = {}, 0
        for nm, n in sizes:
            self.action_slices[nm] = slice(o, o + n)
            o += n
        self.action_dim = o
        self.features_per_dl = 3 + 2 * (Nt - 1)
        self.features_per_ul = 3 + 2 * (Nr - 1)
        self.obs_dim = K * self.features_per_dl + L * self.features_per_ul
        self._p_ul_max = np.full(L, p.p_ul_max_w)

    # ------------------------------------------------------------------ drops and dynamics
    def reset(self, seed: int, batch: int = 1, first_copy: int = 0):
        """Fresh drop of ``batch`` copies. Copy ``b`` uses the random stream of
        ``(seed, first_copy + b)``, so ``reset(s, B)`` equals ``B`` runs of
        ``reset(s, 1, first_copy=b)``. Returns ``(obs float32[B, obs_dim], state)``."""
        seed = check_number("seed", seed, low=0, high=2 ** 63 - 1, integer=True)
        batch = check_number("batch", batch, low=1, integer=True)
        first_copy = check_number("first_copy", first_copy, low=0, high=2 ** 62, integer=True)
        p = self.params
        key = _copy_keys(seed, first_copy, batch)
        z2 = lambda n: np.zeros((batch, n, 2))  # noqa: E731
        state = FullDuplexState(z2(p.n_dl), z2(p.n_ul), None, None, None,
                                np.zeros(batch, np.int64), key, np.zeros(batch, np.uint64))
        state.dl_xy, state.ul_xy = self._drop(state, np.ones(batch, bool))
        self._update_channels(state)
        return self.observe(state), state

    def redrop(self, state: FullDuplexState, copies) -> FullDuplexState:
        """New episode for the selected copies (``bool[B]``): fresh positions from each copy's
        own stream, step counter 0. Returns a new state (the input is not modified)."""
        copies = np.asarray(copies, bool)
        if copies.shape != (state.batch,):
            raise ValueError(f"copies must have shape ({state.batch},), got {copies.shape}")
        s = state.copy()
        dl, ul = self._drop(s, copies)
        s.dl_xy = np.where(copies[:, None, None], dl, s.dl_xy)
        s.ul_xy = np.where(copies[:, None, None], ul, s.ul_xy)
        s.t = np.where(copies, 0, s.t)
        self._update_channels(s)
        return s

    def _draw(self, state: FullDuplexState, n: int) -> np.ndarray:
        u = _uniform(state.key, state.counter, n)
        state.counter = state.counter + np.uint64(1)
        return u

    def _drop(self, state: FullDuplexState, copies):
        """Uniform positions in the annulus (one draw for every copy, so streams stay aligned;
        ``copies`` is applied by the caller)."""
        p = self.params
        K, L = p.n_dl, p.n_ul
        u = self._draw(state, 2 * (K + L))
        r0, r1 = p.min_dist_m, p.cell_radius_m
        r = np.sqrt(r0 ** 2 + u[:, :K + L] * (r1 ** 2 - r0 ** 2))
        phi = 2.0 * np.pi * u[:, K + L:]
        xy = np.stack([r * np.cos(phi), r * np.sin(phi)], axis=-1)
        return xy[:, :K], xy[:, K:]

    def _move(self, state: FullDuplexState):
        """Random-walk step of every user; a step that would leave the annulus is not taken
        (Metropolis with a symmetric proposal: the uniform drop stays the stationary law)."""
        p = self.params
        K, L = p.n_dl, p.n_ul
        step = p.speed_mps * p.step_s
        u = self._draw(state, K + L)
        phi = 2.0 * np.pi * u
        xy = np.concatenate([state.dl_xy, state.ul_xy], axis=1)
        new = xy + step * np.stack([np.cos(phi), np.sin(phi)], axis=-1)
        r = np.linalg.norm(new, axis=-1)
        inside = (r <= p.cell_radius_m) & (r >= p.min_dist_m)
        xy = np.where(inside[..., None], new, xy)
        return xy[:, :K], xy[:, K:]

    def _update_channels(self, state: FullDuplexState) -> None:
        p = self.params
        state.g, _, _ = los_channels(state.dl_xy, p.n_tx, p.rho0, p.alpha, p.bs_height_m,
                                     self.noise_w, p.array_gain)
        state.h, _, _ = los_channels(state.ul_xy, p.n_rx, p.rho0, p.alpha, p.bs_height_m,
                                     self.noise_w, p.array_gain)
        if p.extended_interference:
            d = np.linalg.norm(state.dl_xy[:, :, None, :] - state.ul_xy[:, None, :, :], axis=-1)
            state.c = p.rho0 * np.maximum(d, p.ue_min_dist_m) ** (-p.alpha) / self.noise_w
        else:
            state.c = np.zeros((state.batch, p.n_dl, p.n_ul))

    def state_from_positions(self, dl_xy, ul_xy, seed: int = 0) -> FullDuplexState:
        """A state with users at given positions (``float[B, K, 2]``, ``float[B, L, 2]``, m);
        for hand-computed cases and scripted scenarios. Positions are not checked against the
        cell (mobility assumes they are inside)."""
        p = self.params
        dl = check_array("dl_xy", dl_xy)
        B = dl.shape[0] if dl.ndim == 3 else -1
        dl = check_array("dl_xy", dl, shape=(B, p.n_dl, 2))
        ul = check_array("ul_xy", ul_xy, shape=(B, p.n_ul, 2))
        s = FullDuplexState(dl.astype(float), ul.astype(float), None, None, None,
                            np.zeros(B, np.int64), _copy_keys(seed, 0, B),
                            np.zeros(B, np.uint64))
        self._update_channels(s)
        return s

    # ------------------------------------------------------------------ actions and rates
    def check_action(self, state: FullDuplexState, action) -> np.ndarray:
        """Validate (shape ``[B, action_dim]``, finite) and clip to [−1, 1]."""
        a = np.asarray(action)
        if a.shape != (state.batch, self.action_dim):
            raise ValueError(f"action must have shape (B, action_dim) = "
                             f"{(state.batch, self.action_dim)}, got {a.shape}")
        if not np.issubdtype(a.dtype, np.number) or np.iscomplexobj(a):
            raise ValueError(f"action must be real numbers, got dtype {a.dtype}")
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError("action must be finite (no NaN/inf)")
        return np.clip(a, -1.0, 1.0)

    def map_action(self, state: FullDuplexState, action):
        """Action → ``(V complex[B, N_t, K] (√W), p float[B, L] (W), W complex[B, N_r, L])``;
        always feasible: ``Σ‖v_k‖² ≤ P_max``, ``0 ≤ p_l ≤ P_l``, ``‖w_l‖ = 1``."""
        a = self.check_action(state, action)
        P = self.params
        B, K, L, Nt, Nr = a.shape[0], P.n_dl, P.n_ul, P.n_tx, P.n_rx
        sl = self.action_slices
        U, nrm = _direction(a[:, sl["v_re"]] + 1j * a[:, sl["v_im"]])   # Ṽ/‖Ṽ‖_F, user-major
        U = U.reshape(B, K, Nt).transpose(0, 2, 1)
        if P.power_form == "direction_level":
            level = (a[:, sl["v_level"]][:, 0] + 1.0) / 2.0
            V = np.sqrt(P.p_max_w * level)[:, None, None] * U
        else:
            V = U * np.minimum(nrm, np.sqrt(P.p_max_w))[:, None, None]
        p = self._p_ul_max * (a[:, sl["p_ul"]] + 1.0) / 2.0
        if P.mmse_receiver:
            W, _ = mmse_receiver(state.h, p, self.G, V)
        else:
            Wt = (a[:, sl["w_re"]] + 1j * a[:, sl["w_im"]]).reshape(B, L, Nr)
            Wd, wn = _direction(Wt)
            e1 = np.zeros(Nr, complex)
            e1[0] = 1.0
            W = np.where(wn[..., None] > 0, Wd, e1).transpose(0, 2, 1)
        return V, p, W

    def encode_action(self, V, p, W=None) -> np.ndarray:
        """Inverse of :meth:`map_action`: the action whose mapping is ``(V, p, W)``.

        Args: ``V complex[B, N_t, K]`` with ``Σ‖v_k‖² ≤ P_max``; ``p float[B, L]`` in
        ``[0, P_l]``; ``W complex[B, N_r, L]`` (any nonzero norm; ignored and may be ``None``
        with ``mmse_receiver``). Exact, except with ``power_form="projection"`` when an Re/Im
        component of ``V`` exceeds 1 √W below full power (not representable; clipped — the
        env evaluates what the action maps to). Returns ``float[B, action_dim]``."""
        P = self.params
        V = np.asarray(V, complex)
        B = V.shape[0]
        V = check_array("V", V, shape=(B, P.n_tx, P.n_dl))
        p = check_array("p", p, shape=(B, P.n_ul), low=-1e-12,
                        high=P.p_ul_max_w * (1 + 1e-9))
        pw = (np.abs(V) ** 2).sum((1, 2))
        if np.any(pw > P.p_max_w * (1 + 1e-9)):
            raise ValueError(f"V must satisfy Σ‖v_k‖² ≤ P_max = {P.p_max_w} W, got max "
                             f"{pw.max():.6g} W")
        a = np.zeros((B, self.action_dim))
        sl = self.action_slices
        Vk = V.transpose(0, 2, 1).reshape(B, -1)                    # user-major
        m = np.maximum(np.abs(Vk.real), np.abs(Vk.imag)).max(1, keepdims=True)
        if P.power_form == "direction_level":
            Vd = Vk / np.where(m > 0, m, 1.0)
            a[:, sl["v_level"]] = (2.0 * pw / P.p_max_w - 1.0)[:, None]
        else:
            full = pw >= P.p_max_w * (1 - 1e-9)
            Vd = np.where(full[:, None] & (m > 0), Vk / np.where(m > 0, m, 1.0), Vk)
        a[:, sl["v_re"]], a[:, sl["v_im"]] = Vd.real, Vd.imag
        a[:, sl["p_ul"]] = 2.0 * p / self._p_ul_max - 1.0
        if not P.mmse_receiver:
            if W is None:
                raise ValueError("W is required unless params.mmse_receiver is True")
            W = check_array("W", np.asarray(W, complex), shape=(B, P.n_rx, P.n_ul))
            Wl = W.transpose(0, 2, 1)
            mw = np.maximum(np.abs(Wl.real), np.abs(Wl.imag)).max(-1, keepdims=True)
            if np.any(mw == 0):
                raise ValueError("W must have nonzero columns")
            Wl = (Wl / mw).reshape(B, -1)
            a[:, sl["w_re"]], a[:, sl["w_im"]] = Wl.real, Wl.imag
        return np.clip(a, -1.0, 1.0)

    def rates(self, state: FullDuplexState, action) -> dict:
        """Per-user rates of ``action`` on the current channels (no state change): dict with
        ``rate_dl [B, K]``, ``rate_ul [B, L]`` (bit/s/Hz), ``snr_dl``, ``sinr_ul`` (linear),
        ``sum_rate [B]``, ``V``, ``p``, ``W``."""
        V, p, W = self.map_action(state, action)
        c = state.c if self.params.extended_interference else None
        rdl, rul, snr, sinr = rates_from_beamformers(state.g, state.h, self.G, V, p, W, c)
        return {"rate_dl": rdl, "rate_ul": rul, "snr_dl": snr, "sinr_ul": sinr,
                "sum_rate": rdl.sum(-1) + rul.sum(-1), "V": V, "p": p, "W": W}

    def sum_rate(self, state: FullDuplexState, action) -> np.ndarray:
        """``float[B]`` sum rate C of eq. 13 (bit/s/Hz) for the current channels."""
        return self.rates(state, action)["sum_rate"]

    def rate_bound(self, state: FullDuplexState) -> np.ndarray:
        """``float[B]`` the spec's ``R'`` (bit/s/Hz); depends only on the state."""
        p = self.params
        return rate_upper_bound(state.g, state.h, p.p_max_w, self._p_ul_max)

    def step(self, state: FullDuplexState, action):
        """Apply ``action`` to the current channels, then move the users.

        Returns ``(obs float32[B, obs_dim], reward float[B] = C (bit/s/Hz), terminated bool[B]
        (always False), truncated bool[B] (t ≥ episode_steps), info, new_state)``; the input
        state is not modified. ``info``: ``sum_rate [B]``, ``rate_bound [B]`` (R' of the
        state the action was applied to), ``rate_dl [B, K]``, ``rate_ul [B, L]``,
        ``snr_dl [B, K]``, ``sinr_ul [B, L]``, ``power_dl_w [B]`` (Σ‖v_k‖²), ``power_ul_w
        [B, L]``, ``step [B]`` (the step index the action was applied at).
        """
        r = self.rates(state, action)
        info = {"sum_rate": r["sum_rate"], "rate_bound": self.rate_bound(state),
                "rate_dl": r["rate_dl"], "rate_ul": r["rate_ul"], "snr_dl": r["snr_dl"],
                "sinr_ul": r["sinr_ul"], "power_dl_w": (np.abs(r["V"]) ** 2).sum((1, 2)),
                "power_ul_w": r["p"], "step": state.t.copy()}
        s = state.copy()
        s.dl_xy, s.ul_xy = self._move(s)
        s.t = s.t + 1
        self._update_channels(s)
        truncated = s.t >= self.params.episode_steps
        terminated = np.zeros(s.batch, bool)
        return self.observe(s), r["sum_rate"].copy(), terminated, truncated, info, s

    # ------------------------------------------------------------------ observations, views
    def observe(self, state: FullDuplexState) -> np.ndarray:
        """``float32[B, obs_dim]`` scaled features (module docstring)."""
        p = self.params
        R = p.cell_radius_m

        def feats(xy, ch, n):
            gain = (np.abs(ch) ** 2).sum(-1)
            s = xy[..., 1] / np.maximum(np.linalg.norm(xy, axis=-1), 1e-300)
            ph = np.pi * s[..., None] * np.arange(1, n)
            return np.concatenate([xy / R, np.log10(gain)[..., None], np.cos(ph), np.sin(ph)],
                                  axis=-1).reshape(xy.shape[0], -1)

        return np.concatenate([feats(state.dl_xy, state.g, p.n_tx),
                               feats(state.ul_xy, state.h, p.n_rx)], axis=1).astype(np.float32)

    def observation_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """``(low, high)`` ``float32[obs_dim]`` bounds of the features of users inside the cell
        (positions and phases in [−1, 1]; log10 SNR per watt between the cell edge and
        ``min_dist_m``, padded by 0.01)."""
        p = self.params

        def lg(r, n):
            return np.log10((n if p.array_gain else 1) * p.rho0
                            * (r * r + p.bs_height_m ** 2) ** (-p.alpha / 2) / self.noise_w)

        lows, highs = [], []
        for n_users, n in ((p.n_dl, p.n_tx), (p.n_ul, p.n_rx)):
            lo_g, hi_g = lg(p.cell_radius_m, n) - 0.01, lg(p.min_dist_m, n) + 0.01
            one_lo = np.r_[-1.0, -1.0, lo_g, -np.ones(2 * (n - 1))]
            one_hi = np.r_[1.0, 1.0, hi_g, np.ones(2 * (n - 1))]
            lows.append(np.tile(one_lo, n_users))
            highs.append(np.tile(one_hi, n_users))
        return (np.concatenate(lows).astype(np.float32), np.concatenate(highs).astype(np.float32))

    def policy_view(self, state: FullDuplexState, requires) -> PolicyView:
        """Information a policy declared: ``global_csi`` → ``info["csi"]`` = the state itself
        (current channels and positions, genie); ``local_obs`` → ``info["obs"]``."""
        req = set(requires)
        data = {}
        if "global_csi" in req:
            data["csi"] = state
        if "local_obs" in req:
            data["obs"] = self.observe(state)
        return PolicyView(data, req)

    def with_params(self, **changes) -> "FullDuplexEnv":
        return FullDuplexEnv(replace(self.params, **changes))


# =============================================================================== gymnasium view
try:
    import gymnasium as gym
    from gymnasium import spaces
except ImportError:  # pragma: no cover - gymnasium is a core dependency
    gym = None


if gym is not None:
    class FullDuplexGymEnv(gym.Env):
        """Gymnasium view of one copy of :class:`FullDuplexEnv`.

        ``observation_space = Box(*env.observation_bounds())``; ``action_space =
        Box(−1, 1, (action_dim,), float32)``. ``reset(seed=s)`` drops copy 0 of seed ``s``;
        ``reset()`` without a seed draws the next drop's seed from the env's ``np_random``.
        ``info`` holds the step's scalars (``sum_rate``, ``rate_bound``) and per-user arrays.
        """

        metadata = {"render_modes": []}

        def __init__(self, params: FullDuplexParams = FullDuplexParams()):
            super().__init__()
            self.env = FullDuplexEnv(params)
            low, high = self.env.observation_bounds()
            self.observation_space = spaces.Box(low, high, dtype=np.float32)
            self.action_space = spaces.Box(-1.0, 1.0, (self.env.action_dim,), np.float32)
            self.state = None

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            drop_seed = int(self.np_random.integers(0, 2 ** 62))
            obs, self.state = self.env.reset(seed=drop_seed, batch=1)
            return obs[0], {"rate_bound": float(self.env.rate_bound(self.state)[0])}

        def step(self, action):
            if self.state is None:
                raise RuntimeError("call reset() before step()")
            a = np.asarray(action, dtype=np.float64).reshape(1, -1)
            obs, rew, term, trunc, info, self.state = self.env.step(self.state, a)
            out = {k: (v[0].item() if np.ndim(v) == 1 else np.asarray(v[0]))
                   for k, v in info.items()}
            return obs[0], float(rew[0]), bool(term[0]), bool(trunc[0]), out

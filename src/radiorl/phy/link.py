"""SINR and Shannon rate for single-antenna downlinks."""
from __future__ import annotations

import math

import numpy as np
from numba import njit


def sinr_downlink(gain_ap_dev: np.ndarray, power_ap: np.ndarray, serving_ap: np.ndarray,
                  noise_w: float) -> np.ndarray:
    """Downlink SINR of every device when each AP transmits with a given power.

    Args:
        gain_ap_dev: ``[..., K, N]`` linear power gain from AP k to device n.
        power_ap: ``[..., K]`` transmit power of AP k in watts (0 when silent).
        serving_ap: ``[N]`` int, the AP each device is served by.
        noise_w: noise power in watts.
    Returns:
        ``[..., N]`` SINR of device n assuming its AP transmits to it with ``power_ap``:
        ``g_{b_n,n} p_{b_n} / (Σ_{j≠b_n} g_{j,n} p_j + σ²)``. Devices whose AP is silent get 0.

    Example: one AP, one device, gain 1e-10, power 0.2 W, noise 1e-13 W -> SINR 200.
    """
    rx = gain_ap_dev * power_ap[..., :, None]              # [..., K, N]
    total = rx.sum(axis=-2)                                 # [..., N]
    n = np.arange(gain_ap_dev.shape[-1])
    signal = rx[..., serving_ap, n]
    return signal / (total - signal + noise_w)


def spectral_efficiency(sinr, cap_db: float | None = 30.0):
    """``log2(1 + min(SINR, cap))`` in bit/s/Hz (cap in dB, ``None`` for no cap).

    Example: at the 30 dB cap, ``log2(1001) = 9.967`` b/s/Hz.
    """
    s = np.asarray(sinr, dtype=float)
    if cap_db is not None:
        s = np.minimum(s, 10.0 ** (cap_db / 10.0))
    return np.log2(1.0 + s)


def shannon_rate(bandwidth_hz, snr, cap_db: float | None = None):
    """Shannon capacity ``B·log2(1+SNR)`` in bit/s. Example: 2 MHz at 0 dB -> 2e6 bit/s."""
    return np.asarray(bandwidth_hz, dtype=float) * spectral_efficiency(snr, cap_db)


def thermal_noise_dbm(bandwidth_hz, noise_figure_db=0.0):
    """Receiver noise power ``−174 dBm/Hz + 10·log10(B) + NF`` in dBm.

    Example: ``thermal_noise_dbm(2e6, 7.0) -> −104.0`` dBm (spec adhoc-mftdma A.3.3).
    """
    return -174.0 + 10.0 * np.log10(np.asarray(bandwidth_hz, dtype=float)) + noise_figure_db


@njit(cache=True)
def threshold_success_prob(mean_snr_db, threshold_db, rayleigh):
    """Probability that one transmission's instantaneous SNR reaches ``threshold_db``.

    With Rayleigh block fading (``|h|² ~ Exp(1)``) this is ``exp(−γ_th / SNR̄)`` (oracle C.6);
    without fading (``rayleigh=False``) it is 1 if ``SNR̄ ≥ γ_th`` else 0. Scalar in, scalar out
    (numba-compiled, also callable from Python).

    Example: ``threshold_success_prob(12.81, 6.0, True) -> 0.812``;
    ``threshold_success_prob(43.87, 6.0, True) -> 0.99984``.
    """
    if not rayleigh:
        return 1.0 if mean_snr_db >= threshold_db else 0.0
    return math.exp(-(10.0 ** (threshold_db / 10.0)) / (10.0 ** (mean_snr_db / 10.0)))

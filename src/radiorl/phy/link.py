"""SINR and Shannon rate for single-antenna downlinks."""
from __future__ import annotations

import numpy as np


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

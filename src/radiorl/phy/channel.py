"""Path loss, unit conversions and Gauss–Markov Rayleigh fading.

All functions are pure and broadcast over numpy arrays.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

SPEED_OF_LIGHT_M_S = 299_792_458.0


def db_to_linear(x_db):
    """Power ratio in dB to linear. ``db_to_linear(30.0) -> 1000.0``."""
    return np.power(10.0, np.asarray(x_db, dtype=float) / 10.0)


def linear_to_db(x):
    """Linear power ratio to dB. ``linear_to_db(1000.0) -> 30.0``."""
    return 10.0 * np.log10(np.asarray(x, dtype=float))


def dbm_to_watt(p_dbm):
    """Power in dBm to watts. ``dbm_to_watt(23.0) -> 0.19953`` W; ``dbm_to_watt(-114) -> 3.98e-15`` W."""
    return np.power(10.0, (np.asarray(p_dbm, dtype=float) - 30.0) / 10.0)


def watt_to_dbm(p_w):
    """Power in watts to dBm. ``watt_to_dbm(1.0) -> 30.0``."""
    return 10.0 * np.log10(np.asarray(p_w, dtype=float)) + 30.0


def lte_macro_pathloss_db(distance_m):
    """3GPP/LTE macro-cell path loss at 2 GHz: ``PL = 128.1 + 37.6·log10(d_km)`` dB.

    Args:
        distance_m: array of distances in metres (> 0), any shape.
    Returns:
        Path loss in dB, same shape.

    Example: ``lte_macro_pathloss_db(500.0) -> 116.78`` dB; ``lte_macro_pathloss_db(35.0) -> 73.36``.
    """
    d = np.asarray(distance_m, dtype=float)
    return 128.1 + 37.6 * np.log10(d / 1000.0)


def fspl_db(distance_m, frequency_hz):
    """Free-space path loss ``20·log10(4π d f / c)`` in dB.

    Args:
        distance_m: distances in metres (> 0), any shape.
        frequency_hz: carrier frequency in Hz, broadcastable with ``distance_m``.
    Returns:
        FSPL in dB. Example: ``fspl_db(1000.0, 2.4e9) -> 100.05`` dB.
    """
    d = np.asarray(distance_m, dtype=float)
    f = np.asarray(frequency_hz, dtype=float)
    return 20.0 * np.log10(4.0 * np.pi * d * f / SPEED_OF_LIGHT_M_S)


@njit(cache=True)
def fspl_db_scalar(distance_m, frequency_hz):
    """:func:`fspl_db` for one distance (numba-compiled, usable inside kernels).

    Example: ``fspl_db_scalar(3600.0, 300e6) -> 93.12`` dB (oracle C.8).
    """
    return 20.0 * math.log10(4.0 * math.pi * distance_m * frequency_hz / SPEED_OF_LIGHT_M_S)


def bessel_j0(x):
    """Bessel function of the first kind, order 0, by Gauss–Legendre quadrature of
    ``J0(x) = (1/π)∫_0^π cos(x sin θ) dθ`` (64 nodes; exact to ~1e-12 for |x| ≤ 50).

    Example: ``bessel_j0(2π·10·0.02) -> 0.6425``.
    """
    x = np.asarray(x, dtype=float)
    nodes, w = np.polynomial.legendre.leggauss(64)
    theta = 0.5 * np.pi * (nodes + 1.0)
    vals = np.cos(x[..., None] * np.sin(theta))
    return 0.5 * (vals * w).sum(axis=-1)


def jakes_rho(doppler_hz: float, slot_s: float) -> float:
    """Lag-one correlation of Jakes fading: ``ρ = J0(2π f_d T)``.

    Example: ``jakes_rho(10.0, 0.02) -> 0.6425`` (10 Hz Doppler, 20 ms slots).
    """
    return float(bessel_j0(2.0 * np.pi * doppler_hz * slot_s))


def rayleigh_init(rng: np.random.Generator, shape, power: float = 1.0) -> np.ndarray:
    """Draw i.i.d. circularly symmetric complex Gaussian amplitudes with ``E|β|² = power``.

    Returns complex128 array of ``shape``.
    """
    scale = np.sqrt(power / 2.0)
    z = rng.standard_normal((2, *np.atleast_1d(shape)))
    return scale * (z[0] + 1j * z[1])


def gauss_markov_step(beta: np.ndarray, innovation: np.ndarray, rho: float) -> np.ndarray:
    """First-order complex Gauss–Markov update ``β_t = ρ β_{t−1} + √(1−ρ²) e_t``.

    Args:
        beta: complex array, previous amplitudes (any shape).
        innovation: complex array, same shape, i.i.d. CN(0, P) with P = E|β|².
        rho: lag-one correlation in [0, 1].
    Returns:
        New amplitudes; ``E|β|²`` is preserved (oracle C.10).
    """
    return rho * beta + np.sqrt(1.0 - rho * rho) * innovation

"""Uniform linear arrays: steering vectors and the clutter (signal-dependent interference)
channel of a full-duplex base station (D2RL paper, Sec. III-A; spec ``full-duplex.md``).

All functions are pure and batched over leading axes. Angles are in **radians** unless a name
says ``_deg``; θ is measured from the array broadside, so ``sin θ`` sets the phase progression
of a half-wavelength-spaced ULA.
"""
from __future__ import annotations

import numpy as np

__all__ = ["ula_steering", "clutter_channel"]


def ula_steering(n_antennas: int, theta_rad) -> np.ndarray:
    """Steering vector of an ``N``-element ULA with half-wavelength spacing,
    ``a_N(θ) = N^(-1/2)·[1, e^{jπ sin θ}, …, e^{jπ(N−1) sin θ}]ᵀ`` (unit norm).

    Args:
        n_antennas: ``N ≥ 1``, number of array elements.
        theta_rad: angles θ from broadside in radians, any shape ``[...]``.

    Returns:
        ``complex128[..., N]``: one steering vector per angle (the element index is the last
        axis).

    Example:
        >>> import numpy as np
        >>> a = ula_steering(4, np.array([0.0, np.pi / 6]))
        >>> a.shape
        (2, 4)
        >>> np.round(a[0], 3)                      # broadside: N^-1/2 · ones
        array([0.5+0.j, 0.5+0.j, 0.5+0.j, 0.5+0.j])
        >>> np.round(a[1], 3)                      # sin 30° = 1/2: phase steps of π/2
        array([ 0.5+0.j ,  0. +0.5j, -0.5+0.j , -0. -0.5j])
        >>> float(np.round(np.linalg.norm(a[1]), 12))
        1.0
    """
    n = int(n_antennas)
    if n < 1 or n != n_antennas:
        raise ValueError(f"n_antennas must be an integer >= 1, got {n_antennas!r}")
    s = np.sin(np.asarray(theta_rad, dtype=float))
    phase = np.pi * s[..., None] * np.arange(n, dtype=float)
    return np.exp(1j * phase) / np.sqrt(n)


def clutter_channel(n_rx: int, n_tx: int, theta_rad, beta) -> np.ndarray:
    """Signal-dependent interference channel ``G = Σ_f β_f a_r(θ_f) a_t(θ_f)ᴴ`` of ``F``
    point interferers (clutter) that reflect the downlink signal back into the receive array.

    Args:
        n_rx: ``N_r``, receive-array elements. n_tx: ``N_t``, transmit-array elements.
        theta_rad: ``[F]`` interferer angles in radians (``F = 0`` gives ``G = 0``).
        beta: ``[F]`` complex amplitudes β_f (any amplitude unit; in noise-normalized units
            ``|β_f|²`` is the interference-to-noise ratio of interferer ``f`` per watt).

    Returns:
        ``complex128[N_r, N_t]``.

    Example:
        >>> import numpy as np
        >>> G = clutter_channel(2, 3, np.array([0.0]), np.array([10.0]))
        >>> np.round(G, 3)                         # 10 · (1/√2)(1/√3) · ones
        array([[4.082+0.j, 4.082+0.j, 4.082+0.j],
               [4.082+0.j, 4.082+0.j, 4.082+0.j]])
    """
    th = np.atleast_1d(np.asarray(theta_rad, dtype=float))
    b = np.atleast_1d(np.asarray(beta, dtype=complex))
    if th.ndim != 1 or b.shape != th.shape:
        raise ValueError(f"theta_rad and beta must both have shape [F], got {th.shape} and "
                         f"{b.shape}")
    ar = ula_steering(n_rx, th)                       # [F, N_r]
    at = ula_steering(n_tx, th)                       # [F, N_t]
    return np.einsum("f,fr,ft->rt", b, ar, at.conj()) if len(th) else \
        np.zeros((int(n_rx), int(n_tx)), complex)

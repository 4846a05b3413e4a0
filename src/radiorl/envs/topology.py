"""Deployments: AP and device positions for cellular networks (seeded, arbitrary K and N).

Distances in metres. All functions are pure given a ``numpy.random.Generator``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Deployment:
    """Positions and association.

    Attributes:
        ap_xy: ``[K, 2]`` AP positions (m).
        device_xy: ``[N, 2]`` device positions (m).
        ap_of_device: ``[N]`` serving AP of each device.
        cell_radius_m: hexagon circumradius R (m).
    """

    ap_xy: np.ndarray
    device_xy: np.ndarray
    ap_of_device: np.ndarray
    cell_radius_m: float

    def distances(self) -> np.ndarray:
        """``[K, N]`` AP-to-device distances (m)."""
        return np.linalg.norm(self.ap_xy[:, None, :] - self.device_xy[None, :, :], axis=-1)


def hex_lattice(n_cells: int, radius_m: float) -> np.ndarray:
    """Centres of ``n_cells`` hexagonal cells (circumradius R, inter-site distance √3·R), filled
    ring by ring around the origin: 1, 7, 19, 37, ... cells complete 0, 1, 2, 3 rings; other
    counts take the nearest lattice points (ties broken by angle, deterministic).

    Example: ``hex_lattice(7, 500.0)[1]`` is at distance √3·500 = 866 m from the origin.
    """
    isd = np.sqrt(3.0) * radius_m
    rings = 0
    while 1 + 3 * rings * (rings + 1) < n_cells:
        rings += 1
    pts = []
    for q in range(-rings, rings + 1):
        for r in range(-rings, rings + 1):
            if abs(q + r) <= rings:
                # axial coordinates, pointy-top orientation
                pts.append((isd * (q + r / 2.0), isd * (r * np.sqrt(3.0) / 2.0)))
    pts = np.array(pts)
    d = np.round(np.linalg.norm(pts, axis=1), 6)
    ang = np.round(np.mod(np.arctan2(pts[:, 1], pts[:, 0]), 2 * np.pi), 9)
    order = np.lexsort((ang, d))
    return pts[order[:n_cells]]


def _in_hexagon(xy: np.ndarray, radius_m: float) -> np.ndarray:
    """Whether points (relative to a centre) lie in a hexagon with circumradius R whose
    orientation tiles with :func:`hex_lattice` (flat sides facing the neighbouring sites)."""
    x, y = np.abs(xy[..., 0]), np.abs(xy[..., 1])
    # hexagon with vertices at angles 30°+60°k: apothem R·√3/2 along x
    a = radius_m * np.sqrt(3.0) / 2.0
    return (x <= a) & (x / np.sqrt(3.0) + y <= radius_m)


def _uniform_in_hexagon(rng, n, radius_m, min_dist_m):
    out = np.empty((0, 2))
    while len(out) < n:
        cand = rng.uniform(-radius_m, radius_m, size=(4 * n + 8, 2))
        keep = _in_hexagon(cand, radius_m) & (np.linalg.norm(cand, axis=1) >= min_dist_m)
        out = np.concatenate([out, cand[keep]])
    return out[:n]


def hexagonal_deployment(rng: np.random.Generator, n_aps: int = 19, devices_per_ap: int = 3,
                         radius_m: float = 500.0, min_dist_m: float = 35.0) -> Deployment:
    """Regular deployment (paper Fig. 6a): APs on the hexagonal lattice, ``devices_per_ap``
    devices uniform in each hexagon at least ``min_dist_m`` from the AP, served by that AP."""
    ap = hex_lattice(n_aps, radius_m)
    dev = np.concatenate([ap[k] + _uniform_in_hexagon(rng, devices_per_ap, radius_m, min_dist_m)
                          for k in range(n_aps)])
    return Deployment(ap, dev, np.repeat(np.arange(n_aps), devices_per_ap), float(radius_m))


def random_deployment(rng: np.random.Generator, n_aps: int = 19, n_devices: int = 57,
                      radius_m: float = 500.0, min_dist_m: float = 35.0,
                      ap_jitter_frac: float = 0.35, min_per_ap: int = 2, max_per_ap: int = 5,
                      max_tries: int = 100_000) -> Deployment:
    """Random deployment (paper Fig. 6b), for any K and N.

    Our choices where the paper is silent (all arguments):

    1. Each AP is moved from its lattice site uniformly within a disc of radius
       ``ap_jitter_frac·R``.
    2. Device counts per AP: every AP gets ``min_per_ap``, and the remaining
       ``N − K·min_per_ap`` devices go one at a time to a uniformly chosen AP that still has
       room (at most ``max_per_ap``).
    3. Each device of AP k is uniform within distance R of AP k, restricted to AP k's Voronoi
       cell (so "associated to the nearest AP" holds by construction) and at least
       ``min_dist_m`` from every AP (rejection sampling per device).
    """
    if not (min_per_ap * n_aps <= n_devices <= max_per_ap * n_aps):
        raise ValueError(f"n_devices must be in [{min_per_ap * n_aps}, {max_per_ap * n_aps}] for "
                         f"{n_aps} APs with {min_per_ap}-{max_per_ap} devices each, got {n_devices}")
    base = hex_lattice(n_aps, radius_m)
    r = ap_jitter_frac * radius_m * np.sqrt(rng.uniform(size=n_aps))
    th = rng.uniform(0, 2 * np.pi, size=n_aps)
    ap = base + np.stack([r * np.cos(th), r * np.sin(th)], axis=1)
    counts = np.full(n_aps, min_per_ap)
    for _ in range(n_devices - min_per_ap * n_aps):
        room = np.nonzero(counts < max_per_ap)[0]
        counts[rng.choice(room)] += 1
    devices = []
    for k in range(n_aps):
        got = 0
        for _ in range(max_tries):
            rr = radius_m * np.sqrt(rng.uniform((min_dist_m / radius_m) ** 2, 1.0, size=8))
            tt = rng.uniform(0, 2 * np.pi, size=8)
            cand = ap[k] + np.stack([rr * np.cos(tt), rr * np.sin(tt)], axis=1)
            d = np.linalg.norm(ap[:, None] - cand[None], axis=-1)
            ok = (d.argmin(axis=0) == k) & (d.min(axis=0) >= min_dist_m)
            for c in cand[ok][: counts[k] - got]:
                devices.append(c)
                got += 1
            if got == counts[k]:
                break
        else:
            raise RuntimeError(f"random_deployment: AP {k} has no room for its devices; lower "
                               f"min_dist_m or ap_jitter_frac")
    return Deployment(ap, np.array(devices), np.repeat(np.arange(n_aps), counts), float(radius_m))

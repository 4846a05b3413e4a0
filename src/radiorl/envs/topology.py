"""Deployments: AP and device positions for cellular networks (seeded, arbitrary K and N).

Distances in metres. All functions are pure given a ``numpy.random.Generator``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numba as nb
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


# =========================================================================== ad hoc networks
# Node placement, unit-disk graphs and min-hop routing for multi-hop ad hoc networks
# (spec adhoc-mftdma.md, A.3.1). Distances in km. The graph kernels are numba-compiled so that
# mobility can rebuild routes every frame.

def uniform_nodes(rng: np.random.Generator, n: int, side_km: float) -> np.ndarray:
    """``[n, 2]`` positions uniform i.i.d. in ``[0, side_km]²`` (km)."""
    return rng.random((n, 2)) * side_km


def sequential_nodes(rng: np.random.Generator, n: int, side_km: float, radius_km: float,
                     block: int = 1024) -> np.ndarray:
    """``[n, 2]`` positions in ``[0, side_km]²`` whose unit-disk graph is connected by
    construction: the first node is uniform; each next node is the first uniform candidate
    within ``radius_km`` of an already placed node (rejection, candidates drawn in blocks).

    Used for large networks, where uniform placement at the paper's density is almost never
    connected. The result is uniform over the region the growing network can reach, so the
    density tends to the uniform one as the area fills.
    """
    pos = np.empty((n, 2))
    pos[0] = rng.random(2) * side_km
    r2 = radius_km * radius_km
    k = 1
    while k < n:
        cand = rng.random((block, 2)) * side_km
        d2 = ((cand[:, None, :] - pos[None, :k, :]) ** 2).sum(-1)
        ok = (d2 <= r2).any(axis=1)
        start = k
        for c in range(block):
            if k >= n:
                break
            # exact sequential rejection: also test against nodes placed earlier in this block
            if ok[c] or (k > start and (((pos[start:k] - cand[c]) ** 2).sum(-1) <= r2).any()):
                pos[k] = cand[c]
                k += 1
    return pos


@nb.njit(cache=True)
def unit_disk_connected(pos, radius_km):
    """Whether the unit-disk graph of ``pos[N, 2]`` (edge iff distance ≤ radius) is connected."""
    N = pos.shape[0]
    if N <= 1:
        return True
    seen = np.zeros(N, np.bool_)
    stack = np.empty(N, np.int64)
    seen[0] = True
    stack[0] = 0
    top, count = 1, 1
    r2 = radius_km * radius_km
    while top > 0:
        top -= 1
        u = stack[top]
        for v in range(N):
            if not seen[v]:
                dx = pos[u, 0] - pos[v, 0]
                dy = pos[u, 1] - pos[v, 1]
                if dx * dx + dy * dy <= r2:
                    seen[v] = True
                    stack[top] = v
                    top += 1
                    count += 1
    return count == N


@nb.njit(cache=True)
def build_adhoc_graph(pos, radius_km, deg, nbr, hops, next_hop, dist_km):
    """Unit-disk graph, hop counts and min-hop routes of one network, written into the outputs.

    Args:
        pos: ``[N, 2]`` positions (km).
        radius_km: one-hop radius; link (i, j) iff ``d_ij ≤ radius_km``.
    Outputs (filled in place): ``deg[N]``; ``nbr[N, ≥maxdeg]`` neighbour lists (ascending id,
    −1 padding); ``hops[N, N]`` hop counts (−1 unreachable, 0 on the diagonal);
    ``next_hop[N, N]`` next hop from i toward destination d (−1 if d = i or unreachable);
    ``dist_km[N, N]`` pairwise distances.

    Routing: min-hop; among min-hop paths the smaller total Euclidean length wins, then the
    lower next-hop id (ties in length within 1e-9 relative count as equal).
    """
    N = pos.shape[0]
    r2 = radius_km * radius_km
    for i in range(N):
        deg[i] = 0
        for j in range(nbr.shape[1]):
            nbr[i, j] = -1
    for i in range(N):
        for j in range(N):
            dx = pos[i, 0] - pos[j, 0]
            dy = pos[i, 1] - pos[j, 1]
            d2 = dx * dx + dy * dy
            dist_km[i, j] = np.sqrt(d2)
            if i != j and d2 <= r2:
                nbr[i, deg[i]] = j
                deg[i] += 1
    order = np.empty(N, np.int64)
    length = np.empty(N)
    for d in range(N):
        for i in range(N):
            hops[i, d] = -1
            next_hop[i, d] = -1
        hops[d, d] = 0
        length[d] = 0.0
        order[0] = d
        head, tail = 0, 1
        while head < tail:                    # BFS from d: nondecreasing hop order
            u = order[head]
            head += 1
            for k in range(deg[u]):
                v = nbr[u, k]
                if hops[v, d] < 0:
                    hops[v, d] = hops[u, d] + 1
                    order[tail] = v
                    tail += 1
        for idx in range(1, tail):            # lexicographic (hops, length, next-hop id)
            u = order[idx]
            best, best_v = np.inf, -1
            for k in range(deg[u]):
                v = nbr[u, k]
                if hops[v, d] == hops[u, d] - 1:
                    c = dist_km[u, v] + length[v]
                    tol = 1e-9 * max(1.0, best if best < np.inf else c)
                    if c < best - tol or (abs(c - best) <= tol and v < best_v):
                        best, best_v = c, v
            length[u] = best
            next_hop[u, d] = best_v

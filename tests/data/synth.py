"""Small synthetic MF-TDMA episodes for the data-layer tests (seeded, no simulator)."""
from __future__ import annotations

import numpy as np

from radiorl.data import DatasetWriter, EpisodeRecord

SCENARIOS = {
    "adhoc-3": {"n_nodes": 3, "lambda_high": 600.0, "rf": "ideal", "mix": [1, 2]},
    "adhoc-4": {"n_nodes": 4, "lambda_high": 600.0, "rf": "limited", "mix": [2, 2]},
}
CONFIG = {"episodes": 3, "frames": 50, "behaviour": {"eps": 0.3}}
ENV = {"max_request": 40, "n_slots": 10, "n_channels": 4}


def ring_neighbors(n: int, isolated: tuple[int, ...] = ()) -> list[np.ndarray]:
    """Ring over the non-isolated agents (symmetric, no self loops)."""
    live = [i for i in range(n) if i not in isolated]
    adj = np.zeros((n, n), bool)
    if len(live) > 1:
        for a, b in zip(live, live[1:] + live[:1]):
            if a != b:
                adj[a, b] = adj[b, a] = True
    return [np.nonzero(adj[i])[0].astype(np.int64) for i in range(n)]


def make_record(rng: np.random.Generator, n: int, t: int, *, scenario: str = "adhoc-3",
                seed: int = 0, behaviour: str = "equal", isolated: tuple[int, ...] = ()
                ) -> EpisodeRecord:
    nbrs = ring_neighbors(n, isolated)
    obs = rng.integers(0, 50, (t, n, 4)).astype(np.float32)
    mf = np.zeros_like(obs)
    for i, nb in enumerate(nbrs):
        if len(nb):
            mf[:, i] = obs[:, nb].mean(axis=1)
    actions = rng.integers(0, 41, (t, n)).astype(np.int16)
    grants = np.minimum(actions, rng.integers(0, 41, (t, n))).astype(np.int16)
    received = rng.integers(0, 4, (t, n)).astype(np.int32)
    delays = np.where(received > 0, rng.exponential(8.0, (t, n)), np.nan).astype(np.float32)
    rewards = -np.nan_to_num(delays, nan=3.0).astype(np.float32)
    return EpisodeRecord(
        obs=obs, mf_obs=mf, actions=actions, grants=grants, rewards=rewards, delays=delays,
        received=received, neighbors=nbrs,
        positions=rng.uniform(0, 10, (n, 2)).astype(np.float32),
        high_rate=rng.random(n) < 0.5, scenario=scenario, seed=seed, behaviour=behaviour,
        truncated=True)


def make_records(seed: int = 0, frames=(50, 50, 50)) -> list[EpisodeRecord]:
    """Episodes with N = 3, 4, 3 (the N = 4 one has an isolated agent) and two behaviours."""
    rng = np.random.default_rng(seed)
    specs = [(3, "adhoc-3", "equal", ()), (4, "adhoc-4", "mixture(eps=0.3)", (3,)),
             (3, "adhoc-3", "mixture(eps=0.3)", ())]
    return [make_record(rng, n, t, scenario=sc, seed=100 + k, behaviour=b, isolated=iso)
            for k, ((n, sc, b, iso), t) in enumerate(zip(specs, frames))]


def writer(path, **kw) -> DatasetWriter:
    args = dict(scenarios=SCENARIOS, config=CONFIG, seed=7, **ENV)
    args.update(kw)
    return DatasetWriter(path, **args)


def write_dataset(path, records, **kw):
    with writer(path, **kw) as w:
        for r in records:
            w.append(r)
    return path

"""Shared pieces of every batched environment: input validation, the Policy contract and the
information view a policy is allowed to see.

**Policy contract.** Every decision maker, classical or learned, exposes
``act(obs, info, policy_state) -> (actions, policy_state)`` working on all ``B`` copies at once,
plus ``requires``: the set of information it may see, drawn from ``INFORMATION``. The runner
builds ``info`` with :meth:`BatchedEnv.policy_view`, which contains only the declared items; any
other key raises ``KeyError`` naming what the policy declared, so a genie baseline cannot leak
into a decentralized agent.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Protocol, runtime_checkable

import numpy as np

#: What a policy may declare in ``requires`` and what each item means.
INFORMATION: dict[str, str] = {
    "local_queues": "queue lengths of the agent's own devices (timely)",
    "neighbor_queues": "queue lengths of the devices of the agent's neighbours (exchanged)",
    "global_queues": "queue lengths of every device in the network (centralized)",
    "local_obs": "the agent's aggregate observation X_k (own + neighbours' local observations)",
    "local_csi": "one-slot-delayed measurements of the agent's own links",
    "global_csi": "current-slot channel gains between every AP and every device (genie)",
    "broadcast": "a signalling phase in which links announce intent to their conflict set",
    "mean_field_obs": "the mean of the 1-hop neighbours' observations (MA-CDMP eq. 11)",
    "local_traffic": "the agent's own counters of the last frame (generated, relayed in, sent, "
                     "failed, granted RBs)",
}

#: ``info`` keys produced for each declared item.
VIEW_KEYS: dict[str, tuple[str, ...]] = {
    "local_queues": ("queues",),
    "neighbor_queues": ("queues",),
    "global_queues": ("queues",),
    "local_obs": ("obs",),
    "local_csi": ("delayed_csi",),
    "global_csi": ("csi",),
    "broadcast": (),
    "mean_field_obs": ("mf_obs",),
    "local_traffic": ("traffic",),
}


class PolicyView(dict):
    """A dict that names the policy's declaration when asked for an undeclared key."""

    def __init__(self, data: Mapping[str, Any], requires: Iterable[str]):
        super().__init__(data)
        self.requires = frozenset(requires)

    def __missing__(self, key):
        raise KeyError(f"info[{key!r}] is not available to a policy that declared "
                       f"requires={sorted(self.requires)}; declare the information it needs "
                       f"(one of {sorted(INFORMATION)})")


@runtime_checkable
class Policy(Protocol):
    """Batched decision maker (see module docstring)."""

    name: str
    requires: frozenset

    def reset(self, env: Any, batch: int, seed: int | None) -> Any:
        """Return the initial ``policy_state`` for ``batch`` copies of ``env``."""

    def act(self, obs: np.ndarray, info: Mapping[str, Any], policy_state: Any) -> tuple[Any, Any]:
        """Return ``(actions, policy_state)`` for all copies."""


def check_requires(requires: Iterable[str], who: str) -> frozenset:
    req = frozenset(requires)
    unknown = req - set(INFORMATION)
    if unknown:
        raise ValueError(f"{who}.requires has unknown items {sorted(unknown)}; "
                         f"allowed: {sorted(INFORMATION)}")
    return req


# --------------------------------------------------------------------------- validation
def check_number(name: str, value, *, low=None, high=None, low_open=False, integer=False,
                 allow_none=False):
    """Raise ``ValueError`` naming ``name`` and the allowed range unless ``value`` is a finite
    number in range. Returns the value (as int if ``integer``)."""
    if value is None and allow_none:
        return None
    rng_txt = _range_text(low, high, low_open)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number {rng_txt}, got {value!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite {rng_txt}, got {value!r}")
    if integer and v != int(v):
        raise ValueError(f"{name} must be an integer {rng_txt}, got {value!r}")
    if low is not None and (v < low or (low_open and v <= low)):
        raise ValueError(f"{name} must be {rng_txt}, got {value!r}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be {rng_txt}, got {value!r}")
    return int(v) if integer else v


def check_array(name: str, arr, *, shape=None, low=None, high=None, integer=False) -> np.ndarray:
    """Validate an array's shape, finiteness and range; returns it as an ndarray."""
    a = np.asarray(arr)
    if shape is not None and tuple(a.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(a.shape)}")
    if a.size == 0:
        return a
    if integer:
        if not np.issubdtype(a.dtype, np.integer):
            if not np.issubdtype(a.dtype, np.floating) or not np.all(np.isfinite(a)) \
                    or np.any(a != np.round(a)):
                raise ValueError(f"{name} must hold integers {_range_text(low, high)}")
            a = a.astype(np.int64)
    elif not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite (no NaN/inf) {_range_text(low, high)}")
    if low is not None and np.any(a < low):
        raise ValueError(f"{name} must be {_range_text(low, high)}, got min {a.min()}")
    if high is not None and np.any(a > high):
        raise ValueError(f"{name} must be {_range_text(low, high)}, got max {a.max()}")
    return a


def _range_text(low, high, low_open=False) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}]"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"<= {high}"
    return ""


def seed_streams(seed: int, n: int) -> list[np.random.Generator]:
    """``n`` independent generators derived from ``seed`` (``SeedSequence.spawn``)."""
    check_number("seed", seed, low=0, integer=True)
    return [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(n)]


# --------------------------------------------------------------------------- agent structure
class AgentStructure:
    """Who serves whom and who talks to whom, shared by every multi-agent env.

    Built from the serving agent of each device and a symmetric agent adjacency. Attributes:
    ``devices_of_agent[k]`` (global indices, the paper's f(ι, k)); ``local_sizes[K]``;
    ``max_devices``; ``dev_table[K, max_devices + 1]`` (action value → global device, column 0
    = idle = −1); ``neighbors[k]``; ``obs_neighbors[k]`` (those in ``X_k``); ``max_neighbors``; ``neighborhood[K, K]`` (C(k), includes
    k); ``obs_index[K, (1 + max_neighbors)·max_devices]`` (the device feeding each slot of
    X_k = (O_k, O_ν1, …), ``N`` = zero padding); ``reward_matrix[N, K]`` so that
    ``−queues @ reward_matrix`` is eq. (10): minus the queues of C(k)'s devices.
    """

    def __init__(self, agent_of_device: np.ndarray, n_agents: int, adjacency: np.ndarray,
                 obs_max_neighbors: int | None = None, obs_max_devices: int | None = None,
                 strength: np.ndarray | None = None):
        """``obs_max_neighbors`` / ``obs_max_devices`` fix the observation and action sizes
        independently of the network (the paper's capped neighbourhood, so one policy runs on
        networks of any size): ``X_k`` then holds at most ``obs_max_neighbors`` neighbours, the
        strongest by ``strength[k, j]`` (else the lowest indices); rewards still use the whole
        neighbourhood. An agent with more devices than ``obs_max_devices`` is an error."""
        N, K = len(agent_of_device), n_agents
        adj = np.asarray(adjacency, bool) | np.asarray(adjacency, bool).T
        adj = adj & ~np.eye(K, dtype=bool)
        self.devices_of_agent = [np.nonzero(agent_of_device == k)[0] for k in range(K)]
        self.local_sizes = np.array([len(d) for d in self.devices_of_agent], np.int64)
        self.max_devices = int(self.local_sizes.max())
        if obs_max_devices is not None:
            if self.max_devices > obs_max_devices:
                raise ValueError(f"obs_max_devices={obs_max_devices} is below the largest "
                                 f"number of devices of one agent ({self.max_devices})")
            self.max_devices = int(obs_max_devices)
        self.dev_table = np.full((K, self.max_devices + 1), -1, np.int64)
        for k, d in enumerate(self.devices_of_agent):
            self.dev_table[k, 1: 1 + len(d)] = d
        self.neighbors = [np.nonzero(adj[k])[0] for k in range(K)]
        self.max_neighbors = max((len(x) for x in self.neighbors), default=0)
        self.obs_neighbors = list(self.neighbors)
        if obs_max_neighbors is not None:
            cap = int(obs_max_neighbors)
            for k in range(K):
                nb = self.neighbors[k]
                if len(nb) > cap:
                    order = np.argsort(-strength[k, nb], kind="stable") if strength is not None \
                        else np.arange(len(nb))
                    self.obs_neighbors[k] = np.sort(nb[order[:cap]])
            self.max_neighbors = cap
        self.neighborhood = adj | np.eye(K, dtype=bool)
        slots = (1 + self.max_neighbors) * self.max_devices
        self.obs_index = np.full((K, slots), N, np.int64)
        for k in range(K):
            for i, a in enumerate([k, *self.obs_neighbors[k]]):
                d = self.devices_of_agent[a]
                self.obs_index[k, i * self.max_devices: i * self.max_devices + len(d)] = d
        dev_agent = np.zeros((N, K))
        dev_agent[np.arange(N), agent_of_device] = 1.0
        self.reward_matrix = dev_agent @ self.neighborhood.astype(float)

    def apply_to(self, env) -> None:
        """Copy the attributes onto an env (the envs expose them directly)."""
        for k, v in vars(self).items():
            setattr(env, k, v)

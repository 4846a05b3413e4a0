"""Heuristic RB-request policies for the MF-TDMA ad hoc network (behaviour policies for the
offline dataset, and baselines).

Every policy returns requests ``int64[B, N]`` in ``[0, max_request]``; the network normalizes
them and assigns RBs (spec A.3.6). All are decentralized: a node uses only its own observation
``o_i = [gen, gen_max, tran, tran_max]``, its own traffic counters and static knowledge of its
neighbourhood (``domain_size``: the nodes that share its RBs, itself included).

==============  ===================================================================  =====================
policy          request of node i                                                    requires
==============  ===================================================================  =====================
equal           ceil(M·L / domain_size) (the whole network under global reuse)     local_obs
proportional    its backlog gen + tran (one RB per queued packet)                    local_obs
load-aware      backlog + headroom × EWMA of its inflow (generated + relayed in)     local_obs, local_traffic
random          uniform in [0, max_request]                                          (nothing)
mixture         per node and episode one of equal / proportional / load-aware;       local_obs, local_traffic
                each frame, with probability ε, a uniformly random request instead
==============  ===================================================================  =====================

Randomness comes from the policy's own generator seeded in ``reset`` (paired evaluation).
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from radiorl.envs.base import check_number, check_requires


class RequestPolicy(ABC):
    """Base class of the request heuristics (Policy contract of :mod:`radiorl.envs.base`)."""

    name = "request"
    requires: frozenset = frozenset()
    families = ("adhoc",)

    def __init__(self):
        self.env = None
        self.rng = None

    def bind(self, env) -> "RequestPolicy":
        fam = getattr(env, "family", None)
        if fam not in self.families:
            raise ValueError(f"policy {self.name!r} works on {list(self.families)} networks, not "
                             f"on {fam or type(env).__name__} ({getattr(env.params, 'name', '')})")
        self.requires = check_requires(self.requires, self.name)
        self.env = env
        self.max_request = env.params.max_request
        return self

    def reset(self, env, batch: int, seed: int | None = 0):
        self.bind(env)
        self.rng = np.random.default_rng(seed)
        return self._init_state(batch)

    def _init_state(self, batch):
        return None

    def act(self, obs, info, ps):
        req, ps = self._act(obs, info, ps)
        return np.clip(req, 0, self.max_request).astype(np.int64), ps

    @abstractmethod
    def _act(self, obs, info, ps):
        """Requests ``[B, K]`` (before clipping to ``[0, max_request]``) and the policy state."""


class EqualShare(RequestPolicy):
    name = "equal"
    requires = frozenset({"local_obs"})

    def _act(self, obs, info, ps):
        n_rbs = self.env.params.n_rbs
        share = np.asarray(info["domain_size"]) if self.env.params.reuse == "local" \
            else np.full(np.shape(info["obs"])[:2], info["n_nodes"])
        return np.ceil(n_rbs / share), ps


class QueueProportional(RequestPolicy):
    name = "proportional"
    requires = frozenset({"local_obs"})

    def _act(self, obs, info, ps):
        o = np.asarray(info["obs"])
        return o[..., 0] + o[..., 2], ps


class LoadAware(RequestPolicy):
    """Backlog plus a headroom over the node's smoothed inflow (packets per frame)."""

    name = "load-aware"
    requires = frozenset({"local_obs", "local_traffic"})

    def __init__(self, smoothing: float = 0.1, headroom: float = 1.25):
        super().__init__()
        self.smoothing = check_number("smoothing", smoothing, low=0, high=1, low_open=True)
        self.headroom = check_number("headroom", headroom, low=0)

    def _init_state(self, batch):
        return np.zeros((batch, self.env.n_agents))

    def _act(self, obs, info, ps):
        o = np.asarray(info["obs"])
        tr = np.asarray(info["traffic"])
        inflow = tr[..., 0] + tr[..., 1]
        ps = (1 - self.smoothing) * ps + self.smoothing * inflow
        return np.ceil(o[..., 0] + o[..., 2] + self.headroom * ps), ps


class RandomRequest(RequestPolicy):
    name = "random"

    def _act(self, obs, info, ps):
        B, N = np.shape(obs)[:2]
        return self.rng.integers(0, self.max_request + 1, size=(B, N)), ps


class Mixture(RequestPolicy):
    """Epsilon-mixture of the heuristics (diverse behaviour quality for offline RL).

    At ``reset`` every (copy, node) draws one component with probabilities ``weights``; every
    frame, with probability ``epsilon``, it sends a uniformly random request instead.
    ``epsilon`` may be a list: copy ``b`` then uses ``epsilon[b mod len]`` (one batched run
    covers several behaviour qualities; ε = 1 is the uniformly random policy).
    """

    name = "mixture"
    requires = frozenset({"local_obs", "local_traffic"})

    def __init__(self, epsilon: float = 0.2, components=("equal", "proportional", "load-aware"),
                 weights=None):
        super().__init__()
        eps = [epsilon] if np.ndim(epsilon) == 0 else list(epsilon)
        if not eps:
            raise ValueError("epsilon must be a number in [0, 1] or a non-empty list of them")
        self.epsilons = tuple(check_number("epsilon", e, low=0, high=1) for e in eps)
        unknown = [c for c in components if c not in _BASE]
        if unknown or not components:
            raise ValueError(f"mixture components must be a non-empty subset of {sorted(_BASE)}, "
                             f"got {list(components)}")
        self.components = tuple(components)
        w = np.ones(len(components)) if weights is None else np.asarray(weights, float)
        if w.shape != (len(components),) or np.any(~np.isfinite(w)) or np.any(w < 0) \
                or w.sum() <= 0:
            raise ValueError(f"mixture weights must be {len(components)} finite numbers >= 0 "
                             f"with a positive sum, got {weights!r}")
        self.weights = w / w.sum()
        self.name = "mixture(eps=" + ",".join(f"{e:g}" for e in self.epsilons) + ")"

    def _init_state(self, batch):
        self._eps = np.array([self.epsilons[b % len(self.epsilons)] for b in range(batch)])
        self._parts = [_BASE[c]().bind(self.env) for c in self.components]
        choice = self.rng.choice(len(self.components), size=(batch, self.env.n_agents),
                                 p=self.weights)
        return {"choice": choice, "sub": [p._init_state(batch) for p in self._parts]}

    def _act(self, obs, info, ps):
        B, N = np.shape(obs)[:2]
        out = np.zeros((B, N))
        for k, part in enumerate(self._parts):
            req, ps["sub"][k] = part._act(obs, info, ps["sub"][k])
            out = np.where(ps["choice"] == k, req, out)
        rand = self.rng.random((B, N)) < self._eps[:, None]
        out = np.where(rand, self.rng.integers(0, self.max_request + 1, size=(B, N)), out)
        return out, ps


_BASE = {"equal": EqualShare, "proportional": QueueProportional, "load-aware": LoadAware}

#: name -> (factory, description)
POLICIES = {
    "equal": (EqualShare, "MF-TDMA: equal share of the RBs"),
    "proportional": (QueueProportional, "MF-TDMA: request = own backlog"),
    "load-aware": (LoadAware, "MF-TDMA: backlog + headroom x smoothed inflow"),
    "mixture": (Mixture, "MF-TDMA: per-node heuristic with epsilon-random requests"),
}

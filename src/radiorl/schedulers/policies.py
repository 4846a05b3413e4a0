"""Classical schedulers wrapped in the Policy contract (see :mod:`radiorl.envs.base`).

Every policy is batched over ``B`` copies, declares ``requires`` (the information structure of
Zhang & Guo, Tables III–IV) and receives only that through ``info``:

==============  ===========================================  ==========================
policy          requires                                     networks
==============  ===========================================  ==========================
gms             global_queues, broadcast                     conflict graph
llq             local_queues, neighbor_queues (graph) /      both
                local_queues (cellular)
qcsma           local_queues, broadcast                      conflict graph
itlinq          local_queues, global_csi                     cellular
fair-itlinq     local_queues, global_csi                     cellular
fp / wmmse      global_queues, global_csi                    cellular
full-power      local_queues                                 both
random          (nothing)                                    both
==============  ===========================================  ==========================

Randomness of a policy (tie breaks, backoffs) comes from its own generator seeded in
``reset``, never from the environment's exogenous streams (paired evaluation).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radiorl.envs.base import check_requires
from radiorl.envs.cellular import CellularEnv
from radiorl.schedulers import graph, itlinq, powercontrol


def _local_index(env) -> np.ndarray:
    """``[N]`` 1-based index of each device within its agent (the action value selecting it)."""
    idx = np.zeros(env.n_devices, np.int64)
    for d in env.devices_of_agent:
        idx[d] = np.arange(1, len(d) + 1)
    return idx


def mask_to_actions(mask: np.ndarray, env) -> np.ndarray:
    """Schedule mask ``bool[B, H, N]`` (at most one device per agent per subband) to actions
    ``int[B, K, H]``."""
    B, H, N = mask.shape
    act = np.zeros((B, env.n_agents, H), np.int64)
    b, h, n = np.nonzero(mask)
    agent = env.agent_of_device if hasattr(env, "agent_of_device") else env.ap_of_device
    act[b, agent[n], h] = _local_index(env)[n]
    return act


def device_to_actions(device: np.ndarray, env) -> np.ndarray:
    """Per-AP device choice ``int[B, H, K]`` (global index or −1) to ``int[B, K, H]`` actions."""
    loc = np.concatenate([_local_index(env), [0]])
    return loc[np.where(device >= 0, device, env.n_devices)].transpose(0, 2, 1)


@dataclass
class SchedulerPolicy:
    """Base class: subclasses set ``name``, ``requires``, ``families`` and implement ``_act``."""

    name: str = "policy"
    requires: frozenset = frozenset()
    families: tuple = ("conflict_graph", "cellular")
    env: object = None
    rng: np.random.Generator | None = None
    options: dict = field(default_factory=dict)

    def bind(self, env) -> "SchedulerPolicy":
        fam = getattr(env, "family", None) or (
            "cellular" if isinstance(env, CellularEnv) else "conflict_graph")
        if fam not in self.families:
            raise ValueError(f"policy {self.name!r} works on {list(self.families)} networks, not "
                             f"on {fam} ({getattr(env.params, 'name', '')})")
        self.requires = check_requires(self.requires, self.name)
        self.env = env
        return self

    @property
    def cellular(self) -> bool:
        return isinstance(self.env, CellularEnv)

    def reset(self, env, batch: int, seed: int | None = 0):
        self.bind(env)
        self.rng = np.random.default_rng(seed)
        return None

    def act(self, obs, info, policy_state):
        return self._act(obs, info, policy_state)

    def _full_power(self, device_hk: np.ndarray) -> dict:
        """Cellular action serving ``device[B, H, K]`` at P_max."""
        dev = device_to_actions(device_hk, self.env)
        return {"device": dev, "power_w": np.where(dev > 0, self.env.p_max_w, 0.0)}


class GMSPolicy(SchedulerPolicy):
    def __init__(self, mode: str = "same"):
        super().__init__("gms", frozenset({"global_queues", "broadcast"}), ("conflict_graph",),
                         options={"mode": mode})

    def _act(self, obs, info, ps):
        e = self.env
        m = graph.gms_schedule(info["queues"], e.conflict, e.agent_of_device, self.rng,
                               e.n_subbands, mode=self.options["mode"])
        return mask_to_actions(m, e), ps


class QCSMAPolicy(SchedulerPolicy):
    def __init__(self, window: int | None = None):
        super().__init__("qcsma", frozenset({"local_queues", "broadcast"}), ("conflict_graph",),
                         options={"window": window})

    def reset(self, env, batch, seed=0):
        super().reset(env, batch, seed)
        return graph.qcsma_init(batch, env.n_subbands, env.n_devices)

    def _act(self, obs, info, ps):
        e = self.env
        x, ps = graph.qcsma_step(ps, info["queues"], e.conflict, e.agent_of_device, self.rng,
                                 window=self.options["window"])
        return mask_to_actions(x, e), ps


class LLQPolicy(SchedulerPolicy):
    """Conflict graph: the paper's distributed LLQ (needs neighbours' queues). Cellular: each
    AP serves its longest-queue device on all subbands at P_max (spec B.9)."""

    def __init__(self):
        super().__init__("llq", frozenset({"local_queues"}))

    def bind(self, env):
        if not isinstance(env, CellularEnv):
            self.requires = frozenset({"local_queues", "neighbor_queues"})
        return super().bind(env)

    def _act(self, obs, info, ps):
        e = self.env
        q = info["queues"]
        if self.cellular:
            dev = itlinq.llq_cellular_schedule(q, e.ap_of_device, e.n_agents, self.rng,
                                               e.n_subbands)
            return self._full_power(dev), ps
        m = graph.llq_conflict_schedule(q, e.conflict, e.agent_of_device, self.rng, e.n_subbands)
        return mask_to_actions(m, e), ps


class ITLinQPolicy(SchedulerPolicy):
    """ITLinQ (``fair=False``) or Fair-ITLinQ with the preset matching the deployment."""

    def __init__(self, fair: bool = True, priority: str = "random", params=None):
        super().__init__("fair-itlinq" if fair else "itlinq",
                         frozenset({"local_queues", "global_csi"}), ("cellular",),
                         options={"fair": fair, "priority": priority, "params": params})

    def _act(self, obs, info, ps):
        e = self.env
        prm = self.options["params"]
        if prm is None:
            if not self.options["fair"]:
                prm = itlinq.ITLinQParams.plain()
            elif e.params.deployment == "hex":
                prm = itlinq.ITLinQParams.fair_hexagonal()
            else:
                prm = itlinq.ITLinQParams.fair_random()
        dev = itlinq.itlinq_schedule(info["csi"], e.ap_of_device, info["queues"], e.p_max_w,
                                     e.noise_w, self.rng, fair=self.options["fair"], params=prm,
                                     priority=self.options["priority"])
        return self._full_power(dev), ps


class PowerControlPolicy(SchedulerPolicy):
    """FP or WMMSE with per-subband single-user scheduling and queue weights α = q / Σq,
    on the current slot's channel (genie CSI)."""

    def __init__(self, solver: str = "fp", restarts: int = 0, snap_levels: bool = False):
        super().__init__(solver, frozenset({"global_queues", "global_csi"}), ("cellular",),
                         options={"restarts": restarts, "snap_levels": snap_levels})

    def _act(self, obs, info, ps):
        e = self.env
        q = np.asarray(info["queues"], float)
        tot = q.sum(axis=1, keepdims=True)
        w = np.divide(q, tot, out=np.zeros_like(q), where=tot > 0)
        dev, pw, _ = powercontrol.single_user_power_schedule(
            info["csi"].astype(np.float64), e.ap_of_device, w, e.p_max_w, e.noise_w,
            solver=self.name, restarts=self.options["restarts"], rng=self.rng,
            power_levels=e.levels_w if self.options["snap_levels"] else None)
        act = device_to_actions(dev, e)
        power = np.clip(pw.transpose(0, 2, 1), 0.0, e.p_max_w)
        return {"device": act, "power_w": np.where(act > 0, power, 0.0)}, ps


class FullPowerPolicy(SchedulerPolicy):
    """Every agent serves a uniformly random nonempty device on every subband (at P_max)."""

    def __init__(self):
        super().__init__("full-power", frozenset({"local_queues"}))

    def _act(self, obs, info, ps):
        e = self.env
        q = np.asarray(info["queues"])
        score = np.where(q > 0, self.rng.random(q.shape), -1.0)            # [B, N]
        table = e.dev_table[:, 1:]
        sc = np.where(table[None] >= 0, score[:, np.maximum(table, 0)], -2.0)  # [B, K, D]
        best = sc.argmax(axis=2)
        ok = np.take_along_axis(sc, best[..., None], 2)[..., 0] >= 0
        local = np.where(ok, best + 1, 0)
        act = np.repeat(local[:, :, None], e.n_subbands, axis=2)
        if self.cellular:
            return {"device": act, "power_w": np.where(act > 0, e.p_max_w, 0.0)}, ps
        return act, ps


class RandomPolicy(SchedulerPolicy):
    """Uniformly random action (idle or a device per subband; random power level; on the ad hoc
    network a uniformly random RB request)."""

    def __init__(self):
        super().__init__("random", frozenset(), ("conflict_graph", "cellular", "adhoc"))

    def _act(self, obs, info, ps):
        e = self.env
        B = e.batch
        if getattr(e, "family", None) == "adhoc":
            return self.rng.integers(0, e.params.max_request + 1, size=(B, e.n_agents)), ps
        u = self.rng.random((B, e.n_agents, e.n_subbands))
        act = np.floor(u * (e.local_sizes[None, :, None] + 1)).astype(np.int64)
        if self.cellular:
            lv = self.rng.integers(0, len(e.levels_w), size=act.shape)
            return {"device": act, "power_level": lv}, ps
        return act, ps


#: name -> (factory, description)
POLICIES = {
    "gms": (GMSPolicy, "greedy maximal scheduling, longest queue first (centralized)"),
    "llq": (LLQPolicy, "local longest queue"),
    "qcsma": (QCSMAPolicy, "queue-based CSMA (Ni, Tan, Srikant), per subband"),
    "itlinq": (lambda: ITLinQPolicy(fair=False), "ITLinQ information-theoretic link scheduling"),
    "fair-itlinq": (lambda: ITLinQPolicy(fair=True), "Fair-ITLinQ (as in Zhang & Guo)"),
    "fp": (lambda: PowerControlPolicy("fp"), "fractional programming, single-user per subband"),
    "wmmse": (lambda: PowerControlPolicy("wmmse"), "WMMSE, single-user per subband"),
    "full-power": (FullPowerPolicy, "random nonempty device, all subbands, full power"),
    "random": (RandomPolicy, "uniformly random actions"),
}


#: learned policies shipped as checkpoints (``radiorl/pretrained``), per scenario
PRETRAINED = {
    "mappo-shared": "recurrent MAPPO, shared policy (pretrained, medium load)",
    "mappo-separate": "recurrent MAPPO, separate policies (pretrained, medium load)",
}


def _register_tdma():
    from radiorl.schedulers import tdma
    for k, v in tdma.POLICIES.items():
        POLICIES[k] = v


_register_tdma()


#: learned policies given by a checkpoint path: ``prefix:<checkpoint.pt>`` → the module and
#: class that load it (imported only when such a name is used; schedulers never depend on agents)
LEARNED = {
    "mappo": ("radiorl.agents.mappo.policy", "MAPPOPolicy", {"greedy": True}),
    "mappo-sampled": ("radiorl.agents.mappo.policy", "MAPPOPolicy", {"greedy": False}),
    "macdmp": ("radiorl.agents.macdmp.planner", "MACDMPPolicy", {}),
    "madiffuser": ("radiorl.agents.offline.diffuser", "MADiffuserPolicy", {}),
    "madd": ("radiorl.agents.offline.decision_diffuser", "MADDPolicy", {}),
    "madiff": ("radiorl.agents.offline.madiff", "MADiffPolicy", {}),
    "cql": ("radiorl.agents.offline.d3rlpy_baselines", "D3rlpyPolicy", {"method": "cql"}),
    "td3bc": ("radiorl.agents.offline.d3rlpy_baselines", "D3rlpyPolicy", {"method": "td3bc"}),
    "dt": ("radiorl.agents.offline.d3rlpy_baselines", "D3rlpyPolicy", {"method": "dt"}),
}
#: Learned policies whose name takes planner settings after ``?`` (``key=value&...``), and
#: the settings that ``radiorl evaluate --sampler/--sample-steps/--guidance/--warm-start``
#: may add to them.
PLANNER_OPTIONS = {
    "macdmp": ("sampler", "sample_steps", "guidance", "warm_start"),
    "madiffuser": ("sampler", "sample_steps", "guidance"),
    "madd": ("sampler", "sample_steps", "guidance"),
    "madiff": ("sampler", "sample_steps", "guidance"),
}


def parse_learned(name: str) -> tuple[str, str, dict] | None:
    """``"macdmp:run/planner.pt?sampler=dpm1&sample_steps=10"`` → ``("macdmp",
    "run/planner.pt", {"sampler": "dpm1", "steps": 10})``; ``None`` for other names.
    Options after ``?`` are ``key=value`` pairs joined by ``&`` (YAML scalars)."""
    if not isinstance(name, str) or ":" not in name:
        return None
    prefix, rest = name.split(":", 1)
    if prefix not in LEARNED:
        return None
    path, _, query = rest.partition("?")
    opts = {}
    if query:
        import yaml
        for item in query.split("&"):
            key, sep, val = item.partition("=")
            if not sep or not key:
                raise ValueError(f"policy {name!r}: options after '?' must be key=value pairs "
                                 f"joined by '&', got {item!r}")
            key = key.strip().replace("-", "_")
            if key == "sample_steps":
                key = "steps"
            opts[key] = yaml.safe_load(val)
    if not path:
        raise ValueError(f"policy {name!r}: expected {prefix}:<checkpoint.pt>")
    return prefix, path, opts


def make_policy(name: str, env=None):
    """Build the named policy (bound to ``env`` if given).

    Learned policies (see :data:`LEARNED`): ``mappo:<checkpoint.pt>`` loads a trained MAPPO
    actor (checked against ``env``'s layout) that takes its most likely action (deterministic
    execution, as the reference MAPPO evaluates); ``mappo-sampled:<checkpoint>`` samples its
    actions from the stochastic policy instead; ``macdmp:<planner.pt>[?key=value&...]`` is a
    trained MA-CDMP planner, the options being planner settings (``sampler``,
    ``sample_steps``, ``guidance``, ``warm_start``, ...); ``madiffuser:``, ``madd:`` and
    ``madiff:<planner.pt>[?...]`` are the offline diffusion baselines (MA-Diffuser, MA-DD,
    MADiff), with their planners' settings as options; ``cql:``, ``td3bc:``, ``dt:<policy.pt>``
    the d3rlpy learners (MA-CQL, MA-TD3+BC, MA-DT; ``dt:...?target_return=G``).
    ``mixture:<ε>`` is the offline
    dataset's behaviour policy with random-request probability ``ε``."""
    import importlib
    learned = parse_learned(name)
    if learned is not None or name in PRETRAINED:
        if name in PRETRAINED:
            if env is None:
                raise ValueError(f"policy {name!r} needs the network to pick its pretrained "
                                 "checkpoint")
            from radiorl.pretrained import pretrained_path
            prefix, path, opts = "mappo", pretrained_path(name, env.params.name), {}
        else:
            prefix, path, opts = learned
        module, cls_name, fixed = LEARNED[prefix]
        cls = getattr(importlib.import_module(module), cls_name)
        if opts and prefix not in PLANNER_OPTIONS and prefix != "dt":
            raise ValueError(f"policy {name!r}: {prefix} policies take no options after '?'")
        pol = cls.from_checkpoint(path, env, **fixed, **opts)
        pol.name = name
        return pol.bind(env) if env is not None else pol
    if isinstance(name, str) and name.startswith("mixture:"):
        from radiorl.schedulers.tdma import Mixture
        try:
            eps = float(name.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"policy {name!r}: expected mixture:<epsilon in [0, 1]>") from None
        pol = Mixture(epsilon=eps)
        pol.name = name
        return pol.bind(env) if env is not None else pol
    if name not in POLICIES:
        raise ValueError(f"unknown policy {name!r}; valid policies: {sorted(POLICIES)}, "
                         f"{sorted(PRETRAINED)}, or a trained checkpoint: "
                         + ", ".join(f"{p}:<checkpoint.pt>" for p in LEARNED))
    pol = POLICIES[name][0]()
    return pol.bind(env) if env is not None else pol

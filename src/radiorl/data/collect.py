"""Offline dataset collection for MA-CDMP (paper Sec. VI-A; ``radiorl collect``).

Recipe (paper): 8 and 9 nodes with both high:low ratios (``adhoc-8-2:6``, ``adhoc-8-4:4``,
``adhoc-9-2:7``, ``adhoc-9-4:5``), trajectories of 30 s = 6,000 frames recorded per frame,
1,000 trajectories (``paper`` preset). Each trajectory runs on its own random topology.

Our choices (the paper is silent; all are :class:`CollectConfig` fields):

* **Behaviour.** The paper's behaviour policy is not published; an offline dataset needs
  diverse quality, so by default every task runs the epsilon-mixture of the equal-share /
  queue-proportional / load-aware heuristics (each node keeps one heuristic for the whole
  trajectory) with ε cycling over the copies: 0, 0.1, 0.3 and 1 (ε = 1 is the uniformly
  random request policy). Other behaviours: ``mixture:<ε>[,<ε>...]`` or any request-policy
  name (``equal``, ``proportional``, ``load-aware``, ``random``), cycled over tasks.
* **Load.** The scenarios' ``medium`` load (default rates 600/150 packets/s).
* **RF.** ``ideal`` by default; ``limited`` or ``both`` (scenario list doubled).
* **Tasks.** ``copies`` trajectories of one scenario and behaviour are simulated together
  (batched env); task ``i`` runs scenario ``i mod S`` with behaviour ``(i div S) mod nB`` and
  env/policy seed ``seed · 1,000,003 + i``. Trajectory ``b`` of task ``i`` is episode
  ``i · copies + b`` of the file, whose ``seed`` field is the task seed times 1,000 plus
  ``b``. Results are written in task order, so an interrupted collection resumes exactly
  (``--resume``): finished tasks are skipped and a partly written task is re-simulated (it is
  deterministic) and only its missing trajectories are appended.

Frame ``t`` of a record holds the observation at the frame start (``o_t``, ``ō_t``), the
request ``a_t``, the grant, the reward ``r_t`` earned in the frame and the mean delay of the
packets delivered to the node in the frame.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from radiorl.data.hdf5 import DatasetWriter
from radiorl.data.schema import EpisodeRecord
from radiorl.envs.base import check_number
from radiorl.envs.scenarios import get_scenario
from radiorl.runtime.executor import run_tasks

PAPER_SCENARIOS = ("adhoc-8-2:6", "adhoc-8-4:4", "adhoc-9-2:7", "adhoc-9-4:5")
DEFAULT_BEHAVIOURS = ("mixture:0,0.1,0.3,1",)


@dataclass
class CollectConfig:
    """What to collect (see module docstring)."""

    scenarios: tuple = PAPER_SCENARIOS
    episodes: int = 1000
    frames: int = 6000
    copies: int = 8
    load: str = "medium"
    rf: str = "ideal"
    behaviours: tuple = DEFAULT_BEHAVIOURS
    seed: int = 0

    def validate(self) -> "CollectConfig":
        check_number("episodes", self.episodes, low=1, high=10 ** 7, integer=True)
        check_number("frames", self.frames, low=1, high=10 ** 7, integer=True)
        check_number("copies", self.copies, low=1, high=4096, integer=True)
        check_number("seed", self.seed, low=0, integer=True)
        if self.rf not in ("ideal", "limited", "both"):
            raise ValueError(f"rf must be one of ['ideal', 'limited', 'both'], got {self.rf!r}")
        if not self.scenarios:
            raise ValueError("scenarios must list at least one ad hoc scenario")
        for name in self.scenario_names():
            sc = get_scenario(name)
            if sc.family != "adhoc":
                raise ValueError(f"scenarios: {name!r} is a {sc.family} network; collect needs "
                                 "ad hoc scenarios (adhoc-...)")
            sc.resolve_load(self.load)
        for b in self.behaviours:
            fams = getattr(make_behaviour(b), "families", ())
            if "adhoc" not in fams:
                raise ValueError(f"behaviours: {b!r} works on {list(fams)} networks, not on the "
                                 "adhoc network; use mixture:<eps>[,...], equal, proportional, "
                                 "load-aware or random")
        if not self.behaviours:
            raise ValueError("behaviours must list at least one behaviour policy")
        return self

    def scenario_names(self) -> list[str]:
        base = [s[: -len("-limited")] if s.endswith("-limited") else s for s in self.scenarios]
        if self.rf == "ideal":
            return list(self.scenarios)
        if self.rf == "limited":
            return [f"{s}-limited" for s in base]
        return [n for s in base for n in (s, f"{s}-limited")]     # interleaved

    @property
    def n_tasks(self) -> int:
        return math.ceil(self.episodes / self.copies)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scenarios"] = list(self.scenarios)
        d["behaviours"] = list(self.behaviours)
        return d


PRESETS = {
    "quick": dict(episodes=32, frames=6000, copies=8),
    "paper": dict(episodes=1000, frames=6000, copies=8),
}


def preset_config(preset: str, **overrides) -> CollectConfig:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    kw = dict(PRESETS[preset])
    kw.update({k: v for k, v in overrides.items() if v is not None})
    return CollectConfig(**kw).validate()


def make_behaviour(spec: str):
    """``"mixture:<eps>"`` or any request-policy name (``equal``, ``random``, ...)."""
    from radiorl.schedulers.policies import make_policy
    from radiorl.schedulers.tdma import Mixture
    if spec.startswith("mixture:"):
        try:
            eps = [float(x) for x in spec.split(":", 1)[1].split(",")]
        except ValueError:
            raise ValueError(f"behaviour {spec!r}: expected mixture:<epsilon in [0, 1]>[,...]") \
                from None
        return Mixture(epsilon=eps)
    return make_policy(spec)


@dataclass
class CollectTask:
    index: int
    scenario: str
    behaviour: str
    load: str
    frames: int
    copies: int
    seed: int
    skip: int = 0                         # trajectories of this task already written
    extra: dict = field(default_factory=dict)


def make_tasks(cfg: CollectConfig) -> list[CollectTask]:
    names = cfg.scenario_names()
    tasks = []
    left = cfg.episodes
    for i in range(cfg.n_tasks):
        c = min(cfg.copies, left)
        left -= c
        tasks.append(CollectTask(i, names[i % len(names)],
                                 cfg.behaviours[(i // len(names)) % len(cfg.behaviours)],
                                 cfg.load, cfg.frames, c, cfg.seed * 1_000_003 + i))
    return tasks


def collect_task(task: CollectTask) -> list[EpisodeRecord]:
    """Simulate one task (``copies`` trajectories together); returns their records."""
    sc = get_scenario(task.scenario)
    env = sc.make_env(task.load, batch=task.copies, episode_frames=task.frames)
    pol = make_behaviour(task.behaviour)
    ps = pol.reset(env, task.copies, seed=task.seed + 7919)
    obs, st = env.reset(seed=task.seed)
    topo = [env.topology(st, b) for b in range(task.copies)]
    B, N, T = task.copies, env.n_agents, task.frames
    o = np.empty((T, B, N, 4), np.float32)
    mf = np.empty((T, B, N, 4), np.float32)
    act = np.empty((T, B, N), np.int16)
    grant = np.empty((T, B, N), np.int16)
    rew = np.empty((T, B, N), np.float32)
    dly = np.empty((T, B, N), np.float32)
    rcv = np.empty((T, B, N), np.int32)
    for t in range(T):
        o[t] = obs
        mf[t] = st.mf_obs
        a, ps = pol.act(obs, env.policy_view(st, pol.requires), ps)
        obs, r, te, tr, info, st = env.step(st, a)
        act[t] = a
        grant[t] = info["grants"]
        rew[t] = r
        dly[t] = info["received_delay_ms"]
        rcv[t] = info["received"]
    eps = getattr(pol, "epsilons", None)
    out = []
    for b in range(task.skip, B):
        out.append(EpisodeRecord(
            obs=o[:, b].copy(), mf_obs=mf[:, b].copy(), actions=act[:, b].copy(),
            grants=grant[:, b].copy(), rewards=rew[:, b].copy(), delays=dly[:, b].copy(),
            received=rcv[:, b].copy(), neighbors=[np.asarray(x) for x in topo[b]["neighbors"]],
            positions=topo[b]["positions"].astype(np.float32),
            high_rate=np.asarray(topo[b]["high_rate"], bool), scenario=task.scenario,
            seed=int(task.seed * 1000 + b),
            behaviour=f"mixture(eps={eps[b % len(eps)]:g})" if eps else pol.name,
            truncated=True))
    return out


def collect(path, cfg: CollectConfig, workers: int = 2, backend: str | None = None,
            address: str | None = None, overwrite: bool = False, resume: bool = False,
            show_progress: bool = True) -> dict:
    """Collect the dataset described by ``cfg`` into ``path`` (HDF5, written atomically).

    Returns a summary dict (episodes, agent-frames, seconds, agent-frames/s).
    """
    cfg.validate()
    if workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers}")
    if backend not in (None, "local", "ray"):
        raise ValueError(f"backend must be 'local' or 'ray', got {backend!r}")
    tasks = make_tasks(cfg)
    names = list(dict.fromkeys(t.scenario for t in tasks))      # scenarios with episodes
    scen = {n: get_scenario(n).params(cfg.load, episode_frames=cfg.frames).to_dict()
            for n in names}
    p0 = get_scenario(names[0]).params(cfg.load)
    for n in names:
        p = get_scenario(n).params(cfg.load)
        if (p.max_request, p.n_slots, p.n_channels) != (p0.max_request, p0.n_slots,
                                                        p0.n_channels):
            raise ValueError(f"scenarios: {n} has a different frame (max_request, M, L) than "
                             f"{names[0]}; one dataset holds one frame format")
    writer = DatasetWriter(path, scenarios=scen, config=cfg.to_dict(), seed=cfg.seed,
                           max_request=p0.max_request, n_slots=p0.n_slots,
                           n_channels=p0.n_channels, overwrite=overwrite, resume=resume)
    done = writer.n_episodes_done
    todo = []
    for t in tasks:
        first = t.index * cfg.copies
        if first + t.copies <= done:
            continue
        t.skip = max(0, done - first)
        todo.append(t)
    pending: dict = {}
    order = [t.index for t in todo]
    pos = [0]
    frames_written = [0]

    def on_result(i, records):
        pending[todo[i].index] = records
        while pos[0] < len(order) and order[pos[0]] in pending:
            for rec in pending.pop(order[pos[0]]):
                writer.append(rec)
                frames_written[0] += rec.actions.size
            pos[0] += 1

    t0 = time.perf_counter()
    try:
        run_tasks(collect_task, todo, workers=workers, backend=backend, address=address,
                  description=f"collect {cfg.episodes} x {cfg.frames} frames",
                  show_progress=show_progress, on_result=on_result, keep_results=False)
        writer.finalize()
    finally:
        writer.close()
    dt = time.perf_counter() - t0
    return {"path": str(path), "episodes": cfg.episodes, "episodes_collected_now":
            sum(t.copies - t.skip for t in todo), "agent_frames_now": frames_written[0],
            "seconds": dt, "agent_frames_per_s": frames_written[0] / max(dt, 1e-9)}

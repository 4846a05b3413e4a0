"""Rollouts and paired evaluation.

Paired: for a given (scenario, load, seed) every policy runs on an env reset with the same seed,
so arrivals and channels are identical (exogenous streams are separate from policy randomness).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from radiorl.envs.scenarios import get_scenario
from radiorl.evaluation.metrics import EpisodeMetrics, StabilityRule
from radiorl.runtime.executor import run_tasks


def rollout(env, policy, seed: int, slots: int, policy_seed: int | None = None,
            rule: StabilityRule = StabilityRule(), progress=None):
    """Run ``policy`` on all copies of ``env`` for ``slots`` slots (or until every copy is done).

    Returns ``(metrics, seconds_in_act)``. ``info`` given to the policy is
    ``env.policy_view(state, policy.requires)`` (the information contract).
    """
    if slots < 1:
        raise ValueError(f"slots must be an integer >= 1, got {slots}")
    obs, state = env.reset(seed=seed)
    pstate = policy.reset(env, env.batch, seed=(seed + 7919) if policy_seed is None else policy_seed)
    metrics = EpisodeMetrics(env.batch, env.n_devices, rule)
    t_act = 0.0
    for _ in range(slots):
        view = env.policy_view(state, policy.requires)
        t0 = time.perf_counter()
        actions, pstate = policy.act(obs, view, pstate)
        t_act += time.perf_counter() - t0
        obs, rew, term, trunc, info, state = env.step(state, actions)
        metrics.update(info, info["backlog_packets"], term, rew)
        if progress is not None:
            progress()
        if np.all(term):
            break
    return metrics, t_act


@dataclass
class EvalTask:
    scenario: str
    policy: str
    load: object
    seed: int
    slots: int
    copies: int = 1
    overrides: dict = field(default_factory=dict)
    keep_delays: bool = True
    reference_compat: bool = False


def run_eval_task(task: EvalTask) -> dict:
    """One (scenario, policy, load, seed) episode; returns result rows and the delays."""
    from radiorl.schedulers.policies import make_policy
    sc = get_scenario(task.scenario)
    env = sc.make_env(task.load, batch=task.copies, reference_compat=task.reference_compat,
                      episode_slots=max(task.slots, 1), **task.overrides)
    pol = make_policy(task.policy, env)
    t0 = time.perf_counter()
    m, t_act = rollout(env, pol, task.seed, task.slots)
    wall = time.perf_counter() - t0
    rows = m.summary(env.slot_ms)
    for b, r in enumerate(rows):
        r.update({"scenario": task.scenario, "family": sc.family, "policy": task.policy,
                  "load": sc.load_label(task.load), "load_value": sc.resolve_load(task.load),
                  "load_unit": sc.load_unit,
                  "seed": task.seed, "copy": b,
                  "ms_per_decision": 1e3 * t_act / max(m.slots, 1), "wall_s": wall})
    delays = np.concatenate([m.all_delays(b) for b in range(env.batch)]) * (env.slot_ms or 1.0) \
        if task.keep_delays else np.zeros(0)
    return {"rows": rows, "delays": delays}


def evaluate(scenario: str, policies: list[str], loads: list, seeds: list[int], slots: int,
             copies: int = 1, workers: int = 1, overrides: dict | None = None,
             show_progress: bool = True,
             reference_compat: bool = False) -> tuple[list[dict], dict]:
    """Paired evaluation of ``policies`` on ``scenario`` over ``loads`` × ``seeds``.

    Returns ``(rows, delays)`` with ``delays[(policy, load_label)]`` pooling all seeds. Inputs
    are validated (names, loads, slots) before any simulation starts.
    """
    from radiorl.schedulers.policies import make_policy
    sc = get_scenario(scenario)
    for p in policies:
        make_policy(p, sc.make_env(loads[0] if loads else "medium", 1, reference_compat,
                                   **{**dict(overrides or {}), "episode_slots": 10}))
    for ld in loads:
        sc.resolve_load(ld)
    if not isinstance(slots, (int, np.integer)) or slots < 1:
        raise ValueError(f"slots must be an integer >= 1, got {slots!r}")
    if not seeds or any((not isinstance(s, (int, np.integer))) or s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers >= 0, got {seeds!r}")
    tasks = [EvalTask(scenario, p, ld, s, slots, copies, dict(overrides or {}),
                      reference_compat=reference_compat)
             for ld in loads for s in seeds for p in policies]
    results = run_tasks(run_eval_task, tasks, workers=workers,
                        description=f"evaluate {scenario}", show_progress=show_progress)
    rows, delays = [], {}
    for t, r in zip(tasks, results):
        rows.extend(r["rows"])
        key = (t.policy, sc.load_label(t.load))
        delays.setdefault(key, []).append(r["delays"])
    return rows, {k: np.concatenate(v) for k, v in delays.items()}

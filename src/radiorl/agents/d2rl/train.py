"""D2RL training loop (``papers/d2rl.txt`` Algorithm 2), top to bottom in :func:`train`.

Per epoch: ``steps_per_epoch`` batched collection steps on ``n_envs`` copies (state exploration,
actor, epsilon-greedy, the environment's reward, the reward design; the transition goes to the
replay buffer), each followed by ``updates_per_step`` updates once the buffer holds
``learning_starts`` transitions; then (every ``eval_every`` epochs) an evaluation of the policy
without exploration noise; one history row; TensorBoard scalars; a checkpoint every
``checkpoint_every`` epochs. The paper's epoch is one collection step and one update
(the defaults).

The environment is duck-typed (``obs_dim``, ``action_dim``, ``reset(seed, batch)``,
``step(state, action)`` with ``info["sum_rate"]`` and ``info["rate_bound"]``; reward = sum rate C).
Copies are restarted (all together, with a fresh seed) when any copy's episode ends.

History columns (one row per epoch)
-----------------------------------
``epoch``, ``env_steps`` (transitions collected), ``updates``;
``sum_rate`` / ``eval_reward`` / ``eval_saturated_frac``: the policy without exploration noise
on ``eval_batch`` fixed channel draws (``eval_seed``), NaN on epochs without evaluation;
``train_sum_rate``, ``reward`` (mean design reward collected: C or C - R'), ``critic_reward``
(what the critic was given: equal to ``reward`` unless the reward is learned), ``reward_gap`` /
``reward_abs_gap`` (learned minus real design reward, signed / absolute mean);
``ma_reward`` (moving average of ``reward`` over ``ma_window`` epochs), ``ma_sum_rate`` (over the
last ``ma_window`` evaluations); ``saturated_frac`` (collected policy actions with
``|a| > 0.99``), ``substituted_frac`` (actor inputs replaced by synthetic states), ``chi``;
losses averaged over the epoch's updates (``critic_loss``, ``actor_loss``, ``q_mean``,
``reward_loss``, ``state_loss``); ``grad_w/<net>/<layer>``, ``grad_b/...``: mean |gradient| of
weights and biases per layer (nets ``actor``, ``critic/q1``, ``critic/q2``, ``reward``,
``state``), averaged over the epoch's updates; ``wall_s`` / ``cpu_s`` (``time.process_time``)
of the epoch's collection and updates (evaluation excluded: ``eval_s``), ``wall_total_s`` /
``cpu_total_s`` cumulative.

Convergence (:func:`convergence`, after the run): the first epoch after which
``convergence_metric`` (default ``ma_sum_rate``) stays within ``convergence_tol`` (relative,
default 5 %) of its final value; the time to convergence is ``wall_total_s`` / ``cpu_total_s``
at that epoch.

Files in ``run_dir``: ``history.csv``, ``summary.json``, ``tb/`` (TensorBoard),
``checkpoints/last.pt`` (every ``checkpoint_every`` epochs and at the end: everything for an
exact resume: agent, optimizers, generator, replay buffer, environment state, chi, history) and
``checkpoints/agent.pt`` (the final agent).
"""
from __future__ import annotations

import json
import math
import time
from collections import defaultdict, deque
from pathlib import Path

import numpy as np
import torch

from radiorl.agents.d2rl.agent import ALGO, CHECKPOINT_VERSION, D2RLAgent
from radiorl.agents.d2rl.buffer import ReplayBuffer
from radiorl.agents.d2rl.config import LR_SCHEDULE_FIELDS, RUN_FIELDS, D2RLConfig
from radiorl.agents.d2rl.envstate import pack_env_state, unpack_env_state
from radiorl.runtime.checkpoints import load_checkpoint, resume_path
from radiorl.runtime.files import atomic_write_text, write_csv

NAN = float("nan")


def env_seed(seed: int, n: int) -> int:
    """Seed of the ``n``-th environment reset of a run with ``seed`` (well mixed, 32 bit)."""
    return int(np.random.SeedSequence([int(seed), int(n)]).generate_state(1)[0])


def design_target(cfg: D2RLConfig, reward, info) -> torch.Tensor:
    """The reward design's real reward ``[B]``: C for ``"raw"``, C - R' for the others."""
    c = torch.as_tensor(np.asarray(reward), dtype=torch.float32).reshape(-1)
    if cfg.reward == "raw":
        return c
    if "rate_bound" not in info:
        raise ValueError(f"reward design {cfg.reward!r} needs info['rate_bound'] (R') from the "
                         f"environment's step")
    return c - torch.as_tensor(np.asarray(info["rate_bound"]), dtype=torch.float32).reshape(-1)


@torch.no_grad()
def evaluate(agent: D2RLAgent, env, batch: int = 64, steps: int = 1, seed: int = 12345) -> dict:
    """The policy without exploration noise on ``batch`` copies reset with ``seed`` for
    ``steps`` steps (the diffusion actor's chain noise from a generator seeded with ``seed``, so
    the same agent always gets the same numbers). Returns ``sum_rate`` (mean C), ``eval_reward``
    (mean design reward) and ``eval_saturated_frac``."""
    obs, st = env.reset(seed=int(seed), batch=int(batch))
    g = torch.Generator().manual_seed(int(seed))
    rates, rewards, sat = [], [], []
    for _ in range(int(steps)):
        a = agent.act(torch.as_tensor(obs, dtype=torch.float32), explore=False, generator=g)
        obs, rew, _, _, info, st = env.step(st, a.numpy())
        rates.append(float(np.mean(info["sum_rate"])))
        rewards.append(float(design_target(agent.config, rew, info).mean()))
        sat.append(float((a.abs() > 0.99).float().mean()))
    return {"sum_rate": float(np.mean(rates)), "eval_reward": float(np.mean(rewards)),
            "eval_saturated_frac": float(np.mean(sat))}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def convergence(history: list[dict], metric: str = "ma_sum_rate", tol: float = 0.05) -> dict:
    """First epoch after which ``metric`` stays within ``tol * |final|`` of its final value
    (rows where it is NaN are skipped), with the cumulative wall / CPU time at that epoch."""
    rows = [h for h in history if _finite(h.get(metric))]
    out = {"metric": metric, "tol": tol, "final": NAN, "converged_epoch": None,
           "wall_to_convergence_s": NAN, "cpu_to_convergence_s": NAN}
    if not rows:
        return out
    final = rows[-1][metric]
    band = tol * abs(final)
    i = len(rows) - 1
    while i > 0 and abs(rows[i - 1][metric] - final) <= band:
        i -= 1
    out.update(final=final, converged_epoch=rows[i]["epoch"],
               wall_to_convergence_s=rows[i]["wall_total_s"],
               cpu_to_convergence_s=rows[i]["cpu_total_s"])
    return out


def summarize(history: list[dict], cfg: D2RLConfig) -> dict:
    """Convergence (``cfg.convergence_metric`` / ``convergence_tol``), per-epoch and total
    times, final and best evaluation sum rate."""
    conv = convergence(history, cfg.convergence_metric, cfg.convergence_tol)
    rates = [h["sum_rate"] for h in history if _finite(h.get("sum_rate"))]
    n = max(len(history), 1)
    return {**conv, "epochs": len(history),
            "wall_per_epoch_s": sum(h["wall_s"] for h in history) / n,
            "cpu_per_epoch_s": sum(h["cpu_s"] for h in history) / n,
            "wall_total_s": history[-1]["wall_total_s"] if history else 0.0,
            "cpu_total_s": history[-1]["cpu_total_s"] if history else 0.0,
            "final_sum_rate": rates[-1] if rates else NAN,
            "best_sum_rate": max(rates) if rates else NAN}


def _mean_window(vals) -> float:
    v = [x for x in vals if _finite(x)]
    return float(np.mean(v)) if v else NAN


def train(config: D2RLConfig, env, run_dir, resume=False, progress: bool = True) -> list[dict]:
    """Train a D2RL agent on ``env``; returns the history (one dict per epoch).

    Args:
        config: the :class:`D2RLConfig`.
        env: a batched environment with the duck-typed interface of the module docstring.
        run_dir: output folder (created).
        resume: False; True (continue from ``run_dir/checkpoints/last.pt``); or a checkpoint /
            run folder to continue from. The stored config must equal ``config`` except for
            ``RUN_FIELDS`` (e.g. ``epochs`` may grow) and the learning-rate schedule's fields
            when neither schedule has acted before the checkpoint's epoch (e.g. a decay added
            at a later epoch). A resumed run reproduces the
            uninterrupted run's history exactly (except for the time columns).
        progress: draw a rich progress bar (rate and ETA).
    """
    from torch.utils.tensorboard import SummaryWriter

    from radiorl.runtime.executor import progress_bar

    cfg = config
    if not isinstance(cfg, D2RLConfig):
        raise ValueError(f"config must be a D2RLConfig, got {type(cfg).__name__}")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    S, A = int(env.obs_dim), int(env.action_dim)
    agent = D2RLAgent(cfg, S, A)
    buffer = ReplayBuffer(cfg.buffer_size, S, A)
    resets = 0
    obs, env_state = env.reset(seed=env_seed(cfg.seed, resets), batch=cfg.n_envs)
    resets += 1
    start, history = 0, []
    if resume:
        rp = ckpt_dir / "last.pt" if resume is True else resume_path(resume)
        blob = load_checkpoint(rp, ALGO, CHECKPOINT_VERSION, "D2RL")
        if "run" not in blob:
            raise ValueError(f"--resume: {rp} is a saved agent, not a training checkpoint")
        stored = D2RLConfig.from_dict(blob["config"])
        ignore = RUN_FIELDS
        if stored.same_schedule_before(cfg, int(blob["run"]["epoch"])):
            ignore = RUN_FIELDS + LR_SCHEDULE_FIELDS
        diffs = stored.differences(cfg, ignore=ignore)
        if diffs:
            raise ValueError(f"--resume: {rp} was written with another config (checkpoint != "
                             f"this run): " + "; ".join(diffs))
        run = blob["run"]
        agent.load_state_dict(blob["agent"])
        buffer.load_state_dict(run["buffer"])
        env_state = unpack_env_state(run["env_state"], env_state)
        obs = run["obs"].numpy()
        resets, start = int(run["resets"]), int(run["epoch"])
        history = json.loads(run["history"])

    def save_run(epoch: int) -> None:
        agent.save(ckpt_dir / "last.pt", extra={"run": {
            "epoch": epoch, "resets": resets, "obs": torch.as_tensor(np.asarray(obs)).clone(),
            "env_state": pack_env_state(env_state), "buffer": buffer.state_dict(),
            "history": json.dumps(history)}})
        write_csv(run_dir / "history.csv", history)

    run_dir.mkdir(parents=True, exist_ok=True)
    tb = SummaryWriter(str(run_dir / "tb"), purge_step=start + 1 if start else None)
    wall_total = history[-1]["wall_total_s"] if history else 0.0
    cpu_total = history[-1]["cpu_total_s"] if history else 0.0
    env_steps = history[-1]["env_steps"] if history else 0
    # moving-average windows (O(1) per epoch; rebuilt from the history on resume)
    reward_win = deque((h["reward"] for h in history), maxlen=cfg.ma_window)
    eval_win = deque((h["sum_rate"] for h in history if _finite(h["sum_rate"])),
                     maxlen=cfg.ma_window)
    label = f"D2RL actor={cfg.actor} reward={cfg.reward}" + (
        f" S.Exp.(M={cfg.state_exploration[0]:g}, eta={cfg.state_exploration[1]:g})"
        if cfg.state_exploration else "")
    with progress_bar() as prog:
        task = prog.add_task(label, total=cfg.epochs, completed=start, rate="",
                             visible=progress)
        for epoch in range(start, cfg.epochs):
            agent.set_lr_scale(cfg.lr_scale(epoch))
            w0, c0 = time.perf_counter(), time.process_time()
            col = defaultdict(list)          # per collection step
            upd = defaultdict(list)          # per update
            for _ in range(cfg.steps_per_epoch):
                # ---- collect (Algorithm 2, lines 4-7)
                ob = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
                ex = agent.explore(ob)
                action = ex["action"]
                next_obs, rew, term, trunc, info, env_state = env.step(env_state, action.numpy())
                target = design_target(cfg, rew, info)
                agent.observe(ob, target)
                reward, learned = agent.design_reward(ob, action, target)
                term = np.asarray(term, dtype=bool).reshape(-1)
                buffer.add(obs=ob, action=action,
                           next_obs=torch.as_tensor(np.asarray(next_obs), dtype=torch.float32),
                           terminated=torch.as_tensor(term, dtype=torch.float32),
                           target=target, reward=reward)
                col["train_sum_rate"].append(float(np.mean(info["sum_rate"])))
                col["reward"].append(float(target.mean()))
                col["critic_reward"].append(float(reward.mean()))
                col["saturated_frac"].append(float((ex["policy_action"].abs() > 0.99)
                                                   .float().mean()))
                col["substituted_frac"].append(float(ex["substituted"].float().mean()))
                if learned is not None:
                    col["reward_gap"].append(float((learned - target).mean()))
                    col["reward_abs_gap"].append(float((learned - target).abs().mean()))
                env_steps += cfg.n_envs
                if bool((term | np.asarray(trunc, dtype=bool).reshape(-1)).any()):
                    obs, env_state = env.reset(seed=env_seed(cfg.seed, resets), batch=cfg.n_envs)
                    resets += 1
                else:
                    obs = next_obs
                # ---- learn (Algorithm 2, lines 9-11)
                if len(buffer) >= cfg.start_updates:
                    for _ in range(cfg.updates_per_step):
                        for k, v in agent.update(buffer.sample(cfg.batch_size,
                                                               agent.generator)).items():
                            upd[k].append(v)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            wall_total += wall
            cpu_total += cpu
            row = {"epoch": epoch + 1, "env_steps": env_steps, "updates": agent.updates,
                   "sum_rate": NAN, "eval_reward": NAN, "eval_saturated_frac": NAN}
            if (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs:
                e0 = time.perf_counter()
                row.update(evaluate(agent, env, cfg.eval_batch, cfg.eval_steps, cfg.eval_seed))
                row["eval_s"] = time.perf_counter() - e0
            for k in ("train_sum_rate", "reward", "critic_reward", "reward_gap",
                      "reward_abs_gap", "saturated_frac", "substituted_frac"):
                row[k] = float(np.mean(col[k])) if col[k] else NAN
            reward_win.append(row["reward"])
            row["ma_reward"] = _mean_window(reward_win)
            if _finite(row["sum_rate"]):
                eval_win.append(row["sum_rate"])
            row["ma_sum_rate"] = _mean_window(eval_win)
            row["chi"] = agent.chi.chi if agent.chi is not None else 0.0
            for k in ("critic_loss", "actor_loss", "q_mean", "reward_loss", "state_loss"):
                row[k] = float(np.mean(upd[k])) if upd[k] else NAN
            for k, v in upd.items():
                if k.startswith("grad_"):
                    row[k] = float(np.mean(v))
            row.update(wall_s=wall, cpu_s=cpu, wall_total_s=wall_total, cpu_total_s=cpu_total)
            history.append(row)
            if (epoch + 1) % cfg.tb_every == 0 or epoch + 1 == cfg.epochs:
                for k, v in row.items():
                    if k != "epoch" and _finite(v):
                        tb.add_scalar(k, v, epoch + 1)
            if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
                save_run(epoch + 1)
            rate = f"{cfg.steps_per_epoch * cfg.n_envs / max(wall, 1e-9):,.0f} transitions/s"
            if _finite(row["sum_rate"]):
                rate += f"  sum rate {row['sum_rate']:.3g}"
            prog.update(task, advance=1, rate=rate)
    tb.close()
    agent.save(ckpt_dir / "agent.pt")
    write_csv(run_dir / "history.csv", history)
    summary = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in summarize(history, cfg).items()}
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    return history

"""Training loop of traffic-driven recurrent MAPPO (Zhang & Guo, Algorithm 1 and Sec. III-D),
top to bottom in one function (:func:`train`).

Per iteration: run the current policy on ``envs`` copies for ``rollout_slots`` slots
(default: one whole training episode of ``episode_slots`` slots, the copies reset and seeded by
the iteration; with ``rollout_slots < episode_slots`` the copies persist across iterations and
each episode is cut at ``episode_slots``, so the policy is updated several times per episode),
recording ``X_k``, actions, log-probabilities,
values and rewards; compute GAE (eq. 19); then ``epochs`` passes of minibatch updates over
chunks of ``seq_len`` slots (recurrent states re-computed from the stored chunk-start states):
clipped value loss (eq. 20) and clipped surrogate with entropy (eq. 22). ``mode="shared"``: one
actor and one critic for all agents trained on all agents' data (eqs. 23–24);
``mode="separate"``: agent k's networks are trained on agent k's trajectory and reward only
(per-member losses, per-member gradient clipping, per-member normalizers).

A copy whose queue exceeds ``queue_threshold`` packets ends its episode and restarts at once
with empty queues (as in the paper: "terminated and restarted"); recurrent states are zeroed
at every episode start, also inside training chunks.
Rewards are divided by a running standard deviation of the discounted return (per member).

Our choices where the paper is silent (config values): ``envs = 16`` copies, PPO clip 0.2 for
the ratio and the value, ``epochs = 5`` passes of ``minibatches = 4``, gradient-norm clip 10
per member, ``queue_threshold = 50`` packets, normalizer statistics updated every
``norm_every = 4`` slots with the weight of past statistics capped at ``norm_window = 2e5``
samples (they track the shrinking queues of a learning policy), periodic evaluation
(deterministic actions, ``eval_greedy``) on a fixed seed,
``threads = 0`` (torch's default thread count; tests and workers use 1), ``lr_schedule =
"constant"`` (Table II; ``"linear"`` anneals the rate to 0 over the run, which steadies late
training with Adam 1e-3).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from radiorl.agents.mappo.losses import clipped_surrogate, clipped_value_loss, gae
from radiorl.agents.mappo.model import (ActionSpec, ActorCritic, Layout, env_actions,
                                        evaluate_actions, sample_actions)
from radiorl.envs.base import check_number
from radiorl.envs.scenarios import get_scenario
from radiorl.nn import clip_grad_norm_per_member
from radiorl.runtime.checkpoints import load_checkpoint as _load_blob
from radiorl.runtime.checkpoints import save_checkpoint as _save_blob

CHECKPOINT_VERSION = 1


@dataclass
class MAPPOConfig:
    """Hyper-parameters (Table II defaults) and run settings."""

    mode: str = "shared"
    rnn: str = "lstm"
    hidden: int = 64
    layers: int = 2
    optimizer: str = "rmsprop"
    lr: float = 1e-4
    lr_schedule: str = "constant"
    gamma: float = 0.995
    gae_lambda: float = 0.95
    entropy: float = 0.01
    clip: float = 0.2
    value_clip: float = 0.2
    seq_len: int = 64
    epochs: int = 5
    minibatches: int = 4
    max_grad_norm: float = 10.0
    envs: int = 16
    episode_slots: int = 2000
    rollout_slots: int | None = None
    episodes: int = 100
    queue_threshold: float | None = 50.0
    obs_max_neighbors: int | None = None
    obs_max_devices: int | None = None
    eval_every: int = 5
    eval_slots: int = 2000
    eval_seed: int = 12345
    eval_greedy: bool = True
    checkpoint_every: int = 5
    norm_every: int = 4
    norm_window: float | None = 200_000.0
    threads: int = 0
    seed: int = 0

    def validate(self) -> "MAPPOConfig":
        if self.mode not in ("shared", "separate"):
            raise ValueError(f"mode must be 'shared' or 'separate', got {self.mode!r}")
        if self.rnn not in ("lstm", "gru"):
            raise ValueError(f"rnn must be 'lstm' or 'gru', got {self.rnn!r}")
        if self.lr_schedule not in ("constant", "linear"):
            raise ValueError(f"lr_schedule must be 'constant' or 'linear', got "
                             f"{self.lr_schedule!r}")
        if self.optimizer not in ("rmsprop", "adam"):
            raise ValueError(f"optimizer must be 'rmsprop' or 'adam', got {self.optimizer!r}")
        check_number("hidden", self.hidden, low=1, high=4096, integer=True)
        check_number("layers", self.layers, low=1, high=16, integer=True)
        check_number("lr", self.lr, low=0, high=1, low_open=True)
        check_number("gamma", self.gamma, low=0, high=1)
        check_number("gae_lambda", self.gae_lambda, low=0, high=1)
        check_number("entropy", self.entropy, low=0, high=10)
        check_number("clip", self.clip, low=0, high=10, low_open=True)
        check_number("value_clip", self.value_clip, low=0, high=1e9, low_open=True)
        check_number("seq_len", self.seq_len, low=1, high=100_000, integer=True)
        check_number("epochs", self.epochs, low=1, high=1000, integer=True)
        check_number("minibatches", self.minibatches, low=1, high=100_000, integer=True)
        check_number("max_grad_norm", self.max_grad_norm, low=0, low_open=True)
        check_number("envs", self.envs, low=1, high=4096, integer=True)
        check_number("episode_slots", self.episode_slots, low=1, integer=True)
        check_number("rollout_slots", self.rollout_slots, low=1, integer=True,
                     allow_none=True)
        check_number("episodes", self.episodes, low=1, integer=True)
        check_number("queue_threshold", self.queue_threshold, low=0, allow_none=True)
        check_number("eval_every", self.eval_every, low=1, integer=True)
        check_number("eval_slots", self.eval_slots, low=1, integer=True)
        check_number("checkpoint_every", self.checkpoint_every, low=1, integer=True)
        check_number("norm_every", self.norm_every, low=1, integer=True)
        check_number("norm_window", self.norm_window, low=1, allow_none=True)
        check_number("threads", self.threads, low=0, high=256, integer=True)
        check_number("seed", self.seed, low=0, integer=True)
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MAPPOConfig":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def make_train_env(scenario: str, load, cfg: MAPPOConfig, batch: int, slots: int,
                   threshold: bool = True):
    sc = get_scenario(scenario)
    over = {"episode_slots": slots, **obs_caps(cfg, sc.family)}
    if threshold and cfg.queue_threshold is not None:
        key = "queue_threshold_packets" if sc.family == "cellular" else "queue_threshold"
        over[key] = cfg.queue_threshold
    return sc.make_env(load, batch=batch, **over)


def obs_caps(cfg: MAPPOConfig, family: str) -> dict:
    """Env overrides fixing the observation layout (cellular networks; scalability runs)."""
    if family != "cellular":
        return {}
    return {k: getattr(cfg, k) for k in ("obs_max_neighbors", "obs_max_devices")
            if getattr(cfg, k) is not None}


def build(spec: ActionSpec, cfg: MAPPOConfig) -> tuple[ActorCritic, Layout]:
    shared = cfg.mode == "shared"
    layout = Layout(shared, spec.n_agents)
    net = ActorCritic(spec, layout.M, cfg.hidden, cfg.layers, cfg.rnn, cfg.norm_window)
    return net, layout


def member_masks(spec: ActionSpec, layout: Layout, batch: int) -> torch.Tensor:
    """``bool[M, N_m, n_choices]`` valid device choices in member layout."""
    m = spec.device_mask()                                       # [K, C]
    return layout.to_m(m[None].expand(batch, *m.shape))


# --------------------------------------------------------------------------- checkpoints
def save_checkpoint(path, net, opt, cfg: MAPPOConfig, spec: ActionSpec, scenario: str, load,
                    episode: int, history: list) -> Path:
    """Atomic ``torch.save`` of plain tensors/containers (loadable with ``weights_only``)."""
    return _save_blob(path, {
        "version": CHECKPOINT_VERSION, "algo": "mappo", "config": cfg.to_dict(),
        "spec": spec.to_dict(), "scenario": scenario, "load": str(load),
        "episode": int(episode), "model": net.state_dict(),
        "optimizer": opt.state_dict() if opt is not None else None,
        "history": json.dumps(history)})


def load_checkpoint(path) -> dict:
    """A MAPPO checkpoint, loaded with ``weights_only=True`` (clear error otherwise)."""
    return _load_blob(path, "mappo", CHECKPOINT_VERSION, "MAPPO")


def check_spec(blob: dict, spec: ActionSpec, where: str, shared: bool = False) -> None:
    """Raise naming the first field where the checkpoint's network layout differs (a shared
    policy only needs the per-agent layout to match, not the number of agents)."""
    stored = ActionSpec(**{**blob["spec"], "local_sizes": tuple(blob["spec"]["local_sizes"])})
    k = stored.mismatch(spec, shared)
    if k is not None:
        raise ValueError(f"checkpoint from scenario {blob['scenario']!r} does not fit "
                         f"{where}: {k} is {stored.to_dict()[k]!r} in the checkpoint, "
                         f"{spec.to_dict()[k]!r} here")


# --------------------------------------------------------------------------- training
@dataclass
class Rollout:
    obs: torch.Tensor          # [T, M, N, D] normalized
    dev: torch.Tensor          # [T, M, N, H]
    lv: torch.Tensor | None
    logp: torch.Tensor         # [T, M, N]
    value: torch.Tensor
    reward: torch.Tensor
    starts: torch.Tensor       # [T, M, N] 1 where an episode starts (recurrent state zeroed)
    h0a: torch.Tensor          # [C, S, M, N, Hd] actor states at chunk starts
    h0c: torch.Tensor
    stats: dict = field(default_factory=dict)


def collect_rollout(env, net: ActorCritic, layout: Layout, spec: ActionSpec, cfg: MAPPOConfig,
                    seed: int, gen: torch.Generator, ret_acc: torch.Tensor,
                    carry: dict | None = None) -> Rollout:
    """Run the current policy on ``env.batch`` copies for ``episode_slots`` slots. A copy whose
    queue crosses the threshold ends its episode: it restarts at once with empty queues
    (``env.restart_copies``) and zeroed recurrent states, so no slot of the rollout is
    wasted; the ended step bootstraps with the value of the state it ended in."""
    B, L = env.batch, cfg.seq_len
    T = cfg.rollout_slots or cfg.episode_slots
    mask = member_masks(spec, layout, B)
    M, N = layout.M, mask.shape[1]
    if carry is None or "st" not in carry:
        obs, st = env.reset(seed=seed)
        ha, hc = net.initial_state(N)
        start = torch.ones(M, N)
        ep_len = np.zeros(B, np.int64)
        ret_acc.zero_()
    else:
        obs, st, ha, hc = carry["obs"], carry["st"], carry["ha"], carry["hc"]
        start, ep_len = carry["start"], carry["ep_len"]
    rec = {k: [] for k in ("obs", "dev", "lv", "logp", "value", "reward", "start", "done",
                           "boot")}
    h0a, h0c = [], []
    delivered = delay_sum = 0.0
    n_term = 0
    zero = torch.zeros(M, N)
    with torch.no_grad():
        for t in range(T):
            if t % L == 0:
                h0a.append(ha)
                h0c.append(hc)
            x = layout.to_m(torch.as_tensor(obs, dtype=torch.float32))
            if t % cfg.norm_every == 0:
                net.obs_norm.update(x)
            xn = net.obs_norm(x)
            logits, ha = net.actor_step(xn, ha)
            value, hc = net.critic_step(xn, hc)
            dev, lv, logp = sample_actions(net, logits, mask, generator=gen)
            act = env_actions(spec, layout.from_m(dev, B).numpy(),
                              None if lv is None else layout.from_m(lv, B).numpy())
            obs, rew, term, trunc, info, st = env.step(st, act)
            r = layout.to_m(torch.as_tensor(rew, dtype=torch.float32))
            ret_acc.mul_(cfg.gamma).add_(r)
            if t % cfg.norm_every == 0:
                net.ret_norm.update(ret_acc[..., None])
            term = np.asarray(term, bool)
            ep_len += 1
            n_term += int(term.sum())
            if carry is not None:                       # episodes cut at episode_slots
                term = term | (ep_len >= cfg.episode_slots)
            done = zero
            boot = zero
            if term.any():
                ep_len[term] = 0
                done = layout.to_m(torch.as_tensor(
                    np.repeat(term[:, None], spec.n_agents, 1), dtype=torch.float32))
                xe = net.obs_norm(layout.to_m(torch.as_tensor(obs, dtype=torch.float32)))
                boot, _ = net.critic_step(xe, hc)                 # value where it ended
                env.restart_copies(st, term)
                obs = env.observe(st)
                keep = (1.0 - done)[None, ..., None]
                ha, hc = ha * keep, hc * keep
                ret_acc.mul_(1.0 - done)
            for k, v in (("obs", xn), ("dev", dev), ("lv", lv), ("logp", logp),
                         ("value", value), ("reward", r), ("start", start), ("done", done),
                         ("boot", boot)):
                rec[k].append(v)
            start = done
            d = info["deliveries"]
            delivered += len(d.delay_slots)
            delay_sum += float(d.delay_slots.sum())
        x = layout.to_m(torch.as_tensor(obs, dtype=torch.float32))
        last_value, _ = net.critic_step(net.obs_norm(x), hc)
    if carry is not None:
        carry.update(obs=obs, st=st, ha=ha, hc=hc, start=start, ep_len=ep_len)
    scale = (net.ret_norm.var[:, 0].float() + 1e-8).sqrt().view(M, 1)
    raw = torch.stack(rec["reward"])
    reward = raw / scale
    val = torch.stack(rec["value"])
    adv, ret = gae(reward, val, last_value, torch.stack(rec["done"]), torch.stack(rec["boot"]),
                   cfg.gamma, cfg.gae_lambda)
    out = Rollout(torch.stack(rec["obs"]), torch.stack(rec["dev"]),
                  torch.stack(rec["lv"]) if rec["lv"][0] is not None else None,
                  torch.stack(rec["logp"]), val, reward, torch.stack(rec["start"]),
                  torch.stack(h0a), torch.stack(h0c))
    out.stats = {"adv": adv, "ret": ret, "raw_reward": float(raw.mean()),
                 "terminated_copies": n_term,
                 "train_delay": float(delay_sum / max(delivered, 1) * (env.slot_ms or 1.0))}
    return out


def _chunks(x: torch.Tensor, L: int) -> torch.Tensor:
    """``[T, M, N, ...]`` → ``[M, N·C, L, ...]`` with ``C = ceil(T/L)`` (chunk-major within
    each sequence); the last chunk is zero-padded (its padded steps have ``valid = 0``)."""
    T, M, N = x.shape[:3]
    C = -(-T // L)
    if C * L != T:
        x = torch.cat([x, x.new_zeros(C * L - T, *x.shape[1:])])
    y = x.reshape(C, L, M, N, *x.shape[3:])
    y = y.permute(2, 3, 0, 1, *range(4, y.dim()))            # [M, N, C, L, ...]
    return y.reshape(M, N * C, L, *x.shape[3:])


def _state_chunks(h: torch.Tensor) -> torch.Tensor:
    """``[C, S, M, N, Hd]`` → ``[S, M, N·C, Hd]`` matching :func:`_chunks` order."""
    C, S, M, N, Hd = h.shape
    return h.permute(1, 2, 3, 0, 4).reshape(S, M, N * C, Hd)


def ppo_update(net: ActorCritic, opt, ro: Rollout, spec: ActionSpec, layout: Layout,
               cfg: MAPPOConfig, gen: torch.Generator, batch: int) -> dict:
    L = cfg.seq_len
    adv = ro.stats["adv"]
    # per-member advantage normalization
    a_flat = adv.transpose(0, 1).reshape(adv.shape[1], -1)
    adv_n = (adv - a_flat.mean(1).view(1, -1, 1)) / (a_flat.std(1).view(1, -1, 1) + 1e-8)
    data = {"obs": _chunks(ro.obs, L), "dev": _chunks(ro.dev, L), "logp": _chunks(ro.logp, L),
            "value": _chunks(ro.value, L), "ret": _chunks(ro.stats["ret"], L),
            "adv": _chunks(adv_n, L), "valid": _chunks(torch.ones_like(ro.logp), L),
            "starts": _chunks(ro.starts, L)}
    if ro.lv is not None:
        data["lv"] = _chunks(ro.lv, L)
    h0a, h0c = _state_chunks(ro.h0a), _state_chunks(ro.h0c)
    S = data["obs"].shape[1]
    mask_all = member_masks(spec, layout, batch)                  # [M, N, C]
    N = mask_all.shape[1]
    seq_mask = mask_all.repeat_interleave(S // N, dim=1)          # [M, S, C]
    stats = {"policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "updates": 0}
    for _ in range(cfg.epochs):
        perm = torch.randperm(S, generator=gen)
        for idx in perm.chunk(cfg.minibatches):
            mb = {k: v[:, idx] for k, v in data.items()}
            ha, _ = net.actor_rnn.forward_seq(mb["obs"], h0a[:, :, idx], mb["starts"])
            hc, _ = net.critic_rnn.forward_seq(mb["obs"], h0c[:, :, idx], mb["starts"])
            M_, nb = ha.shape[:2]
            logits = net.actor_mlp(ha.reshape(M_, nb * L, -1)).reshape(M_, nb, L, -1)
            values = net.critic_mlp(hc.reshape(M_, nb * L, -1)).reshape(M_, nb, L)
            dmask = seq_mask[:, idx][:, :, None, :]
            logp, ent = evaluate_actions(net, logits, dmask, mb["dev"], mb.get("lv"))
            w = mb["valid"]
            pl = clipped_surrogate(logp, mb["logp"], mb["adv"], ent, cfg.clip, cfg.entropy, w)
            vl = clipped_value_loss(values, mb["value"], mb["ret"], cfg.value_clip, w)
            opt.zero_grad()
            (pl + vl).backward()
            clip_grad_norm_per_member(net.parameters(), cfg.max_grad_norm)
            opt.step()
            stats["policy_loss"] += float(pl.detach())
            stats["value_loss"] += float(vl.detach())
            stats["entropy"] += float((ent.detach() * w).sum() / w.sum().clamp(min=1))
            stats["updates"] += 1
    n = max(stats.pop("updates"), 1)
    return {k: v / n for k, v in stats.items()}


def make_optimizer(net: ActorCritic, cfg: MAPPOConfig):
    params = [p for n, p in net.named_parameters()]
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.99, eps=1e-5)
    return torch.optim.Adam(params, lr=cfg.lr, eps=1e-5)


def evaluate_policy(net, layout, spec, scenario, load, cfg, slots, seed) -> dict:
    """Mean delay and reward of the policy on one copy (no termination); deterministic
    (most likely actions) if ``cfg.eval_greedy``, else sampled."""
    from radiorl.agents.mappo.policy import MAPPOPolicy
    from radiorl.evaluation.runner import rollout
    env = make_train_env(scenario, load, cfg, 1, slots, threshold=False)
    pol = MAPPOPolicy(net, layout, spec, greedy=cfg.eval_greedy)
    m, t_act = rollout(env, pol, seed, slots)
    row = m.summary(env.slot_ms)[0]
    return {"eval_mean_delay": float(row["mean_delay"]),
            "eval_mean_reward": float(row["mean_reward"]),
            "eval_unstable": bool(row["unstable"]),
            "eval_ms_per_decision": 1e3 * t_act / max(m.slots, 1)}


def train(scenario: str, load, cfg: MAPPOConfig, run_dir, resume: str | None = None,
          show_progress: bool = True, log=print) -> dict:
    """Train MAPPO on ``scenario`` at ``load``; writes ``run_dir/checkpoints/{last,policy}.pt``
    (``policy.pt``: the final actor; ``best.pt``: the one with the lowest periodic-evaluation
    mean delay, among stable evaluations),
    ``run_dir/training.csv``, TensorBoard logs in ``run_dir/tb`` and a training-curve PNG.
    ``resume``: a checkpoint (or a run folder holding ``checkpoints/last.pt``) to continue."""
    from rich.progress import Progress
    from torch.utils.tensorboard import SummaryWriter
    from radiorl.runtime.executor import progress_bar
    from radiorl.runtime.files import write_csv

    cfg.validate()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run_dir = Path(run_dir)
    sc = get_scenario(scenario)
    sc.resolve_load(load)
    persistent = cfg.rollout_slots is not None and cfg.rollout_slots < cfg.episode_slots
    env = make_train_env(scenario, load, cfg, cfg.envs,
                         10 ** 9 if persistent else cfg.episode_slots)
    carry = {} if persistent else None
    spec = ActionSpec.of(env)
    torch.manual_seed(cfg.seed)                  # seeded initial weights: same seed, same run
    net, layout = build(spec, cfg)
    opt = make_optimizer(net, cfg)
    start, history = 0, []
    if resume is not None:
        from radiorl.runtime.checkpoints import resume_path
        rp = resume_path(resume)
        blob = load_checkpoint(rp)
        check_spec(blob, spec, f"scenario {scenario}")
        stored = MAPPOConfig.from_dict(blob["config"])
        for k in ("mode", "rnn", "hidden", "layers", "optimizer"):
            if getattr(stored, k) != getattr(cfg, k):
                raise ValueError(f"--resume: checkpoint has {k}={getattr(stored, k)!r}, this run "
                                 f"{k}={getattr(cfg, k)!r}")
        if blob["scenario"] != scenario or blob["load"] != str(load):
            raise ValueError(f"--resume: checkpoint was trained on {blob['scenario']} at load "
                             f"{blob['load']}, not {scenario} at {load}")
        net.load_state_dict(blob["model"])
        opt.load_state_dict(blob["optimizer"])
        start = blob["episode"]
        history = json.loads(blob["history"])
        log(f"resumed from {rp} at episode {start}")
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
    tb = SummaryWriter(str(run_dir / "tb"))
    gen = torch.Generator()
    ret_acc = torch.zeros(layout.M, env.batch * spec.n_agents // layout.M)
    t_start = time.perf_counter()
    best = min((h["eval_mean_delay"] for h in history if "eval_mean_delay" in h
                and not h.get("eval_unstable")), default=float("inf"))
    with progress_bar(transient=False) as prog:
        tid = prog.add_task(f"MAPPO {cfg.mode} on {scenario} ({load})", total=cfg.episodes,
                            completed=start, rate="", visible=show_progress)
        for ep in range(start, cfg.episodes):
            t0 = time.perf_counter()
            if cfg.lr_schedule == "linear":
                for g in opt.param_groups:
                    g["lr"] = cfg.lr * (1.0 - ep / cfg.episodes)
            gen.manual_seed(cfg.seed * 1_000_003 + ep)
            torch.manual_seed(cfg.seed * 1_000_003 + ep)
            ro = collect_rollout(env, net, layout, spec, cfg, cfg.seed * 1_000_003 + ep, gen,
                                 ret_acc, carry)
            t_roll = time.perf_counter() - t0
            upd = ppo_update(net, opt, ro, spec, layout, cfg, gen, env.batch)
            per_it = (cfg.rollout_slots or cfg.episode_slots) * cfg.envs
            row = {"episode": ep + 1, "slots": (ep + 1) * per_it,
                   "wall_s": time.perf_counter() - t_start + (history[-1]["wall_s"]
                                                              if history and start else 0.0),
                   "train_reward": ro.stats["raw_reward"],
                   "train_mean_delay": ro.stats["train_delay"],
                   "terminated_copies": ro.stats["terminated_copies"],
                   "rollout_s": t_roll, "update_s": time.perf_counter() - t0 - t_roll, **upd}
            if (ep + 1) % cfg.eval_every == 0 or ep + 1 == cfg.episodes:
                row.update(evaluate_policy(net, layout, spec, scenario, load, cfg,
                                           cfg.eval_slots, cfg.eval_seed))
            history.append(row)
            if "eval_mean_delay" in row and not row["eval_unstable"] and \
                    row["eval_mean_delay"] < best:
                best = row["eval_mean_delay"]
                save_checkpoint(run_dir / "checkpoints" / "best.pt", net, None, cfg, spec,
                                scenario, load, ep + 1, history)
            for k, v in row.items():
                if isinstance(v, (int, float)) and k != "episode":
                    tb.add_scalar(k, v, ep + 1)
            if (ep + 1) % cfg.checkpoint_every == 0 or ep + 1 == cfg.episodes:
                save_checkpoint(run_dir / "checkpoints" / "last.pt", net, opt, cfg, spec,
                                scenario, load, ep + 1, history)
                write_csv(run_dir / "training.csv", history)
            prog.update(tid, advance=1,
                        rate=f"{per_it / (time.perf_counter() - t0):,.0f} slots/s")
    tb.close()
    save_checkpoint(run_dir / "checkpoints" / "policy.pt", net, None, cfg, spec, scenario, load,
                    cfg.episodes, history)
    write_csv(run_dir / "training.csv", history)
    plot_training(history, run_dir / "figures" / "training_curve.png",
                  f"MAPPO {cfg.mode}, {scenario} ({load})")
    return {"history": history, "checkpoint": str(run_dir / "checkpoints" / "policy.pt")}


def plot_training(history: list, path, title: str = "") -> Path:
    """Reward curve (paper Figs. 12–13): training reward per episode and evaluation reward."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from radiorl.evaluation.report import _save
    fig, ax = plt.subplots(1, 2, figsize=(10, 3.6))
    x = [h["slots"] for h in history]
    ax[0].plot(x, [h["train_reward"] for h in history], label="training (per-agent mean)")
    ev = [h for h in history if "eval_mean_reward" in h]
    if ev:
        ax[0].plot([h["slots"] for h in ev], [h["eval_mean_reward"] for h in ev], "o-",
                   label="evaluation")
        ax[1].plot([h["slots"] for h in ev], [h["eval_mean_delay"] for h in ev], "o-")
    ax[0].set_xlabel("training slots (all copies)")
    ax[0].set_ylabel("reward per slot")
    ax[0].legend()
    ax[1].set_xlabel("training slots (all copies)")
    ax[1].set_ylabel("evaluation mean delay")
    for a in ax:
        a.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)

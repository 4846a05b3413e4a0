"""The D2RL agent: DDPG with a double critic and target networks whose actor (AENPNN), reward
(RENPNN) and state (SENPNN) may be diffusion models (``papers/d2rl.txt`` Sec. IV-C,
Algorithms 1-2). See the package docstring for the choices made where the paper is silent.

Example:
    >>> import numpy as np
    >>> cfg = D2RLConfig(actor="gdm", reward="designed-gdm", hidden=32, batch_size=8)
    >>> agent = D2RLAgent(cfg, obs_dim=5, action_dim=3)
    >>> agent.act(np.zeros((4, 5), np.float32)).shape
    (4, 3)
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import numpy as np
import torch

from radiorl.agents.d2rl.config import ARCH_FIELDS, RUN_FIELDS, D2RLConfig
from radiorl.agents.d2rl.networks import (DiffusionActor, DoubleCritic, MLPActor,
                                          RewardGenerator, RewardMLP, RunningNorm,
                                          StateExplorer, SubstituteProbability)
from radiorl.diffusion.schedules import NoiseSchedule
from radiorl.runtime.checkpoints import load_checkpoint, save_checkpoint

ALGO = "d2rl"
CHECKPOINT_VERSION = 1


def make_schedule(cfg: D2RLConfig) -> NoiseSchedule:
    """The P-step noise schedule shared by the three diffusion networks."""
    if cfg.schedule == "vp":
        return NoiseSchedule.make("vp", cfg.diffusion_steps, beta_min=0.1,
                                  beta_max=cfg.vp_beta_max)
    return NoiseSchedule.make(cfg.schedule, cfg.diffusion_steps)


def _adam(module: torch.nn.Module, lr: float, wd: float) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=lr, weight_decay=wd, fused=True)


def _frozen_copy(module: torch.nn.Module) -> torch.nn.Module:
    t = copy.deepcopy(module)
    for p in t.parameters():
        p.requires_grad_(False)
    return t


def _grad_abs_means(layers, prefix: str, grads: dict | None = None) -> dict:
    """``{"grad_w/<prefix>/<layer>": mean|dW|, "grad_b/...": mean|db|}`` for ``layers`` from a
    network's ``layers()``; ``grads`` maps parameters to gradients (default ``p.grad``).

    ``abs().sum()`` per tensor, one ``stack`` and one transfer to Python: 0.62 instead of
    0.89 ms per update (with ``_foreach_norm(g, 1)``) for the full D2RL agent's 56 tensors
    (``linalg.vector_norm(g, 1)`` is ~4x slower than ``abs().sum()`` on a 256 x 256 float32
    tensor on this CPU)."""
    vals, names, sizes = [], [], []
    for name, w, b in layers:
        for tag, ref in (("grad_w", w), ("grad_b", b)):
            p, m = ref if isinstance(ref, tuple) else (ref, None)
            g = grads.get(p) if grads is not None else p.grad
            if g is None:
                continue
            if m is not None:
                g = g[m]                                   # a view of one ensemble member
            vals.append(g.abs().sum())
            sizes.append(g.numel())
            names.append(f"{tag}/{prefix}/{name}")
    if not vals:
        return {}
    l1 = torch.stack(vals).tolist()                                   # sum |g| per tensor
    return {n: v / s for n, v, s in zip(names, l1, sizes)}


def _with_precision(method):
    """Run ``method`` under ``torch.set_float32_matmul_precision(config.matmul_precision)``,
    restoring the previous global value afterwards; with ``config.flush_denormal`` subnormal
    floats are flushed to zero during the call and IEEE subnormals (the process default) are
    back on after it, so nothing else in the process computes differently."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        flush = self.config.flush_denormal
        want = self.config.matmul_precision
        old = torch.get_float32_matmul_precision()
        if flush:
            torch.set_flush_denormal(True)
        if want != old:
            torch.set_float32_matmul_precision(want)
        try:
            return method(self, *args, **kwargs)
        finally:
            if want != old:
                torch.set_float32_matmul_precision(old)
            if flush:
                torch.set_flush_denormal(False)
    return wrapper


class D2RLAgent:
    """Actor, double critic (+ targets), optional reward model and state explorer.

    Args:
        config: a :class:`D2RLConfig`.
        obs_dim, action_dim: widths of the environment's observation and action (in [-1, 1]).

    Attributes:
        actor, actor_target: :class:`DiffusionActor` (``config.actor = "gdm"``) or
            :class:`MLPActor`.
        critic, critic_target: :class:`DoubleCritic`.
        reward_model: :class:`RewardGenerator` (``"gdm"``, ``"designed-gdm"``),
            :class:`RewardMLP` (``"designed-mlp"``) or None.
        state_model: :class:`StateExplorer` (``config.state_exploration`` set) or None.
        chi: :class:`SubstituteProbability` or None.
        reward_norm, obs_norm: running statistics standardizing the reward model's target and
            the SENPNN's states (updated by :meth:`observe`).
        generator: the torch.Generator of every random draw of the agent (chain noise,
            exploration, batch sampling), seeded from ``config.seed``.
        updates: number of :meth:`update` calls so far.

    Weights are initialized from ``config.seed`` (the global torch RNG is left untouched).
    """

    def __init__(self, config: D2RLConfig, obs_dim: int, action_dim: int):
        if not isinstance(config, D2RLConfig):
            raise ValueError(f"config must be a D2RLConfig, got {type(config).__name__}")
        for name, v in (("obs_dim", obs_dim), ("action_dim", action_dim)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        cfg = self.config = config
        self.obs_dim, self.action_dim = int(obs_dim), int(action_dim)
        S, A, H = self.obs_dim, self.action_dim, cfg.hidden
        self.schedule = make_schedule(cfg)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            if cfg.actor == "gdm":
                self.actor = DiffusionActor(S, A, self.schedule, H, cfg.actor_layers,
                                            cfg.time_dim, cfg.activation, cfg.gdm_x0_bound,
                                            cfg.fused_chain)
            else:
                self.actor = MLPActor(S, A, H, cfg.actor_layers, cfg.activation)
            self.critic = DoubleCritic(S, A, cfg.critic_hidden or H, cfg.critic_layers,
                                       cfg.activation, cfg.critic_layer_norm)
            self.reward_model = None
            if cfg.reward == "designed-mlp":
                self.reward_model = RewardMLP(S, A, H, cfg.reward_layers, cfg.activation)
            elif cfg.reward in ("gdm", "designed-gdm"):
                self.reward_model = RewardGenerator(S, A, self.schedule, H, cfg.reward_layers,
                                                    cfg.time_dim, cfg.activation,
                                                    cfg.reward_clip)
            self.state_model = None
            if cfg.state_exploration is not None:
                self.state_model = StateExplorer(S, self.schedule, H, cfg.state_layers,
                                                 cfg.time_dim, cfg.activation, cfg.state_clip,
                                                 cfg.state_noise_steps)
        self.actor_target = _frozen_copy(self.actor)
        self.critic_target = _frozen_copy(self.critic)
        self.actor_params = list(self.actor.parameters())
        # (targets, sources) of the soft update, listed once (loading copies into the same
        # parameters, so the lists stay valid)
        self._soft_pairs = (list(self.actor_target.parameters()) +
                            list(self.critic_target.parameters()),
                            self.actor_params + list(self.critic.parameters()))
        wd = cfg.weight_decay
        self.actor_opt = _adam(self.actor, cfg.actor_lr, wd)
        self.critic_opt = _adam(self.critic, cfg.critic_lr, wd)
        self.reward_opt = (_adam(self.reward_model, cfg.reward_lr, wd)
                           if self.reward_model is not None else None)
        self.state_opt = (_adam(self.state_model, cfg.state_lr, wd)
                          if self.state_model is not None else None)
        self.chi = (SubstituteProbability(*cfg.state_exploration, cfg.state_loss_threshold)
                    if cfg.state_exploration is not None else None)
        self.reward_norm = RunningNorm(1)
        self.obs_norm = RunningNorm(S)
        self.generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 17)
        self.updates = 0
        self._fns = None

    # ------------------------------------------------------------------ acting
    def _obs(self, obs) -> torch.Tensor:
        t = torch.as_tensor(obs, dtype=torch.float32)
        if t.ndim != 2 or t.shape[1] != self.obs_dim:
            raise ValueError(f"obs: expected shape [B, {self.obs_dim}], got {tuple(t.shape)}")
        return t

    @_with_precision
    @torch.no_grad()
    def explore(self, obs, generator: torch.Generator | None = None) -> dict:
        """The collection step's action (Algorithm 2, line 5), without gradients:

        1. state exploration (Algorithm 1): each row's actor input is, with probability chi, a
           synthetic state from the SENPNN instead of the observed one (the transition stored
           in the buffer keeps the *observed* state, see the package docstring);
        2. the actor's action ``policy_action``;
        3. epsilon-greedy: with probability ``epsilon`` a row gets ``N(0, noise_std^2)`` noise,
           then the action is clipped to ``[-1, 1]``.

        Returns ``{"action", "policy_action" [B, A], "substituted" bool [B], "noised" bool [B]}``.
        """
        g = self.generator if generator is None else generator
        x = self._obs(obs)
        B = x.shape[0]
        sub = torch.zeros(B, dtype=torch.bool)
        if self.state_model is not None:
            sub = torch.rand(B, generator=g) < self.chi.chi
            if bool(sub.any()):
                s_n = self.obs_norm.normalize(x[sub])
                x = x.clone()
                x[sub] = self.obs_norm.denormalize(self.state_model(s_n, g))
        pa = self.actor(x, g)
        noised = torch.rand(B, generator=g) < self.config.epsilon
        noise = torch.randn(pa.shape, generator=g) * self.config.noise_std
        a = torch.where(noised.unsqueeze(-1), (pa + noise).clamp(-1.0, 1.0), pa)
        return {"action": a, "policy_action": pa, "substituted": sub, "noised": noised}

    @_with_precision
    @torch.no_grad()
    def act(self, obs, explore: bool = False, generator: torch.Generator | None = None):
        """Action ``[B, action_dim]`` in ``[-1, 1]`` for observations ``[B, obs_dim]``.

        ``explore=False``: the policy itself (deterministic for the MLP actor; the diffusion
        actor draws its chain noise from ``generator``, so a seeded generator gives the same
        action). ``explore=True``: :meth:`explore` (state substitution and epsilon-greedy).
        Returns a numpy float32 array for numpy input, a tensor otherwise."""
        a = (self.explore(obs, generator)["action"] if explore
             else self.actor(self._obs(obs), self.generator if generator is None else generator))
        return a if isinstance(obs, torch.Tensor) else a.numpy()

    # ------------------------------------------------------------------ rewards
    def observe(self, obs: torch.Tensor, target: torch.Tensor) -> None:
        """Update the running statistics with collected states and design targets."""
        if self.reward_model is not None:
            self.reward_norm.update(target.reshape(-1, 1))
        if self.state_model is not None:
            self.obs_norm.update(obs)

    @_with_precision
    @torch.no_grad()
    def learned_reward(self, obs, action, generator: torch.Generator | None = None):
        """The reward model's reward ``[B]`` on the real reward's scale (None without one)."""
        if self.reward_model is None:
            return None
        g = self.generator if generator is None else generator
        r_n = self.reward_model(obs, action, g)
        return self.reward_norm.denormalize(r_n.unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()
    def design_reward(self, obs, action, target, generator: torch.Generator | None = None):
        """The reward the critic learns from, for ``config.reward`` (``target`` = C for
        ``"raw"``, C - R' otherwise). Returns ``(reward [B], learned [B] or None)``."""
        learned = self.learned_reward(obs, action, generator)
        if learned is None:
            return target, None
        if self.config.reward == "designed-gdm":
            w = self.config.reward_mix
            return (1.0 - w) * target + w * learned, learned
        return learned, learned

    # ------------------------------------------------------------------ learning
    @_with_precision
    def update(self, batch: dict, grad_stats: bool = True) -> dict:
        """One gradient step of every network on a replay batch.

        Args:
            batch: tensors ``obs [N, S]``, ``action [N, A]``, ``next_obs [N, S]``,
                ``terminated [N]`` (float 0/1), ``target [N]`` (the design's real reward: C or
                C - R'), ``reward [N]`` (what the critic learns from, see :meth:`design_reward`).
            grad_stats: also report the mean |gradient| of weights and biases per layer.
        Returns:
            ``{"critic_loss", "actor_loss", "q_mean", ["reward_loss"], ["state_loss", "chi"],
            "grad_w/<net>/<layer>", "grad_b/...": float}``.
        """
        cfg, g = self.config, self.generator
        obs, act, target = batch["obs"], batch["action"], batch["target"]
        reward = batch["reward"]
        if cfg.reward_relabel and self.reward_model is not None:
            reward, _ = self.design_reward(obs, act, target, g)
        out: dict = {}
        fns = self._loss_fns()
        # ---- critics: y = r + gamma (1 - terminated) min_i Q'_i(s', pi'(s'))
        with torch.no_grad():
            y = reward
            if cfg.gamma > 0:
                nxt = batch["next_obs"]
                q_next = self.critic_target(nxt, self.actor_target(nxt, g)).min(0).values
                y = reward + cfg.gamma * (1.0 - batch["terminated"]) * q_next
        critic_loss, q = fns["critic"](obs, act, y)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        if grad_stats:
            out.update(_grad_abs_means(self.critic.layers(), "critic"))
        self.critic_opt.step()
        # ---- actor: maximize min(Q1, Q2)(s, pi(s)) through the chain (eq. (21))
        actor_loss, a_pi = fns["actor"](obs, self.actor.draw_noise(obs.shape[0], g, obs.dtype))
        grads = torch.autograd.grad(actor_loss, self.actor_params)
        for p, gr in zip(self.actor_params, grads):
            p.grad = gr
        if grad_stats:
            out.update(_grad_abs_means(self.actor.layers(), "actor"))
        self.actor_opt.step()
        out["critic_loss"] = float(critic_loss.detach())
        out["actor_loss"] = float(actor_loss.detach())
        out["q_mean"] = float(q.detach().mean())
        out["saturated_frac_batch"] = float((a_pi.detach().abs() > 0.99).float().mean())
        # ---- reward model: noise matching (RENPNN) or regression (MLP) on the normalized target
        if self.reward_model is not None:
            r_n = self.reward_norm.normalize(target.unsqueeze(-1)).squeeze(-1)
            loss = fns["reward"](obs, act, r_n, self.reward_model.draw(obs.shape[0], g))
            self.reward_opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_stats:
                out.update(_grad_abs_means(self.reward_model.layers(), "reward"))
            self.reward_opt.step()
            out["reward_loss"] = float(loss.detach())
        # ---- state explorer: noise matching on real states; chi of Algorithm 1
        if self.state_model is not None:
            loss = fns["state"](self.obs_norm.normalize(obs),
                                self.state_model.draw(obs.shape[0], g))
            self.state_opt.zero_grad(set_to_none=True)
            loss.backward()
            if grad_stats:
                out.update(_grad_abs_means(self.state_model.layers(), "state"))
            self.state_opt.step()
            out["state_loss"] = float(loss.detach())
            out["chi"] = self.chi.update(out["state_loss"])
        # ---- targets: theta' <- tau theta + (1 - tau) theta' (eq. (24))
        self.soft_update()
        self.updates += 1
        return out

    def _loss_fns(self) -> dict:
        """The update's losses as functions of tensors only (the caller makes every random draw,
        in the eager order): ``critic(obs, act, y) -> (loss, q [2, N])``, ``actor(obs, noise)
        -> (loss, a_pi)``, ``reward(obs, act, r_n, draws)``, ``state(s_n, draws)``; each
        wrapped once in ``torch.compile`` (static shapes) when ``config.compile``."""
        if self._fns is None:
            def critic(obs, act, y):
                q = self.critic(obs, act)
                return (q - y.unsqueeze(0)).pow(2).mean(1).sum(), q

            def actor(obs, noise):
                a = self.actor(obs, None, noise)
                return -self.critic.value_of_action(obs, a).min(0).values.mean(), a

            fns = {"critic": critic, "actor": actor}
            if self.reward_model is not None:
                fns["reward"] = lambda obs, act, r_n, draws: self.reward_model.loss(
                    obs, act, r_n, None, draws)
            if self.state_model is not None:
                fns["state"] = lambda s_n, draws: self.state_model.loss(s_n, None, draws)
            if self.config.compile:
                fns = {k: torch.compile(f, dynamic=False) for k, f in fns.items()}
            self._fns = fns
        return self._fns

    def set_lr_scale(self, scale: float) -> None:
        """Every optimizer's learning rate = its config value x ``scale``
        (``D2RLConfig.lr_scale``; the training loop calls it at every epoch)."""
        base = {"actor": self.config.actor_lr, "critic": self.config.critic_lr,
                "reward": self.config.reward_lr, "state": self.config.state_lr}
        for name, opt in self._optimizers().items():
            for group in opt.param_groups:
                group["lr"] = base[name] * float(scale)

    @torch.no_grad()
    def soft_update(self) -> None:
        torch._foreach_lerp_(*self._soft_pairs, self.config.tau)

    # ------------------------------------------------------------------ persistence
    def _modules(self) -> dict:
        mods = {"actor": self.actor, "actor_target": self.actor_target, "critic": self.critic,
                "critic_target": self.critic_target, "reward_norm": self.reward_norm,
                "obs_norm": self.obs_norm}
        if self.reward_model is not None:
            mods["reward_model"] = self.reward_model
        if self.state_model is not None:
            mods["state_model"] = self.state_model
        return mods

    def _optimizers(self) -> dict:
        opts = {"actor": self.actor_opt, "critic": self.critic_opt, "reward": self.reward_opt,
                "state": self.state_opt}
        return {k: v for k, v in opts.items() if v is not None}

    def state_dict(self) -> dict:
        """Everything needed to continue exactly: weights, targets, optimizer states, running
        statistics, chi, the generator state and the update count (plain tensors/containers)."""
        return {"obs_dim": self.obs_dim, "action_dim": self.action_dim,
                "modules": {k: m.state_dict() for k, m in self._modules().items()},
                "optimizers": {k: o.state_dict() for k, o in self._optimizers().items()},
                "generator": self.generator.get_state(),
                "chi": None if self.chi is None else self.chi.chi,
                "updates": self.updates}

    def load_state_dict(self, sd: dict) -> None:
        if (sd["obs_dim"], sd["action_dim"]) != (self.obs_dim, self.action_dim):
            raise ValueError(f"agent state has obs_dim={sd['obs_dim']}, action_dim="
                             f"{sd['action_dim']}; this agent has obs_dim={self.obs_dim}, "
                             f"action_dim={self.action_dim}")
        mods = self._modules()
        if set(sd["modules"]) != set(mods):
            raise ValueError(f"agent state holds networks {sorted(sd['modules'])}, this agent "
                             f"{sorted(mods)}")
        for k, m in mods.items():
            m.load_state_dict(sd["modules"][k])
        for k, o in self._optimizers().items():
            o.load_state_dict(sd["optimizers"][k])
        self.generator.set_state(sd["generator"])
        if self.chi is not None:
            self.chi.chi = float(sd["chi"])
        self.updates = int(sd["updates"])

    def save(self, path, extra: dict | None = None) -> Path:
        """Atomic ``torch.save`` of ``{"algo": "d2rl", "version", "config", "agent", **extra}``
        (loadable with ``weights_only=True``)."""
        blob = {"algo": ALGO, "version": CHECKPOINT_VERSION, "config": self.config.to_dict(),
                "agent": self.state_dict()}
        if extra:
            blob.update(extra)
        return save_checkpoint(path, blob)

    @classmethod
    def load(cls, path, config: D2RLConfig | None = None) -> "D2RLAgent":
        """An agent saved by :meth:`save` (or a training checkpoint). With ``config`` given it
        must match the stored one in every field but the run-length / logging fields
        (``RUN_FIELDS``); otherwise a ValueError lists the differences."""
        blob = load_checkpoint(path, ALGO, CHECKPOINT_VERSION, "D2RL")
        stored = D2RLConfig.from_dict(blob["config"])
        if config is not None:
            diffs = stored.differences(config, ignore=RUN_FIELDS)
            if diffs:
                arch = [d for d in diffs if d.split(":")[0] in ARCH_FIELDS]
                what = "networks" if arch else "training settings"
                raise ValueError(f"checkpoint {path} was written with another D2RL config "
                                 f"(different {what}; checkpoint != given): " + "; ".join(diffs))
        agent = cls(config if config is not None else stored, blob["agent"]["obs_dim"],
                    blob["agent"]["action_dim"])
        agent.load_state_dict(blob["agent"])
        return agent

"""A tiny batched contextual bandit with the full-duplex environment's interface, for the D2RL
tests: context ``s ~ U[-1, 1]^S``, known optimal action ``a*(s) = 0.8 tanh(W s)``,
reward ("sum rate") ``C = R_max - scale * mean((a - a*)^2)``, bound ``R' = R_max`` (so the
designed reward ``C - R'`` is ``-scale * mse <= 0``). Each copy draws a new context every step;
episodes are truncated after ``episode_len`` steps. The state holds a numpy Generator (as a
simulator's state may), so the checkpoint code is exercised."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BanditState:
    context: np.ndarray          # [B, S]
    t: np.ndarray                # [B] steps taken in the episode
    rng: np.random.Generator


class BanditEnv:
    def __init__(self, obs_dim: int = 4, action_dim: int = 2, episode_len: int = 5,
                 r_max: float = 5.0, scale: float = 5.0):
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.episode_len, self.r_max, self.scale = episode_len, r_max, scale
        self.W = np.random.default_rng(123).normal(size=(action_dim, obs_dim)) / np.sqrt(obs_dim)

    def optimal_action(self, obs) -> np.ndarray:
        return 0.8 * np.tanh(np.asarray(obs, np.float64) @ self.W.T)

    def reset(self, seed: int, batch: int = 1):
        rng = np.random.default_rng(seed)
        ctx = rng.uniform(-1, 1, (batch, self.obs_dim))
        return ctx.astype(np.float32), BanditState(ctx, np.zeros(batch, np.int64), rng)

    def sum_rate(self, state: BanditState, action) -> np.ndarray:
        a = np.clip(np.asarray(action, np.float64), -1, 1)
        err = ((a - self.optimal_action(state.context)) ** 2).mean(1)
        return self.r_max - self.scale * err

    def rate_bound(self, state: BanditState) -> np.ndarray:
        return np.full(state.context.shape[0], self.r_max)

    def step(self, state: BanditState, action):
        c = self.sum_rate(state, action)
        bound = self.rate_bound(state)
        ctx = state.rng.uniform(-1, 1, state.context.shape)
        t = state.t + 1
        new = dataclasses.replace(state, context=ctx, t=t)
        trunc = t >= self.episode_len
        info = {"sum_rate": c, "rate_bound": bound}
        return (ctx.astype(np.float32), c, np.zeros_like(trunc), trunc, info, new)

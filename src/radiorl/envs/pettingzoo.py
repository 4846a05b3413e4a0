"""PettingZoo ``ParallelEnv`` adapter viewing one copy (B = 1) of a batched env.

Agents are named ``agent_<k>``. Conflict graph: action ``MultiDiscrete([|N_k|+1] * H)``.
Cellular: ``MultiDiscrete([|N_k|+1] * H + [n_levels] * H)`` (device choices, then power levels).
Observations are each agent's aggregate observation X_k. MF-TDMA ad hoc network: action
``Discrete(max_request + 1)`` (RBs requested), observation ``[o_i, ō_i]`` (own observation and
the 1-hop mean field, 8 values). When a copy terminates or truncates,
all agents are done and removed (call ``reset``).
"""
from __future__ import annotations

import numpy as np
from gymnasium import spaces
from pettingzoo import ParallelEnv

from radiorl.envs.cellular import CellularEnv


class ParallelAdapter(ParallelEnv):
    metadata = {"name": "radiorl_parallel_v0", "render_modes": []}

    def __init__(self, env):
        if env.batch != 1:
            raise ValueError(f"ParallelAdapter views one copy: env.batch must be 1, got {env.batch}")
        self.env = env
        self.possible_agents = [f"agent_{k}" for k in range(env.n_agents)]
        self.agents = []
        self._cellular = isinstance(env, CellularEnv)
        self._adhoc = getattr(env, "family", None) == "adhoc"
        if self._adhoc:
            self._obs_space = {a: spaces.Box(0.0, np.inf, (8,), np.float32)
                               for a in self.possible_agents}
            self._act_space = {a: spaces.Discrete(env.n_actions) for a in self.possible_agents}
            self.state = None
            return
        H = env.n_subbands
        low = 0.0 if not self._cellular else -np.inf
        self._obs_space = {a: spaces.Box(low, np.inf, (env.obs_dim,), np.float32)
                           for a in self.possible_agents}
        self._act_space = {}
        for k, a in enumerate(self.possible_agents):
            nvec = [int(env.local_sizes[k]) + 1] * H
            if self._cellular:
                nvec += [len(env.levels_w)] * H
            self._act_space[a] = spaces.MultiDiscrete(nvec)
        self.state = None

    def observation_space(self, agent):
        return self._obs_space[agent]

    def action_space(self, agent):
        return self._act_space[agent]

    def _obs_dict(self, obs):
        if self._adhoc:
            full = np.concatenate([obs[0], self.state.mf_obs[0]], axis=-1).astype(np.float32)
            return {a: full[k] for k, a in enumerate(self.possible_agents)}
        return {a: obs[0, k] for k, a in enumerate(self.possible_agents)}

    def reset(self, seed=None, options=None):
        if seed is None:
            seed = int(np.random.SeedSequence().entropy % (2 ** 31))
        obs, self.state = self.env.reset(seed=int(seed))
        self.agents = list(self.possible_agents)
        return self._obs_dict(obs), {a: {} for a in self.agents}

    def step(self, actions):
        if self._adhoc:
            batched = np.zeros((1, self.env.n_agents), np.int64)
            for k, a in enumerate(self.possible_agents):
                if a in actions:
                    batched[0, k] = int(np.asarray(actions[a]).reshape(()))
            return self._finish(*self.env.step(self.state, batched))
        H, K = self.env.n_subbands, self.env.n_agents
        act = np.zeros((1, K, 2 * H if self._cellular else H), np.int64)
        for k, a in enumerate(self.possible_agents):
            if a in actions:
                act[0, k] = np.asarray(actions[a], np.int64).reshape(-1)
        if self._cellular:
            batched = {"device": act[:, :, :H], "power_level": act[:, :, H:]}
        else:
            batched = act
        return self._finish(*self.env.step(self.state, batched))

    def _finish(self, obs, rew, term, trunc, info, state):
        self.state = state
        o = self._obs_dict(obs)
        r = {a: float(rew[0, k]) for k, a in enumerate(self.possible_agents)}
        te = {a: bool(term[0]) for a in self.possible_agents}
        tr = {a: bool(trunc[0]) for a in self.possible_agents}
        infos = {a: {} for a in self.possible_agents}
        if term[0] or trunc[0]:
            self.agents = []
        return o, r, te, tr, infos

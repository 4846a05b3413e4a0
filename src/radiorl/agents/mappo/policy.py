"""A trained MAPPO actor as a :class:`~radiorl.envs.base.Policy` (for ``radiorl evaluate`` and
``radiorl simulate``: policy name ``mappo:<checkpoint.pt>``).

Information: ``requires = {"local_obs"}`` — each agent sees only its aggregate observation
``X_k`` (its own and its neighbours' local observations) and its own recurrent state. By
default each agent takes its most likely action (``greedy=True``, deterministic execution as in
the reference MAPPO evaluation; measured: conflict-8 medium 2.10 vs 2.42 slots sampled,
cellular-19-random medium 10.9 vs 12.5 ms); ``greedy=False`` (policy name
``mappo-sampled:<checkpoint>``) samples from the trained stochastic policy.

Execution runs the actor in numpy (:class:`NumpyActor`, the same arithmetic as the torch
modules in float32, checked against them in the tests): at these sizes (a few dozen agents,
64 units) the per-call overhead of torch dominates, and numpy is about 3x faster per decision.
"""
from __future__ import annotations

import numpy as np
import torch

from radiorl.agents.mappo.model import ActionSpec, ActorCritic, Layout, env_actions


class NumpyActor:
    """float32 numpy copy of an :class:`ActorCritic`'s actor (normalizer, recurrent layer, MLP)."""

    def __init__(self, net: ActorCritic):
        f = lambda t: t.detach().cpu().numpy().astype(np.float32)  # noqa: E731
        self.kind = net.actor_rnn.kind
        self.H = net.actor_rnn.hidden_size
        self.mean = f(net.obs_norm.mean)[:, None, :]
        self.inv_std = (1.0 / np.sqrt(f(net.obs_norm.var) + 1e-8))[:, None, :]
        self.clip = net.obs_norm.clip
        self.wi, self.bi = f(net.actor_rnn.ih.weight), f(net.actor_rnn.ih.bias)
        self.wh, self.bh = f(net.actor_rnn.hh.weight), f(net.actor_rnn.hh.bias)
        self.hidden = [(f(l.weight), f(l.bias)) for l in net.actor_mlp.hidden]
        self.out = (f(net.actor_mlp.out.weight), f(net.actor_mlp.out.bias))

    def step(self, x: np.ndarray, state: np.ndarray):
        """``x [M, N, D]``, ``state [S, M, N, H]`` → ``(logits [M, N, n_logits], state)``."""
        H = self.H
        x = np.clip((x - self.mean) * self.inv_std, -self.clip, self.clip)
        g = np.matmul(x, self.wi) + self.bi
        if self.kind == "lstm":
            h, c = state[0], state[1]
            g += np.matmul(h, self.wh) + self.bh
            i = _sigmoid(g[..., :H])
            fg = _sigmoid(g[..., H:2 * H])
            gg = np.tanh(g[..., 2 * H:3 * H])
            o = _sigmoid(g[..., 3 * H:])
            c = fg * c + i * gg
            h = o * np.tanh(c)
            state = np.stack([h, c])
        else:
            h = state[0]
            gh = np.matmul(h, self.wh) + self.bh
            r = _sigmoid(g[..., :H] + gh[..., :H])
            z = _sigmoid(g[..., H:2 * H] + gh[..., H:2 * H])
            n = np.tanh(g[..., 2 * H:] + r * gh[..., 2 * H:])
            h = (1 - z) * n + z * h
            state = h[None]
        y = h
        for w, b in self.hidden:
            y = np.tanh(np.matmul(y, w) + b)
        return np.matmul(y, self.out[0]) + self.out[1], state


def _sigmoid(x):
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


class MAPPOPolicy:
    requires = frozenset({"local_obs"})
    families = ("conflict_graph", "cellular")

    def __init__(self, net: ActorCritic, layout: Layout, spec: ActionSpec, greedy: bool = True,
                 name: str = "mappo"):
        self.net, self.layout, self.spec, self.greedy, self.name = net, layout, spec, greedy, name
        self.env = None

    @classmethod
    def from_checkpoint(cls, path, env=None, greedy: bool = True) -> "MAPPOPolicy":
        from radiorl.agents.mappo.train import MAPPOConfig, build, check_spec, load_checkpoint
        blob = load_checkpoint(path)
        cfg = MAPPOConfig.from_dict(blob["config"])
        spec = ActionSpec(**{**blob["spec"], "local_sizes": tuple(blob["spec"]["local_sizes"])})
        if env is not None:
            check_spec(blob, ActionSpec.of(env), f"scenario {env.params.name}",
                       shared=cfg.mode == "shared")
        net, layout = build(spec, cfg)
        net.load_state_dict(blob["model"])
        net.eval()
        return cls(net, layout, spec, greedy, name=f"mappo-{cfg.mode}")

    def bind(self, env) -> "MAPPOPolicy":
        """Attach to ``env``; a shared policy adopts the network's agents (any number of
        them, as long as the per-agent layout matches: the paper's scalability)."""
        got = ActionSpec.of(env)
        diff = self.spec.mismatch(got, self.layout.shared)
        if diff is not None:
            raise ValueError(f"MAPPO policy does not fit {env.params.name}: {diff} is "
                             f"{self.spec.to_dict()[diff]!r} in the policy, "
                             f"{got.to_dict()[diff]!r} in the network")
        if self.layout.shared:
            self.spec, self.layout = got, Layout(True, got.n_agents)
        self.env = env
        return self

    def reset(self, env, batch: int, seed: int | None = 0):
        self.bind(env)
        m = self.spec.device_mask().numpy()
        self._mask = self.layout.to_m(np.broadcast_to(m[None], (batch, *m.shape)))
        self._actor = NumpyActor(self.net)
        n = self._mask.shape[1]
        state = np.zeros((2 if self._actor.kind == "lstm" else 1, self.layout.M, n,
                          self._actor.H), np.float32)
        return {"h": state, "rng": np.random.default_rng(seed), "batch": batch}

    def act(self, obs, info, ps):
        B = ps["batch"]
        spec = self.spec
        x = self.layout.to_m(np.asarray(info["obs"], np.float32))
        logits, ps["h"] = self._actor.step(x, ps["h"])
        H, C = spec.n_subbands, spec.n_choices
        dl = logits[..., : H * C].reshape(*logits.shape[:-1], H, C)
        dl = np.where(self._mask[..., None, :], dl, -1e9)
        dev = self._pick(dl, ps["rng"])
        lv = None
        if spec.n_levels:
            pl = logits[..., H * C:].reshape(*logits.shape[:-1], H, spec.n_levels)
            lv = self._pick(pl, ps["rng"])
        return env_actions(spec, self.layout.from_m(dev, B),
                           None if lv is None else self.layout.from_m(lv, B)), ps

    def _pick(self, logits, rng):
        if self.greedy:
            return logits.argmax(-1)
        g = -np.log(-np.log(rng.random(logits.shape, np.float32).clip(1e-12, 1 - 1e-7)))
        return (logits + g).argmax(-1)                            # Gumbel-max sampling

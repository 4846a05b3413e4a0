"""A trained MAPPO actor as a :class:`~radiorl.envs.base.Policy` (for ``radiorl evaluate`` and
``radiorl simulate``: policy name ``mappo:<checkpoint.pt>``).

Information: ``requires = {"local_obs"}`` — each agent sees only its aggregate observation
``X_k`` (its own and its neighbours' local observations) and its own recurrent state. Actions
are sampled from the trained stochastic policy (``greedy=True`` takes the most likely
action instead).
"""
from __future__ import annotations

import numpy as np
import torch

from radiorl.agents.mappo.model import (ActionSpec, ActorCritic, Layout, env_actions,
                                        sample_actions)


class MAPPOPolicy:
    requires = frozenset({"local_obs"})
    families = ("conflict_graph", "cellular")

    def __init__(self, net: ActorCritic, layout: Layout, spec: ActionSpec, greedy: bool = False,
                 name: str = "mappo"):
        self.net, self.layout, self.spec, self.greedy, self.name = net, layout, spec, greedy, name
        self.env = None

    @classmethod
    def from_checkpoint(cls, path, env=None, greedy: bool = False) -> "MAPPOPolicy":
        from radiorl.agents.mappo.train import MAPPOConfig, build, check_spec, load_checkpoint
        blob = load_checkpoint(path)
        cfg = MAPPOConfig.from_dict(blob["config"])
        spec = ActionSpec(**{**blob["spec"], "local_sizes": tuple(blob["spec"]["local_sizes"])})
        if env is not None:
            check_spec(blob, ActionSpec.of(env), f"scenario {env.params.name}")
        net, layout = build(spec, cfg)
        net.load_state_dict(blob["model"])
        net.eval()
        return cls(net, layout, spec, greedy, name=f"mappo-{cfg.mode}")

    def bind(self, env) -> "MAPPOPolicy":
        got = ActionSpec.of(env)
        if got != self.spec:
            diff = next(k for k in got.to_dict() if got.to_dict()[k] != self.spec.to_dict()[k])
            raise ValueError(f"MAPPO policy does not fit {env.params.name}: {diff} is "
                             f"{self.spec.to_dict()[diff]!r} in the policy, "
                             f"{got.to_dict()[diff]!r} in the network")
        self.env = env
        return self

    def reset(self, env, batch: int, seed: int | None = 0):
        self.bind(env)
        self._mask = self._masks(batch)
        n = self._mask.shape[1]
        gen = torch.Generator()
        gen.manual_seed(int(seed or 0))
        return {"h": self.net.actor_rnn.initial_state(n), "gen": gen, "batch": batch}

    def _masks(self, batch):
        m = self.spec.device_mask()
        return self.layout.to_m(m[None].expand(batch, *m.shape))

    @torch.inference_mode()
    def act(self, obs, info, ps):
        B = ps["batch"]
        x = self.layout.to_m(torch.as_tensor(np.asarray(info["obs"]), dtype=torch.float32))
        logits, ps["h"] = self.net.actor_step(self.net.obs_norm(x), ps["h"])
        dev, lv, _ = sample_actions(self.net, logits, self._mask, self.greedy, ps["gen"])
        return env_actions(self.spec, self.layout.from_m(dev, B).numpy(),
                           None if lv is None else self.layout.from_m(lv, B).numpy()), ps

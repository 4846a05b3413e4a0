"""Recurrent actor and critic of traffic-driven MAPPO (Zhang & Guo, Sec. III, Table II), the
action heads of each network family, and running normalizers.

Architecture (per member; ``M = 1`` shared, ``M = K`` separate — see :mod:`radiorl.nn`):
input ``X_k`` (normalized) → one recurrent layer (LSTM or GRU, 64) → two tanh hidden layers of
64 → heads. The actor outputs, per subband, logits over {idle, device 1..max_devices} (devices
an agent does not have are masked: the paper's dummy links) and, on the cellular network,
logits over the power levels. The critic outputs one value. Actor and critic have separate
recurrent states and parameters.

Layouts: env arrays are ``[B, K, ...]``; network arrays are ``[M, N_m, ...]`` with
``N_m = B·K`` (shared, agents folded into the batch, copy-major) or ``N_m = B`` (separate,
member k = agent k).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from radiorl.envs.base import check_number
from radiorl.nn import EnsembleMLP, EnsembleRNNCell


@dataclass(frozen=True)
class ActionSpec:
    """What an agent chooses on one network: per subband a device (``n_choices`` = max devices
    + 1, with idle = 0) and, if ``n_levels > 0``, a power level."""

    family: str
    n_agents: int
    n_subbands: int
    n_choices: int
    n_levels: int
    obs_dim: int
    local_sizes: tuple

    @classmethod
    def of(cls, env) -> "ActionSpec":
        fam = getattr(env, "family", None) or ("cellular" if hasattr(env, "levels_w")
                                               else "conflict_graph")
        if fam not in ("conflict_graph", "cellular"):
            raise ValueError(f"MAPPO works on conflict-graph and cellular networks, not on "
                             f"{fam} ({env.params.name})")
        return cls(fam, int(env.n_agents), int(env.n_subbands), int(env.max_devices) + 1,
                   len(env.levels_w) if fam == "cellular" else 0, int(env.obs_dim),
                   tuple(int(x) for x in env.local_sizes))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["local_sizes"] = list(self.local_sizes)
        return d

    #: fields a shared policy needs to match (it runs on any number of agents)
    LAYOUT_FIELDS = ("family", "n_subbands", "n_choices", "n_levels", "obs_dim")

    def mismatch(self, other: "ActionSpec", shared: bool) -> str | None:
        """Name of the first field where ``other`` cannot run this network's policy."""
        keys = self.LAYOUT_FIELDS if shared else tuple(self.to_dict())
        a, b = self.to_dict(), other.to_dict()
        return next((k for k in keys if a[k] != b[k]), None)

    def device_mask(self) -> torch.Tensor:
        """``bool[K, n_choices]``: True where the choice exists for agent k."""
        k = torch.arange(self.n_choices)[None, :]
        return k <= torch.tensor(self.local_sizes)[:, None]


class Layout:
    """Between env layout ``[B, K, ...]`` and member layout ``[M, N_m, ...]``."""

    def __init__(self, shared: bool, n_agents: int):
        self.shared, self.K = shared, n_agents
        self.M = 1 if shared else n_agents

    def to_m(self, x):
        B, K = x.shape[:2]
        return x.reshape(1, B * K, *x.shape[2:]) if self.shared else x.swapaxes(0, 1)

    def from_m(self, y, batch: int):
        return y.reshape(batch, self.K, *y.shape[2:]) if self.shared else y.swapaxes(0, 1)


class RunningNorm(nn.Module):
    """Per-member running mean/variance (Chan et al. parallel update) of ``[M, N, D]`` data.

    ``window``: if set, the weight of past data is capped at ``window`` samples per member
    before each update, so the statistics track the current data (queues shrink by orders of
    magnitude while a policy learns; all-history statistics would keep the early scale and
    squeeze the small queues of a good policy together). ``None``: all history."""

    def __init__(self, members: int, dim: int, clip: float = 10.0, window: float | None = None):
        super().__init__()
        self.window = window
        self.register_buffer("mean", torch.zeros(members, dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(members, dim, dtype=torch.float64))
        self.register_buffer("count", torch.full((members, 1), 1e-4, dtype=torch.float64))
        self.clip = clip

    @torch.no_grad()
    def update(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        x = x.double()
        w = torch.ones(x.shape[:2], dtype=torch.float64) if mask is None else mask.double()
        n = w.sum(1, keepdim=True)                                   # [M, 1]
        if float(n.sum()) == 0:
            return
        if self.window is not None:
            self.count.clamp_(max=float(self.window))
        mean = (x * w[..., None]).sum(1) / n.clamp(min=1e-12)
        var = (((x - mean[:, None]) ** 2) * w[..., None]).sum(1) / n.clamp(min=1e-12)
        tot = self.count + n
        delta = mean - self.mean
        new_mean = self.mean + delta * n / tot
        m2 = self.var * self.count + var * n + delta ** 2 * self.count * n / tot
        upd = (n > 0).expand_as(self.mean)
        self.mean.copy_(torch.where(upd, new_mean, self.mean))
        self.var.copy_(torch.where(upd, m2 / tot, self.var))
        self.count.copy_(tot)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = [x.shape[0]] + [1] * (x.dim() - 2) + [x.shape[-1]]
        m = self.mean.view(shape).to(x.dtype)
        s = (self.var.view(shape) + 1e-8).sqrt().to(x.dtype)
        return ((x - m) / s).clamp(-self.clip, self.clip)


class ActorCritic(nn.Module):
    """Recurrent actor and critic for ``members`` parameter sets."""

    def __init__(self, spec: ActionSpec, members: int, hidden: int = 64, layers: int = 2,
                 rnn: str = "lstm", norm_window: float | None = None):
        super().__init__()
        check_number("hidden", hidden, low=1, high=4096, integer=True)
        check_number("layers", layers, low=1, high=16, integer=True)
        self.spec, self.members = spec, members
        H = spec.n_subbands
        self.n_logits = H * (spec.n_choices + spec.n_levels)
        self.actor_rnn = EnsembleRNNCell(members, spec.obs_dim, hidden, rnn)
        self.actor_mlp = EnsembleMLP(members, hidden, (hidden,) * layers, self.n_logits, 0.01)
        self.critic_rnn = EnsembleRNNCell(members, spec.obs_dim, hidden, rnn)
        self.critic_mlp = EnsembleMLP(members, hidden, (hidden,) * layers, 1, 1.0)
        self.obs_norm = RunningNorm(members, spec.obs_dim, window=norm_window)
        self.ret_norm = RunningNorm(members, 1, window=norm_window)

    def initial_state(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.actor_rnn.initial_state(batch), self.critic_rnn.initial_state(batch)

    def split_logits(self, logits: torch.Tensor):
        """``[..., n_logits]`` → device logits ``[..., H, n_choices]`` and power logits
        ``[..., H, n_levels]`` (or None)."""
        H, C, Lv = self.spec.n_subbands, self.spec.n_choices, self.spec.n_levels
        dev = logits[..., : H * C].reshape(*logits.shape[:-1], H, C)
        pw = logits[..., H * C:].reshape(*logits.shape[:-1], H, Lv) if Lv else None
        return dev, pw

    def actor_step(self, x, state):
        h, state = self.actor_rnn(x, state)
        return self.actor_mlp(h), state

    def critic_step(self, x, state):
        h, state = self.critic_rnn(x, state)
        return self.critic_mlp(h)[..., 0], state


def masked_log_softmax(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is not None:
        logits = logits.masked_fill(~mask, -1e9)
    return torch.log_softmax(logits, dim=-1)


def sample_actions(net: ActorCritic, logits: torch.Tensor, dev_mask: torch.Tensor,
                   greedy: bool = False, generator: torch.Generator | None = None):
    """Sample (or take the argmax of) the factorised action. Returns ``(device [.., H],
    level [.., H] or None, logp [..])``."""
    dl, pl = net.split_logits(logits)
    dlp = masked_log_softmax(dl, dev_mask[..., None, :])
    dev = _pick(dlp, greedy, generator)
    logp = dlp.gather(-1, dev[..., None])[..., 0].sum(-1)
    lv = None
    if pl is not None:
        plp = torch.log_softmax(pl, -1)
        lv = _pick(plp, greedy, generator)
        logp = logp + plp.gather(-1, lv[..., None])[..., 0].sum(-1)
    return dev, lv, logp


def _pick(logp, greedy, generator):
    if greedy:
        return logp.argmax(-1)
    u = torch.rand(logp.shape, generator=generator).clamp_(1e-12, 1 - 1e-12)
    return (logp - torch.log(-torch.log(u))).argmax(-1)           # Gumbel-max


def evaluate_actions(net: ActorCritic, logits, dev_mask, dev, lv):
    """Log-probability and entropy of given actions."""
    dl, pl = net.split_logits(logits)
    dlp = masked_log_softmax(dl, dev_mask[..., None, :])
    logp = dlp.gather(-1, dev[..., None])[..., 0].sum(-1)
    ent = -(dlp.exp() * dlp).sum(-1).sum(-1)
    if pl is not None:
        plp = torch.log_softmax(pl, -1)
        logp = logp + plp.gather(-1, lv[..., None])[..., 0].sum(-1)
        ent = ent + -(plp.exp() * plp).sum(-1).sum(-1)
    return logp, ent


def env_actions(spec: ActionSpec, dev: np.ndarray, lv: np.ndarray | None):
    """Network outputs in env layout ``[B, K, H]`` → the env's action format."""
    if spec.family == "cellular":
        return {"device": dev.astype(np.int64), "power_level": lv.astype(np.int64)}
    return dev.astype(np.int64)

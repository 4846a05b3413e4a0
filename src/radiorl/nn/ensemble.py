"""Ensembles of small networks with a leading *member* axis.

Multi-agent learners either share one network among all agents or give every agent its own
(Zhang & Guo: "shared" vs "separate" policies). Both are expressed with the same modules: a
module with ``members = M`` holds ``M`` independent parameter sets stacked along axis 0 and maps
inputs ``[M, batch, in]`` to ``[M, batch, out]`` with one batched matrix product. ``M = 1`` is a
shared network (fold the agents into ``batch``); ``M = K`` gives K separate networks whose
parameters and gradients never mix: member ``m``'s output depends only on member ``m``'s
parameters and inputs, so the gradient of a sum of per-member losses w.r.t. member ``m``'s
parameters is the gradient of member ``m``'s own loss.

Example:
    >>> import torch
    >>> lin = EnsembleLinear(members=3, in_features=5, out_features=2)
    >>> lin(torch.zeros(3, 7, 5)).shape
    torch.Size([3, 7, 2])
"""
from __future__ import annotations

import math

import torch
from torch import nn


class EnsembleLinear(nn.Module):
    """``y[m] = x[m] @ W[m] + b[m]``; weights ``[M, in, out]`` (PyTorch's default uniform
    initialisation per member, or orthogonal with ``gain`` when given)."""

    def __init__(self, members: int, in_features: int, out_features: int,
                 gain: float | None = None):
        super().__init__()
        self.members, self.in_features, self.out_features = members, in_features, out_features
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_features))
        for m in range(members):
            if gain is None:
                bound = 1.0 / math.sqrt(max(in_features, 1))
                nn.init.uniform_(self.weight.data[m], -bound, bound)
            else:
                w = torch.empty(out_features, in_features)
                nn.init.orthogonal_(w, gain=gain)
                self.weight.data[m] = w.T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """``len(hidden)`` tanh hidden layers then a linear output, per member."""

    def __init__(self, members: int, in_features: int, hidden: tuple, out_features: int,
                 out_gain: float = 0.01):
        super().__init__()
        dims = [in_features, *hidden]
        self.hidden = nn.ModuleList(EnsembleLinear(members, a, b, gain=math.sqrt(2))
                                    for a, b in zip(dims[:-1], dims[1:]))
        self.out = EnsembleLinear(members, dims[-1], out_features, gain=out_gain)

    def forward(self, x):
        for layer in self.hidden:
            x = torch.tanh(layer(x))
        return self.out(x)


class EnsembleRNNCell(nn.Module):
    """One recurrent layer per member: ``kind="lstm"`` (state ``(h, c)`` stacked as
    ``[2, M, batch, H]``) or ``"gru"`` (``[1, M, batch, H]``). Gate order: LSTM i, f, g, o;
    GRU r, z, n (as in PyTorch). The forget-gate bias starts at 1 (LSTM)."""

    def __init__(self, members: int, in_features: int, hidden: int, kind: str = "lstm"):
        super().__init__()
        if kind not in ("lstm", "gru"):
            raise ValueError(f"rnn kind must be 'lstm' or 'gru', got {kind!r}")
        self.kind, self.hidden_size, self.members = kind, hidden, members
        g = 4 if kind == "lstm" else 3
        self.ih = EnsembleLinear(members, in_features, g * hidden)
        self.hh = EnsembleLinear(members, hidden, g * hidden)
        if kind == "lstm":
            with torch.no_grad():
                self.ih.bias[..., hidden:2 * hidden] = 1.0

    @property
    def state_layers(self) -> int:
        return 2 if self.kind == "lstm" else 1

    def initial_state(self, batch: int) -> torch.Tensor:
        return torch.zeros(self.state_layers, self.members, batch, self.hidden_size)

    def forward(self, x: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x [M, batch, in]``, ``state [S, M, batch, H]`` → ``(h [M, batch, H], new state)``."""
        return self.step_projected(self.ih(x), state)

    def forward_seq(self, x: torch.Tensor, state: torch.Tensor,
                    starts: torch.Tensor | None = None):
        """``x [M, batch, L, in]`` → ``(h [M, batch, L, H], final state)``; the input
        projection of all L steps is one matrix product. ``starts [M, batch, L]`` (1 where an
        episode begins) zeroes the state before that step."""
        M, Bt, L, D = x.shape
        gi = self.ih(x.reshape(M, Bt * L, D)).reshape(M, Bt, L, -1)
        out = []
        keep = None if starts is None else (1.0 - starts.float()).unbind(2)
        for t, g in enumerate(gi.unbind(2)):   # unbind: one gradient buffer, not L
            if keep is not None:
                state = state * keep[t][None, ..., None]
            h, state = self.step_projected(g, state)
            out.append(h)
        return torch.stack(out, 2), state

    def step_projected(self, gi: torch.Tensor, state: torch.Tensor):
        """One step given the projected input ``gi = ih(x)``."""
        H = self.hidden_size
        if self.kind == "lstm":
            h, c = state[0], state[1]
            gates = gi + self.hh(h)
            i = torch.sigmoid(gates[..., :H])
            f = torch.sigmoid(gates[..., H:2 * H])
            g = torch.tanh(gates[..., 2 * H:3 * H])
            o = torch.sigmoid(gates[..., 3 * H:])
            c = f * c + i * g
            h = o * torch.tanh(c)
            return h, torch.stack([h, c])
        h = state[0]
        gh = self.hh(h)
        r = torch.sigmoid(gi[..., :H] + gh[..., :H])
        z = torch.sigmoid(gi[..., H:2 * H] + gh[..., H:2 * H])
        n = torch.tanh(gi[..., 2 * H:] + r * gh[..., 2 * H:])
        h = (1 - z) * n + z * h
        return h, h.unsqueeze(0)


def clip_grad_norm_per_member(params, max_norm: float) -> torch.Tensor:
    """Clip the gradient norm of each member separately (parameters with a leading member
    axis), so that one agent's gradients never rescale another's. Returns the norms ``[M]``."""
    params = [p for p in params if p.grad is not None]
    if not params:
        return torch.zeros(0)
    sq = sum(p.grad.reshape(p.shape[0], -1).pow(2).sum(1) for p in params)
    norms = sq.sqrt()
    scale = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(scale.view(-1, *([1] * (p.grad.dim() - 1))))
    return norms

"""Attention across agents and the multi-agent temporal U-Net of MADiff.

MADiff (Zhu et al.; ``specs/diffusion-planning.md`` section 1.3) denoises the **joint**
trajectory of a team with one temporal U-Net whose parameters are shared by every agent
(agents folded into the batch) plus self-attention **across the agent axis** at the bottleneck
and on every skip connection before the decoder concatenates it. This module provides both
pieces, built from the blocks of :mod:`radiorl.nn.temporal` (the U-Net's convolutional path *is*
a :class:`~radiorl.nn.temporal.TemporalUNet`, so the per-agent computation is exactly that
network's).

Conventions
-----------
* Joint trajectories are ``x [B, N, H, C]``: batch, agents, horizon, channels (time-major,
  channels last per agent, as :class:`~radiorl.nn.temporal.TemporalUNet` takes ``[B, H, C]``).
  Internal features are ``[B, N, C, T]`` (channels first per agent).
* ``N`` may differ between calls (the parameters do not depend on it). ``agent_mask [B, N]``
  (bool, True = real agent) marks padded agents: the convolutional path skips them (it runs on
  the real agents' rows only, so padding costs no convolution), they are zeros in the
  attention layers and excluded there as keys, and their outputs are zeros. Every other
  operation acts on one agent's row at a time (convolutions, GroupNorm), so **padded agents
  have no effect on real agents' outputs**, whatever values they hold.
* There is no agent-position embedding, so the network is **permutation equivariant** across
  agents: permuting the agents of the input (and of ``agent_mask`` / per-agent conditions)
  permutes the output the same way. A caller that needs to single out an agent (e.g. the one
  whose observation is inpainted) passes that as an input channel or a per-agent condition.
* TorchScript: ``torch.jit.trace`` works; the traced graph is valid for the traced shapes
  **and number of real agents** (any placement of them): with ``agent_mask``, trace once per
  ``(shape, agent_mask.sum())``.

:class:`AgentAttention` (our choices, MADiff-style)
--------------------------------------------------
One token per agent: the agent's whole ``[C, T]`` feature map. With ``z = h + Linear(emb)``
(the step/condition embedding broadcast over time, when ``embed_dim > 0``), queries and keys
are 1x1 convolutions of ``z`` to ``qk_channels`` (default ``max(1, C // 8)``) flattened over
time (token width ``qk_channels * T`` per head), values a 1x1 convolution to ``v_channels``
(default ``max(1, C // 4)``); scaled dot-product attention over the agents of each sample
(``heads`` heads, the channels split between them); the result is mapped back to ``C``
channels by a 1x1 convolution and added to ``h`` through a **zero-initialized** scalar gain
(so a fresh network is exactly the shared per-agent U-Net; MADiff's residual attention).

Example:
    >>> import torch
    >>> net = MultiAgentTemporalUNet(5, 4, dim=8, dim_mults=(1, 2), cond_dim=1)
    >>> x = torch.randn(3, 6, 16, 5)                      # 3 teams of 6 agents, H = 16
    >>> mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] * 2 + [False] * 4])
    >>> net(x, torch.tensor([1, 50, 99]), torch.zeros(3, 1), agent_mask=mask).shape
    torch.Size([3, 6, 16, 4])
    >>> AgentAttention(16, embed_dim=8)(torch.randn(2, 5, 16, 4), torch.randn(2, 5, 8)).shape
    torch.Size([2, 5, 16, 4])
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from radiorl.nn.temporal import Conv1d, TemporalUNet, _check_int, _shape

__all__ = ["AgentAttention", "MultiAgentTemporalUNet"]


def _check_mask(agent_mask, B: int, N: int) -> torch.Tensor | None:
    if agent_mask is None:
        return None
    if not isinstance(agent_mask, torch.Tensor) or _shape(agent_mask) != (B, N):
        got = tuple(agent_mask.shape) if isinstance(agent_mask, torch.Tensor) \
            else type(agent_mask).__name__
        raise ValueError(f"agent_mask: expected a bool tensor of shape [{B}, {N}] (True = real "
                         f"agent), got {got}")
    return agent_mask.to(torch.bool)


class AgentAttention(nn.Module):
    """Residual self-attention across the agent axis: ``h [B, N, C, T]``, optional
    ``emb [B, N, embed_dim]`` and ``agent_mask [B, N]`` -> ``[B, N, C, T]`` (see the module
    docstring).

    Args:
        channels: ``C``.
        embed_dim: width of the per-agent embedding added (after a linear map) before the
            projections; 0 = none.
        qk_channels: query/key channels per time step (default ``max(heads, C // 8)``).
        v_channels: value channels per time step (default ``max(heads, C // 4)``).
        heads: attention heads; must divide ``qk_channels`` and ``v_channels``.
    """

    def __init__(self, channels: int, embed_dim: int = 0, qk_channels: int | None = None,
                 v_channels: int | None = None, heads: int = 1):
        super().__init__()
        self.channels = _check_int("channels", channels, 1)
        self.embed_dim = _check_int("embed_dim", embed_dim, 0)
        self.heads = _check_int("heads", heads, 1)
        qk = max(self.heads, self.channels // 8) if qk_channels is None else qk_channels
        v = max(self.heads, self.channels // 4) if v_channels is None else v_channels
        self.qk_channels = _check_int("qk_channels", qk, 1)
        self.v_channels = _check_int("v_channels", v, 1)
        for name, c in (("qk_channels", self.qk_channels), ("v_channels", self.v_channels)):
            if c % self.heads:
                raise ValueError(f"{name} = {c} must be a multiple of heads = {self.heads}")
        self.emb_proj = (nn.Sequential(nn.Mish(), nn.Linear(self.embed_dim, self.channels))
                         if self.embed_dim else None)
        self.to_q = Conv1d(self.channels, self.qk_channels, 1)
        self.to_k = Conv1d(self.channels, self.qk_channels, 1)
        self.to_v = Conv1d(self.channels, self.v_channels, 1)
        self.to_out = Conv1d(self.v_channels, self.channels, 1)
        self.gain = nn.Parameter(torch.zeros(()))

    def forward(self, h: torch.Tensor, emb: torch.Tensor | None = None,
                agent_mask: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(h, torch.Tensor) or h.dim() != 4 or _shape(h)[2] != self.channels:
            got = tuple(h.shape) if isinstance(h, torch.Tensor) else type(h).__name__
            raise ValueError(f"h: expected shape [B, N, {self.channels}, T] (agents, channels "
                             f"first), got {got}")
        B, N, C, T = _shape(h)
        mask = _check_mask(agent_mask, B, N)
        z = h
        if self.emb_proj is not None:
            if emb is None or not isinstance(emb, torch.Tensor) or \
                    _shape(emb) != (B, N, self.embed_dim):
                got = tuple(emb.shape) if isinstance(emb, torch.Tensor) else emb
                raise ValueError(f"emb: expected shape [{B}, {N}, {self.embed_dim}], got {got}")
            z = h + self.emb_proj(emb).unsqueeze(-1)
        elif emb is not None:
            raise ValueError("emb: this attention was built with embed_dim=0 and takes no "
                             "embedding")
        flat = z.reshape(B * N, C, T)
        nh = self.heads
        dqk, dv = self.qk_channels // nh, self.v_channels // nh

        def tokens(t: torch.Tensor, d: int) -> torch.Tensor:     # [B*N, nh*d, T] -> [B, nh, N, d*T]
            return t.reshape(B, N, nh, d * T).transpose(1, 2)
        q = tokens(self.to_q(flat), dqk)
        k = tokens(self.to_k(flat), dqk)
        v = tokens(self.to_v(flat), dv)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dqk * T)         # [B, nh, N, N]
        if mask is not None:
            # a large finite negative (not -inf): exp underflows to exactly 0 for padded keys,
            # and a sample whose agents are all padded still gives finite numbers
            scores = scores.masked_fill(~mask[:, None, None, :], -1e9)
        out = torch.softmax(scores, dim=-1) @ v                        # [B, nh, N, dv*T]
        out = out.transpose(1, 2).reshape(B * N, nh * dv, T)
        out = self.to_out(out).reshape(B, N, C, T)
        if mask is not None:
            out = out * mask[:, :, None, None].to(out.dtype)
        return h + self.gain * out


class MultiAgentTemporalUNet(nn.Module):
    """Shared temporal U-Net with attention across agents (MADiff's
    ``SharedConvAttentionDeconv`` design, our implementation).

    ``forward(x [B, N, H, C_in], k [B], cond=None, drop_cond=None, agent_mask=None)`` ->
    ``[B, N, H, C_out]``. ``cond`` is ``[B, cond_dim]`` (one condition per sample, shared by
    its agents, e.g. a team return) or ``[B, N, cond_dim]`` (one per agent); ``drop_cond [B]``
    zeroes the condition embedding of whole samples (classifier-free guidance);
    ``agent_mask [B, N]`` marks real agents (default: all real).

    Layout: the convolutional path is a :class:`~radiorl.nn.temporal.TemporalUNet` (attribute
    ``net``; same arguments, same ``2 * len(dim_mults)`` residual blocks, same end padding of
    the horizon) run on the ``B * N`` agent rows; an :class:`AgentAttention` follows the middle
    block (bottleneck) and one is applied to every skip connection before the decoder
    concatenates it (``len(dim_mults) - 1`` of them), each receiving the agent's step/condition
    embedding. ``attention_heads`` is passed to every :class:`AgentAttention`.
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, dim: int = 32,
                 dim_mults=(1, 2, 4, 8), kernel_size: int = 5, groups: int = 8,
                 cond_dim: int = 0, attention_heads: int = 1):
        super().__init__()
        self.net = TemporalUNet(in_channels, out_channels, dim=dim, dim_mults=dim_mults,
                                kernel_size=kernel_size, groups=groups, cond_dim=cond_dim)
        self.in_channels, self.out_channels = self.net.in_channels, self.net.out_channels
        self.cond_dim = self.net.cond_dim
        chans = [self.net.dim * m for m in self.net.dim_mults]
        E = self.net.embed_dim
        self.mid_attention = AgentAttention(chans[-1], E, heads=attention_heads)
        self.skip_attention = nn.ModuleList(AgentAttention(c, E, heads=attention_heads)
                                            for c in chans[:-1])

    def forward(self, x: torch.Tensor, k, cond: torch.Tensor | None = None,
                drop_cond: torch.Tensor | None = None,
                agent_mask: torch.Tensor | None = None) -> torch.Tensor:
        shape = _shape(x) if isinstance(x, torch.Tensor) else None
        if shape is None or len(shape) != 4 or shape[3] != self.in_channels or min(shape) < 1:
            raise ValueError(f"x: expected shape [B, N, H, {self.in_channels}] (batch, agents, "
                             f"horizon, channels), got "
                             f"{shape if shape is not None else type(x).__name__}")
        B, N, H, C = shape
        mask = _check_mask(agent_mask, B, N)
        net = self.net
        if cond is not None and isinstance(cond, torch.Tensor) and cond.dim() == 3:
            if _shape(cond)[:2] != (B, N):
                raise ValueError(f"cond: expected shape [{B}, {self.cond_dim}] or "
                                 f"[{B}, {N}, {self.cond_dim}], got {tuple(cond.shape)}")
            ks = k.repeat_interleave(N) if isinstance(k, torch.Tensor) and k.dim() == 1 else k
            dc = drop_cond.repeat_interleave(N) if isinstance(drop_cond, torch.Tensor) \
                and drop_cond.dim() == 1 and _shape(drop_cond)[0] == B else drop_cond
            emb = net.embedding(ks, cond.reshape(B * N, -1), dc, batch=B * N, ref=x)
        else:
            emb = net.embedding(k, cond, drop_cond, batch=B, ref=x).repeat_interleave(N, dim=0)
        emb_agents = emb.reshape(B, N, -1)
        # the convolutional path runs on the real agents' rows only (padded rows cost nothing);
        # the attention layers see the full [B, N] layout, padded rows zero
        h = x.reshape(B * N, H, C).transpose(1, 2)
        idx = None
        if mask is not None:
            idx = mask.reshape(B * N).nonzero().squeeze(1)              # [R]
            h, emb = h.index_select(0, idx), emb.index_select(0, idx)

        def attend(att: AgentAttention, h: torch.Tensor) -> torch.Tensor:
            c, t = _shape(h)[1:]
            if idx is None:
                return att(h.reshape(B, N, c, t), emb_agents, None).reshape(B * N, c, t)
            full = h.new_zeros(B * N, c, t).index_copy(0, idx, h)
            out = att(full.reshape(B, N, c, t), emb_agents, mask).reshape(B * N, c, t)
            return out.index_select(0, idx)

        extra = net.padded_horizon(H) - H
        if extra > 0:                                  # TemporalUNet's end padding
            h = F.pad(h, (0, extra), mode="replicate")
        skips = []
        for i, block in enumerate(net.down_blocks):
            h = block(h, emb)
            if i < len(net.downsamples):
                skips.append(h)
                h = net.downsamples[i](h)
        h = attend(self.mid_attention, net.mid_block(h, emb))
        for up, block in zip(net.upsamples, net.up_blocks):
            level = len(skips) - 1
            s = attend(self.skip_attention[level], skips.pop())
            h = block(torch.cat([up(h), s], dim=1), emb)
        h = net.final_conv(net.final_block(h))[:, :, :H]
        if idx is not None:
            h = h.new_zeros(B * N, self.out_channels, H).index_copy(0, idx, h)
        return h.transpose(1, 2).reshape(B, N, H, self.out_channels)

"""Temporal (1-D convolutional) networks over trajectories, for diffusion planning.

These are the noise model ``eps_theta`` and the guide ``J_psi`` of MA-CDMP (paper Sec. VI-A:
"temporal U-Net with 8 residual blocks, 4 down-sampling and 4 up-sampling layers; time and
condition embeddings concatenated and injected into the first temporal convolution of each
block; the classifier J adopts the down-sampling half with a final linear layer"), in the
style of Diffuser's temporal U-Net (see ``specs/diffusion-planning.md`` section 1.1).

Conventions
-----------
* Trajectories are **time-major, channels last**, as the datasets store them:
  ``x [B, H, C]`` = (batch, horizon, features). The networks transpose to channels-first
  ``[B, C, H]`` internally; the building blocks :class:`Conv1dBlock` and
  :class:`ResidualTemporalBlock` work channels-first (``[B, C, T]``).
* ``k [B]`` is the diffusion step, int or float, on the integer scale ``0 .. K-1`` (fractional
  values, e.g. from continuous-time solvers, are fine). The networks also accept a Python
  number or a 0-d tensor and broadcast it to the batch.
* ``cond [B, cond_dim]`` is the condition (e.g. a return or a mean-field summary) when the
  network was built with ``cond_dim > 0``; it is then required. ``drop_cond [B]`` (bool)
  replaces the condition *embedding* by zeros where True (classifier-free guidance: train with
  a Bernoulli mask, sample with an all-True mask for the unconditional pass).
* Embedding = ``TimeEmbedding(dim)`` (width ``dim``) concatenated with, if ``cond_dim > 0``,
  ``Linear(cond_dim, dim) -> Mish -> Linear(dim, dim)`` (width ``dim``): ``embed_dim`` is
  ``dim`` or ``2 * dim``. It is fed to every residual block, where it enters after the
  **first** convolution (``block1(x) + Linear(Mish(emb))``).

Layout of :class:`TemporalUNet` (our reading of "8 residual blocks, 4 down + 4 up")
------------------------------------------------------------------------------------
With ``L = len(dim_mults)`` resolution levels and ``ch_i = dim * dim_mults[i]``:

* down path: one residual block per level (``C_in -> ch_0``, ``ch_0 -> ch_1``, ...), each
  followed by a stride-2 ``Conv1d(k3, p1)`` downsample except the last level;
* middle: one residual block at the coarsest level (``ch_{L-1} -> ch_{L-1}``);
* up path: ``L - 1`` levels, for ``i = L-2 .. 0``: ``ConvTranspose1d(k4, s2, p1)`` upsample
  (``ch_{i+1}`` channels), concatenate the skip saved after down block ``i``, one residual
  block ``ch_{i+1} + ch_i -> ch_i``;
* head: ``Conv1dBlock(ch_0, ch_0)`` then a 1x1 conv to ``C_out``.

So there are ``L + 1 + (L - 1) = 2L`` residual blocks: the paper's default ``L = 4``
(``dim_mults=(1, 2, 4, 8)``) gives **8** (4 down-sampling levels + mid + 3 up-sampling
levels). ``dim_mults`` controls the depth. (Diffuser uses 2 blocks per level and 2 mid blocks,
16 in all, and concatenates each skip *before* upsampling, so its finest skip is unused; here
every skip but the coarsest one, which feeds the middle block directly, is used at its own
resolution.)

Any horizon ``H >= 1``
----------------------
The U-Net halves the time axis ``L - 1`` times, so internally the horizon must be a multiple of
``2^(L-1)``. Any ``H`` is accepted: the time axis is padded **at the end** by repeating the last
step (replicate padding, the same convention as padding an episode with its last observation)
up to the next multiple of ``2^(L-1)``, the network runs on the padded trajectory, and the
output is cropped back to the first ``H`` steps. Convolutions and GroupNorm are not causal, so
the outputs at real steps do depend on the padded copies (exactly as if the caller had padded
the input); the crop only removes the padded outputs. Pitfall 5 of the spec: with ``H = 8`` and
4 levels the coarsest level has length 1 and its kernel-5 convolutions see mostly zero
padding; 2-3 levels are the sensible depth for ``H = 8 .. 16``.

GroupNorm groups
----------------
GroupNorm needs the number of groups to divide the channel count. Every block uses the
**largest divisor of its channel count that is <= groups** (``groups=8``: 8 for 32 channels,
6 for 12 channels, 5 for 5 channels, 1 for 7 channels).

TorchScript
-----------
The forwards branch only on shapes and on ``None``-ness of optional arguments, never on tensor
values, so ``torch.jit.trace`` (then ``torch.jit.freeze``) reproduces the eager output for the
traced horizon and argument pattern.

Example:
    >>> import torch
    >>> net = TemporalUNet(in_channels=8, dim=16, dim_mults=(1, 2, 4), cond_dim=3)
    >>> x, k, c = torch.randn(9, 10, 8), torch.randint(0, 100, (9,)), torch.randn(9, 3)
    >>> net(x, k, c).shape
    torch.Size([9, 10, 8])
    >>> sum(isinstance(m, ResidualTemporalBlock) for m in TemporalUNet(8).modules())
    8
    >>> J = TemporalValueNet(in_channels=8, horizon=10, dim=16, dim_mults=(1, 2, 4))
    >>> J(x, k).shape
    torch.Size([9])
"""
from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SinusoidalEmbedding", "TimeEmbedding", "StepConditionEmbedding", "Conv1dBlock",
           "ResidualTemporalBlock", "TemporalUNet", "TemporalValueNet", "group_count"]


# ---------------------------------------------------------------------------------------------
# argument checks (shared with radiorl.nn.mlp)

def _shape(t: torch.Tensor) -> tuple[int, ...]:
    """Shape as Python ints. Under ``torch.jit.trace`` the sizes are traced values; reading them
    as ints (the checks and the padding arithmetic are shape-based by design) specialises the
    trace to the traced shapes, which is intended, so the TracerWarnings are silenced here."""
    if torch.jit.is_tracing():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            return tuple(int(s) for s in t.shape)
    return tuple(t.shape)


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    rng = f">= {low}" if high is None else f"in [{low}, {high}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer {rng}, got {value!r}")
    value = int(value)
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name} must be an integer {rng}, got {value}")
    return value


def _check_kernel(kernel_size) -> int:
    k = _check_int("kernel_size", kernel_size, 1)
    if k % 2 == 0:
        raise ValueError(f"kernel_size must be an odd integer >= 1 (same padding), got {k}")
    return k


def _check_mults(dim_mults) -> tuple[int, ...]:
    if isinstance(dim_mults, (str, bytes)) or not isinstance(dim_mults, Sequence) \
            or len(dim_mults) == 0:
        raise ValueError(f"dim_mults must be a non-empty sequence of integers >= 1 "
                         f"(one per resolution level), got {dim_mults!r}")
    return tuple(_check_int("dim_mults entries", m, 1) for m in dim_mults)


def _check_x(x: torch.Tensor, channels: int, horizon: int | None = None) -> tuple[int, int]:
    """Validate a time-major trajectory ``[B, H, C]``; returns ``(B, H)``."""
    want = f"[B, {'H' if horizon is None else horizon}, {channels}]"
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"x: expected a tensor of shape {want}, got {type(x).__name__}")
    shape = _shape(x)
    if len(shape) != 3:
        raise ValueError(f"x: expected shape {want} (batch, horizon, channels), got {shape}")
    if shape[2] != channels:
        raise ValueError(f"x: expected shape {want} with {channels} channels, got {shape}")
    if shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"x: expected shape {want} with B >= 1 and H >= 1, got {shape}")
    if horizon is not None and shape[1] != horizon:
        raise ValueError(f"x: horizon mismatch, expected shape {want} (horizon={horizon} fixed "
                         f"at construction), got {shape}")
    return shape[0], shape[1]


def _step_tensor(k, batch: int, ref: torch.Tensor) -> torch.Tensor:
    """Diffusion step as a ``[B]`` tensor (numbers and 0-d tensors are broadcast)."""
    if isinstance(k, torch.Tensor):
        if k.dim() == 0:
            return k.reshape(1).expand(batch)
        if _shape(k) != (batch,):
            raise ValueError(f"k: expected shape [{batch}] (one diffusion step per batch row), "
                             f"got {tuple(k.shape)}")
        return k
    if isinstance(k, numbers.Number) and not isinstance(k, bool):
        return torch.full((batch,), float(k), dtype=ref.dtype, device=ref.device)
    raise ValueError(f"k: expected a tensor of shape [{batch}] or a number, got {type(k).__name__}")


def group_count(channels: int, groups: int) -> int:
    """Number of GroupNorm groups actually used: the largest divisor of ``channels`` that is
    ``<= groups`` (GroupNorm requires the groups to divide the channels)."""
    channels = _check_int("channels", channels, 1)
    groups = _check_int("groups", groups, 1)
    for g in range(min(groups, channels), 0, -1):
        if channels % g == 0:
            return g
    return 1  # unreachable (1 divides everything)


# ---------------------------------------------------------------------------------------------
# embeddings

class SinusoidalEmbedding(nn.Module):
    """Transformer-style sinusoidal features of a (diffusion) step.

    ``k [B]`` (int or float) -> ``[B, dim]`` = ``[sin(k w_0) .. sin(k w_{h-1}), cos(k w_0) ..
    cos(k w_{h-1})]`` with ``h = dim // 2`` and ``w_i = 10000^(-i / h)`` (a zero column is
    appended when ``dim`` is odd). No parameters.

    Example:
        >>> SinusoidalEmbedding(6)(torch.tensor([0, 5])).shape
        torch.Size([2, 6])
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = _check_int("dim", dim, 2)
        half = self.dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        if not isinstance(k, torch.Tensor) or k.dim() != 1:
            got = tuple(k.shape) if isinstance(k, torch.Tensor) else type(k).__name__
            raise ValueError(f"k: expected shape [B], got {got}")
        arg = k.to(self.freqs.dtype).unsqueeze(-1) * self.freqs
        emb = torch.cat([arg.sin(), arg.cos()], dim=-1)
        if self.dim % 2:
            emb = F.pad(emb, (0, 1))
        return emb


class TimeEmbedding(nn.Module):
    """``k [B] -> [B, dim]``: sinusoidal(dim) -> Linear(dim, 4 dim) -> Mish -> Linear(4 dim, dim).

    Example:
        >>> TimeEmbedding(32)(torch.arange(4)).shape
        torch.Size([4, 32])
    """

    def __init__(self, dim: int):
        super().__init__()
        self.dim = _check_int("dim", dim, 2)
        self.net = nn.Sequential(SinusoidalEmbedding(dim), nn.Linear(dim, 4 * dim), nn.Mish(),
                                 nn.Linear(4 * dim, dim))

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        return self.net(k)


class StepConditionEmbedding(nn.Module):
    """The embedding every denoiser block receives: ``TimeEmbedding(dim)(k)`` concatenated with,
    if ``cond_dim > 0``, ``Linear(cond_dim, dim) -> Mish -> Linear(dim, dim)`` of ``cond``
    (zeroed where ``drop_cond`` is True). ``out_dim`` is ``dim`` or ``2 * dim``.

    ``forward(k, cond=None, drop_cond=None, batch=None, ref=None)``: ``k`` ``[B]`` (or a number /
    0-d tensor with ``batch`` given), ``cond [B, cond_dim]`` (required iff ``cond_dim > 0``),
    ``drop_cond [B]`` bool -> ``[B, out_dim]``.

    Example:
        >>> e = StepConditionEmbedding(dim=8, cond_dim=2)
        >>> e(torch.tensor([3, 4]), torch.zeros(2, 2), torch.tensor([False, True])).shape
        torch.Size([2, 16])
    """

    def __init__(self, dim: int, cond_dim: int = 0):
        super().__init__()
        self.dim = _check_int("dim", dim, 2)
        self.cond_dim = _check_int("cond_dim", cond_dim, 0)
        self.time = TimeEmbedding(dim)
        self.cond = (nn.Sequential(nn.Linear(cond_dim, dim), nn.Mish(), nn.Linear(dim, dim))
                     if cond_dim > 0 else None)
        self.out_dim = 2 * dim if cond_dim > 0 else dim

    def forward(self, k, cond: torch.Tensor | None = None,
                drop_cond: torch.Tensor | None = None, batch: int | None = None,
                ref: torch.Tensor | None = None) -> torch.Tensor:
        if batch is None:
            if not isinstance(k, torch.Tensor) or k.dim() != 1:
                raise ValueError("k: expected shape [B] when batch is not given")
            batch = _shape(k)[0]
        ref = self.time.net[1].weight if ref is None else ref
        t = self.time(_step_tensor(k, batch, ref))
        if self.cond is None:
            if cond is not None:
                raise ValueError("cond: this network was built with cond_dim=0 and takes no "
                                 f"condition, got shape {tuple(cond.shape)}")
            if drop_cond is not None:
                raise ValueError("drop_cond: this network was built with cond_dim=0 and takes "
                                 "no condition to drop")
            return t
        if cond is None:
            raise ValueError(f"cond: required (cond_dim={self.cond_dim}), expected shape "
                             f"[{batch}, {self.cond_dim}], got None")
        if not isinstance(cond, torch.Tensor) or _shape(cond) != (batch, self.cond_dim):
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else type(cond).__name__
            raise ValueError(f"cond: expected shape [{batch}, {self.cond_dim}], got {got}")
        c = self.cond(cond.to(t.dtype))
        if drop_cond is not None:
            if not isinstance(drop_cond, torch.Tensor) or _shape(drop_cond) != (batch,):
                got = (tuple(drop_cond.shape) if isinstance(drop_cond, torch.Tensor)
                       else type(drop_cond).__name__)
                raise ValueError(f"drop_cond: expected a bool tensor of shape [{batch}], "
                                 f"got {got}")
            c = torch.where(drop_cond.to(torch.bool).unsqueeze(-1), torch.zeros_like(c), c)
        return torch.cat([t, c], dim=-1)


# ---------------------------------------------------------------------------------------------
# convolutions with a GEMM path for small inputs
#
# oneDNN (mkldnn), PyTorch's CPU convolution backend, has a fixed cost of ~30-70 us per call
# and is very slow on length-1/2 sequences with many channels (measured, 1 thread: [256, 128, 1]
# k=5 1.5 ms vs 0.28 ms as one matrix product). A planner runs a few agents through a U-Net
# whose deepest levels are 1-2 frames long, so below ``GEMM_MAX_ROWS`` output rows
# (``batch x length``) or at length <= 2 these modules compute the convolution as
# im2col + one matrix product (same parameters and same result up to float rounding; tested),
# and use the library convolution otherwise.

#: Largest ``batch x output length`` computed with the GEMM path (length <= 2 always uses it).
GEMM_MAX_ROWS = 1024


class Conv1d(nn.Conv1d):
    """:class:`torch.nn.Conv1d` (zero padding, dilation 1, groups 1) with a GEMM path for
    small inputs (see :data:`GEMM_MAX_ROWS`). ``[B, C_in, T] -> [B, C_out, T_out]``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T = x.shape
        k, s, p = self.kernel_size[0], self.stride[0], self.padding[0]
        t_out = (T + 2 * p - k) // s + 1
        if B * t_out > GEMM_MAX_ROWS and t_out > 2:
            return super().forward(x)
        xp = F.pad(x, (p, p)) if p else x
        cols = xp.unfold(2, k, s).permute(0, 2, 1, 3).reshape(B * t_out, C * k)
        w = self.weight.reshape(self.out_channels, C * k)
        y = torch.addmm(self.bias, cols, w.t()) if self.bias is not None else cols @ w.t()
        return y.view(B, t_out, self.out_channels).permute(0, 2, 1)


class ConvTranspose1d(nn.ConvTranspose1d):
    """:class:`torch.nn.ConvTranspose1d` (no output padding, dilation 1, groups 1) with a GEMM
    path for small inputs: every input frame's contribution ``x_t^T W`` ``[C_out, K]`` is one
    matrix product, then overlap-added with :func:`torch.nn.functional.fold`."""

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        B, C, T = x.shape
        k, s, p = self.kernel_size[0], self.stride[0], self.padding[0]
        full = (T - 1) * s + k
        if output_size is not None or B * full > GEMM_MAX_ROWS:
            return super().forward(x, output_size)
        co = self.out_channels
        z = x.permute(0, 2, 1).reshape(B * T, C) @ self.weight.reshape(C, co * k)
        z = z.view(B, T, co * k).permute(0, 2, 1)                      # [B, co*k, T]
        y = F.fold(z, (1, full), (1, k), stride=(1, s)).view(B, co, full)
        if p:
            y = y[:, :, p:full - p]
        return y + self.bias.view(1, co, 1) if self.bias is not None else y


# ---------------------------------------------------------------------------------------------
# blocks (channels-first)

class Conv1dBlock(nn.Module):
    """``[B, in_ch, T] -> [B, out_ch, T]``: Conv1d(kernel_size, same padding) -> GroupNorm ->
    Mish, with ``group_count(out_ch, groups)`` groups.

    Example:
        >>> Conv1dBlock(3, 12)(torch.zeros(2, 3, 7)).shape
        torch.Size([2, 12, 7])
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 5, groups: int = 8):
        super().__init__()
        self.in_ch = _check_int("in_ch", in_ch, 1)
        self.out_ch = _check_int("out_ch", out_ch, 1)
        k = _check_kernel(kernel_size)
        self.conv = Conv1d(in_ch, out_ch, k, padding=k // 2)
        self.norm = nn.GroupNorm(group_count(out_ch, groups), out_ch)
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class ResidualTemporalBlock(nn.Module):
    """Residual block with the embedding injected after the first convolution.

    ``x [B, in_ch, T]``, ``emb [B, embed_dim]`` -> ``[B, out_ch, T]``::

        h = Conv1dBlock1(x) + Linear(Mish(emb))[:, :, None]     # broadcast over time
        h = Conv1dBlock2(h)
        return h + residual(x)          # 1x1 conv if in_ch != out_ch, else identity

    Example:
        >>> blk = ResidualTemporalBlock(4, 16, embed_dim=32)
        >>> blk(torch.zeros(2, 4, 8), torch.zeros(2, 32)).shape
        torch.Size([2, 16, 8])
    """

    def __init__(self, in_ch: int, out_ch: int, embed_dim: int, kernel_size: int = 5,
                 groups: int = 8):
        super().__init__()
        self.in_ch = _check_int("in_ch", in_ch, 1)
        self.out_ch = _check_int("out_ch", out_ch, 1)
        self.embed_dim = _check_int("embed_dim", embed_dim, 1)
        self.block1 = Conv1dBlock(in_ch, out_ch, kernel_size, groups)
        self.block2 = Conv1dBlock(out_ch, out_ch, kernel_size, groups)
        self.emb_proj = nn.Sequential(nn.Mish(), nn.Linear(embed_dim, out_ch))
        self.residual = Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        xs, es = _shape(x), _shape(emb)
        if len(xs) != 3 or xs[1] != self.in_ch:
            raise ValueError(f"x: expected shape [B, {self.in_ch}, T] (channels first), "
                             f"got {xs}")
        if es != (xs[0], self.embed_dim):
            raise ValueError(f"emb: expected shape [{xs[0]}, {self.embed_dim}], got {es}")
        h = self.block1(x) + self.emb_proj(emb).unsqueeze(-1)
        h = self.block2(h)
        return h + self.residual(x)


def _downsample(ch: int) -> nn.Module:
    return Conv1d(ch, ch, 3, stride=2, padding=1)


def _upsample(ch: int) -> nn.Module:
    return ConvTranspose1d(ch, ch, 4, stride=2, padding=1)


def _pad_time(h: torch.Tensor, padded: int) -> torch.Tensor:
    """Replicate-pad the last (time) axis of ``[B, C, T]`` at the end up to ``padded``."""
    extra = padded - _shape(h)[-1]
    return F.pad(h, (0, extra), mode="replicate") if extra > 0 else h


# ---------------------------------------------------------------------------------------------
# networks

class TemporalUNet(nn.Module):
    """Temporal U-Net noise model: ``x [B, H, C_in]``, ``k [B]``, ``cond [B, cond_dim]`` ->
    ``[B, H, C_out]`` (``C_out = out_channels or in_channels``).

    See the module docstring for the layout (``2 * len(dim_mults)`` residual blocks; 8 by
    default), the embedding, the end padding that makes any ``H >= 1`` work and the GroupNorm
    group rule.

    Args:
        in_channels: features per time step (e.g. ``d`` for ``x`` plus ``d`` for the mean
            field ``x_bar``).
        out_channels: predicted features per step; default ``in_channels``.
        dim: base width; level ``i`` has ``dim * dim_mults[i]`` channels; embedding width.
        dim_mults: channel multiplier per resolution level (its length is the depth).
        kernel_size: odd temporal kernel of the convolutions.
        groups: maximum GroupNorm groups (see :func:`group_count`).
        cond_dim: condition width, 0 for an unconditional network.

    Example:
        >>> net = TemporalUNet(4, dim=8, dim_mults=(1, 2))
        >>> net(torch.randn(2, 5, 4), torch.tensor([0, 7])).shape
        torch.Size([2, 5, 4])
    """

    def __init__(self, in_channels: int, out_channels: int | None = None, dim: int = 32,
                 dim_mults=(1, 2, 4, 8), kernel_size: int = 5, groups: int = 8,
                 cond_dim: int = 0):
        super().__init__()
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.out_channels = (self.in_channels if out_channels is None
                             else _check_int("out_channels", out_channels, 1))
        self.dim = _check_int("dim", dim, 2)
        self.dim_mults = _check_mults(dim_mults)
        self.kernel_size = _check_kernel(kernel_size)
        self.groups = _check_int("groups", groups, 1)
        self.cond_dim = _check_int("cond_dim", cond_dim, 0)

        levels = len(self.dim_mults)
        chans = [self.dim * m for m in self.dim_mults]
        self.horizon_multiple = 2 ** (levels - 1)
        self.embedding = StepConditionEmbedding(self.dim, self.cond_dim)
        E = self.embed_dim = self.embedding.out_dim
        ks, g = self.kernel_size, self.groups

        ins = [self.in_channels, *chans[:-1]]
        self.down_blocks = nn.ModuleList(ResidualTemporalBlock(a, b, E, ks, g)
                                         for a, b in zip(ins, chans))
        self.downsamples = nn.ModuleList(_downsample(c) for c in chans[:-1])
        self.mid_block = ResidualTemporalBlock(chans[-1], chans[-1], E, ks, g)
        # up levels i = L-2 .. 0 (coarse to fine)
        self.upsamples = nn.ModuleList(_upsample(chans[i + 1]) for i in reversed(range(levels - 1)))
        self.up_blocks = nn.ModuleList(
            ResidualTemporalBlock(chans[i + 1] + chans[i], chans[i], E, ks, g)
            for i in reversed(range(levels - 1)))
        self.final_block = Conv1dBlock(chans[0], chans[0], ks, g)
        self.final_conv = Conv1d(chans[0], self.out_channels, 1)

    def padded_horizon(self, horizon: int) -> int:
        """Length the time axis is end-padded to: next multiple of ``2^(len(dim_mults)-1)``."""
        m = self.horizon_multiple
        return -(-int(horizon) // m) * m

    def forward(self, x: torch.Tensor, k, cond: torch.Tensor | None = None,
                drop_cond: torch.Tensor | None = None) -> torch.Tensor:
        B, H = _check_x(x, self.in_channels)
        emb = self.embedding(k, cond, drop_cond, batch=B, ref=x)
        h = _pad_time(x.transpose(1, 2), self.padded_horizon(H))
        skips = []
        for i, block in enumerate(self.down_blocks):
            h = block(h, emb)
            if i < len(self.downsamples):
                skips.append(h)
                h = self.downsamples[i](h)
        h = self.mid_block(h, emb)
        for up, block in zip(self.upsamples, self.up_blocks):
            h = block(torch.cat([up(h), skips.pop()], dim=1), emb)
        h = self.final_conv(self.final_block(h))
        return h[:, :, :H].transpose(1, 2)


class TemporalValueNet(nn.Module):
    """``J_psi``: the down half of :class:`TemporalUNet` plus a final linear head.

    ``x [B, H, C]`` (``H`` must equal ``horizon``), ``k [B]``, ``cond [B, cond_dim]`` ->
    ``[B]`` if ``out_dim == 1`` else ``[B, out_dim]``.

    Per level: the same residual block as the U-Net's down path (``C -> ch_0 -> ch_1 ...``),
    here followed by a stride-2 downsample after **every** level. The input is end-padded
    exactly like the U-Net's (replicate, to a multiple of ``2^(L-1)``), so each level sees the
    same length as in the U-Net; after the last downsample the length is
    ``ceil(padded / 2^L)``. Head: ``Linear([flattened features, embedding] -> out_dim)``.
    ``horizon`` is fixed at construction because it sizes the head.

    Example:
        >>> J = TemporalValueNet(4, horizon=6, dim=8, dim_mults=(1, 2))
        >>> J(torch.randn(3, 6, 4), torch.tensor([1, 2, 3])).shape
        torch.Size([3])
    """

    def __init__(self, in_channels: int, horizon: int, dim: int = 32, dim_mults=(1, 2, 4, 8),
                 kernel_size: int = 5, groups: int = 8, cond_dim: int = 0, out_dim: int = 1):
        super().__init__()
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.horizon = _check_int("horizon", horizon, 1)
        self.dim = _check_int("dim", dim, 2)
        self.dim_mults = _check_mults(dim_mults)
        self.kernel_size = _check_kernel(kernel_size)
        self.groups = _check_int("groups", groups, 1)
        self.cond_dim = _check_int("cond_dim", cond_dim, 0)
        self.out_dim = _check_int("out_dim", out_dim, 1)

        levels = len(self.dim_mults)
        chans = [self.dim * m for m in self.dim_mults]
        self.horizon_multiple = 2 ** (levels - 1)
        self.padded = -(-self.horizon // self.horizon_multiple) * self.horizon_multiple
        self.embedding = StepConditionEmbedding(self.dim, self.cond_dim)
        E = self.embed_dim = self.embedding.out_dim
        ins = [self.in_channels, *chans[:-1]]
        self.blocks = nn.ModuleList(ResidualTemporalBlock(a, b, E, self.kernel_size, self.groups)
                                    for a, b in zip(ins, chans))
        self.downsamples = nn.ModuleList(_downsample(c) for c in chans)
        length = self.padded
        for _ in range(levels):
            length = (length + 1) // 2          # stride-2 conv, k3, p1: ceil(T / 2)
        self.final_length = length
        self.head = nn.Linear(chans[-1] * length + E, self.out_dim)

    def forward(self, x: torch.Tensor, k, cond: torch.Tensor | None = None) -> torch.Tensor:
        B, _ = _check_x(x, self.in_channels, self.horizon)
        emb = self.embedding(k, cond, None, batch=B, ref=x)
        h = _pad_time(x.transpose(1, 2), self.padded)
        for block, down in zip(self.blocks, self.downsamples):
            h = down(block(h, emb))
        out = self.head(torch.cat([h.flatten(1), emb], dim=-1))
        return out.squeeze(-1) if self.out_dim == 1 else out

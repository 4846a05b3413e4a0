"""Multi-layer perceptrons: a plain :class:`MLP` and the flattened-trajectory
:class:`MLPDenoiser` of the real-time planner.

Conventions
-----------
* :class:`MLP` maps ``[..., in_dim] -> [..., out_dim]`` (any leading axes): ``len(hidden)``
  hidden layers ``Linear -> [LayerNorm] -> activation``, then a linear output layer.
* :class:`MLPDenoiser` has the same call contract as :class:`radiorl.nn.temporal.TemporalUNet`:
  ``x [B, H, C_in]`` (time-major, channels last), ``k [B]`` diffusion step (int or float; a
  number or 0-d tensor is broadcast), ``cond [B, cond_dim]`` (required iff ``cond_dim > 0``),
  ``drop_cond [B]`` bool (zeroes the condition embedding where True) -> ``[B, H, C_out]``.
  Unlike the U-Net its horizon is fixed at construction (the input layer sees all
  ``H * C_in`` values at once); a different ``H`` raises ValueError.

Why an MLP denoiser: with ``H = 8 .. 16`` the whole trajectory is a few hundred numbers, and
one small matrix product per layer is ~10x cheaper on CPU than a U-Net's dozens of small
convolutions (``specs/diffusion-planning.md`` section 3d: the only denoiser that fits a 5 ms
frame for ~9 agents).

Example:
    >>> import torch
    >>> MLP(5, 2, hidden=(16,), activation="mish")(torch.zeros(3, 4, 5)).shape
    torch.Size([3, 4, 2])
    >>> den = MLPDenoiser(in_channels=8, horizon=8, hidden=128, layers=2, cond_dim=1)
    >>> den(torch.randn(9, 8, 8), torch.randint(0, 100, (9,)), torch.randn(9, 1)).shape
    torch.Size([9, 8, 8])
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from radiorl.nn.temporal import StepConditionEmbedding, _check_int, _check_x, _shape

__all__ = ["MLP", "MLPDenoiser", "ACTIVATIONS", "make_activation"]

ACTIVATIONS = {"relu": nn.ReLU, "mish": nn.Mish, "tanh": nn.Tanh, "gelu": nn.GELU}


def make_activation(name: str) -> nn.Module:
    """The activation module for ``name``, in place where that is safe after a layer.

    ReLU is built with ``inplace=True``: every caller applies it to the fresh output of a
    Linear / LayerNorm / batched product, whose backward does not read that output, and ReLU's
    own backward reads only its result. Same numbers and gradients as ``nn.ReLU()``; one
    tensor and one pass over it fewer per layer (on one core, batch 256 x 256 features, the
    out-of-place ReLU writes 256 KB of cold memory: ~70 us inside a training step).
    Mish / tanh / GELU stay out of place (their backward reads the input)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return nn.ReLU(inplace=True) if name == "relu" else ACTIVATIONS[name]()


class MLP(nn.Module):
    """``[..., in_dim] -> [..., out_dim]``; hidden layers ``Linear -> [LayerNorm] -> act``.

    Args:
        in_dim, out_dim: input / output widths (>= 1).
        hidden: widths of the hidden layers (may be empty: a single linear layer).
        activation: one of ``"relu"``, ``"mish"``, ``"tanh"``, ``"gelu"``.
        layer_norm: LayerNorm after every hidden Linear (before the activation).

    Example:
        >>> MLP(3, 1)(torch.zeros(7, 3)).shape
        torch.Size([7, 1])
    """

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (256, 256),
                 activation: str = "relu", layer_norm: bool = False):
        super().__init__()
        self.in_dim = _check_int("in_dim", in_dim, 1)
        self.out_dim = _check_int("out_dim", out_dim, 1)
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Sequence):
            raise ValueError(f"hidden must be a sequence of integers >= 1, got {hidden!r}")
        hidden = tuple(_check_int("hidden entries", h, 1) for h in hidden)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {activation!r}")
        layers: list[nn.Module] = []
        width = self.in_dim
        for h in hidden:
            layers.append(nn.Linear(width, h))
            if layer_norm:
                layers.append(nn.LayerNorm(h))
            layers.append(make_activation(activation))
            width = h
        layers.append(nn.Linear(width, self.out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = _shape(x)
        if len(shape) < 1 or shape[-1] != self.in_dim:
            raise ValueError(f"x: expected shape [..., {self.in_dim}], got {shape}")
        return self.net(x)


class MLPDenoiser(nn.Module):
    """Flattened-trajectory denoiser for the real-time planner.

    ``x [B, H, C_in]`` is flattened to ``[B, H * C_in]`` and concatenated with the step
    embedding (``dim``) and, if ``cond_dim > 0``, the condition embedding (``dim``, zeroed where
    ``drop_cond``) — the same :class:`~radiorl.nn.temporal.StepConditionEmbedding` as the
    U-Net. Then ``layers`` hidden layers of width ``hidden``: the first
    ``h = Mish(Linear(input))``, each further one residual ``h = h + Mish(Linear(h))``; finally
    ``Linear(hidden, H * C_out)`` reshaped to ``[B, H, C_out]``.

    Args:
        in_channels: features per step; horizon: ``H`` (fixed); out_channels: default
        ``in_channels``; hidden: width; layers: number of hidden layers (>= 1); dim: embedding
        width; cond_dim: condition width (0 = unconditional).

    Example:
        >>> MLPDenoiser(4, horizon=3)(torch.zeros(2, 3, 4), 5).shape
        torch.Size([2, 3, 4])
    """

    def __init__(self, in_channels: int, horizon: int, out_channels: int | None = None,
                 hidden: int = 256, layers: int = 3, dim: int = 32, cond_dim: int = 0):
        super().__init__()
        self.in_channels = _check_int("in_channels", in_channels, 1)
        self.horizon = _check_int("horizon", horizon, 1)
        self.out_channels = (self.in_channels if out_channels is None
                             else _check_int("out_channels", out_channels, 1))
        self.hidden = _check_int("hidden", hidden, 1)
        self.layers = _check_int("layers", layers, 1)
        self.dim = _check_int("dim", dim, 2)
        self.cond_dim = _check_int("cond_dim", cond_dim, 0)
        self.embedding = StepConditionEmbedding(self.dim, self.cond_dim)
        self.embed_dim = self.embedding.out_dim
        self.input_layer = nn.Linear(self.horizon * self.in_channels + self.embed_dim, hidden)
        self.hidden_layers = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.output_layer = nn.Linear(hidden, self.horizon * self.out_channels)
        self.act = nn.Mish()

    def forward(self, x: torch.Tensor, k, cond: torch.Tensor | None = None,
                drop_cond: torch.Tensor | None = None) -> torch.Tensor:
        B, _ = _check_x(x, self.in_channels, self.horizon)
        emb = self.embedding(k, cond, drop_cond, batch=B, ref=x)
        h = self.act(self.input_layer(torch.cat([x.flatten(1), emb], dim=-1)))
        for layer in self.hidden_layers:
            h = h + self.act(layer(h))
        return self.output_layer(h).unflatten(1, (self.horizon, self.out_channels))

"""The denoising objective shared by every diffusion model of the project.

:func:`noisy_inputs` draws ``k ~ U{1..K}`` and Gaussian noise and noises a clean batch
(``x_k = √ᾱ_k x_0 + √(1−ᾱ_k) ε``), writing the **known** entries (those that are clamped by
inpainting at sampling time, e.g. the current observation) back to their clean values, so the
network is trained on exactly the inputs it sees when planning (``specs/diffusion-planning.md``
pitfall 8). :func:`denoising_loss` is the mean squared error of the network's output against
``ε`` (``prediction="epsilon"``, DDPM's simple loss) or ``x_0`` (``"x0"``), over the free
entries only (known entries carry no loss).

Example::

    k, noise, xk = noisy_inputs(schedule, x0, known=mask, generator=g)
    loss = denoising_loss(net(xk, k), x0, noise, prediction="x0", known=mask)
"""
from __future__ import annotations

import torch

from radiorl.diffusion.schedules import NoiseSchedule


def draw_levels(schedule: NoiseSchedule, shape, *, generator: torch.Generator | None = None,
                dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The random part of :func:`noisy_inputs`: ``(k, noise)``, ``k`` int64 ``[B]`` uniform on
    ``1..K`` then ``noise ~ N(0, I)`` of ``shape``, drawn in that order (so ``noisy_inputs``
    with the same generator state gives the same ``k`` and noise)."""
    k = torch.randint(1, schedule.K + 1, (shape[0],), generator=generator)
    return k, torch.randn(shape, generator=generator, dtype=dtype)


def noisy_inputs(schedule: NoiseSchedule, x0: torch.Tensor, *, known: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, draws: tuple | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(k int64 [B], noise, x_k)`` for the clean batch ``x0`` ``[B, ...]``; ``known``: bool
    mask broadcastable to ``x0`` (True = clamped entry, kept clean in ``x_k``); ``draws``:
    ``(k, noise)`` from :func:`draw_levels`, made beforehand (then nothing is drawn here)."""
    k, noise = (draw_levels(schedule, x0.shape, generator=generator, dtype=x0.dtype)
                if draws is None else draws)
    xk = schedule.q_sample(x0, k, noise)
    if known is not None:
        xk = torch.where(known, x0, xk)
    return k, noise, xk


def denoising_loss(output: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, *,
                   prediction: str = "epsilon", known: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Mean squared error of ``output`` against ``noise`` (``"epsilon"``) or ``x0`` (``"x0"``)
    over the entries that are not ``known``."""
    if prediction not in ("epsilon", "x0"):
        raise ValueError(f"prediction must be 'epsilon' or 'x0', got {prediction!r}")
    target = noise if prediction == "epsilon" else x0
    se = (output - target) ** 2
    if known is None:
        return se.mean()
    free = (~known).expand_as(se).to(se.dtype)
    return (se * free).sum() / free.sum().clamp_min(1.0)

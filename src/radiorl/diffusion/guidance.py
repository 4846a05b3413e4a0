"""Guidance for the samplers: classifier (value) guidance and classifier-free guidance.

Classifier guidance (MA-CDMP eq. (20), Diffuser): a value model ``J(x_k, k) -> [B]`` trained on
noisy samples steers sampling along ``grad_x J``. :func:`value_guide` turns it into the
``guide(x, k) -> dJ/dx`` callable that :func:`radiorl.diffusion.samplers.sample` expects; the
sampler scales it (``zeta * Sigma_k`` for DDPM, ``zeta * sqrt(1 - abar_k)`` on eps otherwise).

Classifier-free guidance (Decision Diffuser, MADiff): one network trained with condition
dropout; at sampling ``eps = eps_u + w (eps_c - eps_u)``. :func:`classifier_free` wraps the
network into a plain ``model_fn(x, k)`` that evaluates both halves in **one** batched forward
(``2B`` rows) instead of two calls.

Shapes: ``x [B, ...]``, ``k`` LongTensor ``[B]``, condition ``[B, ...]`` (or ``[1, ...]``,
broadcast over the batch).
"""
from __future__ import annotations

import math
from numbers import Real

import torch


def compiled_value_guide(value_model):
    """:func:`value_guide` with the input gradient computed by one compiled graph.

    ``torch.compile(torch.func.grad(x ↦ Σ_b J(x_b, k_b)))`` fuses the value model's forward and
    backward into generated C++ (inductor, with its C++ wrapper: little time under the GIL, so
    the gradient can run in a second thread next to the denoiser); for the small batches of a
    planner this is about 2.5x faster than eager autograd (1.0 against 2.6 ms for 9 agents,
    H = 16, width 16) and gives the same gradient up to float rounding. The first call per input shape compiles (tens of seconds; needs a C++ compiler);
    shapes are static, so a new batch size compiles again. The value model must not take extra
    keyword arguments and must be differentiable in ``x``.
    """
    if not callable(value_model):
        raise ValueError("value_model must be callable as value_model(x, k)")

    def total(x, k):
        return value_model(x, k).sum()

    grad = torch.compile(torch.func.grad(total), dynamic=False, options={"cpp_wrapper": True})

    def guide(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(False):
            return grad(x.detach().clone(), k.clone() if isinstance(k, torch.Tensor) else k)

    return guide


def value_guide(value_model, **kw):
    """Gradient of a value model, as a sampler guide.

    Args:
        value_model: ``value_model(x [B, ...], k LongTensor [B], **kw) -> J [B]`` (``[B, 1]`` is
            accepted); differentiable in x.
        **kw: extra keyword arguments passed on every call (e.g. a mean-field sequence).
    Returns:
        ``guide(x, k) -> dJ/dx`` of shape ``[B, ...]`` (the gradient of ``sum_b J(x_b, k_b)``,
        i.e. per-sample gradients), detached. It works inside ``torch.no_grad()`` and
        ``torch.inference_mode()``: x is cloned into a fresh leaf that requires grad under
        ``enable_grad``. Only x's gradient is computed (no ``.grad`` is accumulated in the value
        model's parameters). A J that does not depend on x gives a zero gradient.
    """
    if not callable(value_model):
        raise ValueError("value_model must be callable as value_model(x, k, **kw)")

    def guide(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(False), torch.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            kk = k.clone() if isinstance(k, torch.Tensor) else k
            J = value_model(xg, kk, **kw)
            B = x.shape[0]
            if not isinstance(J, torch.Tensor) or J.shape not in ((B,), (B, 1)):
                raise ValueError(f"value_model must return J of shape [B]=[{B}], got "
                                 f"{tuple(J.shape) if isinstance(J, torch.Tensor) else type(J)}")
            if not J.requires_grad:
                return torch.zeros_like(x)
            (g,) = torch.autograd.grad(J.sum(), xg, allow_unused=True)
        if g is None:
            return torch.zeros_like(x)
        return g.detach()

    return guide


def _batched(name: str, c, B: int) -> torch.Tensor:
    if not isinstance(c, torch.Tensor) or c.ndim < 1:
        raise ValueError(f"{name} must be a tensor [B, ...] or [1, ...]")
    if c.shape[0] == B:
        return c
    if c.shape[0] == 1:
        return c.expand((B,) + tuple(c.shape[1:]))
    raise ValueError(f"{name} must have batch size B={B} or 1, got {c.shape[0]}")


def classifier_free(model, cond, null_cond=None, scale: float = 1.2):
    """Classifier-free guidance as a plain denoiser ``model_fn(x, k)``.

    Args:
        model: ``model(x2 [2B, ...], k2 [2B], cond2 [2B, ...], drop_cond2 bool [2B]) -> [2B, ...]``;
            rows with ``drop_cond`` True must ignore their condition (the unconditional model).
        cond: condition ``[B, ...]`` or ``[1, ...]`` (e.g. a normalised return-to-go ``[B, 1]``).
        null_cond: condition fed to the unconditional half (same shape rules); default ``cond``
            (the model is expected to mask it because ``drop_cond`` is True).
        scale: guidance weight ``w >= 0`` (1 = purely conditional, Decision Diffuser uses 1.2).
    Returns:
        ``model_fn(x [B, ...], k [B]) -> eps_u + w (eps_c - eps_u)`` of shape ``[B, ...]``, with a
        single call of ``model`` on ``torch.cat([x, x])`` (first half conditional, second half
        unconditional) per evaluation.
    """
    if not callable(model):
        raise ValueError("model must be callable as model(x, k, cond, drop_cond)")
    if isinstance(scale, bool) or not isinstance(scale, Real) or not math.isfinite(scale) or scale < 0:
        raise ValueError(f"scale must be a finite number in [0, inf), got {scale!r}")
    w = float(scale)

    def model_fn(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        B = x.shape[0]
        c = _batched("cond", cond, B)
        nc = c if null_cond is None else _batched("null_cond", null_cond, B)
        x2 = torch.cat([x, x], 0)
        k2 = torch.cat([k, k], 0)
        c2 = torch.cat([c, nc.to(c.dtype)], 0)
        drop = torch.zeros(2 * B, dtype=torch.bool, device=x.device)
        drop[B:] = True
        out = model(x2, k2, c2, drop)
        if not isinstance(out, torch.Tensor) or out.shape[0] != 2 * B:
            raise ValueError(f"model must return a tensor with 2B={2 * B} rows, got "
                             f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)}")
        eps_c, eps_u = out[:B], out[B:]
        return eps_u + w * (eps_c - eps_u)

    return model_fn

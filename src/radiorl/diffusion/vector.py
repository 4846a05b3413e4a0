"""Diffusion on flat vectors: a conditional MLP noise predictor and a *differentiable* DDPM chain.

Used by D2RL (``papers/d2rl.txt`` Sec. II-B and IV-C), whose three generative networks work on
vectors (an action ``[B, 124]``, a reward ``[B, 1]``, a state ``[B, obs_dim]``) with few steps
(P = 6), and whose action generator is trained by back-propagating a critic's value *through
the whole reverse chain* (Mode I). :func:`radiorl.diffusion.samplers.sample` runs under
``torch.no_grad`` (it is a planner's sampler), so the chain here is separate; it only uses
the tables of :class:`~radiorl.diffusion.schedules.NoiseSchedule`.

Conventions
-----------
* Data ``x [B, x_dim]``; condition ``cond [B, cond_dim]`` (or None when ``cond_dim = 0``);
  diffusion level ``k`` on the integer scale ``1..K`` (k = 0 is clean data), as everywhere in
  ``radiorl.diffusion``.
* :class:`VectorDenoiser` ``eps(x, k, cond)`` = ``MLP([x, TimeEmbedding(k), cond])`` with
  :class:`radiorl.nn.MLP` (``layers`` hidden layers of width ``hidden``) and
  :class:`radiorl.nn.TimeEmbedding` (width ``time_dim``).
* Reverse step (paper eqs. (6)-(7), posterior-mean form)::

      x0_hat  = (x_k - sqrt(1 - abar_k) eps) / sqrt(abar_k)      bounded, see below
      x_{k-1} = coef1_k x0_hat + coef2_k x_k + sqrt(Sigma_k) z,   z ~ N(0, I), no noise at k = 1

  With an unbounded ``x0_hat`` this is exactly eq. (7). At ``k = 1``, ``coef1 = 1`` and
  ``coef2 = 0``, so the chain returns the last (bounded) ``x0_hat``.
* ``x0_bound``: ``None``, ``("clip", c)`` -- clamp to ``[-c, c]`` (the usual DDPM choice for
  bounded data; its gradient is 0 where it clamps) or ``("tanh", c)`` -- ``c tanh(x0_hat / c)``
  (smooth: the gradient never vanishes exactly).

Speed
-----
The chain evaluates the same network ``K`` times with the same condition. The first linear
layer is split (``W [x | t | cond] = W_x x + W_t t + W_c cond``): the condition and time terms
are computed once per chain (:meth:`VectorDenoiser.prepare`), so each step costs one
``[B, x_dim] x [x_dim, H]`` product instead of a concatenation and a wider product. The
parameters are those of the plain :class:`~radiorl.nn.MLP`; ``forward`` and the chain give
the same numbers (tested).

Example
-------
>>> sch = NoiseSchedule.make("vp", 6)
>>> den = VectorDenoiser(x_dim=3, cond_dim=2, hidden=32, layers=2)
>>> g = torch.Generator().manual_seed(0)
>>> x = ddpm_reverse(den, sch, torch.randn(5, 3, generator=g), cond=torch.zeros(5, 2),
...                  x0_bound=("clip", 1.0), generator=g)
>>> x.shape, bool(x.abs().max() <= 1)
(torch.Size([5, 3]), True)
"""
from __future__ import annotations

import torch
from torch import nn

from radiorl.diffusion.schedules import NoiseSchedule
from radiorl.nn.mlp import MLP
from radiorl.nn.temporal import TimeEmbedding

__all__ = ["VectorDenoiser", "ddpm_reverse", "ddpm_reverse_fused", "fused_supported",
           "ddpm_renoise", "chain_noise", "X0_BOUNDS"]

X0_BOUNDS = ("clip", "tanh")


class VectorDenoiser(nn.Module):
    """Noise predictor ``eps(x [B, x_dim], k [B], cond [B, cond_dim]) -> [B, x_dim]``.

    Args:
        x_dim: width of the data vector (>= 1).
        cond_dim: width of the condition (0 = unconditional).
        hidden, layers: ``layers`` hidden layers of width ``hidden`` (:class:`~radiorl.nn.MLP`).
        time_dim: width of the step embedding (:class:`~radiorl.nn.TimeEmbedding`).
        activation: activation of the MLP (see :data:`radiorl.nn.mlp.ACTIVATIONS`).

    Example:
        >>> VectorDenoiser(4, 3, hidden=16, layers=2)(torch.zeros(2, 4), 3,
        ...                                            torch.zeros(2, 3)).shape
        torch.Size([2, 4])
    """

    def __init__(self, x_dim: int, cond_dim: int = 0, hidden: int = 256, layers: int = 4,
                 time_dim: int = 16, activation: str = "relu"):
        super().__init__()
        if int(layers) < 1:
            raise ValueError(f"layers must be an integer >= 1, got {layers!r}")
        self.x_dim, self.cond_dim, self.time_dim = int(x_dim), int(cond_dim), int(time_dim)
        if self.cond_dim < 0:
            raise ValueError(f"cond_dim must be an integer >= 0, got {cond_dim!r}")
        self.time = TimeEmbedding(self.time_dim)
        self.mlp = MLP(self.x_dim + self.time_dim + self.cond_dim, self.x_dim,
                       hidden=(int(hidden),) * int(layers), activation=activation)

    # ------------------------------------------------------------------ plain call
    def _cond(self, cond: torch.Tensor | None, batch: int) -> torch.Tensor | None:
        if self.cond_dim == 0:
            if cond is not None:
                raise ValueError("cond: this denoiser is unconditional (cond_dim=0), got a "
                                 "condition")
            return None
        if not isinstance(cond, torch.Tensor) or tuple(cond.shape) != (batch, self.cond_dim):
            got = tuple(cond.shape) if isinstance(cond, torch.Tensor) else cond
            raise ValueError(f"cond: expected shape [{batch}, {self.cond_dim}], got {got}")
        return cond

    def forward(self, x: torch.Tensor, k, cond: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, x_dim]``, ``k`` LongTensor ``[B]`` or an int, ``cond [B, cond_dim]``."""
        if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != self.x_dim:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x: expected shape [B, {self.x_dim}], got {got}")
        B = x.shape[0]
        if not isinstance(k, torch.Tensor):
            k = torch.full((B,), int(k), dtype=torch.long, device=x.device)
        k = k.reshape(-1).expand(B) if k.numel() == 1 else k
        if torch.compiler.is_compiling():
            # torch.unique has a data-dependent shape (a graph break): embed every row
            t = self.time(k).to(x.dtype)
        else:
            # the embedding is row-wise: evaluate it once per distinct level (a batch holds at
            # most K of them) and gather, instead of once per row
            levels, inverse = torch.unique(k, return_inverse=True)
            t = self.time(levels)[inverse].to(x.dtype)
        c = self._cond(cond, B)
        parts = [x, t] if c is None else [x, t, c.to(x.dtype)]
        return self.mlp(torch.cat(parts, dim=-1))

    # ------------------------------------------------------------------ chain fast path
    def prepare(self, cond: torch.Tensor | None, ks: list[int], batch: int,
                dtype=torch.float32):
        """Per-chain constants for :meth:`step`: ``(W_x^T, [first-layer offset per step])``
        where offset ``j`` (``[B, H]`` or ``[1, H]``) = ``bias + W_t t(ks[j]) + W_c cond``."""
        w_x, off_t, off_c = self.first_layer_terms(cond, ks, batch)
        if off_c is not None:
            offsets = [off_c + off_t[j] for j in range(len(ks))]
        else:
            offsets = [off_t[j:j + 1] for j in range(len(ks))]
        return w_x, offsets

    def first_layer_terms(self, cond: torch.Tensor | None, ks: list[int], batch: int):
        """The split first layer: ``(W_x^T [x_dim, H], bias + W_t t(k) per level [n, H],
        W_c cond [B, H] or None)``."""
        first = self.mlp.net[0]
        W = first.weight
        d, td = self.x_dim, self.time_dim
        kt = torch.as_tensor(ks, dtype=torch.long, device=W.device)
        t = self.time(kt).to(W.dtype)                                    # [n, time_dim]
        off_t = torch.addmm(first.bias, t, W[:, d:d + td].t())            # [n, H]
        c = self._cond(cond, batch)
        off_c = c.to(W.dtype) @ W[:, d + td:].t() if c is not None else None
        return W[:, :d].t(), off_t, off_c

    def step(self, x: torch.Tensor, w_x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
        """One evaluation with the constants of :meth:`prepare` (no argument checks)."""
        h = torch.addmm(offset, x, w_x) if offset.shape[0] == x.shape[0] else \
            torch.addmm(offset.expand(x.shape[0], -1), x, w_x)
        for m in list(self.mlp.net)[1:]:
            h = m(h)
        return h


def _coefs(schedule: NoiseSchedule) -> dict:
    """Python-float copies of the tables the chain reads (cached on the schedule object)."""
    c = getattr(schedule, "_vector_coefs", None)
    if c is None:
        c = {"a": schedule.sqrt_alpha_bars.tolist(),
             "s": schedule.sqrt_one_minus_alpha_bars.tolist(),
             "c1": schedule.posterior_mean_coef1.tolist(),
             "c2": schedule.posterior_mean_coef2.tolist(),
             "sd": schedule.posterior_variance.sqrt().tolist()}
        c["ia"] = [1.0 / a for a in c["a"]]
        c["sa"] = [s / a for s, a in zip(c["s"], c["a"])]
        schedule._vector_coefs = c
    return c


def _check_bound(x0_bound):
    if x0_bound is None:
        return None, None
    try:
        kind, c = x0_bound
        c = float(c)
    except (TypeError, ValueError):
        raise ValueError(f"x0_bound must be None or (kind, c) with kind in {list(X0_BOUNDS)} "
                         f"and c > 0, got {x0_bound!r}") from None
    if kind not in X0_BOUNDS or not c > 0:
        raise ValueError(f"x0_bound must be None or (kind, c) with kind in {list(X0_BOUNDS)} "
                         f"and c > 0, got {x0_bound!r}")
    return kind, c


def ddpm_reverse(denoiser: VectorDenoiser, schedule: NoiseSchedule, x: torch.Tensor, *,
                 cond: torch.Tensor | None = None, start_k: int | None = None,
                 x0_bound=None, noise: bool = True,
                 generator: torch.Generator | None = None,
                 step_noise=None) -> torch.Tensor:
    """Ancestral DDPM from level ``start_k`` (default K) down to 0; differentiable.

    Args:
        denoiser: the noise predictor.
        schedule: its :class:`NoiseSchedule` (K steps).
        x: ``x_{start_k} [B, x_dim]`` (pure noise for Mode I; a forward-noised sample for
            Mode II).
        cond: ``[B, cond_dim]`` or None.
        start_k: first level, integer in ``[1, K]``.
        x0_bound: None, ``("clip", c)`` or ``("tanh", c)`` applied to every ``x0_hat``.
        noise: add the posterior noise ``sqrt(Sigma_k) z`` at levels ``k >= 2`` (False: the
            deterministic mean chain).
        generator: for the noise draws.
        step_noise: the ``start_k - 1`` posterior-noise tensors (levels ``start_k .. 2`` in that
            order, each like ``x``) to use instead of drawing them from ``generator``: drawn
            beforehand with :func:`chain_noise`, the chain gives the same numbers and is a pure
            function of its tensors (what ``torch.compile`` needs).
    Returns:
        ``x_0 [B, x_dim]``; gradients flow to ``x``, ``cond`` and the denoiser's parameters.
    """
    K = schedule.K if start_k is None else int(start_k)
    if not 1 <= K <= schedule.K:
        raise ValueError(f"start_k must be an integer in [1, K={schedule.K}], got {start_k!r}")
    kind, c = _check_bound(x0_bound)
    co = _coefs(schedule)
    ks = list(range(K, 0, -1))
    if step_noise is not None and len(step_noise) != K - 1:
        raise ValueError(f"step_noise: expected {K - 1} tensors (levels {K}..2), got "
                         f"{len(step_noise)}")
    B = x.shape[0]
    w_x, offsets = denoiser.prepare(cond, ks, B)
    for j, k in enumerate(ks):
        eps = denoiser.step(x, w_x, offsets[j])
        x0 = torch.add(x * co["ia"][k], eps, alpha=-co["sa"][k])   # (x - s eps) / a
        if kind == "clip":
            x0 = x0.clamp(-c, c)
        elif kind == "tanh":
            x0 = torch.tanh(x0 / c) * c if c != 1.0 else torch.tanh(x0)
        if k == 1:
            x = x0                             # coef1_1 = 1, coef2_1 = 0, Sigma_1 = 0
        else:
            x = co["c1"][k] * x0 + co["c2"][k] * x
            if noise:
                z = (step_noise[j] if step_noise is not None else
                     torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device))
                x = x + co["sd"][k] * z
    return x


def fused_supported(denoiser: VectorDenoiser) -> bool:
    """Whether :func:`ddpm_reverse_fused` handles this denoiser: its MLP is ``Linear -> ReLU``
    hidden layers and a linear output (no LayerNorm, no other activation)."""
    mods = list(denoiser.mlp.net)
    if len(mods) < 3 or len(mods) % 2 == 0:
        return False
    return (all(isinstance(m, nn.Linear) for m in mods[0::2])
            and all(type(m) is nn.ReLU for m in mods[1::2]))


def _relu_back(g: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``g`` where the ReLU's output is > 0, else 0 (in place; one pass, no mask tensor)."""
    return torch.ops.aten.threshold_backward.grad_input(g, out, 0.0, grad_input=g)


class _FusedChain(torch.autograd.Function):
    """The whole reverse chain as one autograd node with a hand-written backward.

    Inputs: ``x [B, d]`` (the start), ``off_c [B, H]`` or an empty tensor (the condition's
    first-layer term), ``off_t [n, H]`` (first-layer bias + time term per step), ``w_x [d, H]``
    (the first layer's x columns, transposed), then the weights and biases of the further
    layers. The forward runs the same operations as :func:`ddpm_reverse` (the same numbers),
    writing activations into buffers in place; the backward walks the steps in reverse,
    accumulating every weight gradient into one buffer per layer with ``addmm_`` (the step
    sum happens inside the matrix product) and applying the ReLU and bound masks in place.
    """

    @staticmethod
    def forward(ctx, x, off_c, off_t, w_x, consts, *params):
        co, ks, kind, c, noises = consts
        ws, bs = params[0::2], params[1::2]
        B = x.shape[0]
        xs, hs, bound = [], [], []
        for j, k in enumerate(ks):
            off = off_t[j:j + 1] if off_c.numel() == 0 else off_c + off_t[j]
            if off.shape[0] != B:
                off = off.expand(B, -1)
            h = torch.addmm(off, x, w_x).relu_()
            layer = [h]
            for w, b in zip(ws[:-1], bs[:-1]):
                h = torch.addmm(b, h, w.t()).relu_()
                layer.append(h)
            eps = torch.addmm(bs[-1], h, ws[-1].t())
            xs.append(x)
            hs.append(layer)
            x0 = torch.add(x * co["ia"][k], eps, alpha=-co["sa"][k])
            if kind == "clip":
                bound.append((x0 < -c) | (x0 > c))              # where the clamp cuts
                x0 = x0.clamp(-c, c)
            elif kind == "tanh":
                x0 = torch.tanh(x0 / c) * c if c != 1.0 else torch.tanh(x0)
                bound.append(x0)
            else:
                bound.append(None)
            if k == 1:
                x = x0
            else:
                x = co["c1"][k] * x0 + co["c2"][k] * x
                if noises is not None:
                    x = x + co["sd"][k] * noises[j]
        ctx.consts = (co, ks, kind, c)
        ctx.chain = (xs, hs, bound)
        ctx.need = (ctx.needs_input_grad[0], off_c.numel() > 0)
        ctx.save_for_backward(w_x, *params)
        return x

    @staticmethod
    def backward(ctx, g_out):
        co, ks, kind, c = ctx.consts
        xs, hs, bound = ctx.chain
        need_x, has_c = ctx.need
        w_x, *params = ctx.saved_tensors
        ws, bs = params[0::2], params[1::2]
        dws = [torch.zeros_like(w) for w in ws]
        dbs = [torch.zeros_like(b) for b in bs]
        dw_x = torch.zeros_like(w_x)
        d_off_t = w_x.new_zeros(len(ks), w_x.shape[1])
        d_off_c = None
        g_x = g_out.contiguous()
        for j in range(len(ks) - 1, -1, -1):
            k = ks[j]
            if k == 1:
                g_x0, g_direct = g_x, None
            else:
                g_x0, g_direct = g_x * co["c1"][k], g_x * co["c2"][k]
            if kind == "clip":
                g_x0 = g_x0.masked_fill(bound[j], 0.0)
            elif kind == "tanh":
                y = bound[j] / c if c != 1.0 else bound[j]
                g_x0 = g_x0 * (1.0 - y * y)
            layer = hs[j]
            g = g_x0 * (-co["sa"][k])                              # d loss / d eps
            dws[-1].addmm_(g.t(), layer[-1])
            dbs[-1].add_(g.sum(0))
            for i in range(len(layer) - 1, 0, -1):
                g = _relu_back(g @ ws[i], layer[i])                 # through layer i + 1
                dws[i - 1].addmm_(g.t(), layer[i - 1])
                dbs[i - 1].add_(g.sum(0))
            g = _relu_back(g @ ws[0], layer[0])                     # first-layer pre-activation
            dw_x.addmm_(xs[j].t(), g)
            d_off_t[j] = g.sum(0)
            if has_c:
                d_off_c = g.clone() if d_off_c is None else d_off_c.add_(g)
            if j > 0 or need_x:
                g_next = g @ w_x.t()
                g_next.add_(g_x0, alpha=co["ia"][k])
                if g_direct is not None:
                    g_next.add_(g_direct)
                g_x = g_next
        grads = []
        for dw, db in zip(dws, dbs):
            grads += [dw, db]
        return (g_x if need_x else None, d_off_c, d_off_t, dw_x, None, *grads)


def ddpm_reverse_fused(denoiser: VectorDenoiser, schedule: NoiseSchedule, x: torch.Tensor, *,
                       cond: torch.Tensor | None = None, x0_bound=None, noise: bool = True,
                       generator: torch.Generator | None = None,
                       step_noise=None) -> torch.Tensor:
    """:func:`ddpm_reverse` from level K, as one autograd node with a hand-written backward.

    Same arguments (without ``start_k``) and the same forward numbers; gradients equal up to
    float rounding (the per-step weight gradients are summed inside the matrix products).
    Requires a ReLU denoiser (:func:`fused_supported`); the noise is drawn before the chain
    (the same draws, in the same order, as :func:`ddpm_reverse`). Why: the actor step of D2RL
    back-propagates through the P-step chain, where autograd adds a node, saved tensors and
    fresh buffers per operation and turns every bool mask into a float copy. Measured (one
    core, P = 6, batch 256, 4 x 256 ReLU, action 125): chain forward + backward 29.3 -> 25.2-27.2
    ms; full D2RL update 51.5 -> 48.5 ms (``benchmarks/bench_d2rl.py``, BENCHMARKS.md).
    """
    if not fused_supported(denoiser):
        raise ValueError("ddpm_reverse_fused needs a denoiser whose MLP is Linear -> ReLU "
                         "layers with a linear output (no LayerNorm, activation 'relu')")
    kind, c = _check_bound(x0_bound)
    co = _coefs(schedule)
    K = schedule.K
    ks = list(range(K, 0, -1))
    if noise:
        if step_noise is None:
            step_noise = chain_noise(x.shape, K, generator, x.dtype)
        elif len(step_noise) != K - 1:
            raise ValueError(f"step_noise: expected {K - 1} tensors (levels {K}..2), got "
                             f"{len(step_noise)}")
    else:
        step_noise = None
    w_x, off_t, off_c = denoiser.first_layer_terms(cond, ks, x.shape[0])
    if off_c is None:
        off_c = off_t.new_zeros(0)
    params = []
    for m in list(denoiser.mlp.net)[2::2]:
        params += [m.weight, m.bias]
    return _FusedChain.apply(x, off_c, off_t, w_x, (co, ks, kind, c, step_noise), *params)


def chain_noise(shape, steps: int, generator: torch.Generator | None = None,
                dtype=torch.float32) -> list[torch.Tensor]:
    """The ``steps - 1`` posterior-noise draws of a ``steps``-level :func:`ddpm_reverse` chain,
    in the order the chain draws them (levels ``steps .. 2``)."""
    return [torch.randn(shape, generator=generator, dtype=dtype) for _ in range(int(steps) - 1)]


def ddpm_renoise(denoiser: VectorDenoiser, schedule: NoiseSchedule, x0: torch.Tensor,
                 k: int | None = None, *, cond: torch.Tensor | None = None, x0_bound=None,
                 noise: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mode II: forward-noise the clean ``x0`` to level ``k`` (default K) with
    ``q(x_k | x_0)``, then run :func:`ddpm_reverse` from ``k`` to 0."""
    k = schedule.K if k is None else int(k)
    eps = torch.randn(x0.shape, generator=generator, dtype=x0.dtype, device=x0.device)
    xk = schedule.q_sample(x0, k, eps)
    return ddpm_reverse(denoiser, schedule, xk, cond=cond, start_k=k, x0_bound=x0_bound,
                        noise=noise, generator=generator)

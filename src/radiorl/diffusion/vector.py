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
are computed once per chain (:meth:`VectorDenoiser.first_layer_terms`), so each step costs one
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
    def first_layer_terms(self, cond: torch.Tensor | None, ks: list[int], batch: int):
        """The split first layer, computed once per chain: ``(W_x^T [x_dim, H], bias + W_t t(k)
        per level [n, H], W_c cond [B, H] or None)``."""
        first = self.mlp.net[0]
        W = first.weight
        d, td = self.x_dim, self.time_dim
        kt = torch.as_tensor(ks, dtype=torch.long, device=W.device)
        t = self.time(kt).to(W.dtype)                                    # [n, time_dim]
        off_t = torch.addmm(first.bias, t, W[:, d:d + td].t())            # [n, H]
        c = self._cond(cond, batch)
        off_c = c.to(W.dtype) @ W[:, d + td:].t() if c is not None else None
        return W[:, :d].t(), off_t, off_c

    def step(self, x: torch.Tensor, w_x: torch.Tensor, off_t: torch.Tensor,
             off_c: torch.Tensor | None = None) -> torch.Tensor:
        """One evaluation with the terms of :meth:`first_layer_terms` (``off_t`` = the step's
        row ``[1, H]``; no argument checks): the first layer is ``x W_x^T + W_c cond`` (one
        product accumulating into the condition term) ``+ bias + W_t t(k)``."""
        if off_c is not None:
            h = torch.addmm(off_c, x, w_x).add_(off_t)
        else:
            h = torch.addmm(off_t.expand(x.shape[0], -1), x, w_x)
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
    w_x, off_t, off_c = denoiser.first_layer_terms(cond, ks, x.shape[0])
    for j, k in enumerate(ks):
        eps = denoiser.step(x, w_x, off_t[j:j + 1], off_c)
        x0 = torch.add(x * co["ia"][k], eps, alpha=-co["sa"][k])   # (x - s eps) / a
        if kind == "clip":
            x0 = x0.clamp(-c, c)
        elif kind == "tanh":
            x0 = torch.tanh(x0 / c) * c if c != 1.0 else torch.tanh(x0)
        if k == 1:
            x = x0                             # coef1_1 = 1, coef2_1 = 0, Sigma_1 = 0
        else:
            x = torch.add(x0 * co["c1"][k], x, alpha=co["c2"][k])
            if noise:
                z = (step_noise[j] if step_noise is not None else
                     torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device))
                x = x.add_(z, alpha=co["sd"][k])
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


def _clip_bounds(c: float, dtype: torch.dtype) -> tuple[float, float]:
    """``(lo, hi)`` with ``hardtanh_backward(g, x, lo, hi)`` = ``g`` where ``-c <= x <= c`` and
    0 elsewhere -- the gradient of ``x.clamp(-c, c)`` as autograd defines it (passed at the
    bounds): ``hardtanh_backward`` zeroes where ``x <= lo`` or ``x >= hi``, so ``lo`` / ``hi``
    are the neighbours of ``-c`` / ``c`` outward in ``dtype``."""
    info = torch.finfo(dtype)
    cc = torch.tensor(c, dtype=dtype)
    hi = torch.nextafter(cc, torch.tensor(info.max, dtype=dtype))
    lo = torch.nextafter(-cc, torch.tensor(info.min, dtype=dtype))
    return float(lo), float(hi)


class _FusedChain(torch.autograd.Function):
    """The whole reverse chain as one autograd node with a hand-written backward.

    Inputs: ``x [B, d]`` (the start), ``cond [B, cond_dim]`` or an empty tensor, ``t [n, td]``
    (the time embedding of each step's level), the first layer's full weight ``W [H, d + td +
    cond_dim]`` and bias, then the weights and biases of the further layers. The forward splits
    the first layer as :meth:`VectorDenoiser.first_layer_terms` does and runs the same
    operations as :func:`ddpm_reverse` (the same numbers), ReLUs in place, keeping per step the
    input, the activations and the bound's input (clip) or output (tanh). The backward walks the
    steps in reverse: every weight gradient accumulates over the steps inside ``addmm_`` (the
    first layer's x, time and condition columns straight into one ``[H, d + td + cond_dim]``
    buffer, no slice-and-add of autograd), every bias gradient with ``addmv_``; the ReLU and
    bound derivatives are one pass each (``threshold_backward`` / ``hardtanh_backward`` /
    ``tanh_backward``, no mask tensor), the chain's scalar coefficients folded into them.
    """

    @staticmethod
    def forward(ctx, x, cond, t, W, b, consts, *params):
        co, ks, kind, c, noises = consts
        ws, bs = params[0::2], params[1::2]
        has_c = cond.numel() > 0
        B, d = x.shape
        td = t.shape[1]
        w_x = W[:, :d].t()
        off_t = torch.addmm(b, t, W[:, d:d + td].t())
        off_c = cond @ W[:, d + td:].t() if has_c else None
        xs, hs, bound = [], [], []
        for j, k in enumerate(ks):
            if has_c:
                h = torch.addmm(off_c, x, w_x).add_(off_t[j:j + 1]).relu_()
            else:
                h = torch.addmm(off_t[j:j + 1].expand(B, -1), x, w_x).relu_()
            layer = [h]
            for w, bb in zip(ws[:-1], bs[:-1]):
                h = torch.addmm(bb, h, w.t()).relu_()
                layer.append(h)
            eps = torch.addmm(bs[-1], h, ws[-1].t())
            xs.append(x)
            hs.append(layer)
            x0 = torch.add(x * co["ia"][k], eps, alpha=-co["sa"][k])
            if kind == "clip":
                bound.append(x0)                                  # the clamp's input
                x0 = x0.clamp(-c, c)
            elif kind == "tanh":
                th = torch.tanh(x0 / c) if c != 1.0 else torch.tanh(x0)
                bound.append(th)                                  # the tanh's output
                x0 = th * c if c != 1.0 else th
            else:
                bound.append(None)
            if k == 1:
                x = x0
            else:
                x = torch.add(x0 * co["c1"][k], x, alpha=co["c2"][k])
                if noises is not None:
                    x = x.add_(noises[j], alpha=co["sd"][k])
        ctx.consts = (co, ks, kind, c)
        ctx.chain = (xs, hs, bound)
        ctx.need = (ctx.needs_input_grad[0], has_c and ctx.needs_input_grad[1],
                    ctx.needs_input_grad[2], has_c)
        ctx.save_for_backward(cond, t, W, *params)
        return x

    @staticmethod
    def backward(ctx, g_out):
        co, ks, kind, c = ctx.consts
        xs, hs, bound = ctx.chain
        need_x, need_c, need_t, has_c = ctx.need
        cond, t, W, *params = ctx.saved_tensors
        ws, bs = params[0::2], params[1::2]
        d, td = xs[0].shape[1], t.shape[1]
        w_x = W[:, :d].t()
        dW = torch.empty_like(W)
        dWx = dW[:, :d]                                           # [H, d], a strided view
        dws, dbs = [None] * len(ws), [None] * len(bs)
        d_off_t = W.new_empty(len(ks), W.shape[0])
        d_off_c = None
        ones = g_out.new_ones(g_out.shape[0])
        if kind == "clip":
            lo, hi = _clip_bounds(c, g_out.dtype)

        def acc_w(i, g, act):                 # dws[i] += g^T act (the first time: = g^T act)
            if dws[i] is None:
                dws[i] = torch.mm(g.t(), act)
                dbs[i] = torch.mv(g.t(), ones)
            else:
                dws[i].addmm_(g.t(), act)
                dbs[i].addmv_(g.t(), ones)

        g_x = g_out.contiguous()
        last = len(ks) - 1
        for j in range(last, -1, -1):
            k = ks[j]
            c1, c2 = (1.0, 0.0) if k == 1 else (co["c1"][k], co["c2"][k])
            # u = d loss / d x0_hat / c1 (the bound's derivative applied, coef1 not yet)
            if kind == "clip":
                u = torch.ops.aten.hardtanh_backward(g_x, bound[j], lo, hi)
            elif kind == "tanh":
                u = torch.ops.aten.tanh_backward(g_x, bound[j])
            else:
                u = g_x
            layer = hs[j]
            g = u * (-co["sa"][k] * c1)                            # d loss / d eps
            acc_w(-1, g, layer[-1])
            for i in range(len(layer) - 1, 0, -1):
                g = _relu_back(g @ ws[i], layer[i])                 # through layer i + 1
                acc_w(i - 1, g, layer[i - 1])
            g = _relu_back(g @ ws[0], layer[0])                     # first-layer pre-activation
            dWx.addmm_(g.t(), xs[j], beta=0.0 if j == last else 1.0)   # beta 0: ignores empty
            torch.sum(g, 0, out=d_off_t[j])
            if has_c:
                d_off_c = g if d_off_c is None else d_off_c.add_(g)   # g is not used after
            if j > 0 or need_x:
                # d loss / d x = g W_x + (ia c1) u (through x0_hat) + c2 g_x (direct)
                if u is g_x:
                    g_x = torch.addmm(g_x, g, w_x.t(), beta=co["ia"][k] * c1 + c2)
                else:
                    g_next = torch.addmm(g_x, g, w_x.t(), beta=c2)
                    g_x = g_next.add_(u, alpha=co["ia"][k] * c1)
        # the time and condition columns of the first layer, its bias, and their inputs
        dW[:, d:d + td].addmm_(d_off_t.t(), t, beta=0.0)
        d_b = d_off_t.sum(0)
        d_t = d_off_t @ W[:, d:d + td] if need_t else None
        d_c = None
        if has_c:
            dW[:, d + td:].addmm_(d_off_c.t(), cond, beta=0.0)
            d_c = d_off_c @ W[:, d + td:] if need_c else None
        grads = []
        for dw, db in zip(dws, dbs):
            grads += [dw, db]
        return (g_x if need_x else None, d_c, d_t, dW, d_b, None, *grads)


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
    fresh buffers per operation, turns every bool mask into a float copy, and assembles the
    split first layer's gradient from three zero-padded slices. Measured (one core, P = 6,
    batch 256, 4 x 256 ReLU, action 125): chain forward + backward 29.3 -> 25.2-27.2 ms with the
    first version (session 9); see BENCHMARKS.md for the full update.
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
    first = denoiser.mlp.net[0]
    W = first.weight
    t = denoiser.time(torch.as_tensor(ks, dtype=torch.long, device=W.device)).to(W.dtype)
    c_in = denoiser._cond(cond, x.shape[0])
    c_in = W.new_zeros(0) if c_in is None else c_in.to(W.dtype)
    params = []
    for m in list(denoiser.mlp.net)[2::2]:
        params += [m.weight, m.bias]
    return _FusedChain.apply(x, c_in, t, W, first.bias, (co, ks, kind, c, step_noise), *params)


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

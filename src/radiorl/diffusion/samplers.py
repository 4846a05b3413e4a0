"""Reverse-diffusion samplers: ancestral DDPM, DDIM and DPM-Solver (orders 1 and 2M).

Conventions and shapes
----------------------
* Samples ``x`` are float tensors ``[B, ...]`` (typically ``[B, H, C]``: batch, horizon,
  channels). All arithmetic on ``x`` happens in ``x``'s dtype; schedule coefficients are taken
  from the float64 tables of :class:`~radiorl.diffusion.schedules.NoiseSchedule` as python
  floats (one noise level per call, so they are scalars).
* The denoiser is ``model(x, k) -> prediction`` with ``x [B, ...]`` and ``k`` a LongTensor ``[B]``
  whose entries are all equal to the current integer noise level (1..K; k = 0 is clean data).
  ``prediction="epsilon"``: the model predicts the injected noise; ``"x0"``: the clean data.
  The two are converted with ``x_k = a_k x0 + s_k eps`` (``a_k = sqrt(abar_k)``,
  ``s_k = sqrt(1 - abar_k)``).
* Every method only ever evaluates the model at **integer** noise levels from the schedule,
  i.e. at levels it was trained on (no interpolation of a discrete-time model).

Methods
-------
``"ddpm"``  Ancestral sampling over every level ``k = K..1`` (paper eq. (20)):
            ``mu = (x_k - beta_k / s_k * eps) / sqrt(alpha_k) + zeta * Sigma_k * grad J``,
            ``x_{k-1} = mu + temperature * sqrt(Sigma_k) * z`` with the posterior variance
            ``Sigma_k`` (Diffuser's convention; ``Sigma_1 = 0``: the last step adds no noise).
            With x0-prediction or ``clip_x0`` the identical posterior-mean form
            ``coef1_k * x0 + coef2_k * x_k`` is used.
``"ddim"``  DDIM (Song et al. 2021) over :func:`timestep_grid`; ``eta = 0`` is deterministic,
            ``eta = 1`` matches DDPM's variance on the coarse grid.
``"dpm1"``  DPM-Solver order 1 (Lu et al. 2022) in half log-SNR ``lambda = log(a / s)`` form:
            ``x_t = (a_t / a_s) x_s - s_t (e^h - 1) eps``, ``h = lambda_t - lambda_s``. It is
            algebraically DDIM with ``eta = 0``. The step to ``k = 0`` (``lambda = +inf``) uses its
            limit ``x_0 = (x_s - s_s eps) / a_s``.
``"dpm2"``  DPM-Solver++(2M) (Lu et al. 2022b): second-order **multistep** solver in the data
            (x0) prediction form, one model evaluation per step, the previous step's x0 estimate
            reused: ``D = x0_s + (x0_s - x0_r) / (2 r)``, ``r = h_prev / h``,
            ``x_t = (s_t / s_s) x_s - a_t (e^{-h} - 1) D``. The first step is first order (no
            history) and the final step to ``k = 0`` is first order ("lower_order_final"; it must
            be, ``lambda_0 = +inf``), so it returns the last x0 estimate. The multistep variant
            was chosen over the singlestep one because the singlestep midpoint would need the
            model at non-integer noise levels; the data-prediction form is the one recommended
            for guided sampling and combines naturally with ``clip_x0``.

Few-step deterministic samplers (ddim/dpm1/dpm2 with ~10 steps) under-disperse compared with
K-step DDPM even with an exact denoiser (see tests/diffusion for measured numbers): they
sample a different, sharper distribution.

Options (all methods)
---------------------
* ``clip_x0``: the x0 estimate is clamped to ``[-clip_x0, clip_x0]`` at every step and the noise
  estimate re-derived from it. Needed for few-step solvers starting at tiny ``alpha_bar_K``
  (cosine, K = 100: ``alpha_bar_K = 2.4e-7``), where ``x0 = (x - s eps) / a`` amplifies any noise
  error ~2000x.
* ``inpaint``: :class:`Inpaint` -- known entries (e.g. the current observation at horizon index 0)
  are written into the initial noise and after every step (``x = where(mask, values, x)``), so
  they are bitwise equal to ``values`` in the result and in every trajectory element.
* Classifier guidance with ``guide(x, k) -> dJ/dx`` (same shape as x; see
  :func:`radiorl.diffusion.guidance.value_guide`) and scale ``zeta = guidance_scale``:
  ddpm adds ``zeta * Sigma_k * grad`` to the mean (paper eq. (20)); ddim/dpm1/dpm2 use
  ``eps_hat = eps - zeta * s_k * grad`` (DPM-Solver's classifier-guidance correction, i.e. the
  score gains ``+zeta * grad``). The guided eps is then subject to ``clip_x0``. No guidance at
  levels ``k <= guide_stop`` (Diffuser's ``t_stopgrad``). With ``guide=None`` or
  ``guidance_scale=0`` no gradient is ever computed.
* ``temperature``: scales the initial noise and every noise term drawn during sampling
  (ancestral DDPM noise, DDIM ``eta > 0`` noise, the warm-start re-noising); Decision Diffuser
  uses 0.5. It does not scale a given ``x_T``.
* Warm start: ``x_start`` (a clean-data estimate, e.g. the previous plan shifted by one frame)
  and ``start_k`` -> start from ``q_sample(x_start, start_k, noise)`` and run only
  ``start_k -> 0`` (``timestep_grid(K, steps, start_k)``; ddpm: every level start_k..1).

Example
-------
>>> sch = NoiseSchedule.make("cosine", 100)
>>> model = lambda x, k: torch.zeros_like(x)              # "the data is 0"-ish denoiser
>>> g = torch.Generator().manual_seed(0)
>>> x = sample(model, sch, shape=(9, 8, 4), method="dpm2", steps=10, clip_x0=1.0, generator=g)
>>> x.shape
torch.Size([9, 8, 4])
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from radiorl.diffusion.schedules import NoiseSchedule, _finite_float, _is_int

METHODS = ("ddpm", "ddim", "dpm1", "dpm2")
PREDICTIONS = ("epsilon", "x0")


@dataclass
class Inpaint:
    """Known entries clamped at every step: x = where(mask, values, x).

    Attributes:
        mask: bool tensor, broadcastable to x's shape ``[B, H, C]`` (True = known entry).
        values: tensor broadcastable to x's shape; cast to x's dtype before writing, so the
            masked entries of the result equal ``values.to(x.dtype)`` bitwise.

    Example: clamp the current observation ``obs [B, C]`` at horizon index 0 of ``[B, H, C]``::

        mask = torch.zeros(1, H, C, dtype=torch.bool); mask[:, 0] = True
        values = torch.zeros(B, H, C); values[:, 0] = obs
        Inpaint(mask, values)
    """

    mask: torch.Tensor
    values: torch.Tensor

    def __post_init__(self):
        if not isinstance(self.mask, torch.Tensor) or self.mask.dtype != torch.bool:
            raise ValueError(f"mask must be a bool tensor, got "
                             f"{self.mask.dtype if isinstance(self.mask, torch.Tensor) else type(self.mask)}")
        if not isinstance(self.values, torch.Tensor):
            self.values = torch.as_tensor(self.values)
        try:
            torch.broadcast_shapes(self.mask.shape, self.values.shape)
        except RuntimeError:
            raise ValueError(f"mask {tuple(self.mask.shape)} and values {tuple(self.values.shape)} "
                             f"are not broadcastable") from None

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``where(mask, values, x)``; x ``[B, ...]`` -> same shape and dtype."""
        try:
            out_shape = torch.broadcast_shapes(self.mask.shape, self.values.shape, x.shape)
        except RuntimeError:
            out_shape = None
        if out_shape != x.shape:
            raise ValueError(f"inpaint mask {tuple(self.mask.shape)} / values "
                             f"{tuple(self.values.shape)} must broadcast to x's shape {tuple(x.shape)}")
        v = self.values.to(device=x.device, dtype=x.dtype)
        return torch.where(self.mask.to(x.device), v, x)


def timestep_grid(K: int, steps: int, start_k: int | None = None) -> list[int]:
    """Integer noise levels visited by a few-step sampler.

    ``steps + 1`` strictly decreasing integers from ``start_k`` (default ``K``) to ``0``, evenly
    spaced: ``k_i = round_half_up(start_k * (steps - i) / steps)``, i = 0..steps ("linspace";
    equal to diffusers' "trailing" spacing when ``steps`` divides ``K``). It always starts at
    ``start_k`` -- never skips the pure-noise end (unlike "leading" spacing) -- and ends at 0.

    Args:
        K: number of diffusion steps of the schedule (>= 1).
        steps: number of intervals, an integer in ``[1, start_k]``.
        start_k: first level, an integer in ``[1, K]`` (default ``K``).
    Returns:
        list of ``steps + 1`` ints, e.g. ``timestep_grid(100, 3) == [100, 67, 33, 0]``.
    """
    if not _is_int(K) or K < 1:
        raise ValueError(f"K must be an integer >= 1, got {K!r}")
    if start_k is None:
        start, label = int(K), f"K={K}"
    else:
        if not _is_int(start_k) or not 1 <= start_k <= K:
            raise ValueError(f"start_k must be an integer in [1, K={K}], got {start_k!r}")
        start, label = int(start_k), f"start_k={start_k}"
    if not _is_int(steps) or not 1 <= steps <= start:
        raise ValueError(f"steps must be an integer in [1, {label}], got {steps!r}")
    n = int(steps)
    # integer round-half-up keeps the grid strictly decreasing (spacing start/n >= 1)
    return [(2 * start * (n - i) + n) // (2 * n) for i in range(n + 1)]


def sample(model, schedule: NoiseSchedule, x_T: torch.Tensor | None = None, *, shape=None,
           method: str = "ddpm", steps: int | None = None, prediction: str = "epsilon",
           inpaint: Inpaint | None = None, guide=None, guidance_scale: float = 0.0,
           guide_stop: int = 0, clip_x0: float | None = None, eta: float = 0.0,
           temperature: float = 1.0, x_start: torch.Tensor | None = None,
           start_k: int | None = None, generator: torch.Generator | None = None,
           return_trajectory: bool = False):
    """Draw samples by reversing the diffusion ``schedule`` with the denoiser ``model``.

    Args:
        model: ``model(x [B, ...], k LongTensor [B]) -> [B, ...]`` noise or x0 prediction.
        schedule: the :class:`NoiseSchedule` the model was trained with (K steps).
        x_T: optional starting state ``[B, ...]`` at level ``start_k`` (default K); used as is.
            With ``x_start`` it is the noise used to re-noise ``x_start`` instead.
        shape: shape ``(B, ...)`` of the sample when neither ``x_T`` nor ``x_start`` is given.
        method: one of ``METHODS`` (see module docstring).
        steps: ddpm: None, K or start_k (ddpm always visits every level). ddim/dpm1/dpm2:
            number of solver steps, an integer in ``[1, start_k or K]``; None = every level.
        prediction: ``"epsilon"`` or ``"x0"``: what ``model`` returns.
        inpaint: known entries clamped after every update (bitwise exact in the result).
        guide: ``guide(x, k) -> dJ/dx`` (shape of x), called with grad mode enabled.
        guidance_scale: ``zeta >= 0``; 0 disables guidance.
        guide_stop: no guidance at levels ``k <= guide_stop`` (integer in [0, K]).
        clip_x0: None or ``c > 0``: clamp the x0 estimate to ``[-c, c]`` at every step.
        eta: DDIM stochasticity in ``[0, 1]`` (only for ``method="ddim"``).
        temperature: ``>= 0``, multiplies the initial and every intermediate noise draw.
        x_start: clean-data estimate ``[B, ...]`` for a warm start (needs ``start_k``).
        start_k: first level, integer in ``[1, K]`` (default K).
        generator: torch.Generator for every random draw (same seed -> identical samples).
        return_trajectory: also return the list of x at every visited level (after inpainting),
            from the start level down to 0 (its last element is the result).
    Returns:
        ``x0 [B, ...]`` in the dtype of ``x_T``/``x_start`` (default dtype otherwise), or
        ``(x0, trajectory)`` if ``return_trajectory``.
    Raises:
        ValueError for any argument outside its documented range.
    """
    # ------------------------------------------------------------ validation
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}")
    if not callable(model):
        raise ValueError("model must be callable as model(x, k)")
    K = schedule.K
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {list(PREDICTIONS)}, got {prediction!r}")
    if start_k is not None and (not _is_int(start_k) or not 1 <= start_k <= K):
        raise ValueError(f"start_k must be an integer in [1, K={K}], got {start_k!r}")
    start = K if start_k is None else int(start_k)
    if x_start is not None and start_k is None:
        raise ValueError("x_start needs start_k (the noise level x_start is re-noised to), got None")
    if method == "ddpm":
        if steps is not None and not (_is_int(steps) and steps in (K, start)):
            allowed = f"K={K}" + ("" if start == K else f" or start_k={start}")
            raise ValueError(f"method='ddpm' visits every level: steps must be None or {allowed}, "
                             f"got {steps!r}")
        ks = list(range(start, -1, -1))
    else:
        ks = timestep_grid(K, start if steps is None else steps, start_k)
    scale = _finite_float("guidance_scale", guidance_scale, lo=0.0, lo_open=False)
    if not _is_int(guide_stop) or not 0 <= guide_stop <= K:
        raise ValueError(f"guide_stop must be an integer in [0, K={K}], got {guide_stop!r}")
    if clip_x0 is not None:
        clip = _finite_float("clip_x0", clip_x0, lo=0.0, lo_open=True)
    else:
        clip = None
    eta = _finite_float("eta", eta, lo=0.0, hi=1.0, lo_open=False, hi_open=False)
    if eta != 0.0 and method != "ddim":
        raise ValueError(f"eta must be 0 for method={method!r} (eta is DDIM's stochasticity), got {eta!r}")
    temperature = _finite_float("temperature", temperature, lo=0.0, lo_open=False)
    if guide is not None and not callable(guide):
        raise ValueError("guide must be None or callable as guide(x, k)")
    if inpaint is not None and not isinstance(inpaint, Inpaint):
        raise ValueError(f"inpaint must be None or an Inpaint, got {type(inpaint).__name__}")
    for name, t in (("x_T", x_T), ("x_start", x_start)):
        if t is not None and (not isinstance(t, torch.Tensor) or not t.dtype.is_floating_point
                              or t.ndim < 1):
            raise ValueError(f"{name} must be a floating-point tensor [B, ...]")
    ref = x_start if x_start is not None else x_T
    if ref is not None:
        if shape is not None and tuple(shape) != tuple(ref.shape):
            raise ValueError(f"shape {tuple(shape)} disagrees with "
                             f"{'x_start' if x_start is not None else 'x_T'} {tuple(ref.shape)}")
        if x_T is not None and x_start is not None and x_T.shape != x_start.shape:
            raise ValueError(f"x_T {tuple(x_T.shape)} and x_start {tuple(x_start.shape)} "
                             f"must have the same shape")
        shape = tuple(ref.shape)
        dtype, device = ref.dtype, ref.device
    else:
        if shape is None:
            raise ValueError("shape must be given when x_T and x_start are None")
        try:
            shape = tuple(int(s) for s in shape)
        except TypeError:
            raise ValueError(f"shape must be a tuple of positive ints (B, ...), got {shape!r}") from None
        if len(shape) < 1 or min(shape) < 1:
            raise ValueError(f"shape must be a tuple of positive ints (B, ...), got {shape!r}")
        dtype = torch.get_default_dtype()
        device = generator.device if generator is not None else torch.device("cpu")
    guided = guide is not None and scale > 0.0

    def noise():
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)

    sab = schedule.sqrt_alpha_bars.tolist()
    somab = schedule.sqrt_one_minus_alpha_bars.tolist()
    abar = schedule.alpha_bars.tolist()
    lam = schedule.lambdas.tolist()
    B = shape[0]

    # ------------------------------------------------------------ sampling
    with torch.no_grad():
        if x_start is not None:
            eps0 = x_T if x_T is not None else noise() * temperature
            x = schedule.q_sample(x_start, start, eps0.to(device=x_start.device, dtype=dtype))
        elif x_T is not None:
            x = x_T.clone()
        else:
            x = noise() * temperature
        if inpaint is not None:
            x = inpaint.apply(x)
        traj = [x] if return_trajectory else None
        prev_x0 = None
        prev_lam = None
        for s, t in zip(ks[:-1], ks[1:]):
            a_s, s_s = sab[s], somab[s]
            kt = torch.full((B,), s, dtype=torch.long, device=x.device)
            out = model(x, kt)
            if not isinstance(out, torch.Tensor) or out.shape != x.shape:
                raise ValueError(f"model output must be a tensor of x's shape {tuple(x.shape)}, got "
                                 f"{tuple(out.shape) if isinstance(out, torch.Tensor) else type(out)}")
            out = out.to(x.dtype)
            eps, x0 = (out, None) if prediction == "epsilon" else (None, out)
            grad = None
            if guided and s > guide_stop:
                with torch.enable_grad():
                    grad = guide(x, kt)
                if not isinstance(grad, torch.Tensor) or grad.shape != x.shape:
                    raise ValueError(f"guide must return dJ/dx of x's shape {tuple(x.shape)}, got "
                                     f"{tuple(grad.shape) if isinstance(grad, torch.Tensor) else type(grad)}")
                grad = grad.detach().to(x.dtype)
                if method != "ddpm":
                    if eps is None:
                        eps = (x - a_s * x0) / s_s
                    eps = eps - (scale * s_s) * grad
                    x0 = None
            if clip is not None:
                if x0 is None:
                    x0 = (x - s_s * eps) / a_s
                x0 = x0.clamp(-clip, clip)
                eps = (x - a_s * x0) / s_s

            if method == "ddpm":
                var = float(schedule.posterior_variance[s])
                if x0 is not None:
                    mean = (float(schedule.posterior_mean_coef1[s]) * x0
                            + float(schedule.posterior_mean_coef2[s]) * x)
                else:
                    beta = float(schedule.betas[s])
                    mean = (x - (beta / s_s) * eps) / math.sqrt(float(schedule.alphas[s]))
                if grad is not None:
                    mean = mean + (scale * var) * grad
                if t > 0 and var > 0.0 and temperature > 0.0:
                    x = mean + (math.sqrt(var) * temperature) * noise()
                else:
                    x = mean
            elif method == "ddim":
                if x0 is None:
                    x0 = (x - s_s * eps) / a_s
                if eps is None:
                    eps = (x - a_s * x0) / s_s
                sig = 0.0
                if eta > 0.0 and t > 0:
                    sig = eta * math.sqrt((1.0 - abar[t]) / (1.0 - abar[s]) * (1.0 - abar[s] / abar[t]))
                direction = math.sqrt(max(1.0 - abar[t] - sig * sig, 0.0))
                x = sab[t] * x0 + direction * eps
                if sig > 0.0 and temperature > 0.0:
                    x = x + (sig * temperature) * noise()
            elif method == "dpm1":
                if eps is None:
                    eps = (x - a_s * x0) / s_s
                if t == 0:  # lambda_0 = +inf: limit of the update
                    x = (x - s_s * eps) / a_s
                else:
                    h = lam[t] - lam[s]
                    x = (sab[t] / a_s) * x - (somab[t] * math.expm1(h)) * eps
            else:  # dpm2: DPM-Solver++(2M)
                if x0 is None:
                    x0 = (x - s_s * eps) / a_s
                if t == 0:  # lower_order_final; lambda_0 = +inf
                    x = x0
                else:
                    h = lam[t] - lam[s]
                    if prev_x0 is None:
                        d = x0
                    else:
                        r = (lam[s] - prev_lam) / h
                        d = x0 + (0.5 / r) * (x0 - prev_x0)
                    x = (somab[t] / s_s) * x - (sab[t] * math.expm1(-h)) * d
                prev_x0, prev_lam = x0, lam[s]
            if inpaint is not None:
                x = inpaint.apply(x)
            if traj is not None:
                traj.append(x)
    return (x, traj) if return_trajectory else x

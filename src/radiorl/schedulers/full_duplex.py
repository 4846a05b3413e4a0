"""Reference policies for the full-duplex BS (:mod:`radiorl.envs.full_duplex`): random
feasible actions, MRT downlink with MMSE receivers, and a projected-gradient sum-rate optimizer
(the "upper reference" learned agents are compared with).

Every reference comes as a plain function on ``(env, state)`` returning an action
``float[B, action_dim]`` in the env's layout, so ``env.sum_rate(state, action)`` evaluates it,
and as a Policy (``act(obs, info, policy_state) -> (actions, policy_state)``).

Information (genie). MRT and the optimizer need the current channels ``g_k, h_l`` and ``G``:
their policies declare ``requires = {"global_csi"}`` and read the current
:class:`~radiorl.envs.full_duplex.FullDuplexState` from ``info["csi"]``
(:meth:`FullDuplexEnv.policy_view`). The random policy requires nothing.

==================  ==============  ========================================================
policy              requires        what it does
==================  ==============  ========================================================
random              (nothing)       uniform action in [−1, 1]^D (feasible after mapping)
mrt-equal           global_csi      v_k = √(P_max/K)·g_k/‖g_k‖, p_l = P_l, MMSE w_l
mrt-waterfill       global_csi      v_k = √P_k·g_k/‖g_k‖, P_k water-filled on ‖g_k‖²/σ²
sum-rate-opt        global_csi      projected gradient ascent on C(V, p, W_MMSE), restarts
==================  ==============  ========================================================

The optimizer works in noise-normalized units on the beamformers themselves (not on the
[−1, 1] action): variables ``V`` (Re/Im, √W) and ``p`` (W), with the receive beamformers
eliminated by the closed-form MMSE receiver (optimal for any ``V, p``), so the objective is
``C(V, p) = Σ_k log2(1+γ_k(V)) + Σ_l log2(1 + p_l h_lᴴ R_l(V, p)⁻¹ h_l)`` re-implemented in
torch (float64, autograd; :func:`torch_sum_rate`). Projected gradient ascent with one step
size per problem and backtracking: the step ``x ← Π(x + η ∇C)`` is kept only if ``C`` does not
decrease (then ``η`` grows), else it is undone (and ``η`` shrinks), so ``C`` never decreases.
``Π`` is the projection onto the feasible set (``V ← V·min(1, √P_max/‖V‖_F)``,
``p ← clip(p, 0, P_l)``; with ``power_form="projection"`` the Re/Im parts of ``V`` are first
clipped to [−1, 1] so the result is exactly representable as an action). Restarts start from
water-filled MRT, from MRT projected off the clutter's transmit directions
(:func:`clutter_nulling_beamformers`; the two sides of the DL-gain / clutter-leakage trade-off)
and from random mixtures of the two; the best restart is kept, so the result is never below
water-filled MRT (up to the [−1, 1] clipping of the projection form). It never exceeds ``R'``
(``R'`` bounds every feasible point). Cost: ~1 s for 64 drops with the default config on one
thread. A projected Adam variant was tried and is worse (its fixed per-coordinate step keeps
jumping around a near-optimal start).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from radiorl.envs.base import check_number, check_requires
from radiorl.envs.full_duplex import FullDuplexEnv, FullDuplexState, mmse_receiver, waterfill
from radiorl.phy.array import ula_steering

__all__ = [
    "random_action", "mrt_beamformers", "clutter_nulling_beamformers", "mrt_action",
    "SumRateOptimizerConfig",
    "optimize_sum_rate", "torch_sum_rate", "torch_action_sum_rate", "RandomPolicy", "MRTPolicy", "SumRateOptimizerPolicy",
]


# =============================================================================== plain functions
def random_action(env: FullDuplexEnv, batch: int, rng: np.random.Generator) -> np.ndarray:
    """``float[batch, action_dim]`` uniform in [−1, 1] (every action maps to a feasible
    ``(V, p, W)``)."""
    batch = check_number("batch", batch, low=1, integer=True)
    return rng.uniform(-1.0, 1.0, (batch, env.action_dim))


def mrt_beamformers(g: np.ndarray, p_max: float, power: str = "equal") -> np.ndarray:
    """Maximum-ratio transmission ``v_k = √P_k·g_k/‖g_k‖``.

    Args:
        g: ``complex[B, K, N_t]`` DL channels (noise-normalized: ``‖g_k‖²`` = SNR per watt).
        p_max: ``P_max`` (W).
        power: ``"equal"`` (``P_k = P_max/K``) or ``"waterfill"`` (water-filling on
            ``‖g_k‖²``, which maximizes ``Σ_k log2(1 + ‖g_k‖² P_k)``).

    Returns:
        ``complex[B, N_t, K]`` with ``Σ‖v_k‖² = P_max``.
    """
    if power not in ("equal", "waterfill"):
        raise ValueError(f"power must be 'equal' or 'waterfill', got {power!r}")
    a = (np.abs(g) ** 2).sum(-1)                                      # [B, K]
    K = g.shape[-2]
    pk = np.full(a.shape, p_max / K) if power == "equal" else waterfill(a, p_max)
    unit = g / np.sqrt(np.where(a > 0, a, 1.0))[..., None]
    return (np.sqrt(pk)[..., None] * unit).transpose(0, 2, 1)


def mrt_action(env: FullDuplexEnv, state: FullDuplexState, power: str = "equal") -> np.ndarray:
    """MRT downlink (``power="equal"`` or ``"waterfill"``), full UL power ``p_l = P_l`` and
    MMSE receivers, as an action in ``env``'s layout. Genie: reads ``state.g, state.h``."""
    V = mrt_beamformers(state.g, env.params.p_max_w, power)
    p = np.full((state.batch, env.params.n_ul), env.params.p_ul_max_w)
    W, _ = mmse_receiver(state.h, p, env.G, V)
    return env.encode_action(V, p, W)


def clutter_nulling_beamformers(env: FullDuplexEnv, g: np.ndarray) -> np.ndarray:
    """MRT restricted to the orthogonal complement of the clutter's transmit directions:
    ``v_k ∝ Π⊥ g_k`` with ``Π⊥ = I − A A⁺``, ``A = [a_t(θ_1) … a_t(θ_F)]``, power water-filled on
    ``‖Π⊥ g_k‖²`` (no clutter: plain water-filled MRT). Returns ``complex[B, N_t, K]``."""
    P = env.params
    ang = np.deg2rad(np.atleast_1d(np.asarray(P.clutter_angles_deg, dtype=float)))
    if len(ang) == 0:
        return mrt_beamformers(g, P.p_max_w, "waterfill")
    A = ula_steering(P.n_tx, ang).T                                   # [N_t, F]
    proj = np.eye(P.n_tx) - A @ np.linalg.pinv(A)
    gp = (proj @ g[..., None])[..., 0]                                # [B, K, N_t] Π⊥ g_k
    return mrt_beamformers(gp, P.p_max_w, "waterfill")


# =============================================================================== torch objective
def torch_sum_rate(g, h, G, V, p, c=None):
    """Differentiable sum rate with MMSE receivers (noise-normalized units, noise = 1).

    Args (torch tensors): ``g complex[M, K, N_t]``, ``h complex[M, L, N_r]``,
    ``G complex[N_r, N_t]``, ``V complex[M, N_t, K]``, ``p float[M, L]``; ``c float[M, K, L]``
    selects the extended DL model. Returns ``float[M]`` ``C`` in bit/s/Hz.
    """
    M = (g.conj() @ V).abs() ** 2                                     # [M, K, K]
    sig = torch.diagonal(M, dim1=-2, dim2=-1)
    if c is None:
        snr = sig
    else:
        snr = sig / (M.sum(-1) - sig + (c * p[:, None, :]).sum(-1) + 1.0)
    GV = G @ V
    clutter = GV @ GV.conj().transpose(-1, -2)
    hh = h[:, :, :, None] * h[:, :, None, :].conj()
    ph = p[:, :, None, None].to(hh.dtype) * hh
    eye = torch.eye(h.shape[-1], dtype=hh.dtype)
    R = (ph.sum(1) + clutter + eye)[:, None] - ph                     # [M, L, N_r, N_r]
    x = torch.linalg.solve(R, h[..., None])[..., 0]
    q = (h.conj() * x).sum(-1).real
    sinr = p * q
    inv_ln2 = 1.0 / np.log(2.0)
    return (torch.log1p(snr).sum(-1) + torch.log1p(sinr).sum(-1)) * inv_ln2


def torch_action_sum_rate(env: FullDuplexEnv, state: FullDuplexState,
                          action: torch.Tensor) -> torch.Tensor:
    """``C`` of the actions ``[B, action_dim]`` (any float dtype, values in [−1, 1]) on
    ``state``, differentiable w.r.t. ``action``: :meth:`FullDuplexEnv.map_action` in torch
    followed by :func:`torch_sum_rate` (float64). Only for ``mmse_receiver=True`` envs (the
    receivers are the closed-form MMSE ones). Returns ``float64[B]`` (bit/s/Hz); equals
    ``env.sum_rate(state, action)`` (tested; up to ~1e-12 at a zero power level, whose
    gradient is kept finite)."""
    P = env.params
    if not P.mmse_receiver:
        raise ValueError("torch_action_sum_rate needs an env with mmse_receiver=True")
    if not isinstance(action, torch.Tensor) or action.ndim != 2 \
            or action.shape != (state.batch, env.action_dim):
        got = tuple(action.shape) if isinstance(action, torch.Tensor) else type(action).__name__
        raise ValueError(f"action: expected a tensor [{state.batch}, {env.action_dim}], got {got}")
    a = action.to(torch.float64).clamp(-1.0, 1.0)
    sl, K, Nt = env.action_slices, P.n_dl, P.n_tx
    Vt = torch.complex(a[:, sl["v_re"]], a[:, sl["v_im"]])            # user-major
    nrm = Vt.abs().pow(2).sum(-1, keepdim=True).sqrt()
    U = (Vt / nrm.clamp_min(1e-300)).reshape(-1, K, Nt).transpose(1, 2)
    if P.power_form == "direction_level":
        # C depends smoothly on the power P_max level, but the sqrt in between has an infinite
        # slope at 0 (autograd: inf * 0 = nan): + 1e-24 W keeps it finite, |V| moves < 1e-12
        level = (a[:, sl["v_level"]][:, 0] + 1.0) / 2.0
        V = (P.p_max_w * level + 1e-24).sqrt()[:, None, None] * U
    else:
        V = U * nrm.clamp_max(np.sqrt(P.p_max_w))[:, :, None]
    p = torch.as_tensor(np.asarray(env._p_ul_max), dtype=torch.float64) * (a[:, sl["p_ul"]] + 1) / 2
    c = torch.as_tensor(state.c) if P.extended_interference else None
    return torch_sum_rate(torch.as_tensor(state.g), torch.as_tensor(state.h),
                          torch.as_tensor(env.G), V, p, c)


@dataclass(frozen=True)
class SumRateOptimizerConfig:
    """Projected-gradient sum-rate optimizer (module docstring).

    Attributes: iterations (per restart; all restarts and copies run as one batch); restarts
    (≥ 1; 0: water-filled MRT, 1: clutter-nulling MRT, others: random mixtures of the two at
    random power levels); lr (initial step size of every problem, in √W (V) and W (p) per
    bit/s/Hz of gradient); grow / shrink (step-size factors after an accepted / rejected
    step); seed (random restarts).
    """

    iterations: int = 300
    restarts: int = 4
    lr: float = 0.05
    grow: float = 1.5
    shrink: float = 0.5
    seed: int = 0

    def __post_init__(self):
        check_number("iterations", self.iterations, low=0, integer=True)
        check_number("restarts", self.restarts, low=1, integer=True)
        check_number("lr", self.lr, low=0, low_open=True)
        check_number("grow", self.grow, low=1.0)
        check_number("shrink", self.shrink, low=0, high=1.0, low_open=True)
        if self.shrink >= 1.0:
            raise ValueError(f"shrink must be in (0, 1), got {self.shrink!r}")
        check_number("seed", self.seed, low=0, integer=True)


def optimize_sum_rate(env: FullDuplexEnv, state: FullDuplexState,
                      config: SumRateOptimizerConfig = SumRateOptimizerConfig(),
                      return_history: bool = False):
    """Maximize ``C`` over ``(V, p)`` (MMSE receivers) for every copy of ``state``.

    Genie: reads ``state.g, state.h, state.c`` and ``env.G``.

    Returns:
        ``action float[B, action_dim]`` (the best point found, in ``env``'s layout) — and, with
        ``return_history``, also ``float[iterations + 1, B]``: the best ``C`` over restarts at
        the start and after each iteration (bit/s/Hz, torch evaluation; non-decreasing).
    """
    P = env.params
    B, K, L, Nt = state.batch, P.n_dl, P.n_ul, P.n_tx
    R = config.restarts
    rng = np.random.default_rng(config.seed)
    # initial points [R, B, ...]
    V0 = np.empty((R, B, Nt, K), complex)
    p0 = np.empty((R, B, L))
    mrt = mrt_beamformers(state.g, P.p_max_w, "waterfill")
    zf = clutter_nulling_beamformers(env, state.g)
    V0[0], p0[0] = mrt, P.p_ul_max_w
    if R > 1:
        V0[1], p0[1] = zf, P.p_ul_max_w
    if R > 2:
        # random mixtures of the two, perturbed, at random power levels and UL powers
        n = R - 2
        t = rng.uniform(0.0, 1.0, (n, B, 1, 1))
        z = rng.standard_normal((n, B, Nt, K)) + 1j * rng.standard_normal((n, B, Nt, K))
        z *= rng.uniform(0.0, 0.5, (n, B, 1, 1)) * np.sqrt(P.p_max_w / (Nt * K))
        mix = (1.0 - t) * mrt[None] + t * zf[None] + z
        lvl = rng.uniform(0.3, 1.0, (n, B, 1, 1))
        nrm = np.maximum(np.linalg.norm(mix, axis=(2, 3), keepdims=True), 1e-300)
        V0[2:] = mix / nrm * np.sqrt(P.p_max_w * lvl)
        p0[2:] = rng.uniform(0.0, P.p_ul_max_w, (n, B, L))
    projection = P.power_form == "projection"

    t = lambda x: torch.as_tensor(np.array(x))  # noqa: E731
    rep = lambda x: np.concatenate([x] * R, axis=0)  # noqa: E731  restart-major [R·B, ...]
    g, h = t(rep(state.g)), t(rep(state.h))
    c = t(rep(state.c)) if P.extended_interference else None
    G = t(env.G)
    sqrt_pmax = float(np.sqrt(P.p_max_w))

    def project(vr, vi, pp):
        if projection:
            vr, vi = vr.clamp(-1.0, 1.0), vi.clamp(-1.0, 1.0)
        nrm = torch.sqrt((vr ** 2 + vi ** 2).sum((1, 2)))
        s = torch.clamp(sqrt_pmax / torch.clamp(nrm, min=1e-300), max=1.0)[:, None, None]
        return vr * s, vi * s, pp.clamp(0.0, P.p_ul_max_w)

    def value_and_grad(x):
        x = [y.detach().requires_grad_(True) for y in x]
        C = torch_sum_rate(g, h, G, torch.complex(x[0], x[1]), x[2], c)
        grads = torch.autograd.grad(C.sum(), x)
        return [y.detach() for y in x], C.detach(), grads

    x0 = project(t(V0.real.reshape(R * B, Nt, K)), t(V0.imag.reshape(R * B, Nt, K)),
                 t(p0.reshape(R * B, L)))
    x, C, grad = value_and_grad(x0)
    history = [C.reshape(R, B).max(0).values.numpy().copy()]
    # projected gradient ascent, one step size per problem: a step is kept only if C does not
    # decrease (then the step grows by `grow`), else it is undone and the step shrinks
    eta = torch.full((R * B,), config.lr, dtype=torch.float64)
    for _ in range(config.iterations):
        e = [eta[:, None, None], eta[:, None, None], eta[:, None]]
        x_try, C_try, g_try = value_and_grad(project(*[y + ei * gr for y, ei, gr
                                                       in zip(x, e, grad)]))
        acc = C_try >= C
        keep = lambda new, old: torch.where(  # noqa: E731
            acc.view(-1, *[1] * (old.dim() - 1)), new, old)
        C = torch.where(acc, C_try, C)
        x = [keep(yt, y) for yt, y in zip(x_try, x)]
        grad = [keep(gt, gr) for gt, gr in zip(g_try, grad)]
        eta = torch.where(acc, eta * config.grow, eta * config.shrink).clamp(1e-12, 1e6)
        history.append(C.reshape(R, B).max(0).values.numpy().copy())

    win = C.reshape(R, B).argmax(0).numpy()                           # best restart per copy
    idx = win * B + np.arange(B)
    V = (x[0].numpy() + 1j * x[1].numpy())[idx]
    p = x[2].numpy()[idx]
    # exact feasibility after float rounding
    V = V * np.minimum(1.0, np.sqrt(P.p_max_w) / np.maximum(
        np.linalg.norm(V, axis=(1, 2)), 1e-300))[:, None, None]
    p = np.clip(p, 0.0, P.p_ul_max_w)
    W, _ = mmse_receiver(state.h, p, env.G, V)
    action = env.encode_action(V, p, W)
    return (action, np.stack(history)) if return_history else action


# =============================================================================== policies
@dataclass
class _FullDuplexPolicy:
    name: str = "policy"
    requires: frozenset = frozenset()
    env: FullDuplexEnv | None = None
    rng: np.random.Generator | None = None
    options: dict = field(default_factory=dict)

    def reset(self, env: FullDuplexEnv, batch: int, seed: int | None = 0):
        if not isinstance(env, FullDuplexEnv):
            raise ValueError(f"policy {self.name!r} works on FullDuplexEnv, got "
                             f"{type(env).__name__}")
        self.requires = check_requires(self.requires, self.name)
        self.env = env
        self.rng = np.random.default_rng(seed)
        return None

    def _state(self, info) -> FullDuplexState:
        s = info["csi"]
        if not isinstance(s, FullDuplexState):
            raise ValueError(f"{self.name}: info['csi'] must be the FullDuplexState "
                             f"(FullDuplexEnv.policy_view), got {type(s).__name__}")
        return s


class RandomPolicy(_FullDuplexPolicy):
    """Uniform random action in [−1, 1]^D; requires nothing."""

    def __init__(self):
        super().__init__("random", frozenset())

    def act(self, obs, info, policy_state):
        return random_action(self.env, np.asarray(obs).shape[0], self.rng), policy_state


class MRTPolicy(_FullDuplexPolicy):
    """MRT downlink (``power="equal"|"waterfill"``), full UL power, MMSE receivers
    (:func:`mrt_action`); requires ``global_csi``."""

    def __init__(self, power: str = "equal"):
        if power not in ("equal", "waterfill"):
            raise ValueError(f"power must be 'equal' or 'waterfill', got {power!r}")
        super().__init__(f"mrt-{power}", frozenset({"global_csi"}), options={"power": power})

    def act(self, obs, info, policy_state):
        return mrt_action(self.env, self._state(info), self.options["power"]), policy_state


class SumRateOptimizerPolicy(_FullDuplexPolicy):
    """:func:`optimize_sum_rate` every step; requires ``global_csi``."""

    def __init__(self, config: SumRateOptimizerConfig = SumRateOptimizerConfig()):
        super().__init__("sum-rate-opt", frozenset({"global_csi"}), options={"config": config})

    def act(self, obs, info, policy_state):
        return optimize_sum_rate(self.env, self._state(info), self.options["config"]), \
            policy_state

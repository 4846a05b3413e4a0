"""The MAPPO objective of Zhang & Guo (Sec. III-B): truncated GAE (eq. 19), the clipped value
loss (eq. 20) and the clipped surrogate with entropy bonus (eq. 21–22). Pure functions on
tensors, tested against hand-computed values.

Notes on the paper's notation: eq. (20) writes the value target as ``A``; as in PPO/MAPPO the
target is the return ``A + V_old`` (the advantage plus the value used to compute it). Eq. (19)
ends with ``A^(T) = V(X^(T))``; we bootstrap the last step with the value of the next state
instead (standard truncated GAE), which is what eq. (19) gives when the sum is cut at T.
"""
from __future__ import annotations

import torch


def gae(rewards: torch.Tensor, values: torch.Tensor, last_value: torch.Tensor,
        done: torch.Tensor, boot_value: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimates over a rollout (time on axis 0), eq. (19).

    Args:
        rewards, values, done, boot_value: ``[T, ...]``. ``done[t] = 1`` when the episode of
            that agent ended at step ``t`` (a queue crossed the threshold) and a new one starts
            at ``t + 1``; the step then bootstraps with ``boot_value[t]``, the value of the
            state the episode ended in, and does not chain the next episode's advantages.
            Termination by the queue threshold is treated like a time limit (ending early is
            not rewarded).
        last_value: ``[...]`` value of the state after the last step.
    Returns:
        ``(advantages, returns)``, ``returns = advantages + values``.

    Example (γ = 0.9, λ = 0.5, rewards 1, 1, values 0.5, 0.4, bootstrap 0.2, no done):
        δ1 = 1 + 0.9·0.2 − 0.4 = 0.78, A1 = 0.78; δ0 = 1 + 0.9·0.4 − 0.5 = 0.86,
        A0 = 0.86 + 0.45·0.78 = 1.211.
    """
    T = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    next_adv = torch.zeros_like(last_value)
    next_value = last_value
    for t in range(T - 1, -1, -1):
        d = done[t]
        nv = d * boot_value[t] + (1 - d) * next_value
        delta = rewards[t] + gamma * nv - values[t]
        adv[t] = delta + gamma * lam * (1 - d) * next_adv
        next_adv = adv[t]
        next_value = values[t]
    return adv, adv + values


def clipped_value_loss(value: torch.Tensor, old_value: torch.Tensor, target: torch.Tensor,
                       eps: float, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. (20) for tensors ``[M, ...]`` (member axis first): mean over samples of ``max((V − R)², (c_ε(V, V_old) − R)²)`` with
    ``c_ε(x, y) = min(max(x, y − ε), y + ε)``."""
    clipped = old_value + (value - old_value).clamp(-eps, eps)
    loss = torch.maximum((value - target) ** 2, (clipped - target) ** 2)
    return _mean(loss, mask)


def clipped_surrogate(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor,
                      entropy: torch.Tensor, eps: float, entropy_coef: float,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. (22) for tensors ``[M, ...]``, returned as a loss to minimise: ``−(mean min(r A, c_ε(r, 1) A) + δ mean H)``
    with ``r = exp(logp − old_logp)`` (eq. 21)."""
    ratio = torch.exp(logp - old_logp)
    surr = torch.minimum(ratio * adv, ratio.clamp(1 - eps, 1 + eps) * adv)
    return -(_mean(surr, mask) + entropy_coef * _mean(entropy, mask))


def _mean(x, mask):
    """Mean over every axis but the first (the member axis ``M``), summed over members: each
    member's parameters get the gradient of its own mean loss (eq. 22 per agent; with ``M = 1``
    the mean over all agents, eq. 23–24)."""
    x = x.reshape(x.shape[0], -1)
    if mask is None:
        return x.mean(1).sum()
    m = mask.reshape(mask.shape[0], -1)
    return ((x * m).sum(1) / m.sum(1).clamp(min=1.0)).sum()

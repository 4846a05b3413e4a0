"""Shared check for the nn tests: a network can fit a fixed small batch."""
from __future__ import annotations

import torch


def fit_ratio(net, inputs: tuple, target: torch.Tensor, lr: float, steps: int = 200) -> tuple:
    """Adam on the MSE between ``net(*inputs)`` and ``target``; returns (first, last) loss."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    with torch.no_grad():
        first = (net(*inputs) - target).pow(2).mean().item()
    for _ in range(steps):
        loss = (net(*inputs) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = (net(*inputs) - target).pow(2).mean().item()
    return first, last

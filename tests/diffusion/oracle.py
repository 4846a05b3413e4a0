"""Analytic Gaussian oracle for the diffusion tests (helper module, not a test file).

Data ``x0 ~ N(mu, diag(s^2))`` (independent dims). Then ``x_k ~ N(a_k mu, v_k)`` with
``a_k = sqrt(abar_k)``, ``v_k = abar_k s^2 + 1 - abar_k``, and the exact (MMSE) denoisers are

    eps*(x_k, k) = sqrt(1 - abar_k) (x_k - a_k mu) / v_k
    x0*(x_k, k)  = mu + a_k s^2 (x_k - a_k mu) / v_k

The probability-flow ODE maps Gaussians to Gaussians monotonically per dimension, so its exact
solution keeps the z-score: ``x_0 = mu + s (x_k - a_k mu) / sqrt(v_k)``; it depends only on
``abar`` at the two end points, so it is exact for the discrete schedule too.
"""
from __future__ import annotations

import math

import torch


class GaussianOracle:
    def __init__(self, schedule, mu=0.3, s=0.3, eps_error=0.0):
        self.sch = schedule
        self.mu = torch.as_tensor(mu, dtype=torch.float64)
        self.s = torch.as_tensor(s, dtype=torch.float64)
        self.eps_error = eps_error
        self.calls = []  # k values seen (first entry of each call)

    def _coef(self, x, k):
        ab = self.sch.alpha_bars[k.cpu()].view(-1, *([1] * (x.ndim - 1)))
        mu, s = self.mu, self.s
        v = ab * s * s + 1.0 - ab
        return ab, v, mu, s

    def eps(self, x, k):
        """Exact noise prediction (+ a constant error ``eps_error``), x [B, ...] -> [B, ...]."""
        self.calls.append(int(k[0]))
        ab, v, mu, _ = self._coef(x, k)
        out = (1.0 - ab).sqrt() * (x.double() - ab.sqrt() * mu) / v + self.eps_error
        return out.to(x.dtype)

    def x0(self, x, k):
        """Exact clean-data prediction, x [B, ...] -> [B, ...]."""
        self.calls.append(int(k[0]))
        ab, v, mu, s = self._coef(x, k)
        out = mu + ab.sqrt() * s * s * (x.double() - ab.sqrt() * mu) / v
        return out.to(x.dtype)

    def exact_ode(self, x_k, k: int):
        """Exact probability-flow ODE solution from level k to 0 (float64)."""
        ab = float(self.sch.alpha_bars[k])
        v = ab * self.s ** 2 + 1.0 - ab
        return self.mu + self.s * (x_k.double() - math.sqrt(ab) * self.mu) / v.sqrt()

    def ddpm_moments(self, start_k=None, temperature=1.0, m0=0.0, var0=None):
        """Exact mean and std of the K-step ancestral DDPM output when x_start ~ N(m0, var0).

        With the exact eps, one DDPM step (paper eq. 20) is linear:
        ``x_{k-1} = A_k x_k + b_k + temperature sqrt(Sigma_k) z``; propagate mean and variance.
        Computed from the betas with its own formulas (not the sampler's code path).
        """
        sch = self.sch
        K = sch.K if start_k is None else start_k
        mu, s = float(self.mu), float(self.s)
        m = m0
        V = temperature ** 2 if var0 is None else var0
        abar = 1.0
        abars = [1.0]
        for b in sch.betas[1:].tolist():
            abar *= 1.0 - b
            abars.append(abar)
        for k in range(K, 0, -1):
            ab, be = abars[k], float(sch.betas[k])
            v = ab * s * s + 1.0 - ab
            c = math.sqrt(1.0 - ab) / v                      # eps* = c (x - sqrt(ab) mu)
            A = (1.0 - be / math.sqrt(1.0 - ab) * c) / math.sqrt(1.0 - be)
            b_ = be / math.sqrt(1.0 - ab) * c * math.sqrt(ab) * mu / math.sqrt(1.0 - be)
            sig2 = (1.0 - abars[k - 1]) / (1.0 - ab) * be if k > 1 else 0.0
            m = A * m + b_
            V = A * A * V + temperature ** 2 * sig2
        return m, math.sqrt(V)

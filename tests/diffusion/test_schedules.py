"""NoiseSchedule tables against closed forms; forward-noising moments; serialisation; errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from radiorl.diffusion import SCHEDULES, NoiseSchedule

torch.set_num_threads(1)


def _cosine_closed_form(K, s=0.008):
    f = [math.cos((k / K + s) / (1 + s) * math.pi / 2) ** 2 for k in range(K + 1)]
    return [fk / f[0] for fk in f]


@pytest.mark.parametrize("K", [10, 100, 1000])
def test_cosine_matches_closed_form(K):
    sch = NoiseSchedule.make("cosine", K)
    ref = torch.tensor(_cosine_closed_form(K), dtype=torch.float64)
    assert sch.K == K and sch.kind == "cosine"
    for name in ("betas", "alphas", "alpha_bars", "posterior_variance"):
        t = getattr(sch, name)
        assert t.dtype == torch.float64 and t.shape == (K + 1,)
    # unclipped steps follow f(k/K)/f(0) exactly; the closed form reaches 0 at k = K, where the
    # clipped beta_K = 0.999 leaves alpha_bar_K = alpha_bar_{K-1} * 0.001
    torch.testing.assert_close(sch.alpha_bars[:K], ref[:K], rtol=1e-12, atol=1e-15)
    assert float(sch.betas[K]) == pytest.approx(0.999)
    assert float(sch.alpha_bars[K]) == pytest.approx(float(ref[K - 1]) * 1e-3, rel=1e-9)
    if K == 100:
        assert float(sch.alpha_bars[K]) == pytest.approx(2.43e-7, rel=0.01)  # spec pitfall 1


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("K", [1, 7, 100])
def test_tables_are_valid(kind, K):
    sch = NoiseSchedule.make(kind, K)
    b = sch.betas
    assert float(b[0]) == 0.0 and float(sch.alpha_bars[0]) == 1.0 and float(sch.alphas[0]) == 1.0
    assert bool(((b[1:] > 0) & (b[1:] <= 0.999)).all())
    assert bool((sch.alpha_bars[1:] < sch.alpha_bars[:-1]).all())  # strictly decreasing
    torch.testing.assert_close(sch.alphas, 1 - b)
    torch.testing.assert_close(sch.alpha_bars, torch.cumprod(1 - b, 0))
    assert float(sch.lambdas[0]) == math.inf
    assert bool((sch.lambdas[1:] < sch.lambdas[:-1]).all())


def test_near_pure_noise_at_K_for_K100():
    for kind in SCHEDULES:
        sch = NoiseSchedule.make(kind, 100)
        assert float(sch.alpha_bars[100]) < 1e-4, kind


def test_linear_defaults_scale_with_K():
    s1000 = NoiseSchedule.make("linear", 1000)
    assert float(s1000.betas[1]) == pytest.approx(1e-4) and float(s1000.betas[1000]) == pytest.approx(0.02)
    s100 = NoiseSchedule.make("linear", 100)
    assert float(s100.betas[1]) == pytest.approx(1e-3) and float(s100.betas[100]) == pytest.approx(0.2)
    # sum of betas is K-independent -> alpha_bar_K ~ exp(-10.05) for both
    assert float(s100.alpha_bars[-1]) == pytest.approx(2.6e-5, rel=0.3)
    assert float(s1000.alpha_bars[-1]) == pytest.approx(4.0e-5, rel=0.3)
    s10 = NoiseSchedule.make("linear", 10)
    assert float(s10.betas[10]) == pytest.approx(0.999)  # capped
    custom = NoiseSchedule.make("linear", 50, beta_start=0.01, beta_end=0.3)
    torch.testing.assert_close(custom.betas[1:], torch.linspace(0.01, 0.3, 50, dtype=torch.float64))


@pytest.mark.parametrize("K", [5, 100])
def test_vp_matches_exponential_integral(K):
    sch = NoiseSchedule.make("vp", K)
    t = torch.arange(K + 1, dtype=torch.float64) / K
    ref = torch.exp(-(0.1 * t + 0.5 * (20.0 - 0.1) * t ** 2))  # exp(-int_0^t beta)
    torch.testing.assert_close(sch.alpha_bars, ref, rtol=1e-12, atol=0)
    assert float(sch.alpha_bars[K]) == pytest.approx(math.exp(-10.05))


def test_posterior_variance_formula():
    sch = NoiseSchedule.make("cosine", 50)
    ab = sch.alpha_bars.tolist()
    for k in range(1, 51):
        ref = (1 - ab[k - 1]) / (1 - ab[k]) * float(sch.betas[k])
        assert float(sch.posterior_variance[k]) == pytest.approx(ref, rel=1e-12)
    assert float(sch.posterior_variance[0]) == 0.0 and float(sch.posterior_variance[1]) == 0.0
    # posterior mean coefficients: E[x_{k-1} | x_k, x_0] for k = 1 is x_0
    assert float(sch.posterior_mean_coef1[1]) == pytest.approx(1.0, abs=1e-12)
    assert float(sch.posterior_mean_coef2[1]) == pytest.approx(0.0, abs=1e-12)


def test_sqrt_lookups():
    sch = NoiseSchedule.make("cosine", 100)
    k = torch.tensor([0, 1, 50, 100])
    a = sch.sqrt_alpha_bar(k)
    s = sch.sqrt_one_minus_alpha_bar(k)
    assert a.dtype == torch.float64 and a.shape == (4,)
    torch.testing.assert_close(a ** 2 + s ** 2, torch.ones(4, dtype=torch.float64))
    assert float(a[0]) == 1.0 and float(s[0]) == 0.0


def test_q_sample_moments():
    sch = NoiseSchedule.make("cosine", 100)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    for k in (1, 30, 70, 100):
        x0 = torch.full((n, 1), 0.7)
        noise = torch.randn(n, 1, generator=g)
        xk = sch.q_sample(x0, torch.full((n,), k), noise)
        assert xk.dtype == torch.float32 and xk.shape == (n, 1)
        ab = float(sch.alpha_bars[k])
        se = math.sqrt(1 - ab) / math.sqrt(n)
        assert abs(xk.mean().item() - math.sqrt(ab) * 0.7) < 5 * se + 1e-6
        assert xk.var().item() == pytest.approx(1 - ab, rel=0.015)
    # per-row levels broadcast over trailing dims; k = 0 returns x0 exactly
    x0 = torch.randn(3, 4, 2, generator=g)
    noise = torch.randn(3, 4, 2, generator=g)
    xk = sch.q_sample(x0, torch.tensor([0, 10, 100]), noise)
    assert torch.equal(xk[0], x0[0])
    a, s = sch.sqrt_alpha_bar(torch.tensor([10])), sch.sqrt_one_minus_alpha_bar(torch.tensor([10]))
    torch.testing.assert_close(xk[1], (float(a) * x0[1] + float(s) * noise[1]))


@pytest.mark.parametrize("kind,kw", [("cosine", {}), ("cosine", {"s": 0.01, "max_beta": 0.99}),
                                     ("linear", {}), ("linear", {"beta_start": 0.001, "beta_end": 0.1}),
                                     ("vp", {}), ("vp", {"beta_min": 0.2, "beta_max": 10.0})])
def test_to_dict_round_trip(kind, kw):
    sch = NoiseSchedule.make(kind, 37, **kw)
    d = json.loads(json.dumps(sch.to_dict()))  # plain python types only
    back = NoiseSchedule.from_dict(d)
    assert back.kind == kind and back.K == 37
    for name in ("betas", "alpha_bars", "posterior_variance"):
        assert torch.equal(getattr(back, name), getattr(sch, name))


def test_custom_betas_round_trip():
    betas = np.linspace(0.01, 0.5, 12)
    sch = NoiseSchedule(betas)
    assert sch.kind == "custom" and sch.K == 12
    back = NoiseSchedule.from_dict(json.loads(json.dumps(sch.to_dict())))
    assert torch.equal(back.betas, sch.betas)


@pytest.mark.parametrize("steps", [0, -3, 2.5, True, "10"])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        NoiseSchedule.make("cosine", steps)


def test_bad_kind_and_kwargs():
    with pytest.raises(ValueError, match=r"kind must be one of \['cosine', 'linear', 'vp'\], got 'sigmoid'"):
        NoiseSchedule.make("sigmoid", 10)
    with pytest.raises(ValueError, match="unknown keyword"):
        NoiseSchedule.make("cosine", 10, beta_start=0.1)
    with pytest.raises(ValueError, match="max_beta"):
        NoiseSchedule.make("cosine", 10, max_beta=1.0)
    with pytest.raises(ValueError, match="beta_end"):
        NoiseSchedule.make("linear", 10, beta_end=1.5)


@pytest.mark.parametrize("betas", [[0.1, 1.0], [0.0, 0.5], [0.1, float("nan")], [-0.1], [],
                                   [[0.1, 0.2]]])
def test_bad_betas(betas):
    with pytest.raises(ValueError, match="betas"):
        NoiseSchedule(betas)


def test_bad_q_sample_inputs():
    sch = NoiseSchedule.make("cosine", 10)
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"k values must be integers in \[0, K=10\]"):
        sch.q_sample(x, torch.tensor([0, 11]), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="integer tensor"):
        sch.q_sample(x, torch.tensor([0.0, 1.0]), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="noise must be"):
        sch.q_sample(x, torch.tensor([0, 1]), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="length B=2"):
        sch.q_sample(x, torch.tensor([0, 1, 2]), torch.zeros(2, 3))

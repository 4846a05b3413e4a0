"""Classifier guidance (value_guide + sampler hooks) and classifier-free guidance.

Known values J: linear J(x) = sum(w * x) and quadratic J(x) = -||x - target||^2, on the
Gaussian oracle (data N(0.3, 0.3^2)). Measured mean J (2,000 x 6, seed 0), linear w:
ddpm scale 0 / 0.01 / 0.1 / 1: 1.114 / 1.135 / 1.322 / 3.191;
dpm1 10 steps scale 0 / 0.001 / 0.01: 1.103 / 1.583 / 5.899 (the eps correction is integrated over
the high-noise steps with weight ~a_t/a_s, so the same zeta is far stronger than in DDPM).
"""
from __future__ import annotations

import math

import pytest
import torch

from radiorl.diffusion import (METHODS, NoiseSchedule, classifier_free, compiled_value_guide,
                               sample, value_guide)
from tests.diffusion.oracle import GaussianOracle

torch.set_num_threads(1)

MU = S = 0.3
D = 6
W = torch.tensor([1.0, -0.5, 0.25, 0.0, 2.0, 1.0])
TARGET = torch.full((D,), 0.6)


@pytest.fixture(scope="module")
def sch():
    return NoiseSchedule.make("cosine", 100)


def j_linear(x, k):
    return (x * W).sum(-1)


def j_quad(x, k):
    return -((x - TARGET) ** 2).sum(-1)


def _steps(method, n=10):
    return None if method == "ddpm" else n


# ----------------------------------------------------------------------------- value_guide
def test_value_guide_gradients():
    x = torch.randn(5, D, generator=torch.Generator().manual_seed(0))
    k = torch.full((5,), 3)
    with torch.no_grad():
        g_lin = value_guide(j_linear)(x, k)
        g_quad = value_guide(j_quad)(x, k)
    torch.testing.assert_close(g_lin, W.expand(5, D))
    torch.testing.assert_close(g_quad, -2 * (x - TARGET))
    assert not g_lin.requires_grad and not x.requires_grad
    # J independent of x -> zero gradient; kwargs are forwarded
    g0 = value_guide(lambda x, k: torch.ones(x.shape[0]))(x, k)
    assert torch.equal(g0, torch.zeros_like(x))
    g_kw = value_guide(lambda x, k, c: (x * c).sum(-1), c=2.0)(x, k)
    torch.testing.assert_close(g_kw, torch.full_like(x, 2.0))


def test_value_guide_leaves_parameters_alone_and_works_in_inference_mode():
    net = torch.nn.Sequential(torch.nn.Linear(D, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    guide = value_guide(lambda x, k: net(x).squeeze(-1))
    x = torch.randn(4, D)
    with torch.inference_mode():
        xi = x.clone()
        g = guide(xi, torch.full((4,), 2))
    assert all(p.grad is None for p in net.parameters())
    xr = x.clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(net(xr).sum(), xr)
    torch.testing.assert_close(g, ref)


def test_compiled_value_guide_matches_closed_form_and_eager():
    """The compiled input gradient equals -2 (x - target) for the quadratic J and the eager
    autograd gradient of a small network, also for inputs made in inference mode."""
    x = torch.randn(5, D, generator=torch.Generator().manual_seed(0))
    k = torch.full((5,), 3)
    with torch.no_grad():
        g_quad = compiled_value_guide(j_quad)(x, k)
    torch.testing.assert_close(g_quad, -2 * (x - TARGET))
    net = torch.nn.Sequential(torch.nn.Linear(D, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    with torch.inference_mode():
        xi = x.clone()
        g = compiled_value_guide(lambda x, k: net(x).squeeze(-1))(xi, k)
    torch.testing.assert_close(g, value_guide(lambda x, k: net(x).squeeze(-1))(x, k))
    assert all(p.grad is None for p in net.parameters())


def test_value_guide_bad_output():
    with pytest.raises(ValueError, match=r"value_model must return J of shape \[B\]"):
        value_guide(lambda x, k: x)(torch.zeros(3, D), torch.zeros(3, dtype=torch.long))


# ----------------------------------------------------------------------------- exact formulas
@pytest.mark.parametrize("k0", [2, 40, 100])
def test_ddpm_guided_mean_is_eq20(sch, k0):
    orc = GaussianOracle(sch, MU, S)
    x_k = torch.linspace(-2, 2, 48, dtype=torch.float64).view(8, D)
    kw = dict(method="ddpm", start_k=k0, temperature=0.0, return_trajectory=True)
    _, t0 = sample(orc.eps, sch, x_k, **kw)
    _, t1 = sample(orc.eps, sch, x_k, guide=value_guide(j_quad), guidance_scale=0.7, **kw)
    shift = 0.7 * float(sch.posterior_variance[k0]) * (-2 * (x_k - TARGET.double()))
    torch.testing.assert_close(t1[1] - t0[1], shift, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", ["ddim", "dpm1", "dpm2"])
def test_ode_guidance_is_eps_correction(sch, method):
    """One step 60 -> 30: guidance acts as eps_hat = eps - zeta * sqrt(1 - abar_k) * grad."""
    orc = GaussianOracle(sch, MU, S)
    x_k = torch.linspace(-2, 2, 48, dtype=torch.float64).view(8, D)
    kw = dict(method=method, start_k=60, steps=2, return_trajectory=True)
    _, t0 = sample(orc.eps, sch, x_k, **kw)
    _, t1 = sample(orc.eps, sch, x_k, guide=value_guide(j_linear), guidance_scale=0.05, **kw)
    ab_s, ab_t = float(sch.alpha_bars[60]), float(sch.alpha_bars[30])
    # x_t = sqrt(ab_t) x0 + sqrt(1-ab_t) eps with x0 = (x - sqrt(1-ab_s) eps)/sqrt(ab_s):
    # d x_t / d eps = sqrt(1-ab_t) - sqrt(ab_t/ab_s) sqrt(1-ab_s)
    d_eps = -0.05 * math.sqrt(1 - ab_s) * W.double()
    ref = (math.sqrt(1 - ab_t) - math.sqrt(ab_t / ab_s) * math.sqrt(1 - ab_s)) * d_eps
    torch.testing.assert_close(t1[1] - t0[1], ref.expand(8, D), rtol=1e-9, atol=1e-12)


# ----------------------------------------------------------------------------- J increases
def _mean_j(sch, method, scale, j, clip=None, steps=10):
    orc = GaussianOracle(sch, MU, S)
    x = sample(orc.eps, sch, shape=(2000, D), method=method, steps=_steps(method, steps),
               guide=value_guide(j), guidance_scale=scale, clip_x0=clip,
               generator=torch.Generator().manual_seed(0))
    return j(x, None).mean().item()


@pytest.mark.parametrize("method,scales", [("ddpm", (0.0, 0.01, 0.1, 1.0)),
                                           ("ddim", (0.0, 0.001, 0.003, 0.01)),
                                           ("dpm1", (0.0, 0.001, 0.003, 0.01)),
                                           ("dpm2", (0.0, 0.001, 0.003, 0.01))])
def test_linear_value_increases_monotonically(sch, method, scales):
    js = [_mean_j(sch, method, s, j_linear) for s in scales]
    assert all(b > a + 1e-3 for a, b in zip(js, js[1:])), js
    # everything is linear here (oracle, J, guidance), so the gain is proportional to the scale
    gains = [(j - js[0]) / s for j, s in zip(js[1:], scales[1:])]
    assert max(gains) / min(gains) == pytest.approx(1.0, abs=0.02), gains


@pytest.mark.parametrize("method,scales,clip", [("ddpm", (0.0, 0.01, 0.03, 0.1), None),
                                                ("dpm1", (0.0, 0.003, 0.01, 0.03), 1.0),
                                                ("dpm2", (0.0, 0.003, 0.01, 0.03), 1.0)])
def test_quadratic_value_increases_monotonically(sch, method, scales, clip):
    # measured ddpm -1.041 / -1.027 / -1.001 / -0.928; dpm1 (clipped) -0.889 / -0.787 / -0.753 / -0.666
    js = [_mean_j(sch, method, s, j_quad, clip=clip) for s in scales]
    assert all(b > a + 5e-3 for a, b in zip(js, js[1:])), js


# ----------------------------------------------------------------------------- guide_stop
@pytest.mark.parametrize("method,guide_stop,expected", [
    ("ddpm", 3, list(range(100, 3, -1))),
    ("dpm2", 20, [100, 90, 80, 70, 60, 50, 40, 30]),
    ("dpm1", 25, [100, 90, 80, 70, 60, 50, 40, 30]),
    ("ddim", 0, [100, 90, 80, 70, 60, 50, 40, 30, 20, 10]),
])
def test_guide_stop(sch, method, guide_stop, expected):
    orc = GaussianOracle(sch, MU, S)
    seen = []

    def guide(x, k):
        seen.append(int(k[0]))
        assert torch.is_grad_enabled()
        return torch.zeros_like(x)

    sample(orc.eps, sch, shape=(4, D), method=method, steps=_steps(method), guide=guide,
           guidance_scale=0.1, guide_stop=guide_stop, generator=torch.Generator().manual_seed(0))
    assert seen == expected
    assert min(seen) > guide_stop


@pytest.mark.parametrize("method", METHODS)
def test_no_guidance_computed_when_disabled(sch, method):
    orc = GaussianOracle(sch, MU, S)

    def guide(x, k):
        raise AssertionError("guide must not be called")

    a = sample(orc.eps, sch, shape=(16, D), method=method, steps=_steps(method), guide=guide,
               guidance_scale=0.0, generator=torch.Generator().manual_seed(0))
    b = sample(orc.eps, sch, shape=(16, D), method=method, steps=_steps(method), guide=None,
               guidance_scale=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not a.requires_grad


def test_guided_sampling_under_inference_mode(sch):
    orc = GaussianOracle(sch, MU, S)
    net = torch.nn.Linear(D, 1)
    with torch.inference_mode():
        x = sample(orc.eps, sch, shape=(8, D), method="dpm2", steps=5,
                   guide=value_guide(lambda x, k: net(x).squeeze(-1)), guidance_scale=0.01,
                   clip_x0=1.0, generator=torch.Generator().manual_seed(0))
    assert x.shape == (8, D) and bool(torch.isfinite(x).all())


def test_guide_with_wrong_shape(sch):
    with pytest.raises(ValueError, match="guide must return dJ/dx of x's shape"):
        sample(lambda x, k: torch.zeros_like(x), sch, shape=(4, D), method="dpm1", steps=2,
               guide=lambda x, k: x[:, 0], guidance_scale=1.0)


# ----------------------------------------------------------------------------- classifier-free
class ToyCondModel:
    """Returns the condition (broadcast over x) for conditional rows and 0 for dropped rows."""

    def __init__(self):
        self.calls = []

    def __call__(self, x, k, cond, drop_cond):
        self.calls.append((x.clone(), k.clone(), cond.clone(), drop_cond.clone()))
        c = cond.view(cond.shape[0], *([1] * (x.ndim - 2)), -1).expand_as(x)
        return torch.where(drop_cond.view(-1, *([1] * (x.ndim - 1))), torch.zeros_like(x), c)


def test_classifier_free_combination_and_single_batched_call():
    B, H, C = 3, 5, 2
    toy = ToyCondModel()
    cond = torch.tensor([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0]])
    fn = classifier_free(toy, cond, scale=1.2)
    x = torch.randn(B, H, C)
    k = torch.full((B,), 7)
    out = fn(x, k)
    torch.testing.assert_close(out, 1.2 * cond.view(B, 1, C).expand(B, H, C))
    assert len(toy.calls) == 1
    x2, k2, c2, drop = toy.calls[0]
    assert x2.shape[0] == 2 * B and torch.equal(x2[:B], x) and torch.equal(x2[B:], x)
    assert torch.equal(k2, torch.full((2 * B,), 7))
    assert drop.dtype == torch.bool and drop.tolist() == [False] * B + [True] * B
    assert torch.equal(c2[:B], cond) and torch.equal(c2[B:], cond)


def test_classifier_free_null_cond_and_broadcast_cond():
    toy = ToyCondModel()
    fn = classifier_free(toy, torch.tensor([[2.0]]), null_cond=torch.tensor([[-9.0]]), scale=0.5)
    out = fn(torch.zeros(4, 3, 1), torch.full((4,), 1))
    torch.testing.assert_close(out, torch.full((4, 3, 1), 1.0))
    c2 = toy.calls[0][2]
    assert c2[:4].flatten().tolist() == [2.0] * 4 and c2[4:].flatten().tolist() == [-9.0] * 4


@pytest.mark.parametrize("method", METHODS)
def test_classifier_free_inside_sampler_one_call_per_step(sch, method):
    toy = ToyCondModel()
    B = 4
    fn = classifier_free(toy, torch.ones(B, 2), scale=1.2)
    sample(fn, sch, shape=(B, 5, 2), method=method, steps=_steps(method, 6),
           generator=torch.Generator().manual_seed(0))
    assert len(toy.calls) == (100 if method == "ddpm" else 6)
    assert all(c[0].shape[0] == 2 * B for c in toy.calls)


def test_classifier_free_bad_inputs():
    with pytest.raises(ValueError, match=r"scale must be a finite number in \[0, inf\)"):
        classifier_free(ToyCondModel(), torch.ones(1, 1), scale=-1.0)
    with pytest.raises(ValueError, match=r"scale must be a finite number"):
        classifier_free(ToyCondModel(), torch.ones(1, 1), scale=float("nan"))
    fn = classifier_free(ToyCondModel(), torch.ones(3, 1))
    with pytest.raises(ValueError, match="cond must have batch size B=4 or 1"):
        fn(torch.zeros(4, 2, 1), torch.zeros(4, dtype=torch.long))

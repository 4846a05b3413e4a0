"""Inpainting (clamped known entries) and warm starts from a previous plan."""
from __future__ import annotations

import math

import pytest
import torch

from radiorl.diffusion import (METHODS, Inpaint, NoiseSchedule, sample, timestep_grid,
                               value_guide)
from tests.diffusion.oracle import GaussianOracle

torch.set_num_threads(1)

MU = S = 0.3
B, H, C = 64, 8, 3


@pytest.fixture(scope="module")
def sch():
    return NoiseSchedule.make("cosine", 100)


def _steps(method, n=10):
    return None if method == "ddpm" else n


def _inpaint(dtype=torch.float32):
    g = torch.Generator().manual_seed(11)
    mask = torch.zeros(1, H, C, dtype=torch.bool)
    mask[:, 0] = True                       # current observation (horizon index 0)
    mask[:, 5, 1] = True                    # and one more known entry
    values = (torch.randn(B, H, C, generator=g) * 1.7 + 0.1).to(dtype)  # off-distribution values
    return mask, values


def _assert_clamped(x, mask, values):
    m = mask.expand_as(x)
    assert torch.equal(x[m], values.to(x.dtype).expand_as(x)[m])


# ----------------------------------------------------------------------------- inpainting
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("guided", [False, True])
@pytest.mark.parametrize("clip", [None, 1.0])
def test_inpainted_entries_exact_everywhere(sch, method, guided, clip):
    orc = GaussianOracle(sch, MU, S)
    mask, values = _inpaint()
    kw = {}
    if guided:
        kw = dict(guide=value_guide(lambda x, k: -((x - 0.5) ** 2).sum((1, 2))),
                  guidance_scale=0.05 if method == "ddpm" else 0.002)
    x, traj = sample(orc.eps, sch, shape=(B, H, C), method=method, steps=_steps(method),
                     inpaint=Inpaint(mask, values), clip_x0=clip, return_trajectory=True,
                     generator=torch.Generator().manual_seed(0), **kw)
    _assert_clamped(x, mask, values)
    assert len(traj) == (101 if method == "ddpm" else 11)
    for xt in traj:
        _assert_clamped(xt, mask, values)


def test_inpaint_values_are_cast_to_sample_dtype(sch):
    orc = GaussianOracle(sch, MU, S)
    mask, values = _inpaint(torch.float64)
    x = sample(orc.eps, sch, shape=(B, H, C), method="dpm2", steps=5, inpaint=Inpaint(mask, values),
               generator=torch.Generator().manual_seed(0))
    assert x.dtype == torch.float32
    _assert_clamped(x, mask, values)


@pytest.mark.parametrize("method", ["ddpm", "dpm2"])
def test_unmasked_entries_keep_their_marginal(sch, method):
    """Independent dims: clamping some entries must not change the others at all."""
    orc = GaussianOracle(sch, MU, S)
    n = 8000
    mask = torch.zeros(1, H, C, dtype=torch.bool)
    mask[:, :4] = True                                   # half of the horizon is known
    values = torch.full((1, H, C), 2.0)                  # far from the data (mean 0.3)
    kw = dict(shape=(n, H, C), method=method, steps=_steps(method))
    free = sample(orc.eps, sch, generator=torch.Generator().manual_seed(0), **kw)
    inp = sample(orc.eps, sch, inpaint=Inpaint(mask, values),
                 generator=torch.Generator().manual_seed(0), **kw)
    _assert_clamped(inp, mask, values)
    torch.testing.assert_close(inp[:, 4:], free[:, 4:], rtol=0, atol=1e-6)
    u = inp[:, 4:]
    assert abs(u.mean().item() - MU) < 0.005
    if method == "ddpm":   # exact law of this sampler (see test_samplers): std 0.28425
        assert abs(u.std().item() - orc.ddpm_moments()[1]) < 0.003


# ----------------------------------------------------------------------------- warm start
@pytest.mark.parametrize("method,start_k,steps,expected", [
    ("ddpm", 7, None, [7, 6, 5, 4, 3, 2, 1]),
    ("ddpm", 7, 7, [7, 6, 5, 4, 3, 2, 1]),
    ("dpm2", 20, 4, [20, 15, 10, 5]),
    ("dpm1", 30, 3, [30, 20, 10]),
    ("ddim", 5, None, [5, 4, 3, 2, 1]),
])
def test_warm_start_visits_the_grid_below_start_k(sch, method, start_k, steps, expected):
    orc = GaussianOracle(sch, MU, S)
    x_start = torch.full((4, H, C), 0.3)
    x, traj = sample(orc.eps, sch, method=method, steps=steps, x_start=x_start, start_k=start_k,
                     return_trajectory=True, generator=torch.Generator().manual_seed(0))
    assert orc.calls == expected
    if method != "ddpm":
        assert orc.calls + [0] == timestep_grid(100, steps or start_k, start_k)
    assert len(traj) == len(expected) + 1


def test_warm_start_initial_state_is_q_sample(sch):
    orc = GaussianOracle(sch, MU, S)
    x_start = torch.randn(4, H, C, generator=torch.Generator().manual_seed(1))
    eps = torch.randn(4, H, C, generator=torch.Generator().manual_seed(2))
    _, traj = sample(orc.eps, sch, eps, method="dpm1", steps=2, x_start=x_start, start_k=12,
                     return_trajectory=True)
    assert torch.equal(traj[0], sch.q_sample(x_start, torch.full((4,), 12), eps))
    # temperature scales the re-noising noise: 0 -> sqrt(abar) * x_start
    _, traj = sample(orc.eps, sch, method="dpm1", steps=2, x_start=x_start, start_k=12,
                     temperature=0.0, return_trajectory=True,
                     generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(traj[0], math.sqrt(float(sch.alpha_bars[12])) * x_start)


def test_far_warm_start_at_K_equals_cold_start_distribution(sch):
    orc = GaussianOracle(sch, MU, S)
    n = 40_000
    x_start = torch.full((n, 6), 5.0)  # far from the data N(0.3, 0.3^2)
    warm = sample(orc.eps, sch, method="ddpm", x_start=x_start, start_k=100,
                  generator=torch.Generator().manual_seed(0))
    cold = sample(orc.eps, sch, shape=(n, 6), method="ddpm", generator=torch.Generator().manual_seed(1))
    # alpha_bar_K = 2.4e-7: x_start only moves the start by sqrt(abar_K) * 5 = 2.5e-3
    for x in (warm, cold):
        assert abs(x.mean().item() - MU) < 0.005
        assert abs(x.std().item() - 0.28425) < 0.003  # exact law of the K-step DDPM sampler
    assert abs(warm.mean().item() - cold.mean().item()) < 0.005
    assert abs(warm.std().item() - cold.std().item()) < 0.003


@pytest.mark.parametrize("method", METHODS)
def test_small_start_k_stays_close_to_x_start(sch, method):
    orc = GaussianOracle(sch, MU, S)
    g = torch.Generator().manual_seed(5)
    x_start = MU + S * torch.randn(4000, 6, generator=g)   # a plausible previous plan
    warm = sample(orc.eps, sch, method=method, steps=_steps(method, 3), x_start=x_start,
                  start_k=3, generator=torch.Generator().manual_seed(0))
    cold = sample(orc.eps, sch, shape=(4000, 6), method=method, steps=_steps(method),
                  generator=torch.Generator().manual_seed(0))
    d_warm = (warm - x_start).abs().mean().item()
    d_cold = (cold - x_start).abs().mean().item()
    # start_k = 3: sqrt(1 - abar_3) = 0.058 of re-noising; a fresh sample is ~0.34 away
    assert d_warm < 0.06
    assert d_warm < 0.25 * d_cold

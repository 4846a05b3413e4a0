"""Samplers against the analytic Gaussian oracle, exact ODE solutions and closed-form steps.

Measured with N = 40,000 x 6 dims (seed 0), data N(0.3, 0.3^2), cosine K = 100, exact eps:

    method (steps)      mean     std      (target 0.3 / 0.3)
    ddpm (K=100)        0.2998   0.2836   exact-recursion prediction for this sampler: 0.3000 / 0.28425
    dpm1 = ddim (10)    0.2991   0.2368
    dpm2 (10)           0.2990   0.2594
    dpm1 / dpm2 (20)    0.2990 / 0.2989   0.2669 / 0.2916
    dpm2 (100)          0.2989   0.3003

K-step DDPM under-disperses by ~5% (the posterior variance Sigma_k is the lower of the two
classic variance choices); the 10-step ODE solvers under-disperse by 21% (dpm1) and 14% (dpm2),
mostly from the final first-order step to k = 0 (design notes, pitfall 2). Against the exact
probability-flow ODE solution the max abs error over 12,000 entries is
dpm1: 0.288 / 0.151 (10 / 20 steps, first order), dpm2: 0.186 / 0.039 (second order).
"""
from __future__ import annotations

import math

import pytest
import torch

from radiorl.diffusion import METHODS, Inpaint, NoiseSchedule, sample, timestep_grid
from tests.diffusion.oracle import GaussianOracle

torch.set_num_threads(1)

MU = S = 0.3
N, D = 40_000, 6


@pytest.fixture(scope="module")
def sch():
    return NoiseSchedule.make("cosine", 100)


def _steps(method, n=10):
    return None if method == "ddpm" else n


# ----------------------------------------------------------------------------- timestep grid
def test_timestep_grid_examples():
    assert timestep_grid(100, 10) == [100, 90, 80, 70, 60, 50, 40, 30, 20, 10, 0]
    assert timestep_grid(100, 3) == [100, 67, 33, 0]
    assert timestep_grid(7, 3) == [7, 5, 2, 0]
    assert timestep_grid(100, 1) == [100, 0]
    assert timestep_grid(5, 5) == [5, 4, 3, 2, 1, 0]
    assert timestep_grid(100, 4, start_k=20) == [20, 15, 10, 5, 0]


def test_timestep_grid_properties():
    for K in range(1, 60):
        for start in range(1, K + 1, 3):
            for steps in range(1, start + 1):
                g = timestep_grid(K, steps, start)
                assert len(g) == steps + 1 and g[0] == start and g[-1] == 0
                assert all(a > b for a, b in zip(g, g[1:]))
                gaps = [a - b for a, b in zip(g, g[1:])]
                assert max(gaps) - min(gaps) <= 1  # evenly spaced up to rounding


@pytest.mark.parametrize("args,match", [((100, 0), r"steps must be an integer in \[1, K=100\], got 0"),
                                        ((100, 101), r"steps must be an integer in \[1, K=100\], got 101"),
                                        ((100, 11, 10), r"steps must be an integer in \[1, start_k=10\]"),
                                        ((100, 5, 0), r"start_k must be an integer in \[1, K=100\], got 0"),
                                        ((100, 5, 101), r"start_k must be an integer in \[1, K=100\]"),
                                        ((0, 1), r"K must be an integer >= 1")])
def test_timestep_grid_bad_inputs(args, match):
    with pytest.raises(ValueError, match=match):
        timestep_grid(*args)


# ----------------------------------------------------------------------------- Gaussian oracle
def test_ddpm_reproduces_gaussian(sch):
    orc = GaussianOracle(sch, MU, S)
    g = torch.Generator().manual_seed(0)
    x = sample(orc.eps, sch, shape=(N, D), method="ddpm", generator=g)
    assert x.dtype == torch.float32 and x.shape == (N, D)
    assert sorted(set(orc.calls), reverse=True) == orc.calls == list(range(100, 0, -1))
    mean, std = x.mean().item(), x.std().item()
    # measured 0.2998 / 0.2836 against the data's 0.3 / 0.3
    assert abs(mean - MU) < 0.005
    assert abs(std - S) < 0.025
    # and against this sampler's own exact output law (linear-Gaussian recursion of eq. 20):
    # 0.3000 / 0.28425; standard errors are 6e-4 (mean) and 4e-4 (std)
    m_ref, s_ref = orc.ddpm_moments()
    assert abs(mean - m_ref) < 0.003
    assert abs(std - s_ref) < 0.002


def test_ddpm_temperature_scales_noise(sch):
    orc = GaussianOracle(sch, MU, S)
    g = torch.Generator().manual_seed(1)
    x = sample(orc.eps, sch, shape=(N, D), method="ddpm", temperature=0.5, generator=g)
    m_ref, s_ref = orc.ddpm_moments(temperature=0.5)
    assert s_ref < 0.2  # a visibly sharper distribution than the data
    assert abs(x.mean().item() - m_ref) < 0.003
    assert abs(x.std().item() - s_ref) < 0.002


@pytest.mark.parametrize("k0", [2, 10, 50, 100])
@pytest.mark.parametrize("prediction", ["epsilon", "x0"])
def test_ddpm_step_mean_is_true_conditional_mean(sch, k0, prediction):
    """With the exact denoiser the eq. (20) mean equals E[x_{k-1} | x_k] of the true process."""
    orc = GaussianOracle(sch, MU, S)
    model = orc.eps if prediction == "epsilon" else orc.x0
    x_k = torch.linspace(-3, 3, 64, dtype=torch.float64).view(16, 4)
    _, traj = sample(model, sch, x_k, method="ddpm", start_k=k0, temperature=0.0,
                     prediction=prediction, return_trajectory=True)
    ab_k, ab_p, al = float(sch.alpha_bars[k0]), float(sch.alpha_bars[k0 - 1]), float(sch.alphas[k0])
    v_k, v_p = ab_k * S * S + 1 - ab_k, ab_p * S * S + 1 - ab_p
    ref = math.sqrt(ab_p) * MU + math.sqrt(al) * v_p / v_k * (x_k - math.sqrt(ab_k) * MU)
    torch.testing.assert_close(traj[1], ref, rtol=1e-9, atol=1e-9)


def test_few_step_solvers_gaussian(sch):
    stats = {}
    for method in ("ddim", "dpm1", "dpm2"):
        orc = GaussianOracle(sch, MU, S)
        g = torch.Generator().manual_seed(0)
        x = sample(orc.eps, sch, shape=(N, D), method=method, steps=10, generator=g)
        assert orc.calls == [100, 90, 80, 70, 60, 50, 40, 30, 20, 10]  # one evaluation per step
        stats[method] = (x.mean().item(), x.std().item(), x)
    # dpm1 is DDIM(eta=0) up to float32 rounding (DDIM goes through x0 = (x - s eps) / a, which
    # amplifies rounding by 1/a_K ~ 2000 at k = K; exact in float64, see test below)
    torch.testing.assert_close(stats["dpm1"][2], stats["ddim"][2], rtol=1e-4, atol=1e-4)
    for method, (mean, std, _) in stats.items():
        assert abs(mean - MU) < 0.005, method  # measured 0.2991 (dpm1), 0.2990 (dpm2)
    # few-step ODE sampling under-disperses (pitfall 2): measured std 0.2368 (dpm1), 0.2594 (dpm2)
    std1, std2 = stats["dpm1"][1], stats["dpm2"][1]
    assert 0.225 < std1 < 0.25
    assert 0.245 < std2 < 0.275
    assert abs(std2 - S) < 0.75 * abs(std1 - S)  # dpm2 closer to the truth


def test_ode_solvers_converge_to_exact_flow(sch):
    """Deterministic check against the exact probability-flow solution (float64 end to end)."""
    orc = GaussianOracle(sch, MU, S)
    g = torch.Generator().manual_seed(1)
    x_T = torch.randn(2000, D, generator=g, dtype=torch.float64)
    exact = orc.exact_ode(x_T, 100)
    err = {}
    for method in ("dpm1", "dpm2"):
        for steps in (10, 20, 100):
            x = sample(orc.eps, sch, x_T, method=method, steps=steps)
            assert x.dtype == torch.float64
            err[method, steps] = (x - exact).abs().max().item()
    # measured: dpm1 0.288 / 0.151 / 0.032, dpm2 0.186 / 0.039 / 3.2e-4
    assert 1.6 < err["dpm1", 10] / err["dpm1", 20] < 2.4        # first order
    assert err["dpm2", 10] / err["dpm2", 20] > 3.5               # second order
    assert err["dpm2", 20] < 0.06 and err["dpm2", 100] < 1e-3
    for steps in (10, 20, 100):
        assert err["dpm2", steps] < err["dpm1", steps]


@pytest.mark.parametrize("method", METHODS)
def test_x0_prediction_matches_epsilon_prediction(sch, method):
    orc = GaussianOracle(sch, MU, S)
    out = {}
    for prediction, model in (("epsilon", orc.eps), ("x0", orc.x0)):
        g = torch.Generator().manual_seed(3)
        out[prediction] = sample(model, sch, shape=(512, D), method=method, steps=_steps(method),
                                 prediction=prediction, generator=g)
    torch.testing.assert_close(out["x0"], out["epsilon"], rtol=1e-4, atol=1e-4)


def test_dpm1_is_ddim_eta0_float64(sch):
    orc = GaussianOracle(sch, MU, S)
    x_T = torch.randn(256, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for steps in (1, 3, 10):
        a = sample(orc.eps, sch, x_T, method="dpm1", steps=steps)
        b = sample(orc.eps, sch, x_T, method="ddim", steps=steps)
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_ddim_eta1_full_grid_is_ddpm(sch):
    orc = GaussianOracle(sch, MU, S)
    x_T = torch.randn(256, D, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    a = sample(orc.eps, sch, x_T, method="ddim", steps=100, eta=1.0,
               generator=torch.Generator().manual_seed(5))
    b = sample(orc.eps, sch, x_T, method="ddpm", generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------- x0 clipping
def test_clip_x0_bounds_noisy_few_step_sampling(sch):
    """Pitfall 1: eps error 0.02 at alpha_bar_K = 2.4e-7 ruins unclipped few-step solvers.

    Measured (N = 40,000 x 6): unclipped dpm1 mean -1.228 / std 0.237 / max -0.125;
    clip_x0=1: dpm1 0.228 / 0.237 / max 1.0, dpm2 0.229 / 0.259 / max 1.0, ddpm 0.281 / 0.282.
    """
    bad = GaussianOracle(sch, MU, S, eps_error=0.02)
    x = sample(bad.eps, sch, shape=(N, D), method="dpm1", steps=10,
               generator=torch.Generator().manual_seed(0))
    assert x.mean().item() < -0.5  # far from the data (0.3)
    for method in METHODS:
        x = sample(bad.eps, sch, shape=(N, D), method=method, steps=_steps(method), clip_x0=1.0,
                   generator=torch.Generator().manual_seed(0))
        assert x.abs().max().item() <= 1.0 + 1e-6, method
        assert abs(x.mean().item() - MU) < 0.1, method
        assert 0.2 < x.std().item() < 0.3, method


def test_clip_x0_is_applied_at_every_step(sch):
    seen = []

    def model(x, k):  # claims the data is at 5: every unclipped x0 estimate would be 5
        seen.append(int(k[0]))
        return torch.full_like(x, 5.0)

    for method in METHODS:
        x = sample(model, sch, shape=(64, 3), method=method, steps=_steps(method), prediction="x0",
                   clip_x0=0.5, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(x, torch.full_like(x, 0.5))


# ----------------------------------------------------------------------------- misc behaviour
@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_samples(sch, method):
    orc = GaussianOracle(sch, MU, S)
    kw = dict(shape=(32, 8, 3), method=method, steps=_steps(method),
              eta=0.5 if method == "ddim" else 0.0)
    a = sample(orc.eps, sch, generator=torch.Generator().manual_seed(7), **kw)
    b = sample(orc.eps, sch, generator=torch.Generator().manual_seed(7), **kw)
    c = sample(orc.eps, sch, generator=torch.Generator().manual_seed(8), **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("method", METHODS)
def test_trajectory(sch, method):
    orc = GaussianOracle(sch, MU, S)
    x, traj = sample(orc.eps, sch, shape=(4, 2), method=method, steps=_steps(method, 7),
                     return_trajectory=True, generator=torch.Generator().manual_seed(0))
    expected_len = 101 if method == "ddpm" else 8
    assert len(traj) == expected_len and traj[-1] is x
    assert all(t.shape == (4, 2) for t in traj)


def test_x_T_is_used_as_given(sch):
    orc = GaussianOracle(sch, MU, S)
    x_T = torch.randn(8, 3, generator=torch.Generator().manual_seed(0))
    _, traj = sample(orc.eps, sch, x_T, method="dpm2", steps=5, temperature=0.3,
                     return_trajectory=True)
    assert torch.equal(traj[0], x_T)


# ----------------------------------------------------------------------------- bad inputs
def _zero(x, k):
    return torch.zeros_like(x)


@pytest.mark.parametrize("kw,match", [
    (dict(method="foo"), r"method must be one of \['ddpm', 'ddim', 'dpm1', 'dpm2'\], got 'foo'"),
    (dict(method="dpm1", steps=0), r"steps must be an integer in \[1, K=100\], got 0"),
    (dict(method="ddim", steps=101), r"steps must be an integer in \[1, K=100\], got 101"),
    (dict(method="dpm2", steps=20, start_k=10, x_start=torch.zeros(2, 3)),
     r"steps must be an integer in \[1, start_k=10\], got 20"),
    (dict(method="ddpm", steps=10), r"steps must be None or K=100, got 10"),
    (dict(start_k=0), r"start_k must be an integer in \[1, K=100\], got 0"),
    (dict(start_k=101), r"start_k must be an integer in \[1, K=100\], got 101"),
    (dict(x_start=torch.zeros(2, 3)), r"x_start needs start_k"),
    (dict(prediction="v"), r"prediction must be one of \['epsilon', 'x0'\], got 'v'"),
    (dict(guidance_scale=-1.0, guide=_zero), r"guidance_scale must be a finite number in \[0.0, inf\), got -1.0"),
    (dict(guidance_scale=float("nan"), guide=_zero), r"guidance_scale must be a finite number"),
    (dict(clip_x0=0.0), r"clip_x0 must be a finite number in \(0.0, inf\), got 0.0"),
    (dict(clip_x0=-1.0), r"clip_x0 must be a finite number"),
    (dict(method="ddim", steps=10, eta=1.5), r"eta must be a finite number in \[0.0, 1.0\], got 1.5"),
    (dict(method="dpm1", steps=10, eta=0.5), r"eta must be 0 for method='dpm1'"),
    (dict(temperature=-0.1), r"temperature must be a finite number in \[0.0, inf\)"),
    (dict(guide_stop=-1), r"guide_stop must be an integer in \[0, K=100\], got -1"),
    (dict(inpaint="x"), r"inpaint must be None or an Inpaint"),
])
def test_bad_inputs(sch, kw, match):
    kw = dict(kw)
    if "x_start" not in kw:
        kw.setdefault("shape", (2, 3))
    with pytest.raises(ValueError, match=match):
        sample(_zero, sch, **kw)


def test_bad_shapes(sch):
    with pytest.raises(ValueError, match="shape must be given when x_T and x_start are None"):
        sample(_zero, sch)
    with pytest.raises(ValueError, match="shape"):
        sample(_zero, sch, torch.zeros(2, 3), shape=(2, 4))
    with pytest.raises(ValueError, match="model output must be a tensor of x's shape"):
        sample(lambda x, k: x[:, :1], sch, shape=(2, 3), method="dpm1", steps=2)
    with pytest.raises(ValueError, match="broadcast to x's shape"):
        sample(_zero, sch, shape=(2, 3), method="dpm1", steps=2,
               inpaint=Inpaint(torch.ones(2, 5, dtype=torch.bool), torch.zeros(2, 5)))
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        Inpaint(torch.ones(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="schedule must be a NoiseSchedule"):
        sample(_zero, None, shape=(2, 3))

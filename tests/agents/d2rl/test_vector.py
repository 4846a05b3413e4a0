"""radiorl.diffusion.vector: the conditional vector denoiser and the differentiable DDPM chain."""
import pytest
import torch

from radiorl.diffusion.schedules import NoiseSchedule
from radiorl.diffusion.vector import (VectorDenoiser, chain_noise, ddpm_renoise, ddpm_reverse,
                                      ddpm_reverse_fused, fused_supported)


@pytest.fixture
def sch():
    return NoiseSchedule.make("vp", 6, beta_min=0.1, beta_max=10.0)


def test_fast_path_equals_forward():
    torch.manual_seed(0)
    den = VectorDenoiser(5, 3, hidden=16, layers=3, time_dim=8)
    x, c = torch.randn(7, 5), torch.randn(7, 3)
    w_x, off_t, off_c = den.first_layer_terms(c, [6, 4, 1], 7)
    for j, k in enumerate([6, 4, 1]):
        torch.testing.assert_close(den.step(x, w_x, off_t[j:j + 1], off_c), den(x, k, c))
    # per-row levels in forward (unique/gather of the embedding) = one level at a time
    ks = torch.tensor([1, 6, 3, 3, 2, 6, 1])
    rows = torch.cat([den(x[i:i + 1], int(ks[i]), c[i:i + 1]) for i in range(7)])
    torch.testing.assert_close(den(x, ks, c), rows)


def test_unconditional_fast_path():
    den = VectorDenoiser(4, 0, hidden=8, layers=1)
    x = torch.randn(3, 4)
    w_x, off_t, off_c = den.first_layer_terms(None, [2], 3)
    assert off_c is None
    torch.testing.assert_close(den.step(x, w_x, off_t), den(x, 2))
    with pytest.raises(ValueError, match="unconditional"):
        den(x, 2, torch.zeros(3, 1))


def test_reverse_is_eq7_without_bound(sch):
    """Unbounded, the posterior-mean step equals the paper's eq. (7)."""
    torch.manual_seed(1)
    den = VectorDenoiser(3, 2, hidden=8, layers=2)
    x, c = torch.randn(4, 3), torch.randn(4, 2)
    out = ddpm_reverse(den, sch, x, cond=c, noise=False)
    ref = x
    for k in range(6, 0, -1):
        a, ab = float(sch.alphas[k]), float(sch.alpha_bars[k])
        b = float(sch.betas[k])
        ref = ref / a ** 0.5 - b / (a * (1 - ab)) ** 0.5 * den(ref, k, c)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bound", [("clip", 1.0), ("tanh", 1.0)])
def test_reverse_bounded_differentiable_and_seeded(sch, bound):
    den = VectorDenoiser(3, 2, hidden=8, layers=2)
    c = torch.randn(16, 2, requires_grad=True)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return ddpm_reverse(den, sch, torch.randn(16, 3, generator=g), cond=c, x0_bound=bound,
                            generator=g)

    y = run(0)
    assert y.shape == (16, 3) and bool(y.abs().max() <= 1.0)
    torch.testing.assert_close(run(0), y)
    assert not torch.equal(run(1), y)
    y.sum().backward()
    assert c.grad is not None and all(p.grad is not None for p in den.parameters())


def test_renoise_depth(sch):
    """Mode II: a shallow forward depth keeps the sample nearer its input than the full depth
    (alpha_bar_1 = 0.86, alpha_bar_6 = 0.006)."""
    den = VectorDenoiser(2, 0, hidden=8, layers=1)
    for p in den.parameters():
        torch.nn.init.zeros_(p)                    # eps_hat = 0
    x0 = torch.full((256, 2), 0.5)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        y1 = ddpm_renoise(den, sch, x0, 1, x0_bound=("clip", 5.0), generator=g)
        y6 = ddpm_renoise(den, sch, x0, None, x0_bound=("clip", 5.0), generator=g)
    assert y1.shape == y6.shape == x0.shape
    assert float((y1 - x0).abs().mean()) < 0.5 * float((y6 - x0).abs().mean())
    with pytest.raises(ValueError, match="start_k"):
        ddpm_reverse(den, sch, x0, start_k=7)
    with pytest.raises(ValueError, match="x0_bound"):
        ddpm_reverse(den, sch, x0, x0_bound=("abs", 1.0))


def test_step_noise_drawn_beforehand_gives_the_same_chain(sch):
    """Passing the chain's draws (chain_noise, same generator state) = drawing them inside."""
    torch.manual_seed(1)
    den = VectorDenoiser(3, 2, hidden=16, layers=2, time_dim=8)
    x, c = torch.randn(5, 3), torch.randn(5, 2)
    inside = ddpm_reverse(den, sch, x, cond=c, x0_bound=("tanh", 1.0),
                          generator=torch.Generator().manual_seed(7))
    drawn = chain_noise(x.shape, sch.K, torch.Generator().manual_seed(7))
    assert len(drawn) == sch.K - 1
    outside = ddpm_reverse(den, sch, x, cond=c, x0_bound=("tanh", 1.0), step_noise=drawn)
    assert torch.equal(inside, outside)
    with pytest.raises(ValueError, match="step_noise: expected 5 tensors"):
        ddpm_reverse(den, sch, x, cond=c, step_noise=drawn[:2])


@pytest.mark.parametrize("bound", [None, ("clip", 1.0), ("clip", 0.4), ("tanh", 1.0),
                                   ("tanh", 2.0)])
@pytest.mark.parametrize("cond_dim,layers", [(0, 1), (4, 1), (4, 3), (0, 2)])
def test_fused_chain_equals_autograd(sch, bound, cond_dim, layers):
    """The hand-written backward: the same output (bit for bit) and the same gradients (float64,
    to rounding) for every parameter, the start and the condition as autograd through
    :func:`ddpm_reverse`."""
    torch.manual_seed(3)
    den = VectorDenoiser(5, cond_dim, hidden=24, layers=layers, time_dim=8).double()
    x = torch.randn(9, 5, dtype=torch.float64, requires_grad=True)
    c = (torch.randn(9, cond_dim, dtype=torch.float64, requires_grad=True) if cond_dim
         else None)
    noise = chain_noise(x.shape, sch.K, torch.Generator().manual_seed(4), torch.float64)
    w = torch.randn(9, 5, dtype=torch.float64)
    wrt = list(den.parameters()) + [x] + ([c] if c is not None else [])
    outs, grads = [], []
    for chain in (ddpm_reverse, ddpm_reverse_fused):
        out = chain(den, sch, x, cond=c, x0_bound=bound, step_noise=noise)
        outs.append(out)
        grads.append(torch.autograd.grad((out * w).sum(), wrt))
    assert torch.equal(outs[0], outs[1])
    if bound is not None and bound[0] == "clip":        # the bound is active somewhere
        assert bool((outs[0].abs() == bound[1]).any())
    for ga, gf in zip(*grads):
        torch.testing.assert_close(gf, ga, rtol=1e-10, atol=1e-12)


def test_fused_chain_gradcheck_and_noise(sch):
    """Finite differences (torch.autograd.gradcheck) on the start and the condition; drawing
    the noise inside from a generator gives the same chain as passing it; ``noise=False``
    is the deterministic mean chain."""
    torch.manual_seed(0)
    den = VectorDenoiser(3, 2, hidden=8, layers=2, time_dim=4).double()
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    c = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    noise = chain_noise(x.shape, sch.K, torch.Generator().manual_seed(1), torch.float64)
    assert torch.autograd.gradcheck(
        lambda x_, c_: ddpm_reverse_fused(den, sch, x_, cond=c_, x0_bound=("tanh", 1.0),
                                          step_noise=noise), (x, c))
    inside = ddpm_reverse_fused(den, sch, x, cond=c, generator=torch.Generator().manual_seed(1))
    assert torch.equal(inside, ddpm_reverse(den, sch, x, cond=c, step_noise=noise))
    assert torch.equal(ddpm_reverse_fused(den, sch, x, cond=c, noise=False),
                       ddpm_reverse(den, sch, x, cond=c, noise=False))


def test_fused_chain_refuses_what_it_cannot_do(sch):
    assert fused_supported(VectorDenoiser(3, 0, hidden=8, layers=2))
    mish = VectorDenoiser(3, 0, hidden=8, layers=2, activation="mish")
    assert not fused_supported(mish)
    with pytest.raises(ValueError, match="ReLU"):
        ddpm_reverse_fused(mish, sch, torch.randn(2, 3))
    den = VectorDenoiser(3, 0, hidden=8, layers=2)
    with pytest.raises(ValueError, match="step_noise: expected 5 tensors"):
        ddpm_reverse_fused(den, sch, torch.randn(2, 3), step_noise=[torch.zeros(2, 3)])
    with pytest.raises(ValueError, match="x0_bound"):
        ddpm_reverse_fused(den, sch, torch.randn(2, 3), x0_bound=("abs", 1.0))

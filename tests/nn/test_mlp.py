"""MLP and the flattened-trajectory MLPDenoiser: shapes, activations, conditioning, condition
dropping, tracing, save/load, gradient flow, a small fitting run and argument checks."""
import io

import pytest
import torch

from tests.nn.fit import fit_ratio
from torch import nn

from radiorl.nn import MLP, MLPDenoiser, TemporalUNet, count_parameters

torch.set_num_threads(1)

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning",
                                        "ignore:.*torch.jit.*deprecated:DeprecationWarning",
                                        "ignore:.*torch.jit.*deprecated:FutureWarning",
                                        "ignore:.*torch.jit.*deprecated:UserWarning")


def _inputs(B, H, C, cond_dim=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, H, C, generator=g)
    k = torch.randint(0, 100, (B,), generator=g)
    c = torch.randn(B, cond_dim, generator=g) if cond_dim else None
    return x, k, c


# --------------------------------------------------------------------------- MLP

@pytest.mark.parametrize("activation,cls", [("relu", nn.ReLU), ("mish", nn.Mish),
                                            ("tanh", nn.Tanh), ("gelu", nn.GELU)])
def test_mlp_shapes_and_activation(activation, cls):
    mlp = MLP(6, 3, hidden=(16, 8), activation=activation)
    assert mlp(torch.randn(6)).shape == (3,)
    assert mlp(torch.randn(4, 6)).shape == (4, 3)
    assert mlp(torch.randn(2, 5, 6)).shape == (2, 5, 3)
    assert sum(isinstance(m, cls) for m in mlp.modules()) == 2
    assert count_parameters(mlp) == (6 * 16 + 16) + (16 * 8 + 8) + (8 * 3 + 3)


def test_mlp_layer_norm_and_empty_hidden():
    mlp = MLP(4, 2, hidden=(8, 8), layer_norm=True)
    assert sum(isinstance(m, nn.LayerNorm) for m in mlp.modules()) == 2
    assert mlp(torch.randn(3, 4)).shape == (3, 2)
    lin = MLP(4, 2, hidden=())
    assert [type(m) for m in lin.net] == [nn.Linear]
    x = torch.randn(5, 4)
    torch.testing.assert_close(lin(x), x @ lin.net[0].weight.T + lin.net[0].bias)
    assert len(MLP(4, 2).net) == 5           # default hidden=(256, 256)


@pytest.mark.parametrize("kwargs,name", [
    (dict(in_dim=0), "in_dim"), (dict(out_dim=0), "out_dim"), (dict(hidden=(8, 0)), "hidden"),
    (dict(hidden=8), "hidden"), (dict(activation="sigmoid"), "activation"),
])
def test_mlp_bad_args(kwargs, name):
    args = dict(in_dim=4, out_dim=2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        MLP(**args)


def test_mlp_wrong_input_width():
    with pytest.raises(ValueError, match=r"expected shape \[\.\.\., 4\], got \(3, 5\)"):
        MLP(4, 2, hidden=(8,))(torch.zeros(3, 5))


# --------------------------------------------------------------------------- MLPDenoiser

@pytest.mark.parametrize("B,H,C,out,layers", [(1, 1, 1, None, 1), (9, 8, 8, None, 3),
                                              (4, 16, 8, 4, 2), (2, 3, 5, 7, 4)])
def test_denoiser_shapes(B, H, C, out, layers):
    den = MLPDenoiser(C, horizon=H, out_channels=out, hidden=32, layers=layers, dim=8, cond_dim=2)
    x, k, c = _inputs(B, H, C, cond_dim=2)
    assert den(x, k, c).shape == (B, H, out or C)
    assert len(den.hidden_layers) == layers - 1
    assert den.input_layer.in_features == H * C + 16


def test_denoiser_same_call_contract_as_unet():
    x, k, c = _inputs(3, 8, 4, cond_dim=2)
    drop = torch.tensor([True, False, True])
    for net in (MLPDenoiser(4, 8, hidden=32, layers=2, dim=8, cond_dim=2),
                TemporalUNet(4, dim=8, dim_mults=(1, 2), cond_dim=2)):
        assert net(x, k, c, drop).shape == (3, 8, 4)
        assert net(x, 5, c).shape == (3, 8, 4)


def test_denoiser_k_and_cond_matter_and_drop_cond_removes_cond():
    den = MLPDenoiser(4, 8, hidden=64, layers=3, dim=16, cond_dim=3)
    x, k, c = _inputs(4, 8, 4, cond_dim=3)
    y = den(x, k, c)
    assert not torch.allclose(y, den(x, (k + 10) % 100, c), atol=1e-5)
    assert not torch.allclose(y, den(x, k, torch.randn(4, 3)), atol=1e-5)
    drop = torch.ones(4, dtype=torch.bool)
    y1 = den(x, k, c, drop)
    torch.testing.assert_close(y1, den(x, k, 50 * torch.randn(4, 3), drop), atol=0, rtol=0)
    mixed = torch.tensor([False, True, False, True])
    ym = den(x, k, c, mixed)
    torch.testing.assert_close(ym[mixed], y1[mixed], atol=1e-6, rtol=0)
    torch.testing.assert_close(ym[~mixed], y[~mixed], atol=1e-6, rtol=0)


def test_denoiser_trace_equals_eager_and_state_dict_round_trip():
    torch.manual_seed(0)
    den = MLPDenoiser(8, 8, hidden=64, layers=3, dim=16, cond_dim=2).eval()
    x, k, c = _inputs(9, 8, 8, cond_dim=2)
    drop = torch.rand(9, generator=torch.Generator().manual_seed(3)) < 0.5
    with torch.no_grad():
        traced = torch.jit.trace(den, (x, k, c, drop))
        torch.testing.assert_close(traced(x, k, c, drop), den(x, k, c, drop), atol=1e-6, rtol=0)
        frozen = torch.jit.freeze(traced)
        torch.testing.assert_close(frozen(x, k, c, drop), den(x, k, c, drop), atol=1e-6, rtol=0)
        x2, k2, c2 = _inputs(5, 8, 8, cond_dim=2, seed=1)      # other batch size
        torch.testing.assert_close(traced(x2, k2, c2, drop[:5]), den(x2, k2, c2, drop[:5]),
                                   atol=1e-6, rtol=0)
    torch.manual_seed(1)
    other = MLPDenoiser(8, 8, hidden=64, layers=3, dim=16, cond_dim=2)
    assert not torch.allclose(other(x, k, c), den(x, k, c))
    buf = io.BytesIO()
    torch.save(den.state_dict(), buf)
    buf.seek(0)
    other.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(other(x, k, c), den(x, k, c), atol=0, rtol=0)


def test_denoiser_gradient_reaches_every_parameter():
    den = MLPDenoiser(4, 6, out_channels=2, hidden=32, layers=3, dim=8, cond_dim=2)
    x, k, c = _inputs(5, 6, 4, cond_dim=2)
    den(x, k, c).pow(2).sum().backward()
    for name, p in den.named_parameters():
        assert p.grad is not None, name
        assert (p.grad != 0).any(), name


def test_denoiser_fits_a_fixed_batch():
    torch.manual_seed(0)
    den = MLPDenoiser(4, 8, hidden=128, layers=2, dim=16, cond_dim=2)
    x, k, c = _inputs(8, 8, 4, cond_dim=2)
    target = torch.randn(8, 8, 4, generator=torch.Generator().manual_seed(5))
    first, last = fit_ratio(den, (x, k, c), target, lr=1e-3)
    assert last < 0.1 * first, (first, last)


@pytest.mark.parametrize("kwargs,name", [
    (dict(in_channels=0), "in_channels"), (dict(horizon=0), "horizon"),
    (dict(out_channels=0), "out_channels"), (dict(hidden=0), "hidden"),
    (dict(layers=0), "layers"), (dict(dim=1), "dim"), (dict(cond_dim=-1), "cond_dim"),
])
def test_denoiser_bad_constructor_args(kwargs, name):
    args = dict(in_channels=4, horizon=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        MLPDenoiser(**args)


def test_denoiser_forward_errors():
    den = MLPDenoiser(4, 8, hidden=32, layers=2, dim=8, cond_dim=2)
    x, k, c = _inputs(3, 8, 4, cond_dim=2)
    with pytest.raises(ValueError, match="horizon"):
        den(torch.zeros(3, 9, 4), k, c)
    with pytest.raises(ValueError, match=r"expected shape \[B, 8, 4\].*got \(3, 8, 5\)"):
        den(torch.zeros(3, 8, 5), k, c)
    with pytest.raises(ValueError, match="cond: required"):
        den(x, k)
    with pytest.raises(ValueError, match=r"k: expected shape \[3\]"):
        den(x, torch.zeros(3, 1), c)

"""Temporal U-Net, value network and their blocks: shapes for many horizons and depths, the
embedding reaching every residual block, classifier-free condition dropping, end padding,
TorchScript tracing, save/load, gradient flow, a small fitting run and argument checks."""
import io

import pytest
import torch

from tests.nn.fit import fit_ratio

from radiorl.nn import (Conv1dBlock, ResidualTemporalBlock, SinusoidalEmbedding,
                        StepConditionEmbedding, TemporalUNet, TemporalValueNet, TimeEmbedding,
                        count_parameters, group_count)

torch.set_num_threads(1)

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning",
                                        "ignore:.*torch.jit.*deprecated:DeprecationWarning",
                                        "ignore:.*torch.jit.*deprecated:FutureWarning",
                                        "ignore:.*torch.jit.*deprecated:UserWarning")

MULTS = {1: (1,), 2: (1, 2), 3: (1, 2, 4), 4: (1, 2, 4, 8)}


def _inputs(B, H, C, cond_dim=0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, H, C, generator=g)
    k = torch.randint(0, 100, (B,), generator=g)
    c = torch.randn(B, cond_dim, generator=g) if cond_dim else None
    return x, k, c


def _blocks(net):
    return [m for m in net.modules() if isinstance(m, ResidualTemporalBlock)]


# --------------------------------------------------------------------------- shapes / layout

@pytest.mark.parametrize("H", [1, 3, 4, 8, 12, 16, 32])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_unet_output_shape_any_horizon_and_depth(H, depth):
    torch.manual_seed(depth)
    B, C = (3, 5) if depth % 2 else (1, 8)
    net = TemporalUNet(C, dim=8, dim_mults=MULTS[depth])
    x, k, _ = _inputs(B, H, C)
    y = net(x, k)
    assert y.shape == (B, H, C)
    assert torch.isfinite(y).all()
    assert len(_blocks(net)) == 2 * depth


@pytest.mark.parametrize("B,H,C,out", [(1, 1, 1, None), (4, 7, 3, 1), (2, 9, 16, 8), (9, 8, 16, 8)])
def test_unet_out_channels(B, H, C, out):
    net = TemporalUNet(C, out_channels=out, dim=8, dim_mults=(1, 2, 4), cond_dim=2)
    x, k, c = _inputs(B, H, C, cond_dim=2)
    assert net(x, k, c).shape == (B, H, out or C)


def test_default_unet_has_8_residual_blocks_and_paper_layout():
    net = TemporalUNet(in_channels=16)
    blocks = _blocks(net)
    assert len(blocks) == 8
    assert len(net.down_blocks) == 4 and len(net.up_blocks) == 3
    assert len(net.downsamples) == 3 and len(net.upsamples) == 3
    assert [b.out_ch for b in net.down_blocks] == [32, 64, 128, 256]
    assert [b.out_ch for b in net.up_blocks] == [128, 64, 32]
    assert net.horizon_multiple == 8 and net.padded_horizon(8) == 8
    assert net.padded_horizon(9) == 16 and net.padded_horizon(1) == 8
    assert count_parameters(net) == sum(p.numel() for p in net.parameters())


def test_group_count_is_largest_divisor_not_above_groups():
    assert group_count(32, 8) == 8
    assert group_count(12, 8) == 6
    assert group_count(5, 8) == 5
    assert group_count(7, 4) == 1
    assert group_count(3, 8) == 3
    blk = Conv1dBlock(3, 12, groups=8)
    assert blk.norm.num_groups == 6
    with pytest.raises(ValueError, match="groups"):
        group_count(8, 0)


def test_rows_are_independent_of_each_other():
    # GroupNorm normalises per sample: a row's output must not depend on the other rows.
    net = TemporalUNet(4, dim=8, dim_mults=(1, 2, 4), cond_dim=2)
    x, k, c = _inputs(5, 6, 4, cond_dim=2)
    full = net(x, k, c)
    for i in range(5):
        torch.testing.assert_close(net(x[i:i + 1], k[i:i + 1], c[i:i + 1]), full[i:i + 1],
                                   atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- embeddings

def test_sinusoidal_embedding_values():
    emb = SinusoidalEmbedding(8)
    e = emb(torch.tensor([0, 3]))
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    w = torch.tensor([10000.0 ** (-i / 4) for i in range(4)])
    torch.testing.assert_close(e[1], torch.cat([(3 * w).sin(), (3 * w).cos()]))
    torch.testing.assert_close(emb(torch.tensor([3.0])), e[1:])     # int == float
    odd = SinusoidalEmbedding(7)(torch.tensor([2, 5]))
    assert odd.shape == (2, 7) and (odd[:, -1] == 0).all()
    assert not list(emb.parameters()) and not emb.state_dict()
    with pytest.raises(ValueError, match=r"expected shape \[B\]"):
        emb(torch.zeros(2, 1))


def test_time_embedding_shape_and_k_dependence():
    te = TimeEmbedding(16)
    assert [type(m).__name__ for m in te.net] == ["SinusoidalEmbedding", "Linear", "Mish",
                                                    "Linear"]
    assert te.net[1].out_features == 64
    out = te(torch.tensor([0, 1, 50]))
    assert out.shape == (3, 16)
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])


def test_step_condition_embedding_width_and_drop():
    e = StepConditionEmbedding(dim=8, cond_dim=3)
    assert e.out_dim == 16
    k, c = torch.tensor([1, 2]), torch.randn(2, 3)
    out = e(k, c, torch.tensor([False, True]))
    assert out.shape == (2, 16)
    assert (out[1, 8:] == 0).all() and (out[0, 8:] != 0).any()
    assert StepConditionEmbedding(dim=8).out_dim == 8


def test_step_can_be_number_zero_d_or_vector():
    net = TemporalUNet(3, dim=8, dim_mults=(1, 2))
    x, _, _ = _inputs(4, 5, 3)
    ref = net(x, torch.full((4,), 7))
    torch.testing.assert_close(net(x, 7), ref)
    torch.testing.assert_close(net(x, torch.tensor(7)), ref)
    torch.testing.assert_close(net(x, torch.full((4,), 7.0)), ref)


def test_embedding_enters_every_block_after_first_conv():
    net = TemporalUNet(4, dim=8, dim_mults=(1, 2, 4, 8), cond_dim=2)
    x, k, c = _inputs(3, 8, 4, cond_dim=2)
    seen = []
    hooks = [b.emb_proj.register_forward_hook(lambda m, i, o: seen.append(o.detach().clone()))
             for b in _blocks(net)]
    net(x, k, c)
    first = list(seen)
    seen.clear()
    net(x, k + 1, c)
    second = list(seen)
    seen.clear()
    net(x, k, c + 1.0)
    third = list(seen)
    for h in hooks:
        h.remove()
    assert len(first) == len(_blocks(net)) == 8
    for a, b, d in zip(first, second, third):
        assert not torch.allclose(a, b)       # k reaches every block
        assert not torch.allclose(a, d)       # cond reaches every block
    # injection point: block output = block2(block1(x) + proj(emb)) + residual(x)
    blk = net.down_blocks[1]
    h_in = torch.randn(3, blk.in_ch, 4)
    emb = torch.randn(3, blk.embed_dim)
    expect = blk.block2(blk.block1(h_in) + blk.emb_proj(emb)[:, :, None]) + blk.residual(h_in)
    torch.testing.assert_close(blk(h_in, emb), expect)


def test_k_and_cond_change_the_output_and_drop_cond_removes_cond():
    net = TemporalUNet(4, dim=8, dim_mults=(1, 2, 4), cond_dim=3)
    x, k, c = _inputs(4, 8, 4, cond_dim=3)
    y = net(x, k, c)
    assert not torch.allclose(y, net(x, (k + 10) % 100, c), atol=1e-5)
    assert not torch.allclose(y, net(x, k, torch.randn(4, 3)), atol=1e-5)
    drop = torch.ones(4, dtype=torch.bool)
    y1 = net(x, k, c, drop)
    y2 = net(x, k, 100 * torch.randn(4, 3), drop)
    torch.testing.assert_close(y1, y2, atol=0, rtol=0)
    assert not torch.allclose(y1, y, atol=1e-5)
    # mixed mask: dropped rows equal the fully-dropped output, kept rows the conditional one
    mixed = torch.tensor([True, False, True, False])
    ym = net(x, k, c, mixed)
    torch.testing.assert_close(ym[mixed], y1[mixed], atol=1e-6, rtol=0)
    torch.testing.assert_close(ym[~mixed], y[~mixed], atol=1e-6, rtol=0)
    torch.testing.assert_close(net(x, k, c, torch.zeros(4, dtype=torch.bool)), y)


# --------------------------------------------------------------------------- padding

@pytest.mark.parametrize("H,mults", [(5, (1, 2, 4)), (13, (1, 2, 4, 8)), (1, (1, 2, 4, 8)),
                                     (7, (1, 2))])
def test_end_padding_equals_manual_replicate_padding(H, mults):
    net = TemporalUNet(3, dim=8, dim_mults=mults, cond_dim=2)
    x, k, c = _inputs(2, H, 3, cond_dim=2)
    Hp = net.padded_horizon(H)
    assert Hp % net.horizon_multiple == 0 and H <= Hp < H + net.horizon_multiple
    manual = torch.cat([x, x[:, -1:].expand(2, Hp - H, 3)], dim=1)
    y = net(x, k, c)
    assert y.shape == (2, H, 3) and torch.isfinite(y).all()
    torch.testing.assert_close(y, net(manual, k, c)[:, :H], atol=1e-6, rtol=0)


def test_value_net_padding_matches_manual():
    J = TemporalValueNet(3, horizon=5, dim=8, dim_mults=(1, 2, 4))
    assert J.padded == 8 and J.final_length == 1
    Jp = TemporalValueNet(3, horizon=8, dim=8, dim_mults=(1, 2, 4))
    Jp.load_state_dict(J.state_dict())          # same head size: both pad to 8
    x, k, _ = _inputs(2, 5, 3)
    manual = torch.cat([x, x[:, -1:].expand(2, 3, 3)], dim=1)
    torch.testing.assert_close(J(x, k), Jp(manual, k), atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- value net

@pytest.mark.parametrize("H,mults", [(8, (1, 2, 4, 8)), (16, (1, 2)), (1, (1,)), (12, (1, 2, 4))])
def test_value_net_shapes(H, mults):
    J = TemporalValueNet(4, horizon=H, dim=8, dim_mults=mults, cond_dim=2)
    x, k, c = _inputs(5, H, 4, cond_dim=2)
    assert J(x, k, c).shape == (5,)
    assert len(_blocks(J)) == len(mults) and len(J.downsamples) == len(mults)
    J3 = TemporalValueNet(4, horizon=H, dim=8, dim_mults=mults, out_dim=3)
    assert J3(x, k).shape == (5, 3)


def test_value_net_wrong_horizon_raises_naming_horizon():
    J = TemporalValueNet(4, horizon=8, dim=8, dim_mults=(1, 2))
    x, k, _ = _inputs(2, 9, 4)
    with pytest.raises(ValueError, match="horizon"):
        J(x, k)


def test_value_net_input_gradient_for_guidance():
    J = TemporalValueNet(4, horizon=8, dim=8, dim_mults=(1, 2, 4), cond_dim=1)
    x, k, c = _inputs(3, 8, 4, cond_dim=1)
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(J(x, k, c).sum(), x)
    assert g.shape == x.shape and torch.isfinite(g).all() and (g != 0).any()
    # each row's value depends only on its own trajectory
    (g0,) = torch.autograd.grad(J(x, k, c)[0], x)
    assert (g0[1:] == 0).all() and (g0[0] != 0).any()


# --------------------------------------------------------------------------- tracing / io

def test_jit_trace_and_freeze_equal_eager():
    torch.manual_seed(0)
    net = TemporalUNet(8, dim=16, dim_mults=(1, 2, 4), cond_dim=3).eval()
    x, k, c = _inputs(9, 10, 8, cond_dim=3)
    drop = torch.tensor([True, False] * 4 + [True])
    with torch.no_grad():
        eager = net(x, k, c, drop)
        traced = torch.jit.trace(net, (x, k, c, drop))
        torch.testing.assert_close(traced(x, k, c, drop), eager, atol=1e-6, rtol=0)
        frozen = torch.jit.freeze(traced)
        torch.testing.assert_close(frozen(x, k, c, drop), eager, atol=1e-6, rtol=0)
        x2, k2, c2 = _inputs(9, 10, 8, cond_dim=3, seed=1)   # new values, same shapes
        torch.testing.assert_close(traced(x2, k2, c2, ~drop), net(x2, k2, c2, ~drop),
                                   atol=1e-6, rtol=0)
        # unconditional default network, horizon that needs padding
        net0 = TemporalUNet(8).eval()
        x0, k0, _ = _inputs(2, 12, 8)
        torch.testing.assert_close(torch.jit.trace(net0, (x0, k0))(x0, k0), net0(x0, k0),
                                   atol=1e-6, rtol=0)


def test_value_net_trace_equals_eager_including_input_gradient():
    J = TemporalValueNet(8, horizon=8, dim=16, dim_mults=(1, 2, 4), cond_dim=2).eval()
    x, k, c = _inputs(9, 8, 8, cond_dim=2)
    traced = torch.jit.trace(J, (x, k, c))
    torch.testing.assert_close(traced(x, k, c), J(x, k, c), atol=1e-6, rtol=0)
    xe, xt = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    (ge,) = torch.autograd.grad(J(xe, k, c).sum(), xe)
    (gt,) = torch.autograd.grad(traced(xt, k, c).sum(), xt)
    torch.testing.assert_close(gt, ge, atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind", ["unet", "value"])
def test_state_dict_round_trip(kind):
    def make():
        if kind == "unet":
            return TemporalUNet(5, out_channels=3, dim=8, dim_mults=(1, 2, 4), cond_dim=2)
        return TemporalValueNet(5, horizon=6, dim=8, dim_mults=(1, 2, 4), cond_dim=2)
    torch.manual_seed(1)
    a = make()
    torch.manual_seed(2)
    b = make()
    x, k, c = _inputs(3, 6, 5, cond_dim=2)
    assert not torch.allclose(a(x, k, c), b(x, k, c))
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    torch.testing.assert_close(b(x, k, c), a(x, k, c), atol=0, rtol=0)


# --------------------------------------------------------------------------- training

@pytest.mark.parametrize("kind", ["unet", "value"])
def test_gradient_reaches_every_parameter(kind):
    torch.manual_seed(0)
    if kind == "unet":
        net = TemporalUNet(4, out_channels=2, dim=8, dim_mults=(1, 2, 4, 8), cond_dim=3)
    else:
        net = TemporalValueNet(4, horizon=12, dim=8, dim_mults=(1, 2, 4, 8), cond_dim=3)
    x, k, c = _inputs(4, 12, 4, cond_dim=3)
    net(x, k, c).pow(2).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert (p.grad != 0).any(), name


def test_unet_fits_a_fixed_batch():
    torch.manual_seed(0)
    net = TemporalUNet(4, dim=16, dim_mults=(1, 2), cond_dim=2)
    x, k, c = _inputs(8, 8, 4, cond_dim=2)
    target = torch.randn(8, 8, 4, generator=torch.Generator().manual_seed(5))
    first, last = fit_ratio(net, (x, k, c), target, lr=3e-3)
    assert last < 0.1 * first, (first, last)


# --------------------------------------------------------------------------- bad arguments

@pytest.mark.parametrize("kwargs,name", [
    (dict(in_channels=0), "in_channels"),
    (dict(in_channels=True), "in_channels"),
    (dict(in_channels=2.0), "in_channels"),
    (dict(out_channels=0), "out_channels"),
    (dict(dim=1), "dim"),
    (dict(dim_mults=()), "dim_mults"),
    (dict(dim_mults=[]), "dim_mults"),
    (dict(dim_mults=(1, 0)), "dim_mults"),
    (dict(dim_mults="124"), "dim_mults"),
    (dict(kernel_size=4), "kernel_size"),
    (dict(kernel_size=0), "kernel_size"),
    (dict(groups=0), "groups"),
    (dict(cond_dim=-1), "cond_dim"),
])
def test_unet_bad_constructor_args(kwargs, name):
    args = dict(in_channels=4, dim=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        TemporalUNet(**args)


@pytest.mark.parametrize("kwargs,name", [
    (dict(horizon=0), "horizon"), (dict(in_channels=0), "in_channels"),
    (dict(dim_mults=()), "dim_mults"), (dict(kernel_size=2), "kernel_size"),
    (dict(out_dim=0), "out_dim"), (dict(cond_dim=-2), "cond_dim"),
])
def test_value_net_bad_constructor_args(kwargs, name):
    args = dict(in_channels=4, horizon=8, dim=8)
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        TemporalValueNet(**args)


def test_block_bad_args_and_shapes():
    with pytest.raises(ValueError, match="kernel_size"):
        ResidualTemporalBlock(4, 8, 16, kernel_size=6)
    with pytest.raises(ValueError, match="embed_dim"):
        ResidualTemporalBlock(4, 8, 0)
    with pytest.raises(ValueError, match="in_ch"):
        Conv1dBlock(0, 8)
    with pytest.raises(ValueError, match="dim"):
        SinusoidalEmbedding(1)
    blk = ResidualTemporalBlock(4, 4, 16)
    assert isinstance(blk.residual, torch.nn.Identity)
    assert isinstance(ResidualTemporalBlock(4, 8, 16).residual, torch.nn.Conv1d)
    with pytest.raises(ValueError, match=r"expected shape \[B, 4, T\].*got \(2, 5, 3\)"):
        blk(torch.zeros(2, 5, 3), torch.zeros(2, 16))
    with pytest.raises(ValueError, match=r"emb: expected shape \[2, 16\]"):
        blk(torch.zeros(2, 4, 3), torch.zeros(2, 15))


def test_unet_forward_shape_errors():
    net = TemporalUNet(4, dim=8, dim_mults=(1, 2), cond_dim=2)
    x, k, c = _inputs(3, 6, 4, cond_dim=2)
    with pytest.raises(ValueError, match=r"expected shape \[B, H, 4\].*got \(3, 6, 5\)"):
        net(torch.zeros(3, 6, 5), k, c)
    with pytest.raises(ValueError, match=r"x: expected shape"):
        net(torch.zeros(6, 4), k, c)
    with pytest.raises(ValueError, match=r"x: expected shape"):
        net(torch.zeros(3, 0, 4), k, c)
    with pytest.raises(ValueError, match="cond: required"):
        net(x, k)
    with pytest.raises(ValueError, match=r"cond: expected shape \[3, 2\], got \(3, 1\)"):
        net(x, k, torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"k: expected shape \[3\]"):
        net(x, torch.zeros(2, dtype=torch.long), c)
    with pytest.raises(ValueError, match=r"drop_cond: expected .*\[3\]"):
        net(x, k, c, torch.zeros(2, dtype=torch.bool))
    net0 = TemporalUNet(4, dim=8, dim_mults=(1, 2))
    with pytest.raises(ValueError, match="cond_dim=0"):
        net0(x, k, c)
    with pytest.raises(ValueError, match="drop_cond"):
        net0(x, k, None, torch.zeros(3, dtype=torch.bool))
    J = TemporalValueNet(4, horizon=6, dim=8, dim_mults=(1, 2), cond_dim=2)
    with pytest.raises(ValueError, match="cond: required"):
        J(x, k)
    with pytest.raises(ValueError, match=r"got \(3, 6, 3\)"):
        J(torch.zeros(3, 6, 3), k, c)


@pytest.mark.parametrize("cin,cout,k,s,p", [(8, 16, 5, 1, 2), (16, 16, 3, 2, 1), (4, 32, 1, 1, 0)])
@pytest.mark.parametrize("B,T", [(3, 8), (2, 1), (300, 8), (9, 2)])
def test_gemm_conv1d_equals_the_library_convolution(cin, cout, k, s, p, B, T):
    """Small inputs take the im2col + GEMM path, large ones the library path; both give
    F.conv1d's values and gradients (same parameters)."""
    from radiorl.nn.temporal import Conv1d
    torch.manual_seed(0)
    conv = Conv1d(cin, cout, k, stride=s, padding=p)
    x = torch.randn(B, cin, T, requires_grad=True)
    y = conv(x)
    ref = torch.nn.functional.conv1d(x, conv.weight, conv.bias, stride=s, padding=p)
    assert torch.allclose(y, ref, atol=1e-5)
    g = torch.randn_like(y)
    gx, gw = torch.autograd.grad((y * g).sum(), (x, conv.weight))
    rx, rw = torch.autograd.grad((ref * g).sum(), (x, conv.weight))
    assert torch.allclose(gx, rx, atol=1e-4) and torch.allclose(gw, rw, atol=1e-3)


@pytest.mark.parametrize("B,T", [(3, 4), (2, 1), (500, 4)])
def test_gemm_conv_transpose_equals_the_library_convolution(B, T):
    from radiorl.nn.temporal import ConvTranspose1d
    torch.manual_seed(1)
    ct = ConvTranspose1d(16, 12, 4, stride=2, padding=1)
    x = torch.randn(B, 16, T, requires_grad=True)
    y = ct(x)
    ref = torch.nn.functional.conv_transpose1d(x, ct.weight, ct.bias, stride=2, padding=1)
    assert y.shape == ref.shape == (B, 12, 2 * T)
    assert torch.allclose(y, ref, atol=1e-5)
    g = torch.randn_like(y)
    assert torch.allclose(torch.autograd.grad((y * g).sum(), x)[0],
                          torch.autograd.grad((ref * g).sum(), x)[0], atol=1e-4)

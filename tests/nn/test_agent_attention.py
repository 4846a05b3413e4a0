"""Attention across agents and the multi-agent temporal U-Net (MADiff): shapes for several
team sizes, horizons and depths, permutation equivariance across agents, padded agents not
affecting real ones, per-sample vs per-agent conditions, TorchScript tracing, gradient flow and
argument checks."""
import pytest
import torch

from radiorl.nn.agent_attention import AgentAttention, MultiAgentTemporalUNet
from radiorl.nn.temporal import TemporalUNet

torch.set_num_threads(1)

pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning",
                                        "ignore:.*torch.jit.*deprecated:DeprecationWarning",
                                        "ignore:.*torch.jit.*deprecated:FutureWarning",
                                        "ignore:.*torch.jit.*deprecated:UserWarning")


def _net(cond_dim=1, mults=(1, 2), C=5, out=4, gain=1.0, seed=0):
    torch.manual_seed(seed)
    net = MultiAgentTemporalUNet(C, out, dim=8, dim_mults=mults, cond_dim=cond_dim)
    with torch.no_grad():                       # zero-initialized gains: make attention active
        for m in net.modules():
            if isinstance(m, AgentAttention):
                m.gain.fill_(gain)
    return net.eval()


def _inputs(B=3, N=5, H=8, C=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, N, H, C, generator=g), torch.randint(0, 50, (B,), generator=g),
            torch.randn(B, 1, generator=g))


@pytest.mark.parametrize("N", [1, 2, 7])
@pytest.mark.parametrize("H", [3, 4, 16])
@pytest.mark.parametrize("mults", [(1,), (1, 2), (1, 2, 4, 8)])
def test_shapes(N, H, mults):
    net = _net(mults=mults)
    x, k, c = _inputs(N=N, H=H)
    out = net(x, k, c)
    assert out.shape == (3, N, H, 4) and torch.isfinite(out).all()
    n_att = sum(isinstance(m, AgentAttention) for m in net.modules())
    assert n_att == len(mults)                  # bottleneck + one per skip


def test_attention_block_shapes_and_heads():
    att = AgentAttention(32, embed_dim=6, heads=2)
    assert (att.qk_channels, att.v_channels) == (4, 8)
    h = torch.randn(2, 3, 32, 5)
    assert att(h, torch.randn(2, 3, 6)).shape == h.shape
    assert torch.equal(att(h, torch.randn(2, 3, 6)), h)     # zero gain at init: identity


def test_fresh_network_is_the_shared_per_agent_unet():
    """Zero-initialized attention gains: each agent's output is the TemporalUNet's on its own
    row, i.e. parameter sharing with agents folded into the batch."""
    torch.manual_seed(0)
    net = MultiAgentTemporalUNet(5, 4, dim=8, dim_mults=(1, 2), cond_dim=1).eval()
    x, k, c = _inputs()
    out = net(x, k, c)
    B, N, H, C = x.shape
    ref = net.net(x.reshape(B * N, H, C), k.repeat_interleave(N), c.repeat_interleave(N, 0))
    assert torch.allclose(out, ref.reshape(B, N, H, 4), atol=1e-5)
    assert isinstance(net.net, TemporalUNet)


def test_permutation_equivariance_across_agents():
    net = _net()
    x, k, c = _inputs(N=6)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1] * 6, [1, 0, 1, 0, 1, 0]], dtype=torch.bool)
    out = net(x, k, c, agent_mask=mask)
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    out_p = net(x[:, perm], k, c, agent_mask=mask[:, perm])
    real = mask[:, perm]
    assert torch.allclose(out_p[real], out[:, perm][real], atol=1e-5)
    # the agents really interact: changing one agent changes the others
    x2 = x.clone()
    x2[:, 1] += 1.0
    assert not torch.allclose(net(x2, k, c)[:, 0], net(x, k, c)[:, 0], atol=1e-4)


def test_padded_agents_do_not_affect_real_agents():
    net = _net()
    x, k, c = _inputs(N=6)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0], [1, 0, 0, 0, 0, 0]],
                        dtype=torch.bool)
    out = net(x, k, c, agent_mask=mask)
    junk = x.clone()
    junk[~mask] = 1e3 * torch.randn(int((~mask).sum()), *x.shape[2:])
    out2 = net(junk, k, c, agent_mask=mask)
    assert torch.equal(out[mask], out2[mask])
    assert torch.all(out[~mask] == 0)
    # and equal to the same team without the padding rows (first sample: 3 real agents)
    alone = net(x[:1, :3], k[:1], c[:1])
    assert torch.allclose(alone[0], out[0, :3], atol=1e-5)


def test_per_agent_condition_equals_shared_condition_when_repeated():
    net = _net()
    x, k, c = _inputs(N=4)
    drop = torch.tensor([False, True, False])
    shared = net(x, k, c, drop)
    per_agent = net(x, k, c[:, None].expand(3, 4, 1), drop)
    assert torch.allclose(shared, per_agent, atol=1e-6)
    # dropped samples ignore their condition
    other = net(x, k, c + 5.0, drop)
    assert torch.allclose(other[1], shared[1], atol=1e-6)
    assert not torch.allclose(other[0], shared[0], atol=1e-4)


def test_gradients_flow_to_every_parameter():
    net = _net(gain=0.5).train()
    x, k, c = _inputs(N=4)
    x.requires_grad_(True)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
    net(x, k, c, agent_mask=mask).pow(2).mean().backward()
    for n, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, n
    assert x.grad[mask].abs().sum() > 0
    # zero-initialized gain still receives a gradient (so attention can switch on)
    fresh = MultiAgentTemporalUNet(5, 4, dim=8, dim_mults=(1, 2), cond_dim=1)
    fresh(x.detach(), k, c).pow(2).mean().backward()
    assert fresh.mid_attention.gain.grad.abs() > 0


def test_tracing_reproduces_the_eager_output():
    net = _net()
    x, k, c = _inputs(N=4)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    drop = torch.zeros(3, dtype=torch.bool)
    traced = torch.jit.trace(net, (x, k, c, drop, mask), check_trace=False)
    assert torch.allclose(traced(x, k, c, drop, mask), net(x, k, c, drop, mask), atol=1e-5)
    # same number of real agents, placed elsewhere
    other = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 0, 1]], dtype=torch.bool)
    assert torch.allclose(traced(x, k, c, drop, other), net(x, k, c, drop, other), atol=1e-5)


def test_bad_arguments():
    net = _net()
    x, k, c = _inputs(N=3)
    with pytest.raises(ValueError, match=r"x: expected shape \[B, N, H, 5\]"):
        net(x[..., :4], k, c)
    with pytest.raises(ValueError, match=r"x: expected shape"):
        net(x[0], k, c)
    with pytest.raises(ValueError, match=r"agent_mask: expected a bool tensor of shape \[3, 3\]"):
        net(x, k, c, agent_mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="cond"):
        net(x, k, None)
    with pytest.raises(ValueError, match="cond: expected shape"):
        net(x, k, torch.zeros(3, 2, 1))
    with pytest.raises(ValueError, match="multiple of heads"):
        AgentAttention(16, qk_channels=3, heads=2)
    with pytest.raises(ValueError, match=r"h: expected shape \[B, N, 16, T\]"):
        AgentAttention(16)(torch.zeros(2, 8, 5))
    with pytest.raises(ValueError, match="emb: expected shape"):
        AgentAttention(16, embed_dim=4)(torch.zeros(2, 3, 16, 5))

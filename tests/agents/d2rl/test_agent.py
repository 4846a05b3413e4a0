"""D2RLAgent: one update of every variant, acting, chi (Algorithm 1), save/load, and a learning
check against the bandit's known optimum."""
import itertools

import numpy as np
import pytest
import torch

from radiorl.agents.d2rl import (REWARDS, D2RLAgent, D2RLConfig, ReplayBuffer,
                                 SubstituteProbability, next_chi)
from radiorl.agents.d2rl.train import design_target

S, A = 4, 3


def small(**kw) -> D2RLConfig:
    base = dict(hidden=32, actor_layers=2, critic_layers=2, reward_layers=2, state_layers=2,
                time_dim=8, batch_size=16, buffer_size=1000)
    base.update(kw)
    return D2RLConfig(**base)


def fake_batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(n, S, generator=g), "action": torch.rand(n, A, generator=g) * 2 - 1,
            "next_obs": torch.randn(n, S, generator=g), "terminated": torch.zeros(n),
            "target": torch.randn(n, generator=g) - 3.0, "reward": torch.randn(n, generator=g)}


def params(m):
    return [p.detach().clone() for p in m.parameters()]


VARIANTS = list(itertools.product(("mlp", "gdm"), REWARDS, (None, (0.5, 0.1))))


@pytest.mark.parametrize("actor, reward, se", VARIANTS)
def test_one_update_every_variant(actor, reward, se):
    agent = D2RLAgent(small(actor=actor, reward=reward, state_exploration=se), S, A)
    b = fake_batch()
    agent.observe(b["obs"], b["target"])
    nets = {"actor": agent.actor, "critic": agent.critic}
    if agent.reward_model is not None:
        nets["reward"] = agent.reward_model
    if agent.state_model is not None:
        nets["state"] = agent.state_model
    assert (agent.reward_model is not None) == (reward in ("designed-mlp", "gdm", "designed-gdm"))
    assert (agent.state_model is not None) == (se is not None)
    before = {k: params(m) for k, m in nets.items()}
    t_actor, t_critic = params(agent.actor_target), params(agent.critic_target)
    out = agent.update(b)
    for k in ("critic_loss", "actor_loss", "q_mean"):
        assert np.isfinite(out[k])
    assert ("reward_loss" in out) == ("reward" in nets)
    assert ("state_loss" in out) == ("state" in nets)
    for k, v in out.items():
        assert np.isfinite(v), k
    for k, m in nets.items():                      # every parameter tensor moved
        for p0, p1 in zip(before[k], m.parameters()):
            assert not torch.equal(p0, p1.detach()), k
        assert any(key.startswith(f"grad_w/{k}/") for key in out), k
    tau = agent.config.tau                         # targets moved by tau towards the nets
    for tgt_old, tgt, src in ((t_actor, agent.actor_target, agent.actor),
                              (t_critic, agent.critic_target, agent.critic)):
        for p0, pt, ps in zip(tgt_old, tgt.parameters(), src.parameters()):
            torch.testing.assert_close(pt, p0 + tau * (ps.detach() - p0))
            assert not pt.requires_grad
    assert agent.updates == 1


def test_update_with_bootstrap_and_relabel():
    agent = D2RLAgent(small(actor="gdm", reward="designed-gdm", gamma=0.9, reward_relabel=True),
                      S, A)
    b = fake_batch()
    b["terminated"][:8] = 1.0
    out = agent.update(b)
    assert np.isfinite(out["critic_loss"]) and np.isfinite(out["reward_loss"])


def test_gradient_stats_per_layer():
    agent = D2RLAgent(small(actor="gdm", reward="gdm", state_exploration=(1.0, 0.1)), S, A)
    out = agent.update(fake_batch())
    for net, n_lin in (("actor", 3), ("critic/q1", 3), ("critic/q2", 3), ("reward", 3),
                       ("state", 3)):
        for i in range(1, n_lin + 1):
            for t in ("grad_w", "grad_b"):
                assert out[f"{t}/{net}/L{i}"] >= 0.0
    assert out["grad_w/actor/T1"] > 0.0              # time embedding of the AENPNN
    # the reported value is the mean |grad| of that layer
    agent2 = D2RLAgent(small(actor="mlp", reward="raw"), S, A)
    b = fake_batch()
    q = agent2.critic(b["obs"], b["action"])
    ((q - b["reward"]) ** 2).mean(1).sum().backward()
    w = agent2.critic.linears[0].weight.grad[1].abs().mean()
    agent2.critic.zero_grad(set_to_none=True)
    out2 = agent2.update(b)
    assert out2["grad_w/critic/q2/L1"] == pytest.approx(float(w), rel=1e-5)


@pytest.mark.parametrize("actor", ["mlp", "gdm"])
def test_act_shapes_range_and_determinism(actor):
    agent = D2RLAgent(small(actor=actor), S, A)
    obs = np.random.default_rng(0).normal(size=(9, S)).astype(np.float32) * 3
    a = agent.act(obs)
    assert isinstance(a, np.ndarray) and a.shape == (9, A) and a.dtype == np.float32
    assert np.all(np.abs(a) <= 1.0)
    t = agent.act(torch.as_tensor(obs))
    assert isinstance(t, torch.Tensor) and t.shape == (9, A)
    ex = agent.act(obs, explore=True)
    assert ex.shape == (9, A) and np.all(np.abs(ex) <= 1.0)
    g = lambda s: torch.Generator().manual_seed(s)           # noqa: E731
    np.testing.assert_array_equal(agent.act(obs, generator=g(3)), agent.act(obs, generator=g(3)))
    if actor == "mlp":                                         # deterministic whatever the noise
        np.testing.assert_array_equal(agent.act(obs), agent.act(obs, generator=g(5)))
    else:                                                      # the chain noise is seeded
        assert not np.array_equal(agent.act(obs, generator=g(3)), agent.act(obs, generator=g(4)))
    with pytest.raises(ValueError, match=r"obs: expected shape \[B, 4\]"):
        agent.act(np.zeros((2, S + 1), np.float32))


def test_epsilon_greedy_only_when_exploring():
    obs = torch.randn(400, S)
    agent = D2RLAgent(small(actor="mlp", epsilon=0.1, noise_std=0.1), S, A)
    ex = agent.explore(obs)
    frac = float(ex["noised"].float().mean())
    assert 0.05 < frac < 0.16                                  # ~Bernoulli(0.1)
    d = (ex["action"] - ex["policy_action"])
    assert torch.all(d[~ex["noised"]] == 0)
    assert 0.05 < float(d[ex["noised"]].std()) < 0.15
    torch.testing.assert_close(ex["policy_action"], agent.act(obs))
    none = D2RLAgent(small(actor="mlp", epsilon=0.0), S, A).explore(obs)
    assert not bool(none["noised"].any())
    assert not bool(ex["substituted"].any())                   # no state exploration


def test_chi_schedule_pure():
    assert next_chi(0.0, 1e-4, 0.1, 0.25, 5e-4) == pytest.approx(0.1)
    assert next_chi(0.1, 5e-4, 0.1, 0.25, 5e-4) == 0.1         # not below T: unchanged
    assert next_chi(0.2, 1e-4, 0.1, 0.25, 5e-4) == 0.25        # capped at M
    assert next_chi(0.2, float("nan"), 0.1, 0.25, 5e-4) == 0.2
    sp = SubstituteProbability(max_prob=0.3, rate=0.1, threshold=5e-4)
    assert sp.chi == 0.0
    seq = [sp.update(v) for v in (1.0, 1e-4, 1e-3, 1e-4, 1e-4, 1e-4, 1e-4)]
    assert seq == pytest.approx([0.0, 0.1, 0.1, 0.2, 0.3, 0.3, 0.3])


def test_chi_in_the_agent_and_substitution():
    b = fake_batch(64)
    hi = D2RLAgent(small(state_exploration=(0.3, 0.1), state_loss_threshold=1e9), S, A)
    lo = D2RLAgent(small(state_exploration=(0.3, 0.1), state_loss_threshold=1e-12), S, A)
    for ag in (hi, lo):
        ag.observe(b["obs"], b["target"])
        assert ag.chi.chi == 0.0 and not bool(ag.explore(b["obs"])["substituted"].any())
    chis = [hi.update(b)["chi"] for _ in range(5)]
    assert chis == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3])
    assert [lo.update(b)["chi"] for _ in range(3)] == [0.0, 0.0, 0.0]
    hi.chi.chi = 1.0                                           # every input substituted
    ex = hi.explore(b["obs"])
    assert bool(ex["substituted"].all())
    hi.chi.chi = 0.5
    frac = float(hi.explore(torch.randn(2000, S))["substituted"].float().mean())
    assert 0.45 < frac < 0.55


def test_learned_reward_on_the_real_scale():
    """The reward models standardize their target and map back: an untrained RENPNN's samples
    already lie in the target's range, and a trained reward MLP tracks the target."""
    g = torch.Generator().manual_seed(0)
    obs, act = torch.randn(256, S, generator=g), torch.rand(256, A, generator=g) * 2 - 1
    target = 40.0 + 5.0 * act[:, 0]                            # C - R' like scale, far from 0
    gdm = D2RLAgent(small(reward="designed-gdm"), S, A)
    gdm.observe(obs, target)
    r, learned = gdm.design_reward(obs, act, target)
    assert 20.0 < float(learned.mean()) < 60.0
    torch.testing.assert_close(r, 0.5 * target + 0.5 * learned)
    mlp = D2RLAgent(small(reward="designed-mlp", reward_lr=3e-3), S, A)
    mlp.observe(obs, target)
    b = {"obs": obs, "action": act, "next_obs": obs, "terminated": torch.zeros(256),
         "target": target, "reward": target}
    for _ in range(150):
        mlp.update(b)
    _, learned = mlp.design_reward(obs, act, target)
    assert float((learned - target).abs().mean()) < 1.5        # target std is ~2.9


def test_save_load_round_trip(tmp_path):
    cfg = small(actor="gdm", reward="designed-gdm", state_exploration=(0.5, 0.1),
                state_loss_threshold=1e9)
    agent = D2RLAgent(cfg, S, A)
    b = fake_batch()
    agent.observe(b["obs"], b["target"])
    agent.update(b)
    path = agent.save(tmp_path / "agent.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.pt"]   # no temp file left
    blob = torch.load(path, weights_only=True)
    assert blob["algo"] == "d2rl" and blob["config"]["reward"] == "designed-gdm"
    loaded = D2RLAgent.load(path)
    obs = torch.randn(7, S)
    g = lambda: torch.Generator().manual_seed(11)              # noqa: E731
    torch.testing.assert_close(loaded.act(obs, generator=g()), agent.act(obs, generator=g()))
    assert loaded.chi.chi == agent.chi.chi == 0.1 and loaded.updates == 1
    # same continuation: the generator, optimizers and statistics were restored
    o1, o2 = agent.update(b), loaded.update(b)
    assert o1 == o2
    D2RLAgent.load(path, small(actor="gdm", reward="designed-gdm", state_exploration=(0.5, 0.1),
                               state_loss_threshold=1e9, epochs=5))     # run fields may differ
    with pytest.raises(ValueError, match=r"another D2RL config.*networks.*reward: "
                                         r"'designed-gdm' != 'gdm'"):
        D2RLAgent.load(path, small(actor="gdm", reward="gdm", state_exploration=(0.5, 0.1),
                                   state_loss_threshold=1e9))
    with pytest.raises(ValueError, match=r"training settings.*critic_lr"):
        D2RLAgent.load(path, small(actor="gdm", reward="designed-gdm", critic_lr=1e-3,
                                   state_exploration=(0.5, 0.1), state_loss_threshold=1e9))
    torch.save({"algo": "mappo", "version": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a D2RL checkpoint"):
        D2RLAgent.load(tmp_path / "other.pt")


def test_mlp_ddpg_learns_the_bandit_optimum(bandit):
    """Oracle check: MLP-DDPG (designed reward C - R') on a contextual bandit with a known optimal
    action reaches a mean squared error to the optimum of < 0.01 in 400 updates; the zero action
    has 0.10, a uniformly random one ~0.43 (the learning rates are raised for the test)."""
    env = bandit
    cfg = D2RLConfig(actor="mlp", reward="designed", hidden=64, batch_size=64, actor_lr=3e-4,
                     critic_lr=3e-3, seed=1)
    agent = D2RLAgent(cfg, env.obs_dim, env.action_dim)
    buf = ReplayBuffer(10_000, env.obs_dim, env.action_dim)
    obs, st = env.reset(seed=1, batch=16)
    for _ in range(400):
        ob = torch.as_tensor(obs)
        ex = agent.explore(ob)
        obs, r, term, trunc, info, st = env.step(st, ex["action"].numpy())
        target = design_target(cfg, r, info)
        buf.add(obs=ob, action=ex["action"], next_obs=torch.as_tensor(obs),
                terminated=torch.as_tensor(term, dtype=torch.float32), target=target,
                reward=target)
        if len(buf) >= cfg.batch_size:
            agent.update(buf.sample(cfg.batch_size, agent.generator))
    test_obs, test_state = env.reset(seed=999, batch=1000)
    a = agent.act(test_obs)
    mse = float(((a - env.optimal_action(test_obs)) ** 2).mean())
    zero = float((env.optimal_action(test_obs) ** 2).mean())
    assert zero > 0.09
    assert mse < 0.01, mse
    assert float(env.sum_rate(test_state, a).mean()) > env.r_max - 0.05


def test_flush_denormal_only_while_the_agent_computes():
    """Subnormal floats are flushed to zero while the agent computes (long runs otherwise slow
    down several-fold as Adam moments decay into subnormals), and IEEE subnormals are back
    after every call, so the rest of the process computes as before."""
    from radiorl.agents.d2rl.agent import _with_precision
    x = torch.tensor([1e-39], dtype=torch.float32)

    class Probe:
        def __init__(self, cfg):
            self.config = cfg

        @_with_precision
        def product(self):
            return float(x * 1.0)

    try:
        torch.set_flush_denormal(False)
        assert Probe(small()).product() == 0.0               # flushed inside
        assert float(x * 1.0) != 0.0                          # restored after
        assert Probe(small(flush_denormal=False)).product() != 0.0
        D2RLAgent(small(), S, A).update(fake_batch())
        assert float(x * 1.0) != 0.0
    finally:
        torch.set_flush_denormal(False)


def test_critic_layer_norm(tmp_path):
    """``critic_layer_norm=True``: a per-head LayerNorm in every hidden layer of the critics
    (targets too), heads normalized independently; saved and loaded; a checkpoint does not load
    under the other value (it changes the networks)."""
    from radiorl.agents.d2rl.config import ARCH_FIELDS
    from radiorl.agents.d2rl.networks import EnsembleLayerNorm
    assert "critic_layer_norm" in ARCH_FIELDS
    plain = D2RLAgent(small(actor="mlp", reward="designed"), S, A)
    assert not any(isinstance(m, EnsembleLayerNorm) for m in plain.critic.modules())
    agent = D2RLAgent(small(actor="mlp", reward="designed", critic_layer_norm=True), S, A)
    for net in (agent.critic, agent.critic_target):
        norms = [m for m in net.modules() if isinstance(m, EnsembleLayerNorm)]
        assert len(norms) == 2 and norms[0].weight.shape == (2, 1, 32)
    # the hidden pre-activations of each head have zero mean and unit variance
    crit = agent.critic
    x = torch.randn(64, S + A).unsqueeze(0).expand(2, 64, S + A)
    h = crit.norms[0](crit.linears[0](x))
    torch.testing.assert_close(h.mean(-1), torch.zeros(2, 64), atol=1e-5, rtol=0)
    torch.testing.assert_close(h.var(-1, unbiased=False), torch.ones(2, 64), atol=1e-3, rtol=0)
    b = fake_batch()
    before = params(crit)
    agent.update(b)
    assert all(not torch.equal(p0, p1) for p0, p1 in zip(before, crit.parameters()))
    path = agent.save(tmp_path / "ln.pt")
    loaded = D2RLAgent.load(path)
    assert loaded.config.critic_layer_norm is True
    obs, act = torch.randn(5, S), torch.rand(5, A) * 2 - 1
    torch.testing.assert_close(loaded.critic(obs, act), agent.critic(obs, act))
    assert agent.update(b) == loaded.update(b)
    with pytest.raises(ValueError, match=r"networks.*critic_layer_norm: True != False"):
        D2RLAgent.load(path, small(actor="mlp", reward="designed"))


@pytest.mark.parametrize("layer_norm", [False, True])
def test_critic_value_of_action_equals_forward(layer_norm):
    """The actor's path through the critics (head by head, first layer split into state and
    action columns) = the batched forward: same values and the same gradient with respect to the
    action (float64, to rounding), and no gradient reaches the state."""
    from radiorl.agents.d2rl.networks import DoubleCritic
    torch.manual_seed(0)
    crit = DoubleCritic(S, A, 16, 3, layer_norm=layer_norm).double()
    if layer_norm:                       # non-trivial gains and shifts
        for n in crit.norms:
            torch.nn.init.normal_(n.weight, 1.0, 0.3)
            torch.nn.init.normal_(n.bias, 0.0, 0.3)
    obs = torch.randn(9, S, dtype=torch.float64, requires_grad=True)
    act = torch.randn(9, A, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 9, dtype=torch.float64)
    q_ref, q = crit(obs, act), crit.value_of_action(obs, act)
    assert q.shape == (2, 9)
    torch.testing.assert_close(q, q_ref, rtol=1e-12, atol=1e-12)
    g_ref = torch.autograd.grad((q_ref * w).sum(), act)[0]
    g_act, g_obs = torch.autograd.grad((q * w).sum(), (act, obs))
    torch.testing.assert_close(g_act, g_ref, rtol=1e-10, atol=1e-12)
    g_obs_ref = torch.autograd.grad((crit(obs, act) * w).sum(), obs)[0]
    torch.testing.assert_close(g_obs, g_obs_ref, rtol=1e-10, atol=1e-12)


def test_inplace_relu_same_gradients_as_out_of_place():
    """``make_activation("relu")`` is in place; an MLP built with it has the gradients of one
    with ``nn.ReLU()`` (the in-place write is after a Linear, whose backward does not read its
    output); other activations are plain modules."""
    from radiorl.nn.mlp import MLP, make_activation
    assert make_activation("relu").inplace and not isinstance(make_activation("tanh"),
                                                             torch.nn.ReLU)
    with pytest.raises(ValueError, match="activation must be one of"):
        make_activation("swish")
    torch.manual_seed(1)
    mlp = MLP(5, 2, hidden=(8, 8)).double()
    ref = torch.nn.Sequential(*[torch.nn.ReLU() if isinstance(m, torch.nn.ReLU) else m
                                for m in mlp.net])
    x = torch.randn(6, 5, dtype=torch.float64)
    outs = [mlp(x), ref(x)]
    assert torch.equal(outs[0], outs[1])
    grads = [torch.autograd.grad(o.square().sum(), list(mlp.parameters())) for o in outs]
    for a, b in zip(*grads):
        assert torch.equal(a, b)


@pytest.mark.parametrize("actor", ["mlp", "gdm"])
def test_networks_with_draws_made_beforehand_equal_drawing_inside(actor):
    """The update draws the chain's / losses' noise before calling them (what makes them
    compilable): same numbers as drawing inside from the same generator state."""
    agent = D2RLAgent(small(actor=actor, reward="designed-gdm", state_exploration=(0.5, 0.1)),
                      S, A)
    b = fake_batch()
    for name, call, draw in (
            ("actor", lambda g, d: agent.actor(b["obs"], g, d),
             lambda g: agent.actor.draw_noise(16, g)),
            ("reward", lambda g, d: agent.reward_model.loss(b["obs"], b["action"], b["target"],
                                                            g, d),
             lambda g: agent.reward_model.draw(16, g)),
            ("state", lambda g, d: agent.state_model.loss(b["obs"], g, d),
             lambda g: agent.state_model.draw(16, g))):
        inside = call(torch.Generator().manual_seed(3), None)
        outside = call(None, draw(torch.Generator().manual_seed(3)))
        assert torch.equal(inside, outside), name


FULL = dict(actor="gdm", reward="designed-gdm", state_exploration=(0.5, 0.1))


def assert_same_updates(ref: D2RLAgent, other: D2RLAgent, n: int) -> None:
    """``n`` updates of both agents on the same batches give the same outputs (losses, gradient
    statistics) and the same parameters of every network, float rounding aside."""
    for i in range(n):
        b = fake_batch(seed=i)
        for ag in (ref, other):
            ag.observe(b["obs"], b["target"])
        o_ref, o = ref.update(b), other.update(b)
        assert set(o_ref) == set(o)
        for k in o_ref:
            assert o[k] == pytest.approx(o_ref[k], rel=1e-4, abs=1e-6), k
    for m_ref, m in ((ref.actor, other.actor), (ref.critic, other.critic),
                     (ref.reward_model, other.reward_model),
                     (ref.state_model, other.state_model)):
        for p_ref, p in zip(m_ref.parameters(), m.parameters()):
            torch.testing.assert_close(p, p_ref, rtol=1e-4, atol=1e-5)


def test_compiled_update_matches_eager():
    """config.compile: torch.compile of the four losses gives eager's update (float rounding
    aside): same losses and parameters after two updates of the full D2RL agent."""
    torch.set_num_threads(1)
    assert_same_updates(D2RLAgent(small(**FULL), S, A),
                        D2RLAgent(small(compile=True, **FULL), S, A), 2)


def test_fused_chain_update_matches_autograd():
    """config.fused_chain (the default): the GDM actor's hand-written chain backward gives the
    autograd update (float rounding aside): same losses, gradient statistics and parameters
    after three updates of the full D2RL agent; the same actions."""
    torch.set_num_threads(1)
    fused, plain = D2RLAgent(small(**FULL), S, A), D2RLAgent(small(fused_chain=False, **FULL),
                                                              S, A)
    assert fused.actor.fused and not plain.actor.fused
    assert_same_updates(plain, fused, 3)
    obs = fake_batch(seed=9)["obs"]
    torch.testing.assert_close(fused.act(obs, generator=torch.Generator().manual_seed(0)),
                               plain.act(obs, generator=torch.Generator().manual_seed(0)),
                               rtol=1e-4, atol=1e-5)
    # a non-ReLU actor falls back to autograd
    assert not D2RLAgent(small(activation="mish", **FULL), S, A).actor.fused


def test_critic_hidden_sets_the_critics_width_only(tmp_path):
    """``critic_hidden``: the critics' (and targets') hidden width; the other networks keep
    ``hidden``; a checkpoint does not load under another width (an ARCH field)."""
    from radiorl.agents.d2rl.config import ARCH_FIELDS
    assert "critic_hidden" in ARCH_FIELDS
    agent = D2RLAgent(small(actor="gdm", reward="designed-gdm", critic_hidden=48), S, A)
    for net in (agent.critic, agent.critic_target):
        assert [tuple(lin.weight.shape) for lin in net.linears] == [(2, S + A, 48), (2, 48, 48),
                                                                     (2, 48, 1)]
    assert agent.actor.denoiser.mlp.net[0].out_features == 32
    assert agent.reward_model.denoiser.mlp.net[0].out_features == 32
    agent.update(fake_batch())
    path = agent.save(tmp_path / "w.pt")
    assert D2RLAgent.load(path).config.critic_hidden == 48
    with pytest.raises(ValueError, match="critic_hidden"):
        D2RLAgent.load(path, small(actor="gdm", reward="designed-gdm"))

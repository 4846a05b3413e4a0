"""D2RL networks (``papers/d2rl.txt`` Sec. IV-C, Table II).

* :class:`DiffusionActor` -- AENPNN, Mode I: ``P`` reverse steps from ``N(0, I)`` conditioned on
  the state; the action is the chain's output (``[B, A]`` in ``[-1, 1]``).
* :class:`MLPActor` -- "A. w/o GDM": ``tanh(MLP(s))``, same depth and width as the AENPNN.
* :class:`DoubleCritic` -- two Q heads computed as one batched (ensemble) MLP: ``[2, B]``;
  optionally with a per-head LayerNorm (:class:`EnsembleLayerNorm`) in every hidden layer.
* :class:`RewardGenerator` -- RENPNN, Mode I: the (normalized) reward ``[B, 1]`` generated from
  noise conditioned on ``(s, a)``; trained by noise matching on the real reward.
* :class:`RewardMLP` -- "Designed R. + MLP": an MLP regressor of the (normalized) reward.
* :class:`StateExplorer` -- SENPNN, Mode II: unconditional noise predictor on normalized
  states; a synthetic state = forward-noise a real one then denoise.
* :class:`RunningNorm` -- running mean / std (float64), standardizes rewards and states.
* :func:`next_chi` / :class:`SubstituteProbability` -- chi of Algorithm 1.

Every network lists its linear layers with :meth:`layers` (``[(name, weight, bias)]``) so the
training loop can report the mean absolute gradient of weights and biases per layer (Fig. 5).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from radiorl.diffusion.schedules import NoiseSchedule
from radiorl.diffusion.vector import (VectorDenoiser, chain_noise, ddpm_renoise, ddpm_reverse,
                                      ddpm_reverse_fused, fused_supported)
from radiorl.diffusion.training import denoising_loss, draw_levels, noisy_inputs
from radiorl.nn.ensemble import EnsembleLinear
from radiorl.nn.mlp import MLP, make_activation


def _mlp_layers(mlp: MLP, prefix: str = "L") -> list:
    lins = [m for m in mlp.net if isinstance(m, nn.Linear)]
    return [(f"{prefix}{i + 1}", m.weight, m.bias) for i, m in enumerate(lins)]


def _denoiser_layers(den: VectorDenoiser) -> list:
    """Main MLP layers ``L1..Ln`` then the time-embedding layers ``T1, T2``."""
    t = [m for m in den.time.modules() if isinstance(m, nn.Linear)]
    return _mlp_layers(den.mlp) + [(f"T{i + 1}", m.weight, m.bias) for i, m in enumerate(t)]


class DiffusionActor(nn.Module):
    """AENPNN: ``a = chain(z ~ N(0, I); s)``, ``P`` ancestral DDPM steps, x0 estimate bounded to
    ``[-1, 1]`` at every step by ``x0_bound`` (``"clip"`` or ``"tanh"``).

    ``forward(obs [B, S], generator=None, noise=None) -> [B, A]``; differentiable w.r.t. the
    parameters (the actor is trained by maximizing ``min(Q1, Q2)`` through the chain, paper
    eq. (21)). ``noise``: the chain's ``P`` Gaussian draws from :meth:`draw_noise` (then the
    call draws nothing: the same numbers as drawing from the same generator state inside).
    ``fused``: with gradients enabled, run the chain as one autograd node with a hand-written
    backward (:func:`~radiorl.diffusion.vector.ddpm_reverse_fused`; ReLU denoisers only, else
    ignored; not under ``torch.compile``): the same action, gradients equal up to float
    rounding, a faster actor step."""

    kind = "gdm"

    def __init__(self, obs_dim: int, action_dim: int, schedule: NoiseSchedule, hidden: int = 256,
                 layers: int = 4, time_dim: int = 16, activation: str = "relu",
                 x0_bound: str = "clip", fused: bool = True):
        super().__init__()
        self.obs_dim, self.action_dim = int(obs_dim), int(action_dim)
        self.schedule = schedule
        self.x0_bound = (x0_bound, 1.0)
        self.denoiser = VectorDenoiser(action_dim, obs_dim, hidden, layers, time_dim, activation)
        # the hand-written backward of the chain (ReLU denoisers; same forward numbers)
        self.fused = bool(fused) and fused_supported(self.denoiser)

    def draw_noise(self, batch: int, generator: torch.Generator | None = None,
                   dtype=torch.float32) -> list[torch.Tensor]:
        """The chain's draws in its order: the start ``x_P`` then the posterior noise of
        levels ``P .. 2`` (``P`` tensors ``[batch, A]``)."""
        shape = (int(batch), self.action_dim)
        z = torch.randn(shape, generator=generator, dtype=dtype)
        return [z] + chain_noise(shape, self.schedule.K, generator, dtype)

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None,
                noise: list | None = None) -> torch.Tensor:
        if noise is None:
            noise = self.draw_noise(obs.shape[0], generator, obs.dtype)
        chain = ddpm_reverse
        if self.fused and torch.is_grad_enabled() and not torch.compiler.is_compiling():
            chain = ddpm_reverse_fused
        a = chain(self.denoiser, self.schedule, noise[0], cond=obs, x0_bound=self.x0_bound,
                  step_noise=noise[1:])
        return a.clamp(-1.0, 1.0)

    def layers(self) -> list:
        return _denoiser_layers(self.denoiser)


class MLPActor(nn.Module):
    """``a = tanh(MLP(s))`` with ``layers`` hidden layers of width ``hidden`` ("A. w/o GDM")."""

    kind = "mlp"

    def __init__(self, obs_dim: int, action_dim: int, hidden: int = 256, layers: int = 4,
                 activation: str = "relu"):
        super().__init__()
        self.obs_dim, self.action_dim = int(obs_dim), int(action_dim)
        self.mlp = MLP(obs_dim, action_dim, (hidden,) * layers, activation)

    def draw_noise(self, batch: int, generator=None, dtype=torch.float32) -> list:
        return []                                          # deterministic

    def forward(self, obs: torch.Tensor, generator: torch.Generator | None = None,
                noise: list | None = None) -> torch.Tensor:
        return torch.tanh(self.mlp(obs))

    def layers(self) -> list:
        return _mlp_layers(self.mlp)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm over the last dimension of ``[n, B, d]`` with a separate gain and shift
    (``[n, 1, d]``, initialized to 1 and 0) for each of the ``n`` ensemble members."""

    def __init__(self, n: int, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = float(eps)
        self.weight = nn.Parameter(torch.ones(n, 1, dim))
        self.bias = nn.Parameter(torch.zeros(n, 1, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.layer_norm(x, x.shape[-1:], eps=self.eps)
        return torch.addcmul(self.bias, x, self.weight)


class DoubleCritic(nn.Module):
    """Two independent Q heads ``Q_i(s, a)`` (``layers`` hidden layers of width ``hidden``)
    evaluated as one ensemble MLP (one batched matrix product per layer).

    ``forward(obs [B, S], action [B, A]) -> [2, B]``."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: int = 256, layers: int = 3,
                 activation: str = "relu", layer_norm: bool = False):
        super().__init__()
        dims = [obs_dim + action_dim] + [hidden] * layers + [1]
        self.linears = nn.ModuleList(EnsembleLinear(2, a, b) for a, b in zip(dims[:-1], dims[1:]))
        for lin in self.linears:       # PyTorch's default bias init (EnsembleLinear zeroes it)
            bound = 1.0 / math.sqrt(lin.in_features)
            nn.init.uniform_(lin.bias, -bound, bound)
        # one LayerNorm per hidden layer (after the Linear, before the activation), each head
        # with its own gain and shift
        self.norms = nn.ModuleList(EnsembleLayerNorm(2, hidden) for _ in range(layers)) \
            if layer_norm else None
        self.act = make_activation(activation)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, action], dim=-1)
        h = x.unsqueeze(0).expand(2, *x.shape)
        last = len(self.linears) - 1
        for i, lin in enumerate(self.linears):
            h = lin(h)
            if i < last:
                if self.norms is not None:
                    h = self.norms[i](h)
                h = self.act(h)
        return h.squeeze(-1)

    def value_of_action(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` (``[2, B]``, the same values up to float rounding) computed head by
        head with the first layer split into its state and action columns
        (``W [s | a] = W_s s + W_a a``), for the actor's loss, which differentiates with respect
        to the action only: the backward then multiplies by the action columns alone and skips
        the concatenation and the broadcast copies of the batched product, and the output layer
        is a matrix-vector product (its backward an outer product instead of a K = 1 matrix
        product). Measured (one core, batch 256, obs 130, action 125, 2 x 256): forward +
        action gradient 2.47 -> 2.09 ms (before the matrix-vector output).
        The critic's own step keeps :meth:`forward` (faster for the weight gradients)."""
        S = obs.shape[-1]
        last = len(self.linears) - 1
        qs = []
        for m in range(2):
            h = obs
            for i, lin in enumerate(self.linears):
                if i == 0:
                    h = torch.addmm(lin.bias[m], obs, lin.weight[m, :S]).addmm_(
                        action, lin.weight[m, S:])
                elif i == last:        # [B, H] x [H]: a product with the output's single column
                    h = torch.addmv(lin.bias[m, 0], h, lin.weight[m, :, 0])
                else:
                    h = torch.addmm(lin.bias[m], h, lin.weight[m])
                if i < last:
                    if self.norms is not None:
                        norm = self.norms[i]
                        h = torch.addcmul(norm.bias[m], nn.functional.layer_norm(
                            h, h.shape[-1:], eps=norm.eps), norm.weight[m])
                    h = self.act(h)
            qs.append(h)
        return torch.stack(qs)

    def layers(self) -> list:
        """Per head: ``q1/L1 .. q1/Ln, q2/L1 ..`` (views of the stacked parameters)."""
        out = []
        for m in range(2):
            for i, lin in enumerate(self.linears):
                out.append((f"q{m + 1}/L{i + 1}", (lin.weight, m), (lin.bias, m)))
        return out


class RewardGenerator(nn.Module):
    """RENPNN: normalized reward ``[B, 1]`` generated by ``P`` reverse steps from ``N(0, 1)``
    conditioned on ``(s, a)``; trained with the noise-matching loss (eq. (8)) on the real
    normalized reward. The caller (de)normalizes."""

    def __init__(self, obs_dim: int, action_dim: int, schedule: NoiseSchedule, hidden: int = 256,
                 layers: int = 5, time_dim: int = 16, activation: str = "relu",
                 clip: float = 5.0):
        super().__init__()
        self.schedule = schedule
        self.clip = float(clip)
        self.denoiser = VectorDenoiser(1, obs_dim + action_dim, hidden, layers, time_dim,
                                       activation)

    def draw(self, batch: int, generator=None, dtype=torch.float32) -> tuple:
        """The loss's random draws ``(k [B], eps [B, 1])`` (:func:`draw_levels`)."""
        return draw_levels(self.schedule, (int(batch), 1), generator=generator, dtype=dtype)

    def loss(self, obs, action, reward_n, generator=None, draws=None) -> torch.Tensor:
        """Noise matching on the normalized reward; ``draws`` from :meth:`draw` (else drawn
        here from ``generator``, the same numbers)."""
        x0 = reward_n.reshape(-1, 1)
        k, eps, xk = noisy_inputs(self.schedule, x0, generator=generator, draws=draws)
        return denoising_loss(self.denoiser(xk, k, torch.cat([obs, action], -1)), x0, eps)

    def forward(self, obs, action, generator=None) -> torch.Tensor:
        """A generated normalized reward ``[B]``."""
        z = torch.randn((obs.shape[0], 1), generator=generator, dtype=obs.dtype)
        r = ddpm_reverse(self.denoiser, self.schedule, z, cond=torch.cat([obs, action], -1),
                         x0_bound=("clip", self.clip), generator=generator)
        return r.squeeze(-1)

    def layers(self) -> list:
        return _denoiser_layers(self.denoiser)


class RewardMLP(nn.Module):
    """"Designed R. + MLP": ``MLP([s, a]) -> [B]``, regressor of the normalized reward (MSE)."""

    def __init__(self, obs_dim: int, action_dim: int, hidden: int = 256, layers: int = 5,
                 activation: str = "relu"):
        super().__init__()
        self.mlp = MLP(obs_dim + action_dim, 1, (hidden,) * layers, activation)

    def draw(self, batch: int, generator=None, dtype=torch.float32) -> tuple:
        return ()                                          # deterministic regression

    def loss(self, obs, action, reward_n, generator=None, draws=None) -> torch.Tensor:
        return (self(obs, action) - reward_n.reshape(-1)).pow(2).mean()

    def forward(self, obs, action, generator=None) -> torch.Tensor:
        return self.mlp(torch.cat([obs, action], -1)).squeeze(-1)

    def layers(self) -> list:
        return _mlp_layers(self.mlp)


class StateExplorer(nn.Module):
    """SENPNN (Mode II) on normalized states ``[B, S]``: ``loss`` = noise matching (eq. (22));
    ``forward(s_n)`` = forward-noise ``s_n`` to level ``noise_steps`` then denoise back to 0."""

    def __init__(self, obs_dim: int, schedule: NoiseSchedule, hidden: int = 256, layers: int = 4,
                 time_dim: int = 16, activation: str = "relu", clip: float = 5.0,
                 noise_steps: int | None = None):
        super().__init__()
        self.schedule = schedule
        self.clip = float(clip)
        self.noise_steps = schedule.K if noise_steps is None else int(noise_steps)
        self.denoiser = VectorDenoiser(obs_dim, 0, hidden, layers, time_dim, activation)

    def draw(self, batch: int, generator=None, dtype=torch.float32) -> tuple:
        """The loss's random draws ``(k [B], eps [B, S])`` (:func:`draw_levels`)."""
        return draw_levels(self.schedule, (int(batch), self.denoiser.x_dim),
                           generator=generator, dtype=dtype)

    def loss(self, obs_n, generator=None, draws=None) -> torch.Tensor:
        """Noise matching on normalized states; ``draws`` from :meth:`draw` (else drawn here)."""
        k, eps, xk = noisy_inputs(self.schedule, obs_n, generator=generator, draws=draws)
        return denoising_loss(self.denoiser(xk, k), obs_n, eps)

    def forward(self, obs_n, generator=None) -> torch.Tensor:
        return ddpm_renoise(self.denoiser, self.schedule, obs_n, self.noise_steps,
                            x0_bound=("clip", self.clip), generator=generator)

    def layers(self) -> list:
        return _denoiser_layers(self.denoiser)


class RunningNorm(nn.Module):
    """Running mean and variance (parallel Welford, float64 buffers) of ``[N, D]`` samples;
    ``normalize(x) = (x - mean) / sqrt(var + eps)`` and its inverse. Before the first
    ``update`` it is the identity."""

    def __init__(self, dim: int, eps: float = 1e-8):
        super().__init__()
        self.eps = float(eps)
        self.register_buffer("mean", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        x = x.detach().to(torch.float64).reshape(-1, self.mean.numel())
        n = x.shape[0]
        if n == 0:
            return
        m_b = x.mean(0)
        v_b = x.var(0, unbiased=False)
        c = self.count
        tot = c + n
        if float(c) == 0.0:
            self.mean.copy_(m_b)
            self.var.copy_(v_b)
        else:
            d = m_b - self.mean
            self.mean.add_(d * n / tot)
            self.var.copy_((self.var * c + v_b * n + d * d * c * n / tot) / tot)
        self.count.fill_(float(tot))

    def _ms(self, like: torch.Tensor):
        return self.mean.to(like.dtype), (self.var + self.eps).sqrt().to(like.dtype)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        m, s = self._ms(x)
        return (x - m) / s

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        m, s = self._ms(x)
        return x * s + m


def next_chi(chi: float, loss: float, rate: float, max_prob: float, threshold: float) -> float:
    """Algorithm 1: ``chi <- min(chi + eta, M)`` if the SENPNN loss is below ``T``, else
    unchanged (a NaN loss never counts as below)."""
    if loss < threshold:
        return min(chi + rate, max_prob)
    return chi


class SubstituteProbability:
    """The substitute probability chi of Algorithm 1: starts at 0, grows by ``rate`` (eta) at
    every SENPNN update whose loss is below ``threshold`` (T), capped at ``max_prob`` (M)."""

    def __init__(self, max_prob: float, rate: float, threshold: float, chi: float = 0.0):
        self.max_prob, self.rate, self.threshold = float(max_prob), float(rate), float(threshold)
        self.chi = float(chi)

    def update(self, loss: float) -> float:
        self.chi = next_chi(self.chi, float(loss), self.rate, self.max_prob, self.threshold)
        return self.chi

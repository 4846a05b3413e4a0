"""Configuration of D2RL (``papers/d2rl.txt`` Table II; ``specs/full-duplex.md`` "D2RL agent").

Every value the paper states is the default; every choice we made where it is silent is a field
too, documented on :class:`D2RLConfig`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from radiorl.agents.config import ConfigIO
from radiorl.diffusion.schedules import SCHEDULES
from radiorl.envs.base import check_number
from radiorl.diffusion.vector import X0_BOUNDS
from radiorl.nn.mlp import ACTIVATIONS

ACTORS = ("mlp", "gdm")
#: reward designs of the paper (Sec. V-A.3), in its order
REWARDS = ("raw", "designed", "designed-mlp", "gdm", "designed-gdm")
#: history columns the convergence criterion may use
MATMUL_PRECISIONS = ("highest", "high", "medium")
CONVERGENCE_METRICS = ("ma_sum_rate", "ma_reward", "sum_rate")

#: fields that only change how long / how verbosely a run goes; a run may be resumed with
#: other values, and a saved agent loads under any value of them
RUN_FIELDS = ("epochs", "eval_every", "eval_batch", "eval_steps", "eval_seed",
              "checkpoint_every", "tb_every", "threads", "ma_window", "convergence_metric",
              "convergence_tol", "compile", "fused_chain")
#: the learning-rate schedule's fields (see ``D2RLConfig.same_schedule_before``)
LR_SCHEDULE_FIELDS = ("lr_decay_epoch", "lr_decay_factor")
#: fields that fix the shapes of the networks (a checkpoint loads only if they match)
ARCH_FIELDS = ("actor", "reward", "state_exploration", "diffusion_steps", "schedule",
               "vp_beta_max", "hidden", "critic_hidden", "actor_layers", "critic_layers",
               "reward_layers",
               "state_layers", "time_dim", "activation", "critic_layer_norm")


def _num(name, v, lo=None, hi=None, lo_open=False, integer=False):
    """``envs.base.check_number`` on a field, named ``D2RLConfig.<name>``; booleans refused."""
    if isinstance(v, bool):
        raise ValueError(f"D2RLConfig.{name} must be a number, got {v!r}")
    check_number(f"D2RLConfig.{name}", v, low=lo, high=hi, low_open=lo_open, integer=integer)


@dataclass(frozen=True)
class D2RLConfig(ConfigIO):
    """D2RL hyper-parameters. **[paper]** = Table II / Sec. IV-C; **[ours]** = our choice.

    Variant
        actor: ``"gdm"`` (AENPNN, diffusion actor, Mode I) or ``"mlp"`` ("A. w/o GDM").
        reward: ``"raw"`` (R = C), ``"designed"`` (R = C - R'), ``"designed-mlp"`` (an MLP
            regressor of the designed reward, its prediction is the reward), ``"gdm"`` (RENPNN
            trained on the designed reward; its generated sample is the reward) or
            ``"designed-gdm"`` (R = (1 - reward_mix) (C - R') + reward_mix * RENPNN sample).
            [paper names; the training of the learned rewards is ours, see the package doc]
        state_exploration: ``None`` or ``(M, eta)``: maximum substitute probability M in
            (0, 1] and its increment eta in (0, 1] (Algorithm 1). [paper]
        state_loss_threshold: T, chi grows only when the SENPNN loss < T. [paper: 5e-4]
        state_noise_steps: forward-noising depth of a synthetic state (None = P). [ours: P,
            the paper's Mode II]

    Networks
        diffusion_steps: P = 6 [paper]. schedule: noise schedule kind, ``"vp"`` with
            ``vp_beta_max = 10`` (beta_min 0.1) [ours, as in the GDM tutorial the paper builds on].
        hidden: 256 [paper]. actor_layers: 4 (AENPNN; the MLP actor too) [paper];
            reward_layers: 5 (RENPNN; the reward MLP too) [paper]; state_layers: 4 (SENPNN)
            [paper]; critic_layers: 2 per Q head [ours, TD3's 2 x 256]. time_dim: 16 [ours].
        critic_hidden: width of the critics' hidden layers; None = ``hidden`` [default]. The
            data-rich protocol of ``radiorl run d2rl-best`` uses 512 [ours: with 1,024 draws
            per epoch the 2 x 512 critic's action gradient is closer to the true one and the
            MLP actor reaches 4.28 instead of 4.09 bit/s/Hz after 2,000 epochs, for 1.35x the
            CPU].
        activation: ``"relu"`` in every network [ours: the paper does not say; the GDM tutorial
            uses Mish, which with this CPU torch build costs more than the 256x256 matrix product
            it follows (0.65 ms forward+backward vs 0.06 for ReLU, 0.29 for GELU); ``"mish"``,
            ``"gelu"``, ``"tanh"`` are available].
        critic_layer_norm: a LayerNorm (own gain and shift per Q head) after every hidden
            Linear of the critics, before the activation [ours; default False = the plain
            TD3 critic]. Changes the networks (an ARCH field).
        gdm_x0_bound: how the AENPNN bounds its x0 estimate to [-1, 1] at every step:
            ``"clip"`` (the tutorial's hard clamp, zero gradient when saturated) or ``"tanh"``.
        reward_clip, state_clip: bound of the x0 estimate of RENPNN / SENPNN in normalized
            units (rewards and states are standardized by running statistics). [ours: 5]
        reward_mix: weight of the generated reward in ``"designed-gdm"``. [ours: 0.5]
        reward_relabel: False: the learned reward is generated once, at collection, and stored
            in the replay buffer (Algorithm 2). True: regenerated with the current reward model
            for every sampled batch (consistent, costs P more forward passes per update).
        matmul_precision: ``torch.set_float32_matmul_precision`` while the agent computes
            (set and restored around every call). ``"highest"``: float32 [default];
            ``"medium"``: float32 matrix products through bfloat16 (AMX/AVX512-BF16 on CPUs that
            have it: a 256x256 product is ~4x faster, a full D2RL update ~1.4x; parameters,
            optimizer states and activations stay float32).
        flush_denormal: ``torch.set_flush_denormal(True)`` (flush-to-zero of subnormal floats)
            while the agent computes, IEEE subnormals again after every call (the process
            default; torch cannot read the setting back, so a process that wants flushing
            everywhere sets it again). [ours: without it a long run slows down several-fold as Adam moments and the
            weights of dead units decay into subnormal numbers: an MLP-DDPG update measured
            12 ms at the start and 76 ms after 20,000 updates, 11.8 ms again with flushing]

        compile: ``torch.compile`` (inductor, static shapes) the four losses of an update
            (critics; actor through the chain and the critics; reward model; state explorer),
            forward and backward [ours; default False]. Every random draw is made outside the
            compiled code in the eager order, so the numbers are those of eager up to float
            rounding (tested); the first update compiles (~10 s at Table II sizes). Measured
            gain is small: full D2RL update 51.1 -> 48.5 ms (clip bound) / 49.5 ms (tanh) in
            float32, none with ``matmul_precision="medium"`` (``benchmarks/bench_d2rl.py``,
            BENCHMARKS.md): the update is dominated by matrix products, which inductor leaves
            to the same BLAS calls.
        fused_chain: the GDM actor's chain, when back-propagated, runs as one autograd node with
            a hand-written backward (``diffusion.vector.ddpm_reverse_fused``: activations written
            in place, weight gradients summed over the P steps inside the matrix products, the
            first layer's full weight gradient in one buffer, ReLU and bound derivatives applied
            in one pass each) [ours; default True; ReLU only, ignored
            otherwise and under ``compile``]. Same actions; gradients equal to autograd's up
            to float rounding (tested), so a run's numbers differ from ``fused_chain=False``
            only by rounding. Measured: actor step 29 -> 25 ms at Table II sizes.

    Optimization
        actor_lr: 5e-5 (AENPNN and the MLP actor) [paper]; reward_lr: 5e-5 (RENPNN, reward MLP)
        [paper]; state_lr: 1e-4 (SENPNN) [paper]; critic_lr: 3e-4 [ours, TD3's value; the
        critics must track a moving actor]. weight_decay: 7e-5 (Adam L2, every network) [paper].
        lr_decay_epoch: ``None`` (constant learning rates) [default] or an epoch count E:
            from epoch E + 1 on, every network's learning rate is multiplied by
            ``lr_decay_factor`` (default 0.25) [ours]. A final phase at a lower rate lets the
            actor settle where the critic's noisy action gradient averages out (measured with
            ``radiorl run d2rl-long --preset quick``, the data-rich MLP variant, seeds 0-1:
            35,000 epochs with constant rates 5.373 bit/s/Hz, with rates x 0.25 after epoch
            30,000 5.417, where the optimizer reaches 6.007). Not a run-length field, but a
            run may be resumed under another schedule while neither schedule has acted yet
            (the epochs already run are then the same).
        tau: 5e-3 [paper]. buffer_size: 1e5 [paper]. batch_size: 256 [paper].
        gamma: 0.0 [ours: the task is a contextual bandit: the action does not change the next
        channel draw, so Q(s, a) = E[R | s, a] and gamma = 0 gives exactly the paper's gamma = 1
        with one-step episodes (each tutorial episode is one step); any value in [0, 1] is
        allowed, gamma > 0 bootstraps from the target networks unless terminated].
        learning_starts: transitions in the buffer before the first update [ours: batch_size].
        epsilon, noise_std: with probability 0.1 add N(0, 0.1^2) to a collected action [paper].

    Loop (``train``)
        epochs, steps_per_epoch (batched env steps per epoch), updates_per_step, n_envs:
        the paper's epoch (Algorithm 2) is one collection step then one update, which is
        ``steps_per_epoch = 1, updates_per_step = 1, n_envs = 1`` (the defaults).
        eval_every / eval_batch / eval_steps / eval_seed: sum rate of the policy without
        exploration noise on a fixed set of ``eval_batch`` channel draws (same seed each time).
        ma_window: window (epochs) of the moving averages. convergence_metric / convergence_tol:
        a run has converged at the first epoch after which ``convergence_metric`` stays within
        ``convergence_tol`` (relative) of its final value (computed after the run).
        checkpoint_every (epochs), tb_every (epochs between TensorBoard scalars; the history has
        every epoch), seed, threads (0 = torch default).
    """

    TUPLES = ("state_exploration",)
    LABEL = "D2RL"

    actor: str = "gdm"
    reward: str = "designed-gdm"
    state_exploration: tuple[float, float] | None = None
    state_loss_threshold: float = 5e-4
    state_noise_steps: int | None = None
    diffusion_steps: int = 6
    schedule: str = "vp"
    vp_beta_max: float = 10.0
    hidden: int = 256
    critic_hidden: int | None = None
    actor_layers: int = 4
    critic_layers: int = 2
    reward_layers: int = 5
    state_layers: int = 4
    time_dim: int = 16
    activation: str = "relu"
    critic_layer_norm: bool = False
    gdm_x0_bound: str = "clip"
    reward_clip: float = 5.0
    state_clip: float = 5.0
    reward_mix: float = 0.5
    reward_relabel: bool = False
    matmul_precision: str = "highest"
    flush_denormal: bool = True
    compile: bool = False
    fused_chain: bool = True
    actor_lr: float = 5e-5
    critic_lr: float = 3e-4
    reward_lr: float = 5e-5
    state_lr: float = 1e-4
    weight_decay: float = 7e-5
    lr_decay_epoch: int | None = None
    lr_decay_factor: float = 0.25
    tau: float = 5e-3
    gamma: float = 0.0
    buffer_size: int = 100_000
    batch_size: int = 256
    learning_starts: int | None = None
    epsilon: float = 0.1
    noise_std: float = 0.1
    epochs: int = 20_000
    steps_per_epoch: int = 1
    updates_per_step: int = 1
    n_envs: int = 1
    eval_every: int = 1
    eval_batch: int = 64
    eval_steps: int = 1
    eval_seed: int = 12345
    ma_window: int = 100
    convergence_metric: str = "ma_sum_rate"
    convergence_tol: float = 0.05
    checkpoint_every: int = 1000
    tb_every: int = 10
    seed: int = 0
    threads: int = 0

    def __post_init__(self):
        if self.actor not in ACTORS:
            raise ValueError(f"D2RLConfig.actor must be one of {list(ACTORS)}, got {self.actor!r}")
        if self.reward not in REWARDS:
            raise ValueError(f"D2RLConfig.reward must be one of the five reward designs "
                             f"{list(REWARDS)}, got {self.reward!r}")
        se = self.state_exploration
        if se is not None:
            if isinstance(se, (str, bytes)) or not hasattr(se, "__len__") or len(se) != 2:
                raise ValueError("D2RLConfig.state_exploration must be None or a pair (M, eta) "
                                 f"with M in (0, 1] and eta in (0, 1], got {se!r}")
            _num("state_exploration[0] (M)", se[0], 0, 1, lo_open=True)
            _num("state_exploration[1] (eta)", se[1], 0, 1, lo_open=True)
            object.__setattr__(self, "state_exploration", (float(se[0]), float(se[1])))
        if self.schedule not in SCHEDULES:
            raise ValueError(f"D2RLConfig.schedule must be one of {list(SCHEDULES)}, "
                             f"got {self.schedule!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"D2RLConfig.activation must be one of {sorted(ACTIVATIONS)}, "
                             f"got {self.activation!r}")
        if self.gdm_x0_bound not in X0_BOUNDS:
            raise ValueError(f"D2RLConfig.gdm_x0_bound must be one of {list(X0_BOUNDS)}, "
                             f"got {self.gdm_x0_bound!r}")
        if self.convergence_metric not in CONVERGENCE_METRICS:
            raise ValueError(f"D2RLConfig.convergence_metric must be one of "
                             f"{list(CONVERGENCE_METRICS)}, got {self.convergence_metric!r}")
        if self.matmul_precision not in MATMUL_PRECISIONS:
            raise ValueError(f"D2RLConfig.matmul_precision must be one of "
                             f"{list(MATMUL_PRECISIONS)}, got {self.matmul_precision!r}")
        for name in ("flush_denormal", "compile", "fused_chain", "critic_layer_norm",
                     "reward_relabel"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"D2RLConfig.{name} must be True or False, "
                                 f"got {getattr(self, name)!r}")
        _num("state_loss_threshold", self.state_loss_threshold, 0, lo_open=True)
        _num("diffusion_steps", self.diffusion_steps, 1, 1000, integer=True)
        if self.state_noise_steps is not None:
            _num("state_noise_steps", self.state_noise_steps, 1, self.diffusion_steps,
                 integer=True)
        _num("vp_beta_max", self.vp_beta_max, 0.1, 1000)
        _num("hidden", self.hidden, 1, 8192, integer=True)
        if self.critic_hidden is not None:
            _num("critic_hidden", self.critic_hidden, 1, 8192, integer=True)
        for name in ("actor_layers", "critic_layers", "reward_layers", "state_layers"):
            _num(name, getattr(self, name), 1, 64, integer=True)
        _num("time_dim", self.time_dim, 2, 1024, integer=True)
        _num("reward_clip", self.reward_clip, 0, lo_open=True)
        _num("state_clip", self.state_clip, 0, lo_open=True)
        _num("reward_mix", self.reward_mix, 0, 1)
        for name in ("actor_lr", "critic_lr", "reward_lr", "state_lr"):
            _num(name, getattr(self, name), 0, 1, lo_open=True)
        _num("weight_decay", self.weight_decay, 0, 1)
        if self.lr_decay_epoch is not None:
            _num("lr_decay_epoch", self.lr_decay_epoch, 0, integer=True)
        _num("lr_decay_factor", self.lr_decay_factor, 0, 1, lo_open=True)
        _num("tau", self.tau, 0, 1, lo_open=True)
        _num("gamma", self.gamma, 0, 1)
        _num("buffer_size", self.buffer_size, 1, integer=True)
        _num("batch_size", self.batch_size, 1, self.buffer_size, integer=True)
        if self.learning_starts is not None:
            _num("learning_starts", self.learning_starts, 1, self.buffer_size, integer=True)
        _num("epsilon", self.epsilon, 0, 1)
        _num("noise_std", self.noise_std, 0, 10)
        _num("epochs", self.epochs, 1, integer=True)
        _num("steps_per_epoch", self.steps_per_epoch, 1, integer=True)
        _num("updates_per_step", self.updates_per_step, 0, 1000, integer=True)
        _num("n_envs", self.n_envs, 1, 1_000_000, integer=True)
        _num("eval_every", self.eval_every, 1, integer=True)
        _num("eval_batch", self.eval_batch, 1, 1_000_000, integer=True)
        _num("eval_steps", self.eval_steps, 1, integer=True)
        _num("eval_seed", self.eval_seed, 0, integer=True)
        _num("ma_window", self.ma_window, 1, integer=True)
        _num("convergence_tol", self.convergence_tol, 0, 1, lo_open=True)
        _num("checkpoint_every", self.checkpoint_every, 1, integer=True)
        _num("tb_every", self.tb_every, 1, integer=True)
        _num("seed", self.seed, 0, integer=True)
        _num("threads", self.threads, 0, 1024, integer=True)

    # ------------------------------------------------------------------ helpers
    @property
    def start_updates(self) -> int:
        """Transitions needed in the buffer before the first update."""
        return self.batch_size if self.learning_starts is None else int(self.learning_starts)

    @property
    def learned_reward(self) -> bool:
        return self.reward in ("designed-mlp", "gdm", "designed-gdm")

    def lr_scale(self, epoch: int) -> float:
        """The learning-rate multiplier of (0-based) ``epoch``: ``lr_decay_factor`` from
        ``lr_decay_epoch`` on, else 1."""
        if self.lr_decay_epoch is not None and int(epoch) >= self.lr_decay_epoch:
            return float(self.lr_decay_factor)
        return 1.0

    def same_schedule_before(self, other: "D2RLConfig", epoch: int) -> bool:
        """Whether the two learning-rate schedules agree on every epoch before ``epoch``
        (schedule fields aside, a run resumed at ``epoch`` under ``other`` is then the same)."""
        firsts = [c.lr_decay_epoch if c.lr_decay_epoch is not None else math.inf
                  for c in (self, other)]
        if min(firsts) >= epoch:
            return True
        return firsts[0] == firsts[1] and self.lr_decay_factor == other.lr_decay_factor

    def differences(self, other: "D2RLConfig", ignore=()) -> list[str]:
        """``["field: self_value != other_value", ...]`` over the fields not in ``ignore``."""
        a, b = self.to_dict(), other.to_dict()
        return [f"{k}: {a[k]!r} != {b[k]!r}" for k in a if k not in ignore and a[k] != b[k]]

"""D2RL: DDPG with a double critic whose actor, reward and state are explored by diffusion models
(``papers/d2rl.txt`` Sec. IV-C, Algorithms 1-2, Table II; ``specs/full-duplex.md``).

Public API
----------
* :class:`D2RLConfig` -- frozen hyper-parameter dataclass (validated; ``to_dict``/``from_dict``).
* :class:`D2RLAgent` -- ``act(obs, explore=False, generator=None)``, ``explore(obs)``,
  ``update(batch) -> dict``, ``state_dict``/``load_state_dict``, ``save(path)``,
  ``D2RLAgent.load(path, config=None)``.
* :func:`train` ``(config, env, run_dir, resume=False, progress=True) -> history``;
  :func:`evaluate`, :func:`convergence`, :func:`summarize`.
* :class:`ReplayBuffer`, :func:`next_chi` / :class:`SubstituteProbability` (Algorithm 1).

Choices where the paper and the spec are silent (each is a config value)
------------------------------------------------------------------------
* **gamma = 0.** The full-duplex task is a contextual bandit: the action does not influence the
  next channel draw, so ``Q(s, a) = E[R | s, a]``. The paper's gamma = 1 works in the GDM tutorial
  only because every episode is one step long; gamma = 0 is the same target for any episode
  length. Target networks are still kept and soft-updated (they are used when gamma > 0).
* **Learned rewards.** Both reward models standardize their target (the designed reward
  C - R') with running statistics and map their output back, so a learned reward is on the
  real reward's scale. RENPNN (``"gdm"``, ``"designed-gdm"``) is a conditional noise predictor
  on ``(s, a)`` trained with the DDPM noise-matching loss on the real designed reward (a
  generative model of ``p(R | s, a)``); a reward is one P-step reverse chain from ``N(0, 1)``.
  ``"designed-mlp"`` is an MLP regressor (MSE) of the same target. ``"gdm"`` gives the critic
  the generated reward alone; ``"designed-gdm"`` the mix ``(1 - w) (C - R') + w * generated``
  (``reward_mix = w = 0.5``). By default the learned reward is generated at collection time and
  stored in the replay buffer, as in Algorithm 2 (``reward_relabel=True`` regenerates it for
  every sampled batch with the current model). The history logs the gap between the learned and
  the real reward (``reward_gap``, ``reward_abs_gap``).
* **State exploration.** A synthetic state replaces the observed one **only as the actor's
  input at collection time** (Algorithm 1: with probability chi the action is computed from the
  SENPNN's state). The action is executed in the real environment, so the transition stored in
  the replay buffer is ``(observed state, executed action, real reward)``: the reward is always
  the environment's reward for the state it was obtained in, and the critic never sees a state
  with a reward that does not belong to it. The SENPNN is trained on the batch's (real,
  standardized) states at every update; chi is updated after every SENPNN update
  (``chi <- min(chi + eta, M)`` when its noise-matching loss is below T); a synthetic state is a
  real state forward-noised to level ``state_noise_steps`` (default P) and denoised back.
  T = 5e-4 (Table II, the default) is on a loss scale the paper does not give: on the
  full-duplex states, standardized, the SENPNN's loss starts near 1 and is 0.5 after about
  2,000 updates and 0.41 after 4,000 (measured), so with 5e-4 chi never grows; the experiments'
  protocol uses T = 0.5 (``radiorl.experiments.d2rl.PROTOCOL``).
* **Action chain.** Ancestral DDPM with the ``vp`` schedule (beta 0.1..10 over P = 6), the x0
  estimate clamped to [-1, 1] at every step (``gdm_x0_bound="clip"``, the tutorial's choice;
  ``"tanh"`` is the smooth alternative); the saturated fraction (|a| > 0.99) is logged. The
  chain noise is part of the policy (also in evaluation, from a seeded generator); exploration
  noise (epsilon-greedy) is added only when collecting.
* **Optimizers.** Adam with L2 weight decay 7e-5 for every network; critic lr 3e-4; the MLP
  actor uses the AENPNN's lr 5e-5.
* **Subnormal floats** are flushed to zero (``flush_denormal``): long runs otherwise slow down
  several-fold as Adam moments and dead units decay into subnormals.
* **Activation** ReLU everywhere (Mish, the tutorial's, is slower than the matrix products on
  CPU); **critics** 2 hidden layers x 256 per head (TD3).
"""
from radiorl.agents.d2rl.agent import D2RLAgent, make_schedule
from radiorl.agents.d2rl.buffer import ReplayBuffer
from radiorl.agents.d2rl.config import (ACTORS, ARCH_FIELDS, REWARDS, RUN_FIELDS,
                                        D2RLConfig)
from radiorl.agents.d2rl.networks import (DiffusionActor, DoubleCritic, MLPActor,
                                          RewardGenerator, RewardMLP, RunningNorm,
                                          StateExplorer, SubstituteProbability, next_chi)
from radiorl.agents.d2rl.train import convergence, evaluate, summarize, train

__all__ = ["D2RLConfig", "D2RLAgent", "ReplayBuffer", "train", "evaluate", "convergence",
           "summarize", "ACTORS", "REWARDS", "RUN_FIELDS", "ARCH_FIELDS", "make_schedule",
           "DiffusionActor", "MLPActor", "DoubleCritic", "RewardGenerator", "RewardMLP",
           "StateExplorer", "RunningNorm", "SubstituteProbability", "next_chi"]

"""Receding-horizon execution of MA-CDMP (Zhang et al., Algorithm 2) as a Policy.

Every frame, every agent ``i``:

1. reads its own observation ``o_t`` and receives its 1-hop neighbours' current observations,
   whose mean is ``ō_t`` (eq. 11; the env's ``mf_obs``, handed over only through the
   ``mean_field_obs`` item of the information contract — the planner never sees other
   agents' observations, positions or queues);
2. samples a plan ``[x, x̄]`` of ``H`` frames from the noise model, with the first position
   clamped to the normalized ``[o_t, ō_t]`` at **every** denoising step (inpainting) and, with
   guidance scale ``ζ > 0``, each step's mean shifted by ``ζ Σ_k ∇J`` (eq. 20; DDIM/DPM-Solver:
   the equivalent noise correction);
3. requests ``a_t = f_φ(o_t, ô_{t+1})`` RBs, ``ô_{t+1}`` being the plan's second observation
   (eq. 18), and discards the rest of the plan (re-planning every frame).

All agents of all copies are planned in one batched call (parameter sharing); each agent's
plan depends only on its own ``(o_t, ō_t)`` and its own rows of the noise draws, so batching is
only a speed device: an agent's request is unchanged when any non-neighbour changes.

Planner settings (:class:`PlannerSettings`; defaults from the model's config):
``sampler`` ``ddpm|ddim|dpm1|dpm2`` and ``steps``; ``guidance`` ζ and ``guide_stop`` (no
guidance at ``k <= guide_stop``); ``guide_last`` (guide only the steps with
``k <= guide_last``: cheap guidance for the real-time mode); ``clip_x0``; ``candidates``
(plans sampled per agent, the one with the highest ``J`` executed, as Diffuser does;
1 = the paper's single plan); ``warm_start`` ``k0`` (the previous plan, shifted one frame, is
re-noised to step ``k0`` and denoised from there instead of from pure noise; the first frame
starts cold); ``temperature`` (scales the initial and every intermediate noise draw; 1 =
the model's distribution, < 1 plans closer to its mode, as Decision Diffuser's 0.5); ``jit`` (trace the denoiser and the return model with TorchScript for a faster small-batch
forward); ``compile`` (``torch.compile`` the denoiser and the guidance gradient instead, with
inductor's C++ wrapper so the compiled calls hold the GIL briefly and combine with
``parallel_guidance``: the first plan per batch size compiles, about 47 s with an empty
compile cache and 6 s with a warm one, then the faithful planner is about 1.8x faster than
with ``jit``; for long episodes); ``parallel_guidance`` (compute the guidance gradient ``∇J(x_k)`` in a second thread
while the denoiser runs on the same ``x_k``: identical plans, about 1.6x faster guided steps
on 2 cores).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from radiorl.agents.macdmp.model import CHECKPOINTS, OBS_DIM, MACDMPModel
from radiorl.agents.offline.common import (DiffusionPlanner, PlannerPolicy, TracedCache,
                                           check_planner_settings, plan_inputs, settings_from)
from radiorl.diffusion import compiled_value_guide, sample, value_guide
from radiorl.envs.base import check_number


@dataclass
class PlannerSettings:
    """How plans are sampled at execution time (see the module docstring)."""

    sampler: str = "ddpm"
    steps: int | None = None
    guidance: float = 0.1
    guide_stop: int = 2
    guide_last: int | None = None
    clip_x0: float | None = 1.0
    candidates: int = 1
    warm_start: int | None = None
    temperature: float = 1.0
    jit: bool = True
    compile: bool = False
    parallel_guidance: bool = False

    @classmethod
    def from_model(cls, model: MACDMPModel, **overrides) -> "PlannerSettings":
        """The model's stored planner with ``overrides`` (another sampler without a step count:
        DDPM runs all K steps; the others keep the model's step count if it had one, else
        visit every level)."""
        c = model.cfg
        base = dict(sampler=c.sampler, steps=c.sample_steps, guidance=c.guidance,
                    guide_stop=c.guide_stop, clip_x0=c.clip_x0, candidates=c.candidates,
                    guide_last=c.guide_last, warm_start=c.warm_start)
        return settings_from(cls, c, base, overrides, c.diffusion_steps,
                             optional=("steps", "guide_last", "warm_start", "clip_x0"))

    def validate(self, K: int) -> "PlannerSettings":
        check_planner_settings(self, K)
        check_number("guide_stop", self.guide_stop, low=0, high=K, integer=True)
        check_number("guide_last", self.guide_last, low=1, high=K, integer=True, allow_none=True)
        check_number("candidates", self.candidates, low=1, high=1024, integer=True)
        check_number("temperature", self.temperature, low=0, high=10)
        check_number("warm_start", self.warm_start, low=1, high=K, integer=True,
                     allow_none=True)
        if self.warm_start is not None and self.sampler == "ddpm" and self.steps not in (None, K):
            raise ValueError("warm_start with the ddpm sampler runs every step below k0; leave "
                             "sample_steps unset")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be true or false, got {self.compile!r}")
        if not isinstance(self.parallel_guidance, bool):
            raise ValueError(f"parallel_guidance must be true or false, got "
                             f"{self.parallel_guidance!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


class Planner(DiffusionPlanner):
    """Batched MA-CDMP planning for ``M`` agents (see the module docstring)."""

    settings_class = PlannerSettings

    def __init__(self, model: MACDMPModel, settings: PlannerSettings | None = None):
        super().__init__(model, settings)
        self._eps = None
        self._value = None
        self._pool = None

    def _eps_model(self):
        """The denoiser: compiled (``compile``), traced per input shape (``jit``) or eager."""
        if self._eps is None:
            if self.settings.compile:
                self._eps = torch.compile(self.model.eps_model, dynamic=False,
                                          options={"cpp_wrapper": True})
            else:
                self._eps = TracedCache(self.model.eps_model, self.settings.jit, freeze=True)
        return self._eps

    def _value_model(self):
        """The return model ``J``, traced per input shape (``jit``, not frozen: guidance needs
        its input gradient) or eager."""
        if self._value is None:
            self._value = TracedCache(self.model.value_model, self.settings.jit, freeze=False)
        return self._value

    def _parallel(self, eps, guide):
        """``(model, guide)`` that compute ``∇J(x_k)`` in a second thread while the denoiser
        runs on the same ``x_k`` (both read only ``x_k``; the result is identical)."""
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor
            self._pool = ThreadPoolExecutor(1)
        pending: dict = {}
        stop, pool = int(self.settings.guide_stop), self._pool

        def model(x, k):
            if int(k.reshape(-1)[0]) > stop:
                pending["f"] = (x, pool.submit(guide, x, k))
            return eps(x, k)

        def guided(x, k):
            job = pending.pop("f", None)
            if job is not None and job[0] is x:
                return job[1].result()
            return guide(x, k)
        return model, guided

    def _guide(self):
        s = self.settings
        if s.guidance <= 0:
            return None
        base = compiled_value_guide(self.model.value_model) if s.compile else \
            value_guide(self._value_model())
        if s.guide_last is None:
            return base
        last = int(s.guide_last)

        def guide(x, k):
            if int(k.reshape(-1)[0]) > last:
                return torch.zeros_like(x)
            return base(x, k)
        return guide

    def normalized_condition(self, obs: np.ndarray, mf_obs: np.ndarray | None) -> torch.Tensor:
        """Raw ``obs`` (and ``mf_obs``) ``[M, 4]`` → the clamped first position ``[M, C]``."""
        o = self.normalized_obs(obs)
        if not self.cfg.mean_field:
            return o
        if mf_obs is None:
            raise ValueError("this planner uses the mean field: mf_obs is required")
        return torch.cat([o, self.normalized_obs(mf_obs)], dim=-1)

    @torch.no_grad()
    def plan(self, obs: np.ndarray, mf_obs: np.ndarray | None, generator: torch.Generator,
             previous: torch.Tensor | None = None) -> tuple[np.ndarray, torch.Tensor]:
        """Plan for ``M`` agents: raw ``obs``/``mf_obs`` ``[M, 4]``; ``previous`` plans
        ``[M, H, C]`` (normalized) for the warm start. Returns ``(requests int64 [M], plans
        [M, H, C])``."""
        s, cfg = self.settings, self.cfg
        first = self.normalized_condition(obs, mf_obs)                       # [M, C]
        M, C, H = first.shape[0], cfg.channels, cfg.horizon
        n = s.candidates
        if n > 1:
            first = first.repeat_interleave(n, dim=0)
        B = first.shape[0]
        inpaint, _ = plan_inputs(first, H, C)
        x_start = start_k = None
        if s.warm_start is not None and previous is not None and previous.shape[0] * n == B:
            prev = previous.repeat_interleave(n, dim=0) if n > 1 else previous
            x_start = torch.cat([prev[:, 1:], prev[:, -1:]], dim=1)
            start_k = int(s.warm_start)
        eps = self._eps_model()
        guide = self._guide()
        if guide is not None and s.parallel_guidance:
            eps, guide = self._parallel(eps, guide)
        steps = s.steps if s.sampler != "ddpm" else None
        if start_k is not None and s.sampler != "ddpm" and steps is not None:
            steps = max(1, min(steps, start_k))
        x0 = sample(eps, self.model.schedule, shape=(B, H, C), method=s.sampler, steps=steps,
                    prediction=cfg.prediction, inpaint=inpaint, guide=guide,
                    guidance_scale=float(s.guidance), guide_stop=int(s.guide_stop),
                    clip_x0=s.clip_x0, x_start=x_start, start_k=start_k,
                    temperature=float(s.temperature), generator=generator)
        if n > 1:
            with torch.enable_grad():
                score = self.model.value(x0, torch.zeros(B, dtype=torch.int64)).detach()
            best = score.view(M, n).argmax(dim=1)
            x0 = x0.view(M, n, H, C)[torch.arange(M), best]
        a = self.model.inverse_actions(x0[:, 0, :OBS_DIM], x0[:, 1, :OBS_DIM])
        return a.numpy().astype(np.int64), x0


class MACDMPPolicy(PlannerPolicy):
    """A trained MA-CDMP planner as a :class:`~radiorl.envs.base.Policy` for the ad hoc
    network (policy name ``macdmp:<checkpoint.pt>``; see the module docstring). The checks of
    the network and the per-episode noise generator are the shared
    :class:`~radiorl.agents.offline.common.PlannerPolicy` plumbing.

    ``requires``: ``local_obs`` and ``mean_field_obs`` (without mean field: ``local_obs``).
    """

    name = "macdmp"
    requires = frozenset({"local_obs", "mean_field_obs"})
    settings_class = PlannerSettings
    checkpoints = CHECKPOINTS

    def __init__(self, model: MACDMPModel, settings: PlannerSettings | None = None):
        super().__init__()
        self.planner = Planner(model, settings)
        self.model = model
        self.requires = frozenset({"local_obs", "mean_field_obs"} if model.cfg.mean_field
                                  else {"local_obs"})

    def _act(self, obs, info, ps):
        o = np.asarray(info["obs"], np.float32)
        B, N, _ = o.shape
        mf = np.asarray(info["mf_obs"], np.float32).reshape(B * N, OBS_DIM) \
            if self.model.cfg.mean_field else None
        with torch.inference_mode(False):
            req, plans = self.planner.plan(o.reshape(B * N, OBS_DIM), mf, self.generator,
                                           ps.get("plans") if ps else None)
        return req.reshape(B, N), {"plans": plans}

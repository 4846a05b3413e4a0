"""Helpers shared by the tests of the offline diffusion planners (MA-CDMP, MA-Diffuser, MA-DD,
MADiff): their tiny test configs, quiet training, the cache of tiny trained runs behind the
``tiny_runs`` fixture (``tests/agents/conftest.py``), env and episode helpers, and
:data:`METHODS`, the table the shared contract tests of ``tests/agents/offline/test_common.py``
run over."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from radiorl.agents import macdmp
from radiorl.agents.macdmp.model import preset_config as macdmp_preset_config
from radiorl.agents.macdmp.train import open_training_data as macdmp_open_training_data
from radiorl.agents.offline import decision_diffuser, diffuser, madiff
from radiorl.envs.scenarios import get_scenario

#: Training without a progress bar or log lines.
QUIET = dict(show_progress=False, log=lambda *a: None)

#: A few seconds of training on the tiny dataset: H = 4, a 2-level U-Net of width 8, K = 20,
#: 2 epochs x 3 steps, a 3-step DPM-Solver default planner.
TINY = dict(horizon=4, dim=8, dim_mults=(1, 2), batch_size=32, epochs=2, steps_per_epoch=3,
            valid_batches=1, sampler="dpm1", sample_steps=3, diffusion_steps=20)


@dataclass(frozen=True)
class Method:
    """One planner as the shared tests see it."""

    name: str                              # the checkpoint's ``algo``
    label: str                             # the name in messages
    config: type
    policy: type
    train: Callable
    load_model: Callable
    preset_config: Callable
    tiny: dict
    #: history columns every epoch of the tiny run has
    history_keys: tuple
    #: ``(config overrides, field named in the error)`` that ``--resume`` refuses
    resume_changes: tuple
    #: a planner setting the method does not know, and the start of the error
    unknown_setting: dict
    unknown_message: str
    #: the ``algo`` of another learner's checkpoint
    other_algo: str
    #: the method's public ``open_training_data(path, cfg)``, if it has one
    open_training_data: Callable | None = None
    n_loss_weights: int = 2
    #: planner settings of the round-trip episodes
    episode_settings: tuple = ()


METHODS = {
    "macdmp": Method(
        "macdmp", "MA-CDMP", macdmp.MACDMPConfig, macdmp.MACDMPPolicy, macdmp.train,
        macdmp.load_model, macdmp_preset_config,
        tiny={**TINY, "mlp_hidden": 32, "mlp_layers": 2, "inverse_hidden": (32, 32)},
        history_keys=("train_inverse", "train_diffusion", "train_value", "valid_diffusion"),
        resume_changes=(({"horizon": 6}, "horizon"), ({"mean_field": False}, "mean_field")),
        unknown_setting={"temprature": 0.5}, unknown_message="unknown planner settings",
        other_algo="mappo", open_training_data=macdmp_open_training_data,
        n_loss_weights=3),
    "madiffuser": Method(
        "madiffuser", "MA-Diffuser", diffuser.MADiffuserConfig, diffuser.MADiffuserPolicy,
        diffuser.train, diffuser.load_model, diffuser.preset_config, tiny=dict(TINY),
        history_keys=("train_total", "train_diffusion", "train_first_action", "train_value",
                      "valid_diffusion", "valid_value"),
        resume_changes=(({"horizon": 6}, "horizon"), ({"dim_mults": (1, 2, 2)}, "dim_mults")),
        unknown_setting={"temperature": 3}, unknown_message="unknown planner settings",
        other_algo="macdmp"),
    "madd": Method(
        "madd", "MA-DD", decision_diffuser.MADDConfig, decision_diffuser.MADDPolicy,
        decision_diffuser.train, decision_diffuser.load_model,
        decision_diffuser.preset_config, tiny={**TINY, "inverse_hidden": (32, 32)},
        history_keys=("train_total", "train_inverse", "train_diffusion", "valid_inverse",
                      "valid_diffusion"),
        resume_changes=(({"horizon": 6}, "horizon"), ({"inverse_loss": "ce"}, "inverse_loss")),
        unknown_setting={"candidates": 3}, unknown_message="unknown planner settings",
        other_algo="madiffuser", episode_settings=(("sampler", "ddpm"),)),
    "madiff": Method(
        "madiff", "MADiff", madiff.MADiffConfig, madiff.MADiffPolicy, madiff.train,
        madiff.load_model, madiff.preset_config,
        tiny={**TINY, "inverse_hidden": (32, 32), "max_team": 4},
        history_keys=("train_inverse", "train_diffusion", "train_total", "valid_diffusion"),
        resume_changes=(({"max_team": 3}, "max_team"), ({"team": "network"}, "team")),
        unknown_setting={"warm_start": 3}, unknown_message="unknown MADiff planner settings",
        other_algo="macdmp", open_training_data=madiff.open_training_data,
        episode_settings=(("steps", 2),)),
}


def tiny_config(name: str, **overrides):
    """The validated tiny config of method ``name`` with ``overrides``."""
    m = METHODS[name]
    return m.config(**{**m.tiny, **overrides}).validate()


class TinyRuns:
    """Tiny training runs on the shared dataset, one per method, trained on first use:
    ``runs[name] -> (run folder, train result)``. Tests read them and never write into them."""

    def __init__(self, dataset, tmp_path_factory):
        self.dataset, self._factory, self._runs = dataset, tmp_path_factory, {}

    def __getitem__(self, name: str):
        if name not in self._runs:
            run = self._factory.mktemp(f"run-{name}")
            res = METHODS[name].train(self.dataset, tiny_config(name), run, **QUIET)
            self._runs[name] = (run, res)
        return self._runs[name]


def checkpoint(trained):
    """The final checkpoint of a ``(run folder, result)`` pair."""
    return trained[0] / "checkpoints" / "planner.pt"


def make_env(scenario: str = "adhoc-8-2:6", batch: int = 2, slots: int = 20, **params):
    """A batched ad hoc env at medium load (``params``: e.g. ``max_request``)."""
    return get_scenario(scenario).make_env("medium", batch=batch, episode_slots=slots, **params)


def run_episode(pol, env, frames: int = 4, seed: int = 3, policy_seed: int = 5):
    """``frames`` frames of ``pol`` on ``env`` from ``reset(seed)``: the requests
    ``[frames, B, N]`` and the last policy state."""
    obs, state = env.reset(seed=seed)
    ps = pol.reset(env, env.batch, seed=policy_seed)
    out = []
    for _ in range(frames):
        a, ps = pol.act(obs, env.policy_view(state, pol.requires), ps)
        out.append(a)
        obs, *_, state = env.step(state, a)
    return np.stack(out), ps

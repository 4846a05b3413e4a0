"""The offline learners by name, for the CLI (``radiorl train <algo>``) and the experiments.

Each entry gives the module holding the config class and ``preset_config``, the config class,
the module holding ``train(dataset, cfg, run_dir, resume=..., show_progress=..., log=...)``
(and optionally ``open_training_data(dataset, cfg)``), the label used in tables and figures,
and fixed config overrides (the d3rlpy learners share one config class selected by
``method``). A trained model is the policy ``<algo>:<checkpoint>``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field


@dataclass(frozen=True)
class OfflineLearner:
    config_module: str
    config_class: str
    train_module: str
    label: str
    fixed: dict = field(default_factory=dict)
    extra: str | None = None              # optional dependency group (pip install radiorl[..])

    def config_cls(self):
        return getattr(importlib.import_module(self.config_module), self.config_class)

    def preset_config(self, preset: str = "paper", **overrides):
        """The learner's config of ``preset`` with ``overrides`` (``None`` values ignored)."""
        mod = importlib.import_module(self.config_module)
        return mod.preset_config(preset, **{**overrides, **self.fixed})

    def check_dataset(self, dataset, cfg) -> None:
        """Open and check ``dataset`` for ``cfg`` (layout, horizon) before any work."""
        mod = importlib.import_module(self.train_module)
        check = getattr(mod, "open_training_data", None)
        if check is not None:
            check(dataset, cfg)
        else:
            from radiorl.agents.offline.common import open_training_data
            open_training_data(dataset, cfg, self.label)

    def train(self, dataset, cfg, run_dir, **kw) -> dict:
        return importlib.import_module(self.train_module).train(dataset, cfg, run_dir, **kw)


OFFLINE = {
    "macdmp": OfflineLearner("radiorl.agents.macdmp.model", "MACDMPConfig",
                             "radiorl.agents.macdmp.train", "MA-CDMP"),
    "madiffuser": OfflineLearner("radiorl.agents.offline.diffuser", "MADiffuserConfig",
                                 "radiorl.agents.offline.diffuser", "MA-Diffuser"),
    "madd": OfflineLearner("radiorl.agents.offline.decision_diffuser", "MADDConfig",
                           "radiorl.agents.offline.decision_diffuser", "MA-DD"),
    "madiff": OfflineLearner("radiorl.agents.offline.madiff", "MADiffConfig",
                             "radiorl.agents.offline.madiff", "MADiff"),
    **{m: OfflineLearner("radiorl.agents.offline.d3rlpy_baselines", "D3rlpyConfig",
                         "radiorl.agents.offline.d3rlpy_baselines", label, {"method": m},
                         extra="offline")
       for m, label in (("cql", "MA-CQL"), ("td3bc", "MA-TD3+BC"), ("dt", "MA-DT"))},
}


def get_learner(algo: str) -> OfflineLearner:
    if algo not in OFFLINE:
        raise ValueError(f"unknown offline learner {algo!r}; available: {list(OFFLINE)}")
    return OFFLINE[algo]

"""Fixtures shared by the agent tests: one tiny simulated dataset for the whole session and
the tiny trained offline planners (``tests/agents/planners.py``)."""
from __future__ import annotations

import pytest

from radiorl.data.collect import collect, preset_config as collect_config
from tests.agents.planners import TinyRuns


@pytest.fixture(scope="session")
def dataset(tmp_path_factory):
    """A real (simulated) dataset, collected once: 8 episodes x 120 frames of the quick
    preset's ad hoc scenarios (adhoc-8-2:6 and friends). Tests copy it before changing it."""
    path = tmp_path_factory.mktemp("ds") / "tiny.h5"
    collect(path, collect_config("quick", episodes=8, frames=120), workers=1,
            show_progress=False)
    return path


@pytest.fixture(scope="session")
def tiny_runs(dataset, tmp_path_factory):
    """The tiny training run of each planner, trained on first use (``tiny_runs[name]``)."""
    return TinyRuns(dataset, tmp_path_factory)

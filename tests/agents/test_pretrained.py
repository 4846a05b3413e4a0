"""The shipped pretrained MAPPO policies: present, small, loadable with ``weights_only``, made
for the scenario and load their file names say, and better than simple baselines on a test
episode of an unseen seed (a regression check on what we ship, not a quality claim)."""
import numpy as np
import pytest
import torch

from radiorl import pretrained
from radiorl.agents.mappo import load_checkpoint
from radiorl.envs.scenarios import make_env
from radiorl.evaluation.runner import rollout
from radiorl.experiments.quickstart import preset_config
from radiorl.schedulers.policies import make_policy

torch.set_num_threads(1)

SHIPPED = [("mappo-shared", "conflict-8"), ("mappo-separate", "conflict-8"),
           ("mappo-shared", "cellular-19-random"), ("mappo-shared", "cellular-19-hex")]


@pytest.mark.parametrize("name, scenario", SHIPPED)
def test_shipped_checkpoint_is_small_and_matches_its_name(name, scenario):
    path = pretrained.lookup(name, scenario, "medium")
    assert path is not None, f"{name}_{scenario}_medium.pt is not shipped"
    assert path.stat().st_size < 2_000_000
    blob = load_checkpoint(path)
    assert blob["scenario"] == scenario and blob["load"] == "medium"
    assert blob["config"]["mode"] == name.split("-")[1]
    assert blob["optimizer"] is None


@pytest.mark.parametrize("name, scenario, baseline", [
    ("mappo-shared", "conflict-8", "random"), ("mappo-separate", "conflict-8", "random"),
    ("mappo-shared", "cellular-19-random", "llq"), ("mappo-shared", "cellular-19-hex", "llq")])
def test_shipped_policy_beats_a_simple_baseline(name, scenario, baseline):
    slots = 500
    env = make_env(scenario, "medium", 4, episode_slots=slots)
    m_p, _ = rollout(env, make_policy(name, env), seed=101, slots=slots)
    m_b, _ = rollout(env, make_policy(baseline, env), seed=101, slots=slots)
    d_p = np.mean([r["mean_delay"] for r in m_p.summary(env.slot_ms)])
    d_b = np.mean([r["mean_delay"] for r in m_b.summary(env.slot_ms)])
    assert d_p < 0.8 * d_b, (d_p, d_b)


def test_quickstart_lists_the_pretrained_policies():
    parts = {p["scenario"]: p["policies"] for p in preset_config("quick")["parts"]}
    assert "mappo-shared" in parts["conflict-8"]
    assert "mappo-shared" in parts["cellular-19-random"]

"""Paired evaluation, instability verdict, information contract, reports."""
import numpy as np
import pytest

from radiorl.envs.scenarios import make_env
from radiorl.evaluation.report import summarize, write_evaluation
from radiorl.evaluation.runner import evaluate, rollout
from radiorl.schedulers.policies import POLICIES, make_policy


def test_unstable_verdict_and_stable_verdict():
    rows, delays = evaluate("conflict-8", ["gms", "random"], ["heavy"], [0], 2500,
                            show_progress=False)
    by = {r["policy"]: r for r in rows}
    assert by["gms"]["unstable"] is False
    assert by["random"]["unstable"] is True        # 0.5 pkt/slot x 8 devices > random's service
    s = {x["policy"]: x for x in summarize(rows)}
    assert s["random"]["verdict"].startswith("unstable")


def test_verdict_on_overload_single_queue():
    # a single device never scheduled: queue grows linearly -> unstable
    from radiorl.envs.conflict_graph import ConflictGraphEnv, ConflictGraphParams
    from radiorl.evaluation.metrics import EpisodeMetrics
    env = ConflictGraphEnv(ConflictGraphParams(edges=(), agent_of_device=(0,), n_subbands=1,
                                               load=0.2), 1)
    obs, s = env.reset(0)
    m = EpisodeMetrics(1, 1)
    for _ in range(1000):
        obs, r, te, tr, info, s = env.step(s, np.zeros((1, 1, 1), np.int64))
        m.update(info, info["queues"])
    unstable, slope = m.verdict()
    assert unstable[0] and slope[0] == pytest.approx(0.2, abs=0.05)


def test_paired_evaluation_same_arrivals():
    env = make_env("cellular-19-random", "medium", 1)
    seen = {}
    for name in ("llq", "fair-itlinq"):
        obs, s = env.reset(seed=4)
        pol = make_policy(name, env)
        ps = pol.reset(env, 1, 0)
        arr = []
        for _ in range(40):
            a, ps = pol.act(obs, env.policy_view(s, pol.requires), ps)
            obs, r, te, tr, info, s = env.step(s, a)
            arr.append(info["arrivals"].copy())
        seen[name] = np.array(arr)
    np.testing.assert_array_equal(seen["llq"], seen["fair-itlinq"])


def test_information_contract():
    env = make_env("cellular-19-random", "light", 1)
    obs, s = env.reset(0)
    llq = make_policy("llq", env)
    view = env.policy_view(s, llq.requires)
    assert "csi" not in view
    with pytest.raises(KeyError, match="requires="):
        view["csi"]
    fp = make_policy("fp", env)
    assert {"global_csi", "global_queues"} <= fp.requires
    assert "csi" in env.policy_view(s, fp.requires)
    with pytest.raises(ValueError, match="conflict_graph"):
        make_policy("gms", env)
    with pytest.raises(ValueError, match="valid policies"):
        make_policy("magic", env)
    # declared information of every policy is drawn from the known vocabulary
    from radiorl.envs.base import INFORMATION
    for name, (f, _) in POLICIES.items():
        assert f().requires <= set(INFORMATION)


@pytest.mark.parametrize("name", ["gms", "qcsma"])
def test_collision_free_schedulers_in_env(name):
    env = make_env("conflict-8", "heavy", 4)
    m, _ = rollout(env, make_policy(name, env), seed=1, slots=500)
    assert m.collisions.sum() == 0 and m.transmissions.sum() > 0


@pytest.mark.parametrize("name", ["llq", "fair-itlinq", "fp", "wmmse", "full-power", "random",
                                  "itlinq"])
def test_cellular_policies_run_and_keep_constraints(name):
    env = make_env("cellular-19-hex", "medium", 2)
    obs, s = env.reset(0)
    pol = make_policy(name, env)
    ps = pol.reset(env, 2, 0)
    for _ in range(5):
        a, ps = pol.act(obs, env.policy_view(s, pol.requires), ps)
        dev, pw = env.ap_power(a)      # validates shapes/ranges; one device per AP per subband
        assert np.all(pw <= env.p_max_w * (1 + 1e-9)) and np.all(pw >= 0)
        obs, r, te, tr, info, s = env.step(s, a)


def test_reports_written(tmp_path):
    rows, delays = evaluate("conflict-8", ["gms", "llq"], ["light", "heavy"], [0, 1], 400,
                            show_progress=False)
    summary = write_evaluation(tmp_path, rows, delays, title="t")
    for f in ("results.csv", "summary.csv", "delay_cdf.csv", "report.md",
              "figures/delay_vs_load.png", "figures/delay_cdf_light.png"):
        assert (tmp_path / f).exists(), f
    assert len(summary) == 4 and all(s["runs"] == 2 for s in summary)
    assert (tmp_path / "figures/delay_vs_load.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_bad_input():
    with pytest.raises(ValueError, match="valid scenarios"):
        evaluate("nowhere", ["gms"], ["light"], [0], 10, show_progress=False)
    with pytest.raises(ValueError, match="valid policies"):
        evaluate("conflict-8", ["gms", "nope"], ["light"], [0], 10, show_progress=False)
    with pytest.raises(ValueError, match="load"):
        evaluate("conflict-8", ["gms"], [0.0], [0], 10, show_progress=False)
    with pytest.raises(ValueError, match="slots"):
        evaluate("conflict-8", ["gms"], ["light"], [0], 0, show_progress=False)

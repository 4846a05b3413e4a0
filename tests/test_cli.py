"""The radiorl command as a user calls it."""
import pytest
from typer.testing import CliRunner

from radiorl.cli import app

runner = CliRunner()


def test_scenarios_lists_names():
    r = runner.invoke(app, ["scenarios"])
    assert r.exit_code == 0
    for name in ("conflict-8", "cellular-19-hex", "cellular-19-random", "fair-itlinq", "wmmse"):
        assert name in r.output


def test_simulate_and_bad_names():
    r = runner.invoke(app, ["simulate", "--scenario", "conflict-8", "--policy", "gms",
                            "--load", "light", "--slots", "300", "--seed", "1"])
    assert r.exit_code == 0, r.output
    assert "gms" in r.output
    r = runner.invoke(app, ["simulate", "--scenario", "conflict-9", "--policy", "gms"])
    assert r.exit_code == 2 and "conflict-8" in r.output
    r = runner.invoke(app, ["simulate", "--scenario", "conflict-8", "--policy", "fp"])
    assert r.exit_code == 2 and "cellular" in r.output
    r = runner.invoke(app, ["simulate", "--scenario", "conflict-8", "--policy", "gms",
                            "--load", "-1"])
    assert r.exit_code == 2 and "load" in r.output


def test_evaluate_writes_run_folder(tmp_path):
    r = runner.invoke(app, ["evaluate", "--scenario", "cellular-19-random", "--policies",
                            "llq,fair-itlinq", "--loads", "light,heavy", "--seeds", "0",
                            "--slots", "150", "--workers", "1", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    runs = list((tmp_path / "evaluate").iterdir())
    assert len(runs) == 1
    d = runs[0]
    for f in ("config.yaml", "results.csv", "summary.csv", "report.md",
              "figures/delay_vs_load.png"):
        assert (d / f).exists()
    r = runner.invoke(app, ["evaluate", "--scenario", "cellular-19-random", "--policies", "llq",
                            "--seeds", "x"])
    assert r.exit_code == 2 and "seeds" in r.output


def test_run_unknown_experiment():
    r = runner.invoke(app, ["run", "nonexistent"])
    assert r.exit_code == 2 and "quickstart" in r.output


@pytest.mark.parametrize("args, field", [(["--backend", "slurm"], "backend"),
                                         (["--address", "auto"], "address"),
                                         (["--workers", "0"], "workers")])
def test_run_bad_executor_options_fail_before_any_work(tmp_path, args, field):
    r = runner.invoke(app, ["run", "quickstart", "--out", str(tmp_path), *args])
    assert r.exit_code == 2 and field in r.output
    assert not (tmp_path / "quickstart").exists()


def test_evaluate_reference_compat(tmp_path):
    r = runner.invoke(app, ["evaluate", "--scenario", "cellular-19-hex", "--policies", "llq",
                            "--loads", "light", "--slots", "50", "--workers", "1",
                            "--reference-compat", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    cfg = next((tmp_path / "evaluate").iterdir()) / "config.yaml"
    assert "reference_compat: true" in cfg.read_text()


def test_adhoc_evaluate_reports_the_macdmp_metrics(tmp_path):
    import csv
    r = runner.invoke(app, ["evaluate", "--scenario", "adhoc-9-4:5-limited", "--policies",
                            "equal,load-aware", "--loads", "light,medium", "--seeds", "0,1",
                            "--slots", "200", "--workers", "1", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    d = next((tmp_path / "evaluate").iterdir())
    rows = list(csv.DictReader(open(d / "summary.csv")))
    assert len(rows) == 4
    for row in rows:
        assert float(row["mean_reward"]) < 0 and float(row["throughput_mbps"]) > 0
        assert 0 <= float(row["packet_loss_rate"]) <= 1 and row["delay_unit"] == "ms"
        assert int(row["runs"]) == 2
    assert (d / "figures" / "qos_vs_load.png").exists()
    assert "packet loss" in (d / "report.md").read_text()


def test_adhoc_scenarios_listed_and_simulated():
    r = runner.invoke(app, ["scenarios"])
    for name in ("adhoc-8-2:6", "adhoc-9-4:5-limited", "adhoc-N", "load-aware", "mixture"):
        assert name in r.output
    r = runner.invoke(app, ["simulate", "--scenario", "adhoc-300", "--policy", "equal",
                            "--slots", "20"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["simulate", "--scenario", "adhoc-9-4:5", "--policy", "gms"])
    assert r.exit_code == 2 and "conflict_graph" in r.output


def test_train_macdmp_then_evaluate_the_planner(tmp_path):
    """`radiorl collect` → `radiorl train macdmp` → `radiorl evaluate` with planner options,
    then `--resume` of the finished run and the bad-input errors, all as a user types them."""
    ds = tmp_path / "d.h5"
    r = runner.invoke(app, ["collect", "--episodes", "8", "--frames", "40", "--workers", "1",
                            "--out", str(ds)])
    assert r.exit_code == 0, r.output
    tiny = ["--set", "dim=8", "--set", "dim_mults=[1,2]", "--set", "batch_size=16",
            "--set", "steps_per_epoch=3", "--set", "inverse_hidden=[16]",
            "--set", "valid_batches=1"]
    r = runner.invoke(app, ["train", "macdmp", "--dataset", str(ds), "--horizon", "4",
                            "--steps", "20", "--guidance", "0.05", "--epochs", "1",
                            "--out", str(tmp_path / "runs"), *tiny])
    assert r.exit_code == 0, r.output
    run = next((tmp_path / "runs" / "train-macdmp").iterdir())
    ck = run / "checkpoints" / "planner.pt"
    assert ck.is_file() and (run / "training.csv").is_file() and (run / "tb").is_dir()
    r = runner.invoke(app, ["evaluate", "--scenario", "adhoc-9-4:5-limited", "--policies",
                            f"load-aware,macdmp:{ck}", "--loads", "medium", "--seeds", "0",
                            "--slots", "15", "--workers", "1", "--sampler", "dpm2",
                            "--sample-steps", "3", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    ev = next((tmp_path / "evaluate").iterdir())
    import yaml
    pols = yaml.safe_load((ev / "config.yaml").read_text())["policies"]
    assert pols[1] == f"macdmp:{ck}?sampler=dpm2&sample_steps=3"
    # resume a finished run for one more epoch
    r = runner.invoke(app, ["train", "macdmp", "--dataset", str(ds), "--horizon", "4",
                            "--steps", "20", "--epochs", "2", "--resume", str(run), *tiny])
    assert r.exit_code == 0, r.output
    assert "resumed" in r.output
    # bad input: clear errors before any work
    cases = [
        (["train", "macdmp", "--dataset", str(ds), "--horizon", "41"], "longer than the"),
        (["train", "macdmp", "--dataset", str(ds), "--steps", "0"], "diffusion_steps"),
        (["train", "macdmp", "--dataset", str(tmp_path / "none.h5")], "does not exist"),
        (["train", "macdmp"], "needs --dataset"),
        (["train", "macdmp", "--dataset", str(ds), "--set", "sampler=euler"], "sampler"),
        (["train", "macdmp", "--dataset", str(ds), "--horizon", "6", "--resume", str(run)],
         "horizon"),
        (["train", "sac", "--dataset", str(ds)], "unknown algorithm"),
        (["evaluate", "--scenario", "adhoc-8-2:6", "--policies", f"macdmp:{ck}",
          "--sampler", "heun"], "sampler must be one of"),
        (["evaluate", "--scenario", "adhoc-8-2:6", "--policies", f"macdmp:{ck}",
          "--sampler", "dpm1", "--sample-steps", "0"], "sample_steps"),
        (["evaluate", "--scenario", "adhoc-8-2:6", "--policies", "equal",
          "--sampler", "dpm1"], "diffusion planners"),
    ]
    for args, msg in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert msg in " ".join(r.output.split()), (args, r.output)


def test_train_and_evaluate_the_offline_diffusion_baselines(tmp_path):
    """`radiorl train madiffuser|madd|madiff` on a collected dataset, then one paired
    `radiorl evaluate` of the three with shared planner options; the MA-CDMP-only options are
    refused for them with a clear message."""
    ds = tmp_path / "d.h5"
    r = runner.invoke(app, ["collect", "--episodes", "6", "--frames", "40", "--workers", "1",
                            "--out", str(ds)])
    assert r.exit_code == 0, r.output
    tiny = ["--set", "dim=8", "--set", "dim_mults=[1,2]", "--set", "batch_size=16",
            "--set", "steps_per_epoch=2", "--set", "valid_batches=1", "--horizon", "4",
            "--steps", "10", "--epochs", "1", "--out", str(tmp_path / "runs")]
    extra = {"madiffuser": [], "madd": ["--set", "inverse_hidden=[16]"],
             "madiff": ["--set", "inverse_hidden=[16]", "--set", "max_team=3"]}
    cks = {}
    for algo in ("madiffuser", "madd", "madiff"):
        r = runner.invoke(app, ["train", algo, "--dataset", str(ds), *tiny, *extra[algo]])
        assert r.exit_code == 0, (algo, r.output)
        assert f"{algo}:" in r.output
        run = next((tmp_path / "runs" / f"train-{algo}").iterdir())
        cks[algo] = run / "checkpoints" / "planner.pt"
        assert cks[algo].is_file() and (run / "training.csv").is_file()
    pols = ",".join(f"{a}:{c}" for a, c in cks.items())
    r = runner.invoke(app, ["evaluate", "--scenario", "adhoc-8-2:6", "--policies",
                            f"equal,{pols}", "--loads", "medium", "--seeds", "0", "--slots",
                            "8", "--workers", "1", "--sampler", "dpm1", "--sample-steps", "2",
                            "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    import yaml
    ev = next((tmp_path / "evaluate").iterdir())
    got = yaml.safe_load((ev / "config.yaml").read_text())["policies"]
    assert got[1:] == [f"{a}:{c}?sampler=dpm1&sample_steps=2" for a, c in cks.items()]
    import csv
    rows = list(csv.DictReader(open(ev / "results.csv")))
    assert {row["policy"] for row in rows} == set(got)
    cases = [
        (["evaluate", "--scenario", "adhoc-8-2:6", "--policies", f"madd:{cks['madd']}",
          "--warm-start", "5"], "applies to macdmp: policies only"),
        (["train", "madd", "--dataset", str(ds), "--no-mean-field"], "MA-CDMP ablation"),
        (["train", "madiff", "--dataset", str(ds), "--horizon", "41"], "longer than the"),
        (["train", "madiffuser", "--dataset", str(ds), "--set", "guidance=-1"], "guidance"),
    ]
    for args, msg in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert msg in " ".join(r.output.split()), (args, r.output)


def test_train_and_evaluate_the_d3rlpy_baselines(tmp_path):
    """`radiorl train cql|td3bc|dt` (the `offline` extra) and their policies in `radiorl
    evaluate`, with MA-DT's target return as a policy option."""
    pytest.importorskip("d3rlpy")
    ds = tmp_path / "d.h5"
    r = runner.invoke(app, ["collect", "--episodes", "4", "--frames", "40", "--workers", "1",
                            "--out", str(ds)])
    assert r.exit_code == 0, r.output
    cks = {}
    for algo, extra in (("cql", ["--set", "hidden=[16]"]), ("td3bc", ["--set", "hidden=[16]"]),
                        ("dt", ["--set", "dt_context=4", "--set", "dt_layers=1"])):
        r = runner.invoke(app, ["train", algo, "--dataset", str(ds), "--epochs", "1",
                                "--set", "steps_per_epoch=2", "--set", "batch_size=8",
                                "--out", str(tmp_path / "runs"), *extra])
        assert r.exit_code == 0, (algo, r.output)
        run = next((tmp_path / "runs" / f"train-{algo}").iterdir())
        cks[algo] = run / "checkpoints" / "policy.pt"
        assert cks[algo].is_file() and (run / "training.csv").is_file()
    pols = [f"cql:{cks['cql']}", f"td3bc:{cks['td3bc']}", f"dt:{cks['dt']}?target_return=-1"]
    r = runner.invoke(app, ["evaluate", "--scenario", "adhoc-8-2:6", "--policies",
                            ",".join(pols), "--loads", "medium", "--seeds", "0", "--slots", "6",
                            "--workers", "1", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    cases = [
        (["evaluate", "--scenario", "adhoc-8-2:6", "--policies",
          f"cql:{cks['cql']}?target_return=-1"], "take no options"),
        (["evaluate", "--scenario", "adhoc-8-2:6", "--policies", f"td3bc:{cks['cql']}"],
         "cql"),
        (["train", "cql", "--dataset", str(ds), "--epochs", "0"], "epochs"),
    ]
    for args, msg in cases:
        r = runner.invoke(app, args)
        assert r.exit_code == 2, (args, r.output)
        assert msg in " ".join(r.output.split()), (args, r.output)


D2RL_TINY = ["--set", "batch_size=8", "--set", "buffer_size=64", "--set", "hidden=16",
             "--set", "eval_every=3", "--set", "eval_batch=4", "--set", "checkpoint_every=2",
             "--env", "n_dl=2", "--env", "n_ul=1"]


def test_train_d2rl_writes_agent_and_resumes(tmp_path):
    """radiorl train d2rl as a user calls it: history, summary, TensorBoard, agent; a run
    resumed to more epochs continues the same history."""
    import json
    r = runner.invoke(app, ["train", "d2rl", "--actor", "gdm", "--reward", "designed-gdm",
                            "--state-exploration", "0.5,0.1", "--epochs", "6", "--out",
                            str(tmp_path), *D2RL_TINY])
    assert r.exit_code == 0, r.output
    run = next((tmp_path / "train-d2rl").iterdir())
    for f in ("history.csv", "summary.json", "checkpoints/agent.pt", "checkpoints/last.pt"):
        assert (run / f).exists(), f
    assert any((run / "tb").iterdir())
    assert json.loads((run / "summary.json").read_text())["epochs"] == 6
    r = runner.invoke(app, ["train", "d2rl", "--actor", "gdm", "--reward", "designed-gdm",
                            "--state-exploration", "0.5,0.1", "--epochs", "9", "--resume",
                            str(run), *D2RL_TINY])
    assert r.exit_code == 0, r.output
    assert json.loads((run / "summary.json").read_text())["epochs"] == 9
    # another config cannot continue this run
    r = runner.invoke(app, ["train", "d2rl", "--actor", "mlp", "--reward", "designed-gdm",
                            "--state-exploration", "0.5,0.1", "--epochs", "12", "--resume",
                            str(run), *D2RL_TINY])
    assert r.exit_code == 2 and "actor" in r.output


def test_train_d2rl_preset_sets_the_protocol_and_env_overrides_it(tmp_path):
    """--preset quick brings the experiments' protocol (64 draws per step, MMSE receivers);
    --env and --set still override it."""
    import yaml
    from radiorl.experiments.d2rl import PROTOCOL
    r = runner.invoke(app, ["train", "d2rl", "--actor", "mlp", "--reward", "designed",
                            "--preset", "quick", "--epochs", "2", "--out", str(tmp_path),
                            *D2RL_TINY, "--set", "n_envs=4"])
    assert r.exit_code == 0, r.output
    cfg = yaml.safe_load(next((tmp_path / "train-d2rl").iterdir()).joinpath("config.yaml")
                         .read_text())
    assert cfg["env"]["mmse_receiver"] is True and cfg["env"]["n_dl"] == 2
    assert cfg["n_envs"] == 4 and cfg["updates_per_step"] == PROTOCOL["updates_per_step"]
    assert cfg["gdm_x0_bound"] == "tanh" and cfg["epochs"] == 2
    # the trained agent acts in the MMSE env's action space (no receive beamformers in it)
    from radiorl.agents.d2rl import D2RLAgent
    from radiorl.envs.full_duplex import FullDuplexEnv, FullDuplexParams
    run = next((tmp_path / "train-d2rl").iterdir())
    agent = D2RLAgent.load(run / "checkpoints" / "agent.pt")
    mmse = FullDuplexEnv(FullDuplexParams(n_dl=2, n_ul=1, mmse_receiver=True))
    full = FullDuplexEnv(FullDuplexParams(n_dl=2, n_ul=1))
    assert agent.action_dim == mmse.action_dim < full.action_dim


@pytest.mark.parametrize("args, field", [
    (["--reward", "shaped"], "reward"), (["--actor", "transformer"], "actor"),
    (["--state-exploration", "0.5"], "--state-exploration"),
    (["--state-exploration", "2,0.1"], "M"), (["--env", "n_tx=0"], "n_tx"),
    (["--env", "antennas=4"], "--env"), (["--env", "p_max_w=-1"], "p_max_w"),
    (["--dataset", "x.h5"], "--dataset"), (["--preset", "fast"], "preset")])
def test_train_d2rl_bad_input_names_the_field(tmp_path, args, field):
    r = runner.invoke(app, ["train", "d2rl", "--epochs", "2", "--out", str(tmp_path), *args])
    assert r.exit_code == 2 and field in r.output, r.output
    assert not (tmp_path / "train-d2rl").exists()

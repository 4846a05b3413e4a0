"""The radiorl command as a user calls it."""
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


def test_evaluate_reference_compat(tmp_path):
    r = runner.invoke(app, ["evaluate", "--scenario", "cellular-19-hex", "--policies", "llq",
                            "--loads", "light", "--slots", "50", "--workers", "1",
                            "--reference-compat", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    cfg = next((tmp_path / "evaluate").iterdir()) / "config.yaml"
    assert "reference_compat: true" in cfg.read_text()

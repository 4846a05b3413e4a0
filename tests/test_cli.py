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

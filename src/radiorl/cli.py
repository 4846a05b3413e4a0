"""The ``radiorl`` command."""
from __future__ import annotations

import sys
import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="radiorl: fast radio-network simulators, classical schedulers and "
                       "learning-based allocators.")
console = Console()


def _fail(msg: str) -> None:
    console.print(f"[red]error:[/red] {msg}")
    raise typer.Exit(2)


def _split(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def _ints(s: str, name: str) -> list[int]:
    try:
        out = [int(x) for x in _split(s)]
    except ValueError:
        _fail(f"{name} must be a comma-separated list of integers >= 0, got {s!r}")
    if not out or min(out) < 0:
        _fail(f"{name} must be a comma-separated list of integers >= 0, got {s!r}")
    return out


def _default_episode(scenario: str) -> int:
    from radiorl.envs.scenarios import get_scenario
    try:
        return 1000 if get_scenario(scenario).family == "adhoc" else 5000
    except ValueError as e:
        _fail(str(e))


@app.command()
def scenarios():
    """List the scenarios (with their named loads) and the policies."""
    from radiorl.envs.scenarios import SCENARIOS
    from radiorl.schedulers.policies import POLICIES
    t = Table(title="scenarios")
    for c in ("name", "network", "loads (light/medium/heavy)", "description"):
        t.add_column(c, no_wrap=c == "name")
    for s in SCENARIOS.values():
        t.add_row(s.name, s.family, " / ".join(f"{v:g}" for v in s.loads.values()) +
                  f" {s.load_unit}", s.description)
    from radiorl.envs.scenarios import FAMILIES, get_scenario as _get
    for prefix, (_, pattern, example) in FAMILIES.items():
        ex = _get(example)
        t.add_row(pattern, ex.family, " / ".join(f"{v:g}" for v in ex.loads.values()) +
                  f" {ex.load_unit}", f"e.g. {example}: {ex.description}")
    console.print(t)
    t = Table(title="policies")
    for c in ("name", "networks", "requires", "description"):
        t.add_column(c, no_wrap=c == "name")
    for name, (factory, desc) in POLICIES.items():
        p = factory()
        t.add_row(name, ", ".join(p.families), ", ".join(sorted(p.requires)) or "-", desc)
    from radiorl.pretrained import available
    from radiorl.schedulers.policies import PRETRAINED
    for name, desc in PRETRAINED.items():
        scen = sorted({a.split("_")[1] for a in available() if a.startswith(name + "_")})
        t.add_row(name, ", ".join(scen) or "(none shipped)", "local_obs", desc)
    t.add_row("mappo:<checkpoint.pt>", "conflict_graph, cellular", "local_obs",
              "a MAPPO policy trained with `radiorl train mappo` (most likely actions)")
    t.add_row("mappo-sampled:<checkpoint.pt>", "conflict_graph, cellular", "local_obs",
              "the same, actions sampled from the stochastic policy")
    console.print(t)


@app.command()
def simulate(scenario: str = typer.Option(..., help="scenario name (radiorl scenarios)"),
             policy: str = typer.Option(..., help="policy name"),
             load: str = typer.Option("medium", help="light|medium|heavy or a number"),
             slots: int = typer.Option(None, help="slots (frames on ad hoc networks) to "
                                        "simulate [default: 2000, ad hoc 1000]"),
             seed: int = typer.Option(0, help="seed of arrivals and channels"),
             reference_compat: bool = typer.Option(False, help="public-code conventions")):
    """Simulate one policy on one scenario and print its QoS."""
    from radiorl.evaluation.report import print_table, summarize
    from radiorl.evaluation.runner import rollout
    from radiorl.envs.scenarios import get_scenario
    from radiorl.schedulers.policies import make_policy
    try:
        sc = get_scenario(scenario)
        if slots is None:
            slots = 1000 if sc.family == "adhoc" else 2000
        if slots < 1:
            raise ValueError(f"slots must be an integer >= 1, got {slots}")
        if seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed}")
        env = sc.make_env(load, 1, reference_compat, episode_slots=slots)
        pol = make_policy(policy, env)
    except ValueError as e:
        _fail(str(e))
    from rich.progress import Progress
    with Progress(transient=True) as prog:
        tid = prog.add_task(f"{policy} on {scenario}", total=slots)
        m, t_act = rollout(env, pol, seed, slots, progress=lambda: prog.advance(tid))
    rows = m.summary(env.slot_ms)
    for r in rows:
        r.update(scenario=scenario, family=sc.family, policy=policy, load=sc.load_label(load),
                 load_value=sc.resolve_load(load), seed=seed, ms_per_decision=1e3 * t_act / m.slots)
    print_table(summarize(rows), title=f"{scenario}, {slots} slots, seed {seed}")


@app.command()
def evaluate(scenario: str = typer.Option(..., help="scenario name"),
             policies: str = typer.Option(..., help="comma-separated policy names"),
             loads: str = typer.Option("light,medium,heavy", help="comma-separated loads"),
             seeds: str = typer.Option("0", help="comma-separated seeds"),
             slots: int = typer.Option(None, help="slots (frames on ad hoc networks) per "
                                        "episode [default: 5000, ad hoc 1000]"),
             workers: int = typer.Option(2, help="parallel worker processes"),
             out: str = typer.Option("runs", help="root folder of run directories"),
             reference_compat: bool = typer.Option(False, help="public-code conventions")):
    """Paired evaluation of several policies; writes runs/evaluate/<timestamp>/."""
    from radiorl.evaluation.report import print_table, write_evaluation
    from radiorl.evaluation.runner import evaluate as _evaluate
    from radiorl.runtime.files import make_run_dir
    seed_list = _ints(seeds, "seeds")
    if slots is None:
        slots = _default_episode(scenario)
    if workers < 1:
        _fail(f"workers must be an integer >= 1, got {workers}")
    try:
        rows, delays = _evaluate(scenario, _split(policies), _split(loads), seed_list, slots,
                                 workers=workers, reference_compat=reference_compat)
    except ValueError as e:
        _fail(str(e))
    run_dir = make_run_dir("evaluate", out, {"scenario": scenario, "policies": _split(policies),
                                             "loads": _split(loads), "seeds": seed_list,
                                             "slots": slots,
                                             "reference_compat": reference_compat})
    summary = write_evaluation(run_dir, rows, delays, title=scenario)
    print_table(summary, title=scenario)
    console.print(f"results in [bold]{run_dir}[/bold]")


@app.command()
def collect(preset: str = typer.Option("quick", help="quick (32 trajectories) | paper (1,000)"),
            out: str = typer.Option(None, help="dataset path [default: "
                                    "datasets/adhoc-<preset>.h5]"),
            episodes: int = typer.Option(None, help="trajectories (overrides the preset)"),
            frames: int = typer.Option(None, help="frames per trajectory [6000 = 30 s]"),
            rf: str = typer.Option("ideal", help="ideal | limited | both"),
            seed: int = typer.Option(0, help="dataset seed"),
            workers: int = typer.Option(2, help="parallel workers (processes or Ray tasks)"),
            backend: str = typer.Option("local", help="local (process pool) | ray"),
            address: str = typer.Option(None, help="Ray cluster address (with --backend ray)"),
            overwrite: bool = typer.Option(False, help="replace an existing dataset"),
            resume: bool = typer.Option(False, help="continue an interrupted collection")):
    """Collect the MA-CDMP offline dataset (behaviour policies on the ad hoc networks)."""
    from radiorl.data.collect import collect as _collect, preset_config
    path = out or f"datasets/adhoc-{preset}.h5"
    try:
        if address is not None and backend != "ray":
            raise ValueError("--address needs --backend ray")
        cfg = preset_config(preset, episodes=episodes, frames=frames, rf=rf, seed=seed)
        res = _collect(path, cfg, workers=workers, backend=backend, address=address,
                       overwrite=overwrite, resume=resume)
    except (ValueError, FileExistsError) as e:
        _fail(str(e))
    console.print(f"wrote [bold]{res['path']}[/bold]: {res['episodes']} trajectories; this run "
                  f"simulated {res['agent_frames_now']:,} agent-frames in {res['seconds']:.1f} s "
                  f"({res['agent_frames_per_s']:,.0f} agent-frames/s)")


def _config_overrides(cls, items: list[str]) -> dict:
    """``["epochs=2", "entropy=0.005"]`` → typed overrides of dataclass ``cls`` fields (YAML
    scalars: numbers, true/false, null); unknown keys are a clear error."""
    import dataclasses
    import yaml
    names = {f.name for f in dataclasses.fields(cls)}
    out = {}
    for it in items:
        key, sep, val = it.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {it!r}")
        if key not in names:
            raise ValueError(f"--set: unknown field {key!r}; fields: {sorted(names)}")
        v = yaml.safe_load(val)
        if isinstance(v, str):                  # YAML 1.1 reads "1e-3" as a string
            try:
                v = float(v)
            except ValueError:
                pass
        out[key] = v
    return out


@app.command()
def train(algo: str = typer.Argument(..., help="mappo"),
          scenario: str = typer.Option(..., help="conflict-8, cellular-19-hex, "
                                       "cellular-19-random, ..."),
          load: str = typer.Option("medium", help="light|medium|heavy or a number"),
          mode: str = typer.Option("shared", help="shared | separate"),
          episodes: int = typer.Option(None, help="training iterations (each: --envs copies x "
                                       "--episode-slots slots)"),
          envs: int = typer.Option(None, help="environment copies per iteration [16]"),
          episode_slots: int = typer.Option(None, help="slots per training episode [2000]"),
          rollout_slots: int = typer.Option(None, help="slots per copy between updates "
                                            "[= episode slots]; smaller: several updates per "
                                            "episode, copies persist across updates"),
          lr: float = typer.Option(None, help="learning rate [1e-4, Table II]"),
          optimizer: str = typer.Option(None, help="rmsprop (Table II) | adam"),
          rnn: str = typer.Option(None, help="lstm | gru"),
          seed: int = typer.Option(0, help="training seed"),
          set_: list[str] = typer.Option(None, "--set", help="any other MAPPOConfig field, "
                                         "KEY=VALUE (repeatable), e.g. --set epochs=2"),
          out: str = typer.Option("runs", help="root folder of run directories"),
          resume: str = typer.Option(None, help="checkpoint or run folder to continue")):
    """Train a learned allocator (MAPPO); writes runs/train-mappo/<timestamp>/ (checkpoints,
    training.csv, TensorBoard logs in tb/, figures/training_curve.png)."""
    from pathlib import Path
    from radiorl.agents.mappo import MAPPOConfig, train as _train
    from radiorl.runtime.files import make_run_dir
    if algo != "mappo":
        _fail(f"unknown algorithm {algo!r}; available: ['mappo']")
    kw = {k: v for k, v in dict(mode=mode, episodes=episodes, envs=envs,
                                episode_slots=episode_slots, rollout_slots=rollout_slots,
                                lr=lr, optimizer=optimizer,
                                rnn=rnn, seed=seed).items() if v is not None}
    try:
        kw.update(_config_overrides(MAPPOConfig, set_ or []))
        cfg = MAPPOConfig(**kw).validate()
        from radiorl.envs.scenarios import get_scenario
        sc = get_scenario(scenario)
        sc.resolve_load(load)
        if sc.family not in ("conflict_graph", "cellular"):
            raise ValueError(f"MAPPO trains on conflict-graph and cellular scenarios, not on "
                             f"{scenario} ({sc.family})")
        if resume is not None and not Path(resume).exists():
            raise ValueError(f"--resume: {resume} does not exist (a checkpoint .pt or a run "
                             "folder with checkpoints/last.pt)")
        run_dir = Path(resume) if resume is not None and Path(resume).is_dir() else \
            make_run_dir("train-mappo", out, {"scenario": scenario, "load": load,
                                              **cfg.to_dict()})
        res = _train(scenario, load, cfg, run_dir, resume=resume, log=console.print)
    except ValueError as e:
        _fail(str(e))
    last = res["history"][-1]
    console.print(f"trained {cfg.episodes} iterations; last evaluation: mean delay "
                  f"{last.get('eval_mean_delay', float('nan')):.3f}; policy: "
                  f"[bold]{res['checkpoint']}[/bold] (use it as --policies "
                  f"mappo:{res['checkpoint']})")


@app.command()
def run(experiment: str = typer.Argument(..., help="experiment name, e.g. quickstart"),
        preset: str = typer.Option("quick", help="quick|paper"),
        workers: int = typer.Option(2, help="parallel worker processes"),
        out: str = typer.Option("runs", help="root folder of run directories")):
    """Run a named experiment; writes runs/<experiment>/<timestamp>/."""
    from radiorl.experiments import get_experiment
    from radiorl.runtime.files import make_run_dir
    import time
    try:
        fn, _, config_fn = get_experiment(experiment)
        cfg = config_fn(preset)
    except ValueError as e:
        _fail(str(e))
    run_dir = make_run_dir(experiment, out, {"experiment": experiment, "preset": preset, **cfg})
    t0 = time.perf_counter()
    fn(preset, run_dir, workers=workers, console=console)
    console.print(f"done in {time.perf_counter() - t0:.0f} s; results, figures and report.md in "
                  f"[bold]{run_dir}[/bold]")


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

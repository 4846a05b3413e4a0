"""The ``radiorl`` command."""
from __future__ import annotations

import sys
import typer
from rich.console import Console
from rich.table import Table

from radiorl.agents.offline.registry import OFFLINE

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
    t.add_row("macdmp:<planner.pt>[?k=v&...]", "adhoc", "local_obs, mean_field_obs",
              "an MA-CDMP planner trained with `radiorl train macdmp`; options: sampler, "
              "sample_steps, guidance, warm_start, candidates, guide_last, clip_x0, "
              "parallel_guidance, compile")
    for algo, what, opts in [
            ("madiffuser", "MA-Diffuser (Diffuser per agent, value guidance)",
             "sampler, sample_steps, guidance, guide_stop, clip_x0, candidates"),
            ("madd", "MA-DD (Decision Diffuser per agent, return-conditioned)",
             "sampler, sample_steps, guidance (w), target_return, clip_x0, temperature"),
            ("madiff", "MADiff (CTDE, attention across agents; decentralized execution)",
             "sampler, sample_steps, guidance (w), target_return, clip_x0")]:
        t.add_row(f"{algo}:<planner.pt>[?k=v&...]", "adhoc", "local_obs",
                  f"{what} trained with `radiorl train {algo}`; options: {opts}")
    for algo, what in [("cql", "MA-CQL"), ("td3bc", "MA-TD3+BC"),
                       ("dt", "MA-DT (option: target_return)")]:
        t.add_row(f"{algo}:<policy.pt>", "adhoc", "local_obs",
                  f"{what}, d3rlpy (extra 'offline'), trained with `radiorl train {algo}`")
    t.add_row("mixture:<eps>", "adhoc", "local_obs, local_traffic",
              "the offline dataset's behaviour policy with random-request probability eps")
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
             sampler: str = typer.Option(None, help="[diffusion planners] ddpm | ddim | dpm1 "
                                         "| dpm2 [the model's default]"),
             sample_steps: int = typer.Option(None, help="[diffusion planners] solver steps "
                                              "(ddim/dpm; ddpm runs all K)"),
             guidance: float = typer.Option(None, help="[diffusion planners] guidance scale "
                                            "(MA-CDMP, MA-Diffuser: zeta; MA-DD, MADiff: the "
                                            "classifier-free weight w)"),
             warm_start: int = typer.Option(None, help="[macdmp planners] re-noise the "
                                            "previous plan to step k0 and denoise from there"),
             reference_compat: bool = typer.Option(False, help="public-code conventions")):
    """Paired evaluation of several policies; writes runs/evaluate/<timestamp>/.

    Trained planners: --policies macdmp:<planner.pt> (and madiffuser:, madd:, madiff:); their
    settings come from --sampler, --sample-steps, --guidance, --warm-start or per policy as
    macdmp:<planner.pt>?sampler=dpm1&sample_steps=10."""
    from radiorl.evaluation.report import print_table, write_evaluation
    from radiorl.evaluation.runner import evaluate as _evaluate
    from radiorl.runtime.files import make_run_dir
    policies = ",".join(_with_planner_options(_split(policies), sampler=sampler,
                                              sample_steps=sample_steps, guidance=guidance,
                                              warm_start=warm_start))
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


def _with_planner_options(policies: list[str], **opts) -> list[str]:
    """Append the given planner options to every diffusion-planner policy (``macdmp:``,
    ``madiffuser:``, ``madd:``, ``madiff:``) that takes them (options already in a policy's
    ``?key=value`` part win)."""
    from radiorl.schedulers.policies import PLANNER_OPTIONS
    given = {k: v for k, v in opts.items() if v is not None}
    if not given:
        return policies

    def prefix(p):
        return p.split(":", 1)[0] if ":" in p else None
    planners = [p for p in policies if prefix(p) in PLANNER_OPTIONS]
    if not planners:
        _fail("--" + "/--".join(k.replace("_", "-") for k in given) + " apply to diffusion "
              "planners; add a macdmp:<planner.pt> (or madiffuser:, madd:, madiff:) policy")
    for k in given:
        if not any(k in PLANNER_OPTIONS[prefix(p)] for p in planners):
            _fail(f"--{k.replace('_', '-')} applies to "
                  + ", ".join(f"{a}:" for a, o in PLANNER_OPTIONS.items() if k in o)
                  + " policies only")
    out = []
    for p in policies:
        if prefix(p) in PLANNER_OPTIONS:
            path, _, query = p.partition("?")
            have = {q.split("=", 1)[0].replace("-", "_") for q in query.split("&") if q}
            extra = [f"{k}={v}" for k, v in given.items()
                     if k not in have and k in PLANNER_OPTIONS[prefix(p)]]
            p = path + ("?" + "&".join([q for q in query.split("&") if q] + extra)
                        if query or extra else "")
        out.append(p)
    return out


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


def _config_overrides(cls, items: list[str], option: str = "--set") -> dict:
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
            raise ValueError(f"{option} expects KEY=VALUE, got {it!r}")
        if key not in names:
            raise ValueError(f"{option}: unknown field {key!r}; fields: {sorted(names)}")
        v = yaml.safe_load(val)
        if isinstance(v, str):                  # YAML 1.1 reads "1e-3" as a string
            try:
                v = float(v)
            except ValueError:
                pass
        out[key] = v
    return out


TRAINERS = ("mappo", "d2rl") + tuple(OFFLINE)


@app.command()
def train(algo: str = typer.Argument(..., help="mappo | d2rl | " + " | ".join(OFFLINE)),
          scenario: str = typer.Option(None, help="[mappo] conflict-8, cellular-19-hex, "
                                       "cellular-19-random, ..."),
          dataset: str = typer.Option(None, help="[offline learners] offline dataset "
                                      "(radiorl collect)"),
          preset: str = typer.Option(None, help="[offline] paper (default) | quick | "
                                     "realtime (macdmp); [d2rl] quick | paper (the "
                                     "experiments' sample-efficient protocol) | table2 (the "
                                     "paper's loop); without --preset: Table II defaults"),
          horizon: int = typer.Option(None, help="[diffusion planners] planning horizon H "
                                      "(frames) [16]"),
          steps: int = typer.Option(None, help="[diffusion planners] diffusion steps K [100]"),
          guidance: float = typer.Option(None, help="[diffusion planners] default guidance "
                                         "(macdmp, madiffuser: zeta [0.1]; madd, madiff: "
                                         "classifier-free weight w [1.2])"),
          no_mean_field: bool = typer.Option(False, "--no-mean-field",
                                             help="[macdmp] the ablation MA-CDMP w/o MF"),
          epochs: int = typer.Option(None, help="[offline] epochs [100]"),
          load: str = typer.Option("medium", help="[mappo] light|medium|heavy or a number"),
          mode: str = typer.Option("shared", help="[mappo] shared | separate"),
          episodes: int = typer.Option(None, help="[mappo] training iterations (each: --envs "
                                       "copies x --episode-slots slots)"),
          envs: int = typer.Option(None, help="[mappo] environment copies per iteration [16]"),
          episode_slots: int = typer.Option(None, help="[mappo] slots per training episode "
                                            "[2000]"),
          rollout_slots: int = typer.Option(None, help="[mappo] slots per copy between updates "
                                            "[= episode slots]; smaller: several updates per "
                                            "episode, copies persist across updates"),
          lr: float = typer.Option(None, help="learning rate [mappo 1e-4 (Table II); macdmp "
                                   "2e-4]"),
          optimizer: str = typer.Option(None, help="[mappo] rmsprop (Table II) | adam"),
          rnn: str = typer.Option(None, help="[mappo] lstm | gru"),
          actor: str = typer.Option(None, help="[d2rl] mlp | gdm (AENPNN) [gdm]"),
          reward: str = typer.Option(None, help="[d2rl] raw | designed | designed-mlp | gdm | "
                                     "designed-gdm [designed-gdm]"),
          state_exploration: str = typer.Option(None, help="[d2rl] M,eta: state exploration "
                                                "with maximum probability M and rate eta "
                                                "(e.g. 0.9,0.001); default off"),
          env_set: list[str] = typer.Option(None, "--env", help="[d2rl] a FullDuplexParams "
                                            "field, KEY=VALUE (repeatable), e.g. --env "
                                            "mmse_receiver=true"),
          seed: int = typer.Option(0, help="training seed"),
          set_: list[str] = typer.Option(None, "--set", help="any other config field "
                                         "(MAPPOConfig, MACDMPConfig, ...), KEY=VALUE "
                                         "(repeatable), "
                                         "e.g. --set epochs=2"),
          out: str = typer.Option("runs", help="root folder of run directories"),
          resume: str = typer.Option(None, help="checkpoint or run folder to continue")):
    """Train a learned allocator: MAPPO on a simulated network, or an offline learner (MA-CDMP
    and its baselines) on an offline dataset; writes runs/train-<algo>/<timestamp>/ (checkpoints, training.csv, TensorBoard
    logs in tb/, figures/training_curve.png)."""
    from pathlib import Path
    if algo not in TRAINERS:
        _fail(f"unknown algorithm {algo!r}; available: {list(TRAINERS)}")
    if resume is not None and not Path(resume).exists():
        _fail(f"--resume: {resume} does not exist (a checkpoint .pt or a run folder with "
              "checkpoints/last.pt)")
    if algo in OFFLINE:
        _train_offline(algo, dataset, preset, horizon, steps, guidance, no_mean_field, epochs,
                       lr, seed, set_ or [], out, resume, scenario)
        return
    if algo == "d2rl":
        _train_d2rl(actor, reward, state_exploration, env_set or [], preset, epochs, seed,
                    set_ or [], out, resume, scenario, dataset)
        return
    if actor is not None or reward is not None or state_exploration is not None or env_set:
        _fail("--actor, --reward, --state-exploration and --env are options of radiorl train "
              "d2rl")
    if dataset is not None or preset is not None:
        _fail("--dataset and --preset are options of the offline learners (radiorl train "
              "macdmp|madiffuser|...)")
    if scenario is None:
        _fail("radiorl train mappo needs --scenario (e.g. conflict-8)")
    from radiorl.agents.mappo import MAPPOConfig, train as _train
    from radiorl.runtime.files import make_run_dir
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


def _train_d2rl(actor, reward, state_exploration, env_items, preset, epochs, seed, set_items,
                out, resume, scenario, dataset) -> None:
    """``radiorl train d2rl``: D2RL on the full-duplex BS (agents/d2rl, envs/full_duplex)."""
    from pathlib import Path
    from radiorl.runtime.files import make_run_dir
    if scenario is not None or dataset is not None:
        _fail("D2RL trains online on the full-duplex base station: no --scenario or --dataset "
              "(use --env KEY=VALUE for its parameters)")
    try:
        from radiorl.agents.d2rl import D2RLConfig, train as _train
        from radiorl.envs.full_duplex import FullDuplexEnv, FullDuplexParams
        from radiorl.experiments.d2rl import PRESETS
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"--preset must be one of {sorted(PRESETS)} (D2RL), got "
                             f"{preset!r}")
        kw = dict(PRESETS[preset]["train"]) if preset else {}
        kw.update({k: v for k, v in dict(actor=actor, reward=reward, epochs=epochs,
                                         seed=seed).items() if v is not None})
        if state_exploration is not None:
            parts = state_exploration.split(",")
            try:
                kw["state_exploration"] = tuple(float(x) for x in parts)
            except ValueError:
                raise ValueError(f"--state-exploration expects M,eta (two numbers, e.g. "
                                 f"0.9,0.001), got {state_exploration!r}") from None
            if len(parts) != 2:
                raise ValueError(f"--state-exploration expects M,eta (two numbers, e.g. "
                                 f"0.9,0.001), got {state_exploration!r}")
        kw.update(_config_overrides(D2RLConfig, set_items))
        cfg = D2RLConfig.from_dict(kw)
        params = FullDuplexParams(**{**(PRESETS[preset]["env"] if preset else {}),
                                     **_config_overrides(FullDuplexParams, env_items, "--env")})
        env = FullDuplexEnv(params)
        import dataclasses
        if resume is not None:
            rp = Path(resume)
            run_dir = rp if rp.is_dir() else rp.parent.parent
        else:
            run_dir = make_run_dir("train-d2rl", out, {"env": dataclasses.asdict(params),
                                                       **cfg.to_dict()})
        history = _train(cfg, env, run_dir, resume=resume if resume is not None else False)
    except ValueError as e:
        _fail(str(e))
    import json
    summ = json.loads((Path(run_dir) / "summary.json").read_text())
    console.print(f"trained {len(history)} epochs; final sum rate {summ['final_sum_rate']:.3f} "
                  f"bit/s/Hz, converged at epoch {summ['converged_epoch']} "
                  f"({summ['cpu_to_convergence_s']:.1f} s CPU); agent: "
                  f"[bold]{Path(run_dir) / 'checkpoints' / 'agent.pt'}[/bold]; history.csv, "
                  f"summary.json and TensorBoard logs in {run_dir}")


def _train_offline(algo, dataset, preset, horizon, steps, guidance, no_mean_field, epochs, lr,
                   seed, set_items, out, resume, scenario) -> None:
    from pathlib import Path
    from radiorl.runtime.files import make_run_dir
    learner = OFFLINE[algo]
    label = learner.label
    if scenario is not None:
        _fail(f"{label} trains on an offline dataset: use --dataset (radiorl collect makes "
              "one), not --scenario")
    if dataset is None:
        _fail(f"radiorl train {algo} needs --dataset (e.g. datasets/adhoc-quick.h5 from "
              "`radiorl collect --preset quick`)")
    if no_mean_field and algo != "macdmp":
        _fail("--no-mean-field is the MA-CDMP ablation (radiorl train macdmp)")
    try:
        kw = dict(horizon=horizon, diffusion_steps=steps, guidance=guidance, epochs=epochs,
                  lr=lr, seed=seed)
        if no_mean_field:
            kw["mean_field"] = False
        kw.update(_config_overrides(learner.config_cls(), set_items))
        cfg = learner.preset_config(preset or "paper", **kw)
        if not Path(dataset).is_file():
            raise ValueError(f"--dataset: {dataset} does not exist (make one with "
                             "`radiorl collect --preset quick`)")
        learner.check_dataset(dataset, cfg)       # layout and horizon checked before any work
        run_dir = Path(resume) if resume is not None and Path(resume).is_dir() else \
            make_run_dir(f"train-{algo}", out, {"dataset": str(dataset),
                                                "preset": preset or "paper", **cfg.to_dict()})
        res = learner.train(dataset, cfg, run_dir, resume=resume, log=console.print)
    except ValueError as e:
        _fail(str(e))
    last = res["history"][-1]
    msg = ", ".join(f"{k} {v:.4f}" for k, v in last.items() if k.startswith("valid_"))
    console.print(f"trained {cfg.epochs} epochs x {cfg.steps_per_epoch} steps ({msg}); model: "
                  f"[bold]{res['checkpoint']}[/bold] (use it as --policies "
                  f"{algo}:{res['checkpoint']})")


@app.command()
def run(experiment: str = typer.Argument(..., help="experiment name, e.g. quickstart"),
        preset: str = typer.Option("quick", help="quick|paper"),
        workers: int = typer.Option(2, help="parallel workers (processes or Ray tasks)"),
        out: str = typer.Option("runs", help="root folder of run directories"),
        backend: str = typer.Option("local", help="local (process pool) | ray: where the "
                                    "experiment's parallel stages run"),
        address: str = typer.Option(None, help="Ray cluster address, e.g. auto or "
                                    "host:6379 (with --backend ray)")):
    """Run a named experiment; writes runs/<experiment>/<timestamp>/."""
    from radiorl.experiments import get_experiment
    from radiorl.runtime.executor import use_backend
    from radiorl.runtime.files import make_run_dir
    import time
    try:
        fn, _, config_fn = get_experiment(experiment)
        cfg = config_fn(preset)
        if workers < 1:
            raise ValueError(f"workers must be an integer >= 1, got {workers}")
        with use_backend(backend, address):
            pass                                      # checks backend and address
    except ValueError as e:
        _fail(str(e))
    run_dir = make_run_dir(experiment, out, {"experiment": experiment, "preset": preset, **cfg})
    t0 = time.perf_counter()
    with use_backend(backend, address):
        fn(preset, run_dir, workers=workers, console=console)
    console.print(f"done in {time.perf_counter() - t0:.0f} s; results, figures and report.md in "
                  f"[bold]{run_dir}[/bold]")


def main():  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The `drivesim` command: simulate one scenario, evaluate policies on a suite, import logs, benchmark, demo.

Run `drivesim COMMAND --help` for the options of each command.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import torch

import drivesim
from drivesim.traffic.log_modes import TRAFFIC_MODES
from drivesim.cli.overview import COMMANDS, DESCRIPTION, HelpFormatter, add_global_options
from drivesim.cli.events import add_commands as add_event_commands
from drivesim.cli.import_waymo import add_import_arguments, cmd_import as cmd_import_per_file
from drivesim.cli.options import (EXIT_CODES_HELP, EXIT_FAILED, EXPERT_NAME, add_allow_errors, add_results_arguments, check_policies,
                                   add_camera_arguments, camera_factory, finish, load_scenarios, make_policy, output_dir,
                                   policy_args, policy_hash,
                                   positive_int, previous_results, report_skipped, resumed_rows, skipped_files)
from drivesim.cli.refiner import add_commands as add_refiner_commands
from drivesim.cli.sensor import add_commands as add_sensor_commands
from drivesim.cli.traffic import add_realism_command, add_train_traffic_command
from drivesim.core.safe_io import atomic_write_text, file_name
from drivesim.distributed import add_backend_arguments, backend_options
from drivesim.io import importers
from drivesim.io.importers import IMPORTERS

TRAFFIC_CHOICES = TRAFFIC_MODES
TRAFFIC_HELP = ("how the background agents of logged scenarios move; default: the modes a generated set records, "
                "reactive for raw imported logs; a generated event's agent keeps its own mode")


def logged_source(args):
    """Scenario files from `--scenarios` with `--traffic` applied (`events.logged.logged_scenarios`):
    (scenarios, meta); the files skipped are listed on stderr, a bad path or mode is an error exit."""
    from drivesim.core.scenario import ScenarioError
    from drivesim.events.logged import logged_scenarios
    from drivesim.io.scenario_file import ScenarioFileError

    try:
        scenarios, meta = logged_scenarios(args.scenarios, args.traffic)
    except (ScenarioFileError, ScenarioError) as exc:
        raise SystemExit(f"error: {exc}") from None
    report_skipped(meta["load_errors"], args.scenarios)
    return scenarios, meta


def write_bev_video(scenario, traj, path: Path, fps: int = 10) -> Path:
    from drivesim.render.bev import render_frames, write_video

    frames = render_frames(scenario, traj, 0, view="ego", size=(640, 480))
    return write_video(frames, path, fps=fps)


def until_first_contact(traj: dict, after: int = 5) -> dict:
    """The trajectory [T, 1, A] cut `after` steps past the ego's first contact with an agent,
    so that a failure thumbnail shows the moment it happened (unchanged without contact)."""
    from drivesim.core.geometry import boxes_overlap

    box = lambda j: tuple(torch.as_tensor(traj[k][:, 0, j]) for k in ("x", "y", "yaw", "length", "width"))
    ego, others = box(slice(0, 1)), box(slice(1, None))  # [T, 1], [T, A-1]
    hit = boxes_overlap(ego, others) & torch.as_tensor(traj["valid"][:, 0, 1:])
    steps = hit.any(dim=1).nonzero()
    if len(steps) == 0:
        return traj
    end = int(steps[0]) + after + 1
    return {k: v[:end] for k, v in traj.items()}


def write_outputs(ev, out: Path, meta: dict, videos: int = 3, replay=None) -> None:
    """results.csv/json and summary.json, the printed summary, failure thumbnails and videos, report.html."""
    from drivesim.core.safe_io import OutputError
    from drivesim.io.eval_report import camera_cost, format_table, summarize
    from drivesim.io.results import write_tables

    write_tables(ev.results, meta, out)
    print(format_table(summarize(ev.results)))
    for policy, ms in camera_cost(ev.results).items():
        print(f"cameras ({meta.get('cameras', '')}): {ms:.0f} ms per six-camera frame for {policy}")
    try:
        write_pictures(ev, out, meta, videos, replay)
    except OutputError:
        raise
    except OSError as exc:  # a thumbnail, plot or video the disk refused
        raise OutputError(f"cannot write into {out}: {exc.strerror or exc}") from exc


def write_pictures(ev, out: Path, meta: dict, videos: int, replay=None) -> None:
    """A thumbnail of every failure (at its first contact), a BEV video of the worst `videos`
    failures of each policy (the policy under test, as it drove), report.html with both and the
    command that replays each failure (`replay(policy, scenario)`)."""
    from drivesim.io.report_page import write_report
    from drivesim.render.bev import thumbnail

    thumbs, clips, commands, per_policy = {}, {}, {}, {}
    worst = ev.results.sort_values("pdms", kind="stable", na_position="first") if "pdms" in ev.results else ev.results
    order = {(r.policy, r.scenario): k for k, r in enumerate(worst.itertuples())}
    for (policy, name), (scenario, traj) in sorted(ev.trajectories.items(), key=lambda kv: order.get(kv[0], 0)):
        key, stem = f"{policy}/{name}", f"{file_name(policy)}__{file_name(name)}"
        thumbs[key] = str(thumbnail(scenario, until_first_contact(traj), 0, out / "thumbs" / f"{stem}.png").relative_to(out))
        if per_policy.get(policy, 0) < videos:
            per_policy[policy] = per_policy.get(policy, 0) + 1
            clips[key] = str(write_bev_video(scenario, traj, out / "videos" / f"{stem}.mp4").relative_to(out))
        if replay is not None:
            commands[key] = replay(policy, name)
    report = write_report(ev.results, out, title=f"drivesim evaluation: {meta.get('suite', '')}", meta=meta,
                          thumbnails=thumbs, videos=clips, commands=commands)
    print(f"wrote {out / 'results.csv'}, {out / 'results.json'}, {out / 'summary.json'} and {report}"
          + (f" ({len(clips)} failure video(s) in {out / 'videos'})" if clips else ""))


def replay_command(args, specs: dict[str, str]):
    """(policy name, scenario name) -> the `drivesim simulate` command that replays that run."""
    import shlex

    source = ["--scenarios", args.scenarios] if args.scenarios else ["--suite", args.suite]
    extra = (["--traffic", args.traffic] if args.traffic else []) + \
            (["--policy-every", str(args.policy_every)] if args.policy_every != 1 else []) + \
            (["--render", args.cameras, "--rig", args.rig, "--render-size", args.camera_size] if args.cameras else [])
    return lambda policy, scenario: shlex.join(["drivesim", "simulate", *source, "--scenario", scenario,
                                                "--policy", specs.get(policy, policy), *extra])


# ---------------------------------------------------------------------------- commands
def pick_scenario(args):
    """The scenario `--scenario` names and the files of `--scenarios` that could not be read."""
    scenarios, meta = logged_source(args) if args.scenarios else (load_scenarios(args.suite)[2], {})
    where, errors = args.scenarios or args.suite, meta.get("load_errors", [])
    pick = [s for i, s in enumerate(scenarios) if s.name == args.scenario or str(i) == args.scenario]
    if not pick:
        names = ", ".join(s.name for s in scenarios[:10])
        unread = f"; {len(errors)} file(s) there could not be read (listed above)" if errors else ""
        raise SystemExit(f"error: no scenario {args.scenario!r} in {where} (index or name; e.g. {names}){unread}")
    if pick[0].error is not None:  # a suite scenario that could not be built (io/suite.py: failed_scenario)
        raise SystemExit(f"error: scenario {pick[0].name!r}: {pick[0].error}")
    return pick[0], errors


def procedural(map_type: str, seed: int):
    """A procedural scenario with default traffic on a default map of `map_type`."""
    from drivesim.traffic.procedural import TrafficConfig, procedural_scenario
    from drivesim.map.builders import build_map
    from drivesim.map.road import MapError

    try:
        road = build_map(map_type)
    except MapError as exc:
        raise SystemExit(f"error: {exc}") from None
    return procedural_scenario(road, TrafficConfig(), seed=seed, name=f"{map_type}-seed{seed}")


def cmd_simulate(args) -> int:
    from drivesim.core.scenario import ScenarioBatch
    from drivesim.sim.rollout import rollout

    from drivesim.sim.evaluate import logged_progress

    if args.render in ("splat", "refined"):  # a bad rig or size is an error before anything runs
        from drivesim.render.splat.camera import load_rig
        from drivesim.render.splat.sensors import parse_size

        try:
            load_rig(args.rig), parse_size(args.render_size)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"error: {exc}") from None
    out = output_dir(args.out)
    scenario, unread = (procedural(args.map, args.seed), []) if args.map else pick_scenario(args)
    batch = ScenarioBatch.build([scenario], device=args.device)
    reference = logged_progress(batch)  # the logged ego's progress, else the expert's
    if torch.isnan(reference).all():
        reference = torch.as_tensor(rollout(batch, make_policy("pdm_expert")).metrics["progress"], dtype=torch.float32,
                                    device=batch.device)
    policy = make_policy(args.policy)
    res = rollout(batch, policy, record=True, expert_progress=reference)
    metrics = {k: float(v[0]) for k, v in res.metrics.items()}
    record = {"scenario": scenario.name, "policy": policy.name, "status": res.status[0], "error": res.errors[0], "metrics": metrics}
    atomic_write_text(out / "metrics.json", json.dumps(record, indent=2))
    print(f"scenario {scenario.name} ({scenario.road.name}), policy {policy.name}: {res.status[0]} {res.errors[0]}")
    for k in ("pdms", "nuplan_score", "success", "no_collision", "drivable_area_compliance", "progress", "progress_ratio", "min_ttc", "comfort"):
        if k in metrics:
            print(f"  {k:26s} {metrics[k]:.3f}")
    if args.render == "refined":  # six splat + diffusion-refiner cameras beside the BEV
        from drivesim.cli.refiner import simulate_refined

        video = simulate_refined(args, scenario, res.trajectory, out)
    elif args.render == "splat":  # six splat cameras beside the BEV
        from drivesim.render.splat.sensors import write_surround_video

        t0 = time.perf_counter()
        video = write_surround_video(scenario, res.trajectory, out / f"{file_name(scenario.name)}_splat.{args.format}",
                                     rig=args.rig, size=args.render_size, every=args.render_every)
        print(f"rendered {-(-len(res.trajectory['x']) // args.render_every)} surround frames ({args.rig}, {args.render_size} per camera) "
              f"in {time.perf_counter() - t0:.1f} s")
    else:
        video = write_bev_video(scenario, res.trajectory, out / f"{file_name(scenario.name)}.{args.format}")
    print(f"wrote {out / 'metrics.json'} and {video}" + (f" ({len(unread)} other file(s) in {args.scenarios} could "
          "not be read: listed above)" if unread else ""))
    return 0 if res.status[0] == "ok" else 1


def cmd_evaluate(args) -> int:
    out = output_dir(args.out)  # an unwritable folder, or results already there, stop it before anything runs
    previous_results(out, args)
    skipped = {}
    if args.scenarios:
        from drivesim.io.scenario_file import scenarios_hash

        scenarios, meta = logged_source(args)
        skipped = skipped_files(meta["load_errors"])
        meta.update(suite_hash=hashlib.sha256(f"{scenarios_hash(scenarios)} {meta['traffic']}".encode()).hexdigest(),
                    seed=0)
        scenarios = scenarios[: args.limit] if args.limit else scenarios
        meta.update(suite=Path(args.scenarios).name, scenarios=len(scenarios))
    else:
        suite, digest, scenarios = load_scenarios(args.suite, args.limit)
        meta = {"suite": suite.name, "suite_hash": digest, "seed": suite.seed, "scenarios": len(scenarios)}
    ev = evaluate_and_write(scenarios, args.policies, meta, out, args, skipped=skipped)
    return finish(args, errors=int((ev.results["status"] == "error").sum()), skipped=len(skipped))


def evaluate_and_write(scenarios, policy_specs: str, meta: dict, out: Path, args, skipped: dict | None = None):
    """Evaluate the comma-separated policies (the expert first, as progress reference), write the
    outputs and return the Evaluation. Rows stream to results.jsonl as they finish."""
    from drivesim.core.scenario import ScenarioError, check_unique_names
    from drivesim.io.results import RowStream
    from drivesim.sim.evaluate import EvalConfig, evaluate

    try:  # rows are told apart by scenario name: duplicates are an error before anything runs
        check_unique_names(scenarios)
    except ScenarioError as exc:
        raise SystemExit(f"error: {exc}") from None

    from drivesim.train.policies import split_specs

    specs = split_specs(policy_specs)
    kwargs = policy_args(getattr(args, "policy_args", None))
    policies = [make_policy(p, kwargs if ":" in p else None) for p in specs]
    blind = [s for s, p in zip(specs, policies) if getattr(p, "needs_cameras", False) and not getattr(args, "cameras", None)]
    if blind:
        raise SystemExit(f"error: {', '.join(blind)} drive(s) from cameras: add --cameras splat|refined")
    check_policies(specs, policies)
    expert = next((p for s, p in zip(specs, policies) if s == EXPERT_NAME), None) or make_policy(EXPERT_NAME)
    limits = {k: getattr(args, k, None) for k in ("step_timeout", "scenario_timeout")}  # None: EvalConfig's default
    cfg = EvalConfig(batch_size=args.batch_size, device=args.device, policy_every=args.policy_every,
                     cameras=camera_factory(args), **{k: v for k, v in limits.items() if v is not None})
    try:
        cfg.validate_config()
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    pairs = [(EXPERT_NAME, expert)] + [(s, p) for s, p in zip(specs, policies) if p is not expert]
    cameras = f"cameras {args.cameras} {args.rig} {args.camera_size} {args.refiner}" if getattr(args, "cameras", None) else ""
    inputs = lambda spec: f"{json.dumps(kwargs, sort_keys=True) if kwargs and ':' in spec else ''} {cameras}"
    tags = {p.name: {"suite_hash": meta.get("suite_hash") or meta.get("set_hash", ""), "seed": meta.get("seed"),
                     "policy_hash": policy_hash(s, p, cfg.policy_every, inputs(s))} for s, p in pairs}
    done = resumed_rows(out, args, meta, {k: v["policy_hash"] for k, v in tags.items()})
    runner = make_runner(args)
    t0 = time.perf_counter()
    for stale in ("results.csv", "results.json"):  # rewritten at the end: never beside rows of another run
        (out / stale).unlink(missing_ok=True)
    with RowStream(out / "results.jsonl", keep=done) as stream:  # each job's rows as they arrive (kept if cut off)
        ev = evaluate(scenarios, policies, expert=expert, config=cfg, runner=runner, on_rows=stream.append,
                      done_rows=done, skipped=skipped, tags=tags)
    meta.update(policies=", ".join(tags), wall_time_s=round(time.perf_counter() - t0, 1),
                backend=getattr(args, "backend", "local"), resumed_rows=len(done), skipped_files=len(skipped or {}))
    if args.cameras:
        meta["cameras"] = f"{args.cameras} {args.rig} {args.camera_size}"
    names = {p.name: s for s, p in pairs}
    write_outputs(ev, out, meta, videos=0 if args.no_video else args.videos, replay=replay_command(args, names))
    return ev


def make_runner(args):
    """None (the local backend) or a Ray runner for `--backend ray [--address ADDR]`."""
    opts = backend_options(args)
    if opts is None:
        return None
    from drivesim.distributed.ray_backend import ClusterError, RayRunner

    try:
        return RayRunner(**opts)
    except ClusterError as exc:
        raise SystemExit(f"error: {exc}") from None


def cmd_import(args) -> int:
    from drivesim.io.scenario_file import save_scenario, scenario_hash

    importer = IMPORTERS[args.source]
    if importer.per_file:
        return cmd_import_per_file(args)
    t0 = time.perf_counter()
    out = output_dir(args.out)
    try:
        scenarios, errors = importer.load(args.path, **{k: getattr(args, k) for k in importer.options})
    except (ValueError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None
    report_skipped(errors, args.path)
    print(f"{'scenario':44s} {'agents':>6s} {'lanes':>5s} {'steps':>5s}  hash")
    for s in scenarios:
        s.meta = {**s.meta, "imported_by": f"drivesim {drivesim.__version__}"}
        save_scenario(s, out / f"{file_name(s.name)}.npz")
        print(f"{s.name[:44]:44s} {s.num_agents:6d} {len(s.road.lanes):5d} {s.num_steps:5d}  {scenario_hash(s)[:12]}")
    print(f"imported {len(scenarios)} scenario(s) from {args.source} into {out} in {time.perf_counter() - t0:.1f} s"
          + (f"; {len(errors)} skipped (listed above)" if errors else ""))
    return finish(args, skipped=len(errors)) if scenarios else EXIT_FAILED


def cmd_bench(args) -> int:
    from drivesim.sim.bench import main as bench_main

    return bench_main((["--quick"] if args.quick else []) + ["--device", args.device])


SHIPPED_POLICIES = ("il_base.pt", "rl_rare.pt")  # in policies/: the IL policy and its RL post-training on rare events


def cmd_demo(args) -> int:
    """The nominal suite, then generated held-out rare events of the five types (the training
    report's held-out knobs and seeds), each with the built-in policies and the shipped IL and RL
    checkpoints; the rare-event table per type shows what RL post-training changed."""
    from drivesim.io.scenario_file import scenarios_hash
    from drivesim.train.pipeline import HELDOUT_KNOBS, RARE_TYPES, heldout_events

    shipped = [str(p) for p in (Path(drivesim.__file__).resolve().parents[1] / "policies" / f for f in SHIPPED_POLICIES) if p.exists()]
    args.suite, args.limit, args.batch_size, args.no_video, args.policy_every, args.scenarios = "nominal", None, 64, False, 1, None
    args.videos, args.cameras, args.traffic = 3, None, None
    args.policies = ",".join(["constant_velocity", "idm", "pdm_expert", *shipped])
    nominal = cmd_evaluate(args)
    rare_out = output_dir(Path(args.out) / "rare")
    previous_results(rare_out, args)
    print(f"\nheld-out rare events: {args.events} of each of {', '.join(RARE_TYPES)} (knobs outside the training ranges: "
          + "; ".join(f"{e} " + ", ".join(f"{k} {v[0]:g}-{v[1]:g}" for k, v in HELDOUT_KNOBS[e].items()) for e in RARE_TYPES)
          + "; none of them trained on)")
    scenarios, seeds, event_of = [], {}, {}
    for event in RARE_TYPES:
        sc, prov = heldout_events(event, args.events, progress=True)
        scenarios, seeds[event] = scenarios + sc, prov["seed"]
        event_of.update((s.name, event) for s in sc)
    meta = {"suite": f"held-out rare x{len(scenarios)}", "set_hash": scenarios_hash(scenarios), "seeds": seeds,
            "scenarios": len(scenarios)}
    ev = evaluate_and_write(scenarios, args.policies, meta, rare_out, args)
    res = ev.results[ev.results["status"] == "ok"].copy()
    res["event"] = res["scenario"].map(event_of)
    table = res.pivot_table(index="policy", columns="event", values=["success", "collision_any"], aggfunc="mean")
    print("\nheld-out rare events by type (success | collision rate):")
    print(table.round(2).to_string())
    write_demo_cameras(Path(args.out))
    return max(nominal, finish(args, errors=int((ev.results["status"] == "error").sum())))


def write_demo_cameras(out: Path, seconds: float = 5.0) -> None:
    """The first nominal scenario driven by the expert: `seconds` of six splat cameras beside the BEV at 5 fps."""
    import dataclasses

    from drivesim.core.scenario import ScenarioBatch
    from drivesim.render.splat.sensors import write_surround_video
    from drivesim.sim.rollout import rollout

    t0 = time.perf_counter()
    scenario = dataclasses.replace(load_scenarios("nominal", limit=1)[2][0], duration=seconds)
    res = rollout(ScenarioBatch.build([scenario]), make_policy("pdm_expert"), record=True)
    path = write_surround_video(scenario, res.trajectory, out / f"cameras_{file_name(scenario.name)}.mp4", rig="nuscenes",
                                size=(200, 112), every=2)
    print(f"\nwrote {path} (splat cameras, nuScenes rig, {seconds:g} s, {time.perf_counter() - t0:.1f} s to render)")


class Parser(argparse.ArgumentParser):
    """Every parser and sub-parser of the command: defaults shown after each option's help."""

    def __init__(self, *args, **kwargs):
        kwargs["formatter_class"] = HelpFormatter
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="drivesim", description=DESCRIPTION)
    add_global_options(p, drivesim.__version__)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    s = sub.add_parser("simulate", help=COMMANDS["simulate"])
    s.add_argument("--suite", default="tiny", help="suite YAML (path or name in scenarios/); default: tiny")
    s.add_argument("--scenarios", default=None, help="instead of a suite: scenario files (a .npz or a folder, e.g. from `import`)")
    s.add_argument("--traffic", default=None, choices=TRAFFIC_CHOICES, help=TRAFFIC_HELP)
    s.add_argument("--scenario", default="0", help="scenario name or index in the suite (default 0)")
    s.add_argument("--map", default=None, help="instead of a suite: a procedural scenario on this map type "
                   "(straight | curved | merge | intersection) with default traffic")
    s.add_argument("--seed", type=int, default=0, help="seed of the procedural scenario (with --map)")
    s.add_argument("--policy", default="pdm_expert", help="constant_velocity | idm | pdm_expert | a .pt checkpoint | module:Class")
    s.add_argument("--format", choices=["mp4", "gif"], default="mp4", help="video container of the written video")
    s.add_argument("--render", choices=["bev", "splat", "refined"], default="bev",
                   help="bev: the BEV video; splat: six Gaussian-splat cameras beside the BEV; refined: splat + diffusion refiner")
    s.add_argument("--refiner", default=None, help="with --render refined: the refiner checkpoint (default policies/refiner)")
    s.add_argument("--render-size", default="200x112", help="WxH of each camera with --render splat (default 200x112)")
    s.add_argument("--rig", default="nuscenes", help="camera rig: nuscenes | pandaset | a rig YAML (default nuscenes)")
    s.add_argument("--render-every", type=positive_int, default=1, help="with --render splat: one frame every N steps (default 1)")
    s.add_argument("-o", "--out", default="out/simulate", help="output folder (metrics.json and the video)")
    s.set_defaults(func=cmd_simulate)
    e = sub.add_parser("evaluate", help=COMMANDS["evaluate"],
                       epilog=EXIT_CODES_HELP)
    e.add_argument("--suite", default="nominal", help="suite YAML (path or name in scenarios/)")
    e.add_argument("--scenarios", default=None, help="instead of a suite: scenario files (a .npz or a folder, e.g. from `import`)")
    e.add_argument("--traffic", default=None, choices=TRAFFIC_CHOICES, help=TRAFFIC_HELP)
    e.add_argument("--policies", default="constant_velocity,idm,pdm_expert",
                   help="comma-separated policies: built-in names, .pt checkpoints (e.g. policies/il_base.pt, found from "
                        "anywhere), module:Class or path/to/file.py:Class, with constructor arguments as Class(k=1) "
                        "(docs/policies.md)")
    e.add_argument("--policy-args", default=None, metavar="JSON",
                   help="constructor arguments of the user classes among --policies, as a JSON object")
    e.add_argument("--limit", type=positive_int, default=None, help="only the first N scenarios (N >= 1)")
    e.add_argument("--batch-size", type=positive_int, default=64, help="scenarios simulated together")
    e.add_argument("--videos", type=int, default=3, metavar="N",
                   help="BEV videos of the N worst failures of each policy (as it drove them), shown in the report")
    e.add_argument("--no-video", action="store_true", help="no failure videos (as --videos 0)")
    add_camera_arguments(e, "evaluate")
    e.add_argument("--policy-every", type=positive_int, default=1, help="simulation steps (0.1 s) per policy decision (default 1)")
    e.add_argument("--step-timeout", type=float, default=None, metavar="S",
                   help="seconds one policy call may take, else its scenarios are error rows 'timed out' and the rest runs "
                        "on (default 60; 0 = off, for debugging)")
    e.add_argument("--scenario-timeout", type=float, default=None, metavar="S",
                   help="seconds one rollout (a --batch-size chunk of scenarios) may take (default 1800; 0 = off)")
    add_backend_arguments(e, "jobs (one policy on one --batch-size chunk of scenarios) run as Ray tasks; same results "
                             "as local")
    e.add_argument("-o", "--out", default="out/evaluate", help="output folder (results, summary.json, report.html, "
                   "thumbnails, videos)")
    add_results_arguments(e)
    e.set_defaults(func=cmd_evaluate)
    i = sub.add_parser("import", help=COMMANDS["import"],
                       epilog="sources (io/importers.py):\n" + importers.describe(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    i.add_argument("source", choices=sorted(IMPORTERS), help="log format (listed below)")
    i.add_argument("path", help="a file or folder of the source (nuscenes: the dataroot)")
    i.add_argument("--version", default="v1.0-mini", help="nuScenes version (nuscenes only)")
    i.add_argument("-o", "--out", default="out/scenarios", help="folder for the .npz scenario files")
    add_allow_errors(i)
    add_import_arguments(i)
    i.set_defaults(func=cmd_import)
    add_realism_command(sub)
    t = sub.add_parser("train", help=COMMANDS["train"])
    tsub = t.add_subparsers(dest="component", required=True)
    add_train_traffic_command(tsub)
    import drivesim.cli.train as cli_train
    from drivesim.train import camera_il, il, pipeline

    ti = tsub.add_parser("il", help="driving policy by imitation of the PDM-Closed-style expert (BC + DAgger; "
                         "--init CKPT fine-tunes)", description=il.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli_train.add_il_arguments(ti)
    ti.set_defaults(func=cli_train.cmd_train_il)
    cli_train.add_rl_arguments(tsub.add_parser("rl", help="PPO post-training of an IL policy in the batched simulator"))
    cli_train.add_camera_il_arguments(tsub.add_parser("camera", help="a camera policy by imitation of the expert or "
                                                     "distillation of a vector policy, on rendered frames (BC + DAgger)",
                                                     description=camera_il.__doc__))

    rp = sub.add_parser("report", help=COMMANDS["report"])
    rsub = rp.add_subparsers(dest="report", required=True)
    rt = rsub.add_parser("training", help="train il, il_rare, rl_nominal, rl_rare x 3 seeds, evaluate on held-out "
                         "cut-ins and nominal scenarios (44.5 min measured on 2 cores, 2026-12-07)", description=pipeline.__doc__,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    cli_train.add_pipeline_arguments(rt)
    rt.set_defaults(func=cli_train.cmd_report_training)
    b = sub.add_parser("bench", help=COMMANDS["bench"])
    b.add_argument("--quick", action="store_true", help="small sizes only")
    b.set_defaults(func=cmd_bench)
    add_event_commands(sub)
    add_sensor_commands(sub)
    add_refiner_commands(sub)
    d = sub.add_parser("demo", help=COMMANDS["demo"])
    d.add_argument("-o", "--out", default="out/demo", help="output folder (cut-in results in OUT/cutins)")
    d.add_argument("--events", type=positive_int, default=20, help="held-out rare events per type (default 20, five types)")
    d.add_argument("--overwrite", action="store_true", help="replace the results of an earlier demo in --out")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    from drivesim.core.safe_io import OutputError

    args = build_parser().parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    try:
        return args.func(args)
    except OutputError as exc:  # a full or unwritable output folder: the path and the reason, no traceback
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())

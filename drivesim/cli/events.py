"""`drivesim generate` and `drivesim mine`: rare-event scenario sets and failure mining.

Kept beside cli.py (which registers them) so that the command file stays readable.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import yaml

from drivesim.cli.options import add_allow_errors, finish, report_skipped
from drivesim.core.config import ConfigError, apply_overrides
from drivesim.cli.overview import COMMANDS

KNOB_FLAGS = ("ttc", "gap", "band", "headway", "ego_speed", "rel_speed", "lat_speed", "density")


def parse_range(text: str, where: str) -> tuple[float, float]:
    """`0.8:2.0` -> (0.8, 2.0); `1.5` -> (1.5, 1.5)."""
    try:
        parts = [float(p) for p in str(text).split(":")]
    except ValueError:
        raise SystemExit(f"error: {where}: expected a number or a range lo:hi, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or parts[0] > parts[1]:
        raise SystemExit(f"error: {where}: expected lo:hi with lo <= hi, got {text!r}")
    return (parts[0], parts[1])


def knob_overrides(args) -> dict:
    over = {}
    for name in KNOB_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            over[name] = parse_range(value, f"--{name.replace('_', '-')}")
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"error: --set expects key=value, got {item!r}")
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str) and ":" in parsed:
            parsed = parse_range(parsed, f"--set {key}")
        node = over
        *path, last = key.split(".")
        for p in path:
            node = node.setdefault(p, {})
        node[last] = tuple(parsed) if isinstance(parsed, list) else parsed
    return over


def cmd_generate(args) -> int:
    from drivesim.events import EVENTS
    from drivesim.events.real_cut_in import RealCutInConfig, real_set_counts
    from drivesim.io.scenario_file import ScenarioFileError, load_scenarios
    from drivesim.io.scenario_file import save_set, set_path
    from drivesim.events.summary import plot_event_set
    from drivesim.events.generate import LabelConfig, generate_real_set, generate_set, outcome_table, summary

    real, errors = args.scenes is not None, []
    if real and args.event != "cut-in":
        raise SystemExit("error: --scenes (real scenes) is for cut-in only")
    base = RealCutInConfig() if real else EVENTS[args.event].config()
    where = "real_cut_in" if real else args.event.replace("-", "_")
    try:
        config = apply_overrides(base, knob_overrides(args), where=where)
        config.validate_config(where)
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    label = LabelConfig(expert_check=not args.no_expert_check, workers=args.workers, device=args.device)
    t0 = time.perf_counter()
    if real:
        try:
            scenes, errors = load_scenarios(args.scenes)
        except ScenarioFileError as exc:
            raise SystemExit(f"error: {exc}") from None
        report_skipped(errors, args.scenes)
        try:
            es = generate_real_set(scenes, args.n, seed=args.seed, config=config, label=label)
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from None
        print(real_set_counts(es.header))
    else:
        es = generate_set(args.event, args.n, seed=args.seed, config=config, label=label)
    out = set_path(args.out)
    path, set_hash = save_set(es.scenarios, es.table, {**es.header, "lineage": {"command": "drivesim generate"}}, out)
    es.header["set_hash"] = set_hash
    table_path = path.with_name(path.name.removesuffix(".set.npz") + ".csv")
    es.table.to_csv(table_path, index=False)
    png = plot_event_set(es.scenarios, es.table, es.header, path.with_name(path.name.removesuffix(".set.npz") + ".png"))
    print(summary(es.table).T.to_string(header=False))
    print("\n" + outcome_table(es.table).to_string(index=False))
    print(f"\n{len(es.scenarios)} {es.header['generator']} scenarios in {time.perf_counter() - t0:.1f} s -> {path} (set {set_hash[:12]})")
    print(f"table {table_path}\nsummary {png}")
    if errors:
        print(f"{len(errors)} scene file(s) in {args.scenes} could not be read (listed above)")
    return finish(args, skipped=len(errors))


def cmd_mine(args) -> int:
    from drivesim.cli.options import make_policy
    from drivesim.io.scenario_file import load_scenarios
    from drivesim.io.scenario_file import save_set, set_path
    from drivesim.events.mining import MineConfig, mine

    scenarios, errors = load_scenarios(args.suite) if Path(args.suite).exists() else _suite(args.suite)
    report_skipped(errors, args.suite)
    if not scenarios:
        raise SystemExit(f"error: no scenario could be loaded from {args.suite}")
    policy = make_policy(args.policy)
    cfg = MineConfig(variations=args.variations, seed=args.seed, min_progress=args.min_progress, learned=args.learned)
    result = mine(scenarios, policy, cfg)
    print(result.failures.to_string(index=False) if len(result.failures) else "no failure found")
    if not result.scenarios:
        return finish(args, skipped=len(errors))
    header = {"generator": "mine", "policy": args.policy, "source": str(args.suite), "seed": args.seed,
              "config": {"variations": args.variations, "min_progress": args.min_progress, "learned": args.learned},
              "lineage": {"command": "drivesim mine", "parents": sorted(set(result.table["parent"]))}}
    path, set_hash = save_set(result.scenarios, result.table, header, set_path(args.out))
    result.table.to_csv(path.with_name(path.name.removesuffix(".set.npz") + ".csv"), index=False)
    print(f"\n{len(result.failures)} failures of {len(scenarios)} scenarios; {len(result.scenarios)} variations -> {path} "
          f"(set {set_hash[:12]}); the policy fails {result.variation_failure_rate:.0%} of them"
          + (f"; {len(errors)} file(s) could not be read (listed above)" if errors else ""))
    return finish(args, skipped=len(errors))


def _suite(name: str):
    from drivesim.cli.options import load_scenarios

    return load_scenarios(name)[2], []


def add_commands(sub) -> None:
    from drivesim.events import EVENTS

    g = sub.add_parser("generate", help=COMMANDS["generate"],
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=(
                           "Generate N scenarios of a rare event with explicit knobs; each is calibrated by simulation,\n"
                           "measured (TTC, gap, required deceleration at the event), labelled avoidable or not (the\n"
                           "analytic braking bound of docs/definitions.md and a closed-loop run of the expert planner) and\n"
                           "written to one scenario set file with a CSV table and a PNG summary.\n\n"
                           "events:\n" + "\n".join(f"  {k:11s} {e.description}" for k, e in EVENTS.items()) +
                           "\n\nexamples:\n  drivesim generate cut-in --n 1000 --ttc 0.8:2.0 --seed 0 -o out/cutins\n"
                           "  drivesim generate cut-in --n 200 --band 0:1 -o out/hard  (TTC from the bound to bound + 1 s)\n"
                           "  drivesim generate hard-brake --n 100 --set decel=6:9 -o out/brakes"))
    g.add_argument("event", choices=sorted(EVENTS), help="the rare event to generate (listed above)")
    g.add_argument("--n", type=int, default=100, help="number of scenarios (default 100)")
    g.add_argument("--seed", type=int, default=0, help="seed of the knob draws and the background traffic")
    g.add_argument("-o", "--out", default="out/events", help="output path; writes PATH.set.npz, PATH.csv, PATH.png")
    g.add_argument("--ttc", help="TTC range lo:hi (s) when the event starts (cut-in, merge, stalled, pedestrian)")
    g.add_argument("--gap", help="gap range lo:hi (m) at the cut, instead of --ttc (cut-in, merge)")
    g.add_argument("--band", help="criticality above the avoidability bound lo:hi (s), e.g. 0:1")
    g.add_argument("--headway", help="time headway range lo:hi (s) when the leader brakes (hard-brake)")
    g.add_argument("--ego-speed", dest="ego_speed", help="ego speed range lo:hi (m/s)")
    g.add_argument("--rel-speed", dest="rel_speed", help="relative speed range lo:hi (m/s)")
    g.add_argument("--lat-speed", dest="lat_speed", help="cutter lateral speed range lo:hi (m/s)")
    g.add_argument("--density", help="background vehicles per lane per 100 m, lo:hi")
    g.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other knob of the event's config, e.g. --set side=left --set bound.max_brake=5")
    g.add_argument("--scenes", help="cut-in only: rewrite a vehicle of these real scenes (files from `drivesim import`) "
                   "into a cut-in instead of generating procedural ones")
    g.add_argument("--no-expert-check", action="store_true", help="label with the analytic bound only (faster)")
    g.add_argument("--workers", type=int, default=2, help="processes for labelling (default 2)")
    add_allow_errors(g)
    g.set_defaults(func=cmd_generate)

    m = sub.add_parser("mine", help=COMMANDS["mine"],
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=(
                           "Run POLICY on the scenarios of SUITE (a scenario set, a scenario file or folder, or a suite\n"
                           "name / YAML), keep the failures (collision, leaving the road, progress below --min-progress of\n"
                           "the expert's), and write variations around each: generated events re-sampled with their knobs\n"
                           "perturbed, other scenarios with their traffic re-sampled (or alternative futures from the\n"
                           "learned traffic model with --learned). The policy is run on the variations too."))
    m.add_argument("--policy", required=True, help="policy to mine: a built-in name (pdm_expert, idm, constant_velocity, ...), a .pt "
                   "checkpoint or module:Class, as for evaluate --policies")
    m.add_argument("--suite", required=True, help="scenario set (*.set.npz), scenario file/folder, or suite")
    m.add_argument("-o", "--out", default="out/mined", help="output path; writes PATH.set.npz and PATH.csv")
    m.add_argument("--variations", type=int, default=8, help="variations per failure (default 8)")
    m.add_argument("--min-progress", type=float, default=0.2, help="progress ratio to the expert below which a run fails")
    m.add_argument("--learned", action="store_true", help="also sample alternative futures with the learned traffic model")
    m.add_argument("--seed", type=int, default=0, help="seed of the variations")
    add_allow_errors(m)
    m.set_defaults(func=cmd_mine)

"""`drivesim realism` and `drivesim train traffic`: the learned traffic model's commands.

`realism` scores traffic models (replay, rule-based, learned) against real logs with the
WOSAC-style meta-metric (traffic_model/realism.py); `train traffic` trains the learned model
(traffic_model/train.py). Registered from commands.py (`add_realism_command` on the top-level
sub-parsers, `add_train_traffic_command` on `train`'s).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from drivesim.cli.options import add_allow_errors, finish, output_dir, report_skipped
from drivesim.core.safe_io import atomic_write_text
from drivesim.cli.overview import COMMANDS


def add_realism_command(sub) -> None:
    r = sub.add_parser("realism", help=COMMANDS["realism"])
    r.add_argument("--model", default="replay,idm_mobil,constant_velocity",
                   help="comma-separated: replay | idm_mobil | constant_velocity | hybrid | learned")
    r.add_argument("--checkpoint", default=None, help="learned traffic model folder (default: the shipped policies/traffic)")
    r.add_argument("--scenes", default="all", help="all | held-out (the learned model's held-out scenes) | NAME,... (default all)")
    r.add_argument("--seed", type=int, default=0, help="seed of the learned model's 32 stochastic rollouts (default 0)")
    r.add_argument("--temperature", type=float, default=None, help="sampling temperature of the learned model (default: its card's)")
    r.add_argument("--data", default=str(Path(os.environ.get("DRIVESIM_DATA", "../shared/data")) / "scenarionet_nuscenes"),
                   help="folder of scenario files (.npz) or ScenarioNet pickles (default: the shared nuScenes scenes)")
    r.add_argument("-o", "--out", default="out/realism", help="output folder (realism table and histogram plots)")
    add_allow_errors(r)
    r.set_defaults(func=cmd_realism)


def add_train_traffic_command(tsub) -> None:
    tt = tsub.add_parser("traffic", help="learned traffic model on real nuScenes logs + procedural traffic (6.5 min measured on one CPU thread; --minutes caps it)")
    tt.add_argument("-o", "--out", default="out/traffic", help="artifact folder: model.pt, card.json, training_curve.png")
    tt.add_argument("--minutes", type=float, default=15.0, help="wall-clock cap (default 15); past it training stops early")
    tt.add_argument("--seed", type=int, default=0, help="seed of the procedural scenes, the network and the sampling")
    tt.add_argument("--iterations", type=int, default=None, help="behaviour-cloning iterations (default: the config's)")
    tt.add_argument("--rounds", type=int, default=None, help="closed-loop (DAgger) rounds (default: the config's)")
    tt.add_argument("--procedural", type=int, default=None, help="procedural training scenarios (default: the config's)")
    tt.add_argument("--held-out", default=None, help="comma-separated real scenes never trained on (default: the config's)")
    tt.add_argument("--data", default=str(Path(os.environ.get("DRIVESIM_DATA", "../shared/data")) / "scenarionet_nuscenes"),
                    help="folder of ScenarioNet nuScenes pickles (default: the shared scenes); 'none' = procedural only")
    tt.set_defaults(func=cmd_train_traffic)


def learned_behavior(args):
    """The learned traffic model of `--checkpoint` (default: the shipped policies/traffic)."""
    from drivesim.traffic_model.model import DEFAULT_ARTIFACT, LearnedTraffic

    try:
        return LearnedTraffic.load(args.checkpoint or DEFAULT_ARTIFACT, temperature=args.temperature, seed=args.seed,
                                   device=args.device)
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None


def select_scenes(scenarios, spec: str, held_out: list[str]):
    """`all`, `held-out` (the learned model's held-out scenes) or comma-separated names/substrings."""
    if spec == "all":
        return scenarios
    names = held_out if spec == "held-out" else [n for n in spec.split(",") if n]
    pick = [s for s in scenarios if any(n in s.name for n in names)]
    missing = [n for n in names if not any(n in s.name for s in scenarios)]
    if missing or not pick:
        raise SystemExit(f"error: scene(s) {missing or names} not found; have {', '.join(s.name for s in scenarios)}")
    return pick


def cmd_realism(args) -> int:
    from drivesim.traffic_model.realism import plot, realism

    out = output_dir(args.out)
    scenarios, load_errors = load_logged(args.data)
    behavior = learned_behavior(args) if "learned" in args.model.split(",") or args.scenes == "held-out" else None
    if behavior is not None:
        card = behavior.card
        print(f"learned traffic model {card.get('sha256', '')[:12]} (temperature {behavior.temperature:g}, seed {behavior.seed}); "
              f"held-out scenes: {', '.join(card.get('lineage', {}).get('held_out_names', []))}")
    scenarios = select_scenes(scenarios, args.scenes, (behavior.card.get("lineage", {}).get("held_out_names", []) if behavior else []))
    trained_on = set(behavior.card.get("lineage", {}).get("real_scenes", {})) if behavior else set()
    overlap = [s.name for s in scenarios if s.name in trained_on]
    if overlap and "learned" in args.model.split(","):
        print(f"warning: the learned model was trained on {len(overlap)} of these scenes ({', '.join(overlap)}); "
              "use --scenes held-out for its held-out realism", file=sys.stderr)
    rows = []
    for model in args.model.split(","):
        t0 = time.perf_counter()
        result = realism(scenarios, model, device=args.device, behavior=behavior if model == "learned" else None)
        plot(result, out / f"realism_{model}.png")
        result.table.insert(0, "model", model)
        atomic_write_text(out / f"realism_{model}.csv", result.table.to_csv(index=False))
        mean = result.table.drop(columns=["model", "scenario"]).mean()
        rows.append({"model": model, **mean.to_dict(), "seconds": round(time.perf_counter() - t0, 1)})
        for name in result.skipped:
            print(f"warning: {name} is too short for 1 s of history + 8 s, skipped", file=sys.stderr)
    import pandas as pd

    summary = pd.DataFrame(rows).set_index("model")
    atomic_write_text(out / "realism_summary.csv", summary.to_csv())
    print(summary.T.to_string(float_format=lambda v: f"{v:.4f}"))
    print(f"scored {len(scenarios)} scene(s)" + (f"; {len(load_errors)} file(s) in {args.data} could not be read "
          "(listed above)" if load_errors else "") + f"; wrote {out}/realism_summary.csv and realism_<model>.png / .csv")
    return finish(args, skipped=len(load_errors))


def load_logged(path: str):
    """Logged scenarios from a folder of scenario files (.npz) or of ScenarioNet pickles (.pkl):
    (scenarios, errors), each file that could not be read listed on stderr with the reason."""
    from drivesim.io.scenario_file import ScenarioFileError, load_scenarios as load_files

    p = Path(path)
    try:  # a folder of pickles is recognised by io/importers.py and imported on the fly
        scenarios, errors = load_files(p)
    except (ScenarioFileError, ValueError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None
    report_skipped(errors, p)
    return scenarios, errors


def cmd_train_traffic(args) -> int:
    from drivesim.core.config import ConfigError, apply_overrides
    from drivesim.traffic_model.train import TrafficTrainConfig, train_traffic

    over = {"seed": args.seed, "minutes": args.minutes}
    for key, value in (("iterations", args.iterations), ("rounds", args.rounds), ("procedural_scenarios", args.procedural)):
        if value is not None:
            over[key] = value
    if args.held_out is not None:
        over["held_out"] = [n for n in args.held_out.split(",") if n]
    try:
        cfg = apply_overrides(TrafficTrainConfig(), over, where="train traffic")
    except ConfigError as exc:
        raise SystemExit(f"error: {exc}") from None
    real_dir = None if args.data == "none" else Path(args.data)
    if real_dir is not None and not real_dir.is_dir():
        raise SystemExit(f"error: no real logs at {real_dir} (set DRIVESIM_DATA, or --data none for procedural traffic only)")
    try:
        res = train_traffic(cfg, args.out, real_dir=real_dir)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None
    card, m = res.card, res.card["metrics"]
    held = m.get("held_out_one_step") or {}
    print(f"trained {card['parameters']} parameters in {card['training']['total_seconds']:.0f} s "
          f"({card['training']['iterations']} iterations{'' if card['training']['finished'] else ', stopped at --minutes'}); "
          f"final loss {m['train_loss_last100']:.3f}" + (f", held-out one-step NLL {held['nll']:.3f}" if held else ""))
    print(f"held-out scenes: {', '.join(card['lineage']['held_out_scenes']) or 'none'}")
    print(f"wrote {res.card_path} (sha256 {card['sha256'][:12]}), {Path(args.out) / 'model.pt'} and {Path(args.out) / 'training_curve.png'}")
    return 0

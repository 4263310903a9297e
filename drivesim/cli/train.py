"""`drivesim train il`, `drivesim train rl` and `drivesim report training`: the options and
commands of the policy trainers (the library is `train/il.py`, `train/ppo.py`, `train/pipeline.py`)."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from drivesim.core.config import ConfigError, apply_overrides, tuples_from_json
from drivesim.core.safe_io import atomic_write_text
from drivesim.distributed import ClusterError, add_backend_arguments, backend_options
from drivesim.distributed.ray_backend import rollout_actors
from drivesim.train.il import ILConfig, train_il
from drivesim.train.pipeline import QUICK, VARIANTS, PipelineConfig, run_pipeline
from drivesim.train.policy_net import load_policy
from drivesim.train.ppo import PPOConfig, train_rl
from drivesim.train.rl_extras import HELDOUT_SEED, RARE_EVENTS, heldout_outcomes, training_scenarios


def add_il_arguments(parser) -> None:
    """Options of `drivesim train il`."""
    parser.add_argument("-o", "--out", default="out/il", help="run folder: policy.pt + policy.json (card), curves.png, "
                        "metrics.json; last.pt and data.pt let an interrupted run resume (rerun the same command)")
    parser.add_argument("--overwrite", action="store_true", help="discard a run already in --out (its last.pt and data.pt) "
                        "and start over; without it the run there resumes, and a run with another config, init or "
                        "training scenarios is refused")
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenario draws, the network and the shuffling (default 0)")
    parser.add_argument("--suite", default="nominal", help="suite whose scenario groups are drawn again for training "
                        "(path or name in scenarios/; the suite's own scenarios stay held out), or 'none' (default nominal)")
    parser.add_argument("--rare", type=int, default=None, help="generated rare events mixed in, split over cut-in, "
                        "hard-brake, stalled, merge, pedestrian (default 0)")
    parser.add_argument("--real", action="store_true", help="add the training split of the real scenes under $DRIVESIM_DATA "
                        "(nuScenes, AV2, CommonRoad, WOMD, GPUDrive; `python -m drivesim.train.il_data --heldout` lists the "
                        "held-out ones) with hybrid log traffic, when present (their licenses then apply to the policy)")
    parser.add_argument("--dagger", type=int, default=None, help="DAgger rounds after behaviour cloning (default 3)")
    parser.add_argument("--epochs", type=int, default=None, help="behaviour-cloning epochs on the expert's demonstrations (default 15)")
    parser.add_argument("--init", default=None, metavar="CKPT", help="fine-tune: start from this policy checkpoint (.pt) "
                        "and imitate the expert on the scenarios chosen here (e.g. --suite none --rare 200)")
    parser.add_argument("--minutes", type=float, default=None, help="wall-clock budget (default 6); past it training stops "
                        "and the policy is written")
    parser.add_argument("--name", default=None, help="policy name in evaluation tables (default il, or il_finetuned with --init)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any ILConfig field (JSON value), e.g. --set lr=3e-4 --set brake_weight=3; repeatable")


def il_config_from_args(args) -> ILConfig:
    over = {"seed": args.seed, "suite": args.suite, "real": bool(args.real)}
    for key in ("rare", "dagger", "epochs", "minutes"):
        if getattr(args, key, None) is not None:
            over[key] = getattr(args, key)
    for item in getattr(args, "set", []) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass  # a plain string
        node = over
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = tuple(value) if isinstance(value, list) else value
    return apply_overrides(ILConfig(), over, where="train il")


def cmd_train_il(args) -> int:
    """`drivesim train il`: imitation learning (or fine-tuning with --init); prints a summary."""
    try:
        cfg = il_config_from_args(args)
        res = train_il(cfg, args.out, init=args.init, name=args.name, overwrite=getattr(args, "overwrite", False))
    except (ConfigError, ValueError, OSError, FloatingPointError) as exc:  # OutputError: an unwritable --out
        raise SystemExit(f"error: {exc}") from None
    card, final = res.card, res.card["metrics"]["final"]
    t = card["training"]
    print(f"trained on {card['data']['samples']} states of {card['data']['scenarios']} scenarios, {t['epochs']} epochs in "
          f"{t['seconds']:.0f} s{'' if t['finished'] else ' (stopped at --minutes)'}; final loss {final.get('loss', math.nan):.3f}, "
          f"validation accuracy {final.get('val_acc', math.nan):.3f}")
    for r in res.rounds:
        if "success" in r:
            print(f"  round {r['round']}: success {r['success']:.3f}, collision rate {r['collision_any']:.3f}, PDMS {r['pdms']:.3f}")
    ex = card["metrics"]["expert_eval"]
    if ex:
        print(f"  expert:  success {ex['success']:.3f}, collision rate {ex['collision_any']:.3f}, PDMS {ex['pdms']:.3f}")
    sel = card["metrics"]["selected_round"]
    print(f"wrote {res.policy_path} (+ .json card; the weights of round {sel}), {Path(args.out) / 'curves.png'}")
    return 0


def add_rl_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.description = ("PPO post-training of an IL policy checkpoint in the batched simulator (CaRL-style reward, KL to the "
                     "IL policy). Writes policy.pt + policy.json (card), checkpoint.pt, curves.png, history.jsonl.")
    p.add_argument("--init", required=True, metavar="IL_CKPT", help="IL policy checkpoint (.pt from save_policy) to start from")
    p.add_argument("-o", "--out", default="out/rl", help="output folder (default out/rl)")
    p.add_argument("--seed", type=int, default=0, help="seed of PPO and of the generated training scenarios (default 0)")
    p.add_argument("--scenarios", default="rare", metavar="rare|nominal|EVENT|PATH",
                   help="training scenarios: rare (cut-in, hard-brake, stalled, merge, pedestrian), nominal (procedural "
                        "suite), one event name, a suite YAML, or scenario files (a .set.npz or a folder); default rare")
    p.add_argument("--n", type=int, default=200, help="number of training scenarios (default 200)")
    p.add_argument("--updates", type=int, default=None, help=f"PPO updates (default {PPOConfig.updates})")
    p.add_argument("--minutes", type=float, default=None,
                   help="wall-clock cap in minutes: stops early after the update that passes it (the KL schedule "
                        "still follows --updates)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt (same scenarios, init and config)")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in OUT (checkpoint.pt, policy.pt); "
                   "without --resume or --overwrite a folder holding a run is refused")
    p.add_argument("--config", default=None, help="YAML of PPOConfig overrides (unknown keys are errors)")
    p.add_argument("--eval", type=int, default=0, metavar="N",
                   help="afterwards, greedy IL vs RL on N held-out generated scenarios of the same kind (default 0: skip)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_backend_arguments(p, "rollouts collected by --workers Ray actors, the learner in this process; the same seed "
                             "gives the same updates as local", workers=True)
    p.set_defaults(func=cmd_train_rl)
    return p


def last_fifth_summary(lf: dict) -> str:
    """The last fifth of training in words; episode figures only when an episode finished there."""
    kl = f"KL to IL {lf['kl_il']:.3f}"
    if not all(math.isfinite(lf.get(k, math.nan)) for k in ("episode_return", "success_rate", "collision_rate")):
        return f"last fifth of training: no episode finished (train longer, or shorter scenarios), {kl}"
    return (f"last fifth of training: return {lf['episode_return']:.1f}, success {lf['success_rate']:.1%}, "
            f"collision {lf['collision_rate']:.1%}, {kl}")


def cmd_train_rl(args) -> int:
    import yaml

    over = {}
    if args.config:
        over = yaml.safe_load(Path(args.config).read_text()) or {}
    over["seed"] = args.seed
    for key in ("updates", "minutes"):
        if getattr(args, key) is not None:
            over[key] = getattr(args, key)
    if getattr(args, "device", None):
        over.setdefault("device", args.device)
    try:
        cfg = apply_overrides(PPOConfig(), over, where="train rl")
        scenarios, source = training_scenarios(args.scenarios, args.n, args.seed)
        if not scenarios:
            raise ValueError(f"no training scenarios from {args.scenarios!r}")
        print(f"{len(scenarios)} training scenarios ({args.scenarios}); PPO from {args.init}", flush=True)
        res = train_rl(scenarios, args.init, args.out, cfg, resume=args.resume, show_progress=not args.quiet, source=source,
                       rollouts=rollout_actors(backend_options(args)), overwrite=getattr(args, "overwrite", False))
    except (ConfigError, ValueError, OSError, FloatingPointError, ClusterError) as exc:  # OSError: OutputError too
        raise SystemExit(f"error: {exc}") from None
    t = res.card["training"]
    print(f"{t['updates']} updates, {t['env_steps']:,} env-steps in {t['seconds']:.0f} s "
          f"({t['env_steps_per_s']:,.0f} env-steps/s); {last_fifth_summary(t['last_fifth'])}")
    if args.eval:
        if args.scenarios not in ("rare", "nominal", *RARE_EVENTS):
            print("--eval: held-out scenarios are generated only for rare, nominal or an event name; skipped")
        else:
            held, _ = training_scenarios(args.scenarios, args.eval, HELDOUT_SEED)
            policies = {"il": load_policy(args.init, name="il"), "rl": load_policy(res.policy_path, name="rl")}
            rates = heldout_outcomes(policies, held)
            for name, r in rates.items():
                print(f"held-out {args.scenarios} x{r['scenarios']} {name}: collision {r['collision_rate']:.1%}, "
                      f"off-road {r['offroad_rate']:.1%}, success {r['success_rate']:.1%}, progress {r['progress_m']:.1f} m")
            atomic_write_text(Path(args.out) / "heldout.json", json.dumps(rates, indent=2))
    print(f"wrote {res.policy_path} (+ .json card), {Path(args.out) / 'curves.png'}, {Path(args.out) / 'checkpoint.pt'}")
    return 0


def add_pipeline_arguments(p) -> None:
    p.add_argument("-o", "--out", default="out/training", help="pipeline folder (default out/training); rerunning reuses "
                   "finished jobs and resumes interrupted ones")
    p.add_argument("--seeds", default=None, help="comma-separated training seeds (default 0,1,2)")
    p.add_argument("--workers", type=int, default=None, help="training processes, one CPU thread each (default 2)")
    p.add_argument("--config", default=None, help="YAML of PipelineConfig overrides, nested for il/rl "
                   "(unknown keys are errors), e.g. 'rl: {updates: 40}'")
    p.add_argument("--quick", action="store_true", help="a smoke run: one seed, tiny budgets (numbers meaningless)")


def pipeline_config_from_args(args) -> PipelineConfig:
    import yaml

    cfg = apply_overrides(PipelineConfig(), tuples_from_json(QUICK), "report training --quick") if args.quick else PipelineConfig()
    if args.config:
        try:
            over = yaml.safe_load(Path(args.config).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"--config {args.config}: {exc}") from None
        cfg = apply_overrides(cfg, tuples_from_json(over), where=Path(args.config).name)
    cli = {}
    if args.seeds:
        try:
            cli["seeds"] = tuple(int(s) for s in args.seeds.split(",") if s)
        except ValueError:
            raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated integers") from None
    if args.workers is not None:
        cli["workers"] = args.workers
    return apply_overrides(cfg, cli, where="report training")


def cmd_report_training(args) -> int:
    from drivesim.train.results_table import format_table

    try:
        cfg = pipeline_config_from_args(args)
        res = run_pipeline(cfg, args.out)
    except (ConfigError, ValueError, RuntimeError) as exc:
        raise SystemExit(f"error: {exc}") from None
    r = res.report
    print(format_table(res.table))
    for w in r["warnings"]:
        print(f"warning: {w}")
    for t in r["targets"]:
        extra = ", ".join(f"{k} {v:.3f}" for k, v in t.items() if k not in ("target", "value", "met"))
        print(f"{'met   ' if t['met'] else 'MISSED'} {t['target']}: {t['value']:.3f}" + (f" ({extra})" if extra else ""))
    s = r["seconds"]
    print(f"{len(cfg.seeds)} seeds x {len(VARIANTS)} variants: training {s['training'] / 60:.1f} min "
          f"({cfg.workers} workers), evaluation {s['evaluation'] / 60:.1f} min, total {s['total'] / 60:.1f} min")
    out = Path(args.out)
    print(f"wrote {out / 'table.md'}, {out / 'table.csv'}, {out / 'training.png'}, {out / 'report.json'}")
    if res.failed:
        print(f"error: {len(res.failed)} job(s) failed: {res.failed}", file=sys.stderr)
        return 1
    return 0


def add_camera_il_arguments(p) -> None:
    """Options of `drivesim train camera`."""
    p.add_argument("-o", "--out", default="out/camera_il", help="run folder: camera_policy.pt (weights + card), history.jsonl")
    p.add_argument("--teacher", default="pdm_expert", help="who labels the states: pdm_expert, or a vector policy checkpoint "
                   "to distil (e.g. policies/rl_rare.pt)")
    p.add_argument("--cameras", choices=["splat", "refined"], default="splat", help="what the camera policy sees")
    p.add_argument("--camera-size", default="56x32", help="WxH of each camera image")
    p.add_argument("--suite", default="nominal", help="suite whose groups are drawn again for training (it stays held out)")
    p.add_argument("--scenarios", type=int, default=32, help="training scenarios drawn from the suite's groups")
    p.add_argument("--epochs", type=int, default=6, help="behaviour-cloning epochs on the teacher's demonstrations")
    p.add_argument("--dagger", type=int, default=2, help="DAgger rounds after behaviour cloning")
    p.add_argument("--minutes", type=float, default=45.0, help="wall-clock budget; past it training stops")
    p.add_argument("--seed", type=int, default=0, help="seed of the scenario draws, the network and the shuffling")
    p.add_argument("--cache", default=None, help="frame cache folder, shared between runs (default: OUT/frames)")
    p.set_defaults(func=cmd_train_camera)


def cmd_train_camera(args) -> int:
    import dataclasses

    from drivesim.render.cameras import CameraConfig
    from drivesim.render.splat.sensors import parse_size
    from drivesim.train.camera_il import CameraILConfig, train_camera_il

    try:
        cameras = CameraConfig(kind=args.cameras, size=parse_size(args.camera_size))
        cfg = dataclasses.replace(CameraILConfig(), teacher=args.teacher, cameras=cameras, suite=args.suite, seed=args.seed,
                                  scenarios=args.scenarios, epochs=args.epochs, dagger=args.dagger, minutes=args.minutes)
        card = train_camera_il(cfg, args.out, cache_dir=args.cache, progress=True)
    except (ConfigError, ValueError, OSError) as exc:
        raise SystemExit(f"error: {exc}") from None
    last, data = card["history"][-1], card["data"]
    print(f"camera policy ({card['params']:,} parameters) from {args.teacher}: {data['samples']} samples, "
          f"{data['frames_rendered']} frames rendered, {data['frames_cached']} from the cache, {card['seconds']:.0f} s; "
          f"last epoch loss {last['loss']:.3f}, accuracy {last['acc']:.3f}")
    print(f"wrote {Path(args.out) / 'camera_policy.pt'} and {Path(args.out) / 'history.jsonl'}")
    return 0

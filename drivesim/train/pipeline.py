"""The whole policy-training pipeline and its results table (`drivesim report training`).

For each training seed s (default 0, 1, 2), in a pool of `workers` processes (one torch thread
each; a job starts as soon as the one it depends on has finished):

- il:          the imitation base: BC + DAgger from the expert over the nominal suite's groups
               drawn again, generated rare events of the five types, standing and slow starts,
               the real scenes of the training split, with DART noise (`il`, an ILConfig);
- il_rare:     il, fine-tuned by imitation on exactly rl_rare's training scenarios;
- rl_nominal:  il, post-trained by PPO on `rl_scenarios` procedural nominal scenarios;
- rl_rare:     il, post-trained by PPO on `rl_scenarios` generated rare events of the five types,
               plus variations of the rare events (`mine_from` probed) that il fails
               (mining.py), mixed with `nominal_mix` x as many nominal scenarios.

Every variant and seed, and the expert, is then evaluated in closed loop on held-out sets:
`heldout_events` events of each type from seeds no training set uses and with knob ranges
outside every training range (HELDOUT_KNOBS), the nominal suite (scenarios/nominal.yaml, which il
draws its own seeds of), standing/slow starts of that suite, and the held-out real scenes
(il_data.real_scenarios(split="heldout"), reactive traffic). report.py gives the table
(bootstrap intervals over scenarios and seeds), the overlap warnings and the bar chart;
`check_targets` checks the issue's targets (the IL base's and rl_rare's against it).

Outputs in OUT: one folder per job (a checkpoint with its card, curves, a log), table.md,
table.csv, rows.csv, training.png and report.json (config, timings, scenario-set hashes, the
checkpoints' hashes, warnings, target checks). Rerunning the same command reuses finished jobs
and resumes interrupted ones.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from drivesim.core.config import ConfigError, apply_overrides, config_to_dict, tuples_from_json
from drivesim.train.il import ILConfig
from drivesim.train.ppo import PPOConfig

VARIANTS = ("il", "il_rare", "rl_nominal", "rl_rare")
RARE_TYPES = ("cut-in", "hard-brake", "stalled", "merge", "pedestrian")
HELDOUT_CUTIN_SEED = 424_242  # generator seed of the held-out events (+ the type's index; training seeds are < 10,000)
# held-out knob ranges, each outside the generator's default (training) range: denser traffic for every type,
# and a faster or stronger version of one knob
HELDOUT_KNOBS = {"cut-in": {"lat_speed": (2.0, 2.6), "density": (2.0, 3.0)},
                 "hard-brake": {"rel_speed": (2.0, 3.0), "density": (2.0, 3.0)},
                 "stalled": {"ttc": (5.0, 6.0), "density": (2.0, 3.0)},
                 "merge": {"lat_speed": (1.5, 2.0), "density": (2.0, 3.0)},
                 "pedestrian": {"walk_speed": (2.5, 3.0), "density": (1.0, 2.0)}}


@dataclass(frozen=True)
class PipelineConfig:
    seeds: tuple[int, ...] = (0, 1, 2)
    workers: int = 2  # processes (one torch thread each)
    # the imitation base: 4 x the nominal groups, 200 rare events, the real training split, 3 DAgger rounds; each
    # round checked on 32 fresh scenarios (ILConfig's 64+ cost a minute per round); the wall-clock cap is far off so
    # that results never depend on the machine's speed
    il: ILConfig = field(default_factory=lambda: ILConfig(suite_repeat=4, dagger=3, rare=200, real=True, eval_scenarios=32,
                                                          minutes=60.0))
    finetune_dagger: int = 1  # il_rare: DAgger rounds of the fine-tuning on rl_rare's scenarios
    rl: PPOConfig = field(default_factory=PPOConfig)  # both RL variants (seed set per training seed)
    rl_scenarios: int = 200  # generated training scenarios of each RL variant
    mine_from: int = 100  # rl_rare: rare events il is run on; the variations of its failures are added ...
    mine_variations: int = 2  # ... this many per failure
    nominal_mix: float = 0.5  # rl_rare: nominal scenarios added, this fraction of its rare ones
    heldout_events: int = 50  # per rare type
    heldout_starts: int = 32  # standing and slow starts of the held-out nominal suite
    heldout_real: bool = True  # the real scenes of the held-out split (skipped when the data is absent)
    nominal_suite: str = "nominal"  # held-out nominal set (its own seed; il draws its groups with other seeds)
    eval_batch: int = 64

    def validate_config(self, where: str = "pipeline") -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0 or max(self.seeds) >= 1000:
            raise ConfigError(f"{where}.seeds: need distinct seeds in 0..999, got {self.seeds}")
        for key in ("workers", "rl_scenarios", "heldout_events", "eval_batch", "mine_variations"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{where}.{key}: must be >= 1, got {getattr(self, key)}")
        if self.mine_from < 0 or self.finetune_dagger < 0 or self.heldout_starts < 0 or not 0 <= self.nominal_mix <= 4:
            raise ConfigError(f"{where}: mine_from, finetune_dagger and heldout_starts must be >= 0, nominal_mix in 0..4")


# ---------------------------------------------------------------------------- jobs (run in worker processes)
def _job_dir(out: Path, variant: str, seed: int) -> Path:
    return out / f"{variant}_s{seed}"


def _finished(folder: Path) -> bool:
    card = folder / "policy.json"
    return card.exists() and bool(json.loads(card.read_text()).get("training", {}).get("finished"))


# the config keys each job's result depends on (its IL parent's included)
RARE_SET_KEYS = ("rl_scenarios", "mine_from", "mine_variations", "nominal_mix")
TRAINING_KEYS = {"il": ("il",), "il_rare": ("il", "finetune_dagger", *RARE_SET_KEYS),
                 "rl_nominal": ("il", "rl", "rl_scenarios"), "rl_rare": ("il", "rl", *RARE_SET_KEYS)}


def _claim(folder: Path, variant: str, cfg_dict: dict) -> None:
    """Record the config a job folder is trained with; another config's folder is an error (a rerun
    must not mix checkpoints of different configs). Only the keys the job depends on count: a
    rerun with another RL config reuses the IL jobs."""
    mine = folder / "pipeline_config.json"
    text = json.dumps({k: cfg_dict[k] for k in TRAINING_KEYS[variant]}, sort_keys=True)
    if mine.exists() and mine.read_text() != text:
        raise ValueError(f"{folder} holds a run of another pipeline config; use another --out (or delete it)")
    mine.write_text(text)


def _rl_rare_scenarios(cfg: PipelineConfig, seed: int, il_path: Path, log) -> tuple[list, dict]:
    """rl_rare's (and il_rare's) training set: generated rare events of the five types, the
    variations of the probed rare events il fails, and nominal scenarios mixed in."""
    from drivesim.events.mining import MineConfig, mine
    from drivesim.train.policy_net import load_policy
    from drivesim.train.rl_extras import training_scenarios

    scenarios, source = training_scenarios("rare", cfg.rl_scenarios, 2000 + seed)
    if cfg.mine_from:
        probe, _ = training_scenarios("rare", cfg.mine_from, 4000 + seed)
        res = mine(probe, load_policy(il_path, name="il"), MineConfig(variations=cfg.mine_variations, seed=seed))
        print(f"mining: il fails {len(res.failures)} of {len(probe)} rare events; {len(res.scenarios)} variations added "
              f"({res.variation_failure_rate:.0%} of them failed by il too)", file=log, flush=True)
        scenarios = scenarios + res.scenarios
        source = {**source, "mined": {"probe_seed": 4000 + seed, "probe": len(probe), "failures": len(res.failures),
                                      "variations": len(res.scenarios)}}
    n_nominal = int(round(cfg.nominal_mix * len(scenarios)))
    if n_nominal:
        nominal, nprov = training_scenarios("nominal", n_nominal, 5000 + seed)
        scenarios = scenarios + nominal
        source = {**source, "nominal_mix": nprov}
    return scenarios, source


def run_job(variant: str, seed: int, cfg_dict: dict, out: str) -> dict:
    """Train one (variant, seed) into OUT/<variant>_s<seed>; returns {path, seconds}. Resumes a
    run that was interrupted; reuses a finished one."""
    import torch

    torch.set_num_threads(1)
    cfg = apply_overrides(PipelineConfig(), tuples_from_json(cfg_dict), where="pipeline")
    out = Path(out)
    folder = _job_dir(out, variant, seed)
    folder.mkdir(parents=True, exist_ok=True)
    _claim(folder, variant, cfg_dict)
    t0 = time.perf_counter()
    if not _finished(folder):
        with open(folder / "log.txt", "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            _train(variant, seed, cfg, out, folder, log)
    return {"path": str(folder / "policy.pt"), "seconds": time.perf_counter() - t0}


def _train(variant: str, seed: int, cfg: PipelineConfig, out: Path, folder: Path, log) -> None:
    from drivesim.train.il import train_il
    from drivesim.train.ppo import train_rl
    from drivesim.train.rl_extras import training_scenarios

    il_path = _job_dir(out, "il", seed) / "policy.pt"
    if variant == "il":
        train_il(apply_overrides(cfg.il, {"seed": seed}, "pipeline.il"), folder, name="il", progress=False)
    elif variant == "il_rare":  # supervised fine-tuning on exactly rl_rare's training set
        ft = apply_overrides(cfg.il, {"seed": seed, "dagger": cfg.finetune_dagger}, "pipeline.il")
        train_il(ft, folder, init=str(il_path), name="il_rare", progress=False,
                 scenarios=_rl_rare_scenarios(cfg, seed, il_path, log))
    else:
        if variant == "rl_nominal":
            scenarios, source = training_scenarios("nominal", cfg.rl_scenarios, 3000 + seed)
        else:
            scenarios, source = _rl_rare_scenarios(cfg, seed, il_path, log)
        rl = apply_overrides(cfg.rl, {"seed": seed}, "pipeline.rl")
        train_rl(scenarios, il_path, folder, rl, resume=(folder / "checkpoint.pt").exists(), show_progress=False,
                 source=source)


# ---------------------------------------------------------------------------- held-out sets
def heldout_events(event: str, n: int, progress: bool = False):
    """(scenarios, provenance) of the held-out set of one rare type: seed HELDOUT_CUTIN_SEED + its
    index, the knobs of HELDOUT_KNOBS (outside the generator's default ranges)."""
    import dataclasses

    from drivesim.io.scenario_file import scenarios_hash
    from drivesim.events.generate import LabelConfig, event_type, generate_set

    config = dataclasses.replace(event_type(event).config(), **HELDOUT_KNOBS[event])
    seed = HELDOUT_CUTIN_SEED + RARE_TYPES.index(event)
    out = generate_set(event, n, seed=seed, config=config, label=LabelConfig(expert_check=False, workers=1),
                       show_progress=progress).scenarios
    return out, {"event": event, "seed": seed, "n": len(out), "knobs": {k: list(v) for k, v in HELDOUT_KNOBS[event].items()},
                 "set_hash": scenarios_hash(out)}


def heldout_sets(cfg: PipelineConfig, progress: bool = True) -> tuple[dict, dict]:
    """({set name: scenarios}, {set name: provenance}) of the evaluation sets (module doc)."""
    from drivesim.io.scenario_file import scenarios_hash
    from drivesim.train.il_data import real_scenarios, suite_scenarios
    from drivesim.train.il_variants import start_variants

    sets, prov = {}, {}
    nominal, nprov = suite_scenarios(cfg.nominal_suite, seed=None)
    sets["held-out nominal"], prov["held-out nominal"] = nominal, {**nprov, "n": len(nominal), "set_hash": scenarios_hash(nominal)}
    for event in RARE_TYPES:
        sets[f"held-out {event}"], prov[f"held-out {event}"] = heldout_events(event, cfg.heldout_events, progress)
    if cfg.heldout_starts:
        starts = start_variants(nominal[: cfg.heldout_starts], speeds=(0.0, 2.0))
        sets["held-out starts"] = starts
        prov["held-out starts"] = {"from": cfg.nominal_suite, "speeds": [0.0, 2.0], "n": len(starts), "set_hash": scenarios_hash(starts)}
    if cfg.heldout_real:
        real, rprov = real_scenarios(split="heldout", traffic="reactive", quiet=True)
        if real:
            sets["held-out real"], prov["held-out real"] = real, {**rprov, "n": len(real), "set_hash": scenarios_hash(real)}
    return sets, prov


# ---------------------------------------------------------------------------- targets
def check_targets(table) -> list[dict]:
    """The issue's targets, pooled over seeds: the IL base's (absolute), and rl_rare's against il.
    Rare types count for rl_rare where il fails >= 10 % of them."""
    def get(variant, set_name, metric):
        r = table[(table["variant"] == variant) & (table["set"] == set_name)]
        return float(r[metric].iloc[0]) if len(r) and metric in r else float("nan")

    def target(name, value, met, **kw):
        return {"target": name, "value": value, "met": bool(met), **kw}

    nom, expert = "held-out nominal", "expert (reference)"
    out = [target("il nominal success >= 0.97", get("il", nom, "success"), get("il", nom, "success") >= 0.97),
           target("il nominal PDMS >= 0.90", get("il", nom, "pdms"), get("il", nom, "pdms") >= 0.90)]
    for event in ("hard-brake", "stalled"):
        v = get("il", f"held-out {event}", "success")
        out.append(target(f"il {event} success >= 0.9", v, v >= 0.9))
    if "held-out starts" in set(table["set"]):
        v = get("il", "held-out starts", "success")
        out.append(target("il drives from standing/slow starts: success >= 0.9", v, v >= 0.9))
    if "held-out real" in set(table["set"]):
        r, f, fe = (get("il", "held-out real", "progress_vs_expert"), get("il", "held-out real", "at_fault"),
                    get(expert, "held-out real", "at_fault"))
        out.append(target("il real scenes: progress >= 0.7 of the expert's", r, r >= 0.7))
        out.append(target("il real scenes: at-fault collisions <= the expert's", f, f <= fe + 1e-9, expert=fe))
    failing = [e for e in RARE_TYPES if 1 - get("il", f"held-out {e}", "success") >= 0.10]
    for e in failing:
        c0, c1 = get("il", f"held-out {e}", "collision"), get("rl_rare", f"held-out {e}", "collision")
        cut = (c0 - c1) / c0 if c0 > 0 else float("nan")
        out.append(target(f"rl_rare {e} collisions -50 % vs il", cut, cut >= 0.5, il=c0, rl_rare=c1))
    if failing:
        s0 = sum(get("il", f"held-out {e}", "success") for e in failing) / len(failing)
        s1 = sum(get("rl_rare", f"held-out {e}", "success") for e in failing) / len(failing)
        out.append(target(f"rl_rare pooled success +15 points on {', '.join(failing)}", s1 - s0, s1 - s0 >= 0.15, il=s0, rl_rare=s1))
    else:
        out.append(target("rl_rare: no rare type where il fails >= 10 % (nothing to lift)", float("nan"), True))
    for metric, slack, name in (("pdms", -0.01, "PDMS >= il - 0.01"), ("success", 0.0, "success >= il"),
                                ("comfort", -0.05, "comfort >= il - 0.05")):
        b, v = get("il", nom, metric), get("rl_rare", nom, metric)
        out.append(target(f"rl_rare nominal {name}", v - b, v - b >= slack - 1e-9, il=b, rl_rare=v))
    if "held-out real" in set(table["set"]):
        rc, re_ = get("rl_rare", "held-out real", "route_completion"), get(expert, "held-out real", "route_completion")
        ratio = rc / re_ if re_ > 0 else float("nan")
        out.append(target("rl_rare real scenes: route completion >= 0.7 of the expert's", ratio, ratio >= 0.7,
                          rl_rare=rc, expert=re_))
    return out


# ---------------------------------------------------------------------------- driver
@dataclass
class PipelineResult:
    table: object  # pandas DataFrame (report.summarize)
    report: dict
    failed: dict  # job -> error text


def run_pipeline(cfg: PipelineConfig, out, progress: bool = True) -> PipelineResult:
    """Train every (variant, seed), evaluate them on the held-out sets, write the report."""
    import torch

    from drivesim.train import results_table as rep
    from drivesim.train.policy_net import load_policy

    cfg.validate_config()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_dict = config_to_dict(cfg)
    t0 = time.perf_counter()
    timings, failed = _train_all(cfg, cfg_dict, out, progress)
    t_train = time.perf_counter() - t0
    torch.set_num_threads(1)
    sets, set_prov = heldout_sets(cfg, progress)
    policies, checkpoints = {}, {}
    for variant in VARIANTS:
        seeds = [s for s in cfg.seeds if f"{variant}_s{s}" not in failed]
        if seeds:
            policies[variant] = [load_policy(_job_dir(out, variant, s) / "policy.pt") for s in seeds]
            checkpoints[variant] = {f"s{s}": p.card.get("weights_sha256") for s, p in zip(seeds, policies[variant])}
    if not policies:
        raise RuntimeError(f"every training job failed; see the logs in {out}: {failed}")
    t1 = time.perf_counter()
    res = rep.evaluate_variants(policies, sets, batch_size=cfg.eval_batch)
    t_eval = time.perf_counter() - t1
    targets = check_targets(res.table) if {"il", "rl_rare"} <= set(policies) else []
    (out / "table_full.md").write_text(rep.format_table(res.table, tuple(rep.METRICS)) + "\n")
    res.table.to_csv(out / "table.csv", index=False)
    res.rows.to_csv(out / "rows.csv", index=False)
    (out / "table.md").write_text(rep.format_table(res.table) + "\n")
    rep.plot(res.table, out / "training.png")
    report = {"config": cfg_dict, "seeds": list(cfg.seeds), "eval_sets": set_prov, "checkpoints": checkpoints,
              "jobs": timings, "failed": failed, "warnings": res.warnings, "targets": targets,
              "seconds": {"training": round(t_train, 1), "evaluation": round(t_eval, 1),
                          "total": round(time.perf_counter() - t0, 1)},
              "threads": {"workers": cfg.workers, "torch_per_worker": 1}, "torch": str(torch.__version__)}
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return PipelineResult(res.table, report, failed)


def _train_all(cfg: PipelineConfig, cfg_dict: dict, out: Path, progress: bool) -> tuple[dict, dict]:
    """Run the jobs in a process pool: il per seed first, then its three dependents."""
    pending = {(v, s) for v in VARIANTS for s in cfg.seeds}
    timings, failed, running = {}, {}, {}
    bar = tqdm(total=len(pending), desc="training jobs", unit="job", disable=not progress)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=cfg.workers, mp_context=ctx) as pool:
        def submit(v, s):
            pending.discard((v, s))
            running[pool.submit(run_job, v, s, cfg_dict, str(out))] = (v, s)

        for s in cfg.seeds:
            submit("il", s)
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                v, s = running.pop(fut)
                name = f"{v}_s{s}"
                try:
                    timings[name] = round(fut.result()["seconds"], 1)
                except Exception as exc:  # noqa: BLE001 - one failed job must not lose the others
                    failed[name] = f"{type(exc).__name__}: {exc}"
                    tb = "".join(traceback.format_exception(exc))
                    (_job_dir(out, v, s) / "error.txt").write_text(tb)
                    bar.write(f"{name} failed: {failed[name]} (see {_job_dir(out, v, s) / 'log.txt'})")
                bar.update(1)
                bar.set_postfix_str(f"last {name}, {len(running)} queued or running")
                if v == "il":
                    for dep in ("rl_rare", "rl_nominal", "il_rare"):  # longest first: a shorter tail
                        if name in failed:
                            pending.discard((dep, s))
                            failed[f"{dep}_s{s}"] = f"not run: {name} failed"
                            bar.update(1)
                        else:
                            submit(dep, s)
    bar.close()
    return timings, failed


# the overrides of `drivesim report training --quick`: a smoke run (numbers meaningless)
QUICK = {"seeds": (0,), "finetune_dagger": 0, "rl_scenarios": 10, "mine_from": 5, "heldout_events": 4,
         "heldout_starts": 4, "heldout_real": False, "nominal_suite": "tiny",
         "il": {"suite": "tiny", "suite_repeat": 2, "rare": 10, "real": False, "epochs": 1, "dagger": 0, "eval_scenarios": 4},
         "rl": {"updates": 2, "num_envs": 16, "num_steps": 8, "value_warmup": 1}}


__all__ = ["PipelineConfig", "PipelineResult", "run_pipeline", "run_job", "heldout_sets", "check_targets", "VARIANTS"]

#!/usr/bin/env python
"""Suite throughput of the local backend against the Ray backend on this machine, and Ray's
per-task overhead, in one run; prints a table.

    python tools/bench_scale.py             # nominal suite (64 scenarios) x constant_velocity, idm, pdm_expert
    python tools/bench_scale.py --quick     # tiny suite, two batch sizes
    python tools/bench_scale.py --address HOST:6379   # a running cluster instead of a local instance
    python tools/bench_scale.py --rl        # also PPO rollouts: local rows against --workers Ray actors

Each row evaluates the same suite with the same policies (`drivesim.sim.evaluate.evaluate`);
the Ray rows run every job (one policy on one --batch-size chunk) as a Ray task on a local
instance with --ray-cpus CPUs (default: all of this machine). Results are checked equal to the
local run. Overhead: the same number of Ray tasks that carry the same arguments (the scenario
chunk, the map bank, the policy) but simulate nothing, per task. With --rl: a few PPO updates
from policies/il_base.pt on generated cut-ins, rollout and update seconds, local against Ray
actors (the learner stays in this process); the updates are checked equal.
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd
import torch


def _suite(name: str, limit: int | None):
    from drivesim.io.suite import load_suite_scenarios

    _, _, scenarios = load_suite_scenarios(name, limit)
    return scenarios


def _policies():
    from drivesim.train.policies import make_policy

    return make_policy("pdm_expert"), [make_policy("constant_velocity"), make_policy("idm")]


def _timed_eval(scenarios, batch_size, runner=None):
    from drivesim.sim.evaluate import EvalConfig, evaluate

    expert, policies = _policies()
    t = time.perf_counter()
    ev = evaluate(scenarios, policies, expert=expert, config=EvalConfig(batch_size=batch_size), runner=runner,
                  show_progress=False)
    return time.perf_counter() - t, ev.results


def _overhead(scenarios, batch_size, ray) -> float:
    """Seconds per Ray task that ships a job's arguments and does no simulation."""
    from drivesim.map.bank import MapBank
    from drivesim.sim.evaluate import _chunks

    expert, _ = _policies()

    @ray.remote
    def noop(chunk, bank, policy):
        return len(chunk)

    bank = ray.put(MapBank.build(list({id(s.road): s.road for s in scenarios}.values())))
    policy = ray.put(expert)
    chunks = _chunks(scenarios, batch_size) * 3
    ray.get([noop.remote(c, bank, policy) for c in chunks[:2]])  # warm the workers
    t = time.perf_counter()
    ray.get([noop.remote(c, bank, policy) for c in chunks])
    return (time.perf_counter() - t) / len(chunks)


def _rl_rows(workers: int, updates: int, num_envs: int) -> list[dict]:
    import tempfile
    from pathlib import Path

    from drivesim.distributed.ray_backend import rollout_actors
    from drivesim.train.ppo import PPOConfig, train_rl
    from drivesim.train.rl_extras import training_scenarios

    init = Path(__file__).resolve().parents[1] / "policies" / "il_base.pt"
    scenarios, _ = training_scenarios("cut-in", 64, 0)
    cfg = PPOConfig(updates=updates, num_envs=num_envs, value_warmup=0, checkpoint_every=10_000)
    rows, weights = [], []
    for backend in (None, {"workers": workers}):
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            res = train_rl(scenarios, init, out, cfg, show_progress=False, rollouts=rollout_actors(backend))
            wall = time.perf_counter() - t
            weights.append(torch.load(res.policy_path, weights_only=True)["state_dict"])
        h = res.history
        steps = sum(r["env_steps"] for r in h)
        rows.append({"backend": "local" if backend is None else f"ray x{workers} actors", "updates": updates,
                     "rows": num_envs, "rollout s": sum(r["rollout_s"] for r in h), "update s": sum(r["update_s"] for r in h),
                     "wall s": wall, "env-steps/s": steps / sum(r["rollout_s"] + r["update_s"] for r in h)})
    same = all(torch.allclose(weights[0][k], weights[1][k], atol=1e-5) for k in weights[0])
    for r in rows:
        r["same weights"] = same
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="nominal", help="suite name or YAML (default nominal)")
    p.add_argument("--limit", type=int, default=None, help="first N scenarios only")
    p.add_argument("--batch-sizes", default="8,32", help="scenarios per job, comma-separated (default 8,32)")
    p.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--address", default=None, help="a running Ray cluster instead of a local instance")
    p.add_argument("--quick", action="store_true", help="tiny suite, batch sizes 2 and 4")
    p.add_argument("--rl", action="store_true", help="also PPO rollouts in Ray actors against local rows")
    p.add_argument("--workers", type=int, default=2, help="with --rl: Ray rollout actors (default 2)")
    p.add_argument("--updates", type=int, default=3, help="with --rl: PPO updates per backend (default 3)")
    p.add_argument("--num-envs", type=int, default=512, help="with --rl: simulator rows (default 512)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from drivesim.distributed.ray_backend import RayRunner, shutdown

    suite = "tiny" if args.quick else args.suite
    sizes = [2, 4] if args.quick else [int(b) for b in args.batch_sizes.split(",")]
    scenarios = _suite(suite, args.limit)
    runner = RayRunner(address=args.address, num_cpus=args.ray_cpus)
    ray = runner.ray
    cpus = int(ray.cluster_resources().get("CPU", 0))
    rows = []
    for bs in sizes:
        jobs = 3 * -(-len(scenarios) // bs)
        t_local, local = _timed_eval(scenarios, bs)
        _timed_eval(scenarios[:bs], bs, runner)  # start the workers
        t_ray, remote = _timed_eval(scenarios, bs, runner)
        same = local.equals(remote)
        overhead = _overhead(scenarios, bs, ray)
        n = 3 * len(scenarios)  # policy x scenario runs
        rows.append({"batch size": bs, "jobs": jobs, "local s": t_local, "ray s": t_ray,
                     "local scen/s": n / t_local, "ray scen/s": n / t_ray, "speed-up": t_local / t_ray,
                     "task overhead ms": 1000 * overhead, "identical": same})
    rl = pd.DataFrame(_rl_rows(args.workers, args.updates, args.num_envs)) if args.rl else None
    shutdown()
    table = pd.DataFrame(rows)
    print(f"\nsuite {suite}: {len(scenarios)} scenarios x 3 policies (pdm_expert first, then constant_velocity, idm); "
          f"Ray: {cpus} CPUs{' at ' + args.address if args.address else ' (local instance)'}, "
          f"machine: {os.cpu_count()} cores, 1 torch thread per process")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if rl is not None:
        print(f"\nPPO from il_base.pt on 64 generated cut-ins, {args.num_envs} rows, policy deciding every step:")
        print(rl.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    if not table["identical"].all() or (rl is not None and not rl["same weights"].all()):
        print("warning: the Ray results differ from the local ones")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

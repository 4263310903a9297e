#!/usr/bin/env python
"""Suite throughput of the local backend against the Ray backend on this machine, and Ray's
per-task overhead, in one run; prints a table.

    python tools/bench_scale.py             # nominal suite (64 scenarios) x constant_velocity, idm, pdm_expert
    python tools/bench_scale.py --quick     # tiny suite, two batch sizes
    python tools/bench_scale.py --address HOST:6379   # a running cluster instead of a local instance

Each row evaluates the same suite with the same policies (`drivesim.sim.evaluate.evaluate`);
the Ray rows run every job (one policy on one --batch-size chunk) as a Ray task on a local
instance with --ray-cpus CPUs (default: all of this machine). Results are checked equal to the
local run. Overhead: the same number of Ray tasks that carry the same arguments (the scenario
chunk, the map bank, the policy) but simulate nothing, per task.
"""

from __future__ import annotations

import argparse
import os
import time

import pandas as pd
import torch


def _suite(name: str, limit: int | None):
    from drivesim.cli import load_scenarios

    _, _, scenarios = load_scenarios(name, limit)
    return scenarios


def _policies():
    from drivesim.cli import make_policy

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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", default="nominal", help="suite name or YAML (default nominal)")
    p.add_argument("--limit", type=int, default=None, help="first N scenarios only")
    p.add_argument("--batch-sizes", default="8,32", help="scenarios per job, comma-separated (default 8,32)")
    p.add_argument("--ray-cpus", type=int, default=None, help="CPUs of the local Ray instance (default: all)")
    p.add_argument("--address", default=None, help="a running Ray cluster instead of a local instance")
    p.add_argument("--quick", action="store_true", help="tiny suite, batch sizes 2 and 4")
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
    shutdown()
    table = pd.DataFrame(rows)
    print(f"\nsuite {suite}: {len(scenarios)} scenarios x 3 policies (pdm_expert first, then constant_velocity, idm); "
          f"Ray: {cpus} CPUs{' at ' + args.address if args.address else ' (local instance)'}, "
          f"machine: {os.cpu_count()} cores, 1 torch thread per process")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if not table["identical"].all():
        print("warning: the Ray results differ from the local ones")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

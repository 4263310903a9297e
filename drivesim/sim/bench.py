"""Closed-loop throughput benchmark (tools/bench_sim.py and `drivesim bench` call this).

Times the full step (reactive agents, dynamics, collision and drivable-area checks, metric
accumulation) for several batch sizes B and agent counts A, each in a fresh process so that the
peak memory is its own, and highway-env's highway-v0 / highway-fast-v0 in the same run; prints
agent-steps/s, the ratio to highway-env per agent-step and the tensor ops dispatched per step
(`count_ops`: on CPU the step is a few hundred small ops, each paying a fixed overhead, so
their count is what bounds B=1 latency). `--repeat N` times each size N times (fresh processes)
and reports the median: on a shared machine single timings scatter by tens of percent.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

SIZES = [(1, 32), (64, 32), (256, 32), (1024, 32), (1, 128), (64, 128), (256, 128), (1024, 128)]
QUICK_SIZES = [(1, 32), (64, 32), (256, 32)]


def bench_scenarios(B: int, A: int, seed: int = 0, duration: float = 20.0):
    """B procedural scenarios on a 5+3-lane straight road with exactly A agents each."""
    from drivesim.traffic.procedural import TrafficConfig, procedural_scenario
    from drivesim.map.builders import build_map

    length = max(400.0, A * 9.0)
    road = build_map("straight", length=length, lanes=5, lanes_back=3)
    out = []
    for b in range(B):
        cfg = TrafficConfig(density=6.0, duration=duration)
        s = procedural_scenario(road, cfg, seed=seed + b, name=f"bench{b}")
        out.append(_resize(s, A))
    return out


def _resize(s, A: int):
    """Trim or pad (with parked static cones far away, off the road) to exactly A agents."""
    import numpy as np

    from drivesim.core.types import AgentType, ControlMode

    n = s.num_agents
    if n >= A:
        for f in ("x", "y", "yaw", "speed", "length", "width", "agent_type", "mode", "desired_speed"):
            setattr(s, f, np.asarray(getattr(s, f))[:A])
        return s
    extra = A - n
    pad = {"x": -50.0 - 2.0 * np.arange(extra), "y": np.full(extra, -60.0), "yaw": np.zeros(extra), "speed": np.zeros(extra),
           "length": np.full(extra, 0.4), "width": np.full(extra, 0.4), "agent_type": np.full(extra, int(AgentType.STATIC)),
           "mode": np.full(extra, int(ControlMode.STATIC)), "desired_speed": np.zeros(extra)}
    for f, v in pad.items():
        setattr(s, f, np.concatenate([np.asarray(getattr(s, f)), v]))
    return s


def run_one(B: int, A: int, steps: int, device: str = "cpu") -> dict:
    """Steps/s of the closed loop at one size (a constant ego action; the policy is not timed)."""
    from drivesim.core.scenario import ScenarioBatch
    from drivesim.metrics.accumulator import MetricAccumulator, MetricConfig
    from drivesim.sim.simulator import Simulator

    torch.set_num_threads(1)
    scen = bench_scenarios(min(B, 8), A)
    scen = [scen[i % len(scen)] for i in range(B)]
    batch = ScenarioBatch.build(scen, device=device)
    sim = Simulator(batch)
    action = torch.zeros(B, 2, device=device)
    state = sim.reset()
    acc = MetricAccumulator(batch, MetricConfig())
    acc.update(state)
    for _ in range(3):  # warm-up
        state = acc_step(sim, acc, state, action)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        state = acc_step(sim, acc, state, action)
    sync(device)
    dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ops = count_ops(lambda: acc_step(sim, acc, state, action))  # one more step, not timed
    acc.finalize(None)
    return {"B": B, "A": A, "steps": steps, "seconds": dt, "agent_steps_per_s": B * A * steps / dt,
            "step_ms": 1e3 * dt / steps, "peak_rss_mb": rss, "ops_per_step": ops,
            "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if device == "cuda" else 0.0}


def count_ops(fn) -> int:
    """Aten ops dispatched while fn() runs (a TorchDispatchMode; views and in-place ops count too)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.n


def acc_step(sim, acc, state, action):
    state = sim.step(state, action)
    acc.update(state)
    return state


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def single_scenario_seconds(A: int = 64, duration: float = 20.0) -> float:
    """Wall time of one 20 s scenario with A agents, set-up excluded (the issue's latency target)."""
    from drivesim.core.scenario import ScenarioBatch
    from drivesim.sim.policy import ConstantVelocity
    from drivesim.sim.rollout import rollout

    torch.set_num_threads(1)  # as the sizes' runs: in the parent a second thread only waits on a shared machine
    batch = ScenarioBatch.build(bench_scenarios(1, A, duration=duration))
    return rollout(batch, ConstantVelocity()).wall_time


def highway_env(name: str, steps: int) -> dict | None:
    try:
        import gymnasium as gym
        import highway_env  # noqa: F401  (registers the environments)
    except ImportError:
        return None
    env = gym.make(name)
    env.reset(seed=0)
    cfg = env.unwrapped.config
    n = len(env.unwrapped.road.vehicles)
    sim_per_step = cfg["simulation_frequency"] // cfg["policy_frequency"]
    t0 = time.perf_counter()
    done = 0
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        done += 1
        if term or trunc:
            env.reset()
    dt = time.perf_counter() - t0
    return {"env": name, "vehicles": n, "sim_steps_per_env_step": sim_per_step, "env_steps_per_s": done / dt,
            "agent_steps_per_s": done * n * sim_per_step / dt}


def _child(B: int, A: int, steps: int, device: str) -> dict:
    cmd = [sys.executable, "-m", "drivesim.sim.bench", "--one", str(B), str(A), str(steps), device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median_child(B: int, A: int, steps: int, device: str, repeat: int) -> dict:
    """The run with the median step time of `repeat` fresh processes."""
    runs = sorted((_child(B, A, steps, device) for _ in range(max(1, repeat))), key=lambda r: r["step_ms"])
    return runs[len(runs) // 2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="B in {1, 64, 256}, A = 32 only")
    p.add_argument("--steps", type=int, default=50, help="timed steps per size")
    p.add_argument("--device", default="cpu", help="cpu or cuda (on a GPU machine, also B=4096)")
    p.add_argument("--repeat", type=int, default=1, help="time each size this many times (fresh processes); report the median")
    p.add_argument("--one", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        B, A, steps, device = int(args.one[0]), int(args.one[1]), int(args.one[2]), args.one[3]
        print(json.dumps(run_one(B, A, steps, device)))
        return 0
    sizes = QUICK_SIZES if args.quick else SIZES
    if args.device == "cuda":
        sizes = sizes + [(4096, 32), (4096, 128)]
    peers = [r for r in (highway_env("highway-v0", 20), highway_env("highway-fast-v0", 100)) if r]
    ref = max((r["agent_steps_per_s"] for r in peers), default=None)
    print(f"{'peer':18s} {'vehicles':>8s} {'env steps/s':>12s} {'agent-steps/s':>14s}")
    for r in peers:
        print(f"{r['env']:18s} {r['vehicles']:8d} {r['env_steps_per_s']:12.1f} {r['agent_steps_per_s']:14.0f}")
    if not peers:
        print("highway-env not installed (pip install -e '.[bench]'): no ratio")
    print(f"\n{'B':>5s} {'A':>4s} {'step ms':>8s} {'agent-steps/s':>14s} {'x highway-env':>14s} {'peak RSS MB':>12s} {'ops/step':>9s}")
    for B, A in sizes:
        r = _median_child(B, A, args.steps, args.device, args.repeat)
        ratio = f"{r['agent_steps_per_s'] / ref:14.0f}" if ref else f"{'n/a':>14s}"
        print(f"{B:5d} {A:4d} {r['step_ms']:8.2f} {r['agent_steps_per_s']:14.0f} {ratio} {r['peak_rss_mb']:12.0f} "
              f"{r['ops_per_step']:9d}")
    ops64 = _child(1, 64, 1, args.device)["ops_per_step"]
    single = sorted(single_scenario_seconds() for _ in range(max(1, args.repeat)))[max(1, args.repeat) // 2]
    print(f"\none 20 s scenario, 64 agents, constant-velocity ego: {single:.3f} s (target < 0.2 s; {ops64} ops/step)")
    print("(ratio: against the faster highway-env variant per agent-step; one torch thread"
          + (f"; median of {args.repeat} runs" if args.repeat > 1 else "") + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""RL training throughput: drivesim PPO (rollout + update) against stable-baselines3 PPO on
highway-env's highway-fast-v0, measured in the same run, one torch thread.

    python tools/bench_train.py             # B in {256, 1024} x policy_every in {1, 5}, cut-in scenarios
    python tools/bench_train.py --quick     # B = 256 only
    python tools/bench_train.py --init IL_CKPT --no-peer

An env-step is one simulation step (0.1 s) of one scenario row; with policy_every k the policy
decides (and PPO trains on a sample) every k env-steps. The breakdown gives microseconds per
env-step for each part of the rollout and per training sample for the update (4 epochs).
The peer is skipped, with a note, when stable-baselines3 or highway-env is not installed.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch


def _timed(store: dict, key: str, fn):
    t = time.perf_counter()
    out = fn()
    store[key] = store.get(key, 0.0) + time.perf_counter() - t
    return out


def breakdown(env, net, il_net, policy_every: int, decisions: int = 6) -> dict:
    """Microseconds per env-step of each rollout part, the policy deciding every `policy_every` steps
    (the parts of `DrivingRows.step` taken one by one on its `sim.env.DriveEnv`, env.env)."""
    from drivesim.sim.observation import observe
    from drivesim.sim.trajectory import Trajectory
    from drivesim.train.vocabulary import plan, to_ego_poses

    t: dict = {}
    bins = torch.tensor(net.cfg.accel_bins)
    with torch.no_grad():
        for _ in range(decisions):
            feats, ctx = _timed(t, "observation", env.observe)
            lon, lat, _ = _timed(t, "policy forward", partial(net, feats))
            _timed(t, "IL forward (KL)", partial(il_net, feats))
            accel, option = bins[lon.argmax(-1)], lat.argmax(-1)
            target = ctx["targets"].gather(1, option.unsqueeze(1)).squeeze(1)
            obs = observe(env.state, env.batch, net.cfg.obs)
            p = _timed(t, "plan (trajectory)", lambda: plan(obs, accel, target, ctx["d0"], net.cfg.vocab))
            poses = to_ego_poses(p, env.state.xy[:, 0], env.state.yaw[:, 0])
            _timed(t, "tracker", lambda: env.env.tracker.plan(Trajectory(poses, net.cfg.vocab.plan_dt), env.state))
            for _ in range(policy_every):
                action = _timed(t, "tracker", lambda: env.env.tracker.act(env.state, env.batch.dt))
                env.env.state = _timed(t, "simulator step", partial(env.env.sim.step, env.state, action))
                r = _timed(t, "reward", partial(env.env.reward, env.state))
                _timed(t, "restarts", partial(env.env.restart, r.terminated | (env.state.row_step >= env.batch.num_steps)))
    return {k: 1e6 * v / (decisions * policy_every * env.B) for k, v in t.items()}


def bench_ours(scenarios, init: Path, B: int, policy_every: int, updates: int) -> dict:
    from drivesim.train.policy_net import load_policy
    from drivesim.train.ppo import DrivingRows, PPOConfig, collect, make_optimizer, ppo_update

    torch.set_num_threads(1)
    cfg = PPOConfig(num_envs=B, policy_every=policy_every, target_kl=None)  # every epoch: the full cost
    il_net = load_policy(init).net
    net = copy.deepcopy(il_net).train()
    env = DrivingRows(scenarios, net.cfg, cfg)
    opt = make_optimizer(net, cfg)
    gen = torch.Generator().manual_seed(0)
    parts = breakdown(env, net, il_net, policy_every)
    collect(env, net, il_net, gen, replace(cfg, num_steps=2))  # warm-up
    roll = upd = 0.0
    steps = samples = 0
    for _ in range(updates):
        t0 = time.perf_counter()
        data, stats = collect(env, net, il_net, gen, cfg)
        t1 = time.perf_counter()
        ppo_update(net, opt, data, gen, cfg, kl_coef=0.1)
        upd += time.perf_counter() - t1
        roll += t1 - t0
        steps += stats["env_steps"]
        samples += data["action"].shape[0]
    return {"B": env.B, "A": env.batch.init["x"].shape[1], "policy_every": policy_every, "samples": samples // updates,
            "rollout_s": roll / updates, "update_s": upd / updates, "env_steps_per_s": steps / (roll + upd),
            "rollout_us_per_step": 1e6 * roll / steps, "update_us_per_sample": 1e6 * upd / samples, "parts": parts,
            "epochs": cfg.epochs}


def bench_sb3(total: int = 512) -> dict | str:
    """stable-baselines3 PPO (MlpPolicy) learning on highway-fast-v0: env-steps/s end to end."""
    try:
        import gymnasium as gym
        import highway_env  # noqa: F401  (registers the environments)
        from stable_baselines3 import PPO
    except ImportError as exc:
        return f"skipped: {exc.name} not installed (pip install stable-baselines3 highway-env)"
    torch.set_num_threads(1)
    env = gym.make("highway-fast-v0")
    model = PPO("MlpPolicy", env, n_steps=256, batch_size=64, n_epochs=10, seed=0, device="cpu", verbose=0)
    t0 = time.perf_counter()
    model.learn(total_timesteps=total)
    dt = time.perf_counter() - t0
    return {"env": "highway-fast-v0", "steps": model.num_timesteps, "env_steps_per_s": model.num_timesteps / dt,
            "vehicles": len(env.unwrapped.road.vehicles), "config": "MlpPolicy, n_steps 256, batch 64, 10 epochs"}


def _scenarios(kind: str, n: int):
    if kind == "cut-in":
        from drivesim.events.generate import LabelConfig, generate_set

        return generate_set("cut-in", n, seed=0, label=LabelConfig(expert_check=False, workers=1), show_progress=False).scenarios
    from drivesim.sim.bench import bench_scenarios

    return bench_scenarios(n, 32)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="B = 256 only")
    p.add_argument("--init", default=None, help="policy checkpoint to start from (default: a fresh PolicyNet)")
    p.add_argument("--scenarios", default="cut-in", choices=["cut-in", "bench"],
                   help="cut-in: 128 generated cut-ins (the RL workload); bench: bench_sim's 32-agent straight road")
    p.add_argument("--updates", type=int, default=2, help="timed PPO updates per size")
    p.add_argument("--no-peer", action="store_true", help="skip stable-baselines3 on highway-env")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    from drivesim.train.policy_net import PolicyNet, save_policy

    tmp = tempfile.TemporaryDirectory()
    init = Path(args.init) if args.init else save_policy(PolicyNet(), Path(tmp.name) / "init.pt", {"name": "fresh"})
    scen = _scenarios(args.scenarios, 128)
    peer = "skipped (--no-peer)" if args.no_peer else bench_sb3()
    sizes = [(256, 1), (256, 5)] if args.quick else [(256, 1), (256, 5), (1024, 1), (1024, 5)]
    rows = [bench_ours(scen, init, B, k, args.updates) for B, k in sizes]
    ref = peer["env_steps_per_s"] if isinstance(peer, dict) else None
    print(f"\n{'trainer':34s} {'B':>5s} {'A':>4s} {'every':>5s} {'rollout s':>9s} {'update s':>9s} {'env-steps/s':>11s} "
          f"{'M env-steps/min':>15s} {'x SB3':>7s}")
    for r in rows:
        x = f"{r['env_steps_per_s'] / ref:7.0f}" if ref else f"{'n/a':>7s}"
        name = f"drivesim PPO ({args.scenarios})"
        print(f"{name:34s} {r['B']:5d} {r['A']:4d} {r['policy_every']:5d} {r['rollout_s']:9.2f} "
              f"{r['update_s']:9.2f} {r['env_steps_per_s']:11.0f} {r['env_steps_per_s'] * 60 / 1e6:15.3f} {x}")
    if isinstance(peer, dict):
        print(f"{'SB3 PPO, ' + peer['env']:34s} {1:5d} {peer['vehicles']:4d} {1:5d} {'':>9s} {'':>9s} "
              f"{peer['env_steps_per_s']:11.0f} {peer['env_steps_per_s'] * 60 / 1e6:15.3f} {1:7.0f}   ({peer['config']})")
    else:
        print(f"stable-baselines3 peer {peer}")
    print("\nwhere the time goes, microseconds per env-step (the update: per env-step too, i.e. per sample / every):")
    for r in rows:
        parts = ", ".join(f"{k} {v:.1f}" for k, v in r["parts"].items())
        print(f"  B={r['B']} every {r['policy_every']}: {parts}; PPO update {r['update_us_per_sample'] / r['policy_every']:.1f} "
              f"({r['update_us_per_sample']:.0f} per sample, {r['epochs']} epochs)")
    print("target: 1 M env-steps/min (~17k/s) on one thread")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

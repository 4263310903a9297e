"""Evaluate an IL checkpoint against the expert on the nominal suite and on held-out generated
rare events, cut-ins by default (the figures of the IL policy card in policies/README.md).

    python tools/eval_il.py policies/il_base.pt [--events cut-in] [--n 100] [--seed 7]

Prints success, collision rate and PDMS per policy and scenario set, and warns when the
evaluation scenarios overlap the checkpoint's training scenarios (by name or content hash).
"""

from __future__ import annotations

import argparse
import time

import torch

from drivesim.io.scenario_file import scenario_hash
from drivesim.sim.evaluate import evaluate
from drivesim.sim.events import LabelConfig, generate_set
from drivesim.sim.expert import PDMClosed
from drivesim.train.il_data import suite_scenarios
from drivesim.train.policy_net import load_policy


def overlap(card: dict, scenarios) -> list[str]:
    trained = card.get("training_scenarios") or {}
    hashes = set(trained.values())
    return [s.name for s in scenarios if s.name in trained or scenario_hash(s) in hashes]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint")
    p.add_argument("--suite", default="nominal")
    p.add_argument("--events", default="cut-in", help="comma-separated generated events ('' for none; default cut-in)")
    p.add_argument("--n", type=int, default=100, help="scenarios per event (default 100)")
    p.add_argument("--seed", type=int, default=7, help="seed of the event sets (default 7; training uses 1000 + its seed)")
    args = p.parse_args()
    torch.set_num_threads(1)
    policy = load_policy(args.checkpoint)
    sets = {args.suite: suite_scenarios(args.suite, seed=None)[0]}
    label = LabelConfig(expert_check=False, workers=1)
    for event in [e for e in args.events.split(",") if e]:
        sets[f"{event} x{args.n} seed {args.seed}"] = generate_set(event, args.n, seed=args.seed, label=label,
                                                                   show_progress=False).scenarios
    for name, scenarios in sets.items():
        seen = overlap(policy.card, scenarios)
        if seen:
            print(f"warning: {len(seen)} of {len(scenarios)} scenarios of {name} were trained on, e.g. {seen[:3]}")
        t0 = time.perf_counter()
        ev = evaluate(scenarios, [policy], expert=PDMClosed(), show_progress=False)
        table = ev.results.groupby("policy")[["success", "collision_any", "pdms", "comfort", "progress"]].mean().round(3)
        print(f"\n{name}: {len(scenarios)} scenarios ({time.perf_counter() - t0:.0f} s)\n{table.to_string()}")


if __name__ == "__main__":
    main()

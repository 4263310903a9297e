"""Support for ppo.py: training scenarios by name, the held-out closed-loop check, and the
training curves figure."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from drivesim.core.scenario import Scenario
from drivesim.train.policy_net import NetPolicy

RARE_EVENTS = ("cut-in", "hard-brake", "stalled", "merge", "pedestrian")
HELDOUT_SEED = 999_983  # generator seed of held-out evaluation sets (never a training seed)


def training_scenarios(spec: str, n: int, seed: int) -> tuple[list[Scenario], dict]:
    """Scenarios by name: 'rare' (the five rare-event generators, n split evenly), one event name
    ('cut-in', ...), 'nominal' (the procedural suite scaled to n), a suite YAML, or scenario
    files (a set file or folder; the first n). Returns (scenarios, a description for the card)."""
    if spec in ("rare", *RARE_EVENTS):
        from drivesim.train.il_data import rare_scenarios

        out, prov = rare_scenarios(n, RARE_EVENTS if spec == "rare" else (spec,), seed)
        return out, {"source": spec, "generator_seed": seed, "n": len(out), "events": prov["events"]}
    path = Path(spec)
    if spec == "nominal" or path.suffix in (".yaml", ".yml"):
        from drivesim.io.suite import build_scenarios, load_suite, suite_hash

        suite = load_suite(Path(__file__).resolve().parents[2] / "scenarios" / "nominal.yaml" if spec == "nominal" else path)
        if spec == "nominal":  # the nominal mix, n scenarios, drawn with this seed
            g = len(suite.groups)
            groups = tuple(replace(gr, count=n // g + (i < n % g)) for i, gr in enumerate(suite.groups))
            suite = replace(suite, seed=seed, groups=groups)
        out = build_scenarios(suite, progress=False)[:n]
        return out, {"source": spec, "suite": suite.name, "suite_hash": suite_hash(suite), "suite_seed": suite.seed,
                     "n": len(out)}
    from drivesim.io.scenario_file import load_scenarios

    out, errors = load_scenarios(path)
    if errors:
        raise ValueError(f"{spec}: {len(errors)} scenario files failed to load, e.g. {errors[0]}")
    return out[:n], {"source": str(path), "n": len(out[:n])}


def heldout_outcomes(policies: dict[str, NetPolicy], scenarios: list[Scenario], batch_size: int = 128) -> dict:
    """Greedy closed-loop outcome rates of each policy on held-out scenarios."""
    from drivesim.sim.evaluate import EvalConfig, evaluate

    ev = evaluate(scenarios, list(policies.values()), config=EvalConfig(batch_size=batch_size, keep_failure_trajectories=False),
                  show_progress=False)
    out = {}
    for name, pol in policies.items():
        r = ev.results[ev.results["policy"] == pol.name]
        out[name] = {"scenarios": len(r), "collision_rate": float(r["collision_any"].mean()),
                     "offroad_rate": float(1 - r["drivable_area_compliance"].mean()), "success_rate": float(r["success"].mean()),
                     "progress_m": float(r["progress"].mean())}
    return out


def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    u = [h["update"] for h in history]
    get = lambda k: [h.get(k, float("nan")) for h in history]

    def smooth(a, k: str, label=None):  # raw (faint) and a 5-update moving average weighted by finished episodes
        v, n = np.nan_to_num(np.array(get(k), float)), np.array(get("episodes"), float)
        w = np.ones(5)
        count = np.convolve(n, w)[: len(v)]
        avg = np.where(count > 0, np.convolve(v * n, w)[: len(v)] / np.maximum(count, 1), np.nan)
        line, = a.plot(u, avg, label=label)
        a.plot(u, get(k), alpha=0.25, color=line.get_color())

    fig, ax = plt.subplots(2, 2, figsize=(10, 6.5))
    smooth(ax[0, 0], "episode_return")
    ax[0, 0].set_title("episode return (finished episodes, sampled actions)")
    for k in ("success", "collision", "offroad"):
        smooth(ax[0, 1], f"{k}_rate", k.replace("offroad", "off-road"))
    ax[0, 1].set_ylim(-0.02, 1.02)
    ax[0, 1].legend()
    ax[0, 1].set_title("outcome of finished episodes")
    ax[1, 0].plot(u, get("kl_il"), label="KL(pi || pi_IL)")
    ax[1, 0].plot(u, get("approx_kl"), label="approx KL per update")
    ax[1, 0].legend()
    ax[1, 0].set_title("KL")
    ax[1, 1].plot(u, get("value_loss"))
    ax[1, 1].set_yscale("log")
    ax[1, 1].set_title("value loss")
    for a in ax.flat:
        a.set_xlabel("update")
        a.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

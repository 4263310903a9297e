"""The training results table (WorldEngine-style): policy variants × training seeds, evaluated in
closed loop on held-out sets (rare events, nominal, starts, real scenes), with bootstrap confidence
intervals (over scenarios and training seeds) and a bar chart.

Each (variant, seed) checkpoint is run on every evaluation set with the expert as progress
reference; a scenario's outcome is a row. Per variant and set: the mean over all seeds' rows of
each of METRICS, with a 95 % percentile bootstrap interval resampling scenarios and seeds. A checkpoint whose card lists
training scenarios that share a content hash with an evaluation scenario is reported as an
overlap warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from drivesim.core.scenario import Scenario  # noqa: E402
from drivesim.io.scenario_file import scenario_hash  # noqa: E402
from drivesim.sim.evaluate import EvalConfig, evaluate  # noqa: E402
from drivesim.sim.expert import PDMClosed  # noqa: E402

# table label -> row column; "at_fault": an at-fault collision (nuPlan's no-collision multiplier below 1);
# "progress_vs_expert": the policy's route progress / the expert's on the same scenario (capped at 1.5)
METRICS = {"success": "success", "collision": "collision_any", "at_fault": "at_fault", "pdms": "pdms", "comfort": "comfort",
           "progress_vs_expert": "progress_vs_expert", "route_completion": "route_completion"}
SHORT = ("success", "collision", "pdms")  # the columns of the markdown table (all are in table.csv)


@dataclass
class TrainingReport:
    table: pd.DataFrame  # variant, set, metric -> mean, lo, hi (and per-seed means)
    rows: pd.DataFrame  # every (variant, seed, set, scenario) result
    warnings: list[str] = field(default_factory=list)


def bootstrap_ci(values: np.ndarray, n_boot: int = 2000, seed: int = 0, level: float = 0.95):
    """(mean, lo, hi) of the mean of `values` [scenarios, seeds], a two-stage bootstrap that
    resamples scenarios (rows) and, with more than one seed, training seeds (columns)."""
    values = np.asarray(values, float)
    if values.ndim == 1:
        values = values[:, None]
    ok = np.isfinite(values).all(axis=1)
    values = values[ok]
    if not len(values):
        return np.nan, np.nan, np.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    cols = rng.integers(0, values.shape[1], size=(n_boot, values.shape[1]))
    means = np.take_along_axis(values[idx], cols[:, None, :], axis=2).mean(axis=(1, 2))
    a = (1 - level) / 2
    return float(values.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def overlap_warnings(policy_name: str, card: dict, eval_sets: dict[str, list[Scenario]]) -> list[str]:
    trained = set((card.get("training_scenarios") or {}).values())  # {name: content hash}, lineage included
    out = []
    for name, scenarios in eval_sets.items():
        hit = [s.name for s in scenarios if (s.meta.get("content_hash") or scenario_hash(s)) in trained]
        if hit:
            out.append(f"{policy_name}: {len(hit)} of {len(scenarios)} '{name}' evaluation scenarios were in its training "
                       f"data (e.g. {hit[:3]})")
    return out


def evaluate_variants(policies: dict[str, list], eval_sets: dict[str, list[Scenario]], batch_size: int = 64) -> TrainingReport:
    """policies: variant -> one policy per training seed (each with an optional `.card`). The
    expert runs once per set (progress reference, and a reference row of the table)."""
    flat, warnings = {}, []
    for variant, seeds in policies.items():
        for seed, policy in enumerate(seeds):
            policy.name = f"{variant}#{seed}"
            flat[policy.name] = (variant, seed, policy)
            warnings += overlap_warnings(f"{variant} seed {seed}", getattr(policy, "card", {}) or {}, eval_sets)
    rows = []
    for set_name, scenarios in eval_sets.items():
        expert = PDMClosed()
        ev = evaluate(scenarios, [p for _, _, p in flat.values()], expert=expert,
                      config=EvalConfig(batch_size=batch_size, keep_failure_trajectories=False), show_progress=False)
        res = with_derived(ev.results, expert.name)
        for name, (variant, seed, _) in flat.items():
            rows.append(res[res["policy"] == name].assign(variant=variant, seed=seed, set=set_name))
        rows.append(res[res["policy"] == expert.name].assign(variant="expert (reference)", seed=0, set=set_name))
    all_rows = pd.concat(rows, ignore_index=True)
    return TrainingReport(summarize(all_rows), all_rows, warnings)


def with_derived(res: pd.DataFrame, expert: str) -> pd.DataFrame:
    """The evaluation rows with `at_fault` and `progress_vs_expert` (see METRICS) added."""
    res = res.copy()
    ref = res[res["policy"] == expert].set_index("scenario")["progress"]
    res["at_fault"] = (res["no_collision"] < 1).astype(float).where(res["no_collision"].notna())
    res["progress_vs_expert"] = (res["progress"] / res["scenario"].map(ref).clip(lower=1.0)).clip(upper=1.5)
    return res


def summarize(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (variant, set_name), g in rows.groupby(["variant", "set"], sort=False):
        row = {"variant": variant, "set": set_name, "seeds": g["seed"].nunique(), "scenarios": g["scenario"].nunique()}
        for label, col in METRICS.items():
            if col not in g:
                continue
            wide = g.pivot_table(index="scenario", columns="seed", values=col, aggfunc="mean")
            mean, lo, hi = bootstrap_ci(wide.to_numpy())
            row.update({label: mean, f"{label}_lo": lo, f"{label}_hi": hi})
        out.append(row)
    return pd.DataFrame(out)


def format_table(table: pd.DataFrame, metrics=SHORT) -> str:
    """Markdown: one row per variant, `metrics` with their intervals per set."""
    sets = list(dict.fromkeys(table["set"]))
    head = "| variant | " + " | ".join(f"{s}: {m}" for s in sets for m in metrics) + " |"
    lines = [head, "|" + "---|" * (1 + len(sets) * len(metrics))]
    for variant, g in table.groupby("variant", sort=False):
        cells = []
        for s in sets:
            r = g[g["set"] == s]
            for m in metrics:
                ok = not r.empty and m in r and pd.notna(r[m].iloc[0])
                cells.append(f"{r[m].iloc[0]:.3f} [{r[m + '_lo'].iloc[0]:.3f}, {r[m + '_hi'].iloc[0]:.3f}]" if ok else "")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(table: pd.DataFrame, path) -> Path:
    sets = list(dict.fromkeys(table["set"]))
    variants = list(dict.fromkeys(table["variant"]))
    fig, axes = plt.subplots(len(sets), len(SHORT), figsize=(4.2 * len(SHORT), 2.6 * len(sets)), squeeze=False)
    colors = plt.cm.tab10(np.arange(len(variants)))
    for i, s in enumerate(sets):
        for j, m in enumerate(SHORT):
            ax = axes[i, j]
            g = table[table["set"] == s].set_index("variant").reindex(variants)
            err = np.stack([g[m] - g[f"{m}_lo"], g[f"{m}_hi"] - g[m]])
            ax.bar(range(len(variants)), g[m], yerr=err, color=colors, capsize=3)
            ax.set_xticks(range(len(variants)))
            ax.set_xticklabels(variants, rotation=25, ha="right", fontsize=7)
            ax.set_title(f"{s}: {m}", fontsize=9)
            ax.set_ylim(0, 1.05)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

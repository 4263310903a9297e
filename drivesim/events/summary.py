"""A one-page PNG summary of a generated rare-event set: knob histograms, the criticality that
was produced against the avoidability bound, the required deceleration, the expert's minimum
TTC, and a grid of BEV thumbnails (each scene at its start, the event agent outlined)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from drivesim.core.scenario import Scenario  # noqa: E402
from drivesim.render.bev import draw_agents, draw_map  # noqa: E402

LABEL_COLORS = {"unavoidable": "#d62728", "avoidable (expert fails)": "#ff7f0e", "avoidable, solved": "#2ca02c"}


def labels(table: pd.DataFrame) -> np.ndarray:
    solved = table["expert_solved"].to_numpy(bool) if "expert_solved" in table else np.zeros(len(table), bool)
    avoid = table["avoidable"].to_numpy(bool)
    return np.where(~avoid, "unavoidable", np.where(solved, "avoidable, solved", "avoidable (expert fails)"))


def _knob_columns(table: pd.DataFrame) -> list[str]:
    skip = {"knob_background_seed", "knob_delay", "knob_dx", "knob_ego_lane", "knob_swerve_lane"}
    cols = [c for c in table.columns if c.startswith("knob_") and c not in skip]
    return [c for c in cols if pd.api.types.is_numeric_dtype(table[c]) and table[c].nunique() > 1][:8]


def _thumb(ax, s: Scenario, caption: str) -> None:
    draw_map(ax, s.road, route=s.route, t=0.0)
    frame = {"x": s.x[None], "y": s.y[None], "yaw": s.yaw[None], "length": s.length[None], "width": s.width[None],
             "agent_type": s.agent_type[None]}
    agent = int(s.meta.get("event_agent", 1))
    draw_agents(ax, frame, 0, highlight=[agent])
    cx = 0.5 * (s.x[0] + s.x[agent])
    half = max(abs(s.x[agent] - s.x[0]) / 2 + 15.0, 25.0)
    ax.set_xlim(cx - half, cx + half)
    ax.set_ylim(s.y[0] - half * 0.45, s.y[0] + half * 0.45)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(caption, fontsize=6.5)


def plot_event_set(scenarios: list[Scenario], table: pd.DataFrame, header: dict, path, thumbnails: int = 8) -> Path:
    thumbnails = min(thumbnails, 8)
    knobs = _knob_columns(table)
    fig = plt.figure(figsize=(16, 15))
    grid = fig.add_gridspec(5, 4, hspace=0.55, wspace=0.3)
    for i, c in enumerate(knobs):
        ax = fig.add_subplot(grid[i // 4, i % 4])
        values = table[c].astype(float)  # boolean knobs (stalled's `reveal`) as 0/1: numpy cannot bin bools
        ax.hist(values.replace([np.inf, -np.inf], np.nan).dropna(), bins=30, color="#4c72b0")
        ax.set_title(c.removeprefix("knob_"), fontsize=9)
    lab = labels(table)
    crit = "headway_at_event" if header.get("criticality") == "headway" else "ttc_at_event"
    ax = fig.add_subplot(grid[2, 0])
    for name, color in LABEL_COLORS.items():
        m = lab == name
        ax.scatter(table.loc[m, "rel_speed"], table.loc[m, crit].clip(upper=10), s=6, color=color, label=f"{name} ({m.sum()})")
    bound = header.get("config", {}).get("bound", {})
    if crit == "ttc_at_event" and bound:
        dv = np.linspace(max(table["rel_speed"].min(), 0.1), max(table["rel_speed"].max(), 0.2), 50)
        ax.plot(dv, bound["reaction"] + dv / (2 * bound["max_brake"]), "k--", lw=1, label="bound, no cutter braking")
    ax.set_xlabel("relative speed at the event (m/s)")
    ax.set_ylabel(crit.replace("_", " ") + " (s)")
    ax.legend(fontsize=6)
    ax = fig.add_subplot(grid[2, 1])
    ax.hist(table["required_decel"].replace([np.inf], 20.0).clip(upper=20).dropna(), bins=30, color="#8172b2")  # NaN: no event
    if bound:
        ax.axvline(bound["max_brake"], color="k", ls="--", lw=1)
    ax.set_title("required deceleration (m/s², inf → 20)", fontsize=9)
    if "expert_min_ttc" in table:
        ax = fig.add_subplot(grid[2, 2])
        ax.hist(table["expert_min_ttc"].replace([np.inf, -np.inf], np.nan).dropna(), bins=30, color="#55a868")
        ax.set_title("expert: minimum TTC (s)", fontsize=9)
    ax = fig.add_subplot(grid[2, 3])
    ax.axis("off")
    counts = pd.Series(lab).value_counts()
    text = [f"{header.get('generator')}  seed {header.get('seed')}  n {len(table)}",
            f"event happened: {int(table['event_happened'].sum())}", f"feasible cutter/leader: {int(table['feasible'].sum())}",
            f"avoidable by the braking bound: {int(table['bound_avoidable'].sum())}",
            f"no reaction collides: {int(table['no_reaction_collision'].sum())}"]
    text += [f"{k}: {v}" for k, v in counts.items()]
    ax.text(0, 1, "\n".join(text), va="top", fontsize=9, family="monospace")
    picks = np.linspace(0, len(scenarios) - 1, min(thumbnails, len(scenarios))).astype(int) if scenarios else []
    for j, i in enumerate(picks):
        ax = fig.add_subplot(grid[3 + j // 4, j % 4])
        row = table.iloc[i]
        _thumb(ax, scenarios[i], f"{scenarios[i].name}\n{crit.split('_')[0]} {row[crit]:.2f} s, {lab[i]}")
    fig.suptitle(f"{header.get('generator')}: {len(table)} scenarios (set {str(header.get('set_hash', ''))[:12]})")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

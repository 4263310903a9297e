"""Evaluation results in numbers: per-policy summaries, confidence intervals, breakdowns, failure reasons, plots.

`results` has one row per (policy, scenario) with the columns in `ID_COLUMNS` plus metric
columns (see `METRIC_ORDER`); every other numeric or boolean column counts as a metric too.
Rows with status 'error' may hold NaN metrics and an `error` message.

Summary conventions: metric means and the success and collision rates are taken over the
scenarios that ran (status 'ok'), skipping NaN; `errors` counts the scenarios that did not
run and `failed` the ones that ran without success, so an all-error policy shows NaN rates.
Rows with status 'skipped' are input files that could not be read: counted in `skipped` (a
column only when there are any), not in `errors`. The HTML page is io/report_page.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from drivesim.core.safe_io import atomic_save

ID_COLUMNS = ("policy", "scenario", "map", "status", "error")
METRIC_ORDER = ("pdms", "nuplan_score", "success", "collision_any", "no_collision", "drivable_area_compliance",
                "driving_direction", "progress", "progress_ratio", "ttc", "min_ttc", "speed_limit", "comfort")
PLOT_METRICS = ("pdms", "progress_ratio", "min_ttc")
NOT_METRICS = ("expert_given", "steps", "held_back", "seed", "expert_progress", "camera_frames",
               "camera_seconds")  # bookkeeping, not averaged (camera cost: camera_cost)
DESCRIPTOR_PREFIXES = ("knob_", "label_")  # a generated event's knobs and labels (sim/evaluate.scenario_columns)
COUNT_COLUMNS = ("scenarios", "errors", "skipped", "failed")
SKIPPED = "skipped"  # status of a row for an input file that could not be read


# ------------------------------------------------------------------------------------ summary
def metric_columns(results: pd.DataFrame) -> list[str]:
    """Metric columns: the known ones in their usual order, then any other numeric ones, except
    bookkeeping (`NOT_METRICS`) and what describes a scenario (`knob_*`, `label_*`)."""
    numeric = [c for c in results.columns if c not in ID_COLUMNS and c not in NOT_METRICS
               and not c.startswith(DESCRIPTOR_PREFIXES)
               and (pd.api.types.is_numeric_dtype(results[c]) or pd.api.types.is_bool_dtype(results[c]))]
    return [c for c in METRIC_ORDER if c in numeric] + [c for c in numeric if c not in METRIC_ORDER]


def check_results(results: pd.DataFrame) -> None:
    missing = [c for c in ("policy", "scenario", "status") if c not in results.columns]
    if missing:
        raise ValueError(f"results are missing column(s) {missing}; have {list(results.columns)}")


def failed_mask(results: pd.DataFrame) -> pd.Series:
    """Rows that errored, or ran without success (NaN success counts as not successful)."""
    ok = results["status"] == "ok"
    if "success" not in results.columns:
        return ~ok
    return ~ok | ~(pd.to_numeric(results["success"], errors="coerce") >= 0.5)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """One row per policy (in order of first appearance): counts, rates and metric means.

    Columns: scenarios, errors, failed, success_rate, collision_rate, then the mean of every
    other metric column (pdms and nuplan_score first); means over status-'ok' rows.
    """
    check_results(results)
    metrics = metric_columns(results)
    rows = {}
    any_skipped = bool((results["status"] == SKIPPED).any())
    for policy, group in results.groupby("policy", sort=False):
        ok = group[group["status"] == "ok"]
        skipped = int((group["status"] == SKIPPED).sum())
        row = {"scenarios": len(group), "errors": int((group["status"] != "ok").sum()) - skipped,
               **({"skipped": skipped} if any_skipped else {}),
               "failed": int((failed_mask(group) & (group["status"] == "ok")).sum())}
        means = ok[metrics].apply(pd.to_numeric, errors="coerce").astype(float)
        means = means.replace([np.inf, -np.inf], np.nan).mean() if len(ok) else pd.Series(np.nan, index=metrics)
        row["success_rate"] = means.get("success", np.nan)
        row["collision_rate"] = means.get("collision_any", np.nan)
        row.update({m: means[m] for m in metrics if m not in ("success", "collision_any")})
        rows[policy] = row
    summary = pd.DataFrame.from_dict(rows, orient="index")
    summary.index.name = "policy"
    return summary


# ------------------------------------------------------------------ what an engineer reads first
HEADLINE = (  # (column, how it is computed from a row), in the order the report shows them
    ("success", "success"), ("at_fault_collision", "at-fault collision (any class)"),
    ("route_completion", "route completion"), ("pdms", "PDMS"), ("nuplan_score", "nuPlan score"))
AT_FAULT = ("collisions_vru", "collisions_vehicle", "collisions_object")


def _numeric(frame: pd.DataFrame, column: str) -> pd.Series:
    return pd.to_numeric(frame[column], errors="coerce").astype(float) if column in frame else pd.Series(np.nan, index=frame.index)


def at_fault_collision(results: pd.DataFrame) -> pd.Series:
    """1.0 where the ego had an at-fault collision of any class, NaN where the counts are missing."""
    counts = pd.concat([_numeric(results, c) for c in AT_FAULT], axis=1)
    return (counts.fillna(0).sum(axis=1) > 0).astype(float).where(counts.notna().any(axis=1))


def bootstrap_ci(values, level: float = 0.95, samples: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean of the finite values and its percentile bootstrap interval
    (`samples` resamples, seeded, so a report is reproducible); NaNs when there are no values."""
    v = _finite(values)
    if v.size == 0:
        return (np.nan, np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(samples, v.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return (float(v.mean()), float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail)))


def headline(results: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per policy: scenarios, errors, and the HEADLINE metrics as mean with a 95 % bootstrap
    interval (columns `<name>`, `<name>_lo`, `<name>_hi`), over the scenarios that ran."""
    check_results(results)
    frame = results.assign(at_fault_collision=at_fault_collision(results))
    rows = {}
    for policy, group in frame.groupby("policy", sort=False):
        ok = group[group["status"] == "ok"]
        row = {"scenarios": len(group), "errors": int((group["status"] != "ok").sum())}
        for column, _ in HEADLINE:
            row[column], row[f"{column}_lo"], row[f"{column}_hi"] = bootstrap_ci(_numeric(ok, column), seed=seed)
        rows[policy] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "policy"
    return table


def camera_cost(results: pd.DataFrame) -> dict[str, float]:
    """Per policy that read cameras: milliseconds per frame of the rig's cameras (rendering only)."""
    if "camera_frames" not in results:
        return {}
    out = {}
    for policy, g in results.groupby("policy", sort=False):
        frames, seconds = _numeric(g, "camera_frames").sum(), _numeric(g, "camera_seconds").sum()
        if frames > 0:
            out[str(policy)] = 1000.0 * seconds / frames
    return out


def failure_reason(row) -> str:
    """Why a row is not a success, in words: the error, at-fault collisions with their class,
    contacts that were not at fault (they fail `success`, not the scores), off-road, wrong way,
    no progress; '' for a success."""
    get = lambda k: pd.to_numeric(pd.Series([row.get(k, np.nan)]), errors="coerce").iloc[0]
    if row.get("status", "ok") != "ok":
        return f"{row.get('status')}: {row.get('error', '') or 'no message'}"
    if get("success") >= 0.5:
        return ""
    reasons = []
    fault = [f"{int(get(c))} {c.removeprefix('collisions_')}" for c in AT_FAULT if get(c) > 0]
    if fault:
        reasons.append("at-fault collision (" + ", ".join(fault) + ")")
    elif get("collision_any") > 0:
        reasons.append("contact, not at fault (fails success, not PDMS)")
    if get("drivable_area_compliance") < 0.5:
        reasons.append(f"off the drivable area ({get('max_offroad'):.1f} m)" if np.isfinite(get("max_offroad"))
                       else "off the drivable area")
    if get("driving_direction") < 1:
        reasons.append("drove against the lane direction")
    if get("making_progress") < 0.5:
        reasons.append(f"no progress ({get('progress'):.1f} m)" if np.isfinite(get("progress")) else "no progress")
    return "; ".join(reasons) or "not a success"


IGNORED_KNOBS = ("background_seed", "delay", "dx", "ego_lane", "swerve_lane", "ego_length", "cutter_length",
                 "cutter_width")  # bookkeeping knobs of the event generators: no breakdown by them


def knob_bins(values: pd.Series, bins: int = 3) -> pd.Series:
    """A knob's values as `bins` quantile ranges ('lo-hi', an ordered categorical), or as
    themselves when there are few."""
    v = pd.to_numeric(values, errors="coerce")
    if v.nunique() <= bins or v.isna().all():
        return values.astype(str)
    cut = pd.qcut(v, bins, duplicates="drop")
    low = v.min()  # qcut opens the first bin a hair below the smallest value
    return cut.cat.rename_categories([f"{max(c.left, low):.3g}-{c.right:.3g}" for c in cut.cat.categories])


def breakdown_keys(results: pd.DataFrame) -> list[str]:
    """The columns worth a breakdown: map and event type when they vary, then the numeric knobs
    that vary (not the generators' bookkeeping ones)."""
    keys = [c for c in ("map", "event") if c in results and results[c].astype(str).nunique() > 1]
    return keys + [c for c in results.columns if c.startswith("knob_") and c.removeprefix("knob_") not in IGNORED_KNOBS
                   and pd.api.types.is_numeric_dtype(results[c]) and not pd.api.types.is_bool_dtype(results[c])
                   and results[c].nunique() > 1]


def breakdown(results: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per (policy, group of `by`): scenarios, success rate, at-fault collision rate, mean PDMS
    over the scenarios that ran; knob columns (`knob_*`) are grouped in quantile bins, in order."""
    frame = results[results["status"] == "ok"].copy()
    frame["at_fault_collision"] = at_fault_collision(frame)
    frame["_group"] = knob_bins(frame[by]) if by.startswith("knob_") else frame[by].astype(str)
    table = frame.groupby(["policy", "_group"], sort=False, observed=True).agg(
        scenarios=("scenario", "size"), success=("success", "mean"),
        at_fault_collision=("at_fault_collision", "mean"), pdms=("pdms", "mean"))
    if isinstance(frame["_group"].dtype, pd.CategoricalDtype):  # bins low to high within each policy
        order = {p: i for i, p in enumerate(dict.fromkeys(frame["policy"]))}
        table = table.sort_index(key=lambda ix: ix.map(order) if ix.name == "policy" else ix)
    return table.rename_axis(["policy", by.removeprefix("knob_")])


def avoidable_table(results: pd.DataFrame) -> pd.DataFrame | None:
    """Per (policy, label) for generated event sets: unavoidable / avoidable by the braking bound /
    avoidable only by the expert; None when the results carry no labels."""
    if "label_avoidable" not in results or "label_bound_avoidable" not in results:
        return None
    avoidable, bound = (results[c].fillna(False).astype(bool) for c in ("label_avoidable", "label_bound_avoidable"))
    label = np.where(~avoidable, "unavoidable", np.where(bound, "avoidable by braking", "avoidable (expert only)"))
    return breakdown(results.assign(label=label), "label")


TERMINAL_COLUMNS = ("scenarios", "errors", "skipped", "failed", "success_rate", "collision_rate", "pdms", "nuplan_score",
                    "drivable_area_compliance", "progress_ratio", "ttc", "comfort", "speed_limit")


def format_table(summary: pd.DataFrame, digits: int = 3, columns=TERMINAL_COLUMNS) -> str:
    """The summary as an aligned plain-text table for the terminal (`columns` that exist; all
    columns when None)."""
    if columns is not None:
        summary = summary[[c for c in columns if c in summary.columns]]
    def cell(col, v):
        if col in COUNT_COLUMNS:
            return str(int(v))
        return "-" if pd.isna(v) else f"{float(v):.{digits}f}"

    header = [summary.index.name or "policy", *map(str, summary.columns)]
    body = [[str(idx), *(cell(c, summary.at[idx, c]) for c in summary.columns)] for idx in summary.index]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    fmt = lambda r: "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(r, widths)))
    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)])


# -------------------------------------------------------------------------------------- plots
def _finite(values) -> np.ndarray:
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
    return v[np.isfinite(v)]


def plot_metric(results: pd.DataFrame, metric: str, path) -> Path:
    """Per-policy histograms (left) and box plots (right) of one metric, finite values only."""
    policies = list(dict.fromkeys(results["policy"]))
    ok = results[results["status"] == "ok"]
    data = [_finite(ok.loc[ok["policy"] == p, metric]) for p in policies]
    fig = Figure(figsize=(9, 3.2), dpi=90)
    FigureCanvasAgg(fig)
    ax_h, ax_b = fig.subplots(1, 2)
    allv = np.concatenate(data) if data else np.zeros(0)
    bins = np.histogram_bin_edges(allv, bins=20) if allv.size else 10
    for p, d in zip(policies, data):
        if d.size:
            ax_h.hist(d, bins=bins, histtype="step", linewidth=1.5, label=f"{p} (n={d.size})")
    ax_h.set_xlabel(metric)
    ax_h.set_ylabel("scenarios")
    if allv.size:
        ax_h.legend(fontsize=7)
    ax_b.boxplot([d if d.size else [np.nan] for d in data])
    ax_b.set_xticks(range(1, len(policies) + 1), policies, fontsize=8, rotation=20)
    ax_b.set_ylabel(f"{metric} (finite values)")
    fig.tight_layout()
    path = Path(path)
    atomic_save(path, lambda fh: fig.savefig(fh, format="png"))
    return path

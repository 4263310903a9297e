"""Evaluation reports: a per-policy summary table and a self-contained HTML page.

`results` has one row per (policy, scenario) with the columns in `ID_COLUMNS` plus metric
columns (see `METRIC_ORDER`); every other numeric or boolean column counts as a metric too.
Rows with status 'error' may hold NaN metrics and an `error` message.

Summary conventions: metric means and the success and collision rates are taken over the
scenarios that ran (status 'ok'), skipping NaN; `errors` counts the scenarios that did not
run and `failed` the ones that ran without success, so an all-error policy shows NaN rates.
Rows with status 'skipped' are input files that could not be read: counted in `skipped` (a
column only when there are any), not in `errors`. Every file is written atomically.
"""

from __future__ import annotations

import datetime
import html
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from drivesim.core.safe_io import atomic_save, atomic_write_text

ID_COLUMNS = ("policy", "scenario", "map", "status", "error")
METRIC_ORDER = ("pdms", "nuplan_score", "success", "collision_any", "no_collision", "drivable_area_compliance",
                "driving_direction", "progress", "progress_ratio", "ttc", "min_ttc", "speed_limit", "comfort")
PLOT_METRICS = ("pdms", "progress_ratio", "min_ttc")
COUNT_COLUMNS = ("scenarios", "errors", "skipped", "failed")
SKIPPED = "skipped"  # status of a row for an input file that could not be read
CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f0f0f0; } td.text, th.text { text-align: left; }
tr.fail td { background: #fff1f0; } tr.error td { background: #fde2e1; }
.meta th { text-align: left; } .warn { background: #fff4cc; border: 1px solid #e0c050; padding: 6px 10px; }
.plots img { margin: 4px; border: 1px solid #ddd; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #ccc; padding: 6px; width: 330px; font-size: 12px; }
.card img { width: 320px; } .reason { color: #a00; white-space: pre-wrap; word-break: break-word; }
"""


# ------------------------------------------------------------------------------------ summary
def metric_columns(results: pd.DataFrame) -> list[str]:
    """Metric columns: the known ones in their usual order, then any other numeric ones."""
    numeric = [c for c in results.columns if c not in ID_COLUMNS
               and (pd.api.types.is_numeric_dtype(results[c]) or pd.api.types.is_bool_dtype(results[c]))]
    return [c for c in METRIC_ORDER if c in numeric] + [c for c in numeric if c not in METRIC_ORDER]


def _check_results(results: pd.DataFrame) -> None:
    missing = [c for c in ("policy", "scenario", "status") if c not in results.columns]
    if missing:
        raise ValueError(f"results are missing column(s) {missing}; have {list(results.columns)}")


def _failed_mask(results: pd.DataFrame) -> pd.Series:
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
    _check_results(results)
    metrics = metric_columns(results)
    rows = {}
    any_skipped = bool((results["status"] == SKIPPED).any())
    for policy, group in results.groupby("policy", sort=False):
        ok = group[group["status"] == "ok"]
        skipped = int((group["status"] == SKIPPED).sum())
        row = {"scenarios": len(group), "errors": int((group["status"] != "ok").sum()) - skipped,
               **({"skipped": skipped} if any_skipped else {}),
               "failed": int((_failed_mask(group) & (group["status"] == "ok")).sum())}
        means = ok[metrics].apply(pd.to_numeric, errors="coerce").astype(float)
        means = means.replace([np.inf, -np.inf], np.nan).mean() if len(ok) else pd.Series(np.nan, index=metrics)
        row["success_rate"] = means.get("success", np.nan)
        row["collision_rate"] = means.get("collision_any", np.nan)
        row.update({m: means[m] for m in metrics if m not in ("success", "collision_any")})
        rows[policy] = row
    summary = pd.DataFrame.from_dict(rows, orient="index")
    summary.index.name = "policy"
    return summary


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


# --------------------------------------------------------------------------------------- html
def _esc(v) -> str:
    return html.escape(str(v))


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)):
        return "&ndash;" if np.isnan(v) else f"{v:.3f}"
    return _esc(v)


def _table(df: pd.DataFrame, row_classes: list[str] | None = None, index: bool = True) -> str:
    cols = ([df.index.name or ""] if index else []) + [str(c) for c in df.columns]
    head = "".join(f"<th>{_esc(c)}</th>" for c in cols)
    rows = []
    for i, (idx, *r) in enumerate(df.itertuples(index=True, name=None)):  # keeps each column's dtype
        cells = [f'<td class="text">{_esc(idx)}</td>'] if index else []
        cells += [f'<td class="text">{_esc(v)}</td>' if isinstance(v, str) else f"<td>{_fmt(v)}</td>" for v in r]
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _meta_html(meta: dict, results: pd.DataFrame) -> str:
    from drivesim import __version__

    meta = dict(meta)
    meta.setdefault("policies", ", ".join(map(str, dict.fromkeys(results["policy"]))))
    meta.setdefault("drivesim version", __version__)
    meta.setdefault("date", datetime.datetime.now().isoformat(timespec="seconds"))
    warnings = meta.pop("warnings", []) or []
    if isinstance(warnings, str):
        warnings = [warnings]
    rows = "".join(f"<tr><th>{_esc(k)}</th><td class='text'>{_esc(v)}</td></tr>" for k, v in meta.items())
    warn = "".join(f"<p class='warn'>warning: {_esc(w)}</p>" for w in warnings)
    return f"<table class='meta'>{rows}</table>{warn}"


def _thumb_src(thumbnails: dict | None, policy, scenario, out_dir: Path) -> str | None:
    """Relative path (inside out_dir) of the thumbnail for a row, copying it in if needed."""
    if not thumbnails:
        return None
    src = thumbnails.get(f"{policy}/{scenario}", thumbnails.get(str(scenario)))
    if src is None or not Path(src).is_file():
        return None
    src = Path(src).resolve()
    try:
        return src.relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        dst = out_dir / "thumbs" / f"{policy}__{scenario}{src.suffix}".replace("/", "_")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return dst.relative_to(out_dir).as_posix()


def _failures_html(results: pd.DataFrame, thumbnails: dict | None, out_dir: Path, limit: int) -> str:
    failed = results[_failed_mask(results)]
    if failed.empty:
        return "<p>No failed or errored scenarios.</p>"
    cards = []
    for _, r in failed.head(limit).iterrows():
        src = _thumb_src(thumbnails, r["policy"], r["scenario"], out_dir)
        img = f"<img src='{_esc(src)}' alt='{_esc(r['scenario'])}'>" if src else "<p><i>no thumbnail</i></p>"
        if r["status"] != "ok":
            why = f"<div class='reason'>error: {_esc(r.get('error', ''))}</div>"
        else:
            why = f"<div>pdms {_fmt(r.get('pdms', np.nan))}, progress_ratio {_fmt(r.get('progress_ratio', np.nan))}, " \
                  f"collision {_fmt(r.get('collision_any', np.nan))}</div>"
        cards.append(f"<div class='card'><b>{_esc(r['policy'])}</b> / {_esc(r['scenario'])} "
                     f"[{_esc(r['status'])}]{img}{why}</div>")
    more = f" (the first {limit} shown)" if len(failed) > limit else ""
    return f"<p>{len(failed)} scenario run(s){more}.</p><div class='cards'>{''.join(cards)}</div>"


def write_report(results: pd.DataFrame, out_dir, title: str, meta: dict,
                 thumbnails: dict[str, str] | None = None, max_failures: int = 200) -> Path:
    """Write out_dir/report.html (inline CSS, PNG plots beside it) and return its path.

    thumbnails maps "policy/scenario" (or just the scenario name) to a PNG; files outside
    out_dir are copied into out_dir/thumbs so the report directory stands alone. The
    failures section shows at most `max_failures` cards; the full table lists every row.
    """
    _check_results(results)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    plots = [plot_metric(results, m, out_dir / f"dist_{m}.png").name for m in PLOT_METRICS if m in results.columns]
    plot_html = "".join(f"<img src='{_esc(p)}' alt='{_esc(p)}'>" for p in plots) or "<p>No metrics to plot.</p>"
    failed = _failed_mask(results)
    row_cls = ["error" if s != "ok" else ("fail" if f else "") for s, f in zip(results["status"], failed)]
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{_esc(title)}</title><style>{CSS}</style></head><body>
<h1>{_esc(title)}</h1>
{_meta_html(meta, results)}
<h2>Summary</h2>
<p>Means and rates over scenarios that ran (status ok); errors are counted separately.</p>
{_table(summary)}
<h2>Metric distributions</h2>
<div class="plots">{plot_html}</div>
<h2>Failures</h2>
{_failures_html(results, thumbnails, out_dir, max_failures)}
<h2>All scenarios</h2>
{_table(results.reset_index(drop=True), row_cls, index=False)}
</body></html>
"""
    return atomic_write_text(out_dir / "report.html", page)

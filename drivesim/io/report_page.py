"""The evaluation report: one self-contained HTML page (inline CSS and script, images beside it).

Top to bottom:
- the run's metadata;
- the headline: success, at-fault collisions, route completion, PDMS and the nuPlan score per
  policy, with 95 % bootstrap intervals; every summary column behind a toggle;
- breakdowns per policy by map, by event type, by knob bins, and the avoidable / unavoidable
  table of generated event sets;
- the metric distributions;
- the failures: the reason for each, its thumbnail, its video when one was made, and the
  `drivesim simulate ...` command that replays it;
- every scenario in a table that sorts (click a header) and filters (type in the box);
- a glossary of the columns (score.METRICS), with a link to docs/definitions.md.
Every file is written atomically.
"""

from __future__ import annotations

import datetime
import html
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from drivesim.core.safe_io import atomic_write_text
from drivesim.io.eval_report import (HEADLINE, PLOT_METRICS, check_results, failed_mask, avoidable_table, breakdown,
                                     breakdown_keys,
                                     failure_reason, headline, plot_metric, summarize)
from drivesim.metrics.score import METRICS

DEFINITIONS = Path(__file__).resolve().parents[2] / "docs" / "definitions.md"
CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px; color: #222; max-width: 1400px; }
h1 { font-size: 22px; } h2 { font-size: 18px; margin-top: 28px; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 12px; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: right; }
th { background: #f0f0f0; } td.text, th.text { text-align: left; }
table.sortable th { cursor: pointer; } table.sortable th:hover { background: #e0e8ff; }
tr.fail td { background: #fff1f0; } tr.error td { background: #fde2e1; }
.meta th { text-align: left; } .warn { background: #fff4cc; border: 1px solid #e0c050; padding: 6px 10px; }
.ci { color: #777; font-size: 11px; } .plots img { margin: 4px; border: 1px solid #ddd; }
.scroll { overflow-x: auto; } .breakdowns { display: flex; flex-wrap: wrap; gap: 24px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #ccc; padding: 6px; width: 330px; font-size: 12px; }
.card img, .card video { width: 320px; } .reason { color: #a00; white-space: pre-wrap; word-break: break-word; }
code.cmd { display: block; background: #f6f6f6; padding: 3px; font-size: 11px; word-break: break-all; }
"""
SCRIPT = """
function sortTable(th) {
  const table = th.closest('table'), body = table.tBodies[0], col = th.cellIndex;
  const asc = th.dataset.dir !== 'asc'; th.dataset.dir = asc ? 'asc' : 'desc';
  const key = r => { const t = r.cells[col].textContent.trim(), v = parseFloat(t); return isNaN(v) ? t : v; };
  const rows = Array.from(body.rows).sort((a, b) => {
    const x = key(a), y = key(b);
    const c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === 'number' ? -1 : 1);
    return asc ? c : -c; });
  rows.forEach(r => body.appendChild(r));
}
function filterTable(input, id) {
  const words = input.value.toLowerCase().split(/\\s+/).filter(w => w);
  for (const r of document.getElementById(id).tBodies[0].rows) {
    const t = r.textContent.toLowerCase(); r.style.display = words.every(w => t.includes(w)) ? '' : 'none'; }
}
document.querySelectorAll('table.sortable th').forEach(th => th.addEventListener('click', () => sortTable(th)));
"""


def _esc(v) -> str:
    return html.escape(str(v))


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)):
        return "&ndash;" if np.isnan(v) else f"{v:.3f}"
    return _esc(v)


def _table(df: pd.DataFrame, row_classes: list[str] | None = None, index: bool = True, sortable: bool = False,
           table_id: str | None = None) -> str:
    names = list(df.index.names) if index else []
    cols = [n or "" for n in names] + [str(c) for c in df.columns]
    head = "".join(f"<th>{_esc(c)}</th>" for c in cols)
    rows = []
    for i, (idx, *r) in enumerate(df.itertuples(index=True, name=None)):  # keeps each column's dtype
        idx = idx if isinstance(idx, tuple) else (idx,)
        cells = [f'<td class="text">{_esc(v)}</td>' for v in idx] if index else []
        cells += [f'<td class="text">{_esc(v)}</td>' if isinstance(v, str) else f"<td>{_fmt(v)}</td>" for v in r]
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        rows.append(f"<tr{cls}>{''.join(cells)}</tr>")
    attrs = (" class='sortable'" if sortable else "") + (f" id='{table_id}'" if table_id else "")
    return f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _meta_html(meta: dict, results: pd.DataFrame) -> str:
    from drivesim import __version__

    meta = dict(meta)
    meta.setdefault("policies", ", ".join(map(str, dict.fromkeys(results["policy"]))))
    meta.setdefault("drivesim version", __version__)
    meta.setdefault("date", datetime.datetime.now().isoformat(timespec="seconds"))
    warnings = meta.pop("warnings", []) or []
    if isinstance(warnings, str):
        warnings = [warnings]
    rows = "".join(f"<tr><th>{_esc(k)}</th><td class='text'>{_meta_value(v)}</td></tr>" for k, v in meta.items())
    warn = "".join(f"<p class='warn'>warning: {_esc(w)}</p>" for w in warnings)
    return f"<table class='meta'>{rows}</table>{warn}"


def _meta_value(v) -> str:
    """A metadata value; a long one (e.g. the hashes of 1000 scenarios) folded behind a toggle."""
    text = str(v)
    if len(text) <= 160:
        return _esc(text)
    what = f"{len(v)} entries" if isinstance(v, (dict, list, tuple)) else f"{len(text)} characters"
    return f"<details><summary>{what}</summary><div class='reason'>{_esc(text)}</div></details>"


def _headline_html(results: pd.DataFrame) -> str:
    table = headline(results)
    head = "".join(f"<th>{_esc(label)}</th>" for _, label in HEADLINE)
    body = []
    for policy, r in table.iterrows():
        cells = "".join(f"<td>{_fmt(r[c])}<br><span class='ci'>{_fmt(r[c + '_lo'])} &ndash; {_fmt(r[c + '_hi'])}</span></td>"
                        for c, _ in HEADLINE)
        body.append(f"<tr><td class='text'>{_esc(policy)}</td><td>{int(r['scenarios'])}</td><td>{int(r['errors'])}</td>{cells}</tr>")
    return (f"<table><thead><tr><th class='text'>policy</th><th>scenarios</th><th>errors</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table><p class='ci'>Means over the scenarios that ran; below each, its 95 % "
            "bootstrap interval (1000 resamples of the scenarios, seed 0).</p>")


def _breakdowns_html(results: pd.DataFrame) -> str:
    parts = [f"<div><h3>by {_esc(k.removeprefix('knob_'))}</h3>{_table(breakdown(results, k))}</div>"
             for k in breakdown_keys(results)]
    labels = avoidable_table(results)
    if labels is not None:
        parts.insert(0, f"<div><h3>by label (generated events)</h3>{_table(labels)}</div>")
    return f"<div class='breakdowns'>{''.join(parts)}</div>" if parts else "<p>One map, no events: nothing to break down.</p>"


def _local_src(path, out_dir: Path, policy, scenario, folder: str) -> str | None:
    """Path inside out_dir (relative to it) of a picture or video; a relative `path` is read from
    out_dir; a file outside out_dir is copied into out_dir/folder so the report stands alone."""
    if path is None:
        return None
    src = Path(path)
    src = (out_dir / src) if not src.is_absolute() else src
    if not src.is_file():
        return None
    src = src.resolve()
    try:
        return src.relative_to(out_dir.resolve()).as_posix()
    except ValueError:
        dst = out_dir / folder / f"{policy}__{scenario}{src.suffix}".replace("/", "_")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        return dst.relative_to(out_dir).as_posix()


def _failures_html(results: pd.DataFrame, media: dict, out_dir: Path, limit: int) -> str:
    failed = results[failed_mask(results)]
    if failed.empty:
        return "<p>No failed or errored scenarios.</p>"
    cards = []
    for _, r in failed.head(limit).iterrows():
        key = f"{r['policy']}/{r['scenario']}"
        src = _local_src(media["thumbnails"].get(key), out_dir, r["policy"], r["scenario"], "thumbs")
        video = _local_src(media["videos"].get(key), out_dir, r["policy"], r["scenario"], "videos")
        pic = (f"<video src='{_esc(video)}' controls loop muted poster='{_esc(src or '')}'></video>" if video else
               f"<img src='{_esc(src)}' alt='{_esc(r['scenario'])}'>" if src else "<p><i>no picture kept</i></p>")
        cmd = media["commands"].get(key)
        cmd = f"<code class='cmd'>{_esc(cmd)}</code>" if cmd else ""
        scores = f"pdms {_fmt(r.get('pdms', np.nan))}, route completion {_fmt(r.get('route_completion', np.nan))}"
        cards.append(f"<div class='card'><b>{_esc(r['policy'])}</b> / {_esc(r['scenario'])}{pic}"
                     f"<div class='reason'>{_esc(failure_reason(r))}</div><div>{scores}</div>{cmd}</div>")
    more = f" (the first {limit} shown; all are in the table below)" if len(failed) > limit else ""
    return f"<p>{len(failed)} scenario run(s){more}.</p><div class='cards'>{''.join(cards)}</div>"


def _glossary_html(results: pd.DataFrame) -> str:
    rows = "".join(f"<tr><td class='text'>{_esc(c)}</td><td class='text'>{_esc(METRICS[c])}</td></tr>"
                   for c in results.columns if c in METRICS)
    return (f"<p>Definitions, constants and sources: <a href='{DEFINITIONS.as_uri()}'>docs/definitions.md</a>.</p>"
            f"<table><tbody>{rows}</tbody></table>")


def write_report(results: pd.DataFrame, out_dir, title: str, meta: dict, thumbnails: dict[str, str] | None = None,
                 videos: dict[str, str] | None = None, commands: dict[str, str] | None = None,
                 max_failures: int = 200) -> Path:
    """Write out_dir/report.html and its plots; return its path.

    thumbnails / videos / commands map "policy/scenario" to a PNG, an MP4 and the shell command
    that replays that run. Relative picture paths are read from out_dir; files outside it are
    copied into out_dir/thumbs or out_dir/videos. At most `max_failures` failure cards are shown;
    the table lists every row.
    """
    check_results(results)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    media = {"thumbnails": thumbnails or {}, "videos": videos or {}, "commands": commands or {}}
    plots = [plot_metric(results, m, out_dir / f"dist_{m}.png").name for m in PLOT_METRICS if m in results.columns]
    plot_html = "".join(f"<img src='{_esc(p)}' alt='{_esc(p)}'>" for p in plots) or "<p>No metrics to plot.</p>"
    failed = failed_mask(results)
    row_cls = ["error" if s != "ok" else ("fail" if f else "") for s, f in zip(results["status"], failed)]
    table = results.reset_index(drop=True).assign(reason=[failure_reason(r) for _, r in results.iterrows()])
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{_esc(title)}</title><style>{CSS}</style></head><body>
<h1>{_esc(title)}</h1>
{_meta_html(meta, results)}
<h2>Summary</h2>
{_headline_html(results)}
<details><summary>every summary column</summary><div class="scroll">{_table(summarize(results))}</div></details>
<h2>Breakdowns</h2>
{_breakdowns_html(results)}
<h2>Metric distributions</h2>
<div class="plots">{plot_html}</div>
<h2>Failures</h2>
{_failures_html(results, media, out_dir, max_failures)}
<h2>All scenarios</h2>
<p><input type="search" placeholder="filter: words that must all appear in a row" size="50"
 oninput="filterTable(this, 'scenarios')"> (click a column header to sort)</p>
<div class="scroll">{_table(table, row_cls, index=False, sortable=True, table_id="scenarios")}</div>
<h2>Glossary</h2>
{_glossary_html(results)}
<script>{SCRIPT}</script>
</body></html>
"""
    return atomic_write_text(out_dir / "report.html", page)

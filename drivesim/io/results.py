"""Evaluation results on disk: `results.jsonl` appended row by row, read back to resume a run,
and `results.csv` / `results.json` / `summary.json` written atomically.

`results.jsonl` holds one JSON row per line for every (policy, scenario) job as it finishes, so
a run that is killed keeps its complete rows. Each append writes whole lines, then flushes and
fsyncs; a failed append is cut back to the last complete line and raises `OutputError`. A row
counts once its newline is on disk: reading back ignores (and reports) a trailing partial line.

Rows carry `suite_hash`, `policy_hash` and `seed`; `--resume` keeps the rows of a run with the
same three and refuses one that differs (`ResumeError` says what differs).

`summary.json` is what a dashboard reads: `{"format": "drivesim-summary/1", "meta": {...},
"policies": {name: {"scenarios", "errors", "headline": {metric: {"mean", "ci95": [lo, hi]}},
"means": {column: mean}}}}` with the headline metrics of io/eval_report.HEADLINE; NaN is null.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pandas as pd

from drivesim.core.safe_io import OutputError, atomic_write_text
from drivesim.io.eval_report import HEADLINE, headline, summarize

RESULTS_FILES = ("results.jsonl", "results.csv", "results.json", "summary.json")
SUMMARY_FORMAT = "drivesim-summary/1"
RUN_FIELDS = ("suite_hash", "seed")  # the same for every row of one run
KEPT_STATUSES = ("ok", "error")  # rows a resumed run keeps (skipped files are re-read every run)


class ResumeError(ValueError):
    """Earlier results cannot be resumed; the message says why and what to do."""


class RowStream:
    """Appends result rows to `path` as whole lines (flush + fsync after each batch).

    `keep` rows (those of a run being resumed) are written first, atomically, replacing the
    file, so that a partial last line of the earlier run is dropped."""

    def __init__(self, path: str | Path, keep: list[dict] = ()):
        self.path = Path(path)
        atomic_write_text(self.path, "".join(_line(r) for r in keep))
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def append(self, rows: list[dict]) -> None:
        data = memoryview("".join(_line(r) for r in rows).encode())
        start = os.lseek(self._fd, 0, os.SEEK_END)
        try:
            while data:
                data = data[os.write(self._fd, data):]
            os.fsync(self._fd)
        except OSError as exc:
            with contextlib.suppress(OSError):  # never leave half a row behind
                os.ftruncate(self._fd, start)
            raise OutputError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def __enter__(self) -> "RowStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _line(row: dict) -> str:
    return json.dumps(row) + "\n"


def read_rows(path: str | Path) -> tuple[list[dict], list[str]]:
    """The complete rows of a results.jsonl and notes on what was ignored (a partial last line).
    A damaged line before the last is a ResumeError naming the line."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        raise ResumeError(f"cannot read {path}: {exc.strerror or exc}") from None
    *lines, tail = text.split("\n")  # tail: '' when the file ends with a newline
    notes = [f"{path}: ignored a partial last line ({len(tail)} characters; the earlier run was cut off "
             "while writing it)"] if tail.strip() else []
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict) or not {"policy", "scenario", "status"} <= set(row):
            raise ResumeError(f"{path}: line {i} is not a result row; cannot resume (--overwrite starts again)")
        rows.append(row)
    return rows, notes


def resumable(rows: list[dict], path, suite_hash: str, seed, policy_hashes: dict[str, str]) -> list[dict]:
    """The rows of an earlier run to keep when resuming with this suite hash, seed and policies
    ({name: policy hash}); a ResumeError when that run was of something else."""
    want = {"suite_hash": suite_hash, "seed": seed}
    for key in RUN_FIELDS:
        have = sorted({str(r.get(key)) for r in rows})
        if have != [str(want[key])] and rows:
            raise ResumeError(f"{path}: the earlier rows are for {key} {', '.join(have)}, this run's is {want[key]}; "
                              "resume only the same suite and seed (or --overwrite to start again)")
    for name in dict.fromkeys(r["policy"] for r in rows):
        if name not in policy_hashes:
            raise ResumeError(f"{path}: the earlier run evaluated policy {name!r}, which is not in --policies "
                              f"({', '.join(policy_hashes)}); resume with the same policies (or --overwrite)")
        have = {r.get("policy_hash") for r in rows if r["policy"] == name}
        if have != {policy_hashes[name]}:
            raise ResumeError(f"{path}: policy {name!r} changed since the earlier run (policy hash "
                              f"{', '.join(str(h)[:12] for h in have)} -> {policy_hashes[name][:12]}); "
                              "resume only the same policy (or --overwrite)")
    return [r for r in rows if r.get("status") in KEPT_STATUSES]


def write_tables(results: pd.DataFrame, meta: dict, out: Path) -> tuple[Path, Path, Path]:
    """results.csv, results.json ({"meta", "results"}) and summary.json, each written atomically."""
    csv = atomic_write_text(out / "results.csv", results.to_csv(index=False))
    records = json.loads(results.to_json(orient="records"))
    js = atomic_write_text(out / "results.json", json.dumps({"meta": meta, "results": records}, indent=1))
    return csv, js, atomic_write_text(out / "summary.json", json.dumps(summary_record(results, meta), indent=1))


def summary_record(results: pd.DataFrame, meta: dict) -> dict:
    """The summary.json document (see the module docstring)."""
    num = lambda v: None if pd.isna(v) else float(v)
    heads, means = headline(results), summarize(results)
    policies = {}
    for policy, h in heads.iterrows():
        policies[str(policy)] = {
            "scenarios": int(h["scenarios"]), "errors": int(h["errors"]),
            "headline": {c: {"mean": num(h[c]), "ci95": [num(h[f"{c}_lo"]), num(h[f"{c}_hi"])]} for c, _ in HEADLINE},
            "means": {c: num(v) for c, v in means.loc[policy].items()}}
    return {"format": SUMMARY_FORMAT, "meta": meta, "policies": policies}

"""results.jsonl row by row, read back for --resume; summary counts of skipped files."""

import errno
import json
import os

import pandas as pd
import pytest

from drivesim.core.safe_io import OutputError
from drivesim.io.eval_report import format_table, summarize
from drivesim.io.results import ResumeError, RowStream, read_rows, resumable, write_tables


def row(policy="idm", scenario="a", status="ok", **extra):
    return {"policy": policy, "scenario": scenario, "status": status, "suite_hash": "s" * 64, "seed": 0,
            "policy_hash": "p" * 64, **extra}


def test_stream_appends_whole_lines_and_cuts_back_a_failed_write(tmp_path, monkeypatch):
    path = tmp_path / "results.jsonl"
    with RowStream(path) as stream:
        stream.append([row(scenario="a"), row(scenario="b")])
        real = os.write

        def half_then_full(fd, data):  # the disk fills in the middle of a line
            real(fd, bytes(data[:7]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "write", half_then_full)
        with pytest.raises(OutputError, match=r"cannot write .*results.jsonl: No space left on device"):
            stream.append([row(scenario="c")])
        monkeypatch.undo()
        stream.append([row(scenario="d")])
    assert [r["scenario"] for r in read_rows(path)[0]] == ["a", "b", "d"]
    assert read_rows(path)[1] == []


def test_resuming_keeps_earlier_rows_and_drops_a_partial_line(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(row(scenario="a")) + "\n" + json.dumps(row(scenario="b"))[:30])
    rows, notes = read_rows(path)
    assert [r["scenario"] for r in rows] == ["a"] and "partial last line" in notes[0]
    RowStream(path, keep=rows).close()
    assert path.read_text() == json.dumps(row(scenario="a")) + "\n"


def test_resumable_names_what_differs(tmp_path):
    rows = [row(), row(scenario="b", status="skipped"), row(policy="pdm_expert")]
    hashes = {"idm": "p" * 64, "pdm_expert": "p" * 64}
    assert [r["scenario"] for r in resumable(rows, "f", "s" * 64, 0, hashes)] == ["a", "a"]  # skipped: read again
    with pytest.raises(ResumeError, match="suite_hash"):
        resumable(rows, "f", "t" * 64, 0, hashes)
    with pytest.raises(ResumeError, match="seed 0, this run's is 1"):
        resumable(rows, "f", "s" * 64, 1, hashes)
    with pytest.raises(ResumeError, match="policy 'idm' changed"):
        resumable(rows, "f", "s" * 64, 0, {**hashes, "idm": "q" * 64})
    with pytest.raises(ResumeError, match="'pdm_expert', which is not in --policies"):
        resumable(rows, "f", "s" * 64, 0, {"idm": "p" * 64})
    old = [{"policy": "idm", "scenario": "a", "status": "ok"}]  # rows of a drivesim before hashes
    with pytest.raises(ResumeError, match="suite_hash None"):
        resumable(old, "f", "s" * 64, 0, hashes)


def test_tables_are_written_atomically(tmp_path, monkeypatch):
    results = pd.DataFrame([row(pdms=0.5)])
    write_tables(results, {"suite": "x"}, tmp_path)
    before = (tmp_path / "results.csv").read_bytes()
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(OutputError, match="results.csv: No space left on device"):
        write_tables(pd.DataFrame([row(pdms=0.9)]), {}, tmp_path)
    assert (tmp_path / "results.csv").read_bytes() == before  # the old table, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.csv", "results.json", "summary.json"]


def test_summary_json_is_what_a_dashboard_reads(tmp_path):
    results = pd.DataFrame([row(pdms=1.0, success=1.0), row(scenario="b", pdms=0.5, success=0.0),
                            row(scenario="c", status="error")])
    write_tables(results, {"suite": "x"}, tmp_path)
    doc = json.loads((tmp_path / "summary.json").read_text())
    assert doc["format"] == "drivesim-summary/1" and doc["meta"]["suite"] == "x"
    idm = doc["policies"]["idm"]
    assert (idm["scenarios"], idm["errors"]) == (3, 1)
    assert idm["headline"]["pdms"]["mean"] == pytest.approx(0.75)
    lo, hi = idm["headline"]["success"]["ci95"]
    assert 0 <= lo <= 0.5 <= hi <= 1
    assert idm["means"]["pdms"] == pytest.approx(0.75)


def test_summary_counts_skipped_files_apart_from_errors():
    results = pd.DataFrame([row(pdms=1.0, success=1.0), row(scenario="b", status="error"),
                            row(scenario="c.npz", status="skipped")])
    s = summarize(results)
    assert s.loc["idm", ["scenarios", "errors", "skipped", "failed"]].tolist() == [3, 1, 1, 0]
    assert "skipped" in format_table(s).splitlines()[0]
    assert "skipped" not in summarize(results.iloc[:2]).columns  # the column only when a file was skipped

"""`drivesim evaluate` and the folder-reading commands: options checked before anything runs,
exit codes, skipped files as rows, resume / overwrite, and a full disk (docs/reliability.md)."""

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from drivesim.cli.commands import load_scenarios, main
from drivesim.cli.traffic import load_logged
from drivesim.io.scenario_file import save_scenario

TINY2 = ["evaluate", "--suite", "tiny", "--limit", "2", "--no-video"]
TINY1 = ["evaluate", "--suite", "tiny", "--limit", "1", "--no-video"]


def exit_code(argv) -> int:
    """The exit status of `drivesim ARGV` as the shell sees it (SystemExit('error: ...') is 1)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


@pytest.mark.parametrize("option", [["--batch-size", "0"], ["--limit", "0"], ["--limit", "-1"], ["--policy-every", "0"],
                                    ["--limit", "two"]])
def test_bad_numbers_are_usage_errors_before_anything_runs(tmp_path, capsys, option):
    out = tmp_path / "o"
    assert exit_code(["evaluate", "--suite", "tiny", *option, "-o", str(out)]) == 2
    assert option[0] in capsys.readouterr().err
    assert not out.exists()  # nothing ran


def test_output_under_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit, match="output folder .*out: .*file is a file, not a folder"):
        main([*TINY2, "-o", str(tmp_path / "file" / "out")])
    with pytest.raises(SystemExit, match="output folder .*file: .*file is a file, not a folder"):
        main(["simulate", "--suite", "tiny", "-o", str(tmp_path / "file")])


@pytest.mark.parametrize("cls, message", [
    ("CallsItselfTheExpert", "named 'pdm_expert', the name of the reference expert"),
    ("NeedsArguments", "cannot create policy .* with no arguments .*horizon"),
    ("RaisesInInit", "raised RuntimeError while being created: no weights found"),
    ("NotAPolicy", "is not a policy: it has no act"),
])
def test_user_policy_mistakes_are_clear_errors(tmp_path, cls, message):
    with pytest.raises(SystemExit, match=message):
        main([*TINY2, "--policies", f"tests.cli_policies:{cls}", "-o", str(tmp_path)])
    assert not (tmp_path / "results.jsonl").exists()


def test_two_policies_of_one_name_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="both named 'idm'"):
        main([*TINY2, "--policies", "idm,idm", "-o", str(tmp_path)])


def test_errored_rows_exit_3_unless_allowed(tmp_path, capsys):
    argv = [*TINY1, "--policies", "tests.cli_policies:Raising"]
    assert main([*argv, "-o", str(tmp_path / "a")]) == 3
    err = capsys.readouterr().err
    assert "1 row(s) errored" in err and "--allow-errors" in err
    results = pd.read_csv(tmp_path / "a" / "results.csv")
    assert (results.loc[results["policy"] == "raising", "status"] == "error").all()
    assert main([*argv, "--allow-errors", "-o", str(tmp_path / "b")]) == 0


@pytest.fixture(scope="module")
def folder_with_a_bad_file(tmp_path_factory) -> Path:
    """Two scenario files of the tiny suite and one that cannot be read."""
    folder = tmp_path_factory.mktemp("scenes")
    for s in load_scenarios("tiny", limit=2)[2]:
        save_scenario(s, folder / f"{s.name.replace('/', '_')}.npz")
    (folder / "broken.npz").write_bytes(b"not a scenario file")
    return folder


def test_skipped_files_are_rows_and_exit_nonzero(folder_with_a_bad_file, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["evaluate", "--scenarios", str(folder_with_a_bad_file), "--policies", "idm", "--no-video",
                 "-o", str(out)]) == 3
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.npz" in err and "1 input file(s) skipped" in err
    results = pd.read_csv(out / "results.csv")
    skipped = results[results["status"] == "skipped"]
    assert sorted(skipped["policy"]) == ["idm", "pdm_expert"] and set(skipped["scenario"]) == {"broken.npz"}
    assert skipped["error"].str.contains("broken.npz").all()
    assert (results.loc[results["status"] != "skipped", "status"] == "ok").sum() == 4
    assert "broken.npz" in (out / "report.html").read_text()


def test_simulate_says_which_files_it_could_not_read(folder_with_a_bad_file, tmp_path, capsys):
    with pytest.raises(SystemExit, match="no scenario 'zzz'.*1 file"):
        main(["simulate", "--scenarios", str(folder_with_a_bad_file), "--scenario", "zzz", "-o", str(tmp_path)])
    assert "broken.npz" in capsys.readouterr().err


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_rerun_never_truncates_and_resume_completes_a_cut_off_run(tmp_path, capsys):
    argv = [*TINY2, "--policies", "constant_velocity"]
    fresh, cut = tmp_path / "fresh", tmp_path / "cut"
    assert main([*argv, "-o", str(fresh)]) == 0
    complete = rows(fresh / "results.jsonl")
    assert len(complete) == 4 and all(len(r["suite_hash"]) == 64 and len(r["policy_hash"]) == 64 and r["seed"] == 0
                                      for r in complete)
    before = (fresh / "results.jsonl").read_bytes()
    with pytest.raises(SystemExit, match="already holds results .*--resume .*--overwrite"):
        main([*argv, "-o", str(fresh)])
    assert (fresh / "results.jsonl").read_bytes() == before  # an earlier run is never truncated

    cut.mkdir()  # a run killed in the middle of writing its fourth row
    lines = before.decode().splitlines(keepends=True)
    (cut / "results.jsonl").write_text("".join(lines[:3]) + lines[3][:40])
    assert main([*argv, "--resume", "-o", str(cut)]) == 0
    captured = capsys.readouterr()
    assert "ignored a partial last line" in captured.err and "3 complete row(s) kept" in captured.out
    assert rows(cut / "results.jsonl") == complete  # the same rows as the run that was never cut off
    assert pd.read_csv(cut / "results.csv").equals(pd.read_csv(fresh / "results.csv"))

    with pytest.raises(SystemExit, match="policy '.*' changed since the earlier run"):
        main([*argv, "--resume", "--policy-every", "2", "-o", str(cut)])
    with pytest.raises(SystemExit, match="not in --policies"):
        main([*TINY2, "--policies", "idm", "--resume", "-o", str(cut)])
    assert rows(cut / "results.jsonl") == complete  # a refused resume changes nothing
    assert main([*TINY1, "--policies", "idm", "--overwrite", "-o", str(cut)]) == 0
    assert [r["policy"] for r in rows(cut / "results.jsonl")] == ["pdm_expert", "idm"]
    assert len(pd.read_csv(cut / "results.csv")) == 2


def test_resume_refuses_another_suite(tmp_path):
    suite = tmp_path / "other.yaml"
    suite.write_text("name: other\nseed: 1\nduration: 2.0\ngroups:\n  - map: straight\n    count: 1\n")
    (tmp_path / "o").mkdir()
    row = {"policy": "pdm_expert", "scenario": "x", "status": "ok", "suite_hash": "0" * 64, "seed": 0}
    (tmp_path / "o" / "results.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(SystemExit, match="earlier rows are for suite_hash 0000"):
        main(["evaluate", "--suite", str(suite), "--policies", "idm", "--resume", "-o", str(tmp_path / "o")])
    (tmp_path / "o" / "results.jsonl").write_text("garbage\n" + json.dumps(row) + "\n")
    with pytest.raises(SystemExit, match="line 1 is not a result row"):
        main(["evaluate", "--suite", str(suite), "--policies", "idm", "--resume", "-o", str(tmp_path / "o")])


def _disk_full(monkeypatch, name: str, writes_before: int | None = None):
    """The disk fills while writing a file whose name holds `name`: with `writes_before`, os.write
    fails with ENOSPC after that many good writes (having written half its bytes, as a filling
    disk does); without, os.fsync of that file fails with ENOSPC (delayed allocation)."""
    real_write, real_fsync, count = os.write, os.fsync, {"n": 0}

    def target(fd) -> bool:
        try:
            return name in os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return False

    def write(fd, data):
        if writes_before is not None and target(fd):
            count["n"] += 1
            if count["n"] > writes_before:
                real_write(fd, bytes(data[: len(data) // 2]))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    def fsync(fd):
        if writes_before is None and target(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to tell files apart")
def test_full_disk_is_a_clear_error_and_leaves_whole_rows(tmp_path, monkeypatch):
    out = tmp_path / "o"
    _disk_full(monkeypatch, "results.jsonl", writes_before=1)  # the expert's row fits, the next job's does not
    with pytest.raises(SystemExit, match=r"cannot write .*results.jsonl: No space left on device"):
        main([*TINY1, "--policies", "constant_velocity", "-o", str(out)])
    kept = rows(out / "results.jsonl")  # every line whole: the half-written row was cut back
    assert len(kept) == 1 and kept[0]["policy"] == "pdm_expert"
    assert not (out / "results.csv").exists()
    monkeypatch.undo()

    _disk_full(monkeypatch, "results.csv")
    with pytest.raises(SystemExit, match=r"cannot write .*results.csv: No space left on device"):
        main([*TINY1, "--policies", "constant_velocity", "--resume", "-o", str(out)])
    monkeypatch.undo()
    assert len(rows(out / "results.jsonl")) == 2  # the rows survive; no partial csv, no temporary file
    assert sorted(p.name for p in out.iterdir()) == ["results.jsonl"]
    assert main([*TINY1, "--policies", "constant_velocity", "--resume", "-o", str(out)]) == 0
    assert len(pd.read_csv(out / "results.csv")) == 2


def test_unwritable_output_folder_is_a_clear_error(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes anywhere: the system's refusal, simulated
        real = tempfile.mkstemp

        def refuse(*args, dir=None, **kwargs):
            if dir is not None and Path(dir) == locked:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
    try:
        with pytest.raises(SystemExit, match="output folder .*locked is not writable: Permission denied"):
            main([*TINY2, "-o", str(locked)])
    finally:
        locked.chmod(0o700)


@pytest.mark.data
def test_realism_folder_lists_the_pickle_it_could_not_read(data_dir, tmp_path, capsys):
    folder = tmp_path / "pkl"
    folder.mkdir()
    shutil.copy(data_dir / "scenarionet_nuscenes" / "sd_nuscenes_v1.0-mini_scene-0061.pkl", folder)
    (folder / "sd_broken.pkl").write_bytes(b"not a pickle")
    scenarios, errors = load_logged(str(folder))
    assert len(scenarios) == 1 and len(errors) == 1 and "sd_broken.pkl" in errors[0]
    err = capsys.readouterr().err
    assert "skipped" in err and "sd_broken.pkl" in err and "1 file(s)" in err
    assert main(["import", "scenarionet", str(folder), "-o", str(tmp_path / "npz")]) == 3
    assert "1 skipped" in capsys.readouterr().out


@pytest.mark.data
@pytest.mark.slow
def test_realism_exits_3_when_a_scene_could_not_be_read(data_dir, tmp_path, capsys):
    folder = tmp_path / "pkl"
    folder.mkdir()
    shutil.copy(data_dir / "scenarionet_nuscenes" / "sd_nuscenes_v1.0-mini_scene-0061.pkl", folder)
    (folder / "sd_broken.pkl").write_bytes(b"not a pickle")
    assert main(["realism", "--model", "constant_velocity", "--data", str(folder), "-o", str(tmp_path / "r")]) == 3
    out = capsys.readouterr().out
    assert "scored 1 scene(s); 1 file(s)" in out and (tmp_path / "r" / "realism_summary.csv").exists()


def test_mine_exits_3_when_a_scenario_file_could_not_be_read(folder_with_a_bad_file, tmp_path, capsys):
    code = main(["mine", "--policy", "idm", "--suite", str(folder_with_a_bad_file), "--variations", "1",
                 "-o", str(tmp_path / "mined")])
    assert code == 3 and "broken.npz" in capsys.readouterr().err

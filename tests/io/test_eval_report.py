"""Per-policy summaries, the terminal table and the HTML evaluation report."""

import numpy as np
import pandas as pd
import pytest

from drivesim.io.eval_report import format_table, summarize
from drivesim.io.report_page import write_report

METRICS = ["pdms", "nuplan_score", "success", "collision_any", "no_collision", "drivable_area_compliance",
           "driving_direction", "progress", "progress_ratio", "ttc", "min_ttc", "speed_limit", "comfort"]


def row(policy, scenario, status="ok", error="", **metrics):
    base = {m: np.nan for m in METRICS} if status == "error" else {m: 1.0 for m in METRICS} | {"collision_any": 0.0}
    return {"policy": policy, "scenario": scenario, "map": "straight", "status": status, "error": error} | base | metrics


@pytest.fixture
def results():
    return pd.DataFrame([
        row("idm", "s1", pdms=0.9, progress_ratio=1.0, min_ttc=3.0),
        row("idm", "s2", pdms=0.5, success=0.0, collision_any=1.0, progress_ratio=0.4, min_ttc=0.2),
        row("idm", "s3", status="error", error="ValueError: boom <b>"),
        row("ppo", "s1", pdms=0.7, progress_ratio=0.8, min_ttc=np.inf),
        row("ppo", "s2", pdms=np.nan, progress_ratio=0.6, min_ttc=1.0),
        row("broken", "s1", status="error", error="RuntimeError: no checkpoint"),
        row("broken", "s2", status="error", error="RuntimeError: no checkpoint"),
    ]).assign(extra_metric=[1, 2, np.nan, 4, 5, np.nan, np.nan])


def test_summarize_means_and_counts(results):
    s = summarize(results)
    assert list(s.index) == ["idm", "ppo", "broken"]
    assert list(s.columns[:7]) == ["scenarios", "errors", "failed", "success_rate", "collision_rate", "pdms", "nuplan_score"]
    assert s.loc["idm", ["scenarios", "errors", "failed"]].tolist() == [3, 1, 1]
    assert s.loc["idm", "pdms"] == pytest.approx(0.7)
    assert s.loc["idm", "success_rate"] == pytest.approx(0.5)
    assert s.loc["idm", "collision_rate"] == pytest.approx(0.5)
    assert s.loc["idm", "progress_ratio"] == pytest.approx(0.7)
    assert s.loc["idm", "extra_metric"] == pytest.approx(1.5)
    assert s.loc["ppo", "pdms"] == pytest.approx(0.7)  # NaN skipped
    assert s.loc["ppo", "min_ttc"] == pytest.approx(1.0)  # inf skipped
    assert s.loc["ppo", "failed"] == 0
    assert s.loc["broken", ["scenarios", "errors", "failed"]].tolist() == [2, 2, 0]
    assert np.isnan(s.loc["broken", "pdms"]) and np.isnan(s.loc["broken", "success_rate"])


def test_format_table(results):
    text = format_table(summarize(results))
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["policy", "scenarios", "errors", "failed"]
    assert len(lines) == 2 + 3
    assert "0.700" in lines[2] and lines[4].split()[1:4] == ["2", "2", "0"]


def test_write_report(results, tmp_path):
    thumbs_dir = tmp_path / "elsewhere"
    thumbs_dir.mkdir()
    import imageio.v3 as iio3

    outside = thumbs_dir / "s2.png"
    iio3.imwrite(outside, np.zeros((24, 32, 3), np.uint8))
    out = tmp_path / "report"
    inside = out / "thumbs" / "idm_s3.png"
    inside.parent.mkdir(parents=True)
    iio3.imwrite(inside, np.zeros((24, 32, 3), np.uint8))
    thumbs = {"idm/s2": str(outside), "idm/s3": str(inside), "broken/s1": str(tmp_path / "missing.png")}
    meta = {"suite": "smoke", "hash": "abc123", "seed": 7, "warnings": ["policy ppo trained on s1"]}
    path = write_report(results, out, "Smoke <eval>", meta, thumbs)
    text = path.read_text()
    assert path == out / "report.html"
    for policy in ("idm", "ppo", "broken"):
        assert policy in text
    for key in ("abc123", "smoke", "drivesim version", "Smoke &lt;eval&gt;", "boom &lt;b&gt;", "no checkpoint",
                "trained on s1"):
        assert key in text
    assert "thumbs/idm_s3.png" in text  # already inside out_dir: used in place
    copied = list((out / "thumbs").glob("idm__s2*"))
    assert len(copied) == 1 and f"thumbs/{copied[0].name}" in text
    for m in ("pdms", "progress_ratio", "min_ttc"):
        assert (out / f"dist_{m}.png").is_file() and f"dist_{m}.png" in text
    assert "<b>" not in text.replace("<b>idm</b>", "").replace("<b>ppo</b>", "").replace("<b>broken</b>", "")


def test_report_all_errors_and_no_thumbnails(tmp_path):
    df = pd.DataFrame([row("broken", f"s{i}", status="error", error="crash") for i in range(3)])
    path = write_report(df, tmp_path, "all errors", {}, None)
    text = path.read_text()
    assert "broken" in text and "crash" in text and "no picture kept" in text


def test_report_caps_failure_cards(results, tmp_path):
    text = write_report(results, tmp_path, "capped", {}, None, max_failures=1).read_text()
    assert text.count("class='card'") == 1 and "the first 1 shown" in text


def test_missing_columns_error():
    with pytest.raises(ValueError, match="status"):
        summarize(pd.DataFrame({"policy": ["a"], "scenario": ["s"]}))


def test_a_thumbnail_given_relative_to_the_output_folder_shows(results, tmp_path, monkeypatch):
    """The CLI stores thumbnails relative to the output folder; the report read them against the
    working directory and showed 'no thumbnail' for every card."""
    import imageio.v3 as iio3

    out = tmp_path / "out"
    (out / "thumbs").mkdir(parents=True)
    iio3.imwrite(out / "thumbs" / "idm__s2.png", np.zeros((24, 32, 3), np.uint8))
    monkeypatch.chdir(tmp_path)  # not the output folder
    text = write_report(results, out, "t", {}, {"idm/s2": "thumbs/idm__s2.png"}).read_text()
    assert "<img src='thumbs/idm__s2.png'" in text


def test_failure_reasons_say_what_happened():
    from drivesim.io.eval_report import failure_reason

    ok = row("p", "s")
    assert failure_reason(ok) == ""
    assert failure_reason(row("p", "s", status="error", error="boom")) == "error: boom"
    hit = row("p", "s", success=0.0, collision_any=1.0, collisions_vehicle=1.0, collisions_vru=0.0, collisions_object=0.0)
    assert failure_reason(hit) == "at-fault collision (1 vehicle)"
    touched = row("p", "s", success=0.0, collision_any=1.0, collisions_vehicle=0.0)
    assert failure_reason(touched) == "contact, not at fault (fails success, not PDMS)"
    off = row("p", "s", success=0.0, drivable_area_compliance=0.0, max_offroad=1.25, making_progress=0.0, progress=0.5)
    assert failure_reason(off) == "off the drivable area (1.2 m); no progress (0.5 m)"


def test_bootstrap_intervals_are_reproducible_and_shrink_with_more_scenarios():
    from drivesim.io.eval_report import bootstrap_ci

    rng = np.random.default_rng(3)
    few, many = rng.random(10), rng.random(1000)
    m, lo, hi = bootstrap_ci(few)
    assert lo < m < hi and bootstrap_ci(few) == (m, lo, hi)
    m2, lo2, hi2 = bootstrap_ci(many)
    assert hi2 - lo2 < (hi - lo) / 3
    assert all(np.isnan(bootstrap_ci([np.nan])))


def test_report_breaks_down_by_map_event_knobs_and_labels(tmp_path):
    from drivesim.io.eval_report import avoidable_table, breakdown, headline

    rows = [row("p", f"s{i}", map="straight" if i % 2 else "merge", event="cut-in", knob_gap=float(i),
                success=float(i > 3), collisions_vehicle=float(i <= 3), label_avoidable=i > 1, label_bound_avoidable=i > 5)
            for i in range(9)]
    df = pd.DataFrame(rows)
    by_gap = breakdown(df, "knob_gap")
    assert by_gap.index.names == ["policy", "gap"] and by_gap["scenarios"].sum() == 9 and len(by_gap) == 3
    assert by_gap["success"].tolist() == [0.0, 2 / 3, 1.0]  # gaps {0,1,2}, {3,4,5}, {6,7,8}; success above 3
    labels = avoidable_table(df)
    assert labels.loc[("p", "unavoidable"), "scenarios"] == 2
    assert labels.loc[("p", "avoidable by braking"), "success"] == 1.0
    h = headline(df)
    assert h.loc["p", "at_fault_collision"] == pytest.approx(4 / 9)
    assert h.loc["p", "success_lo"] <= h.loc["p", "success"] <= h.loc["p", "success_hi"]
    text = write_report(df, tmp_path, "events", {}).read_text()
    for piece in ("by label (generated events)", "by map", "by gap", "id='scenarios'", "filterTable", "sortTable",
                  "definitions.md", "at-fault collision (1 vehicle)"):
        assert piece in text


def test_long_metadata_is_folded(results, tmp_path):
    hashes = {f"s{i}": "ab" * 32 for i in range(100)}
    text = write_report(results, tmp_path, "t", {"scenario_hashes": hashes, "suite": "x"}).read_text()
    assert "<summary>100 entries</summary>" in text and "<td class='text'>x</td>" in text

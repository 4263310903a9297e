"""The evaluation report in a real headless browser (Chromium driven by Playwright): every image
and video loads, every link points at a file that exists, the scenario table sorts and filters.
Skipped where Chromium or Playwright is missing (`make install` installs both where it can)."""

import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import imageio.v3 as iio3
import numpy as np
import pandas as pd
import pytest

from drivesim.io.report_page import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine")]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def results() -> pd.DataFrame:
    rows = []
    for i in range(6):
        ok = i % 3 != 0
        rows.append({"policy": "idm" if i < 3 else "cv", "scenario": f"tiny/{i:02d}", "map": "straight", "status": "ok",
                     "error": "", "pdms": 0.2 * i, "nuplan_score": 0.1 * i, "success": float(ok),
                     "collision_any": float(not ok), "collisions_vehicle": float(not ok), "collisions_vru": 0.0,
                     "collisions_object": 0.0, "route_completion": 0.5, "progress_ratio": 0.9, "min_ttc": 2.0})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    (out / "thumbs").mkdir()
    iio3.imwrite(out / "thumbs" / "idm__tiny_00.png", np.full((24, 32, 3), 200, np.uint8))
    report = write_report(results(), out, "browser check", {"suite": "tiny"},
                          thumbnails={"idm/tiny/00": "thumbs/idm__tiny_00.png"},
                          commands={"idm/tiny/00": "drivesim simulate --suite tiny --scenario tiny/00 --policy idm"})
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        tab = browser.new_page()
        tab.goto(report.as_uri())
        tab.wait_for_load_state("load")
        yield tab, out
        browser.close()


def test_every_image_loads(page):
    tab, _ = page
    sizes = tab.eval_on_selector_all("img", "els => els.map(e => [e.getAttribute('src'), e.complete && e.naturalWidth])")
    assert len(sizes) >= 4  # the failure thumbnail and the metric plots
    assert all(width for _, width in sizes), [src for src, width in sizes if not width]


def test_no_broken_links(page):
    tab, out = page
    hrefs = tab.eval_on_selector_all("a[href]", "els => els.map(e => e.href)")
    assert hrefs
    for href in hrefs:
        url = urlparse(href)
        assert url.scheme == "file" and Path(unquote(url.path)).is_file(), href


def test_the_scenario_table_sorts_and_filters(page):
    tab, _ = page
    column = lambda name: tab.eval_on_selector(
        "#scenarios", f"""t => {{ const i = Array.from(t.tHead.rows[0].cells).findIndex(c => c.textContent === '{name}');
        return Array.from(t.tBodies[0].rows).filter(r => r.style.display !== 'none').map(r => r.cells[i].textContent); }}""")
    assert column("pdms") == ["0.000", "0.200", "0.400", "0.600", "0.800", "1.000"]
    tab.click("#scenarios th:text-is('pdms')")
    assert column("pdms") == ["0.000", "0.200", "0.400", "0.600", "0.800", "1.000"]  # ascending first
    tab.click("#scenarios th:text-is('pdms')")
    assert column("pdms") == ["1.000", "0.800", "0.600", "0.400", "0.200", "0.000"]
    tab.fill("input[type=search]", "cv collision")
    assert column("scenario") == ["tiny/03"]  # the cv row whose reason names a collision
    assert "drivesim simulate --suite tiny --scenario tiny/00 --policy idm" in tab.inner_text("body")

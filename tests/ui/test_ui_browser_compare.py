"""The Compare tab in a real browser: a gan:gdgan strategy with the tiny preset over 2 folds trains one
generator per fold (progress shows the GAN stage), then the results table shows AUCs with CIs, the
label fidelity and 0 leaked patients. Screenshots go to test-artifacts/.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"

if not Path(CHROMIUM).exists():
    pytest.skip("Debian Chromium (/usr/bin/chromium) is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
from test_ui_browser import app_url, page, pick, shot  # noqa: E402,F401  (fixtures: the app and its browser page)


def test_compare_gan_strategy_per_fold(app_url, page):
    url, ctx = app_url
    pg = page
    pg.goto(url)
    pick(pg, "mg-size", "32")
    pg.get_by_role("button", name="Load dataset").click()
    pg.locator("#mg-data-status").get_by_text("Loaded").wait_for(timeout=120_000)
    pg.get_by_role("tab", name="Compare").click()
    pg.get_by_role("button", name="Refresh lists (findings of the loaded data, runs, experiments)").click()
    pick(pg, "mg-cmp-targets", "Effusion")
    synth = pg.locator("#mg-cmp-synth input")
    synth.fill("gan:gdgan@tiny:120")
    synth.press("Enter")
    pg.keyboard.press("Escape")
    pick(pg, "mg-cmp-classifier", "fridadar")
    for elem, value in (("mg-cmp-width", "0.25"), ("mg-cmp-folds", "2"), ("mg-cmp-epochs", "1")):
        pg.locator(f"#{elem} input").fill(value)
    pg.locator("#mg-cmp-start").click()
    seen_gan = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        live = pg.locator("#mg-cmp-live").inner_text()
        seen_gan = seen_gan or "GAN" in live
        if "Error" in live or "failed" in live:
            break
        if pg.locator("#mg-cmp-table").get_by_text("gan:gdgan@tiny:120").count():
            break
        pg.wait_for_timeout(200)
    shot(pg, "compare_gan_strategy")
    assert seen_gan, "the GAN stage never showed in the progress"
    table = pg.locator("#mg-cmp-table").inner_text()
    assert "gan:gdgan@tiny:120" in table and "none" in table, table[:500]
    assert "CI95" in table and "label fidelity" in table and "leaked" in table
    assert "generators per fold" in pg.locator("#mg-cmp-summary").inner_text()
    runs = [p.name for p in ctx.workspace.runs.iterdir() if p.name.startswith("gdgan")]
    assert len(runs) == 2  # one generator per fold

"""A new user's walk through the app in a real browser (Playwright driving Debian's Chromium).

Load the demo data, start a training with the tiny preset, watch the step count and the sample grid
advance, stop it, reload the page (the run is still listed), then generate images for a chosen label
combination in Browse and look up the nearest real images of one. Screenshots go to test-artifacts/.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"

if not Path(CHROMIUM).exists():
    pytest.skip("Debian Chromium (/usr/bin/chromium) is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
from _ui_fixtures import DEMO_N, running_app  # noqa: E402
from _paths import ARTIFACTS  # noqa: E402


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    with running_app(tmp_path_factory.mktemp("ws")) as (ctx, demo):
        yield demo.local_url, ctx


@pytest.fixture(scope="module")
def page(app_url):
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])
        pg = browser.new_page(viewport={"width": 1360, "height": 1000})
        pg.set_default_timeout(60_000)
        yield pg
        browser.close()


def shot(pg, name: str) -> None:
    """Full-page screenshot once every image on the page has loaded (galleries load lazily)."""
    pg.evaluate("""async () => {
        for (let y = 0; y < document.body.scrollHeight; y += 600) { window.scrollTo(0, y); await new Promise(r => setTimeout(r, 60)); }
        window.scrollTo(0, 0);
    }""")
    # Images in a hidden tab (e.g. Data's preview after a reload) are lazy and never load: skip them.
    pg.wait_for_function("Array.from(document.images).every(i => i.complete || !i.checkVisibility())",
                         timeout=30_000)
    pg.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def pick(pg, elem_id: str, option: str) -> None:
    """Choose an option of a Gradio dropdown the way a user does: open it, click the option."""
    pg.locator(f"#{elem_id} input").click()
    pg.get_by_role("option", name=option, exact=True).click()
    pg.keyboard.press("Escape")


def live_step(pg) -> int:
    text = pg.locator("#mg-step").inner_text(timeout=60_000)
    return int(text)


def sample_src(pg) -> str | None:
    img = pg.locator("#mg-sample img")
    return img.first.get_attribute("src") if img.count() else None


def test_walkthrough(page, app_url):
    url, ctx = app_url
    pg = page
    pg.goto(url)
    pg.get_by_role("button", name="Load dataset").wait_for()
    pick(pg, "mg-size", "32")
    pg.get_by_role("button", name="Load dataset").click()
    pg.locator("#mg-data-status").get_by_text("Loaded").wait_for(timeout=120_000)
    pg.locator("#mg-preview img").first.wait_for()
    assert f"{DEMO_N:,} images" in pg.locator("#mg-data-info").inner_text()
    shot(pg, "01_data_loaded")

    pg.get_by_role("tab", name="Train").click()
    pick(pg, "mg-preset", "tiny")
    pg.locator("#mg-steps input").fill("5000")
    pg.locator("#mg-start").click()
    pg.locator("#mg-train-status").get_by_text("Started").wait_for()
    first = live_step(pg)
    deadline = time.monotonic() + 90
    grids = set()
    while time.monotonic() < deadline:
        src = sample_src(pg)
        if src:
            grids.add(src)
        if live_step(pg) > first and len(grids) >= 2:
            break
        pg.wait_for_timeout(700)
    later = live_step(pg)
    assert later > first, "the step count did not advance"
    assert len(grids) >= 2, "the sample grid was not refreshed"
    shot(pg, "02_training_live")

    pg.locator("#mg-stop").click()
    pg.locator("#mg-live").get_by_text("stopped", exact=True).wait_for(timeout=90_000)
    stopped_at = live_step(pg)
    assert stopped_at < 5000
    shot(pg, "03_training_stopped")

    # a reload neither loses the run nor its state
    pg.reload()
    pg.get_by_role("tab", name="Train").click()
    pg.locator("#mg-live").get_by_text("stopped", exact=True).wait_for()
    assert live_step(pg) == stopped_at

    pg.get_by_role("tab", name="Browse").click()  # opening the tab lists the new run
    pg.locator("#mg-run-info").get_by_text("gdgan").wait_for()
    pick(pg, "mg-general-0", "F")
    pick(pg, "mg-general-1", "PA")
    pick(pg, "mg-findings", "Cardiomegaly")
    pg.locator("#mg-generate").click()
    thumbs = pg.locator("#mg-gallery img")
    thumbs.nth(15).wait_for()
    assert thumbs.count() == 16
    captions = pg.locator("#mg-gallery").inner_text()
    assert "F · PA · Cardiomegaly" in captions
    rendering = thumbs.first.evaluate("el => getComputedStyle(el).imageRendering")
    assert rendering in ("pixelated", "crisp-edges"), rendering
    shot(pg, "04_browse_generated")

    thumbs.first.click()
    pg.locator("#mg-nn-note").get_by_text("training images").wait_for()
    assert pg.locator("#mg-nn-gallery img").count() == 6  # the synthetic image + its 5 nearest real ones
    assert re.search(r"SSIM \d\.\d\d", pg.locator("#mg-nn-gallery").inner_text())
    shot(pg, "05_browse_nearest")
    assert ctx.jobs.active() == []

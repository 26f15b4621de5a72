"""gd-ddpm in Browse, in a real browser: the run's stage-1 | stage-2 pairs and the strength slider.

A tiny gd-ddpm run is trained through the Run API into the app's workspace; Browse then lists it,
shows the strength slider (hidden for GANs), generates pairs, and a different strength changes them.
Screenshots go to test-artifacts/.
"""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"

if not Path(CHROMIUM).exists():
    pytest.skip("Debian Chromium (/usr/bin/chromium) is not installed", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
from test_ui_browser import app_url, page, pick, shot  # noqa: E402,F401  (fixtures: the app and its browser page)


def gallery_srcs(pg) -> list[str]:
    imgs = pg.locator("#mg-gallery img")
    return [imgs.nth(i).get_attribute("src") for i in range(imgs.count())]


def test_gd_ddpm_stage_pairs_and_strength(app_url, page):
    from medgan_ui.data.phantom import demo_imageset
    from medgan_ui.gan.config import make_configs
    from medgan_ui.gan.runs import Run

    url, ctx = app_url
    ds = demo_imageset(n=48, size=16, seed=0)
    tc, mc = make_configs("gd-ddpm", "tiny", device="cpu")
    run = Run.create(ctx.workspace, ds, tc, mc)
    assert run.train(ds)["status"] == "finished"
    pg = page
    pg.goto(url)
    pg.get_by_role("tab", name="Browse").click()
    pg.locator("#mg-run-info").get_by_text("gd-ddpm").wait_for()
    assert "stage 1" in pg.locator("#mg-run-info").inner_text()
    strength = pg.locator("#mg-strength input[type=number]")
    strength.wait_for()
    assert float(strength.input_value()) == pytest.approx(0.8)
    pick(pg, "mg-general-0", "F")
    pick(pg, "mg-findings", "Cardiomegaly")
    pg.locator("#mg-generate").click()
    pg.locator("#mg-gallery img").nth(3).wait_for()
    first = gallery_srcs(pg)
    shot(pg, "ddpm_01_browse_stage_pairs")
    box = pg.locator("#mg-gallery img").first.bounding_box()
    assert box["width"] > 1.8 * box["height"]  # stage 1 | stage 2 side by side

    strength.fill("1")
    strength.press("Enter")
    pg.locator("#mg-generate").click()
    pg.wait_for_function("(old) => { const i = document.querySelector('#mg-gallery img');"
                         " return i && i.getAttribute('src') !== old; }", arg=first[0], timeout=60_000)
    assert gallery_srcs(pg) != first
    shot(pg, "ddpm_02_browse_strength_1")

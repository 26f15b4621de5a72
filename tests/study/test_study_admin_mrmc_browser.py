"""The admin view in a real browser shows the MRMC conclusion, the ROC figure and the forest plot.
Screenshot: test-artifacts/study-admin-mrmc.png."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import _study_fixtures as fx
from medgan_ui.study.store import StudyStore
from medgan_ui.workspace import Workspace

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
ADMIN = "mrmc-admin-pw"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_admin_results_show_conclusion_roc_and_forest(tmp_path):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium is not installed")
    from playwright.sync_api import sync_playwright

    ws = Workspace(tmp_path / "ws")
    info = fx.make_study(ws, name="MRMC admin", real_per_class=5, synthetic_per_class=5, classes=["Effusion"], tmp=tmp_path)
    store = StudyStore(ws.studies_db)
    truth = {c["id"]: c["truth"] for c in store.cases(info.study_id)}
    rng = np.random.default_rng(1)
    for reader in ("Dr A", "Dr B", "Dr C"):
        tok = store.sign_in(reader, info.access_code).token
        while (n := store.next_case(tok)).case_id:
            x = rng.normal(1.2 if truth[n.case_id] == "synthetic" else 0.0, 1.0)
            store.rate(tok, n.case_id, "synthetic" if x > 0.6 else "real", int(np.clip(1 + abs(x - 0.6) // 0.4, 1, 5)),
                       "Effusion" if rng.random() < 0.7 else "No Finding")
    proc, base = fx.start_server(ws.root, admin_password=ADMIN)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            adm = browser.new_context(viewport={"width": 1400, "height": 1400}).new_page()
            adm.goto(base + "/?admin")
            adm.get_by_label("Admin password").fill(ADMIN)
            adm.get_by_role("button", name="Sign in").click()
            adm.wait_for_function("() => document.body.innerText.includes('Dr C')", timeout=30000)
            adm.get_by_role("button", name="Show results").click()
            adm.wait_for_function("() => document.body.innerText.includes('reader-averaged AUC')", timeout=60000)
            loaded = ("id => { const i = document.querySelector('#' + id + ' img'); "
                      "return i && i.complete && i.naturalWidth > 300; }")
            adm.wait_for_function(loaded, arg="study-roc", timeout=30000)
            adm.wait_for_function(loaded, arg="study-forest", timeout=30000)
            text = adm.inner_text("#study-conclusion")
            assert "Conclusion" in text and "95% CI" in text and "±0.10" in text
            ARTIFACTS.mkdir(exist_ok=True)
            adm.locator("#study-conclusion").scroll_into_view_if_needed()
            adm.screenshot(path=str(ARTIFACTS / "study-admin-mrmc.png"), full_page=True)
            browser.close()
    finally:
        fx.stop_server(proc)

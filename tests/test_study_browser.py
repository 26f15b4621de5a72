"""The reading screen in a real browser: two readers at once, keyboard shortcuts, progress, window/level,
leave and resume; then the admin view with progress and results. Screenshots go to test-artifacts/."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import _study_fixtures as fx
from medgan_ui.study.store import StudyStore
from medgan_ui.workspace import Workspace

pytestmark = pytest.mark.browser
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
ADMIN = "browser-admin-pw"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium is not installed")
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    info = fx.make_study(ws, name="Browser study", real_per_class=2, synthetic_per_class=2, classes=["Effusion"],
                         tmp=ws.root)
    proc, base = fx.start_server(ws.root, admin_password=ADMIN)
    yield ws, base, info
    fx.stop_server(proc)


def sign_in(page, base: str, name: str, code: str) -> None:
    page.goto(base + "/")
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Access code").fill(code)
    page.get_by_role("button", name="Start reading").click()
    page.wait_for_selector("#rate-reader img.rate-img", timeout=30000)


def progress(page) -> tuple[int, int]:
    m = re.search(r"(\d+) / (\d+)", page.inner_text(".rate-progress"))
    return int(m.group(1)), int(m.group(2))


def answer_with_keys(page, keys: str) -> None:
    before = page.get_attribute("img.rate-img", "src")
    page.locator("body").click(position={"x": 5, "y": 5})  # focus the page, not a text box
    for k in keys:
        page.keyboard.press(k)
    page.keyboard.press("Enter")
    page.wait_for_function("src => { const i = document.querySelector('img.rate-img'); return i && i.getAttribute('src') !== src; }",
                           arg=before, timeout=30000)


def test_two_readers_keyboard_progress_resume_and_admin(server):
    from playwright.sync_api import sync_playwright

    ws, base, info = server
    ARTIFACTS.mkdir(exist_ok=True)
    store = StudyStore(ws.studies_db)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        a = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        b = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        sign_in(a, base, "Dr Keyboard", info.access_code)
        sign_in(b, base, "Dr Mouse", info.access_code)
        # the first sign-in shows the reader's personal code once
        notice = a.inner_text("#rate-reader-code")
        reader_code = re.search(r"[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}", notice).group(0)
        assert "Your personal reader code" in notice
        assert progress(a) == (1, info.n_cases) and progress(b) == (1, info.n_cases)
        assert not a.get_by_label("Admin password").is_visible()  # readers see no admin control
        assert a.evaluate("() => document.querySelector('img.rate-img').naturalWidth") == 64
        a.screenshot(path=str(ARTIFACTS / "study-reader-start.png"))

        # window/level: the sliders change the image's CSS filter in the browser
        a.locator("#rate-brightness input[type=range]").fill("150")
        a.locator("#rate-contrast input[type=range]").fill("200")
        a.wait_for_function("() => getComputedStyle(document.querySelector('img.rate-img')).filter.includes('contrast(2)')")
        # R/S, 1-5 and a finding letter pick the answers; Enter saves and shows the next case
        answer_with_keys(a, "s4a")
        assert progress(a) == (2, info.n_cases)
        assert "1.5" in a.evaluate("() => getComputedStyle(document.querySelector('img.rate-img')).filter")  # W/L kept
        answer_with_keys(a, "r2b")
        answer_with_keys(a, "s5a")
        assert progress(a) == (4, info.n_cases)
        a.wait_for_timeout(500)
        a.screenshot(path=str(ARTIFACTS / "study-reader-after-3.png"))
        b.get_by_label("Synthetic  (S)").check()
        b.get_by_text("3", exact=True).click()
        b.get_by_text("b · No Finding").click()
        b.get_by_role("button", name="Save and next  (Enter)").click()
        b.wait_for_function("() => document.querySelector('.rate-progress').innerText.startsWith('2 /')", timeout=30000)
        # a missing answer is refused with a message, and nothing is saved
        b.get_by_role("button", name="Save and next  (Enter)").click()
        b.wait_for_selector("text=answer Real (R) or Synthetic (S) first", timeout=30000)
        assert progress(b) == (2, info.n_cases)

        rows = {(r["reader"], r["call"], r["score"], r["finding"]) for r in store.ratings_rows(info.study_id)}
        assert rows == {("Dr Keyboard", "synthetic", 4, "Effusion"), ("Dr Keyboard", "real", 2, "No Finding"),
                        ("Dr Keyboard", "synthetic", 5, "Effusion"), ("Dr Mouse", "synthetic", 3, "No Finding")}

        # leave and come back in the same browser (it remembers the reader code): resume at the next unanswered case
        ctx_a = a.context
        a.close()
        a2 = ctx_a.new_page()
        sign_in(a2, base, "dr keyboard", info.access_code)
        assert progress(a2) == (4, info.n_cases)
        # on another device the study code alone no longer opens that name; the reader code does
        other = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
        other.goto(base + "/")
        other.get_by_label("Your name").fill("Dr Keyboard")
        other.get_by_label("Access code").fill(info.access_code)
        other.get_by_role("button", name="Start reading").click()
        other.wait_for_selector("text=already taken", timeout=30000)
        other.wait_for_timeout(1200)  # the back-off after that failed attempt
        sign_in(other, base, "Dr Keyboard", reader_code)
        assert progress(other) == (4, info.n_cases)
        other.context.close()

        # the organiser's view
        adm = browser.new_context(viewport={"width": 1280, "height": 1400}).new_page()
        adm.goto(base + "/?admin")
        adm.get_by_label("Admin password").fill(ADMIN)
        adm.get_by_role("button", name="Sign in").click()
        adm.wait_for_function("() => document.body.innerText.includes('Dr Mouse')", timeout=30000)
        # progress is live: a reader's next answer shows up without clicking anything
        cells = "() => [...document.querySelectorAll('td')].map(td => td.textContent.trim())"
        assert "4" not in adm.evaluate(cells)
        answer_with_keys(a2, "r1b")
        adm.wait_for_function(cells.replace("map(td => td.textContent.trim())", "some(td => td.textContent.trim() === '4')"),
                              timeout=30000)
        adm.get_by_role("button", name="Show results").click()
        adm.wait_for_function("() => document.body.innerText.includes('(pooled)')", timeout=60000)
        adm.wait_for_timeout(1500)
        adm.screenshot(path=str(ARTIFACTS / "study-admin.png"), full_page=True)
        assert not adm.get_by_label("Your name").is_visible()
        browser.close()

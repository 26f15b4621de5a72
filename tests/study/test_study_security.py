"""A reader cannot reach the admin view, another study, another reader's answers or any truth,
through the reader API or by calling the Gradio handlers directly."""
from __future__ import annotations

import json
import time

import httpx
import pytest

import _study_fixtures as fx
from medgan_ui.errors import UserError
from medgan_ui.study.store import StudyStore
from medgan_ui.ui.study_admin import AdminHandlers
from medgan_ui.workspace import Workspace

ADMIN = "adm-secret-7"
READER_KEYS = {"token", "image_key", "reader", "reader_code", "study", "next"}
STUDY_KEYS = {"name", "findings", "score_kind", "ask_finding"}
NEXT_KEYS = {"case", "position", "answered", "total", "done", "image_url"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    s1, code1 = fx.tiny_study(ws, 6, 6, name="one", seed=1)
    s2, code2 = fx.tiny_study(ws, 6, 6, name="two", seed=2)
    proc, base = fx.start_server(ws.root, admin_password=ADMIN)
    yield ws, base, (s1, code1), (s2, code2)
    fx.stop_server(proc)


def signin(base: str, name: str, code: str) -> dict:
    r = post_signin(base, {"name": name, "code": code})
    assert r.status_code == 200, r.text
    return r.json()


def post_signin(base: str, body: dict) -> httpx.Response:
    """A sign-in that waits out the back-off an earlier failed attempt of this module imposed (429)."""
    while True:
        r = httpx.post(base + "/study/api/signin", json=body)
        if r.status_code != 429:
            return r
        time.sleep(float(r.headers["Retry-After"]))


def _truth_words(ws: Workspace, sid: str) -> set[str]:
    cases = StudyStore(ws.studies_db).cases(sid)
    return {c["source"] for c in cases} | {c["labels"]["source_name"] for c in cases}


def test_reader_api_never_carries_truth(env):
    ws, base, (s1, code1), _ = env
    a = signin(base, "Alice", code1)
    assert set(a) == READER_KEYS and set(a["study"]) == STUDY_KEYS and set(a["next"]) == NEXT_KEYS
    h = {"Authorization": f"Bearer {a['token']}"}
    r = httpx.post(base + "/study/api/rate", headers=h, json={"case": a["next"]["case"], "call": "real", "score": 3, "finding": "Nodule"})
    assert r.status_code == 200 and set(r.json()) == {"saved", "next"} and set(r.json()["next"]) == NEXT_KEYS
    text = json.dumps([a, r.json(), httpx.get(base + "/study/api/next", headers=h).json()])
    assert not any(w in text for w in _truth_words(ws, s1))
    for word in ('"truth"', '"labels"', '"source"', "synthetic:", "real:"):
        assert word not in text


def test_tokens_are_checked(env):
    ws, base, (s1, code1), _ = env
    assert httpx.get(base + "/study/api/next").status_code == 401
    assert httpx.get(base + "/study/api/next", headers={"Authorization": "Bearer forged"}).status_code == 401
    r = httpx.post(base + "/study/api/rate", headers={"Authorization": "Bearer forged"}, json={"case": "x", "call": "real", "score": 3})
    assert r.status_code == 401
    assert post_signin(base, {"name": "Eve", "code": "AAAA-AAAA-AAAA"}).status_code == 401
    case = StudyStore(ws.studies_db).cases(s1)[0]["id"]
    assert httpx.get(base + f"/study/img/{case}").status_code == 404
    assert httpx.get(base + f"/study/img/{case}", params={"k": "forged"}).status_code == 404


def test_reader_cannot_reach_another_study(env):
    ws, base, (s1, code1), (s2, code2) = env
    a = signin(base, "Mallory", code1)
    other = StudyStore(ws.studies_db).cases(s2)[0]["id"]
    assert httpx.get(base + f"/study/img/{other}", params={"k": a["image_key"]}).status_code == 404
    r = httpx.post(base + "/study/api/rate", headers={"Authorization": f"Bearer {a['token']}"},
                   json={"case": other, "call": "real", "score": 3, "finding": "Nodule"})
    assert r.status_code == 400
    assert StudyStore(ws.studies_db).count_ratings(s2) == (0, 0)
    own = httpx.get(base + a["next"]["image_url"])
    assert own.status_code == 200 and own.headers["content-type"] == "image/png"


def test_reader_cannot_see_or_change_another_readers_answers(env):
    ws, base, (s1, code1), _ = env
    store = StudyStore(ws.studies_db)
    personal = store.add_reader(s1, "Dr Owner")
    owner = signin(base, "Dr Owner", personal)
    case = owner["next"]["case"]
    httpx.post(base + "/study/api/rate", headers={"Authorization": f"Bearer {owner['token']}"},
               json={"case": case, "call": "synthetic", "score": 5, "finding": "Nodule"}).raise_for_status()
    # the study code cannot be used to sign in as a reader who has a personal code
    assert post_signin(base, {"name": "Dr Owner", "code": code1}).status_code == 401
    intruder = signin(base, "Intruder", code1)
    r = httpx.post(base + "/study/api/rate", headers={"Authorization": f"Bearer {intruder['token']}"},
                   json={"case": case, "call": "real", "score": 1, "finding": "No Finding"})
    assert r.status_code == 200 and "Dr Owner" not in r.text and "synthetic" not in r.text
    mine = [x for x in store.ratings_rows(s1) if x["reader"] == "Dr Owner"]
    assert [(x["call"], x["score"]) for x in mine] == [("synthetic", 5)]


def test_gradio_handlers_refuse_direct_calls(env):
    ws, base, (s1, code1), (s2, code2) = env
    cfg = fx.gradio_config(base)
    n_studies = len(StudyStore(ws.studies_db).list_studies())
    reader_token = signin(base, "Api Reader", code1)["token"]
    for label, data in [
        ("Create study", [reader_token, "hijack", "demo", "all", [], "", 1, 1, 0, "realism", 0]),
        ("Show results", [reader_token, s1]),
        ("Issue reader code", [reader_token, s1, "Eve"]),
        ("Close study", ["forged", s1]),
        ("New access code", [None, s2]),
    ]:
        msg = fx.gradio_call(base, fx.find_dependency(cfg, label), data)
        out = json.dumps(msg)
        # refused by the token check, or earlier by Gradio itself (a study id that is not among this
        # session's dropdown choices); either way nothing runs and nothing comes back
        assert "admin sign-in required" in out or msg.get("success") is False, (label, out)
        assert "truth" not in out and code1 not in out
    store = StudyStore(ws.studies_db)
    assert len(store.list_studies()) == n_studies
    assert all(s["status"] == "open" for s in store.list_studies())
    assert not [p for p in store.progress(s1) if p["reader"] == "Eve"]
    # a reader handler called without signing in (State comes from the server, not the request)
    msg = fx.gradio_call(base, fx.find_dependency(cfg, "Save and next  (Enter)"), [reader_token, "x", "real", "3", None, ""])
    assert "not signed in" in json.dumps(msg)
    # the admin password is checked on the server
    msg = fx.gradio_call(base, fx.find_dependency(cfg, "Sign in"), ["wrong"])
    assert "wrong admin password" in json.dumps(msg)


def test_page_config_leaks_nothing(env):
    ws, base, (s1, code1), _ = env
    text = httpx.get(base + "/config").text
    for page in (text, httpx.get(base + "/").text):  # the admin panel's database line names the file only
        assert str(ws.root) not in page and "study database studies.sqlite" in page
    store = StudyStore(ws.studies_db)
    for c in store.cases(s1):
        assert c["id"] not in text and c["source"] not in text
    assert code1 not in text and ADMIN not in text
    info = httpx.get(base + "/gradio_api/info").json()
    assert not info.get("named_endpoints")  # every handler is private: none advertised to API clients


def test_reader_only_server_shows_no_studio_tab(env):
    """Readers get the reading screen alone: no Data/Train/Browse/Compare tab with labelled images."""
    _, base, _, _ = env
    labels = {str(c.get("props", {}).get("label")) for c in fx.gradio_config(base)["components"]}
    assert not labels & {"Data", "Train", "Browse", "Compare"}


def test_admin_handlers_check_token_and_disabled_state(tmp_path):
    ws = Workspace(tmp_path)
    store = StudyStore(ws.studies_db)
    sid, code = fx.tiny_study(ws, 2, 2)
    off = AdminHandlers(store, ws, None)
    with pytest.raises(UserError, match="--admin-password"):
        off.login("anything")
    adm = AdminHandlers(store, ws, "pw")
    with pytest.raises(UserError, match="wrong"):
        adm.login("nope")
    reader = store.sign_in("R", code).token
    for tok in (None, "", reader, "forged"):
        with pytest.raises(UserError, match="admin sign-in"):
            adm.results(tok, sid)
    tok = adm.login("pw")
    assert adm.progress(tok, sid)[0]["reader"] == "R"


def test_study_database_is_never_served_as_a_file(env, tmp_path):
    """Gradio serves files under allowed_paths; the database (all truth and answers) must not be one."""
    import gradio as gr

    from medgan_ui.study.api import mount_study_routes

    ws, base, _, _ = env
    for url in (f"/gradio_api/file={ws.studies_db}", f"/file={ws.studies_db}"):
        assert httpx.get(base + url).status_code != 200
    # the way the full app does it: launch with the workspace allowed, then mount the study routes
    with gr.Blocks() as demo:
        gr.Markdown("app")
    app, _, _ = demo.launch(prevent_thread_lock=True, server_port=fx.free_port(), quiet=True, allowed_paths=[str(ws.root)])
    try:
        other = ws.root / "visible.txt"
        other.write_text("ok")
        url = demo.local_url.rstrip("/")
        assert httpx.get(f"{url}/gradio_api/file={other}").status_code == 200  # the allowed folder is served...
        assert httpx.get(f"{url}/gradio_api/file={ws.studies_db}").status_code == 200  # ...the leak without protection
        mount_study_routes(app, ws)
        assert httpx.get(f"{url}/gradio_api/file={ws.studies_db}").status_code == 403
        assert httpx.get(f"{url}/gradio_api/file={ws.root}/./studies.sqlite").status_code != 200
    finally:
        demo.close()


def test_admin_creates_closes_and_reads_results(tmp_path):
    """What the admin panel's buttons do, with the admin token: create, reader code, close, results."""
    from PIL import Image

    ws = Workspace(tmp_path / "ws")
    real = fx.demo().save(tmp_path / "real.npz")
    syn = fx.write_synthetic_folder(tmp_path / "syn")
    adm = AdminHandlers(StudyStore(ws.studies_db), ws, "pw")
    tok = adm.login("pw")
    made = adm.create(tok, name="From the panel", real=str(real), part=None, synthetic=[str(syn)], classes=["Effusion"],
                      real_per_class=2, synthetic_per_class=2, score_kind="realism")
    assert made["n_cases"] == 8 and [s["id"] for s in adm.studies(tok)] == [made["study_id"]]
    personal = adm.add_reader(tok, made["study_id"], "Dr Panel")
    store = StudyStore(ws.studies_db)
    t = store.sign_in("Dr Panel", personal).token
    while (n := store.next_case(t)).case_id:
        store.rate(t, n.case_id, "real", 4, "Effusion")
    adm.set_status(tok, made["study_id"], "closed")
    with pytest.raises(UserError, match="closed"):
        store.sign_in("Late Reader", made["access_code"])
    res = adm.results(tok, made["study_id"])
    assert res["turing_test"]["ratings"] == 8 and res["turing_test"]["specificity"] == 1.0
    with Image.open(res["figure"]) as im:
        assert im.format == "PNG"
    assert open(res["csv"]).read().count("\n") == 9

"""20 readers rating at once through the HTTP API of a real server process, 50 cases each:
exactly 1,000 ratings stored, none duplicated, none lost, none altered."""
from __future__ import annotations

import random
import threading

import httpx
import pytest

import _study_fixtures as fx
from medgan_ui.study.store import StudyStore
from medgan_ui.workspace import Workspace

READERS, CASES = 20, 50


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    load = fx.tiny_study(ws, 25, 25, name="load")
    ui = fx.tiny_study(ws, 3, 3, name="ui")
    proc, base = fx.start_server(ws.root)
    yield ws, base, load, ui
    fx.stop_server(proc)


def test_twenty_readers_fifty_cases(server):
    ws, base, (sid, code), _ = server
    sent: dict[tuple[str, str], tuple[str, int]] = {}
    errors: list[str] = []
    barrier = threading.Barrier(READERS)

    def reader(i: int) -> None:
        rng = random.Random(i)
        name = f"reader-{i:02d}"
        try:
            doubles: list[threading.Thread] = []
            with httpx.Client(base_url=base, timeout=60) as c:
                barrier.wait()  # everyone starts together
                r = c.post("/study/api/signin", json={"name": name, "code": code}).json()
                h = {"Authorization": f"Bearer {r['token']}"}
                nxt = r["next"]
                while not nxt["done"]:
                    body = {"case": nxt["case"], "call": rng.choice(["real", "synthetic"]), "score": rng.randint(1, 5),
                            "finding": rng.choice(["Nodule", "No Finding"])}
                    if rng.random() < 0.1:  # a double click: the same answer sent twice at once must stay one row
                        t = threading.Thread(target=c.post, args=("/study/api/rate",),
                                             kwargs={"headers": h, "json": dict(body)})
                        t.start()
                        doubles.append(t)
                    resp = c.post("/study/api/rate", headers=h, json=body)
                    if resp.status_code != 200:
                        errors.append(f"{name}: {resp.status_code} {resp.text}")
                        return
                    sent[(name, body["case"])] = (body["call"], body["score"])
                    nxt = resp.json()["next"]
                    if rng.random() < 0.05:  # some readers look at the image too
                        assert c.get(nxt["image_url"] or "/study/api/next", headers=h).status_code == 200
                [t.join(60) for t in doubles]  # before the client closes under them
        except Exception as exc:  # reported below, with the reader's name
            errors.append(f"{name}: {exc!r}")

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(READERS)]
    [t.start() for t in threads]
    [t.join(300) for t in threads]
    assert not errors, errors[:5]
    store = StudyStore(ws.studies_db)
    assert store.count_ratings(sid) == (READERS * CASES, READERS * CASES)
    stored = {(r["reader"], r["case_id"]): (r["call"], r["score"]) for r in store.ratings_rows(sid)}
    assert len(sent) == READERS * CASES
    assert stored == sent  # every acknowledged answer is there, exactly as sent
    assert all(p["answered"] == CASES for p in store.progress(sid))


def test_readers_through_the_reading_screen_handlers(server):
    """The browser path: sign in and answer through Gradio's queue, 8 sessions at once."""
    ws, base, _, (sid, code) = server
    cfg = fx.gradio_config(base)
    start, save = fx.find_dependency(cfg, "Start reading"), fx.find_dependency(cfg, "Save and next  (Enter)")
    errors: list[str] = []

    def reader(i: int) -> None:
        session = f"ui-session-{i}"
        try:
            # name, code, and the reader codes this browser remembers (BrowserState: none yet)
            out = fx.gradio_call(base, start, [f"ui reader {i}", code, None], session)
            assert out.get("success"), out
            for k in range(6):
                # State inputs (token, case) are filled in by the server from this session, whatever is sent
                out = fx.gradio_call(base, save, [None, None, "real" if k % 2 else "synthetic", str(1 + k % 5), "Nodule", ""], session)
                assert out.get("success"), out
            assert "all 6 cases are answered" in str(out["output"]["data"])
        except Exception as exc:  # reported below
            errors.append(f"reader {i}: {exc!r}")

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(8)]
    [t.start() for t in threads]
    [t.join(300) for t in threads]
    assert not errors, errors[:3]
    store = StudyStore(ws.studies_db)
    assert store.count_ratings(sid) == (48, 48)
    assert all(p["answered"] == 6 for p in store.progress(sid))

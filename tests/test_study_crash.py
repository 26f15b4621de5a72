"""kill -9 of the server in the middle of a study: every acknowledged rating survives, and the
reader resumes at the next unanswered case."""
from __future__ import annotations

import os
import signal
import threading
import time

import httpx

import _study_fixtures as fx
from medgan_ui.study.store import StudyStore
from medgan_ui.workspace import Workspace


def test_kill_9_then_restart(tmp_path):
    ws = Workspace(tmp_path)
    sid, code = fx.tiny_study(ws, 20, 20, name="crash")
    proc, base = fx.start_server(ws.root)
    acked: list[str] = []
    stop = threading.Event()
    r = httpx.post(base + "/study/api/signin", json={"name": "Dr Crash", "code": code}).json()
    token = r["token"]

    def rate_forever() -> None:
        nxt = r["next"]
        with httpx.Client(base_url=base, timeout=10) as c:
            while not stop.is_set() and not nxt["done"]:
                try:
                    resp = c.post("/study/api/rate", headers={"Authorization": f"Bearer {token}"},
                                  json={"case": nxt["case"], "call": "synthetic", "score": 4, "finding": "Nodule"})
                except httpx.HTTPError:
                    return  # the server died under this request: it was never acknowledged
                if resp.status_code != 200:
                    return
                acked.append(nxt["case"])  # the reader saw "saved" for this case
                nxt = resp.json()["next"]

    t = threading.Thread(target=rate_forever)
    t.start()
    deadline = time.time() + 60
    while len(acked) < 12 and time.time() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)  # mid-stream: a request is very likely in flight right now
    proc.wait(10)
    stop.set()
    t.join(30)
    assert 12 <= len(acked) < 40

    proc2, base2 = fx.start_server(ws.root)
    try:
        store = StudyStore(ws.studies_db)
        stored = {x["case_id"] for x in store.ratings_rows(sid)}
        assert set(acked) <= stored  # nothing acknowledged was lost
        assert len(stored) <= len(acked) + 1  # at most the one in flight was committed without its reply
        # the old session still works after the restart, and so does signing in again (with the reader code)
        again = httpx.post(base2 + "/study/api/signin", json={"name": "dr crash", "code": code, "reader_code": r["reader_code"]})
        for tok in (token, again.json()["token"]):
            nxt = httpx.get(base2 + "/study/api/next", headers={"Authorization": f"Bearer {tok}"}).json()
            order = store.reader(tok).order
            first_unanswered = next(c for c in order if c not in stored)
            assert nxt["case"] == first_unanswered
            assert nxt["answered"] == len(stored) and nxt["position"] == order.index(first_unanswered) + 1
            assert httpx.get(base2 + nxt["image_url"]).status_code == 200
    finally:
        fx.stop_server(proc2)

"""Job manager: FIFO queue, cooperative stop, persisted state, restart, failures captured."""
from __future__ import annotations

import threading
import time

import pytest

from medgan_ui.errors import UserError
from medgan_ui.jobs import JobManager
from medgan_ui.workspace import Workspace, read_json


def _counting_job(steps: int, log: list, gate: threading.Event | None = None, name: str = ""):
    def fn(on_progress, should_stop):
        log.append(("start", name))
        for i in range(steps):
            if gate is not None:
                gate.wait(5)
            if should_stop():
                return {"steps": i}
            on_progress({"step": i + 1, "total": steps})
            time.sleep(0.005)
        log.append(("end", name))
        return {"steps": steps}

    return fn


def test_fifo_queue_runs_one_job_at_a_time(tmp_path):
    jm = JobManager(Workspace(tmp_path))
    log: list = []
    gate = threading.Event()
    a = jm.submit("train", "a", _counting_job(3, log, gate, "a"))
    b = jm.submit("train", "b", _counting_job(3, log, None, "b"))
    time.sleep(0.1)
    assert jm.get(a)["status"] == "running"
    assert jm.get(b)["status"] == "queued"  # one device job at a time
    assert [j["id"] for j in jm.active()] == [a, b]
    gate.set()
    assert jm.wait(b, timeout=10)["status"] == "done"
    assert log == [("start", "a"), ("end", "a"), ("start", "b"), ("end", "b")]
    assert jm.get(a)["progress"]["step"] == 3
    assert jm.get(b)["result"] == {"steps": 3}


def test_stop_is_cooperative_and_queued_job_is_cancelled(tmp_path):
    jm = JobManager(Workspace(tmp_path))
    log: list = []
    gate = threading.Event()
    a = jm.submit("train", "a", _counting_job(1000, log, gate, "a"))
    b = jm.submit("train", "b", _counting_job(3, log, None, "b"))
    time.sleep(0.05)
    assert "cancelled" in jm.stop(b)
    assert "stopping" in jm.stop(a)
    gate.set()
    rec = jm.wait(a, timeout=10)
    assert rec["status"] == "stopped" and rec["result"]["steps"] < 1000
    assert jm.get(b)["status"] == "cancelled"
    assert ("start", "b") not in log
    assert "not running" in jm.stop(a)


def test_failure_is_captured_as_readable_message_and_worker_survives(tmp_path):
    ws = Workspace(tmp_path)
    jm = JobManager(ws)

    def boom(on_progress, should_stop):
        raise RuntimeError("CUDA out of memory (simulated)")

    def user_err(on_progress, should_stop):
        raise UserError("image size 48 is not supported: use 32, 64 or 128")

    (ws.runs / "r1").mkdir()
    j1 = jm.submit("train", "boom", boom, run_id="r1")
    j2 = jm.submit("train", "bad", user_err)
    j3 = jm.submit("train", "ok", _counting_job(2, []))
    assert jm.wait(j3, timeout=10)["status"] == "done"  # the worker thread lived on
    r1 = jm.get(j1)
    assert r1["status"] == "failed" and r1["error"] == "RuntimeError: CUDA out of memory (simulated)"
    assert jm.get(j2)["error"] == "image size 48 is not supported: use 32, 64 or 128"
    assert (ws.runs / "r1" / "job-error.log").read_text().count("Traceback") == 1
    assert read_json(ws.runs / "r1" / "status.json")["status"] == "failed"


def test_state_persists_and_restart_marks_running_job_interrupted(tmp_path):
    ws = Workspace(tmp_path)
    (ws.runs / "run-a").mkdir()
    jm = JobManager(ws)
    started = threading.Event()
    release = threading.Event()

    def long_job(on_progress, should_stop):
        on_progress({"step": 7})
        started.set()
        release.wait(10)
        return {}

    jid = jm.submit("train", "long", long_job, run_id="run-a")
    assert started.wait(5)
    on_disk = read_json(ws.root / "jobs.json")["jobs"]
    assert on_disk[0]["status"] == "running"
    assert read_json(ws.runs / "run-a" / "status.json")["status"] == "running"

    # a second manager on the same workspace = the app restarted after the process died
    jm2 = JobManager(ws)
    rec = jm2.get(jid)
    assert rec["status"] == "interrupted" and "resume" in rec["error"]
    assert rec["progress"]["step"] == 7
    assert jm2.job_for_run("run-a")["id"] == jid
    assert read_json(ws.runs / "run-a" / "status.json")["status"] == "interrupted"
    release.set()
    jm.wait(jid, timeout=10)


def test_shutdown_marks_running_job_interrupted(tmp_path):
    jm = JobManager(Workspace(tmp_path))
    a = jm.submit("train", "a", _counting_job(10_000, []))
    b = jm.submit("train", "b", _counting_job(3, []))
    time.sleep(0.05)
    jm.shutdown(timeout=5)
    assert jm.get(a)["status"] == "interrupted"
    assert jm.get(b)["status"] == "interrupted"
    with pytest.raises(UserError):
        jm.submit("train", "late", _counting_job(1, []))


def test_unknown_job_is_a_user_error(tmp_path):
    jm = JobManager(Workspace(tmp_path))
    with pytest.raises(UserError, match="no job"):
        jm.get("job-nope")

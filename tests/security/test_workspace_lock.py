"""One writer per workspace and per run: a second studio or a second trainer is refused, naming the
holder (pid, host); a holder killed with -9 leaves no lock behind."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import _study_fixtures as fx
from medgan_ui.security.lock import LockHeld, run_lock, workspace_lock

ROOT = Path(__file__).resolve().parents[2]


def hold_in_child(code: str) -> subprocess.Popen:
    """A child process that takes a lock, prints READY and sleeps (until killed)."""
    script = textwrap.dedent(f"""
        import sys, time
        {code}
        print("READY", flush=True)
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "READY"
    return proc


def test_second_studio_on_a_workspace_is_refused_naming_the_holder(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    first, _ = fx.start_server(ws, reader_only=False, wait_for="/gradio_api/app_id")
    try:
        r = subprocess.run([sys.executable, "launch.py", "--workspace", str(ws), "--port", str(fx.free_port()),
                            "--no-demo"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr
        assert f"pid {first.pid} on host {socket.gethostname()}" in r.stderr
        assert "in use" in r.stderr and "another --workspace" in r.stderr
        # a reading session beside the studio is allowed (its own lock; the study database takes both)
        reader, _ = fx.start_server(ws)
        fx.stop_server(reader)
    finally:
        fx.stop_server(first)
    assert not (ws / ".medgan-studio.lock").read_text()  # released on a clean stop: holder info cleared


def test_killed_holder_leaves_no_lock(tmp_path):
    child = hold_in_child(f"from medgan_ui.security.lock import workspace_lock; held = workspace_lock({str(tmp_path)!r})")
    try:
        with pytest.raises(LockHeld) as exc:
            workspace_lock(tmp_path)
        assert exc.value.holder["pid"] == child.pid and exc.value.holder["host"] == socket.gethostname()
        assert f"pid {child.pid}" in str(exc.value)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    lock = workspace_lock(tmp_path)  # the kernel dropped the dead process's lock
    assert lock.held
    lock.release()


def test_a_run_cannot_be_trained_twice_at_once(tmp_path):
    run_dir = tmp_path / "runs" / "r1"
    child = hold_in_child(f"from medgan_ui.security.lock import run_lock; ctx = run_lock({str(run_dir)!r}); ctx.__enter__()")
    try:
        with pytest.raises(LockHeld, match=rf"run r1 is in use by pid {child.pid} on host"):
            with run_lock(run_dir):
                pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    with run_lock(run_dir):  # free again after the kill -9
        with pytest.raises(LockHeld, match=f"pid {os.getpid()}"):  # and a second claim in one process is refused too
            with run_lock(run_dir):
                pass


def test_resume_while_another_process_trains_is_refused_before_any_compute(tmp_path):
    """engine.train (every start and resume goes through it) takes the run lock first (Run.lock)."""
    from medgan_ui.data.phantom import demo_imageset
    from medgan_ui.gan.config import make_configs
    from medgan_ui.gan.runs import Run
    from medgan_ui.workspace import Workspace

    ds = demo_imageset(n=48, size=16, seed=0)
    tc, mc = make_configs("gdgan", "tiny", steps=2, log_every=1, checkpoint_every=1, sample_every=2)
    ws = Workspace(tmp_path / "ws")
    run = Run.create(ws, ds, tc, mc)
    run_dir = run.dir
    run.train(ds)
    metrics = (run_dir / "metrics.jsonl").read_text()
    child = hold_in_child(f"from medgan_ui.security.lock import run_lock; ctx = run_lock({str(run_dir)!r}); ctx.__enter__()")
    try:
        with pytest.raises(LockHeld, match=f"pid {child.pid}"):
            Run.open(ws, run.id).resume(dataset=ds, steps=4)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    assert (run_dir / "metrics.jsonl").read_text() == metrics  # nothing was written by the refused resume
    assert Run.open(ws, run.id).resume(dataset=ds, steps=4)["step"] == 4

"""Resume: metrics after the checkpoint dropped, and kill -9 + resume. (N + resume N == 2N straight, bit for
bit, is part of every family's contract: tests/gan/test_family_contract.py.)"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from _paths import ROOT
from medgan_ui.gan import checkpoint as ck
from medgan_ui.gan import engine
from medgan_ui.gan.config import make_configs
from medgan_ui.gan.runs import Run, read_jsonl
from medgan_ui.workspace import Workspace, read_json



def test_resume_drops_metrics_after_the_checkpoint(tmp_path, demo16):
    torch.set_num_threads(1)
    ds = demo16
    tc, mc = make_configs("gdgan", "tiny", steps=8, log_every=1, checkpoint_every=4, sample_every=100)
    ws = Workspace(tmp_path / "ws")
    run = Run.create(ws, ds, tc, mc).id
    engine.train(ds, tc, mc, ws.run_dir(run))
    # resume from the step-4 checkpoint with a longer budget: lines 5..8 are re-made, not duplicated
    summary = Run.open(ws, run).resume(dataset=ds, checkpoint="step_000004", steps=10)
    assert summary["step"] == 10
    steps = [m["step"] for m in read_jsonl(ws.run_dir(run) / "metrics.jsonl")]
    assert steps == list(range(1, 11))
    assert read_json(ws.run_dir(run) / "config.json")["train"]["steps"] == 10


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "medgan_ui.cli", *args]


def test_kill_minus_9_then_resume(tmp_path):
    ws = tmp_path / "ws"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(_cli("train", "--model", "gdgan", "--data", "demo", "--preset", "tiny", "--steps", "100000",
                                 "--set", "checkpoint_every=5", "--set", "sample_every=50", "--set", "log_every=5",
                                 "--no-progress", "--workspace", str(ws)),
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        ckpts: list[Path] = []
        while time.time() < deadline and proc.poll() is None:
            ckpts = [p for p in ws.glob("runs/*/checkpoints/step_*.pt")]
            if len(ckpts) >= 3:  # a few checkpoints written, training is mid-flight
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    run_dir = next((ws / "runs").iterdir())
    assert Run(run_dir).status()["status"] == "interrupted"
    last = ck.resolve(run_dir / "checkpoints")
    last_step = ck.load(last)["step"]
    target = last_step + 10
    out = subprocess.run(_cli("train", "--resume", run_dir.name, "--steps", str(target), "--no-progress",
                              "--workspace", str(ws)), cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"finished {target} steps" in out.stdout
    steps = [m["step"] for m in read_jsonl(run_dir / "metrics.jsonl")]
    assert steps == sorted(set(steps)) and steps[-1] == target  # no duplicate or torn lines
    assert steps == list(range(5, target + 1, 5))
    listed = subprocess.run(_cli("runs", "--json", "--workspace", str(ws)), env=env, capture_output=True, text=True)
    assert '"status": "finished"' in listed.stdout

"""Resume: N steps + resume N steps == 2N straight (same weights, same metrics), and kill -9 + resume."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medgan_ui.data.phantom import demo_imageset
from medgan_ui.gan import checkpoint as ck
from medgan_ui.gan import engine
from medgan_ui.gan.config import make_configs
from medgan_ui.gan.runs import Run, read_jsonl
from medgan_ui.workspace import Workspace, read_json

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def deterministic():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(threads)


@pytest.mark.parametrize("kind", ["gdgan", "acgan", "dcgan", "pggan"])
def test_stop_and_resume_equals_straight_run(tmp_path, deterministic, kind):
    ds = demo_imageset(n=48, size=16, seed=0)
    # 2N = 12 steps; GDGAN switches stage at step 6, so the resumed half is all stage 2
    tc, mc = make_configs(kind, "tiny", steps=12, log_every=2, checkpoint_every=4, sample_every=4,
                          augment="ada" if kind == "acgan" else "none")
    ws = Workspace(tmp_path / "ws")
    straight = Run.create(ws, ds, tc, mc).id
    assert engine.train(ds, tc, mc, ws.run_dir(straight))["status"] == "finished"

    resumed = Run.create(ws, ds, tc, mc).id
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= 6

    first = engine.train(ds, tc, mc, ws.run_dir(resumed), should_stop=stop)
    assert first["status"] == "stopped" and first["step"] == 6
    second = Run.open(ws, resumed).resume(dataset=ds)
    assert second["status"] == "finished" and second["step"] == 12

    a = ck.load(ck.resolve(ws.run_dir(straight) / "checkpoints"))
    b = ck.load(ck.resolve(ws.run_dir(resumed) / "checkpoints"))
    assert a["step"] == b["step"] == 12
    assert set(a["nets"]) == set(b["nets"])
    for net in a["nets"]:
        for name, t in a["nets"][net].items():
            assert torch.equal(t, b["nets"][net][name]), f"{net}.{name} differs after resume"
    assert a["extra"] == b["extra"]
    ma, mb = read_jsonl(ws.run_dir(straight) / "metrics.jsonl"), read_jsonl(ws.run_dir(resumed) / "metrics.jsonl")
    assert [m["step"] for m in ma] == [m["step"] for m in mb] == [2, 4, 6, 8, 10, 12]
    assert [m["losses"] for m in ma] == [m["losses"] for m in mb]  # no loss spike: identical curves


def test_resume_drops_metrics_after_the_checkpoint(tmp_path):
    torch.set_num_threads(1)
    ds = demo_imageset(n=48, size=16, seed=0)
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

"""`medgan train` under torchrun with 2 CPU processes (Gloo): one run folder, metrics written once."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

from _paths import ROOT
from medgan_ui.gan import checkpoint as ck
from medgan_ui.gan.runs import read_jsonl
from medgan_ui.workspace import read_json



def _torchrun() -> list[str]:
    exe = shutil.which("torchrun")
    return [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]


def test_train_under_torchrun_two_cpu_processes(tmp_path):
    ws = tmp_path / "ws"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [*_torchrun(), "--standalone", "--nproc_per_node", "2",
           "-m", "medgan_ui.cli", "train", "--model", "gdgan", "--data", "demo", "--preset", "tiny", "--steps", "6",
           "--device", "cpu", "--no-progress", "--workspace", str(ws)]
    out = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
    runs = list((ws / "runs").iterdir())
    assert len(runs) == 1, runs  # rank 0 made the folder, rank 1 trained into the same one
    run_dir = runs[0]
    assert out.stdout.count("finished: finished 6 steps") == 1  # only rank 0 reports
    steps = [m["step"] for m in read_jsonl(run_dir / "metrics.jsonl")]
    assert steps == [1, 2, 3, 4, 5, 6]  # written once, not once per rank
    line = read_jsonl(run_dir / "metrics.jsonl")[-1]
    assert line["img_per_s"] > 0
    assert read_json(run_dir / "status.json")["status"] == "finished"
    state = ck.load(ck.resolve(run_dir / "checkpoints"))
    assert state["step"] == 6
    assert len(state["feed"]) == 2 and len(state["rng"]) == 2  # each rank's stream, for an exact resume
    # the ranks drew different batches (seed offset per rank), so their positions in the data differ
    assert not all(state["feed"][0]["perm"] == state["feed"][1]["perm"])

"""Shared helpers for the reader-study tests: a tiny demo study without any GAN training.

Synthetic images are phantom images of another seed, blurred and re-noised: different content from
the real ones (as a GAN's would be), written as a sampling export (PNGs + labels.csv).
"""
from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from medgan_ui.data.imageset import ImageSet

import torch

torch.set_num_threads(1)  # 2 shared cores: thread oversubscription makes the phantom ~5x slower


@lru_cache(maxsize=4)
def demo(n: int = 240, seed: int = 0) -> ImageSet:
    from medgan_ui.data.phantom import demo_imageset

    return demo_imageset(n=n, size=64, seed=seed)


def write_synthetic_folder(folder: Path, n: int = 240, seed: int = 7) -> Path:
    """A synthetic set folder as `medgan sample` exports it: PNGs plus labels.csv."""
    ds = demo(n, seed)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "sex", "view", "Finding Labels"])  # the columns gan.generate.export_png writes
        for i in range(len(ds)):
            img = Image.fromarray(ds.images[i].numpy()).filter(ImageFilter.GaussianBlur(0.8))
            arr = np.clip(np.asarray(img, dtype=np.float32) + rng.normal(0, 6, (64, 64)), 0, 255).astype(np.uint8)
            name = f"sample_{i:05d}.png"
            # saved with default compression and a text chunk, as a careless exporter might: the study must strip it
            info = __import__("PIL.PngImagePlugin", fromlist=["PngInfo"]).PngInfo()
            info.add_text("generator", "gdgan")
            Image.fromarray(arr, mode="L").save(folder / name, pnginfo=info)
            g = ds.general_label(i)
            w.writerow([name, g["sex"], g["view"], "|".join(ds.finding_labels(i)) or "No Finding"])
    return folder


def make_study(workspace, name: str = "Test study", real_per_class: int = 4, synthetic_per_class: int = 4,
               repeats: int = 0, score_kind: str = "confidence", classes=None, tmp: Path | None = None):
    from medgan_ui.study.design import StudyConfig, create_study

    syn = write_synthetic_folder((tmp or workspace.root) / "synthetic-export")
    cfg = StudyConfig(name=name, real="demo", part=None, synthetic=[str(syn)], classes=classes,
                      real_per_class=real_per_class, synthetic_per_class=synthetic_per_class,
                      repeats=repeats, score_kind=score_kind, seed=3)
    return create_study(workspace, cfg, real=demo())


# ---- a real server process ---------------------------------------------------------------------------
import json
import os
import secrets
import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root: Path, admin_password: str | None = None, port: int | None = None, *,
                 reader_only: bool = True, extra_args: list[str] | tuple[str, ...] = (),
                 env: dict[str, str] | None = None, wait_for: str = "/config") -> tuple[subprocess.Popen, str]:
    """A real `python launch.py` on a free localhost port (by default `--reader-only`, what a reading
    session runs; reader_only=False starts the full studio, without the demo); returns (process, base
    URL) once `wait_for` answers. extra_args go on the command line as given (security tests)."""
    port = port or free_port()
    cmd = [sys.executable, "launch.py", "--workspace", str(root), "--port", str(port)]
    cmd += ["--reader-only"] if reader_only else ["--no-demo"]
    if admin_password:
        cmd += ["--admin-password", admin_password]
    cmd += list(extra_args)
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", OMP_NUM_THREADS="1", **(env or {}))
    log_path = Path(root).parent / f"server-{port}.log" if not Path(root).exists() else Path(root) / f"server-{port}.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=Path(__file__).resolve().parents[1])
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            if httpx.get(base + wait_for, timeout=2).status_code < 500:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start in 120 s")


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def gradio_config(base: str) -> dict:
    return httpx.get(base + "/config", timeout=10).json()


def find_dependency(config: dict, button_label: str) -> int:
    """fn_index of the click handler of the button with this label."""
    comps = {c["id"]: c for c in config["components"]}
    for d in config["dependencies"]:
        for target, event in d["targets"]:
            if event == "click" and comps.get(target, {}).get("props", {}).get("value") == button_label:
                return d["id"]
    raise KeyError(button_label)


def gradio_call(base: str, fn_index: int, data: list, session_hash: str | None = None,
                cookies: dict | None = None, headers: dict | None = None) -> dict:
    """Call a Gradio event handler the way a script could, bypassing the page: queue/join + SSE
    (`cookies`: a login's, for a server started with --auth; `headers`: e.g. a proxy's X-Forwarded-For)."""
    session_hash = session_hash or secrets.token_hex(8)
    with httpx.Client(base_url=base, timeout=60, cookies=cookies, headers=headers) as c:
        r = c.post("/gradio_api/queue/join", json={"data": data, "fn_index": fn_index, "session_hash": session_hash,
                                                   "event_data": None, "trigger_id": None})
        if r.status_code != 200:
            return {"status": r.status_code, "body": r.text}
        with c.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}) as s:
            for line in s.iter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("msg") == "process_completed":
                        return msg
    return {}


def tiny_study(workspace, n_real: int = 25, n_syn: int = 25, name: str = "tiny", findings=("Nodule", "No Finding"),
               seed: int = 0) -> tuple[str, str]:
    """A study straight through the store (no phantom): random-texture cases, encoded as the design does."""
    from medgan_ui.study.design import encode_png
    from medgan_ui.study.store import CaseInput, StudyStore

    rng = np.random.default_rng(seed)
    cases = [CaseInput("real" if i < n_real else "synthetic", f"src/{i}.png",
                       {"findings": ["Nodule"] if i % 2 else [], "class": "Nodule" if i % 2 else "No Finding",
                        "source_name": "real:test" if i < n_real else "synthetic:test"},
                       encode_png(rng.integers(0, 256, (32, 32), dtype=np.uint8), 32))
             for i in range(n_real + n_syn)]
    settings = {"findings": list(findings), "score_kind": "confidence", "ask_finding": True, "seed": seed, "size": 32}
    return StudyStore(workspace.studies_db).create_study(name, settings, cases)

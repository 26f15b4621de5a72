"""Reader-study server under load: N readers answering M cases each at once over the HTTP API.

    python bench/study_throughput.py                 # 20 readers x 50 cases
    python bench/study_throughput.py --readers 50 --cases 100

Starts `python -m medgan_ui.ui.study_server` on a free localhost port with a throw-away workspace,
then prints one JSON line: ratings stored (must equal readers x cases), ratings per second, and the
p50/p95/max latency of a rating (the request that commits it and returns the next case).
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from medgan_ui.study.design import encode_png
from medgan_ui.study.store import CaseInput, StudyStore
from medgan_ui.workspace import Workspace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--readers", type=int, default=20)
    ap.add_argument("--cases", type=int, default=50)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    ws = Workspace(tempfile.mkdtemp(prefix="medgan-study-bench-"))
    rng = np.random.default_rng(0)
    cases = [CaseInput("real" if i % 2 else "synthetic", f"bench/{i}", {"findings": []},
                     encode_png(rng.integers(0, 256, (args.size, args.size), dtype=np.uint8), args.size))
             for i in range(args.cases)]
    store = StudyStore(ws.studies_db)
    sid, code = store.create_study("bench", {"findings": ["Nodule", "No Finding"], "score_kind": "realism"}, cases)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "medgan_ui.ui.study_server", "--workspace", str(ws.root), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parents[1])
    base = f"http://127.0.0.1:{port}"
    try:
        t_start = time.time()
        while True:
            try:
                if httpx.get(base + "/config", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
            if time.time() - t_start > 180:
                raise SystemExit("server did not start")
        startup = time.time() - t_start
        latencies: list[float] = []
        lock = threading.Lock()

        def reader(i: int) -> None:
            with httpx.Client(base_url=base, timeout=120) as c:
                r = c.post("/study/api/signin", json={"name": f"r{i}", "code": code}).json()
                h, nxt = {"Authorization": f"Bearer {r['token']}"}, r["next"]
                while not nxt["done"]:
                    t0 = time.perf_counter()
                    resp = c.post("/study/api/rate", headers=h, json={"case": nxt["case"], "call": "real", "score": 3, "finding": "Nodule"})
                    resp.raise_for_status()
                    with lock:
                        latencies.append(time.perf_counter() - t0)
                    nxt = resp.json()["next"]

        t0 = time.time()
        threads = [threading.Thread(target=reader, args=(i,)) for i in range(args.readers)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        wall = time.time() - t0
        stored, distinct = store.count_ratings(sid)
        lat = np.array(latencies) * 1000
        print(json.dumps({"bench": "study_throughput", "readers": args.readers, "cases": args.cases,
                          "ratings_stored": stored, "ratings_distinct": distinct, "expected": args.readers * args.cases,
                          "seconds": round(wall, 2), "ratings_per_s": round(stored / wall, 1),
                          "latency_ms_p50": round(float(np.percentile(lat, 50)), 1),
                          "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
                          "latency_ms_max": round(float(lat.max()), 1), "server_startup_s": round(startup, 1)}))
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()

"""Cache speed-up of load_dataset: first load (read + split + write cache) vs second load (cache hit).

    python bench/dataset_cache.py [--sources nih demo medmnist]

Prints one JSON line per source. Target (issue 2): second load >= 10x faster than the first.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from medgan_ui.data import load_dataset
from medgan_ui.workspace import Workspace

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SOURCES = {
    "nih": DATA / "nih-cxr14-1000",
    "demo": "demo",
    "medmnist": DATA / "medmnist" / "pneumoniamnist.npz",
}


def bench(name: str, source, repeats: int = 3) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(tmp) / "ws")
        t0 = time.perf_counter()
        first = load_dataset(source, workspace=ws)
        t_first = time.perf_counter() - t0
        cached = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            again = load_dataset(source, workspace=ws)
            cached.append(time.perf_counter() - t0)
            assert again.meta["loaded_from_cache"], "second load did not hit the cache"
        t_cached = min(cached)
    return {"bench": "dataset_cache", "source": name, "images": len(first), "size": first.size,
            "first_load_s": round(t_first, 3), "cached_load_s": round(t_cached, 4),
            "speedup": round(t_first / t_cached, 1), "target_speedup": 10}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sources", nargs="+", default=["nih", "demo"], choices=sorted(SOURCES))
    args = p.parse_args()
    for name in args.sources:
        src = SOURCES[name]
        if src != "demo" and not Path(src).exists():
            print(json.dumps({"bench": "dataset_cache", "source": name, "skipped": f"{src} not present"}))
            continue
        print(json.dumps(bench(name, src)), flush=True)


if __name__ == "__main__":
    main()

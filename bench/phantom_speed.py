"""How long the demo phantom takes: python bench/phantom_speed.py [--n 2000] [--size 64] [--threads K]

Prints one JSON line per run: n, size, threads, seconds (target: 2,000 images at 64x64 under 10 s on
a 2-core CPU), plus the patients and finding counts so a change in the drawing shows up here too.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from medgan_ui.data.phantom import demo_imageset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        ds = demo_imageset(args.n, args.size, args.seed)
        sec = time.perf_counter() - t0
        counts = ds.counts()
        print(json.dumps({"bench": "phantom_speed", "n": args.n, "size": args.size, "threads": torch.get_num_threads(),
                          "seconds": round(sec, 3), "patients": counts["patients"], "findings": counts["findings"]}))


if __name__ == "__main__":
    main()

"""Coverage of the Turing test's OR 95% CI and rate of equivalence conclusions on simulated studies.

Prints one JSON line per design: readers, images per truth, separation, true AUC (chance designs only:
0.5 exactly), coverage of the 95% CI, share of studies concluding equivalence (margin 0.1), share
rejecting chance. Run: OMP_NUM_THREADS=1 PYTHONPATH=$PWD python bench/mrmc_coverage.py [reps]
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

from medgan_ui.study import mrmc, turing
from medgan_ui.study.simulate import simulate_rows


def run(readers: int, n: int, sep: float, reps: int) -> dict:
    t0 = time.time()
    cover, equiv, reject = [], [], []
    for rep in range(reps):
        long = turing.long_rows(simulate_rows(readers, n, n, separation=sep, seed=10_000 + rep), "confidence")
        res = turing.vs_chance(mrmc.MRMCData.from_rows(long), 0.1, "sim")
        lo, hi = res["auc"]["ci_unclipped"]
        cover.append(lo <= 0.5 <= hi)
        equiv.append(res["equivalence"]["equivalent"])
        reject.append(res["auc"]["p_vs_chance"] < 0.05)
    return {"readers": readers, "per_truth": n, "separation": sep, "reps": reps,
            "coverage_of_0.5" if sep == 0 else "ci_covers_0.5": float(np.mean(cover)),
            "equivalence_rate": float(np.mean(equiv)), "reject_chance_rate": float(np.mean(reject)),
            "seconds": round(time.time() - t0, 2)}


if __name__ == "__main__":
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    for readers, n, sep in ((3, 20, 0.0), (5, 40, 0.0), (10, 100, 0.0), (5, 40, 0.5), (5, 40, 1.0)):
        print(json.dumps(run(readers, n, sep, reps)), flush=True)

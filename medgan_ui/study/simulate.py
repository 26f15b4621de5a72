"""Simulated Turing-test ratings with known truth, to check the analysis (tests, bench/).

Each case has a latent "looks synthetic" value: real ~ N(0, 1), synthetic ~ N(separation, 1), shared
by all readers (case effect: readers see the same images); each reader adds a shift ~ N(0, reader_sd)
and per-rating noise ~ N(0, noise_sd). The call is synthetic when the latent is above 0, the 1-5
confidence grows with its distance from 0. With separation 0 the readers are at chance: true AUC 0.5.
The population AUC of the continuous latent is Phi(d / sqrt(2 (1 + noise_sd^2))) for every reader
(binormal); the 10-level ratings, ties counted 1/2, sit a little below it for d > 0 and at 0.5 for d = 0.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import norm


def true_auc(separation: float, noise_sd: float = 1.0) -> float:
    return float(norm.cdf(separation / np.sqrt(2 * (1 + noise_sd ** 2))))


def simulate_rows(n_readers: int, n_real: int, n_synthetic: int, separation: float = 0.0, seed: int = 0,
                  reader_sd: float = 0.3, noise_sd: float = 1.0, generators: dict[str, float] | None = None,
                  stop_after: dict[int, int] | None = None, classes: tuple[str, ...] = ("Effusion", "No Finding"),
                  finding_hit: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Rows as StudyStore.ratings_rows returns them (confidence studies). `generators` maps a source name
    to its own separation (n_synthetic cases each); `stop_after` {reader index: cases read} makes a
    reader stop early; `finding_hit` {truth: probability the reader names the case's class}."""
    rng = np.random.default_rng(seed)
    gens = generators or {"gan": separation}
    cases = [("real", "real", 0.0)] * n_real + [(g, "synthetic", d) for g, d in gens.items() for _ in range(n_synthetic)]
    latent = np.array([rng.normal(d, 1.0) for _, _, d in cases])
    cls = [classes[i % len(classes)] for i in range(len(cases))]
    hit = finding_hit or {"real": 0.8, "synthetic": 0.8}
    rows = []
    for j in range(n_readers):
        shift = rng.normal(0, reader_sd)
        order = rng.permutation(len(cases))[: (stop_after or {}).get(j, len(cases))]
        for i in order:
            src, truth, _ = cases[i]
            x = latent[i] + shift + rng.normal(0, noise_sd)
            conf = int(np.clip(1 + np.floor(abs(x) / 0.5), 1, 5))
            named = cls[i] if rng.random() < hit[truth] else next(c for c in classes if c != cls[i])
            rows.append({"reader": f"R{j + 1}", "case_id": f"c{i:04d}", "truth": truth, "source": f"{src}/{i}", "repeat_of": None,
                         "labels": {"class": cls[i], "findings": [] if cls[i] == "No Finding" else [cls[i]],
                                    "source_name": f"synthetic:{src}" if truth == "synthetic" else "real:demo"},
                         "call": "synthetic" if x > 0 else "real", "score": conf, "finding": named, "comment": "",
                         "ms": int(rng.integers(800, 5000)), "created": "t", "updated": "t"})
    return rows

"""The diffusion families' conditioning works, not only their loss: bench/conditioning_check.py's
method (a reader trained on real phantom images; the cardiothoracic ratio with vs without
Cardiomegaly at the same noise) after a short fast-cpu training on the demo phantom, 32x32: 3200 steps, about what the two
trainings reached side by side in 14 minutes (sex/view 0.92/0.86 and 0.91/0.84, heart-ratio gain
0.095 and 0.060, 89 % and 78 % of pairs larger). About 15 minutes per family on one CPU thread, so
CI checks `ddpm` (the network gd-ddpm shares) and `gd-ddpm` runs with MEDGAN_SLOW_ALL=1.
"""
from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from _paths import ROOT

BENCH = ROOT / "bench" / "conditioning_check.py"


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ddpm", pytest.param("gd-ddpm", marks=pytest.mark.skipif(
    not os.environ.get("MEDGAN_SLOW_ALL"), reason="15 more minutes of CPU: set MEDGAN_SLOW_ALL=1"))])
def test_diffusion_conditioning_on_demo_phantom(kind):
    spec = importlib.util.spec_from_file_location("conditioning_check", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    try:
        r = mod.run_check(size=32, steps=3200, seed=0, preset="fast-cpu", per_combo=32, model=kind)
    finally:
        torch.set_num_threads(threads)
    print(r)
    assert mod.failed_criteria(r) == []

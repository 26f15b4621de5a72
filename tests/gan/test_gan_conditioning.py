"""Conditioning works, not only the losses: see bench/conditioning_check.py for the method.

After a short CPU run of GDGAN on the demo phantom (32x32, fast-cpu widths, 2400 steps), a CNN trained on real
phantom images reads the requested sex and view from generated stage-1 images, and images generated
with Cardiomegaly requested measure a larger cardiothoracic ratio than the same noise without it.
"""
from __future__ import annotations

import importlib.util

import pytest
import torch
from _paths import ROOT

BENCH = ROOT / "bench" / "conditioning_check.py"


@pytest.mark.slow
def test_gdgan_conditioning_on_demo_phantom():
    spec = importlib.util.spec_from_file_location("conditioning_check", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # sex (a soft-tissue cue) needs ~1000 stage-1 steps at 32x32; Cardiomegaly needs the ~1000
        # stage-2 steps: with 600 it was learnt for 3 of 4 seeds (bf16 autocast, seeds 0-3). Passes
        # in fp32 and in bf16 (CPUs with native bf16 use it), seeds 0 and 1: see the fast-cpu preset.
        r = mod.run_check(size=32, steps=2400, seed=0, preset="fast-cpu", stage1_fraction=0.6)
    finally:
        torch.set_num_threads(threads)
    print(r)
    assert r["reader_acc_real"]["sex"] >= 0.9 and r["reader_acc_real"]["view"] >= 0.9  # the reader itself works
    assert r["reader_acc_generated_stage1"]["sex"] >= 0.8
    assert r["reader_acc_generated_stage1"]["view"] >= 0.8
    assert r["ctr_nan_fraction"] < 0.2  # the generated chests are measurable at all
    assert r["ctr_with_cardiomegaly"] > r["ctr_without"] + 0.01
    assert r["ctr_paired_larger_fraction"] > 0.55  # same z and general labels, with vs without

"""One train_step at the `paper` preset (64x64) on the CPU, fp32 against bf16 autocast, interleaved
in one process: GDGAN stage 1 by default, ACGAN and DCGAN per class on request. CPUs with avx512_bf16 or AMX run the big fully connected
layers much faster in bf16, which is why the engine autocasts on them (medgan_ui/gan/device.py).

    python bench/cpu_bf16_step.py [--threads 1] [--rounds 3] [--models gdgan,acgan,dcgan]
"""
import argparse
import json
import time

import torch

from medgan_ui.data.phantom import demo_imageset
from medgan_ui.gan.base import Batch, LabelSchema
from medgan_ui.gan.feed import DeviceBatches
from medgan_ui.gan.config import make_configs
from medgan_ui.gan.registry import build_model


def median_step_s(model, batch: Batch, bf16: bool, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = model.train_step(batch, 0)
        float(sum(v.float() for v in out.values()))  # wait for the step
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--models", default="gdgan", help="comma list of gdgan, acgan, dcgan (pggan: see train_throughput)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = demo_imageset(n=256, size=64, seed=0)
    schema = LabelSchema.from_imageset(ds)
    for kind in [k for k in args.models.split(",") if k]:
        tc, mc = make_configs(kind, "paper")
        model = build_model(kind, mc, tc, schema, torch.device("cpu"))
        model.bind_data(ds)
        b = tc.batch_size
        batch = model.next_batch(DeviceBatches(ds, b, torch.device("cpu"), seed=0))
        per_step = model.images_per_step(b)
        n = 6 if kind == "gdgan" else 3
        median_step_s(model, batch, False, 1), median_step_s(model, batch, True, 1)  # warm-up
        for r in range(args.rounds):
            fp32, bf16 = median_step_s(model, batch, False, n), median_step_s(model, batch, True, n)
            print(json.dumps({"bench": "cpu_bf16_step", "model": kind, "round": r, "threads": args.threads,
                              "batch": b, "fp32_img_s": round(per_step / fp32, 1),
                              "bf16_img_s": round(per_step / bf16, 1), "speedup": round(fp32 / bf16, 2)}), flush=True)

if __name__ == "__main__":
    main()

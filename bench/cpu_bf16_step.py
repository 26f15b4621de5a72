"""GDGAN stage-1 train_step at the `paper` preset (64x64, batch 32) on the CPU: fp32 against bf16
autocast, interleaved in one process. CPUs with avx512_bf16 or AMX run the big fully connected
layers much faster in bf16, which is why the engine autocasts on them (medgan_ui/gan/device.py).

    python bench/cpu_bf16_step.py [--threads 1] [--rounds 3]
"""
import argparse
import json
import time

import torch

from medgan_ui.gan.base import Batch, LabelSchema
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tc, mc = make_configs("gdgan", "paper")
    schema = LabelSchema(["sex", "view"], {"sex": ["F", "M"], "view": ["AP", "PA"]}, ["Cardiomegaly"], 64)
    model = build_model("gdgan", mc, tc, schema, torch.device("cpu"))
    b = tc.batch_size
    batch = Batch(torch.rand(b, 1, 64, 64) * 2 - 1, torch.randint(0, 2, (b, 2)), torch.zeros(b, 1))
    median_step_s(model, batch, False, 2), median_step_s(model, batch, True, 2)  # warm-up
    for r in range(args.rounds):
        fp32, bf16 = median_step_s(model, batch, False, 6), median_step_s(model, batch, True, 6)
        print(json.dumps({"bench": "cpu_bf16_step", "round": r, "threads": args.threads, "batch": b,
                          "fp32_img_s": round(b / fp32, 1), "bf16_img_s": round(b / bf16, 1),
                          "speedup": round(fp32 / bf16, 2)}), flush=True)


if __name__ == "__main__":
    main()

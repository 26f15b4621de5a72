"""Sampling throughput (images/s) per model and, for the diffusion families, per sampler step count.

A diffusion model's sampling cost grows with its sampler steps (each step is one UNet pass, two with
classifier-free guidance; gd-ddpm adds a stage 2 of `strength` x steps); a GAN's is one generator
pass. The nets are freshly built (timing does not depend on the weights) on the chosen preset's
sizes; generation goes through the same `generate` the engine's grid and Browse use. One JSON line
per measurement.

    python bench/sample_throughput.py --threads 1                    # fast-cpu sizes, ddim, 10/25/50 steps
    python bench/sample_throughput.py --preset paper --steps 25,50 --sampler dpm-solver
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medgan_ui.data.phantom import demo_imageset  # noqa: E402
from medgan_ui.gan.base import LabelSchema  # noqa: E402
from medgan_ui.gan.config import make_configs  # noqa: E402
from medgan_ui.gan.device import pick_device  # noqa: E402
from medgan_ui.gan.grid import encode_labels  # noqa: E402
from medgan_ui.gan.registry import build_model, family  # noqa: E402


def measure(kind: str, preset: str, device: torch.device, n: int, batch: int, steps: int | None,
            sampler: str | None, repeats: int) -> dict:
    over = {"device": device.type}
    if steps is not None:
        over.update(sample_steps=steps, sampler=sampler)
    tc, mc = make_configs(kind, preset, **over)
    schema = LabelSchema.from_imageset(demo_imageset(n=32, size=tc.image_size, seed=0))
    torch.manual_seed(0)
    model = build_model(kind, mc, tc, schema, device)
    gen = torch.Generator().manual_seed(0)
    z = model.noise(batch, generator=gen)
    g, d = encode_labels(schema, {}, ["Cardiomegaly"], batch, device, gen)

    def once() -> None:
        with torch.inference_mode():
            model.generate(z, g, d, ema=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    once()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(max(1, n // batch)):
            once()
        times.append(time.perf_counter() - t0)
    made = max(1, n // batch) * batch
    line = {"bench": "sample_throughput", "model": kind, "preset": preset, "image_size": tc.image_size,
            "batch": batch, "device": str(device), "threads": torch.get_num_threads(),
            "img_per_s": made / min(times), "s_per_batch": min(times) / max(1, n // batch)}
    if steps is not None:
        line.update(sampler=mc.sampler, sample_steps=steps, guidance_scale=mc.guidance_scale,
                    strength=getattr(mc, "strength", None))
    return line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="ddpm,gd-ddpm,gdgan")
    ap.add_argument("--preset", default="fast-cpu")
    ap.add_argument("--steps", default="10,25,50", help="sampler step counts for the diffusion families")
    ap.add_argument("--sampler", default="ddim", choices=["ddim", "dpm-solver"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--images", type=int, default=64, help="images per timing")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    for kind in [k for k in args.models.split(",") if k]:
        diffusion = "sample_steps" in {f for f in family(kind).Config.__dataclass_fields__}
        for steps in ([int(s) for s in args.steps.split(",")] if diffusion else [None]):
            print(json.dumps(measure(kind, args.preset, device, args.images, args.batch, steps, args.sampler,
                                     args.repeats)), flush=True)


if __name__ == "__main__":
    main()

"""Training throughput (img/s) and peak memory per model at 64x64 with the `paper` preset.

Prints one JSON line per result. Beside GDGAN stage 1 it times the same nets fed the reference
code's way (seitalab/GDGAN.pytorch): a torch DataLoader over PNG files opened with PIL per image,
4 workers, the generator run a second time for its own update, `.item()` on the losses every step,
no EMA, fp32. The engine autocasts to bf16 where the hardware does bf16 natively (CUDA; CPUs with
AVX512-BF16/AMX; `precision` says which); there the engine is also timed in fp32, so the ratio
from the loop alone is printed too. The variants run in interleaved blocks in one process, so a busy
shared machine slows all alike and the printed ratios stay fair.

    python bench/train_throughput.py            # all models, about 10 minutes on a 2-core CPU
    python bench/train_throughput.py --quick    # fewer steps, GDGAN stage 1 ratio + one line per model
    python bench/train_throughput.py --models ddpm,gd-ddpm --preset fast-cpu --threads 1   # the diffusion CPU demo
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medgan_ui.data.phantom import demo_imageset  # noqa: E402
from medgan_ui.gan.base import Batch, LabelSchema  # noqa: E402
from medgan_ui.gan.config import make_configs  # noqa: E402
from medgan_ui.gan.device import autocast, pick_device, precision_name, uses_channels_last  # noqa: E402
from medgan_ui.gan.feed import DeviceBatches  # noqa: E402
from medgan_ui.gan.registry import build_model  # noqa: E402


class PeakRSS:
    """Peak resident memory above the starting point, sampled from /proc every few ms (CPU runs)."""

    def __init__(self) -> None:
        self.base = self.peak = self._rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._poll, daemon=True)

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as fh:
                return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def _poll(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._rss())

    def __enter__(self) -> "PeakRSS":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


class PNGFolder(torch.utils.data.Dataset):
    """The reference's data path: one PNG per image, decoded by PIL in a worker, ToTensor -> [0,1]."""

    def __init__(self, folder: Path, general: torch.Tensor, detailed: torch.Tensor) -> None:
        self.files = sorted(folder.glob("*.png"))
        self.general, self.detailed = general, detailed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        with Image.open(self.files[i]) as im:
            x = torch.from_numpy(np.asarray(im.convert("L"), dtype=np.float32) / 255.0)[None]
        return x, self.general[i], self.detailed[i].float()


def engine_block(model, feed: DeviceBatches, device, start: int, steps: int, log_every: int, amp: bool = True) -> float:
    """The engine's inner loop (medgan_ui/gan/engine.py): on-device batches, losses summed on the
    device, one host transfer per log window. Returns seconds."""
    sums: dict[str, torch.Tensor] = {}
    t0 = time.perf_counter()
    for i in range(start, start + steps):
        batch = model.next_batch(feed)  # DCGAN draws per-class batches through the feed
        with autocast(device, amp):
            losses = model.train_step(batch, i)
        model.update_ema(i)
        for k, v in losses.items():
            sums[k] = sums[k] + v.detach().float() if k in sums else v.detach().float()
        if (i + 1) % log_every == 0 or i == start + steps - 1:
            torch.stack(list(sums.values())).cpu()
            sums = {}
    return time.perf_counter() - t0


def reference_block(model, batches, device, start: int, steps: int) -> float:
    t0 = time.perf_counter()
    for i in range(start, start + steps):
        x, g, d = next(batches)
        batch = Batch(images=(x.to(device) * 2.0 - 1.0), general=g.to(device), detailed=d.to(device))
        losses = model.reference_step(batch, i)
        for k in ("loss_d", "loss_g"):  # the reference prints/logs floats every iteration
            losses[k].item()
    return time.perf_counter() - t0


def endless(loader):
    while True:
        yield from loader


def measure_gdgan_stage1(ds, device, rounds: int, block: int, warmup: int) -> list[dict]:
    tc, mc = make_configs("gdgan", "paper", device=device.type)
    schema = LabelSchema.from_imageset(ds)
    torch.manual_seed(0)
    ours = build_model("gdgan", mc, tc, schema, device)
    torch.manual_seed(0)
    ref = build_model("gdgan", mc, tc, schema, device)
    mixed = precision_name(device) != "fp32"
    torch.manual_seed(0)
    ours32 = build_model("gdgan", mc, tc, schema, device) if mixed else None
    feed = DeviceBatches(ds, tc.batch_size, device, seed=0, channels_last=uses_channels_last(device))
    with tempfile.TemporaryDirectory() as tmp:
        for i, img in enumerate(ds.images.numpy()):
            Image.fromarray(img).save(Path(tmp) / f"{i:06d}.png")
        loader = torch.utils.data.DataLoader(PNGFolder(Path(tmp), ds.general, ds.detailed), batch_size=tc.batch_size,
                                             shuffle=True, drop_last=True, num_workers=4, persistent_workers=True)
        batches = endless(loader)
        engine_block(ours, feed, device, 0, warmup, tc.log_every)
        if mixed:
            engine_block(ours32, feed, device, 0, warmup, tc.log_every, amp=False)
        reference_block(ref, batches, device, 0, warmup)
        t_ours, t_32, t_ref, step = [], [], [], warmup
        for _ in range(rounds):  # interleaved, so load from other processes hits all alike
            t_ours.append(engine_block(ours, feed, device, step, block, tc.log_every))
            if mixed:
                t_32.append(engine_block(ours32, feed, device, step, block, tc.log_every, amp=False))
            t_ref.append(reference_block(ref, batches, device, step, block))
            step += block
        del batches, loader
    assert ours.stage == 1 and ref.stage == 1
    ips = lambda ts: [block * tc.batch_size / t for t in ts]  # noqa: E731
    ips_ours, ips_32, ips_ref = ips(t_ours), ips(t_32), ips(t_ref)
    common = {"bench": "train_throughput", "model": "gdgan", "stage": 1, "image_size": tc.image_size,
              "batch": tc.batch_size, "device": str(device), "threads": torch.get_num_threads(),
              "steps": rounds * block}
    lines = [{**common, "variant": "engine", "precision": precision_name(device),
              "img_per_s": statistics.median(ips_ours), "all_img_per_s": ips_ours}]
    if mixed:
        lines.append({**common, "variant": "engine", "precision": "fp32", "img_per_s": statistics.median(ips_32),
                      "all_img_per_s": ips_32})
    lines.append({**common, "variant": "reference-way", "precision": "fp32", "img_per_s": statistics.median(ips_ref),
                  "all_img_per_s": ips_ref})
    ratio = {"bench": "train_throughput", "model": "gdgan", "stage": 1, "device": str(device),
             "ratio_engine_over_reference": statistics.median(a / b for a, b in zip(ips_ours, ips_ref))}
    if mixed:
        ratio["ratio_engine_fp32_over_reference"] = statistics.median(a / b for a, b in zip(ips_32, ips_ref))
    return lines + [ratio]


def measure_model(kind: str, ds, device, steps: int, warmup: int, stage: int | None = None, preset: str = "paper") -> dict:
    tc, mc = make_configs(kind, preset, device=device.type)
    if tc.image_size != ds.size:  # a preset at another size (the diffusion fast-cpu preset is 32 px)
        ds = demo_imageset(n=len(ds), size=tc.image_size, seed=0)
    model = build_model(kind, mc, tc, LabelSchema.from_imageset(ds), device)
    if uses_channels_last(device):
        for net in model.nets.values():
            net.to(memory_format=torch.channels_last)
    model.bind_data(ds)
    start = getattr(model, "stage1_steps", 0) if stage == 2 else 0
    if kind == "pggan":  # time the last phase (full 64x64), not the 4x4 start
        start = tc.steps - warmup - steps - 1
    feed = DeviceBatches(ds, tc.batch_size, device, seed=0, channels_last=uses_channels_last(device))
    engine_block(model, feed, device, start, warmup, tc.log_every)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as rss:
        dt = engine_block(model, feed, device, start + warmup, steps, tc.log_every)
    if device.type == "cuda":
        torch.cuda.synchronize()
        mem = torch.cuda.max_memory_allocated() / 2**20
    else:
        mem = rss.mb
    return {"bench": "train_throughput", "model": kind, "preset": preset, "variant": "engine", "stage": model.stage,
            "image_size": tc.image_size, "batch": tc.batch_size, "device": str(device),
            "threads": torch.get_num_threads(), "precision": precision_name(device), "steps": steps,
            "img_per_s": steps * model.images_per_step(tc.batch_size) / dt,
            "step_ms": 1000 * dt / steps, "peak_mem_mb": round(mem, 1),
            "peak_mem_kind": "cuda max_memory_allocated" if device.type == "cuda" else "RSS above start"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few steps (a smoke check, not a measurement)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--models", default="gdgan,acgan,dcgan,pggan,ddpm,gd-ddpm")
    ap.add_argument("--preset", default="paper", help="preset the models are timed with (fast-cpu: the CPU demo sizes)")
    ap.add_argument("--images", type=int, default=512, help="phantom images to train on")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads for both variants (0 = torch's default); on a crowded shared CPU 1 thread "
                         "avoids OpenMP spin-waiting")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    rounds, block, warmup, steps = (2, 5, 2, 5) if args.quick else (6, 10, 3, 20)
    ds = demo_imageset(n=args.images, size=64, seed=0)
    kinds = [k for k in args.models.split(",") if k]
    if "gdgan" in kinds:
        for line in measure_gdgan_stage1(ds, device, rounds, block, warmup):
            print(json.dumps(line), flush=True)
    for kind in kinds:
        stages = (1, 2) if kind == "gdgan" else (None,)
        for stage in stages:
            try:
                print(json.dumps(measure_model(kind, ds, device, steps, warmup, stage, args.preset)), flush=True)
            except Exception as exc:  # a family not built yet must not hide the others' numbers
                print(json.dumps({"bench": "train_throughput", "model": kind, "error": f"{type(exc).__name__}: {exc}"}),
                      flush=True)


if __name__ == "__main__":
    main()

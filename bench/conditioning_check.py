"""Does a model's conditioning work, not only its losses? A short CPU training on the demo phantom, then:

1. sex/view: a small CNN trained on *real* phantom images reads sex and view from generated
   images made with requested labels (the stage-1 images of a two-stage model: GDGAN, gd-ddpm);
   its accuracy against the request should be far above chance (50 %). Its accuracy on held-out
   real images is printed beside it as the ceiling.
2. Cardiomegaly: the same noise and general labels, generated with and without Cardiomegaly
   requested; the measured cardiothoracic ratio (medgan_ui.data.phantom.cardiothoracic_ratio)
   should be larger with it.

The phantom has Cardiomegaly in 3 % of images; for a short run the GAN's training set repeats those
images so that about a quarter of the batches' images carry it (plain oversampling, as in the
reference's `over-chest-xray` variant). Everything else is the product path: engine.train,
sampling.load_run / generate.

    python bench/conditioning_check.py            # prints one JSON line
    python bench/conditioning_check.py --seed 1 --set amp=false     # fp32 instead of bf16 autocast
    python bench/conditioning_check.py --model gd-ddpm --steps 1500 --per-combo 32   # a diffusion family
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medgan_ui.data.imageset import ImageSet  # noqa: E402
from medgan_ui.data.phantom import cardiothoracic_ratio, demo_imageset  # noqa: E402
from medgan_ui.gan import engine  # noqa: E402
from medgan_ui.gan.runs import Run  # noqa: E402
from medgan_ui.gan.config import make_configs  # noqa: E402
from medgan_ui.gan.generate import generate, load_run  # noqa: E402
from medgan_ui.workspace import Workspace  # noqa: E402

COMBOS = [{"sex": s, "view": v} for s in ("F", "M") for v in ("AP", "PA")]


def oversample(ds: ImageSet, finding: str, share: float, seed: int) -> ImageSet:
    """Repeat the images with `finding` until they are about `share` of the set."""
    pos = np.flatnonzero(ds.detailed[:, ds.findings.index(finding)].numpy())
    want = int(share * (len(ds) - len(pos)) / (1 - share))
    extra = np.random.default_rng(seed).choice(pos, size=max(0, want - len(pos)), replace=True)
    out = ds.subset(np.concatenate([np.arange(len(ds)), extra]))
    out.split = None
    return out


def _to_float(images: torch.Tensor) -> torch.Tensor:
    return images.float().div(127.5).sub(1.0).unsqueeze(1)


class Reader(nn.Module):
    """Small CNN reading sex and view (one logit each) from a grayscale image."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
            nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _targets(ds: ImageSet) -> torch.Tensor:
    """[N, 2] floats: sex == M, view == PA (codes index the sorted value lists F<M, AP<PA)."""
    sex = ds.general[:, ds.general_names.index("sex")] == ds.general_code("sex", "M")
    view = ds.general[:, ds.general_names.index("view")] == ds.general_code("view", "PA")
    return torch.stack([sex, view], 1).float()


def train_reader(ds: ImageSet, steps: int, seed: int) -> Reader:
    torch.manual_seed(seed)
    net = Reader()
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    x, y = _to_float(ds.images), _targets(ds)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(ds), (64,), generator=gen)
        loss = F.binary_cross_entropy_with_logits(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@torch.inference_mode()
def read(net: Reader, images: torch.Tensor) -> torch.Tensor:
    return (net(_to_float(images)) > 0).float()


def reader_and_data(size: int, n: int, seed: int, reader_steps: int,
                    log: Callable[[str], None]) -> tuple[Reader, ImageSet, list[float]]:
    """The real phantom set, a reader trained on three quarters of it and its accuracy on the rest."""
    real = demo_imageset(n=n, size=size, seed=seed)
    held = np.arange(len(real)) % 4 == 3  # the reader is scored on images it did not train on
    reader = train_reader(real.subset(np.flatnonzero(~held)), reader_steps, seed)
    real_test = real.subset(np.flatnonzero(held))
    real_acc = (read(reader, real_test.images) == _targets(real_test)).float().mean(0).tolist()
    log(f"reader on held-out real images: sex {real_acc[0]:.2f}, view {real_acc[1]:.2f}")
    return reader, real, real_acc


def measure(run_dir: Path, reader: Reader, real: ImageSet, per_combo: int,
            options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sex/view read from generated (stage-1) images and the cardiothoracic ratio with vs without
    Cardiomegaly, for a trained run; `options` are per-call sampling settings (guidance, strength, steps)."""
    run = load_run(run_dir, device="cpu")
    hits, ctr_with, ctr_without = [], [], []
    for k, combo in enumerate(COMBOS):
        plain = generate(run, per_combo, combo, [], seed=1000 + k, options=options)
        cardio = generate(run, per_combo, combo, ["Cardiomegaly"], seed=1000 + k, options=options)  # same z and labels
        want = torch.tensor([[combo["sex"] == "M", combo["view"] == "PA"]], dtype=torch.float32)
        general_view = plain.stage1 if plain.stage1 is not None else plain.images
        hits.append(read(reader, general_view) == want)
        ctr_without.append(cardiothoracic_ratio(plain.images))
        ctr_with.append(cardiothoracic_ratio(cardio.images))
    gen_acc = torch.cat(hits).float().mean(0).tolist()
    w, wo = np.concatenate(ctr_with), np.concatenate(ctr_without)
    both = ~np.isnan(w) & ~np.isnan(wo)
    card = real.detailed[:, real.findings.index("Cardiomegaly")].bool()
    return {
        "model": run.kind, "run": run.run_id, "steps": run.step, "options": options or {},
        "reader_acc_generated_stage1": {"sex": gen_acc[0], "view": gen_acc[1]},
        "ctr_with_cardiomegaly": float(np.nanmean(w)), "ctr_without": float(np.nanmean(wo)),
        "ctr_paired_larger_fraction": float((w[both] > wo[both]).mean()) if both.any() else float("nan"),
        "ctr_nan_fraction": float(1 - both.mean()),
        "ctr_real": {"Cardiomegaly": float(np.nanmean(cardiothoracic_ratio(real.images[card]))),
                     "without": float(np.nanmean(cardiothoracic_ratio(real.images[~card])))},
    }


def failed_criteria(r: dict[str, Any]) -> list[str]:
    """The pass criteria of the check (issue 13 / the GDGAN test), as the names of those not met."""
    gen = r["reader_acc_generated_stage1"]
    checks = {
        "the reader itself works (>= 0.9 on real images)": min(r["reader_acc_real"].values()) >= 0.9,
        "requested sex recognised >= 0.8": gen["sex"] >= 0.8,
        "requested view recognised >= 0.8": gen["view"] >= 0.8,
        "generated chests measurable (< 20 % not)": r["ctr_nan_fraction"] < 0.2,
        "heart ratio larger with Cardiomegaly (> +0.01)": r["ctr_with_cardiomegaly"] > r["ctr_without"] + 0.01,
        "same-noise pairs larger with Cardiomegaly (> 55 %)": r["ctr_paired_larger_fraction"] > 0.55,
    }
    return [name for name, ok in checks.items() if not ok]


def run_check(size: int = 32, n: int = 2000, steps: int = 2400, seed: int = 0, preset: str = "fast-cpu",
              per_combo: int = 64, reader_steps: int = 300, log: Callable[[str], None] = lambda s: None,
              model: str = "gdgan", workspace: str | None = None, minutes: float | None = None,
              **overrides: Any) -> dict[str, Any]:
    """`workspace`: keep the run there (sample grid, Browse) instead of a temporary folder; `minutes`:
    stop training after that long (a time-boxed check; the result records the steps reached)."""
    t0 = time.perf_counter()
    reader, real, real_acc = reader_and_data(size, n, seed, reader_steps, log)
    gan_data = oversample(real, "Cardiomegaly", 0.25, seed)
    settings = {"image_size": size, "steps": steps, "seed": seed, "device": "cpu", "log_every": 50,
                "sample_every": steps, "checkpoint_every": steps, **overrides}
    tc, mc = make_configs(model, preset, **settings)
    deadline = time.perf_counter() + 60 * minutes if minutes else None
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace(Path(workspace) if workspace else Path(tmp) / "ws")
        run_id = Run.create(ws, gan_data, tc, mc).id
        stop = (lambda: time.perf_counter() > deadline) if deadline else None
        summary = engine.train(gan_data, tc, mc, ws.run_dir(run_id), should_stop=stop)
        if summary["status"] not in ("finished", "stopped"):
            raise RuntimeError(f"training did not finish: {summary}")
        t_train = time.perf_counter() - t0
        measured = measure(ws.run_dir(run_id), reader, real, per_combo)
    return {"bench": "conditioning_check", **measured, "image_size": size, "preset": preset, "seed": seed,
            "reader_acc_real": {"sex": real_acc[0], "view": real_acc[1]},
            "train_s": round(t_train, 1), "total_s": round(time.perf_counter() - t0, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=2400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--preset", default="fast-cpu")
    ap.add_argument("--model", default="gdgan")
    ap.add_argument("--per-combo", type=int, default=64, help="generated images per sex/view combination")
    ap.add_argument("--workspace", default=None, help="keep the run in this workspace (default: a temporary one)")
    ap.add_argument("--minutes", type=float, default=None, help="stop training after this many minutes")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--run", default=None, metavar="RUN_DIR", help="measure this trained run instead of training one")
    ap.add_argument("--sample", action="append", default=[], metavar="KEY=VALUE",
                    help="with --run: per-call sampling settings, e.g. --sample guidance=3 --sample strength=0.8")
    args = ap.parse_args()
    torch.set_num_threads(1)  # a small net on a shared 2-core box: one thread avoids OpenMP spin contention
    if args.run:
        reader, real, real_acc = reader_and_data(args.size, 2000, args.seed, 300, lambda s: print(s, file=sys.stderr))
        opts = {k: float(v) for k, v in (s.split("=", 1) for s in args.sample)}
        print(json.dumps({"bench": "conditioning_check", **measure(Path(args.run), reader, real, args.per_combo, opts),
                          "reader_acc_real": {"sex": real_acc[0], "view": real_acc[1]}}), flush=True)
        return
    over = dict(s.split("=", 1) for s in (["stage1_fraction=0.6"] if args.model == "gdgan" else []) + args.set)
    print(json.dumps(run_check(args.size, steps=args.steps, seed=args.seed, preset=args.preset,
                               per_combo=args.per_combo, log=lambda s: print(s, file=sys.stderr), model=args.model,
                               workspace=args.workspace, minutes=args.minutes, **over)), flush=True)


if __name__ == "__main__":
    main()

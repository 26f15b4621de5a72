"""The full augmentation comparison on the shared NIH subset: none / oversample / GDGAN, K folds, 64x64.

    python bench/augmentation_comparison.py                       # trains one quick GDGAN per fold first
    python bench/augmentation_comparison.py --run RUN_ID          # use a trained run for every fold
    python bench/augmentation_comparison.py --run ID0+ID1+ID2     # one run per fold (no test leakage)
    python bench/augmentation_comparison.py --gan-steps 40 --epochs 2 --folds 2   # reduced smoke run

Target (issue 6): the comparison finishes within 30 minutes on this CPU. GAN training time is reported
separately (`gan_seconds`) from the comparison itself (`experiment_seconds`). Targets Effusion and
Cardiomegaly are classified by one multi-label classifier (GDGAN's classifier is multi-label), or one
binary experiment per target with --binary. Each GDGAN trained here sees only its fold's train part.
The default classifier is Frid-Adar's 64x64 CNN (about 30M multiply-adds per image, so 3 folds x 3
strategies x 20 epochs fit a 2-core CPU); --classifier resnet18 --width 1 is the heavier option.
One JSON line per GAN, per (target, strategy) and a final line.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from medgan_ui.data.load import load_dataset
from medgan_ui.data.readers.base import ReadOptions
from medgan_ui.data.split import cv_folds
from medgan_ui.evaluate.experiment import ExperimentConfig, run_experiment
from medgan_ui.workspace import Workspace

NIH = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih-cxr14-1000"


def train_gans(ws: Workspace, ds, cfg: ExperimentConfig, preset: str, steps: int) -> list[str]:
    """One GDGAN per cross-validation fold, each on that fold's train part only."""
    from medgan_ui.gan.config import make_configs
    from medgan_ui.gan.runs import Run

    ids = []
    folds, _ = cv_folds(ds, cfg.targets, cfg.folds, cfg.repeats, cfg.seed, cfg.val_fraction)
    for k, fold in enumerate(folds):
        part = ds.subset(range(len(ds)))
        part.split = fold.split
        tc, mc = make_configs("gdgan", preset, steps=steps, checkpoint_every=steps, sample_every=max(steps // 4, 1),
                              seed=cfg.seed + k)
        run = Run.create(ws, part, tc, mc)
        rid = run.id
        t0 = time.perf_counter()
        out = run.train(part)
        print(json.dumps({"bench": "augmentation_comparison", "gan": rid, "fold": k, "preset": preset, "steps": steps,
                          "status": out["status"], "seconds": round(time.perf_counter() - t0, 1)}), flush=True)
        ids.append(rid)
    return ids


def _progress(e: dict) -> None:
    """Epoch-level progress on stderr, so stdout stays JSON lines."""
    if e.get("stage") in ("train", "done"):
        print(f"[{100 * e.get('progress', 0):5.1f}%] {e.get('message', '')}", file=sys.stderr, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(NIH))
    ap.add_argument("--workspace", default=None, help="default: a temporary folder")
    ap.add_argument("--targets", default="Effusion,Cardiomegaly")
    ap.add_argument("--binary", action="store_true", help="one binary experiment per target")
    ap.add_argument("--run", default=None, help="GDGAN run id (or ID0+ID1+ID2); default: train them here")
    ap.add_argument("--gan-preset", default="fast-cpu")
    ap.add_argument("--gan-steps", type=int, default=2000)
    ap.add_argument("--classifier", default="fridadar", help="fridadar (cheap at 64 px), resnet18 or vgg19")
    ap.add_argument("--width", type=float, default=1.0, help="classifier width multiplier (1 = published net)")
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    tmp = tempfile.TemporaryDirectory() if args.workspace is None else None
    ws = Workspace(args.workspace or tmp.name)  # type: ignore[union-attr]
    ds = load_dataset(args.data, options=ReadOptions(size=64), workspace=ws)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    base = ExperimentConfig(targets=targets, strategies=["none", "oversample"], classifier=args.classifier,
                            width=args.width, folds=args.folds, epochs=args.epochs, patience=args.patience,
                            seed=args.seed)
    t_gan = time.perf_counter()
    runs = args.run.split("+") if args.run else train_gans(ws, ds, base, args.gan_preset, args.gan_steps)
    gan_s = time.perf_counter() - t_gan if not args.run else 0.0
    strategies = ["none", "oversample", "synthetic:" + "+".join(runs)]
    t_exp = time.perf_counter()
    groups = [[t] for t in targets] if args.binary else [targets]
    summary = {}
    for group in groups:
        cfg = ExperimentConfig(**{**dataclasses.asdict(base), "targets": group, "strategies": strategies})
        out = run_experiment(cfg, ws, dataset=ds, on_progress=_progress)
        for target, per in out["results"]["targets"].items():
            for s in strategies:
                e = per[s]
                d = e.get("vs_none")
                line = {"bench": "augmentation_comparison", "target": target, "strategy": s.split(":")[0],
                        "auc_pooled": round(e["auc_pooled"], 4), "ci95": [round(v, 4) for v in e["auc_pooled_ci95"]],
                        "auc_fold_mean": round(e["auc_fold_mean"], 4), "auc_fold_sd": round(e["auc_fold_sd"], 4),
                        "p_vs_none": None if d is None else d["p_bootstrap_holm"],
                        "sensitivity": round(e["sensitivity_mean"], 3), "specificity": round(e["specificity_mean"], 3)}
                summary[f"{target}/{line['strategy']}"] = line["auc_pooled"]
                print(json.dumps(line), flush=True)
        print(json.dumps({"bench": "augmentation_comparison", "experiment": out["id"], "dir": out["dir"]}), flush=True)
    exp_s = time.perf_counter() - t_exp
    total = time.perf_counter() - t_all
    print(json.dumps({"bench": "augmentation_comparison", "final": True, "targets": targets, "folds": args.folds,
                      "classifier": f"{args.classifier} w{args.width:g}", "epochs": args.epochs, "runs": runs,
                      "gan_seconds": round(gan_s, 1), "experiment_seconds": round(exp_s, 1),
                      "total_seconds": round(total, 1), "target_seconds": 1800,
                      "experiment_within_target": exp_s <= 1800, "auc": summary}), flush=True)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

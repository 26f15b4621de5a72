"""Does synthetic augmentation help? The headline comparison, as README's table reports it.

    python bench/augmentation_comparison.py --data demo:hard --targets Cardiomegaly        # phantom, known truth
    python bench/augmentation_comparison.py --targets Effusion --binary                    # shared NIH subset
    python bench/augmentation_comparison.py --data demo:hard --targets Cardiomegaly --folds 2 --epochs 2 \
        --gan-steps 40 --gan-preset tiny --strategies none,oversample,gan:dcgan     # smoke run, minutes

Strategies default to none / oversample / classic / gan:gdgan / gan:acgan / gan:dcgan. Every gan:
strategy trains one generator per cross-validation fold on that fold's training patients only
(evaluate/gan_folds.py); the experiment refuses any synthetic source that saw a fold's held-out
patients, and records the overlap (0). One JSON line per (target, strategy): pooled AUC with its
patient-cluster bootstrap CI, fold mean +- SD, difference vs none with its paired bootstrap CI and
Holm-adjusted p, label fidelity of the generated images, and wall time split into GAN training and
classifier training; then one final line. Runs on whatever device torch picks (--device to choose).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from medgan_ui.data.load import load_dataset
from medgan_ui.data.readers.base import ReadOptions
from medgan_ui.evaluate.experiment import ExperimentConfig, run_experiment
from medgan_ui.evaluate.results import table_rows
from medgan_ui.workspace import Workspace

NIH = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih-cxr14-1000"
DEFAULT = "none,oversample,classic,gan:gdgan,gan:acgan,gan:dcgan"


def _progress(e: dict) -> None:
    """Progress on stderr, so stdout stays JSON lines."""
    if e.get("stage") in ("gan", "train", "done"):
        print(f"[{100 * e.get('progress', 0):5.1f}%] {e.get('message', '')}", file=sys.stderr, flush=True)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def with_gan_settings(strategies: list[str], preset: str, steps: int | None) -> list[str]:
    """gan:MODEL -> gan:MODEL@PRESET[:STEPS] where the strategy names neither."""
    out = []
    for s in strategies:
        if s.startswith("gan:") and "@" not in s and ":" not in s[4:]:
            s = f"{s}@{preset}" + (f":{steps}" if steps else "")
        out.append(s)
    return out


def seconds_per_strategy(results: dict) -> tuple[dict[str, float], dict[str, float]]:
    """(classifier seconds, generator seconds) per strategy, summed over folds."""
    clf: dict[str, float] = defaultdict(float)
    for t in results.get("training", []):
        clf[t["strategy"]] += float(t.get("seconds") or 0.0)
    gan = {s: sum(float(g.get("seconds") or 0.0) for g in gens) for s, gens in (results.get("generators") or {}).items()}
    return dict(clf), gan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(NIH), help="a dataset path, demo or demo:hard")
    ap.add_argument("--workspace", default=None, help="default: a temporary folder (a kept one reuses GAN runs)")
    ap.add_argument("--targets", default="Effusion,Cardiomegaly")
    ap.add_argument("--binary", action="store_true", help="one binary experiment per target")
    ap.add_argument("--strategies", default=DEFAULT)
    ap.add_argument("--gan-preset", default="fast-cpu")
    ap.add_argument("--gan-steps", type=int, default=None, help="default: the preset's steps")
    ap.add_argument("--classifier", default="fridadar", help="fridadar (cheap at 64 px), resnet18 or vgg19")
    ap.add_argument("--width", type=float, default=1.0, help="classifier width multiplier (1 = published net)")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--equal-steps", action="store_true", help="every arm gets none's optimiser-step budget")
    ap.add_argument("--synthetic-negatives", action="store_true", help="generators also add negatives")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    tmp = tempfile.TemporaryDirectory() if args.workspace is None else None
    ws = Workspace(args.workspace or tmp.name)  # type: ignore[union-attr]
    ds = load_dataset(args.data, options=ReadOptions(size=args.size), workspace=ws)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    strategies = with_gan_settings([s.strip() for s in args.strategies.split(",") if s.strip()],
                                   args.gan_preset, args.gan_steps)
    groups = [[t] for t in targets] if args.binary else [targets]
    summary = {}
    for group in groups:
        cfg = ExperimentConfig(targets=group, strategies=strategies, classifier=args.classifier, width=args.width,
                               folds=args.folds, epochs=args.epochs, patience=args.patience, seed=args.seed,
                               equal_steps=args.equal_steps, synthetic_negatives=args.synthetic_negatives,
                               device=args.device, image_size=args.size)
        out = run_experiment(cfg, ws, dataset=ds, on_progress=_progress)
        res = out["results"]
        clf_s, gan_s = seconds_per_strategy(res)
        for row in table_rows(res):
            s = row["strategy"]
            line = {"bench": "augmentation_comparison", "data": args.data, "target": row["target"], "strategy": s,
                    "auc_pooled": row["auc_pooled"], "ci95": [row["ci95_lo"], row["ci95_hi"]],
                    "auc_fold_mean": row["auc_fold_mean"], "auc_fold_sd": row["auc_fold_sd"],
                    "diff_vs_none": row["diff_vs_none"], "diff_ci95": [row["diff_ci95_lo"], row["diff_ci95_hi"]],
                    "p_vs_none": row["p_bootstrap"], "p_vs_none_holm": row["p_bootstrap_holm"],
                    "p_corrected_t_holm": row["p_corrected_t_holm"],  # Nadeau-Bengio over fold AUCs "label_fidelity_auc": row.get("label_fidelity_auc"),
                    "leaked_patients": row.get("leakage_overlap"),
                    "classifier_seconds": round(clf_s.get(s, 0.0), 1), "gan_seconds": round(gan_s.get(s, 0.0), 1)}
            summary[f"{row['target']}/{s}"] = row["auc_pooled"]
            print(json.dumps(line), flush=True)
        print(json.dumps({"bench": "augmentation_comparison", "experiment": out["id"], "status": out["status"],
                          "notes": res.get("notes", [])}), flush=True)
    print(json.dumps({"bench": "augmentation_comparison", "final": True, "data": args.data, "targets": targets,
                      "folds": args.folds, "classifier": f"{args.classifier} w{args.width:g}", "epochs": args.epochs,
                      "gan": f"{args.gan_preset}:{args.gan_steps or 'preset'}", "cpu": cpu_model(),
                      "threads": args.threads, "equal_steps": args.equal_steps,
                      "synthetic_negatives": args.synthetic_negatives, "total_seconds": round(time.perf_counter() - t_all, 1),
                      "target_seconds": 5400, "auc": summary}), flush=True)
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()

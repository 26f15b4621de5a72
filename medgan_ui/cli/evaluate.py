"""`medgan evaluate ...` (augmentation-comparison experiment) and `medgan metrics ...` (GAN quality)."""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from medgan_ui.cli import add_workspace_arg


def _columns(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="dataset folder or file, 'demo', or 'demo:hard' (harder phantom)")
    p.add_argument("--format", default=None, help="nih, csv, dicom, folders or medmnist (default: detect)")
    p.add_argument("--image-size", type=int, default=64, help="square image size (default 64)")
    g = p.add_argument_group("generic CSV + folder (as `medgan data inspect`)")
    g.add_argument("--csv", default=None)
    g.add_argument("--image-column", default=None)
    g.add_argument("--general-columns", type=_columns, default=[])
    g.add_argument("--finding-column", default=None)
    g.add_argument("--finding-columns", type=_columns, default=[])
    g.add_argument("--patient-column", default=None)
    g.add_argument("--fit", choices=("crop", "pad"), default="crop")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("csv", "image_column", "general_columns", "finding_column", "finding_columns", "patient_column", "fit")
    return {k: getattr(args, k) for k in keys if getattr(args, k) not in (None, [], "crop")}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="does augmentation help? classifier ROC comparison over patient-level K-fold cross-validation")
    _data_args(p)
    p.add_argument("--target", action="append", required=True, help="target finding; repeat for multi-label")
    p.add_argument("--strategies", type=_columns, default=["none", "oversample"],
                   help="comma list of none, classic, undersample, oversample, synthetic:RUN_OR_SET_ID "
                        "(synthetic:ID0+ID1+... = one run per fold, folds x repeats of them, each trained on its "
                        "fold's training patients: `medgan train --fold K --folds N --target T`), "
                        "gan:MODEL[@PRESET][:STEPS] (one generator trained per fold; default preset fast-cpu; "
                        "finished ones are reused when the experiment is run again)")
    p.add_argument("--classifier", default="resnet18", help="resnet18 | vgg19 | fridadar")
    p.add_argument("--width", type=float, default=1.0, help="channel multiplier (<1 for CPU; 1 = published net)")
    p.add_argument("--init", default="scratch", help="scratch | imagenet:PATH (local torchvision file) | segmentation")
    p.add_argument("--masks", default=None, help="mask folder for --init segmentation (PNG per image stem)")
    p.add_argument("--freeze-encoder", action="store_true", help="segmentation init: train only the head")
    p.add_argument("--folds", type=int, default=None,
                   help="K of the patient-level K-fold cross-validation (default 5; an official split is kept)")
    p.add_argument("--repeats", type=int, default=1, help="repeat the K folds R times with other seeds (default 1)")
    p.add_argument("--splits", type=int, default=None, help="deprecated: read as --folds")
    p.add_argument("--specificity", type=float, default=0.9, help="also report sensitivity at this specificity")
    p.add_argument("--n-boot", type=int, default=1000, help="patient-cluster bootstrap replicates (default 1000)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--patience", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--synthetic-ratio", type=float, default=None, help="positives reach RATIO x negatives (default 1)")
    p.add_argument("--synthetic-count", type=int, default=None, help="or: positives reach COUNT images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--json", action="store_true", help="print results.json instead of the table")
    add_workspace_arg(p)
    p.set_defaults(func=_evaluate)

    q = sub.add_parser("metrics", help="generator quality (GAN or diffusion runs): IS (+ Welch t-test), FID/KID with floor, MS-SSIM, memorisation")
    _data_args(q)
    q.add_argument("--run", action="append", required=True, help="run (or synthetic set) id; repeat to compare two")
    q.add_argument("--extractor", default="domain", help="domain | domain:PATH | inception:PATH (local weights)")
    q.add_argument("--n", type=int, default=1000, help="synthetic images per run (default 1000)")
    q.add_argument("--extractor-epochs", type=int, default=8, help="training epochs of the domain extractor")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--device", default=None)
    q.add_argument("--json", action="store_true")
    add_workspace_arg(q)
    q.set_defaults(func=_metrics)


def _bar() -> tuple[Callable[[dict], None], Callable[[], None]]:
    from tqdm import tqdm

    bar = tqdm(total=1000, unit="‰", bar_format="{l_bar}{bar}| {elapsed}<{remaining} {desc}")

    def update(e: dict) -> None:
        bar.n = int(1000 * float(e.get("progress", bar.n / 1000)))
        if e.get("message"):
            bar.set_description_str(str(e["message"])[:70], refresh=False)
        bar.refresh()

    return update, bar.close


def _load(args: argparse.Namespace, ws: Any) -> Any:
    from medgan_ui.data.load import load_dataset
    from medgan_ui.data.readers.base import ReadOptions

    return load_dataset(args.data, args.format, ReadOptions(size=args.image_size, **_options(args)), ws)


def _print_table(rows: list[dict[str, Any]]) -> None:
    if not rows:
        print("(no rows)")
        return
    cols = list(rows[0])
    width = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    print("  ".join(c.ljust(width[c]) for c in cols))
    for r in rows:
        print("  ".join(str(r[c]).ljust(width[c]) for c in cols))


def _evaluate(args: argparse.Namespace) -> int:
    from medgan_ui.evaluate.experiment import ExperimentConfig, run_experiment
    from medgan_ui.evaluate.results import subgroup_rows, table_rows
    from medgan_ui.workspace import Workspace

    mode, value = ("count", float(args.synthetic_count)) if args.synthetic_count else ("ratio", args.synthetic_ratio or 1.0)
    cfg = ExperimentConfig(
        targets=args.target, strategies=args.strategies, data=args.data, data_format=args.format,
        data_options=_options(args), image_size=args.image_size, classifier=args.classifier, width=args.width,
        init=args.init, masks_dir=args.masks, freeze_encoder=args.freeze_encoder,
        folds=args.folds if args.folds is not None else 5, repeats=args.repeats, specificity=args.specificity,
        n_boot=args.n_boot, splits=args.splits if args.folds is None else None, epochs=args.epochs,
        patience=args.patience, batch_size=args.batch_size, lr=args.lr,
        synthetic_mode=mode, synthetic_value=value, seed=args.seed, device=args.device)
    update, close = _bar()
    try:
        out = run_experiment(cfg, Workspace(args.workspace), on_progress=update)  # loads cfg.data itself
    finally:
        close()
    if args.json:
        print(json.dumps(out["results"], indent=2, default=str))
    else:
        res = out["results"]
        print(f"split: {res['split_kind']}; {len(res['complete_folds'])} fold(s) finished by every strategy")
        _print_table(table_rows(res))
        sub = subgroup_rows(res)
        if sub:
            print("\nper general label value:")
            _print_table(sub)
        print(f"\nmethod: {res['method']}")
        for note in res["notes"]:
            print(f"note: {note}")
        print(f"experiment {out['id']} ({out['status']}): {out['dir']}")
    return 0 if out["status"] == "done" else 1


def _metrics(args: argparse.Namespace) -> int:
    from medgan_ui.evaluate.gan_metrics import evaluate_gan, metric_rows
    from medgan_ui.workspace import Workspace

    ws = Workspace(args.workspace)
    ds = _load(args, ws)
    update, close = _bar()
    try:
        out = evaluate_gan(ws, ds, args.run, extractor=args.extractor, n=args.n, seed=args.seed,
                           device=args.device, on_progress=update, extractor_epochs=args.extractor_epochs)
    finally:
        close()
    if args.json:
        print(json.dumps(out["results"], indent=2, default=str))
    else:
        _print_table(metric_rows(out["results"]))
        print(f"extractor: {out['results']['extractor']}; written to {out['dir']}")
    return 0

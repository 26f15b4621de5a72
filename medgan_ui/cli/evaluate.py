"""`medgan evaluate ...` (augmentation-comparison experiment) and `medgan metrics ...` (GAN quality)."""
from __future__ import annotations

import argparse
import json
from typing import Any, Callable

from medgan_ui.cli import add_workspace_arg


def _columns(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def _doses(text: str) -> list[float]:
    from medgan_ui.errors import UserError
    from medgan_ui.evaluate.arms import parse_doses

    try:
        return parse_doses(text)
    except UserError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _data_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    p.add_argument("--data", required=required, help="dataset folder or file, 'demo', or 'demo:hard' (harder phantom)")
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
    _data_args(p, required=False)  # not with --merge: the experiment's config.json names its data
    p.add_argument("--target", action="append", help="target finding; repeat for multi-label (required)")
    p.add_argument("--strategies", type=_columns, default=["none", "oversample"],
                   help="comma list of none, classic, undersample, oversample, synthetic:RUN_OR_SET_ID "
                        "(synthetic:ID0+ID1+... = one run per fold, folds x repeats of them, each trained on its "
                        "fold's training patients: `medgan train --fold K --folds N --target T`), "
                        "gan:MODEL[@PRESET][:STEPS] (one generator trained per fold; default preset fast-cpu; "
                        "finished ones are reused when the experiment is run again), "
                        "classic+synthetic:ID or classic+gan:MODEL (classic augmentation on real + synthetic), "
                        "tstr:synthetic:ID or tstr:gan:MODEL (train on synthetic only, test on real); a suffix @xD sets a dose")
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
    p.add_argument("--synthetic-negatives", action="store_true",
                   help="synthetic sources also add as many negatives (same general-label cells, without the "
                        "finding), so 'generated' is not a label")
    p.add_argument("--doses", type=_doses, default=[],
                   help="dose sweep: each synthetic-like strategy at each multiple of its synthetic amount, "
                        "e.g. 0.25,0.5,1,2 (arms labelled SPEC@xD)")
    p.add_argument("--equal-steps", action="store_true",
                   help="every strategy gets none's optimiser-step budget (epochs x steps over the real training "
                        "images) instead of the same epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    g = p.add_argument_group("resume and scale-out (cells = fold x strategy, written to experiments/ID/cells/)")
    g.add_argument("--id", default=None, help="experiment id; re-run with the same id and settings to resume")
    g.add_argument("--cells", default=None,
                   help="run share i/N of the cells (0-based i: Slurm --cells $SLURM_ARRAY_TASK_ID/N); needs --id; "
                        "under torchrun RANK/WORLD_SIZE are used. The process that finds all cells done merges")
    g.add_argument("--merge", default=None, metavar="ID",
                   help="merge the finished cells of experiment ID into its results (no training)")
    p.add_argument("--json", action="store_true", help="print results.json instead of the table")
    add_workspace_arg(p)
    p.set_defaults(func=_evaluate)

    q = sub.add_parser("metrics", help="generator quality (GAN or diffusion runs) against held-out real images: FID/KID with a "
                       "real-vs-real floor at the same n, IS (domain IS unless Inception), MS-SSIM, memorisation "
                       "with a held-out baseline; Welch t-test between models over training seeds")
    _data_args(q)
    q.add_argument("--run", action="append", required=True, help="run (or synthetic set) id; repeat: runs differing only by seed form one model, "
                        "and models with 2+ seeds each are compared by Welch's t-test")
    q.add_argument("--extractor", default="domain", help="domain | domain:PATH | inception:PATH (local weights)")
    q.add_argument("--n", type=int, default=1000, help="images per set: each model, the held-out reference and the floor sample (default 1000; "
                        "capped by the held-out images, rounded down to a multiple of 10)")
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
    from medgan_ui.errors import UserError
    from medgan_ui.evaluate.cells import share_from_env
    from medgan_ui.evaluate.experiment import ExperimentConfig, run_experiment
    from medgan_ui.evaluate.merge import merge_experiment
    from medgan_ui.workspace import Workspace

    if args.merge:
        out = merge_experiment(Workspace(args.workspace), args.merge)
        return _report(args, out)
    if not args.data or not args.target:
        raise UserError("medgan evaluate needs --data and --target (or --merge ID)")
    mode, value = ("count", float(args.synthetic_count)) if args.synthetic_count else ("ratio", args.synthetic_ratio or 1.0)
    cfg = ExperimentConfig(
        targets=args.target, strategies=args.strategies, data=args.data, data_format=args.format,
        data_options=_options(args), image_size=args.image_size, classifier=args.classifier, width=args.width,
        init=args.init, masks_dir=args.masks, freeze_encoder=args.freeze_encoder,
        folds=args.folds if args.folds is not None else 5, repeats=args.repeats, specificity=args.specificity,
        n_boot=args.n_boot, splits=args.splits if args.folds is None else None, epochs=args.epochs,
        patience=args.patience, batch_size=args.batch_size, lr=args.lr,
        synthetic_mode=mode, synthetic_value=value, synthetic_negatives=args.synthetic_negatives,
        doses=args.doses, equal_steps=args.equal_steps, seed=args.seed, device=args.device)
    update, close = _bar()
    try:  # loads cfg.data itself
        out = run_experiment(cfg, Workspace(args.workspace), on_progress=update, exp_id=args.id,
                             cells=args.cells or share_from_env())
    finally:
        close()
    return _report(args, out)


def _report(args: argparse.Namespace, out: dict[str, Any]) -> int:
    from medgan_ui.evaluate.results import subgroup_rows, table_rows

    if out["results"] is None:
        if out["status"] != "partial":
            print(f"experiment {out['id']} {out['status']}: re-run with --id {out['id']} to resume: {out['dir']}")
            return 1
        print(f"experiment {out['id']}: this share of the cells is done; others are still missing. The last "
              f"process merges, or run `medgan evaluate --merge {out['id']}`: {out['dir']}")
        return 0
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
    from medgan_ui.evaluate.gan_metric_table import metric_rows, summary_lines, welch_rows
    from medgan_ui.evaluate.gan_metrics import evaluate_gan
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
        res = out["results"]
        _print_table(metric_rows(res))
        print("\nmodels over training seeds (Welch t-test on per-run values):")
        _print_table(welch_rows(res))
        print()
        for line in summary_lines(res):
            print(line)
        print(f"written to {out['dir']}")
    return 0

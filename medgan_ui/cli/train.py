"""`medgan train`, `medgan sample`, `medgan runs`: GAN training, sampling and run listing.

The same `medgan train ...` line runs unchanged under `torchrun --nproc_per_node N`: rank 0 creates
the run folder and broadcasts its id, every rank trains (gradients averaged), only rank 0 writes.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from medgan_ui.cli import add_workspace_arg
from medgan_ui.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    from medgan_ui.gan.config import PRESETS
    from medgan_ui.gan.registry import kinds

    p = sub.add_parser("train", help="train a GAN (or resume a run)",
                       description="Train gdgan/acgan/dcgan/pggan on a dataset, or continue a run with --resume.")
    p.add_argument("--model", choices=kinds(), help="model family (required unless --resume)")
    p.add_argument("--data", help="dataset folder/file, or 'demo' for the built-in phantom")
    p.add_argument("--format", default=None, help="reader name (default: detected from the files)")
    p.add_argument("--preset", default="paper", choices=list(PRESETS), help="settings preset (default: paper)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimisation steps (with --resume: the new total)")
    length.add_argument("--epochs", type=float, help="passes over the training split: epochs x ceil(train/batch) steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--image-size", type=int, help="image size the data is loaded at and the nets are built for")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", default=None, help="auto (CUDA, then MPS, then CPU), cpu, cuda, mps")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any training or model setting, e.g. --set lr_g=1e-4 --set augment=diffaug")
    p.add_argument("--resume", metavar="RUN_ID", help="continue this run from its latest checkpoint")
    p.add_argument("--checkpoint", help="with --resume: start from this checkpoint (e.g. step_001000)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    f = p.add_argument_group("one cross-validation fold", "train on the training patients of one fold of the "
                             "augmentation experiment's patient-level K-fold split (the same split code), so the run "
                             "can top up that fold as synthetic:ID0+ID1+... without leaking its test patients")
    f.add_argument("--fold", type=int, metavar="K", help="the fold, counted from 0 (as in the experiment's "
                   "predictions/repeat0-fold<K>-*.csv)")
    f.add_argument("--folds", type=int, metavar="N", help="number of folds (the experiment's --folds)")
    f.add_argument("--repeats", type=int, default=1, metavar="R", help="the experiment's --repeats (default 1)")
    f.add_argument("--repeat", type=int, default=0, help="which repeat the fold belongs to, from 0 (default 0)")
    f.add_argument("--fold-seed", type=int, default=0, metavar="S", help="the experiment's seed (default 0)")
    f.add_argument("--val-fraction", type=float, default=0.125, metavar="F",
                   help="the experiment's validation fraction (default 0.125)")
    f.add_argument("--target", action="append", default=[], metavar="T",
                   help="the experiment's target finding (repeat for several); the folds are stratified on them")
    add_workspace_arg(p)
    p.set_defaults(func=cmd_train)

    s = sub.add_parser("sample", help="generate images from a trained run",
                       description="Write a synthetic set (PNG or DICOM + labels.csv + manifest.json).")
    s.add_argument("run_id")
    s.add_argument("--n", type=int, default=None, help="number of images (default 16)")
    s.add_argument("--general", default="", help="general labels, e.g. sex=F,view=AP (unnamed ones are drawn at random)")
    s.add_argument("--findings", default="", help="findings, comma separated, e.g. Cardiomegaly (default: none)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", default=None, help="parent folder of the new set (default: <workspace>/synthetic)")
    s.add_argument("--dicom", action="store_true", help="DICOM Secondary Capture instead of PNG")
    s.add_argument("--top-up", type=int, default=None, metavar="N",
                   help="fill every general-label x finding cell of the run's training data up to N images "
                        "(prints the plan; not with --general/--findings/--n)")
    s.add_argument("--checkpoint", default=None, help="checkpoint name, e.g. step_001000 (default: latest)")
    s.add_argument("--sampling", default="", metavar="KEY=VALUE,...",
                   help="a diffusion run's per-call sampling settings, e.g. steps=50,guidance=3,strength=0.6 "
                        "(default: the run's own)")
    s.add_argument("--device", default="auto")
    add_workspace_arg(s)
    s.set_defaults(func=cmd_sample)

    r = sub.add_parser("runs", help="list training runs")
    r.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    add_workspace_arg(r)
    r.set_defaults(func=cmd_runs)


def parse_pairs(text: str, what: str) -> dict[str, str]:
    """'sex=F,view=AP' -> {'sex': 'F', 'view': 'AP'}."""
    out: dict[str, str] = {}
    for part in filter(None, (t.strip() for t in text.split(","))):
        key, eq, value = part.partition("=")
        if not eq or not key.strip() or not value.strip():
            raise UserError(f"{what}: {part!r} is not KEY=VALUE (example: sex=F,view=AP)")
        out[key.strip()] = value.strip()
    return out


def _number(key: str, value: str) -> float | int:
    try:
        return int(value) if key == "steps" else float(value)
    except ValueError:
        raise UserError(f"--sampling {key}={value!r}: expected a number") from None


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    over: dict[str, Any] = {}
    for item in args.set:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set lr_g=1e-4")
        over[key.strip().replace("-", "_")] = value.strip()
    for name in ("steps", "batch_size", "image_size", "seed", "device"):
        if getattr(args, name, None) is not None:
            over[name] = getattr(args, name)
    return over


def cmd_train(args: argparse.Namespace) -> int:
    from medgan_ui.gan import engine
    from medgan_ui.gan.runs import Run
    from medgan_ui.gan.device import init_distributed, shutdown_distributed
    from medgan_ui.workspace import Workspace

    from medgan_ui.data.provenance import fold_dataset

    ws = Workspace(args.workspace)
    fold = fold_spec(args)
    if args.resume:
        if args.model or args.data or args.epochs:
            raise UserError("--resume continues a run with its own model and data; drop --model/--data/--epochs")
        try:
            summary = Run.open(ws, args.resume).resume(steps=args.steps, checkpoint=args.checkpoint,
                                                       device=args.device, progress_bar=not args.no_progress)
        finally:
            shutdown_distributed()
        return _report(summary)
    if not args.model or not args.data:
        raise UserError("medgan train needs --model and --data (or --resume RUN_ID)")
    if args.checkpoint:
        raise UserError("--checkpoint only applies with --resume")
    train_cfg, model_cfg, dataset = prepare(args, ws, fold)
    dctx, _ = init_distributed(train_cfg.device)
    try:
        run_id = Run.create(ws, dataset, train_cfg, model_cfg, fold=fold).id if dctx.is_main else None
        if dctx.enabled:
            import torch.distributed as dist

            box = [run_id]
            dist.broadcast_object_list(box, src=0)
            run_id = box[0]
        if dctx.is_main:
            print(f"run {run_id}: {train_cfg.model} ({train_cfg.preset}) on {dataset.name}"
                  + (f", {fold.describe()} training patients" if fold else "") + f", {train_cfg.steps} steps, "
                  f"batch {train_cfg.batch_size}" + (f" x {dctx.world} processes" if dctx.enabled else ""),
                  file=sys.stderr)
        data = fold_dataset(dataset, fold) if fold else dataset
        summary = engine.train(data, train_cfg, model_cfg, ws.run_dir(run_id), progress_bar=not args.no_progress)
    finally:
        shutdown_distributed()
    return _report(summary)


def fold_spec(args: argparse.Namespace):
    """--fold/--folds/... -> FoldSpec (None without --fold); bad combinations -> UserError."""
    from medgan_ui.data.provenance import FoldSpec

    extra = [n for n, v in (("--folds", args.folds), ("--target", args.target)) if v]
    if args.fold is None:
        if extra:
            raise UserError(f"{'/'.join(extra)} only apply with --fold K (train on one fold's training patients)")
        return None
    if args.resume:
        raise UserError("--fold applies to a new run; a resumed run keeps the fold it was created with")
    if not args.folds or args.folds < 2:
        raise UserError(f"--fold needs --folds N (the experiment's number of folds, at least 2), got {args.folds}")
    if not args.target:
        raise UserError("--fold needs --target T (the experiment's target finding(s); the folds are stratified on "
                        "them, so the same targets give the same folds)")
    if args.repeats < 1:
        raise UserError(f"--repeats must be at least 1, got {args.repeats}")
    return FoldSpec(folds=args.folds, fold=args.fold, repeat=args.repeat, repeats=args.repeats, seed=args.fold_seed,
                    val_fraction=args.val_fraction, targets=tuple(args.target))


def prepare(args: argparse.Namespace, ws, fold=None) -> tuple[Any, Any, Any]:
    """Configs + data, all validated before any training compute starts (with `fold`: on its training part)."""
    from medgan_ui.data.load import load_dataset
    from medgan_ui.data.provenance import fold_dataset
    from medgan_ui.data.readers.base import ReadOptions
    from medgan_ui.gan.config import make_configs
    from medgan_ui.gan.feed import training_part
    from medgan_ui.gan.registry import validate_run

    over = _overrides(args)
    train_cfg, model_cfg = make_configs(args.model, args.preset, **over)
    dataset = load_dataset(args.data, format=args.format, options=ReadOptions(size=train_cfg.image_size), workspace=ws)
    if args.epochs is not None:
        if args.epochs <= 0:
            raise UserError(f"--epochs must be positive (got {args.epochs})")
        n_train = len(training_part(fold_dataset(dataset, fold) if fold else dataset))
        over["steps"] = max(1, round(args.epochs * math.ceil(n_train / train_cfg.batch_size)))
        train_cfg, model_cfg = make_configs(args.model, args.preset, **over)
    validate_run(fold_dataset(dataset, fold) if fold else dataset, train_cfg, model_cfg)
    return train_cfg, model_cfg, dataset


def _report(summary: dict) -> int:
    import os

    if int(os.environ.get("RANK", "0")) == 0:
        print(f"{summary['status']}: {summary['message']}")
        if summary.get("checkpoint"):
            print(f"checkpoint: {summary['checkpoint']}")
    return 0 if summary["status"] in ("finished", "stopped") else 1


def cmd_sample(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medgan_ui.gan.generate import export_dicom, export_png, load_run
    from medgan_ui.workspace import Workspace

    ws = Workspace(args.workspace)
    run_dir = ws.run_dir(args.run_id)
    if not run_dir.is_dir():
        raise UserError(f"run {args.run_id!r} not found in {ws.runs}; list runs with `medgan runs`")
    if args.top_up is not None:
        given = [flag for flag, value in (("--general", args.general), ("--findings", args.findings),
                                          ("--n", args.n)) if value not in ("", None)]
        if given:
            raise UserError(f"--top-up plans the labels and counts itself; drop {'/'.join(given)} "
                            f"(or drop --top-up to sample fixed labels)")
        if args.top_up < 1:
            raise UserError(f"--top-up must be at least 1 image per cell (got {args.top_up})")
    n = 16 if args.n is None else args.n
    if n < 1:
        raise UserError(f"--n must be at least 1 (got {n})")
    run = load_run(run_dir, args.checkpoint, args.device)
    out = Path(args.out) if args.out else ws.synthetic
    export = export_dicom if args.dicom else export_png
    if args.top_up is not None:
        cells = _top_up_cells(ws, run, args.top_up)
        if not cells:
            print(f"every cell already has {args.top_up} or more real images; nothing to generate")
            return 0
    else:
        general = parse_pairs(args.general, "--general")
        findings = [f.strip() for f in args.findings.split(",") if f.strip() and f.strip() != "No Finding"]
        cells = [(general, findings, n)]
    options = {k: _number(k, v) for k, v in parse_pairs(args.sampling, "--sampling").items()}
    run.model.check_sample_options(options)
    folder = export(run, cells, out, seed=args.seed, options=options)
    if args.top_up is not None:
        print(f"wrote {sum(c[2] for c in cells):,} synthetic images in {len(cells)} cells (with labels.csv and "
              f"manifest.json) to:")
    print(folder)
    return 0


def _top_up_cells(ws, run, target: int) -> list:
    """Print the top-up plan (cells, real images, to generate) and return its export cells."""
    from medgan_ui.gan import topup

    try:
        pool = topup.run_training_images(ws, run.run_id)
    except UserError as exc:
        raise UserError(f"--top-up plans from the real images per cell, which cannot be loaded: {exc}. "
                        f"Or sample fixed labels and counts with --general/--findings/--n instead") from None
    rows = topup.cell_plan(run.schema, pool, target)
    cols = topup.plan_columns(run.schema)
    table = [[str(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    n_text = len(cols) - 2  # label columns left-aligned, counts right-aligned
    for line in [cols, *table]:
        print("  ".join(v.ljust(w) if i < n_text else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths))))
    print(f"{len(rows)} cells, {sum(r[topup.TO_GENERATE] for r in rows):,} images to generate "
          f"(real images of {len(pool):,} training images; one with two findings counts in both cells)")
    return topup.cells_from_plan(rows, run.schema.general_names)


def cmd_runs(args: argparse.Namespace) -> int:
    from medgan_ui.gan.runs import list_runs
    from medgan_ui.workspace import Workspace

    rows = list_runs(Workspace(args.workspace))
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    if not rows:
        print("no runs yet: start one with `medgan train --model gdgan --data demo`")
        return 0
    print(f"{'RUN':<34} {'MODEL':<6} {'PRESET':<9} {'STATUS':<12} {'STEP':>13}  DATASET")
    for r in rows:
        print(f"{r['run_id']:<34} {r['model'] or '?':<6} {r['preset'] or '?':<9} {r['status']:<12} "
              f"{str(r['step']) + '/' + str(r['total']):>13}  {r['dataset'] or ''}")
    return 0

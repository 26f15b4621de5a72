"""`medgan data inspect PATH` and `medgan data demo OUT`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from medgan_ui.cli import add_workspace_arg


def _columns(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="inspect datasets, write the demo dataset")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION")

    p = dsub.add_parser("inspect", help="load a dataset (or 'demo') and report counts and skipped files")
    p.add_argument("path", help="dataset folder or file, 'demo' or 'demo:hard'")
    p.add_argument("--format", default=None, help="nih, csv, dicom, folders or medmnist (default: detect)")
    p.add_argument("--size", type=int, default=64, help="square image size, 16-256 (default 64)")
    p.add_argument("--fit", choices=("crop", "pad"), default="crop", help="non-square images: centre crop or pad")
    p.add_argument("--age-bands", action="store_true", help="add an age-band general label where ages are known")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-cache", action="store_true", help="read the source again, do not use or write the cache")
    p.add_argument("--stratify", default="auto", help="finding to stratify the split on, 'auto' or 'none'")
    p.add_argument("--fractions", type=float, nargs=3, metavar=("TRAIN", "VAL", "TEST"), default=(0.7, 0.1, 0.2),
                   help="patient-level split fractions (default 0.7 0.1 0.2)")
    p.add_argument("--split-seed", type=int, default=0)
    g = p.add_argument_group("generic CSV + folder")
    g.add_argument("--csv", default=None, help="labels CSV (path, or name inside the folder)")
    g.add_argument("--image-column", default=None, help="column with the image file names")
    g.add_argument("--general-columns", type=_columns, default=[], help="comma-separated general-label columns")
    g.add_argument("--finding-column", default=None, help="one column holding findings joined by a separator")
    g.add_argument("--finding-separator", default="|", help="separator in --finding-column (default |)")
    g.add_argument("--finding-columns", type=_columns, default=[], help="comma-separated 0/1 columns, one per finding")
    g.add_argument("--patient-column", default=None, help="patient id column (default: file name stem)")
    d = p.add_argument_group("DICOM")
    d.add_argument("--window", type=float, nargs=2, metavar=("CENTER", "WIDTH"), default=None,
                   help="VOI window overriding the files' WindowCenter/WindowWidth")
    d.add_argument("--labels-csv", default=None, help="findings per file name or SOPInstanceUID")
    add_workspace_arg(p)
    p.set_defaults(func=_inspect)

    q = dsub.add_parser("demo", help="write the built-in phantom as an NIH-layout folder and a DICOM folder")
    q.add_argument("out", help="output folder (gets nih/ and dicom/ inside)")
    q.add_argument("--n", type=int, default=2000, help="number of images (default 2000)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--difficulty", choices=("standard", "hard"), default="standard",
                   help="hard: findings near their threshold, more noise (the 'demo:hard' data source)")
    q.set_defaults(func=_demo)

    data.set_defaults(func=lambda _args: data.print_help() or 2)


def _inspect(args: argparse.Namespace) -> int:
    from medgan_ui.data import ReadOptions, load_dataset
    from medgan_ui.data.inspect import format_report, inspect_report
    from medgan_ui.workspace import Workspace

    opts = ReadOptions(
        size=args.size, fit=args.fit, age_bands=args.age_bands, csv=args.csv, image_column=args.image_column,
        general_columns=args.general_columns, finding_column=args.finding_column,
        finding_separator=args.finding_separator, finding_columns=args.finding_columns,
        patient_column=args.patient_column, window=tuple(args.window) if args.window else None,
        labels_csv=args.labels_csv,
    )
    stratify = None if args.stratify.lower() == "none" else args.stratify
    ds = load_dataset(args.path, args.format, opts, Workspace(args.workspace), stratify=stratify,
                      split_seed=args.split_seed, fractions=tuple(args.fractions), use_cache=not args.no_cache)
    report = inspect_report(ds)
    print(json.dumps(report, indent=2) if args.json else format_report(report))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from medgan_ui.data.phantom import write_demo_folders

    info = write_demo_folders(Path(args.out), n=args.n, seed=args.seed, difficulty=args.difficulty)
    print(json.dumps(info, indent=2, default=str))
    return 0

"""`medgan ...`: the same Python API the UI uses, for headless and cluster use.

Each sub-module registers its own sub-commands (data, train/sample/runs, serve, study, evaluate/metrics),
so the CLI reads top to bottom per area. A package rather than one cli.py keeps each file short.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from medgan_ui import __version__
from medgan_ui.errors import UserError

# area modules; each defines register(subparsers) and sets `func` on its parsers
AREAS = ("data", "train", "serve", "study", "evaluate")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="medgan", description="MedGAN Studio command line")
    parser.add_argument("--version", action="version", version=f"medgan_ui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for area in AREAS:
        importlib.import_module(f"medgan_ui.cli.{area}").register(sub)
    return parser


def add_workspace_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", default=None, help="workspace folder (default ./medgan-workspace or $MEDGAN_WORKSPACE)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)

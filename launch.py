#!/usr/bin/env python
"""Start MedGAN Studio in the browser: `python launch.py [--workspace DIR] [--port 7860] ...`.

Same as `medgan serve`; see `python launch.py --help`.
"""
import argparse
import sys

from medgan_ui.cli.serve import add_serve_args, serve
from medgan_ui.errors import UserError


def main() -> int:
    parser = argparse.ArgumentParser(prog="launch.py", description="Start the MedGAN Studio web app.")
    add_serve_args(parser)
    args = parser.parse_args()
    try:
        return serve(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

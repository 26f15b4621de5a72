"""`medgan serve` (and `python launch.py`): start the web app on a workspace, opened on the demo data."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from typing import Any

from medgan_ui.errors import UserError


def add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", default=None, help="workspace folder (default ./medgan-workspace or $MEDGAN_WORKSPACE)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 = every network interface)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                   help="require a login; repeat for several users")
    p.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")
    p.add_argument("--admin-password", default=None,
                   help="password for the Rate tab's admin view (or set MEDGAN_ADMIN_PASSWORD)")
    p.add_argument("--data-root", action="append", default=[], metavar="DIR",
                   help="folder whose datasets web users may load by path; repeat for several. Without it, "
                        "server paths work only when --host is loopback (127.0.0.1)")
    p.add_argument("--no-demo", action="store_true", help="do not load the built-in demo dataset at start")
    p.add_argument("--reader-only", action="store_true",
                   help="serve only the reading screen (reader studies: radiologists see nothing else)")


def parse_auth(pairs: list[str]) -> list[tuple[str, str]]:
    out = []
    for pair in pairs:
        user, sep, pw = pair.partition(":")
        if not sep or not user or not pw:
            raise UserError(f"--auth {pair!r}: write it as USER:PASSWORD")
        out.append((user, pw))
    return out


def serve(args: argparse.Namespace) -> int:
    from medgan_ui.ui.app import serve as launch_app
    from medgan_ui.ui.context import AppContext

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # `kill` (SIGTERM) stops like Ctrl+C: running jobs write a checkpoint and show as interrupted
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # the stdlib handler that raises KeyboardInterrupt
    auth = parse_auth(args.auth)
    if args.share and not auth:
        print("warning: --share makes the app public; add --auth USER:PASS to protect it", file=sys.stderr)
    admin = args.admin_password or os.environ.get("MEDGAN_ADMIN_PASSWORD") or None
    if args.reader_only:
        return serve_reader_only(args, auth, admin)
    ctx = AppContext.create(args.workspace, admin_password=admin, host=args.host,
                            data_roots=getattr(args, "data_root", None) or [])
    print(f"MedGAN Studio: workspace {ctx.workspace.root}; {ctx.device}", flush=True)
    print(f"server paths: {ctx.paths.describe()}; removed old uploads: {len(ctx.clean_uploads())}", flush=True)
    # the page opens first; the Data tab shows the demo as soon as it is ready (cached: seconds)
    loader = None if args.no_demo else ctx.load_in_background(lambda: load_demo(ctx), start=False)
    try:
        launch_app(ctx, host=args.host, port=args.port, auth=auth, share=args.share, prevent_thread_lock=True)
        if loader is not None:
            loader.start()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping: running jobs write a checkpoint and can be resumed after the next start", flush=True)
    finally:
        ctx.jobs.shutdown(timeout=60)
    return 0


def serve_reader_only(args: argparse.Namespace, auth: list[tuple[str, str]], admin: str | None) -> int:
    """Reading screen alone: no Data/Train/Browse tab where labelled synthetic images could be seen."""
    from medgan_ui.ui import study_server
    from medgan_ui.workspace import Workspace

    study_server.run(Workspace(args.workspace), args.host, args.port, admin, auth=auth)
    return 0


def load_demo(ctx: Any) -> Any:
    """First start generates the phantom dataset (then it comes from the workspace cache)."""
    from medgan_ui.data.load import load_dataset

    t0 = time.perf_counter()
    ds = load_dataset("demo", workspace=ctx.workspace)
    ctx.set_dataset(ds)
    print(f"demo dataset ready: {len(ds)} images in {time.perf_counter() - t0:.1f} s", flush=True)
    return ds


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="start the web app (same as `python launch.py`)")
    add_serve_args(p)
    p.set_defaults(func=serve)

"""`medgan serve` (and `python launch.py`): start the web app on a workspace, opened on the demo data."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from typing import Any

from medgan_ui.security import credentials
from medgan_ui.security.http import (DEFAULT_MAX_REQUEST_MB, ENV_MAX_REQUEST_MB, HttpPolicy, check_exposure,
                                     max_request_bytes)
from medgan_ui.security.lock import workspace_lock
from medgan_ui.security.paths import PathPolicy
from medgan_ui.workspace import Workspace


def add_serve_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workspace", default=None, help="workspace folder (default ./medgan-workspace or $MEDGAN_WORKSPACE)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 = every network interface; "
                   "needs --auth-file, or --i-know)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--auth-file", default=None, metavar="FILE",
                   help="require a login: USER:PASSWORD lines (or $MEDGAN_AUTH_FILE, or $MEDGAN_AUTH)")
    p.add_argument("--auth", action="append", default=[], metavar="USER:PASS",
                   help="require a login; repeat for several users (visible in `ps`: prefer --auth-file)")
    p.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")
    p.add_argument("--admin-password-file", default=None, metavar="FILE",
                   help="file whose first line is the Rate tab's admin password (or $MEDGAN_ADMIN_PASSWORD_FILE)")
    p.add_argument("--admin-password", default=None,
                   help="admin password for the Rate tab (or $MEDGAN_ADMIN_PASSWORD; visible in `ps`: prefer the file)")
    p.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                   help="another web origin allowed to call this server with the user's cookies, e.g. "
                   "https://portal.example.org (default: only the app's own pages)")
    p.add_argument("--max-request-mb", type=float, default=None, metavar="MB",
                   help=f"largest request body outside file uploads (default {DEFAULT_MAX_REQUEST_MB:g}, or "
                   f"${ENV_MAX_REQUEST_MB}); larger ones get 413")
    p.add_argument("--i-know", action="store_true",
                   help="serve on a network address (or --share) without a login anyway")
    p.add_argument("--data-root", action="append", default=[], metavar="DIR",
                   help="folder whose datasets web users may load by path; repeat for several. Without it, "
                        "server paths work only when --host is loopback (127.0.0.1)")
    p.add_argument("--no-demo", action="store_true", help="do not load the built-in demo dataset at start")
    p.add_argument("--reader-only", action="store_true",
                   help="serve only the reading screen (reader studies: radiologists see nothing else)")


def serve(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # `kill` (SIGTERM) stops like Ctrl+C: running jobs write a checkpoint and show as interrupted
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # the stdlib handler that raises KeyboardInterrupt
    creds = credentials.resolve(args.auth, args.auth_file, args.admin_password, args.admin_password_file)
    for warning in creds.warnings:
        print(warning, file=sys.stderr, flush=True)
    auth, admin = creds.auth, creds.admin_password
    check_exposure(args.host, args.share, bool(auth), args.i_know)
    PathPolicy.for_server(args.host, args.data_root)  # a --data-root that is not a folder fails here, fast
    policy = HttpPolicy(allowed_origins=args.allowed_origin, max_body_bytes=max_request_bytes(args.max_request_mb),
                        require_login=bool(auth))
    workspace = Workspace(args.workspace)
    # one studio per workspace (two both trained and resumed the same run); held until the process ends
    held = workspace_lock(workspace.root, "reader" if args.reader_only else "studio")
    if args.reader_only:
        try:
            return serve_reader_only(workspace, args, auth, admin, policy)
        finally:
            held.release()
    from medgan_ui.ui.app import serve as launch_app  # gradio and torch: after the checks, which fail fast
    from medgan_ui.ui.context import AppContext

    ctx = AppContext.create(workspace, admin_password=admin, host=args.host,
                            data_roots=args.data_root)
    print(f"MedGAN Studio: workspace {ctx.workspace.root}; {ctx.device}", flush=True)
    print(f"server paths: {ctx.paths.describe()}; removed old uploads: {len(ctx.clean_uploads())}", flush=True)
    # the page opens first; the Data tab shows the demo as soon as it is ready (cached: seconds)
    loader = None if args.no_demo else ctx.load_in_background(lambda: load_demo(ctx), start=False)
    try:
        launch_app(ctx, host=args.host, port=args.port, auth=auth, share=args.share, prevent_thread_lock=True,
                   policy=policy)
        if loader is not None:
            loader.start()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping: running jobs write a checkpoint and can be resumed after the next start", flush=True)
    finally:
        ctx.jobs.shutdown(timeout=60)
        held.release()
    return 0


def serve_reader_only(workspace: Any, args: argparse.Namespace, auth: list[tuple[str, str]], admin: str | None,
                      policy: Any) -> int:
    """Reading screen alone: no Data/Train/Browse tab where labelled synthetic images could be seen."""
    from medgan_ui.ui import study_server

    study_server.run(workspace, args.host, args.port, admin, auth=auth, policy=policy)
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

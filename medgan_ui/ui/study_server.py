"""A server with only the reading screen: `python -m medgan_ui.ui.study_server --workspace W --port P`.

For reader studies run apart from the full studio (radiologists only ever see this screen), and for
the crash and concurrency tests, which need a real server process they can kill -9.
"""
from __future__ import annotations

import argparse
from typing import Any, Sequence

from medgan_ui.security.http import HttpPolicy, SecurityMiddleware, gradio_session_user
from medgan_ui.workspace import Workspace


def build_app(workspace: Workspace, admin_password: str | None = None,
              auth: list[tuple[str, str]] | None = None, policy: HttpPolicy | None = None,
              paths: Any = None) -> Any:
    """ASGI app: the reader API + image routes, then Gradio (Rate tab only) mounted at '/', all behind
    the security middleware (origin allow-list, body cap, login back-off; /study/* needs the login
    when `auth` is set)."""
    import gradio as gr
    from fastapi import FastAPI
    from starlette.routing import Mount

    from medgan_ui.study.api import mount_study_routes, private_paths
    from medgan_ui.ui.rate_tab import build_rate_tab

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # no schema of the reader API for anyone
    mount_study_routes(app, workspace)  # before Gradio takes "/"
    with gr.Blocks(title="MedGAN Studio · reader study") as demo:
        build_rate_tab(workspace, admin_password, paths)
    # readers answer at the same time: let their events run side by side (the store serialises writes)
    demo.queue(default_concurrency_limit=16)
    app = gr.mount_gradio_app(app, demo, path="/", blocked_paths=private_paths(workspace), auth=auth or None)
    policy = policy or HttpPolicy(require_login=bool(auth))
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount) and hasattr(r.app, "tokens"))
    policy.session_user = gradio_session_user(gradio_app)
    return SecurityMiddleware(app, policy)


def main(argv: Sequence[str] | None = None) -> int:
    """Same flags and checks as `launch.py --reader-only` (logins, --host rules, workspace lock)."""
    import sys

    from medgan_ui.cli.serve import add_serve_args, serve
    from medgan_ui.errors import UserError

    p = argparse.ArgumentParser(prog="python -m medgan_ui.ui.study_server", description=__doc__)
    add_serve_args(p)
    p.set_defaults(port=7861)
    args = p.parse_args(argv)
    args.reader_only = True
    try:
        return serve(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(workspace: Workspace, host: str, port: int, admin_password: str | None = None,
        auth: list[tuple[str, str]] | None = None, policy: HttpPolicy | None = None) -> None:
    """Serve the reading screen until stopped (this module's main and `launch.py --reader-only`)."""
    import uvicorn

    from medgan_ui.security.paths import PathPolicy

    # folders the admin may type: any (but system ones) on loopback, else only the workspace's own
    paths = PathPolicy.for_server(host, (), [workspace.datasets, workspace.synthetic, workspace.uploads])
    app = build_app(workspace, admin_password, auth=auth, policy=policy, paths=paths)
    print(f"MedGAN Studio reader study on http://{host}:{port}/ (admin view: /?admin)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


if __name__ == "__main__":
    raise SystemExit(main())

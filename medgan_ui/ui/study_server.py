"""A server with only the reading screen: `python -m medgan_ui.ui.study_server --workspace W --port P`.

For reader studies run apart from the full studio (radiologists only ever see this screen), and for
the crash and concurrency tests, which need a real server process they can kill -9.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Sequence

from medgan_ui.workspace import Workspace


def build_app(workspace: Workspace, admin_password: str | None = None,
              auth: list[tuple[str, str]] | None = None, paths: Any = None) -> Any:
    """FastAPI app: the reader API + image routes, then Gradio (Rate tab only) mounted at '/'."""
    import gradio as gr
    from fastapi import FastAPI

    from medgan_ui.study.api import mount_study_routes, private_paths
    from medgan_ui.ui.rate import build_rate_tab

    app = FastAPI()
    mount_study_routes(app, workspace)  # before Gradio takes "/"
    with gr.Blocks(title="MedGAN Studio · reader study") as demo:
        build_rate_tab(workspace, admin_password, paths)
    # readers answer at the same time: let their events run side by side (the store serialises writes)
    demo.queue(default_concurrency_limit=16)
    return gr.mount_gradio_app(app, demo, path="/", blocked_paths=private_paths(workspace), auth=auth or None)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m medgan_ui.ui.study_server", description=__doc__)
    p.add_argument("--workspace", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7861)
    p.add_argument("--admin-password", default=os.environ.get("MEDGAN_ADMIN_PASSWORD"))
    args = p.parse_args(argv)
    run(Workspace(args.workspace), args.host, args.port, args.admin_password)
    return 0


def run(workspace: Workspace, host: str, port: int, admin_password: str | None = None,
        auth: list[tuple[str, str]] | None = None) -> None:
    """Serve the reading screen until stopped (this module's main and `launch.py --reader-only`)."""
    import uvicorn

    from medgan_ui.security.paths import PathPolicy

    # folders the admin may type: any (but system ones) on loopback, else only the workspace's own
    paths = PathPolicy.for_server(host, (), [workspace.datasets, workspace.synthetic, workspace.uploads])
    app = build_app(workspace, admin_password, auth=auth, paths=paths)
    print(f"MedGAN Studio reader study on http://{host}:{port}/ (admin view: /?admin)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


if __name__ == "__main__":
    raise SystemExit(main())

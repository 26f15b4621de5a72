"""The Gradio app: a header and five tabs (Data, Train, Browse, Rate, Compare) over one AppContext.

Gradio 6 takes theme and CSS at launch() rather than in Blocks(), so `launch_options()` carries them
and both launch.py and the tests use `serve()`.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import gradio as gr

from medgan_ui import __version__
from medgan_ui.security import limits
from medgan_ui.security.http import HttpPolicy, install_on_gradio
from medgan_ui.study.api import mount_study_routes
from medgan_ui.ui import browse_tab, compare_tab, data_tab, rate_tab, train_tab
from medgan_ui.ui.context import AppContext
from medgan_ui.ui.errors import hide_folder

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def theme() -> gr.themes.Base:
    # system fonts: the app must not fetch web fonts (offline hospital networks)
    return gr.themes.Soft(
        primary_hue="cyan", secondary_hue="slate", neutral_hue="slate",
        font=["system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    )


def _header(ctx: AppContext) -> str:
    # the workspace's folder name only: its full path (server log, CLI) would show web users the
    # server's file-system layout
    logo = (ASSETS / "logo.svg").read_text(encoding="utf-8") if (ASSETS / "logo.svg").exists() else ""
    return (
        f'<div id="mg-header">{logo}<div><h1>MedGAN Studio</h1>'
        '<div class="mg-sub">Synthetic medical images for rare findings: load data, train, look, test.</div></div>'
        f'<div class="mg-right">{html.escape(ctx.device)}<br>workspace: {html.escape(ctx.workspace.root.name)}'
        f"<br>v{__version__}</div></div>"
    )


def build_app(ctx: AppContext) -> gr.Blocks:
    hide_folder(ctx.workspace.root, "workspace")  # in the UI's messages too
    # generated images pile up in Gradio's cache on a long-running server: drop those older than 2 h
    with gr.Blocks(title="MedGAN Studio", analytics_enabled=False, delete_cache=(3600, 7200)) as demo:
        gr.HTML(_header(ctx))
        with gr.Tabs():
            with gr.Tab("Data", id="data"):
                data_view = data_tab.build(ctx)
            with gr.Tab("Train", id="train"):
                train_tab.build(ctx, demo)
            with gr.Tab("Browse", id="browse") as browse:
                refresh_fn, refresh_in, refresh_out = browse_tab.build(ctx, demo)
            # runs trained since the page opened appear when the user comes to the tab
            browse.select(refresh_fn, refresh_in, refresh_out, api_visibility="private", show_progress="hidden")
            with gr.Tab("Rate", id="rate"):
                rate_tab.build_rate_tab(ctx.workspace, ctx.admin_password, ctx.paths)
            with gr.Tab("Compare", id="compare"):
                compare_tab.build_compare_tab(ctx)
        demo.load(data_tab.on_page_load(ctx), outputs=data_view, api_visibility="private")
    return demo


def launch_options() -> dict[str, Any]:
    return {
        "theme": theme(),
        "css_paths": [ASSETS / "style.css"],
        "favicon_path": ASSETS / "logo.svg",
    }


def _warm_imports() -> None:
    """Import the libraries of the first clicks (charts, SSIM) before serving. Not in a background
    thread: a handler importing matplotlib.pyplot at the same moment got a partially initialised
    module (Python's import-deadlock avoidance), which failed a click."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401
    import torchmetrics.functional.image  # noqa: F401


def serve(ctx: AppContext, *, host: str = "127.0.0.1", port: int | None = 7860,
          auth: list[tuple[str, str]] | None = None, share: bool = False,
          prevent_thread_lock: bool = False, quiet: bool = False, policy: HttpPolicy | None = None) -> gr.Blocks:
    """Build and launch; with prevent_thread_lock the call returns at once (tests, benchmarks).

    `policy`: origin allow-list, body cap, login back-off (security.http); the default allows only
    the app's own pages and asks a login for /study/* when `auth` is set."""
    _warm_imports()
    demo = build_app(ctx)
    # several people may use one server: let events of different users run side by side
    demo.queue(default_concurrency_limit=8)
    app, _, _ = demo.launch(
        server_name=host, server_port=port, auth=auth or None, share=share,
        prevent_thread_lock=prevent_thread_lock, quiet=quiet, show_error=False,
        # no allowed_paths: outputs are copied into Gradio's cache, so no workspace file (e.g. the
        # reader-study database) can be fetched by URL
        footer_links=["api"],
        max_file_size=limits.upload_limit_bytes(),  # MEDGAN_MAX_UPLOAD_MB
        auth_message="MedGAN Studio: please sign in." if auth else None,
        # outside Gradio's own middleware (its CORS layer echoes foreign origins once Host is not localhost)
        app_kwargs={"lifespan": install_on_gradio(policy or HttpPolicy(require_login=bool(auth)))},
        **launch_options(),
    )
    # the reading screen loads case images from these routes (they check the reader's own token)
    mount_study_routes(app, ctx.workspace)
    return demo

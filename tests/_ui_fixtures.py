"""The full app launched in-process on a free localhost port with a temp workspace (UI tests share it)."""
from __future__ import annotations

import contextlib
import re
import socket
from pathlib import Path
from typing import Iterator

import pytest

DEMO_N = 240  # the phantom's size in tests (the app's default is 2000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(workspace: Path, admin_password: str | None = None) -> Iterator[tuple]:
    """(AppContext, launched Blocks); jobs are shut down and the server closed afterwards."""
    import torch

    from medgan_ui.data import load as load_mod
    from medgan_ui.ui.app import serve
    from medgan_ui.ui.context import AppContext

    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setattr(load_mod, "DEMO_N", DEMO_N)
    ctx = AppContext.create(workspace, admin_password)
    demo = serve(ctx, host="127.0.0.1", port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield ctx, demo
    finally:
        ctx.jobs.shutdown(timeout=10)
        demo.close()
        mp.undo()


def exported_folder(ctx, note: str) -> Path:
    """The export note names the folder inside the workspace, never its server path."""
    shown = re.search(r"`([^`]+)`", note).group(1)
    assert shown.startswith("workspace/synthetic/") and str(ctx.workspace.root) not in note, note
    return ctx.workspace.root / shown.removeprefix("workspace/")

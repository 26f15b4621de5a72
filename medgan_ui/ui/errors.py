"""Turn exceptions in UI handlers into readable messages: never a traceback, never a stuck button.

A handler wrapped with @friendly raises gr.Error (a red toast; the outputs keep their old values) for
a UserError or any unexpected failure. The unexpected ones are logged with their traceback on the
server, where a developer can find them; the user gets one plain sentence. Server folders registered
with hide_folder() (the workspace) are named by a short label in every message: web users must not
learn the server's file-system layout.
"""
from __future__ import annotations

import functools
import logging
import os
from typing import Any, Callable, TypeVar

import gradio as gr

from medgan_ui.errors import UserError
from medgan_ui.security.paths import hide_paths

log = logging.getLogger("medgan_ui.ui")
F = TypeVar("F", bound=Callable[..., Any])
_HIDDEN: list[tuple[str, str]] = []  # (server folder, what messages call it); one app per process, tests several


def hide_folder(folder: str | os.PathLike, shown: str) -> None:
    """From now on, messages shown in the UI say `shown` where they would name `folder`."""
    entry = (str(folder), shown)
    if entry not in _HIDDEN:
        _HIDDEN.append(entry)


def scrub(text: str) -> str:
    """`text` with the registered server folders replaced by their labels (the server log keeps them)."""
    return hide_paths(text, _HIDDEN)


def message_for(exc: BaseException) -> str:
    """The sentence a user sees for an exception (server folders hidden, see hide_folder)."""
    return scrub(_sentence(exc))


def _sentence(exc: BaseException) -> str:
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)):
        return f"{exc.strerror or type(exc).__name__}: {exc.filename or exc}"
    if isinstance(exc, KeyError):  # LabelSchema and ImageSet lookups put the full sentence in args[0]
        return str(exc.args[0]) if exc.args else "unknown label"
    if isinstance(exc, MemoryError):
        return "out of memory: try a smaller image size, batch size or number of images"
    return f"unexpected error ({type(exc).__name__}: {exc}); the server log has the details"


def friendly(fn: F) -> F:
    """Decorator for Gradio handlers: every failure becomes a gr.Error with a readable message."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except UserError as exc:
            raise gr.Error(message_for(exc), title="Please check", print_exception=False) from None
        except Exception as exc:
            log.exception("UI handler %s failed", getattr(fn, "__name__", fn))
            raise gr.Error(message_for(exc), title="Something went wrong", print_exception=False) from None

    return wrapper  # type: ignore[return-value]

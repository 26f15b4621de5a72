"""Turn exceptions in UI handlers into readable messages: never a traceback, never a stuck button.

A handler wrapped with @friendly raises gr.Error (a red toast; the outputs keep their old values) for
a UserError or any unexpected failure. The unexpected ones are logged with their traceback on the
server, where a developer can find them; the user gets one plain sentence.
"""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable, TypeVar

import gradio as gr

from medgan_ui.errors import UserError

log = logging.getLogger("medgan_ui.ui")
F = TypeVar("F", bound=Callable[..., Any])


def message_for(exc: BaseException) -> str:
    """The sentence a user sees for an exception."""
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
            raise gr.Error(str(exc), title="Please check", print_exception=False) from None
        except Exception as exc:
            log.exception("UI handler %s failed", getattr(fn, "__name__", fn))
            raise gr.Error(message_for(exc), title="Something went wrong", print_exception=False) from None

    return wrapper  # type: ignore[return-value]

"""Per-client exponential back-off for failed sign-ins (admin password, Gradio login, study codes).

A client that fails is refused for base * factor**(failures-1) seconds (capped), so guessing slows
from ~20/s to a handful per hour within a few dozen tries. Refusing (rather than sleeping in the
handler) keeps the server's worker threads free. Every failure is logged with the client address so
an organiser can see an attack in the log.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Callable

log = logging.getLogger("medgan_ui.security")

BASE_DELAY_S = 1.0        # after the first failure
FACTOR = 2.0              # each further failure doubles the wait
MAX_DELAY_S = 300.0       # a legitimate user who mistypes is never locked out for long
FORGET_AFTER_S = 3600.0   # a client quiet this long starts afresh
MAX_CLIENTS = 10_000      # bound the table's memory under a spray of addresses


@dataclass
class _Entry:
    failures: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


class Throttle:
    """Failures per client key (usually the remote address); thread-safe."""

    def __init__(self, what: str, *, base: float = BASE_DELAY_S, factor: float = FACTOR,
                 max_delay: float = MAX_DELAY_S, forget_after: float = FORGET_AFTER_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.base, self.factor, self.max_delay, self.forget_after = base, factor, max_delay, forget_after
        self.clock = clock
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds `client` must still wait before its next attempt (0 = may try now)."""
        now = self.clock()
        with self._lock:
            e = self._entries.get(client)
            return max(0.0, e.blocked_until - now) if e else 0.0

    def failure(self, client: str) -> float:
        """Record a failed attempt; returns the delay now imposed on `client` (and logs it)."""
        now = self.clock()
        with self._lock:
            self._prune(now)
            e = self._entries.setdefault(client, _Entry())
            if now - e.last > self.forget_after:
                e.failures = 0
            e.failures += 1
            e.last = now
            delay = min(self.max_delay, self.base * self.factor ** (e.failures - 1))
            e.blocked_until = now + delay
            n = e.failures
        log.warning("failed %s from %s (%d in a row); next attempt allowed in %s s", self.what, client, n, format_wait(delay))
        return delay

    def success(self, client: str) -> None:
        with self._lock:
            self._entries.pop(client, None)

    def refusal(self, client: str) -> str | None:
        """A message for a client still inside its back-off window, else None."""
        wait = self.retry_after(client)
        if wait <= 0:
            return None
        return f"too many failed {self.what} attempts from this address: try again in {format_wait(wait)} s"

    def _prune(self, now: float) -> None:
        if len(self._entries) < MAX_CLIENTS:
            return
        stale = [k for k, e in self._entries.items() if now - e.last > self.forget_after]
        for k in stale:
            del self._entries[k]
        if len(self._entries) >= MAX_CLIENTS:  # still full: drop the oldest half
            for k, _ in sorted(self._entries.items(), key=lambda kv: kv[1].last)[: MAX_CLIENTS // 2]:
                del self._entries[k]


def format_wait(seconds: float) -> str:
    """'30', '2.5', '0.05': whole seconds once long enough to matter, more digits for short waits."""
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.2g}"


def client_key(request: object) -> str:
    """The remote address of a Starlette/Gradio request ('unknown' when there is none)."""
    client = getattr(request, "client", None)
    host = getattr(client, "host", None)
    return str(host) if host else "unknown"


ENV_BACKOFF_S = "MEDGAN_LOGIN_BACKOFF_S"          # first wait after a failure (tests set it small)
ENV_BACKOFF_MAX_S = "MEDGAN_LOGIN_BACKOFF_MAX_S"


def login_throttle(what: str) -> Throttle:
    """A Throttle for `what`, its base and cap read from the environment (defaults above)."""
    def env_float(name: str, default: float) -> float:
        try:
            return float(os.environ.get(name) or default)
        except ValueError:
            log.warning("ignoring %s=%r: not a number", name, os.environ.get(name))
            return default

    return Throttle(what, base=env_float(ENV_BACKOFF_S, BASE_DELAY_S), max_delay=env_float(ENV_BACKOFF_MAX_S, MAX_DELAY_S))

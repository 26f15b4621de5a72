"""Which server paths a web user may name, and how paths are shown back to them.

The web UI is untrusted: a path typed into a field (data folder, labels CSV, weights file, synthetic
set, mask folder) is resolved with its symlinks and must lie under an allowed root. Roots are the
`--data-root` folders plus the workspace's own datasets/, synthetic/ and uploads/. Without any
`--data-root`, server paths are allowed only when the app listens on loopback and the request comes
from this machine itself, not through a reverse proxy (the person at the keyboard is the one
running it). System folders (/proc, /etc, ...) are never data.

Refusals never say whether an outside path exists: the check runs on the resolved name before any
existence test, and the message echoes only what the user typed.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterable, Sequence

from medgan_ui.errors import UserError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
# pseudo file systems and configuration: never a dataset, whatever the allow-list says
def _both(*names: str) -> tuple[Path, ...]:
    return tuple({Path(p) for p in names} | {Path(p).resolve() for p in names})  # macOS: /etc -> /private/etc


PSEUDO_DIRS = _both("/proc", "/sys", "/dev")  # never data, whatever --data-root says
# configuration and runtime secrets (/run/secrets): data only inside a --data-root that names them
SYSTEM_DIRS = PSEUDO_DIRS + _both("/etc", "/boot", "/run", "/var/run")
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")
PROXY_HEADERS = ("x-forwarded-for", "x-forwarded-host", "forwarded", "x-real-ip")


def is_loopback(host: str | None) -> bool:
    """127.0.0.0/8, ::1 and localhost; an empty host (all interfaces) is not loopback."""
    if not host:
        return False
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_remote(client_host: str | None, headers: Mapping[str, str] | None = None) -> bool:
    """A request from another machine: its address is not loopback, or a proxy forwarded it."""
    names = {str(k).lower() for k in (headers or {}).keys()}
    return any(h in names for h in PROXY_HEADERS) or not is_loopback(client_host)


def inside(path: Path, root: Path) -> bool:
    """Both already resolved."""
    return path == root or root in path.parents


def relative_name(path: str | os.PathLike, root: str | os.PathLike | None) -> str:
    """`path` as shown to a web user: relative to the dataset root, else just the file name."""
    p = Path(path)
    if root not in (None, "", "demo"):
        r = Path(root)
        base = r.parent if r.suffix and not r.is_dir() else r  # a single-file source (.npz): its folder
        for a, b in ((p, base), (p.resolve(), base.resolve())):
            try:
                return a.relative_to(b).as_posix()
            except ValueError:
                continue
    return p.name


def is_plain_name(name: str) -> bool:
    """A bare file or folder name (checkpoint, run or set id): no folders, no '..', not hidden."""
    return bool(name) and not any(c in name for c in "/\\\0") and not name.startswith(".")


def plain_name(text: str | None, what: str) -> str:
    """`text` stripped, or a UserError when it is not a plain name."""
    name = (text or "").strip()
    if not is_plain_name(name):
        raise UserError(f"{what} {text!r} is not a plain name: pick one from the list")
    return name


@dataclass
class PathPolicy:
    """The allow-list one app process applies to every path that arrives over the web."""

    roots: list[Path] = field(default_factory=list)  # --data-root folders, resolved
    always: list[Path] = field(default_factory=list)  # the workspace's own folders
    allow_any: bool = False  # loopback without --data-root: any folder but the system ones
    remote: bool = False  # this copy answers a request from another machine (for_request)

    @classmethod
    def for_server(cls, host: str | None, data_roots: Iterable[str | os.PathLike] = (),
                   workspace_dirs: Iterable[str | os.PathLike] = ()) -> "PathPolicy":
        roots = []
        for r in data_roots:
            p = Path(r).expanduser().resolve()
            if not p.is_dir():
                raise UserError(f"--data-root {str(r)!r} is not a folder: give an existing folder of datasets")
            if p == Path(p.anchor) or any(inside(p, s) for s in PSEUDO_DIRS):
                raise UserError(f"--data-root {str(r)!r} would open the whole server or a system folder: "
                                "name the folder that holds the datasets")
            roots.append(p)
        always = [Path(w).expanduser().resolve() for w in workspace_dirs]
        return cls(roots=roots, always=always, allow_any=not roots and is_loopback(host))

    def for_request(self, request: object | None) -> "PathPolicy":
        """The policy for one web request (Gradio's gr.Request, or None for an in-process call): 'any
        folder' holds only for a browser on this machine, never through a proxy or from the network."""
        if not self.allow_any or request is None:
            return self
        host = getattr(getattr(request, "client", None), "host", None)
        if is_remote(host, getattr(request, "headers", None)):
            return dataclasses.replace(self, allow_any=False, remote=True)
        return self

    @property
    def allowed(self) -> list[Path]:
        return self.roots + self.always

    def describe(self) -> str:
        """For help texts and refusals: where paths may point, without naming server folders."""
        if self.allow_any:
            return "any folder on this server (it listens on this computer only)"
        if self.roots:
            names = ", ".join(r.name or str(r) for r in self.roots)
            return f"the data folder(s) {names} (paths relative to them) and this app's own uploads"
        if self.remote:
            return ("server folders only from a browser on the server itself (it was started without "
                    "--data-root); from here use the built-in demo or upload a zip")
        return ("no server folder: this server is reachable from the network and was started without "
                "--data-root, so only the built-in demo and uploaded zips can be used")

    def _refuse(self, text: str, what: str) -> UserError:
        return UserError(f"{what} {text!r} is outside the folders this server allows; it may use "
                         f"{self.describe()}")

    def allows(self, resolved: Path) -> bool:
        if any(inside(resolved, s) for s in PSEUDO_DIRS):
            return False
        if any(inside(resolved, r) for r in self.allowed):
            return True
        return self.allow_any and not any(inside(resolved, s) for s in SYSTEM_DIRS)

    def resolve(self, text: str | os.PathLike | None, what: str = "path") -> Path:
        """The resolved path for a user's text, or a UserError that does not reveal what exists outside.

        Relative paths are taken inside the first --data-root that has them (else the first root);
        with no --data-root (loopback) relative to the working folder, as on the command line."""
        raw = str(text or "").strip()
        if not raw:
            raise UserError(f"{what} is empty: type a path")
        if "\0" in raw or (raw.startswith("~") and not self.allow_any):  # ~ = a home folder, never a data root
            raise self._refuse(raw.replace("\0", ""), what)
        p = Path(raw).expanduser() if raw.startswith("~") else Path(raw)
        candidates = [p] if p.is_absolute() else ([r / p for r in self.roots] or [Path.cwd() / p])
        resolved = [c.resolve() for c in candidates]
        ok = [c for c in resolved if self.allows(c)]
        if not ok:
            raise self._refuse(raw, what)
        return next((c for c in ok if c.exists()), ok[0])

    def resolve_existing(self, text: str | os.PathLike | None, what: str = "path") -> Path:
        """resolve() plus a plain 'does not exist' (only ever said about allowed paths)."""
        path = self.resolve(text, what)
        if not path.exists():
            raise UserError(f"{what} {str(text).strip()!r} does not exist on the server: check the spelling")
        return path

    def resolve_csv(self, name: str | None, folder: Path) -> Path:
        """A labels CSV named relative to the (already allowed) data folder: .csv, .csv.gz or .tsv."""
        raw = (name or "").strip()
        rel = PurePosixPath(raw.replace("\\", "/"))
        if not raw or rel.is_absolute() or ".." in rel.parts or raw.startswith("~") or "\0" in raw:
            raise UserError(f"labels CSV {raw!r}: give its name relative to the data folder, e.g. labels.csv")
        if not raw.lower().endswith(CSV_SUFFIXES):
            raise UserError(f"labels CSV {raw!r} must end in {', '.join(CSV_SUFFIXES)}")
        base = folder if folder.is_dir() else folder.parent
        path = (base / rel).resolve()
        if not (inside(path, base.resolve()) and self.allows(path)):
            raise self._refuse(raw, "labels CSV")  # a symlink leading out of the folder
        if not path.is_file():
            raise UserError(f"labels CSV {raw!r} is not in the data folder")
        return path


def hide_paths(message: str, replacements: Sequence[tuple[str | os.PathLike, str]]) -> str:
    """Replace server folders in a message by what the user knows them as (longest first)."""
    for path, shown in sorted(((str(p), s) for p, s in replacements if str(p) not in ("", ".", "/")),
                              key=lambda x: -len(x[0])):
        message = message.replace(path + os.sep, f"{shown}/" if shown else "").replace(path, shown)
    return message

"""Where the server's passwords come from: files or environment variables, not the command line.

A password in argv is visible to every user of the machine (`ps`, /proc/*/cmdline, shell history),
so `--auth` / `--admin-password` still work but print a warning naming the safer option. (Named
credentials.py, not secrets.py, so it does not shadow the standard library's `secrets`.)
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from medgan_ui.errors import UserError

ENV_AUTH = "MEDGAN_AUTH"                        # USER:PASS, one pair per line
ENV_AUTH_FILE = "MEDGAN_AUTH_FILE"
ENV_ADMIN = "MEDGAN_ADMIN_PASSWORD"
ENV_ADMIN_FILE = "MEDGAN_ADMIN_PASSWORD_FILE"
ARGV_WARNING = ("warning: {flag} puts a password on the command line, where other users of this machine can "
                "read it (ps, shell history); use {safer} instead")


@dataclass
class Credentials:
    auth: list[tuple[str, str]] = field(default_factory=list)   # Gradio login users
    admin_password: str | None = None                            # reader-study admin view
    warnings: list[str] = field(default_factory=list)


def parse_pairs(lines: list[str], where: str) -> list[tuple[str, str]]:
    """USER:PASSWORD lines (blank lines and # comments skipped) -> [(user, password)]."""
    out = []
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, pw = line.partition(":")
        if not sep or not user.strip() or not pw:
            raise UserError(f"{where}, line {n}: write each login as USER:PASSWORD")
        out.append((user.strip(), pw))
    return out


def _read_secret_file(path: str | os.PathLike, flag: str) -> tuple[str, list[str]]:
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"{flag} {p}: cannot read it ({exc.strerror or exc}); give a readable file") from None
    warnings = []
    try:
        if os.name == "posix" and p.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            warnings.append(f"warning: {flag} {p} can be read by other users; run `chmod 600 {p}`")
    except OSError:
        pass
    return text, warnings


def read_auth_file(path: str | os.PathLike, flag: str = "--auth-file") -> tuple[list[tuple[str, str]], list[str]]:
    text, warnings = _read_secret_file(path, flag)
    pairs = parse_pairs(text.splitlines(), f"{flag} {path}")
    if not pairs:
        raise UserError(f"{flag} {path} holds no USER:PASSWORD line")
    return pairs, warnings


def read_password_file(path: str | os.PathLike, flag: str = "--admin-password-file") -> tuple[str, list[str]]:
    text, warnings = _read_secret_file(path, flag)
    pw = text.strip("\r\n")  # the first line, as `echo secret > file` writes it
    pw = pw.splitlines()[0] if pw else ""
    if not pw:
        raise UserError(f"{flag} {path} is empty; write the password on its first line")
    return pw, warnings


def resolve(auth_args: list[str], auth_file: str | None, admin_arg: str | None, admin_file: str | None,
            env: dict[str, str] | None = None) -> Credentials:
    """Command-line values, then files, then environment variables; every source may add logins."""
    env = dict(os.environ) if env is None else env
    creds = Credentials()
    if auth_args:
        creds.auth += parse_pairs(list(auth_args), "--auth")
        creds.warnings.append(ARGV_WARNING.format(flag="--auth", safer=f"--auth-file FILE or ${ENV_AUTH}"))
    for path, flag in ((auth_file, "--auth-file"), (env.get(ENV_AUTH_FILE), ENV_AUTH_FILE)):
        if path:
            pairs, warns = read_auth_file(path, flag)
            creds.auth += pairs
            creds.warnings += warns
    if env.get(ENV_AUTH):
        creds.auth += parse_pairs(env[ENV_AUTH].splitlines(), f"${ENV_AUTH}")

    if admin_arg:
        creds.admin_password = admin_arg
        creds.warnings.append(ARGV_WARNING.format(flag="--admin-password",
                                                  safer=f"--admin-password-file FILE or ${ENV_ADMIN}"))
    elif admin_file or env.get(ENV_ADMIN_FILE):
        flag = "--admin-password-file" if admin_file else ENV_ADMIN_FILE
        creds.admin_password, warns = read_password_file(admin_file or env[ENV_ADMIN_FILE], flag)
        creds.warnings += warns
    elif env.get(ENV_ADMIN):
        creds.admin_password = env[ENV_ADMIN]
    return creds

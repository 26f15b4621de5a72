"""The study database's schema, and the codes and tokens that guard it.

Codes (study access codes; personal reader codes, issued by the organiser or at a reader's first
sign-in, which bind the reader's name) are 12 characters from a 32-letter alphabet
(60 bits), tokens 256 bits; both are stored only as SHA-256 hashes, so a copy of the database does
not let anyone sign in.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets

from medgan_ui.errors import UserError

CALLS = ("real", "synthetic")
SCORE_KINDS = ("realism", "confidence")
MAX_READER_NAME_CHARS = 100  # a name is shown in tables and exports; longer input is refused, not cut
MAX_CODE_CHARS = 64  # codes are 14 characters; anything much longer is not a code
_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O/1/I: codes are read aloud and typed

SCHEMA = """
CREATE TABLE IF NOT EXISTS studies(
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  code_hash TEXT NOT NULL UNIQUE,
  settings TEXT NOT NULL,
  status TEXT NOT NULL CHECK(status IN ('open','closed')),
  created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cases(
  id TEXT PRIMARY KEY,
  study_id TEXT NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
  truth TEXT NOT NULL CHECK(truth IN ('real','synthetic')),
  source TEXT NOT NULL,
  labels TEXT NOT NULL,
  png BLOB NOT NULL,
  repeat_of TEXT REFERENCES cases(id));
CREATE INDEX IF NOT EXISTS cases_study ON cases(study_id);
CREATE TABLE IF NOT EXISTS readers(
  id INTEGER PRIMARY KEY,
  study_id TEXT NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  name_key TEXT NOT NULL,
  code_hash TEXT UNIQUE,
  order_json TEXT NOT NULL,
  created TEXT NOT NULL,
  UNIQUE(study_id, name_key));
CREATE TABLE IF NOT EXISTS sessions(
  token_hash TEXT PRIMARY KEY,
  image_key_hash TEXT NOT NULL UNIQUE,
  reader_id INTEGER NOT NULL REFERENCES readers(id) ON DELETE CASCADE,
  created TEXT NOT NULL,
  last_seen TEXT NOT NULL,
  current_case TEXT,
  served_at REAL);
CREATE TABLE IF NOT EXISTS ratings(
  id INTEGER PRIMARY KEY,
  reader_id INTEGER NOT NULL REFERENCES readers(id) ON DELETE CASCADE,
  case_id TEXT NOT NULL REFERENCES cases(id) ON DELETE CASCADE,
  call TEXT NOT NULL CHECK(call IN ('real','synthetic')),
  score INTEGER NOT NULL CHECK(score BETWEEN 1 AND 5),
  finding TEXT,
  comment TEXT NOT NULL DEFAULT '',
  ms INTEGER,
  created TEXT NOT NULL,
  updated TEXT NOT NULL,
  UNIQUE(reader_id, case_id));
CREATE TABLE IF NOT EXISTS meta(
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL);
"""


def hash_secret(secret: str) -> str:
    # codes and tokens are random with >= 60 bits, so a plain SHA-256 is enough (no password stretching)
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def image_key_for(token: str) -> str:
    """The key that goes into <img> URLs: derived one-way from the token, so the server can recompute it
    after a restart, while a leaked image URL (logs, history) cannot be turned into the token."""
    return hash_secret("image-key:" + token)[:32]


def new_code() -> str:
    raw = "".join(secrets.choice(_CODE_ALPHABET) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def normalise_code(code: str) -> str:
    raw = "".join(ch for ch in str(code or "").upper() if ch.isalnum())
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}" if len(raw) == 12 else raw


def normalise_name(name: str) -> str:
    return " ".join(str(name or "").split())


class CredentialError(UserError):
    """A wrong study code or reader code: counts towards the sign-in back-off."""


def reader_name(name: str) -> str:
    """A reader name as stored (spacing collapsed), or UserError when empty or too long."""
    name = normalise_name(name)
    if not name:
        raise UserError("please enter your name")
    if len(name) > MAX_READER_NAME_CHARS:
        raise UserError(f"reader name is {len(name):,} characters long; names are limited to "
                        f"{MAX_READER_NAME_CHARS} characters (MAX_READER_NAME_CHARS): enter a shorter name")
    if not name.isprintable():  # control / direction-override characters would disguise a name in tables
        raise UserError("reader name contains control characters: type it with letters, digits and punctuation only")
    return name


def code_hash(code: str | None) -> str:
    code = str(code or "")
    if len(code) > MAX_CODE_CHARS:
        raise CredentialError("unknown access code: check the code you were given")
    return hash_secret(normalise_code(code))


def check_reader_code(name: str, stored_hash: str | None, reader_code: str | None) -> None:
    """The name is taken in this study: only its reader code may continue it (compared in constant time)."""
    if stored_hash is None:  # joined before reader codes existed: the organiser has to issue one
        raise CredentialError(f"the name {name!r} is already taken in this study and has no reader code yet: "
                              "ask the organiser to issue one (medgan study reset-reader, or the admin view)")
    if not reader_code:
        raise CredentialError(f"the name {name!r} is already taken in this study. If that is you, enter the reader "
                              "code you were shown at your first sign-in; if you lost it, ask the organiser to reset "
                              "it. Otherwise sign in under another name.")
    if not hmac.compare_digest(code_hash(reader_code), stored_hash):
        raise CredentialError(f"wrong reader code for {name!r}: check the code you were shown at your first "
                              "sign-in, or ask the organiser to reset it")

"""Limits on what comes in over the web: upload size, zip contents, image pixel counts.

Each limit is a named setting with a default sized for real datasets (the full NIH ChestX-ray14 set
is 112k files, 45 GB as PNGs; a mammogram is about 20 megapixels) and an environment variable to
change it, e.g. MEDGAN_ZIP_MAX_TOTAL_MB=20000. Zips are unpacked by streaming each entry with the
limits checked as the bytes come, never trusting the sizes the archive declares, into a temporary
folder that is removed on any failure.
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import shutil
import stat
import time
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Iterable

from medgan_ui.errors import UserError

log = logging.getLogger("medgan_ui.security")
MB = 1024 * 1024


def _env_number(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(float(raw))
    except ValueError:
        value = 0
    if value <= 0:
        log.warning("%s=%r is not a positive number; using the default %s", name, raw, default)
        return default
    return value


MAX_UPLOAD_MB = _env_number("MEDGAN_MAX_UPLOAD_MB", 2048)  # one browser upload (Gradio refuses larger)
ZIP_MAX_TOTAL_MB = _env_number("MEDGAN_ZIP_MAX_TOTAL_MB", 8192)  # everything a zip unpacks to
ZIP_MAX_FILES = _env_number("MEDGAN_ZIP_MAX_FILES", 200_000)
ZIP_MAX_RATIO = _env_number("MEDGAN_ZIP_MAX_RATIO", 100)  # unpacked / packed bytes of one entry
ZIP_RATIO_FROM_MB = 1  # small entries (a CSV of repeated text) may compress better than that
MAX_IMAGE_PIXELS = _env_number("MEDGAN_MAX_IMAGE_PIXELS", 50_000_000)  # width x height (x frames)
UPLOAD_MAX_AGE_H = _env_number("MEDGAN_UPLOAD_MAX_AGE_H", 72)  # unpacked uploads kept this long
CHUNK = MB

UPLOAD_PREFIX = "upload-"
TMP_PREFIX = ".tmp-"


def apply_pil_limit(max_pixels: int | None = None) -> None:
    """Set PIL's own decompression-bomb limit explicitly (over it, Image.open warns; twice over, raises).
    Readers turn the warning into a per-file skip rather than silencing it."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = int(max_pixels or MAX_IMAGE_PIXELS)


def pixels_over_limit(n_pixels: int, max_pixels: int | None = None) -> str | None:
    """A skip reason when an image has more pixels than allowed, else None."""
    limit = int(max_pixels or MAX_IMAGE_PIXELS)
    if n_pixels > limit:
        return (f"image too large: {n_pixels:,} pixels, over the limit of {limit:,} "
                "(MEDGAN_MAX_IMAGE_PIXELS); downsample it first")
    return None


def upload_limit_bytes() -> int:
    return MAX_UPLOAD_MB * MB


# ---- zips ------------------------------------------------------------------------------------------
def _member_parts(name: str) -> tuple[str, ...] | None:
    """Path parts of a zip entry inside the target folder, or None when it would leave it."""
    clean = name.replace("\\", "/")
    p = PurePosixPath(clean)
    if not clean or "\0" in clean or p.is_absolute() or ":" in (p.parts[0] if p.parts else ""):
        return None
    parts = tuple(x for x in p.parts if x not in ("", "."))
    if any(x == ".." for x in parts):
        return None
    return parts


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _unpack(zf: zipfile.ZipFile, dest: Path, label: str, max_total: int, max_files: int, max_ratio: int) -> None:
    infos = zf.infolist()
    files = [i for i in infos if not i.is_dir()]
    if len(files) > max_files:
        raise UserError(f"{label} holds {len(files):,} files, more than the limit of {max_files:,} "
                        "(MEDGAN_ZIP_MAX_FILES); upload the dataset in parts or give a server folder")
    if sum(i.file_size for i in files) > max_total:  # the declared sizes: a first, cheap refusal
        raise UserError(f"{label} would unpack to more than {max_total // MB:,} MB (MEDGAN_ZIP_MAX_TOTAL_MB)")
    total = 0
    for info in infos:
        parts = _member_parts(info.filename)
        if parts is None:
            raise UserError(f"{label} contains an unsafe path {info.filename!r}; it was not unpacked")
        if not parts or parts[0] == "__MACOSX" or stat.S_ISLNK(info.external_attr >> 16):
            continue  # macOS litter; symbolic links are never followed or created
        target = dest.joinpath(*parts)
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        with zf.open(info) as src, open(target, "wb") as out:
            for block in iter(lambda: src.read(CHUNK), b""):
                written += len(block)
                total += len(block)
                if total > max_total:
                    raise UserError(f"{label} unpacks to more than {max_total // MB:,} MB "
                                    "(MEDGAN_ZIP_MAX_TOTAL_MB); it was not unpacked")
                if written > ZIP_RATIO_FROM_MB * MB and written > max_ratio * max(info.compress_size, 1):
                    raise UserError(f"{label}: entry {'/'.join(parts)!r} expands more than {max_ratio}x "
                                    "(MEDGAN_ZIP_MAX_RATIO), as a zip bomb does; it was not unpacked")
                out.write(block)


def safe_unzip(upload: str | os.PathLike, uploads_dir: str | os.PathLike, *, max_total_mb: int | None = None,
               max_files: int | None = None, max_ratio: int | None = None) -> Path:
    """Unpack an uploaded zip into uploads_dir/upload-<content hash>/ and return that folder.

    Streams every entry through the size, count and ratio limits into a hidden temporary folder that
    is renamed into place only when everything fits, and removed on any failure. The same zip
    uploaded again (or read for its columns, then loaded) reuses the folder already unpacked."""
    upload, uploads_dir = Path(upload), Path(uploads_dir)
    label = upload.name
    if not zipfile.is_zipfile(upload):
        raise UserError(f"{label} is not a .zip file: upload a zip of a dataset folder, or give a server path")
    uploads_dir.mkdir(parents=True, exist_ok=True)
    final = uploads_dir / f"{UPLOAD_PREFIX}{_file_digest(upload)[:20]}"
    if final.is_dir():
        os.utime(final)  # in use again: not old
        return final
    tmp = uploads_dir / f"{TMP_PREFIX}{secrets.token_hex(6)}"
    tmp.mkdir()
    try:
        with zipfile.ZipFile(upload) as zf:
            _unpack(zf, tmp, label, int(max_total_mb or ZIP_MAX_TOTAL_MB) * MB, int(max_files or ZIP_MAX_FILES),
                    int(max_ratio or ZIP_MAX_RATIO))
        try:
            tmp.rename(final)
        except OSError:  # the same zip finished unpacking in another request meanwhile
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError)):
            raise UserError(f"{label} is damaged and cannot be unpacked ({exc})") from None
        if isinstance(exc, RuntimeError) and "encrypted" in str(exc):
            raise UserError(f"{label} is password-protected: upload an unencrypted zip") from None
        if isinstance(exc, NotImplementedError):
            raise UserError(f"{label} uses a compression method this server cannot unpack: "
                            "re-create it with standard (deflate) compression") from None
        raise
    return final


def dataset_folder(unpacked: Path) -> Path:
    """A zip of one folder: that folder; otherwise the unpacked folder itself."""
    entries = [p for p in unpacked.iterdir() if not p.name.startswith(("__MACOSX", "."))]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else unpacked


def clean_old_uploads(uploads_dir: str | os.PathLike, max_age_h: float | None = None,
                      keep: Iterable[str | os.PathLike] = ()) -> list[str]:
    """Remove unpacked uploads not used for max_age_h hours and temporary folders left by a crash.

    `keep`: folders still needed (e.g. the training data of a run that may be resumed)."""
    uploads_dir = Path(uploads_dir)
    if not uploads_dir.is_dir():
        return []
    now = time.time()
    max_age_s = float(max_age_h if max_age_h is not None else UPLOAD_MAX_AGE_H) * 3600
    kept = {Path(k).resolve() for k in keep}
    removed = []
    for entry in uploads_dir.iterdir():
        if not entry.is_dir() or entry.is_symlink():
            continue
        resolved = entry.resolve()
        if any(k == resolved or resolved in k.parents for k in kept):
            continue
        age = now - entry.stat().st_mtime
        stale_tmp = entry.name.startswith(TMP_PREFIX) and age > 3600
        if (entry.name.startswith(UPLOAD_PREFIX) and age > max_age_s) or stale_tmp:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed

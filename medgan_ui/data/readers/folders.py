"""Image files on disk: one safe walk, one safe decode per file, and the class-per-sub-folder reader.

The walk and the decode are shared by every reader that reads ordinary image files (NIH,
generic CSV + folder, class folders), so a corrupt PNG or a stray text file is handled the same
way everywhere: skipped with a reason in the report, never a traceback.

Class-per-sub-folder layout:  ROOT/<finding>/<any image>; a folder called "normal", "No Finding",
"no_finding", "none" or "negative" (any case) means no finding. Patient id = file stem.
General labels come only from an optional labels CSV (ReadOptions.labels_csv) keyed by file name.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.preprocess import prepare
from medgan_ui.data.readers.base import ReadOptions, Report
from medgan_ui.errors import UserError
from medgan_ui.workspace import DEFAULT_ROOT

NAME = "folders"

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm", ".pnm"}
NORMAL_NAMES = {"normal", "no finding", "no_finding", "no-finding", "nofinding", "none", "negative"}
# label tables and notes that may sit next to images without being "skipped files"
COMPANION_EXTS = {".csv", ".gz", ".md", ".json"}


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTS


def walk_files(root: Path) -> list[Path]:
    """Every regular file below root, in a stable order.

    Hidden files and folders are ignored, and so is a default-named workspace: running
    `medgan data inspect .` inside a data folder puts ./medgan-workspace there.
    """
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != DEFAULT_ROOT)
        for name in sorted(filenames):
            if not name.startswith("."):
                out.append(Path(dirpath) / name)
    return out


def walk_images(root: Path, report: Report, *, exclude: set[Path] | None = None) -> dict[str, Path]:
    """Image files below root keyed by file name (first one wins; later duplicates are skipped).

    Non-image files are reported as skipped, except label tables and notes (csv, json, md).
    """
    exclude = exclude or set()
    found: dict[str, Path] = {}
    for path in walk_files(root):
        if path in exclude:
            continue
        if not is_image_name(path.name):
            if path.suffix.lower() not in COMPANION_EXTS:
                report.skip(path, f"not an image file (extension {path.suffix or 'none'!r})")
            continue
        first = found.get(path.name)
        if first is not None:
            report.skip(path, f"duplicate image name: {path.name} was already read from {first}")
            continue
        found[path.name] = path
    return found


def load_image(path: Path, opts: ReadOptions) -> np.ndarray | None:
    """Decode one file to uint8 [size, size]; on any problem record why in the report and return None."""
    try:
        if path.stat().st_size == 0:
            opts.report.skip(path, "empty file (0 bytes)")
            return None
        with warnings.catch_warnings():
            # PIL warns (not raises) on large images; we shrink them right after decoding
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.draft("L", (opts.size * 2, opts.size * 2))  # JPEG: decode at reduced scale
                img.load()
                img = _shrink(img, opts.size)
                return prepare(img, opts.size, opts.fit)
    except Image.DecompressionBombError:
        opts.report.skip(path, "image too large to decode safely (over PIL's pixel limit)")
    except Image.UnidentifiedImageError:
        opts.report.skip(path, "not a readable image (unknown or corrupt format)")
    except OSError as exc:  # truncated / broken data
        opts.report.skip(path, f"corrupt or truncated image: {exc}")
    except (ValueError, TypeError, SyntaxError, MemoryError) as exc:
        opts.report.skip(path, f"cannot convert image: {exc}")
    return None


def _shrink(img: Image.Image, size: int) -> Image.Image:
    """Cheap integer box-reduce of very large images before the exact antialiased resize."""
    factor = min(img.width, img.height) // (size * 2)
    if factor < 2:
        return img
    try:
        return img.reduce(factor)
    except ValueError:  # modes reduce() does not support (16-bit, palette, 1-bit): resize exactly later
        return img


def empty_error(root: Path, report: Report, what: str = "images") -> UserError:
    """Clear message when nothing could be read: name the folder and the first reasons."""
    msg = f"no readable {what} found in {root}"
    if report.skipped:
        shown = "; ".join(f"{Path(s.path).name}: {s.reason}" for s in report.skipped[:5])
        msg += f" ({len(report.skipped)} files skipped, e.g. {shown})"
    elif report.missing_images:
        msg += f" ({report.missing_images} label rows name images that are not in the folder)"
    return UserError(msg + ". Check the path and format (see `medgan data inspect --help`).")


def detect(path: Path) -> bool:
    """Sub-folders that hold image files (looks at names only, a few per folder)."""
    if not path.is_dir():
        return False
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for i, f in enumerate(sub.iterdir()):
            if is_image_name(f.name):
                return True
            if i > 50:
                break
    return False


def read(path: Path, opts: ReadOptions) -> ImageSet:
    from medgan_ui.data.readers import csv_folder as tables  # label encoding helpers

    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a folder: the class-folder format needs ROOT/<finding>/<images>")
    report = opts.report
    general_rows = _general_rows(path, opts)
    exclude = {Path(opts.labels_csv).resolve()} if opts.labels_csv else set()
    images, sets, pids, sources, gen_values = [], [], [], [], []
    for file in walk_files(path):
        if file.resolve() in exclude:
            continue
        rel = file.relative_to(path)
        if not is_image_name(file.name):
            if file.suffix.lower() not in COMPANION_EXTS:
                report.skip(file, f"not an image file (extension {file.suffix or 'none'!r})")
            continue
        if len(rel.parts) < 2:
            report.skip(file, "image is not inside a class sub-folder (ROOT/<finding>/image)")
            continue
        if general_rows is not None and file.name not in general_rows:
            report.skip(file, f"no row for {file.name} in labels CSV {opts.labels_csv}")
            continue
        arr = load_image(file, opts)
        if arr is None:
            continue
        folder = rel.parts[0]
        images.append(arr)
        sets.append(set() if folder.strip().lower() in NORMAL_NAMES else {folder})
        pids.append(file.stem)
        sources.append(str(file))
        if general_rows is not None:
            gen_values.append(general_rows[file.name])
    if not images:
        raise empty_error(path, report)
    columns = {c: [row.get(c) for row in gen_values] for c in opts.general_columns} if general_rows else {}
    return tables.make_imageset(images, columns, sets, pids, sources, report)


def _general_rows(root: Path, opts: ReadOptions) -> dict[str, dict[str, str]] | None:
    """Optional labels CSV for class folders: file name -> row (general columns only)."""
    if not opts.labels_csv:
        return None
    from medgan_ui.data.readers import csv_folder as tables

    csv_path = tables.resolve_csv(root, opts.labels_csv)
    header, rows = tables.read_csv(csv_path)
    key = opts.image_column or tables.guess_image_column(csv_path, header, rows)
    tables.require_columns(csv_path, header, [key, *opts.general_columns])
    out: dict[str, dict[str, str]] = {}
    for row in rows:
        out.setdefault(Path(row[key]).name, row)
    return out

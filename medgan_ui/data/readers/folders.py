"""Image files on disk: one safe walk, one safe decode per file, and the class-per-sub-folder reader.

The walk and the decode are shared by every reader that reads ordinary image files (NIH,
generic CSV + folder, class folders), so a corrupt PNG or a stray text file is handled the same
way everywhere: skipped with a reason in the report, never a traceback.

Class-per-sub-folder layout:  ROOT/<finding>/<any image> (deeper folders allowed); a folder called
"normal", "No Finding", "no_finding", "none" or "negative" (any case) means no finding. Patient
id = file stem. ROOT/<train|val|test>/<finding>/... (Kaggle style) keeps that split. Files inside
a "masks" folder (COVID-19 Radiography style) are segmentation masks and are skipped.
General labels come only from an optional labels CSV (ReadOptions.labels_csv) keyed by file name.
"""
from __future__ import annotations

import os
import warnings
from itertools import islice
from pathlib import Path

import numpy as np
from PIL import Image

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.preprocess import prepare
from medgan_ui.data.readers.base import ReadOptions, Report
from medgan_ui.errors import UserError
from medgan_ui.security import limits
from medgan_ui.workspace import DEFAULT_ROOT

limits.apply_pil_limit()  # PIL's pixel limit set from MEDGAN_MAX_IMAGE_PIXELS, not left at its default

NAME = "folders"

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", ".webp", ".pgm", ".ppm", ".pnm"}
NORMAL_NAMES = {"normal", "no finding", "no_finding", "no-finding", "nofinding", "none", "negative"}
# documentation and label tables at the top of a dataset folder (NIH ships PDFs and split lists)
DOC_EXTS = {".csv", ".gz", ".md", ".json", ".txt", ".pdf", ".xlsx", ".xls", ".doc", ".docx", ".html", ".rtf"}
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip", ".7z", ".rar")
SPLIT_FOLDERS = {"train": 0, "training": 0, "val": 1, "valid": 1, "validation": 1, "dev": 1, "test": 2, "testing": 2}
MASK_FOLDERS = {"mask", "masks", "segmentation", "segmentations"}
SKIP_DIRS = {DEFAULT_ROOT, "__MACOSX", "__pycache__"}  # a workspace inside the data, macOS zip litter


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_EXTS


def walked_dir(name: str) -> bool:
    """Folders every walk descends into (readers, format detection and the cache fingerprint alike)."""
    return not name.startswith(".") and name not in SKIP_DIRS


def walk_files(root: Path) -> list[Path]:
    """Every regular file below root, in a stable order.

    Hidden files and folders are ignored, and so is a default-named workspace: running
    `medgan data inspect .` inside a data folder puts ./medgan-workspace there.
    """
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if walked_dir(d))
        for name in sorted(filenames):
            if not name.startswith("."):
                out.append(Path(dirpath) / name)
    return out


def non_image_reason(path: Path, root: Path) -> str | None:
    """Why a non-image file is skipped; None for documentation at the top level (not worth a line)."""
    lower = path.name.lower()
    if lower.endswith(ARCHIVE_SUFFIXES):
        return "archive: unpack it into the folder first"
    if path.parent == root and path.suffix.lower() in DOC_EXTS:
        return None
    if path.suffix.lower() in (".csv", ".json"):  # label tables in sub-folders are not images either
        return None
    return f"not an image file (extension {path.suffix or 'none'!r})"


class ImageIndex:
    """Image files below a root, found by relative path, file name or file stem (walked once)."""

    def __init__(self, root: Path, report: Report, exclude: set[Path] | None = None) -> None:
        self.root = root
        self.files: list[Path] = []
        self.by_rel: dict[str, Path] = {}
        self.by_name: dict[str, list[Path]] = {}
        self.by_stem: dict[str, list[Path]] = {}
        for path in walk_files(root):
            if exclude and path in exclude:
                continue
            if not is_image_name(path.name):
                reason = non_image_reason(path, root)
                if reason:
                    report.skip(path, reason)
                continue
            self.files.append(path)
            self.by_rel[path.relative_to(root).as_posix()] = path
            self.by_name.setdefault(path.name, []).append(path)
            self.by_stem.setdefault(path.stem, []).append(path)

    def find(self, value: str) -> list[Path]:
        """Files a label-table entry may mean: a relative path (possibly with leading folders the
        user's copy lacks), else a file name or a stem; several hits = duplicate names."""
        parts = [p for p in value.strip().replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts:
            return []
        if len(parts) > 1:
            for k in range(len(parts) - 1):
                hit = self.by_rel.get("/".join(parts[k:]))
                if hit is not None:
                    return [hit]
            # a moved file is still found by name, but only when that name is unambiguous
            hits = self.by_name.get(parts[-1], [])
            return hits if len(hits) == 1 else []
        return self.by_name.get(parts[-1]) or self.by_stem.get(parts[-1]) or []


def load_image(path: Path, opts: ReadOptions) -> np.ndarray | None:
    """Decode one file to uint8 [size, size]; on any problem record why in the report and return None."""
    try:
        if path.stat().st_size == 0:
            opts.report.skip(path, "empty file (0 bytes)")
            return None
        with warnings.catch_warnings():
            # over the pixel limit PIL only warns (it raises at twice the limit): refuse both, before decoding
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.draft("L", (opts.size * 2, opts.size * 2))  # JPEG: decode at reduced scale
                img.load()
                img = _shrink(img, opts.size)
                return prepare(img, opts.size, opts.fit)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        opts.report.skip(path, _too_large(exc))
    except Image.UnidentifiedImageError:
        opts.report.skip(path, "not a readable image (unknown or corrupt format)")
    except OSError as exc:  # truncated / broken data
        opts.report.skip(path, f"corrupt or truncated image: {exc}")
    except (ValueError, TypeError, SyntaxError, MemoryError) as exc:
        opts.report.skip(path, f"cannot convert image: {exc}")
    return None


def _too_large(exc: Exception) -> str:
    """PIL's message carries the pixel count ('Image size (N pixels) exceeds limit ...')."""
    import re

    m = re.search(r"\((\d+) pixels\)", str(exc))
    n = int(m.group(1)) if m else Image.MAX_IMAGE_PIXELS + 1
    return limits.pixels_over_limit(n, Image.MAX_IMAGE_PIXELS) or "image too large to decode safely"


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


def _class_depth(root: Path) -> int:
    """1 for ROOT/<finding>/..., 2 for ROOT/<train|val|test>/<finding>/... (split kept as given)."""
    subs = [p.name.lower() for p in root.iterdir() if p.is_dir() and walked_dir(p.name)]
    return 2 if subs and all(s in SPLIT_FOLDERS for s in subs) else 1


def detect(path: Path) -> bool:
    """Sub-folders (or train/val/test sub-sub-folders) that hold image files; a few names per folder."""
    if not path.is_dir():
        return False
    level = [path]
    for _ in range(_class_depth(path)):
        level = [d for p in level for d in sorted(p.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    for sub in level:
        for i, f in enumerate(sub.iterdir()):
            if is_image_name(f.name) or (f.is_dir() and any(is_image_name(g.name) for g in islice(f.iterdir(), 20))):
                return True
            if i > 50:
                break
    return False


def read(path: Path, opts: ReadOptions) -> ImageSet:
    from medgan_ui.data.readers import csv_folder as tables  # label encoding helpers

    path = Path(path).resolve()
    if not path.is_dir():
        raise UserError(f"{path} is not a folder: the class-folder format needs ROOT/<finding>/<images>")
    report = opts.report
    general_rows = _general_rows(path, opts)
    labels_csv = tables.resolve_csv(path, opts.labels_csv) if opts.labels_csv else None
    depth = _class_depth(path)
    if depth == 2:
        report.notes.append("train/val/test folders found: their split is kept; findings from the folders inside them")
    images, sets, pids, sources, gen_values, split = [], [], [], [], [], []
    for file in walk_files(path):
        if file == labels_csv:
            continue
        parts = file.relative_to(path).parts
        if not is_image_name(file.name):
            reason = non_image_reason(file, path)
            if reason:
                report.skip(file, reason)
            continue
        if len(parts) <= depth:
            report.skip(file, "image is not inside a class sub-folder (ROOT/<finding>/image)")
            continue
        if any(p.lower() in MASK_FOLDERS for p in parts[depth:-1]):
            report.skip(file, "segmentation mask (inside a masks folder), not an image to learn from")
            continue
        if general_rows is not None and file.name not in general_rows:
            report.skip(file, f"no row for {file.name} in labels CSV {opts.labels_csv}")
            continue
        arr = load_image(file, opts)
        if arr is None:
            continue
        folder = parts[depth - 1]
        images.append(arr)
        sets.append(set() if folder.strip().lower() in NORMAL_NAMES else {folder})
        pids.append(file.stem)
        sources.append(str(file))
        split.append(SPLIT_FOLDERS.get(parts[0].lower(), 0))
        if general_rows is not None:
            gen_values.append(general_rows[file.name])
    if not images:
        raise empty_error(path, report)
    columns = {c: [row.get(c) for row in gen_values] for c in opts.general_columns} if general_rows else {}
    ds = tables.make_imageset(images, columns, sets, pids, sources, report)
    if depth == 2:
        ds.split = np.asarray(split, dtype=np.int8)
    return ds


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

"""DICOM folder (pydicom): radiographs exported from a PACS.

General labels from tags: sex (PatientSex F/M), view (ViewPosition AP/PA), optional age band
(PatientAge). Findings come from a labels CSV keyed by file name or SOPInstanceUID
(ReadOptions.labels_csv, or the one CSV lying next to the files), or - without a CSV - from the
sub-folder names when every file sits exactly one folder below the root (ROOT/<finding>/x.dcm;
"normal"-like names mean none).
Deeper trees (PATIENT/STUDY/SERIES) carry no labels in their folder names, so they get none.

Pixels: rescale slope/intercept, then the VOI window (ReadOptions.window, else the file's first
WindowCenter/WindowWidth, else min/max of the pixel data), MONOCHROME1 inverted, mapped to 8 bit.
Multi-frame files are skipped with a reason rather than silently reduced to one frame: a stack
(CT, cine, tomosynthesis) is not a radiograph, and picking a frame is the user's decision.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.preprocess import prepare_array
from medgan_ui.data.readers import csv_folder, folders
from medgan_ui.data.readers.base import ReadOptions, Report
from medgan_ui.errors import UserError
from medgan_ui.security import limits

NAME = "dicom"

DICOM_EXTS = {".dcm", ".dicom", ".dic"}
KEY_COLUMNS = ("file", "filename", "file_name", "image", "image index", "path", "sopinstanceuid", "sop_instance_uid")
FINDING_COLUMNS = ("Finding Labels", "findings", "finding", "labels", "label")


def has_dicm_magic(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return head[128:132] == b"DICM"


def detect(path: Path) -> bool:
    """Files named *.dcm, or (for extension-less PACS exports) a DICM header in the first few files."""
    if path.is_file():
        return path.suffix.lower() in DICOM_EXTS or has_dicm_magic(path)
    if not path.is_dir():
        return False
    probed = 0
    for i, file in enumerate(folders.walk_files(path)):
        if i >= 5000:  # detection must stay cheap on huge trees
            break
        if file.suffix.lower() in DICOM_EXTS:
            return True
        if not file.suffix and probed < 20:
            probed += 1
            if has_dicm_magic(file):
                return True
    return False


def read(path: Path, opts: ReadOptions) -> ImageSet:
    import pydicom  # imported here so the other readers work without it

    root = Path(path).resolve()
    files = [root] if root.is_file() else folders.walk_files(root)
    base = root.parent if root.is_file() else root
    report = opts.report
    labels = _LabelTable(base, opts) if opts.labels_csv else _auto_labels(base, opts)
    candidates = [f for f in files if not _not_dicom_reason(f, base)[0]]
    by_folder = labels is None and bool(candidates) and all(len(f.relative_to(base).parts) == 2 for f in candidates)
    if labels is None:
        report.notes.append(
            "findings from sub-folder names" if by_folder else "no labels CSV and no class sub-folders: no findings"
        )
    images, sets, pids, sources = [], [], [], []
    general: dict[str, list[str | None]] = {"sex": [], "view": []}
    if opts.age_bands:
        general["age_band"] = []
    for file in files:
        if labels is not None and file == labels.path:
            continue
        excluded, reason = _not_dicom_reason(file, base)
        if excluded:
            if reason:
                report.skip(file, reason)
            continue
        try:  # every header and pixel access of one file: a damaged file is skipped, never the whole load
            row = _read_one(pydicom, file, base, labels, by_folder, opts)
        except _Skip as exc:
            report.skip(file, str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - odd values in any tag are a per-file problem
            report.skip(file, f"cannot read this DICOM file: {type(exc).__name__}: {str(exc)[:200]}")
            continue
        if row is None:
            continue
        arr, finding_set, pid, tags = row
        images.append(arr)
        sets.append(finding_set)
        pids.append(pid)
        sources.append(str(file))
        for name in general:
            general[name].append(tags[name])
    if labels is not None:
        labels.report_unused(report)
    if not images:
        raise folders.empty_error(base, report, "DICOM images")
    known = {"sex": ["F", "M"], "view": ["AP", "PA"], "age_band": csv_folder.AGE_BANDS}
    return csv_folder.make_imageset(images, general, sets, pids, sources, report, known=known)


class _Skip(Exception):
    """This file is skipped, with this reason."""


def _read_one(pydicom: Any, file: Path, base: Path, labels: "_LabelTable | None", by_folder: bool,
              opts: ReadOptions) -> tuple[np.ndarray, set[str], str, dict[str, str | None]] | None:
    """(pixels, findings, patient id, general tags) of one file, or None when it was skipped."""
    ds = _read_header(pydicom, file, opts.report)
    if ds is None:
        return None
    if labels is not None:
        finding_set = labels.lookup(file, str(ds.get("SOPInstanceUID", "")))
        if finding_set is None:
            raise _Skip(f"no row for {file.name} (or its SOPInstanceUID) in {labels.path.name}")
    elif by_folder:
        folder = file.relative_to(base).parts[0]
        finding_set = set() if folder.strip().lower() in folders.NORMAL_NAMES else {folder}
    else:
        finding_set = set()
    arr = _pixels(ds, file, opts)
    if arr is None:
        return None
    tags = {"sex": str(ds.get("PatientSex", "") or "").strip().upper() or None,
            "view": str(ds.get("ViewPosition", "") or "").strip().upper() or None}
    if opts.age_bands:
        tags["age_band"] = csv_folder.age_band(str(ds.get("PatientAge", "") or ""))
    return arr, finding_set, str(ds.get("PatientID", "") or "").strip() or file.stem, tags


def _number(ds: Any, keyword: str, default: float, integer: bool = False) -> float:
    """A numeric tag read with care: absent -> default; text, several values or inf -> _Skip naming the tag."""
    value = ds.get(keyword, None)
    if value is None or value == "":
        return default
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x) or (integer and not x.is_integer()):
        raise _Skip(f"tag {keyword} is not {'a whole number' if integer else 'a number'} ({str(value)[:40]!r})")
    return int(x) if integer else x


def _not_dicom_reason(file: Path, base: Path) -> tuple[bool, str | None]:
    """(excluded, reason) for files known not to be DICOM by name: documents, tables, ordinary images."""
    if folders.is_image_name(file.name):
        return True, "not a DICOM file (an ordinary image: use the folders or csv format for these)"
    if file.suffix.lower() in folders.DOC_EXTS:
        return True, folders.non_image_reason(file, base)
    return False, None


def _read_header(pydicom: Any, file: Path, report: Report) -> Any | None:
    if file.stat().st_size == 0:
        report.skip(file, "empty file (0 bytes)")
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about odd but readable tags
            ds = pydicom.dcmread(file, defer_size="4 MB")  # pixel bytes are read only after the size check
    except pydicom.errors.InvalidDicomError:
        report.skip(file, "not a DICOM file (no DICM header)")
        return None
    except Exception as exc:  # noqa: BLE001 - any parser failure is a per-file skip, not a crash
        report.skip(file, f"cannot parse DICOM: {type(exc).__name__}: {exc}")
        return None
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        sop = getattr(ds.get("SOPClassUID"), "name", None) or "unknown SOP class"
        report.skip(file, f"DICOM file has no pixel data ({sop})")
        return None
    frames = _number(ds, "NumberOfFrames", 1, integer=True) or 1
    if frames > 1:
        raise _Skip(f"multi-frame DICOM ({frames} frames): only single-frame images are read; "
                    "export the frame you want as its own file")
    rows, cols = _number(ds, "Rows", 0, integer=True), _number(ds, "Columns", 0, integer=True)
    samples = _number(ds, "SamplesPerPixel", 1, integer=True) or 1
    if rows <= 0 or cols <= 0 or samples <= 0:
        raise _Skip(f"tags Rows/Columns/SamplesPerPixel do not give an image size ({rows} x {cols} x {samples})")
    too_large = limits.pixels_over_limit(rows * cols * frames * samples)  # before pixel_array decodes anything
    if too_large:
        raise _Skip(f"{too_large} ({rows} x {cols} x {samples} samples in the header)")
    return ds


def _pixels(ds: Any, file: Path, opts: ReadOptions) -> np.ndarray | None:
    """Stored values -> modality values -> VOI window -> display [0, 1] -> uint8 square."""
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            raw = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - missing decoder plugins raise several types
        if syntax is not None and syntax.is_compressed:
            opts.report.skip(file, f"compressed pixel data ({syntax.name}) cannot be decoded here: "
                                   f"install a decoder (e.g. pylibjpeg, python-gdcm) or export uncompressed")
        else:
            opts.report.skip(file, f"pixel data cannot be decoded: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        return None
    arr = np.asarray(raw, dtype=np.float64)
    if arr.ndim == 3:  # colour (already RGB after pydicom's YBR conversion)
        arr = arr.mean(axis=-1)
    if arr.ndim != 2 or arr.size == 0:
        opts.report.skip(file, f"unexpected pixel array shape {tuple(arr.shape)}")
        return None
    arr = arr * (_number(ds, "RescaleSlope", 1) or 1) + _number(ds, "RescaleIntercept", 0)
    window = opts.window or _file_window(ds)
    if window is not None:
        center, width = window
        arr = np.clip((arr - (center - 0.5)) / max(width - 1.0, 1e-6) + 0.5, 0.0, 1.0)
    else:
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    if str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        arr = 1.0 - arr  # MONOCHROME1: low values are white
    return prepare_array(arr.astype(np.float32), opts.size, opts.fit)


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        many = isinstance(value, Sequence) and not isinstance(value, (str, bytes))  # pydicom MultiValue
        return float(value[0] if many else value)
    except (TypeError, ValueError, IndexError):
        return None


def _file_window(ds: Any) -> tuple[float, float] | None:
    center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    return center, width


def _auto_labels(base: Path, opts: ReadOptions) -> "_LabelTable | None":
    """A single CSV next to the DICOM files is used as the labels CSV when it looks like one."""
    csvs = csv_folder.find_csvs(base) if base.is_dir() else []
    if len(csvs) != 1:
        return None
    try:
        table = _LabelTable(base, opts, csvs[0])
    except UserError as exc:
        opts.report.notes.append(f"{csvs[0].name} not used for findings: {exc}")
        return None
    opts.report.notes.append(f"findings from {csvs[0].name} (found next to the DICOM files)")
    return table


class _LabelTable:
    """Findings per file name or SOPInstanceUID from a CSV."""

    def __init__(self, root: Path, opts: ReadOptions, path: Path | None = None) -> None:
        self.path = path or csv_folder.resolve_csv(root, opts.labels_csv or "")
        header, rows = csv_folder.read_csv(self.path)
        key = opts.image_column or next((c for c in header if c.strip().lower() in KEY_COLUMNS), None)
        if key is None:
            key = csv_folder.guess_image_column(self.path, header, rows)
        finding_col = opts.finding_column or (None if opts.finding_columns else
                                              next((c for c in FINDING_COLUMNS if c in header), None))
        if finding_col is None and not opts.finding_columns:
            raise UserError(f"labels CSV {self.path.name} has no findings column: name it with --finding-column "
                            f"or --finding-columns (columns: {', '.join(header)})")
        csv_folder.require_columns(self.path, header, [key, finding_col, *opts.finding_columns])
        self.rows: dict[str, set[str]] = {}
        self.used: set[str] = set()
        for row in rows:
            k = row.get(key, "")
            if not k or k in self.rows:
                continue
            if opts.finding_columns:
                self.rows[k] = {c for c in opts.finding_columns if csv_folder.parse_flag(row.get(c, "")) == 1}
            else:
                parts = (p.strip() for p in row.get(finding_col or "", "").split(opts.finding_separator))
                self.rows[k] = {p for p in parts if p and p.lower() != opts.no_finding_value.lower()}

    def lookup(self, file: Path, uid: str) -> set[str] | None:
        for k in (file.name, uid, file.stem):
            if k and k in self.rows:
                self.used.add(k)
                return self.rows[k]
        return None

    def report_unused(self, report: Report) -> None:
        for k in self.rows:
            if k not in self.used:
                report.missing(k)

"""Generic label CSV + image folder, and the label-table helpers the NIH and DICOM readers share.

The user names the image column, the general-label columns and the findings, given either as one
column joined by a separator ("Effusion|Nodule") or as one 0/1 column per finding. Images may lie
anywhere below the folder; the image column may hold bare file names or relative paths.
CSV rows whose image is absent are counted (report.missing_images), never fatal.
"""
from __future__ import annotations

import csv
import gzip
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.readers import folders
from medgan_ui.data.readers.base import ReadOptions, Report
from medgan_ui.errors import UserError

NAME = "csv"

AGE_BANDS = ["0-19", "20-39", "40-59", "60-79", "80+"]
TRUE_VALUES = {"1", "1.0", "true", "yes", "y", "t", "positive"}
FALSE_VALUES = {"0", "0.0", "false", "no", "n", "f", "negative", ""}


# ---- CSV files -------------------------------------------------------------------------------
def resolve_csv(root: Path, name: str) -> Path:
    """A CSV given as a path, or as a name inside the data folder."""
    p = Path(name).expanduser()
    for cand in ((p,) if p.is_absolute() else (root / p, p)):
        if cand.is_file():
            return cand.resolve()
    raise UserError(f"labels CSV {name!r} not found (looked for it as given and inside {root})")


def find_csvs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith((".csv", ".csv.gz")))


def open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")  # type: ignore[return-value]
    return open(path, "r", encoding="utf-8-sig", newline="")


def csv_reader(fh: io.TextIOBase) -> Iterator[list[str]]:
    """csv.reader over an open table; the delimiter is ',' unless the header line has more ';' or
    tabs (European Excel exports use ';'). Peeks at the header and rewinds: no second open."""
    first = fh.readline()
    fh.seek(0)
    return csv.reader(fh, delimiter=max((",", ";", "\t"), key=first.count))


def read_header(path: Path) -> list[str]:
    try:
        with open_text(path) as fh:
            return [c.strip() for c in next(csv_reader(fh), [])]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read labels CSV {path}: {exc}") from None


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows (dicts of stripped strings). Whole-file: only for small user tables."""
    try:
        with open_text(path) as fh:
            reader = csv_reader(fh)
            header = [c.strip() for c in next(reader, [])]
            rows = [{h: v.strip() for h, v in zip(header, row)} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read labels CSV {path}: {exc}") from None
    if not header:
        raise UserError(f"labels CSV {path} is empty (no header row)")
    return header, rows


def require_columns(path: Path, header: list[str], wanted: Iterable[str | None]) -> None:
    missing = [c for c in wanted if c is not None and c not in header]
    if missing:
        raise UserError(
            f"labels CSV {path.name} has no column {', '.join(repr(c) for c in missing)}; "
            f"its columns are: {', '.join(header)}"
        )


def guess_image_column(path: Path, header: list[str], rows: list[dict[str, str]]) -> str:
    """The first column whose values look like image file names."""
    sample = rows[:20]
    for col in header:
        if sample and all(folders.is_image_name(r.get(col, "")) or r.get(col, "").lower().endswith(".dcm") for r in sample):
            return col
    raise UserError(
        f"cannot tell which column of {path.name} names the image files; give it with --image-column "
        f"(columns: {', '.join(header)})"
    )


# ---- label encoding --------------------------------------------------------------------------
def age_band(value: str | None) -> str | None:
    """Age in years (NIH '57', DICOM '057Y' / '006M') -> band name, None when unknown."""
    if not value:
        return None
    v = value.strip().upper()
    unit = v[-1] if v[-1:] in ("Y", "M", "W", "D") else "Y"
    try:
        n = float(v.rstrip("YMWD"))
    except ValueError:
        return None
    years = n / {"Y": 1, "M": 12, "W": 52, "D": 365}[unit]
    if not 0 <= years <= 120:
        return None
    return AGE_BANDS[min(int(years // 20), len(AGE_BANDS) - 1)]


def encode_general(
    name: str, values: list[str | None], known: list[str] | None, report: Report
) -> tuple[np.ndarray, list[str]]:
    """Codes [N] and category names. Values outside `known` become -1 (unknown) with a note."""
    clean = [v.strip() if isinstance(v, str) and v.strip() else None for v in values]
    cats = list(known) if known is not None else sorted({v for v in clean if v is not None})
    index = {c: i for i, c in enumerate(cats)}
    codes = np.array([index.get(v, -1) if v is not None else -1 for v in clean], dtype=np.int64)
    odd = sorted({v for v in clean if v is not None and v not in index})
    n_odd = sum(1 for v in clean if v is not None and v not in index)
    if odd:
        report.notes.append(
            f"{name}: {n_odd} image(s) with unrecognised value(s) {odd[:5]} coded as unknown (expected one of {cats})"
        )
    n_empty = sum(1 for v in clean if v is None)
    if n_empty:
        report.notes.append(f"{name}: {n_empty} image(s) without a value, coded as unknown")
    return codes, cats


def make_imageset(
    images: list[np.ndarray],
    general: dict[str, list[str | None]],
    finding_sets: list[set[str]],
    patient_ids: list[str],
    sources: list[str],
    report: Report,
    known: dict[str, list[str]] | None = None,
    findings: list[str] | None = None,
) -> ImageSet:
    """Assemble an ImageSet from per-image lists (findings default to the sorted names present)."""
    known = known or {}
    names = list(general)
    codes, values = [], {}
    for name in names:
        c, cats = encode_general(name, general[name], known.get(name), report)
        codes.append(c)
        values[name] = cats
    n = len(images)
    gen = np.stack(codes, axis=1) if codes else np.zeros((n, 0), dtype=np.int64)
    findings = list(findings) if findings is not None else sorted(set().union(*finding_sets)) if finding_sets else []
    col = {f: j for j, f in enumerate(findings)}
    det = np.zeros((n, len(findings)), dtype=np.uint8)
    for i, s in enumerate(finding_sets):
        for f in s:
            det[i, col[f]] = 1
    return ImageSet(
        images=torch.from_numpy(np.stack(images)),
        general_names=names,
        general_values=values,
        general=torch.from_numpy(gen),
        findings=findings,
        detailed=torch.from_numpy(det),
        patient_id=np.asarray(patient_ids, dtype=str),
        source=sources,
    )


def parse_flag(value: str) -> int | None:
    v = value.strip().lower()
    return 1 if v in TRUE_VALUES else 0 if v in FALSE_VALUES else None


# ---- the shared table + folder read ----------------------------------------------------------
@dataclass
class TableSpec:
    """Which CSV columns mean what (NIH fills it with fixed names, the generic reader from options)."""

    image_column: str
    general: dict[str, str] = field(default_factory=dict)  # label name -> column
    known: dict[str, list[str]] = field(default_factory=dict)  # fixed categories per label name
    finding_column: str | None = None
    separator: str = "|"
    no_finding: str = "No Finding"
    finding_columns: list[str] = field(default_factory=list)
    patient_column: str | None = None
    age_column: str | None = None  # adds an "age_band" general label

    def columns(self) -> list[str | None]:
        return [self.image_column, *self.general.values(), self.finding_column, *self.finding_columns,
                self.patient_column, self.age_column]


def read_table_folder(root: Path, csv_path: Path, spec: TableSpec, opts: ReadOptions) -> ImageSet:
    """Walk the folder once, stream the CSV once (only matching rows are kept), decode the images."""
    report = opts.report
    index = folders.ImageIndex(root, report, exclude={csv_path})
    header = read_header(csv_path)
    require_columns(csv_path, header, spec.columns())
    pos = {c: i for i, c in enumerate(header)}
    key = pos[spec.image_column]
    matched: dict[Path, tuple[str, list[str]]] = {}  # file -> (CSV entry, row), in CSV order
    duplicates: set[Path] = set()
    repeated_rows = 0
    try:
        with open_text(csv_path) as fh:
            reader = csv_reader(fh)
            next(reader)
            for row in reader:
                entry = row[key].strip() if len(row) > key else ""
                if not entry:
                    continue
                hits = index.find(entry)
                if not hits:
                    report.missing(entry)
                    continue
                for dup in hits[1:]:  # same name in two folders: the first one found is used
                    if dup not in duplicates:
                        duplicates.add(dup)
                        report.skip(dup, f"duplicate image name: {dup.name} was already read from {hits[0]}")
                if hits[0] in matched:
                    repeated_rows += 1
                else:
                    matched[hits[0]] = (entry, row)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read labels CSV {csv_path}: {exc}") from None
    if repeated_rows:
        report.notes.append(f"{csv_path.name}: {repeated_rows} rows repeat an image already listed (first row kept)")
    for path in index.files:
        if path not in matched and path not in duplicates:
            report.skip(path, f"no row for {path.name} in {csv_path.name}")

    def cell(row: list[str], column: str) -> str:
        i = pos[column]
        return row[i].strip() if i < len(row) else ""

    images, sets, pids, sources = [], [], [], []
    general: dict[str, list[str | None]] = {name: [] for name in spec.general}
    if spec.age_column:
        general["age_band"] = []
    for path, (entry, row) in matched.items():
        finding_set = _row_findings(row, spec, cell, path, report)
        if finding_set is None:
            continue
        arr = folders.load_image(path, opts)
        if arr is None:
            continue
        images.append(arr)
        sets.append(finding_set)
        pids.append(cell(row, spec.patient_column) if spec.patient_column else _entry_id(entry))
        sources.append(str(path))
        for label, column in spec.general.items():
            general[label].append(cell(row, column))
        if spec.age_column:
            general["age_band"].append(age_band(cell(row, spec.age_column)))
    if not images:
        raise folders.empty_error(root, report)
    known = dict(spec.known)
    if spec.age_column:
        known["age_band"] = AGE_BANDS
    explicit = list(spec.finding_columns) if spec.finding_columns else None
    return make_imageset(images, general, sets, pids, sources, report, known=known, findings=explicit)


def _entry_id(entry: str) -> str:
    """Default patient id: the CSV entry without its image extension (unique even when file names
    repeat in different folders, as in CheXpert's patient/study/view1_frontal.jpg)."""
    entry = entry.replace("\\", "/").strip("/")
    return entry.rsplit(".", 1)[0] if folders.is_image_name(entry) else entry


def _row_findings(row, spec: TableSpec, cell, path: Path, report: Report) -> set[str] | None:
    if spec.finding_columns:
        out = set()
        for col in spec.finding_columns:
            flag = parse_flag(cell(row, col))
            if flag is None:
                report.skip(path, f"column {col!r} has value {cell(row, col)!r}; expected 0 or 1")
                return None
            if flag:
                out.add(col)
        return out
    if spec.finding_column:
        parts = (p.strip() for p in cell(row, spec.finding_column).split(spec.separator))
        return {p for p in parts if p and p.lower() != spec.no_finding.lower()}
    return set()


# ---- the generic reader ------------------------------------------------------------------------
def detect(path: Path) -> bool:
    """A folder with exactly one label CSV at the top (NIH's own file name is detected first)."""
    return path.is_dir() and len(find_csvs(path)) == 1


def read(path: Path, opts: ReadOptions) -> ImageSet:
    root = Path(path).resolve()
    if not root.is_dir():
        raise UserError(f"{root} is not a folder: the CSV + folder format needs a folder of images")
    if opts.csv:
        csv_path = resolve_csv(root, opts.csv)
    else:
        csvs = find_csvs(root)
        if len(csvs) != 1:
            listed = ", ".join(p.name for p in csvs) or "none"
            raise UserError(f"name the labels CSV with --csv: {root} has {len(csvs)} CSV files at the top ({listed})")
        csv_path = csvs[0]
    header, rows = read_csv(csv_path) if not opts.image_column else (read_header(csv_path), [])
    image_column = opts.image_column or guess_image_column(csv_path, header, rows)
    if opts.finding_column and opts.finding_columns:
        raise UserError("give findings either as one column (--finding-column) or as 0/1 columns (--finding-columns), not both")
    spec = TableSpec(
        image_column=image_column,
        general={c: c for c in opts.general_columns},
        finding_column=opts.finding_column,
        separator=opts.finding_separator,
        no_finding=opts.no_finding_value,
        finding_columns=list(opts.finding_columns),
        patient_column=opts.patient_column,
    )
    if not spec.finding_column and not spec.finding_columns:
        opts.report.notes.append("no finding column named: every image has no finding")
    return read_table_folder(root, csv_path, spec, opts)

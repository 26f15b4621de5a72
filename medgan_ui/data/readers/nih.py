"""NIH ChestX-ray14 layout: Data_Entry_2017*.csv(.gz) plus PNGs anywhere below the folder.

The official archives unpack to images_001/images/..., and users often have only some of the
twelve archives: CSV rows without an image are counted in the report, never fatal.
General labels: sex (Patient Gender F/M), view (View Position AP/PA), optional age band.
Findings: `Finding Labels` split on '|', 'No Finding' meaning none.
"""
from __future__ import annotations

from pathlib import Path

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.readers import csv_folder
from medgan_ui.data.readers.base import ReadOptions
from medgan_ui.errors import UserError

NAME = "nih"

CSV_PATTERN = "Data_Entry_2017*.csv"


def find_csv(path: Path) -> Path | None:
    """The Data_Entry CSV (plain or gzipped) at the top of the folder; the newest name sorts last."""
    hits = sorted(path.glob(CSV_PATTERN)) + sorted(path.glob(CSV_PATTERN + ".gz"))
    return hits[-1] if hits else None


def detect(path: Path) -> bool:
    return path.is_dir() and find_csv(path) is not None


def read(path: Path, opts: ReadOptions) -> ImageSet:
    root = Path(path).resolve()
    csv_path = find_csv(root) if root.is_dir() else None
    if opts.csv:
        csv_path = csv_folder.resolve_csv(root, opts.csv)
    if csv_path is None:
        raise UserError(f"{root} has no {CSV_PATTERN} or {CSV_PATTERN}.gz: not an NIH ChestX-ray14 folder")
    spec = csv_folder.TableSpec(
        image_column="Image Index",
        general={"sex": "Patient Gender", "view": "View Position"},
        known={"sex": ["F", "M"], "view": ["AP", "PA"]},
        finding_column="Finding Labels",
        separator="|",
        no_finding="No Finding",
        patient_column="Patient ID",
        age_column="Patient Age" if opts.age_bands else None,
    )
    ds = csv_folder.read_table_folder(root, csv_path, spec, opts)
    if opts.report.missing_images:
        opts.report.notes.append(
            f"{opts.report.missing_images} rows of {csv_path.name} have no image in this folder "
            "(normal when only some of the NIH archives are downloaded)"
        )
    return ds

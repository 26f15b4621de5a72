"""What every reader takes and returns.

A reader module (nih, csv_folder, dicom, folders, medmnist) defines:
    NAME: str                                   # selectable by name (--format NAME)
    def detect(path: Path) -> bool              # cheap: looks at file names only
    def read(path: Path, opts: ReadOptions) -> ImageSet   # fills opts.report as it goes
Readers never write into the source folder.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from medgan_ui.data.preprocess import check_size


@dataclass
class Skipped:
    path: str
    reason: str


@dataclass
class Report:
    """What happened while reading: what was skipped and why, rows without images, notes."""

    skipped: list[Skipped] = field(default_factory=list)
    missing_images: int = 0  # label rows (CSV) whose image file is not present
    missing_examples: list[str] = field(default_factory=list)  # a few names, not 111k of them
    notes: list[str] = field(default_factory=list)

    def skip(self, path: Any, reason: str) -> None:
        self.skipped.append(Skipped(str(path), reason))

    def missing(self, name: str) -> None:
        self.missing_images += 1
        if len(self.missing_examples) < 20:
            self.missing_examples.append(name)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Report":
        return cls(
            skipped=[Skipped(**s) for s in d.get("skipped", [])],
            missing_images=int(d.get("missing_images", 0)),
            missing_examples=list(d.get("missing_examples", [])),
            notes=list(d.get("notes", [])),
        )


@dataclass
class ReadOptions:
    size: int = 64
    fit: str = "crop"  # "crop" (centre crop to square) or "pad"
    age_bands: bool = False  # add an age-band general label where ages are known
    # generic CSV + folder
    csv: str | None = None  # CSV file (path, or name inside the folder)
    image_column: str | None = None
    general_columns: list[str] = field(default_factory=list)
    finding_column: str | None = None  # one column, findings joined by `finding_separator`
    finding_separator: str = "|"
    finding_columns: list[str] = field(default_factory=list)  # or one 0/1 column per finding
    no_finding_value: str = "No Finding"
    patient_column: str | None = None
    # DICOM
    window: tuple[float, float] | None = None  # (center, width) overriding the file's VOI tags
    labels_csv: str | None = None  # findings keyed by file name or SOPInstanceUID
    report: Report = field(default_factory=Report)

    def __post_init__(self) -> None:
        check_size(self.size, self.fit)

    def cache_key(self) -> dict[str, Any]:
        """Everything that changes the resulting ImageSet (the report is an output, not a key)."""
        d = asdict(self)
        d.pop("report")
        return d

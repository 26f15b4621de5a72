"""Generation from a trained run: load once (cached), generate with labels and a seed, export sets.

Exports go to synthetic/<set-id>/: images, labels.csv (file, general columns, "Finding Labels" in the
NIH style so the CSV reader loads it back) and manifest.json (run, checkpoint, seed, labels).
DICOM exports are Secondary Capture objects that say plainly they are synthetic and carry no
patient identity.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from medgan_ui.errors import UserError
from medgan_ui.gan import checkpoint as ckpt
from medgan_ui.security import csv_cells
from medgan_ui.gan.base import LabelSchema
from medgan_ui.gan.device import pick_device
from medgan_ui.gan.grid import encode_labels, to_uint8
from medgan_ui.gan.registry import configs_from_dict
from medgan_ui.workspace import atomic_write_bytes, atomic_write_text, new_id, read_json, write_manifest

Cells = list[tuple[dict[str, str], list[str], int]]


@dataclass
class LoadedRun:
    run_id: str
    run_dir: Path
    kind: str
    schema: LabelSchema
    model: Any
    train_cfg: Any
    model_cfg: Any
    step: int
    checkpoint: Path
    device: torch.device


@dataclass
class SampleResult:
    images: torch.Tensor  # uint8 [n, H, W]
    stage1: torch.Tensor | None  # uint8 [n, H, W] (GDGAN) or None
    labels: list[dict[str, Any]] = field(default_factory=list)  # per image: {"general": {...}, "findings": [...]}


_CACHE: dict[tuple, LoadedRun] = {}


def load_run(run_dir: Path, checkpoint: str | None = None, device: str | torch.device | None = None) -> LoadedRun:
    """Build the run's model and load a checkpoint (latest by default); cached per file and mtime."""
    from medgan_ui.gan.registry import build_model

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").is_file():
        raise UserError(f"{run_dir} is not a training run (no config.json); list runs with `medgan runs`")
    path = ckpt.resolve(run_dir / "checkpoints", checkpoint)
    dev = device if isinstance(device, torch.device) else pick_device(device or "auto")
    key = (str(path.resolve()), path.stat().st_mtime_ns, str(dev))
    if key in _CACHE:
        return _CACHE[key]
    config = read_json(run_dir / "config.json")
    train_cfg, model_cfg = configs_from_dict(config)
    schema = LabelSchema(**config["schema"])
    state = ckpt.load(path)
    model = build_model(config["kind"], model_cfg, train_cfg, schema, dev)
    for name, net in model.nets.items():
        if name not in state["nets"]:
            raise UserError(f"checkpoint {path} lacks net {name!r}: it was written by a different model/config")
        net.load_state_dict(state["nets"][name])
        net.eval()
    model.load_extra_state(state.get("extra", {}))
    run = LoadedRun(run_dir.name, run_dir, config["kind"], schema, model, train_cfg, model_cfg,
                    int(state["step"]), path, dev)
    _CACHE.clear()  # one run in memory at a time is enough for the UI and the CLI
    _CACHE[key] = run
    return run


def generate(run: LoadedRun, n: int, general: dict[str, str] | None = None, findings: list[str] | None = None,
             seed: int = 0, ema: bool = True, chunk: int = 256, options: dict[str, Any] | None = None) -> SampleResult:
    """n images for the labels; unnamed general labels are drawn per image. Same seed, same images.
    `options`: the family's per-call sampling settings (ModelFamily.sample_options, e.g. a diffusion
    model's steps, guidance, strength); None values keep the run's settings."""
    if n < 1:
        raise UserError(f"number of images must be at least 1 (got {n})")
    options = {k: v for k, v in (options or {}).items() if v is not None}
    run.model.check_sample_options(options)
    gen = torch.Generator().manual_seed(int(seed))
    size = run.schema.image_size
    images, stage1 = [], []
    with torch.inference_mode():
        z = run.model.noise(n, generator=gen).to(run.device)  # all inputs first: same images for any chunking
        g, d = encode_labels(run.schema, general, findings, n, run.device, gen)
        for i in range(0, n, chunk):  # bounded memory for large sets (the GDGAN FC layers are wide)
            out = run.model.generate(z[i:i + chunk], g[i:i + chunk], d[i:i + chunk], ema=ema, **options)
            images.append(to_uint8(out["images"], size))
            if out.get("stage1") is not None:
                stage1.append(to_uint8(out["stage1"], size))
    codes = g.cpu().tolist()
    labels = [{"general": {name: run.schema.general_values[name][c] for name, c in zip(run.schema.general_names, row)},
               "findings": list(findings or [])} for row in codes]
    return SampleResult(torch.cat(images), torch.cat(stage1) if stage1 else None, labels)


# ---- exports -----------------------------------------------------------------------------------------
def _check_cells(run: LoadedRun, cells: Cells) -> None:
    if not cells:
        raise UserError("nothing to export: give at least one (labels, count) cell")
    for general, findings, count in cells:
        if int(count) < 1:
            raise UserError(f"count for cell {general} {findings} must be at least 1 (got {count})")
        encode_labels(run.schema, general, findings, 1, torch.device("cpu"))  # validates names


def _export(run: LoadedRun, cells: Cells, out_dir: Path, seed: int, fmt: str, options: dict[str, Any] | None) -> Path:
    _check_cells(run, cells)
    run.model.check_sample_options(options or {})  # before the set's folder exists
    set_id = new_id(f"{run.kind}-{fmt}")
    folder = Path(out_dir) / set_id
    folder.mkdir(parents=True, exist_ok=False)
    rows: list[dict[str, str]] = []
    i = 0
    for c, (general, findings, count) in enumerate(cells):
        res = generate(run, int(count), general, findings, seed=seed + 1009 * c, options=options)
        for k in range(int(count)):
            name = f"{i:05d}.{'dcm' if fmt == 'dicom' else 'png'}"
            labels = res.labels[k]
            if fmt == "dicom":
                data = _dicom_bytes(run, res.images[k], labels, set_id, i, seed)
            else:
                buf = io.BytesIO()
                Image.fromarray(res.images[k].numpy(), mode="L").save(buf, format="PNG")
                data = buf.getvalue()
            atomic_write_bytes(folder / name, data)
            rows.append({"file": name, **labels["general"],
                         "Finding Labels": "|".join(labels["findings"]) or "No Finding"})
            i += 1
    buf_csv = io.StringIO()
    writer = csv_cells.SafeDictWriter(buf_csv, fieldnames=["file", *run.schema.general_names, "Finding Labels"])
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(folder / "labels.csv", buf_csv.getvalue())
    write_manifest(folder, kind="synthetic-set", synthetic=True, format=fmt, run=run.run_id, model=run.kind,
                   checkpoint=run.checkpoint.name, step=run.step, seed=seed, n_images=i, sampling=options or {},
                   cells=[{"general": g, "findings": f, "count": int(n)} for g, f, n in cells],
                   schema=run.schema.to_dict(), trained_on=_trained_on(run.run_dir))
    return folder


def _trained_on(run_dir: Path) -> dict[str, Any] | None:
    """The run's trained-on patients record (data/provenance.py), copied so the set carries it."""
    from medgan_ui.data.provenance import RECORD_FILE

    try:
        return read_json(Path(run_dir) / RECORD_FILE)
    except (OSError, ValueError):
        return None


def export_png(run: LoadedRun, cells: Cells, out_dir: Path, seed: int = 0, options: dict[str, Any] | None = None) -> Path:
    """Write synthetic/<set-id>/ (PNG images + labels.csv + manifest.json) under out_dir; returns the folder."""
    return _export(run, cells, out_dir, seed, "png", options)


def export_dicom(run: LoadedRun, cells: Cells, out_dir: Path, seed: int = 0, options: dict[str, Any] | None = None) -> Path:
    """As export_png, with DICOM Secondary Capture files instead of PNGs."""
    return _export(run, cells, out_dir, seed, "dicom", options)


def _label_value(general: dict[str, str], names: tuple[str, ...]) -> str | None:
    for k, v in general.items():
        if k.lower() in names:
            return str(v)
    return None


def _dicom_bytes(run: LoadedRun, image: torch.Tensor, labels: dict[str, Any], set_id: str, index: int,
                 seed: int) -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid

    sc = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sc
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    statement = (f"SYNTHETIC IMAGE generated by MedGAN Studio run {run.run_id} ({run.kind}, "
                 f"checkpoint {run.checkpoint.name}, seed {seed}); not an image of a real patient")
    ds.SOPClassUID, ds.SOPInstanceUID = sc, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.ConversionType = "OT", "WSD"  # workstation: made by software, not acquired
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.DerivationDescription = statement[:1024]
    ds.ImageComments = statement + ". Findings requested: " + ("|".join(labels["findings"]) or "No Finding")
    ds.BurnedInAnnotation = "NO"
    ds.PatientName = "SYNTHETIC"
    ds.PatientID = f"SYN-{set_id}-{index:05d}"[:64]
    ds.PatientIdentityRemoved = "YES"
    sex = _label_value(labels["general"], ("sex", "gender", "patientsex"))
    ds.PatientSex = sex.upper()[:1] if sex and sex.upper()[:1] in ("M", "F") else "O"
    view = _label_value(labels["general"], ("view", "viewposition", "view position"))
    if view:
        ds.ViewPosition = view.upper()[:16]
    ds.SeriesDescription = f"MedGAN Studio synthetic set {set_id}"[:64]
    ds.InstanceNumber = index + 1
    arr = image.numpy()
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = int(arr.shape[0]), int(arr.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = arr.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()

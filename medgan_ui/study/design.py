"""Build a blinded visual Turing test: pick real and synthetic cases per finding class, encode them
identically, and store them under opaque ids.

Blinding: every image goes through the same path — resized to the study size with the same
resampler, 8-bit grayscale, PNG with only IHDR/IDAT/IEND and *stored* (level-0) deflate. Level 0 makes
the file size a function of the image dimensions alone; with any compression the byte size would
follow image content (GAN noise compresses differently from real film grain) and leak the answer.
"""
from __future__ import annotations

import io
import random
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.preprocess import prepare_array
from medgan_ui.errors import UserError
from medgan_ui.security.csv_cells import dict_rows
from medgan_ui.study.sample_size import study_size_advice
from medgan_ui.study.store import SCORE_KINDS, CaseInput, StudyStore
from medgan_ui.workspace import Workspace

NO_FINDING = "No Finding"
PNG_COMPRESS_LEVEL = 0  # stored deflate: byte size independent of content (see module docstring)


@dataclass
class StudyConfig:
    name: str
    real: str = "demo"  # "demo", a workspace dataset name, an ImageSet cache (.npz) or a data folder
    part: str | None = "test"  # split part of the real set; None = all images
    synthetic: list[str] = field(default_factory=list)  # synthetic set folders (images + labels.csv) or run ids
    classes: list[str] | None = None  # finding classes; None = every finding present (+ No Finding)
    include_no_finding: bool = True
    real_per_class: int = 10
    synthetic_per_class: int | None = None  # in total per class, shared evenly between sources; None = real_per_class (balanced)
    match_labels: bool = True  # synthetic cases copy the general labels (sex, view) of real cases of the class
    repeats: int = 0  # cases shown twice, for intra-reader consistency
    score_kind: str = "realism"  # realism: 1 = clearly synthetic .. 5 = clearly real; confidence: 1..5 in the call
    ask_finding: bool = True
    seed: int = 0
    size: int | None = None  # study image size; None = the real set's size
    equivalence_margin: float = 0.1  # AUC margin around 0.5 for "indistinguishable" (fixed before any rating)
    planned_readers: int = 5  # for the size advice shown at creation


@dataclass
class StudyInfo:
    study_id: str
    access_code: str
    n_cases: int
    counts: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    size_advice: dict[str, Any] = field(default_factory=dict)


@dataclass
class Item:
    """A candidate image with its labels, before encoding."""

    image: np.ndarray  # uint8 [H, W]
    findings: list[str]
    general: dict[str, str | None]
    source: str
    source_name: str


# ---- encoding ------------------------------------------------------------------------------------
def encode_png(image: np.ndarray, size: int) -> bytes:
    """The one encoding every case gets: size x size, 8-bit gray, no ancillary chunks, stored deflate."""
    arr = np.asarray(image)
    if arr.ndim != 2:
        raise UserError(f"expected a 2-D grayscale image, got shape {arr.shape}")
    arr = prepare_array(arr, size, "crop")
    buf = io.BytesIO()
    Image.fromarray(arr, mode="L").save(buf, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
    return buf.getvalue()


def png_chunks(data: bytes) -> list[str]:
    """Chunk types of a PNG, in order (for tests and the admin's blinding check)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    out, i = [], 8
    while i < len(data):
        n = int.from_bytes(data[i : i + 4], "big")
        out.append(data[i + 4 : i + 8].decode("latin-1"))
        i += 12 + n
    return out


# ---- sources -------------------------------------------------------------------------------------
def load_real(workspace: Workspace, cfg: StudyConfig) -> ImageSet:
    """The real images: 'demo' and data folders go through the data layer (cached, with its split)."""
    path = Path(cfg.real)
    if path.suffix == ".npz" and path.is_file():
        ds = ImageSet.load(path)
    elif cfg.real != "demo" and "/" not in cfg.real and (workspace.datasets / cfg.real / "cache.npz").is_file():
        ds = ImageSet.load(workspace.datasets / cfg.real / "cache.npz")
    elif cfg.real == "demo" or path.exists():
        from medgan_ui.data.load import load_dataset  # lazily: readers are heavy and often not needed
        from medgan_ui.data.readers.base import ReadOptions

        ds = load_dataset(cfg.real, options=ReadOptions(size=cfg.size or 64), workspace=workspace)
    else:
        raise UserError(f"real images {cfg.real!r} not found: give 'demo', a dataset name under {workspace.datasets}, "
                        "an ImageSet cache (.npz) or a data folder")
    if cfg.part:
        if ds.split is None:
            raise UserError(f"real set {cfg.real!r} has no stored split, so it has no {cfg.part!r} part; use part 'all'")
        ds = ds.part(cfg.part)
    return ds


def read_synthetic_folder(folder: str | Path) -> list[Item]:
    """A sampling export: PNGs plus labels.csv with a file column, general columns and findings.

    Findings may be one column ('findings' or 'Finding Labels', '|'-separated, 'No Finding' = none)
    or one 0/1 column per finding.
    """
    folder = Path(folder)
    csv_path = folder / "labels.csv"
    if not csv_path.is_file():
        raise UserError(f"{folder}: no labels.csv; a synthetic set folder needs images plus labels.csv (as `medgan sample` writes)")
    with open(csv_path, newline="", encoding="utf-8") as fh:
        rows = list(dict_rows(fh))  # undoes the formula quoting of the writer
    if not rows:
        raise UserError(f"{csv_path}: no rows")
    cols = list(rows[0].keys())
    file_col = next((c for c in ("file", "filename", "image", "path", "Image Index", "name") if c in cols), None)
    if file_col is None:
        raise UserError(f"{csv_path}: needs a file column named 'file' (or filename/image/path); columns are {cols}")
    list_col = next((c for c in ("findings", "Finding Labels") if c in cols), None)
    skip = {file_col, list_col, "seed", "index", "run", "checkpoint", "label_id"}
    flag_cols = [] if list_col else [c for c in cols if c not in skip and all(r[c] in ("0", "1", "0.0", "1.0") for r in rows)]
    general_cols = [c for c in cols if c not in skip and c not in flag_cols]
    items = []
    for r in rows:
        p = folder / r[file_col]
        if not p.is_file():
            raise UserError(f"{csv_path}: image {r[file_col]!r} listed but not found in {folder}")
        with Image.open(p) as im:
            arr = np.asarray(im.convert("L"), dtype=np.uint8)
        if list_col:
            f = [x.strip() for x in (r[list_col] or "").split("|") if x.strip() and x.strip() != NO_FINDING]
        else:
            f = [c for c in flag_cols if float(r[c]) >= 0.5]
        general = {c: (r[c] or None) for c in general_cols}
        items.append(Item(arr, f, general, f"{folder.name}/{r[file_col]}", f"synthetic:{folder.name}"))
    return items


def _imageset_items(ds: ImageSet, source_name: str) -> list[Item]:
    return [Item(ds.images[i].numpy(), ds.finding_labels(i), ds.general_label(i), ds.source[i], source_name)
            for i in range(len(ds))]


def _run_items(workspace: Workspace, run_id: str, wanted: list[tuple[str, dict[str, str | None]]], seed: int) -> list[Item]:
    """Generate exactly the wanted (finding class, general labels) images from a trained run."""
    from medgan_ui.gan import sampling  # lazily: only studies built from runs need the models

    run = sampling.load_run(workspace.run_dir(run_id))
    items = []
    for k, (cls, general) in enumerate(wanted):
        findings = [] if cls == NO_FINDING else [cls]
        # only labels the run was trained on; the rest are drawn by the sampler
        labels = {g: v for g, v in general.items() if v is not None and g in run.schema.general_names}
        res = sampling.generate(run, 1, labels, findings, seed=seed + k)
        items.append(Item(res.images[0].numpy(), findings, dict(res.labels[0]["general"]),
                          f"run:{run_id}:{run.checkpoint.name}:seed:{seed + k}", f"synthetic:{run_id}"))
    return items


# ---- selection -----------------------------------------------------------------------------------
def _has_class(item: Item, cls: str) -> bool:
    return not item.findings if cls == NO_FINDING else cls in item.findings


def _pick(pool: list[Item], cls: str, n: int, rng: random.Random, used: set[int], what: str) -> list[int]:
    cand = [i for i, it in enumerate(pool) if i not in used and _has_class(it, cls)]
    if len(cand) < n:
        raise UserError(f"only {len(cand)} {what} images with '{cls}' (asked for {n}): lower the per-class number or choose other classes")
    rng.shuffle(cand)
    cand.sort(key=lambda i: len(pool[i].findings) > 1)  # single-finding images first: cleaner class truth
    return cand[:n]


def _pick_matched(pool: list[Item], cls: str, targets: list[dict], rng: random.Random, used: set[int], what: str) -> list[int]:
    """For each target general-label dict, an unused image of the class with the same labels if any."""
    cand = [i for i, it in enumerate(pool) if i not in used and _has_class(it, cls)]
    if len(cand) < len(targets):
        raise UserError(f"only {len(cand)} {what} images with '{cls}' (asked for {len(targets)}): lower the per-class number")
    rng.shuffle(cand)
    chosen: list[int] = []
    for t in targets:
        best = next((i for i in cand if i not in chosen and all(pool[i].general.get(k) == v for k, v in t.items())), None)
        chosen.append(best if best is not None else next(i for i in cand if i not in chosen))
    return chosen


def create_study(workspace: Workspace, cfg: StudyConfig, real: ImageSet | None = None,
                 synthetic: dict[str, list[Item]] | None = None) -> StudyInfo:
    """Select, encode and store the cases; returns the study id and its access code.

    `real` / `synthetic` let callers (tests, the UI) pass already-loaded images instead of paths.
    """
    if cfg.score_kind not in SCORE_KINDS:
        raise UserError(f"score must be one of {SCORE_KINDS}, got {cfg.score_kind!r}")
    if cfg.synthetic_per_class is None:
        cfg = replace(cfg, synthetic_per_class=cfg.real_per_class)  # balanced by default
    if cfg.real_per_class < 0 or cfg.synthetic_per_class < 0 or cfg.repeats < 0:
        raise UserError("per-class numbers and repeats must be 0 or more")
    if not 0 < float(cfg.equivalence_margin) < 0.5:
        raise UserError(f"equivalence margin must be between 0 and 0.5 AUC (e.g. 0.1), got {cfg.equivalence_margin}")
    rng = random.Random(cfg.seed)
    real_set = real if real is not None else load_real(workspace, cfg)
    size = cfg.size or real_set.size
    pool = _imageset_items(real_set, f"real:{cfg.real}" + (f"/{cfg.part}" if cfg.part else ""))
    classes = list(cfg.classes) if cfg.classes else [f for f in real_set.findings if any(f in it.findings for it in pool)]
    if cfg.include_no_finding and NO_FINDING not in classes:
        classes.append(NO_FINDING)
    if not classes:
        raise UserError("no finding classes to show: choose classes or include 'No Finding'")
    sources = list(synthetic.keys()) if synthetic is not None else list(cfg.synthetic)
    if not sources and cfg.synthetic_per_class > 0:
        raise UserError("no synthetic images: give a synthetic set folder or a run id")

    chosen_real: list[tuple[str, Item]] = []
    used: set[int] = set()
    for cls in classes:
        for i in _pick(pool, cls, cfg.real_per_class, rng, used, "real"):
            used.add(i)
            chosen_real.append((cls, pool[i]))

    chosen_syn: list[tuple[str, Item]] = []
    # M synthetic per class in total, shared evenly between the sources
    share = [cfg.synthetic_per_class // len(sources) + int(k < cfg.synthetic_per_class % len(sources)) for k in range(len(sources))]
    for k, src in enumerate(sources):
        is_run = synthetic is None and not Path(src).is_dir() and "/" not in src and (workspace.runs / src).is_dir()
        syn_pool = [] if is_run else (synthetic[src] if synthetic is not None else _synthetic_pool(workspace, src))
        used_idx: set[int] = set()
        for ci, cls in enumerate(classes):
            if share[k] == 0:
                continue
            reals = [it.general for c, it in chosen_real if c == cls] or [{}]
            targets = [dict(reals[j % len(reals)]) if cfg.match_labels else {} for j in range(share[k])]
            if is_run:
                items = _run_items(workspace, src, [(cls, t) for t in targets], cfg.seed + 1000 * (k + 1) + 100 * ci)
                chosen_syn += [(cls, it) for it in items]
                continue
            what = f"synthetic ({src})"
            idx = (_pick_matched(syn_pool, cls, targets, rng, used_idx, what) if cfg.match_labels
                   else _pick(syn_pool, cls, len(targets), rng, used_idx, what))
            used_idx.update(idx)
            chosen_syn += [(cls, syn_pool[i]) for i in idx]

    warnings = balance_warnings(cfg, sources)
    cases: list[CaseInput] = []
    for truth, chosen in (("real", chosen_real), ("synthetic", chosen_syn)):
        for cls, it in chosen:
            labels = {"class": cls, "findings": it.findings, "general": it.general, "source_name": it.source_name}
            cases.append(CaseInput(truth, it.source, labels, encode_png(it.image, size)))
    if cfg.repeats > len(cases):
        raise UserError(f"repeats ({cfg.repeats}) is more than the number of cases ({len(cases)})")
    for i in rng.sample(range(len(cases)), cfg.repeats):
        c = cases[i]
        cases.append(CaseInput(c.truth, c.source, {**c.labels, "repeat": True}, c.png, repeat_of=i))

    counts = {"real": len(chosen_real), "synthetic": len(chosen_syn), "repeats": cfg.repeats, "classes": classes,
              "per_class": {c: {"real": sum(1 for k, _ in chosen_real if k == c), "synthetic": sum(1 for k, _ in chosen_syn if k == c)} for c in classes}}
    options = [c for c in classes if c != NO_FINDING] + ([NO_FINDING] if NO_FINDING in classes else [])
    advice = study_size_advice(len(chosen_real), len(chosen_syn), float(cfg.equivalence_margin),
                               planned_readers=max(2, int(cfg.planned_readers)))
    advice = {k: v for k, v in advice.items() if k not in ("readers", "power_detect", "power_equivalence")}
    settings = {"findings": options, "score_kind": cfg.score_kind, "ask_finding": bool(cfg.ask_finding and len(options) > 1),
                "seed": cfg.seed, "size": size, "design": asdict(cfg), "counts": counts,
                "equivalence_margin": float(cfg.equivalence_margin), "warnings": warnings, "size_advice": advice}
    study_id, code = StudyStore(workspace.studies_db).create_study(cfg.name, settings, cases)
    return StudyInfo(study_id, code, len(cases), counts, warnings, advice)


def balance_warnings(cfg: StudyConfig, sources: list[str]) -> list[str]:
    """What keeps the study from being balanced (real = synthetic per class, generators equal)."""
    out = []
    if cfg.synthetic_per_class != cfg.real_per_class:
        out.append(f"not balanced: {cfg.real_per_class} real vs {cfg.synthetic_per_class} synthetic images per class. "
                   "The AUC analysis is unaffected, but accuracy against 50% means nothing and its binomial test is not reported; "
                   "give the same number for both to balance.")
    if len(sources) > 1 and cfg.synthetic_per_class % len(sources):
        out.append(f"{cfg.synthetic_per_class} synthetic images per class do not split evenly between {len(sources)} generators; "
                   f"use a multiple of {len(sources)} so each generator gets as many images.")
    return out


def _synthetic_pool(workspace: Workspace, src: str) -> list[Item]:
    path = Path(src)
    if not path.is_dir() and "/" not in src and (workspace.synthetic / src).is_dir():
        path = workspace.synthetic / src
    if not path.is_dir():
        raise UserError(f"synthetic source {src!r} is neither a folder, a synthetic set in {workspace.synthetic} nor a run in {workspace.runs}")
    return read_synthetic_folder(path)

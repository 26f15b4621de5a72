"""Training sets for each augmentation strategy (GDGAN's five variants, PAPERS.md 1.6, plus classic).

Classes for balancing: one per target finding, plus "negative for every target" (GDGAN's no-finding
folder). All functions return indices into the split's training images; synthetic strategies also
return extra images with their labels.

* none        - the real training images.
* classic     - the same images, augmented on the fly (medgan_ui.data.rebalance.augment, Frid-Adar's
                operations; the "chest" preset keeps rotations small and no up-down flips).
* undersample - every class drawn without replacement down to the smallest class count (GDGAN code).
* oversample  - every class drawn with replacement up to the largest class count (GDGAN code).
Under/over-sampling and the augmentation itself live in medgan_ui.data.rebalance.
* gan:MODEL  - as synthetic:, from one generator per fold trained on that fold's training patients
                (evaluate/gan_folds.py).
* synthetic:ID- real images plus synthetic positives from a run or a synthetic set, until each target's
                positives reach `ratio` x its negatives (GDGAN: the largest class count) or a count.
                Each synthetic image copies the general labels and findings of a randomly drawn real
                positive of the training split, so e.g. sex/view mix matches the real positives.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.security.csv_cells import dict_rows
from medgan_ui.workspace import Workspace, read_json

BASE_STRATEGIES = ("none", "classic", "undersample", "oversample")
CONTROL_PREFIXES = ("classic+", "tstr:")  # composite and train-on-synthetic arms (arms.py)
DOSE_SUFFIX = re.compile(r"@x([-0-9.eE]*)$")  # numeric-looking only: a gan preset may contain @


def parse_strategy(s: str) -> tuple[str, list[str]]:
    """'none' -> ('none', []); 'synthetic:A' -> ('synthetic', ['A']); 'synthetic:A+B+C' -> one id per split."""
    s = s.strip()
    if s.startswith(CONTROL_PREFIXES) or DOSE_SUFFIX.search(s):  # controls: composite, TSTR and dose arms
        from medgan_ui.evaluate.arms import parse_arm

        arm = parse_arm(s)
        return ("classic+" if arm.classic and arm.source else "") + arm.name, arm.ids
    if s in BASE_STRATEGIES:
        return s, []
    if s.startswith("synthetic:") and len(s) > len("synthetic:"):
        return "synthetic", [p for p in s[len("synthetic:"):].split("+") if p]
    if s.startswith("gan:") and len(s) > len("gan:"):
        return "gan", [s[len("gan:"):]]  # MODEL[@PRESET][:STEPS], checked by evaluate/gan_folds.parse_gan
    raise UserError(f"unknown strategy {s!r}: use {', '.join(BASE_STRATEGIES)}, synthetic:<run or synthetic-set id>, "
                    "gan:MODEL[@PRESET][:STEPS] (one generator trained per fold), classic+synthetic:<id>, "
                    "tstr:synthetic:<id>, with an optional dose suffix @x0.5")


def synthetic_needs(y: np.ndarray, mode: str, value: float) -> list[int]:
    """How many synthetic positives each target needs to reach the goal."""
    out = []
    for t in range(y.shape[1]):
        pos = int(y[:, t].sum())
        goal = value * (len(y) - pos) if mode == "ratio" else value
        out.append(max(0, int(round(goal)) - pos))
    return out


@dataclass
class SyntheticSource:
    """A trained run (images generated on demand) or an exported synthetic set (images read from disk)."""

    ident: str
    kind: str  # "run" | "set"
    path: Path
    image_size: int
    general_names: list[str]
    general_values: dict[str, list[str]]
    findings: list[str]
    run: Any = None
    rows: list[dict[str, str]] | None = None

    def describe(self) -> dict[str, Any]:
        return {"id": self.ident, "kind": self.kind, "path": str(self.path), "image_size": self.image_size,
                "findings": self.findings}


def open_source(ws: Workspace, ident: str, device: str | None = None) -> SyntheticSource:
    """Resolve an id to a run folder (runs/<id>) or a synthetic set (synthetic/<id>)."""
    run_dir, set_dir = ws.run_dir(ident), ws.synthetic_dir(ident)
    if (run_dir / "config.json").is_file():
        from medgan_ui.gan.generate import load_run

        run = load_run(run_dir, device=device)
        s = run.schema
        return SyntheticSource(ident, "run", run_dir, s.image_size, list(s.general_names),
                               {k: list(v) for k, v in s.general_values.items()}, run.model.generated_findings(),
                               run=run)
    if (set_dir / "labels.csv").is_file():
        with open(set_dir / "labels.csv", newline="", encoding="utf-8") as fh:
            rows = list(dict_rows(fh))  # undoes the formula quoting of the writer
        if not rows:
            raise UserError(f"synthetic set {ident}: labels.csv has no rows")
        man = read_json(set_dir / "manifest.json") if (set_dir / "manifest.json").is_file() else {}
        schema = man.get("schema") or {}
        general = [c for c in rows[0] if c not in ("file", "Finding Labels")]
        values = schema.get("general_values") or {g: sorted({r[g] for r in rows if r[g]}) for g in general}
        findings = schema.get("findings") or sorted({f for r in rows for f in r["Finding Labels"].split("|")} - {"No Finding", ""})
        size = schema.get("image_size")
        if size is None:
            with Image.open(set_dir / rows[0]["file"]) as im:
                size = im.width
        return SyntheticSource(ident, "set", set_dir, int(size), general, values, list(findings), rows=rows)
    runs = sorted(p.name for p in ws.runs.iterdir() if p.is_dir())[:10]
    sets = sorted(p.name for p in ws.synthetic.iterdir() if p.is_dir())[:10]
    raise UserError(f"synthetic source {ident!r} is neither a run in {ws.runs} nor a synthetic set in {ws.synthetic}; "
                    f"runs: {runs or 'none'}; synthetic sets: {sets or 'none'}")


def check_source(src: SyntheticSource, ds: ImageSet, targets: list[str]) -> None:
    """A run trained on other labels or another image size cannot top up this dataset."""
    what = f"synthetic {'run' if src.kind == 'run' else 'set'} {src.ident!r}"
    if src.image_size != ds.size:
        raise UserError(f"{what} makes {src.image_size}x{src.image_size} images but dataset {ds.name!r} holds "
                        f"{ds.size}x{ds.size}; use a run trained at {ds.size} px or reload the data at {src.image_size} px")
    missing = [t for t in targets if t not in src.findings]
    if missing:
        raise UserError(f"{what} was trained on findings {src.findings}, which lack target(s) {missing}")
    if src.kind == "set":
        have = set().union(*(_row_findings(r) for r in src.rows or []))
        lacking = [t for t in targets if t not in have]
        if lacking:
            raise UserError(f"{what} has no image labelled {lacking}; export images of those findings first")
    for g in src.general_names:
        if g not in ds.general_names or src.general_values.get(g) != ds.general_values.get(g):
            raise UserError(f"{what} uses general label {g!r} with values {src.general_values.get(g)}, but dataset "
                            f"{ds.name!r} has {ds.general_values.get(g, 'no such label')}: it was trained on other labels")


def synthetic_images(
    src: SyntheticSource, train: ImageSet, targets: list[str], needs: list[int], seed: int
) -> tuple[torch.Tensor, np.ndarray, int]:
    """(uint8 images [M,H,W], multi-hot target labels [M,T], number of distinct images) for the needs."""
    picks = synthetic_picks(train, targets, needs, seed)
    if not len(picks):
        return torch.zeros(0, train.size, train.size, dtype=torch.uint8), np.zeros((0, len(targets)), bool), 0
    return synthetic_for_picks(src, train, picks, targets, seed)


def synthetic_picks(train: ImageSet, targets: list[str], needs: list[int], seed: int) -> np.ndarray:
    """The real training positives (drawn with replacement, `need` per target) whose labels synthetic images copy."""
    rng = np.random.default_rng(seed)
    det = train.detailed.numpy().astype(bool)
    picks = [rng.choice(np.flatnonzero(det[:, train.findings.index(t)]), need, replace=True)
             for t, need in zip(targets, needs) if need > 0]
    return np.concatenate(picks) if picks else np.zeros(0, np.int64)


def synthetic_for_picks(
    src: SyntheticSource, train: ImageSet, picks: np.ndarray, targets: list[str], seed: int,
    without: list[str] | tuple[str, ...] = ()
) -> tuple[torch.Tensor, np.ndarray, int]:
    """One synthetic image per picked real image, with that image's general labels and findings
    (less the findings in `without`: synthetic negatives of the same general-label cell)."""
    rng = np.random.default_rng(seed)
    cells: dict[tuple, int] = {}
    for i in picks:
        general = tuple((g, v) for g, v in train.general_label(int(i)).items() if g in src.general_names and v)
        found = tuple(f for f in train.finding_labels(int(i)) if f in src.findings and f not in without)
        cells[(general, found)] = cells.get((general, found), 0) + 1
    images, labels, distinct = [], [], 0
    for c, ((general, found), count) in enumerate(sorted(cells.items())):
        if src.kind == "run":
            from medgan_ui.gan.generate import generate

            images.append(generate(src.run, count, dict(general), list(found), seed=seed * 7919 + c).images)
            distinct += count
            labels.append(np.tile([t in found for t in targets], (count, 1)).reshape(count, len(targets)))
        else:
            chosen, n_unique = _pick_rows(src, dict(general), found, targets, count, rng)
            x, y = _read_rows(src, chosen, targets)  # a set's images carry the labels the set gives them
            images.append(x)
            labels.append(y)
            distinct += n_unique
    return torch.cat(images), np.concatenate(labels).astype(bool), distinct


def set_sample(src: SyntheticSource, findings: list[str], n: int,
               rng: np.random.Generator) -> tuple[torch.Tensor, np.ndarray, int]:
    """n images of a synthetic set (without replacement when it has enough) and their labels."""
    n_rows = len(src.rows or [])
    chosen = rng.choice(n_rows, n, replace=n > n_rows)
    return (*_read_rows(src, chosen, findings), len(set(chosen.tolist())))


def _read_rows(src: SyntheticSource, chosen: np.ndarray, findings: list[str]) -> tuple[torch.Tensor, np.ndarray]:
    """The chosen rows' images (uint8 [M,H,W]) and their multi-hot labels over `findings` [M,F]."""
    rows = src.rows or []
    images = torch.stack([_read_png(src.path / rows[r]["file"], src.image_size) for r in chosen])
    labels = np.array([[f in _row_findings(rows[r]) for f in findings] for r in chosen], bool)
    return images, labels.reshape(len(chosen), len(findings))


def _row_findings(row: dict[str, str]) -> frozenset[str]:
    return frozenset(row["Finding Labels"].split("|")) - {"No Finding", ""}


def _pick_rows(src: SyntheticSource, general: dict[str, str], found: tuple, targets: list[str], count: int,
               rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Rows of a synthetic set for a real image's labels: the same findings and general labels if the set
    has them, else the same findings, else any row with the same target findings."""
    rows = src.rows or []
    labs = [_row_findings(r) for r in rows]
    want, want_t = frozenset(found), frozenset(found) & frozenset(targets)
    same = [i for i, r in enumerate(rows) if labs[i] == want and all(r.get(g) == v for g, v in general.items())]
    pool = same or [i for i in range(len(rows)) if labs[i] == want]
    pool = pool or [i for i in range(len(rows)) if want_t and want_t <= labs[i]]
    pool = pool or [i for i in range(len(rows)) if labs[i] & frozenset(targets) == want_t]
    if not pool:
        raise UserError(f"synthetic set {src.ident!r} has no image labelled {'|'.join(found) or 'No Finding'}")
    picked = rng.choice(pool, count, replace=count > len(pool))
    return picked, len(set(picked.tolist()))


def _read_png(path: Path, size: int) -> torch.Tensor:
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("L"))
    except OSError as exc:
        raise UserError(f"synthetic image {path}: cannot read ({exc})") from None
    if arr.shape != (size, size):
        raise UserError(f"synthetic image {path} is {arr.shape[1]}x{arr.shape[0]}, expected {size}x{size}")
    return torch.from_numpy(arr.copy())

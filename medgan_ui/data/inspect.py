"""What is in a loaded dataset, and what was left out and why (`medgan data inspect`)."""
from __future__ import annotations

from typing import Any

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.readers.base import Report
from medgan_ui.data.split import patient_ids_known, split_note


def inspect_report(ds: ImageSet) -> dict[str, Any]:
    """Counts (images, patients, per label, per finding, per label x finding cell, split) + the read report."""
    counts = ds.counts()
    report = Report.from_dict(ds.meta.get("report") or {})
    return {
        "name": ds.name,
        "format": ds.meta.get("format"),
        "source": ds.meta.get("source_root"),
        "fingerprint": ds.fingerprint,
        "loaded_from_cache": bool(ds.meta.get("loaded_from_cache", False)),
        "image_size": ds.size,
        "images": counts["images"],
        "patients": counts["patients"],
        "general": counts["general"],
        "findings": counts["findings"],
        "finding_patients": counts["finding_patients"],
        "no_finding": counts["no_finding"],
        "cells": counts["cells"],
        "split": counts.get("split"),
        "split_stratified_on": (ds.meta.get("split") or {}).get("stratify"),
        "split_note": split_note(ds) if ds.split is not None else None,
        "patient_ids": patient_ids_known(ds),
        "masks": list(ds.mask_names),
        "missing_images": report.missing_images,
        "missing_examples": report.missing_examples,
        "skipped": [{"path": s.path, "reason": s.reason} for s in report.skipped],
        "notes": report.notes,
    }


def format_report(d: dict[str, Any]) -> str:
    """Plain-text version for the terminal: every skipped file is listed, with its reason."""
    lines = [
        f"dataset   {d['name']}  ({d['format']}, {d['image_size']}x{d['image_size']}"
        f"{', from cache' if d['loaded_from_cache'] else ''})",
        f"source    {d['source']}",
        f"images    {d['images']}   patients {d['patients']}"
        + ("" if d.get("patient_ids", True) else "  (no patient ids: one id per image)"),
    ]
    for name, per_value in d["general"].items():
        lines.append(f"{name:<9} " + "   ".join(f"{v} {n}" for v, n in per_value.items()))
    lines.append(f"findings  No Finding {d['no_finding']}")
    width = max((len(f) for f in [*d["findings"], "No Finding"]), default=0)
    for f, n in d["findings"].items():
        lines.append(f"          {f:<{width}} {n:>6}  ({d['finding_patients'][f]} patients)")
    for name, cells in d["cells"].items():  # one row per finding, one column per label value
        values = list(cells)
        lines.append(f"{name} x finding:".ljust(width + 12) + "".join(f"{v:>8}" for v in values))
        for f in [*d["findings"], "No Finding"]:
            lines.append(f"          {f:<{width + 2}}" + "".join(f"{cells[v].get(f, 0):>8}" for v in values))
    if d["split"]:
        how = f"  (stratified on {d['split_stratified_on']})" if d.get("split_stratified_on") else ""
        lines.append("split     " + "   ".join(f"{k} {v}" for k, v in d["split"].items()) + how)
        if d.get("split_note"):
            lines.append(f"          {d['split_note']}")
    if d["masks"]:
        lines.append("masks     " + ", ".join(d["masks"]))
    if d["missing_images"]:
        ex = ", ".join(d["missing_examples"][:5])
        lines.append(f"missing   {d['missing_images']} label rows have no image file (e.g. {ex})")
    lines.append(f"skipped   {len(d['skipped'])} files")
    lines += [f"  {s['path']}: {s['reason']}" for s in d["skipped"]]
    lines += [f"note      {n}" for n in d["notes"]]
    return "\n".join(lines)

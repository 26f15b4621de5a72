"""Tables of a generator-metrics result (evaluate/gan_metrics.py) for the Compare tab and `medgan metrics`."""
from __future__ import annotations

from typing import Any

from medgan_ui.errors import UserError

# every column either table may have; "IS" or "domain IS" is used, as the extractor is Inception or not
METRIC_COLUMNS = ["model", "seed group", "n", "extractor", "IS", "domain IS", "IS chunk SD (sampling noise)",
                  "FID", "FID floor", "KID", "KID floor", "NN-SSIM to training",
                  "share > held-out p95"]
WELCH_COLUMNS = ["comparison", "seeds", "Welch p (FID)", "Welch p (IS)", "Welch p (domain IS)", "note"]


def _check(results: dict[str, Any]) -> None:
    if "real_sets" not in results:
        raise UserError("this metrics result was written by an older version (FID against the training images, "
                        "Welch test over chunks of one run); compute the metrics again for comparable scores")


def _sig(v: float | None, digits: int = 4) -> float | None:
    return None if v is None else float(f"{v:.{digits}g}")


def metric_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row for the held-out reference, one for the floor sample, one per model; all at the same n."""
    _check(results)
    key, name, real, n = results["is_key"], results["is_name"], results["real"], results["n"]

    def is_cells(score: dict[str, Any]) -> dict[str, Any]:
        return {name: round(score["mean"], 3), "IS chunk SD (sampling noise)": round(score["sd"], 3)}

    rows = [{"model": "real, held-out patients (reference)", "seed group": None, "n": n, "extractor": results["extractor"],
             **is_cells(real[key]), "FID": None, "FID floor": None, "KID": None, "KID floor": None,
             "NN-SSIM to training": round(real["memorisation"]["mean"], 4),
             "share > held-out p95": round(real["memorisation"]["frac_above_heldout_p95"], 3)},
            {"model": "real, training patients (floor)", "seed group": None, "n": n, "extractor": results["extractor"],
             **is_cells(real["floor_" + key]), "FID": None, "FID floor": round(real["fid_floor"], 3), "KID": None,
             "KID floor": f"{real['kid_floor']['mean']:.4f}", "NN-SSIM to training": None,
             "share > held-out p95": None}]
    group_of = {m: g["name"] for g in results["seed_groups"] for m in g["members"]}
    for mid, r in results["models"].items():
        rows.append({"model": mid, "seed group": group_of.get(mid), "n": r["n"], "extractor": r["extractor"],
                     **is_cells(r[key]), "FID": round(r["fid"], 3), "FID floor": round(r["fid_floor"], 3),
                     "KID": f"{r['kid']['mean']:.4f}", "KID floor": f"{real['kid_floor']['mean']:.4f}",
                     "NN-SSIM to training": round(r["memorisation"]["mean"], 4),
                     "share > held-out p95": round(r["memorisation"]["frac_above_heldout_p95"], 3)})
    return rows


def welch_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per pair of seed groups: Welch p on per-run FID and IS, or why there is no test."""
    _check(results)
    key, name = results["is_key"], results["is_name"]
    rows = []
    for comp, w in results["welch_seeds"].items():
        rows.append({"comparison": comp, "seeds": " vs ".join(str(k) for k in w["seeds"]),
                     "Welch p (FID)": _sig(w["fid"]["p"]) if "fid" in w else None,
                     f"Welch p ({name})": _sig(w[key]["p"]) if key in w else None, "note": w.get("note")})
    return rows


def summary_lines(results: dict[str, Any]) -> list[str]:
    """What the numbers rest on: n, the reference and floor sets, the extractor's training images, notes."""
    _check(results)
    rs, t = results["real_sets"], results["extractor_trained_on"]
    lines = [f"n = {results['n']} images everywhere (reference, floor sample, each model; {results['is_splits']} "
             f"IS chunks of {results['n'] // results['is_splits']})",
             f"reference: {rs['reference']['n_images']} images of {rs['reference']['n_patients']} held-out patients; "
             f"floor sample: {rs['floor_sample']['n_images']} images of {rs['floor_sample']['n_patients']} training "
             "patients; FID floor = FID(reference, floor sample)",
             f"extractor {results['extractor']} trained on: {t.get('what')} "
             f"({t.get('n_images', 0)} images, {t.get('n_patients', 0)} patients); none of them is scored",
             f"{results['is_name']}: " + ("Inception-v3 class softmax" if results["is_name"] == "IS" else
                                          "the domain extractor's class softmax (the dataset's findings), not Inception's"),
             "NN-SSIM to training: mean over images of the highest SSIM to a training image; synthetic images "
             "well above the held-out real row sit closer to training images than new real ones do; 'share > held-out "
             "p95' is the share of images above the held-out images' 95th percentile (about 0.05 for new real images)"]
    return lines + [f"note: {n}" for n in results.get("notes", [])]

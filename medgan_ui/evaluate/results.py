"""Turn per-(split, strategy) predictions into the experiment's statistics and files.

Per target and strategy: test AUC per split, mean ± SD over splits, a stratified-bootstrap 95 % CI of
the mean AUC, DeLong's test against 'none' on each split's (shared) test set plus a Stouffer
combination over splits, sensitivity/specificity at the validation-chosen Youden threshold, the
confusion matrix summed over splits, and ROC points (per split and vertically averaged) for plots.
"""
from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from medgan_ui.errors import UserError
from medgan_ui.evaluate import stats
from medgan_ui.security.csv_cells import SafeDictWriter
from medgan_ui.workspace import Workspace, atomic_write_json, atomic_write_text, read_json

FPR_GRID = np.linspace(0, 1, 101)


def _mean_roc(curves: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Vertical averaging: TPR interpolated on a fixed FPR grid, then averaged over splits."""
    tprs = []
    for c in curves:
        fpr, tpr = np.asarray(c["fpr"]), np.asarray(c["tpr"])
        tprs.append(np.interp(FPR_GRID, fpr, tpr))
    mean = np.mean(tprs, axis=0)
    mean[0] = 0.0
    return {"fpr": [round(float(v), 4) for v in FPR_GRID], "tpr": [round(float(v), 4) for v in mean]}


def summarise(cfg: Any, records: list[dict[str, Any]], split_info: list[dict[str, Any]], notes: list[str],
              status: str) -> dict[str, Any]:
    by = {(r["split"], r["strategy"]): r for r in records}
    done_splits = sorted({r["split"] for r in records if all((r["split"], s) in by for s in cfg.strategies)})
    out: dict[str, Any] = {"config": asdict(cfg), "status": status, "splits": split_info, "notes": list(notes),
                           "complete_splits": done_splits, "targets": {}, "training": []}
    if status != "done":
        out["notes"].append(f"stopped early: statistics use the {len(done_splits)} split(s) every strategy finished")
    for r in records:
        out["training"].append({k: r[k] for k in ("split", "strategy", "n_train_real", "n_train_synthetic",
                                                  "n_synthetic_distinct", "best_epoch", "epochs_run", "seconds",
                                                  "segmentation")})
    for ti, target in enumerate(cfg.targets):
        per_strategy: dict[str, Any] = {}
        for s in cfg.strategies:
            recs = [by[(k, s)] for k in done_splits]
            if not recs:
                continue
            per_split = []
            for r in recs:
                yv, pv = r["y_val"][:, ti], r["p_val"][:, ti]
                yt, pt = r["y_test"][:, ti], r["p_test"][:, ti]
                thr = stats.youden_threshold(yv, pv)
                cm = stats.confusion_at(yt, pt, thr)
                per_split.append({"split": r["split"], "auc": stats.auc(yt, pt), "threshold": thr,
                                  "confusion": cm.tolist(), **stats.sens_spec(cm),
                                  "n_test": int(len(yt)), "n_test_positive": int(yt.sum()),
                                  "roc": stats.roc_points(yt, pt)})
            aucs = np.array([p["auc"] for p in per_split])
            ci = stats.bootstrap_auc_ci([(r["y_test"][:, ti], r["p_test"][:, ti]) for r in recs],
                                        n_boot=cfg.n_boot, seed=cfg.seed)
            cm_sum = np.sum([p["confusion"] for p in per_split], axis=0)
            entry: dict[str, Any] = {
                "auc_per_split": aucs.tolist(),
                "auc_mean": float(aucs.mean()),
                "auc_sd": float(aucs.std(ddof=1)) if len(aucs) > 1 else 0.0,
                "auc_ci95": [ci["lo"], ci["hi"]],
                "sensitivity_mean": float(np.nanmean([p["sensitivity"] for p in per_split])),
                "specificity_mean": float(np.nanmean([p["specificity"] for p in per_split])),
                "confusion_sum": cm_sum.tolist(),
                "per_split": per_split,
                "roc_mean": _mean_roc([p["roc"] for p in per_split]),
            }
            if s != "none" and "none" in cfg.strategies:
                tests = [stats.delong_test(r["y_test"][:, ti], r["p_test"][:, ti], by[(r["split"], "none")]["p_test"][:, ti])
                         for r in recs]
                comb = stats.stouffer([t["z"] for t in tests])
                entry["delong_vs_none"] = {"per_split": tests, "combined_z": comb["z"], "combined_p": comb["p"],
                                           "method": "DeLong per split; Stouffer combination over splits"}
            per_strategy[s] = entry
        out["targets"][target] = per_strategy
    return out


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (target, strategy): the AUC table shown in the app and written to results.csv."""
    rows = []
    order = results["config"]["strategies"]  # results.json is key-sorted; keep the configured order
    for target in [t for t in results["config"]["targets"] if t in results["targets"]]:
        per = results["targets"][target]
        for s in [s for s in order if s in per]:
            e = per[s]
            d = e.get("delong_vs_none")
            rows.append({
                "target": target, "strategy": s,
                "auc_mean": round(e["auc_mean"], 4), "auc_sd": round(e["auc_sd"], 4),
                "ci95_lo": round(e["auc_ci95"][0], 4), "ci95_hi": round(e["auc_ci95"][1], 4),
                "p_delong_vs_none": None if d is None else float(f"{d['combined_p']:.4g}"),
                "sensitivity": round(e["sensitivity_mean"], 4), "specificity": round(e["specificity_mean"], 4),
                "auc_per_split": " ".join(f"{a:.3f}" for a in e["auc_per_split"]),
            })
    return rows


def write_results(out: Path, results: dict[str, Any]) -> None:
    from medgan_ui.evaluate.plots import save_confusion, save_roc

    atomic_write_json(out / "results.json", results)
    rows = table_rows(results)
    buf = io.StringIO()
    if rows:
        w = SafeDictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    atomic_write_text(out / "results.csv", buf.getvalue())
    if rows:
        save_roc(results, out / "roc.png")
        save_confusion(results, out / "confusion.png")


def list_outputs(ws: Workspace, kind: str = "experiment") -> list[str]:
    """Finished experiment (or 'gan-metrics') folders in the workspace, newest first."""
    out = []
    for d in sorted(ws.experiments.iterdir(), key=lambda p: p.name, reverse=True):
        man = d / "manifest.json"
        if d.is_dir() and man.is_file():
            try:
                if read_json(man).get("kind") == kind:
                    out.append(d.name)
            except ValueError:  # a half-written manifest from a crashed run: skip it
                continue
    return out


def load_results(ws: Workspace, exp_id: str) -> dict[str, Any]:
    d = ws.experiment_dir(exp_id)
    for name in ("results.json", "metrics.json"):
        if (d / name).is_file():
            return read_json(d / name)
    raise UserError(f"{exp_id!r} has no results in {ws.experiments}; it may still be running or it failed")


def roc_long(results: dict[str, Any], target: str | None = None) -> list[dict[str, Any]]:
    """Mean ROC points per strategy as long rows (strategy, fpr, tpr), for an interactive line plot."""
    targets = results["targets"]
    target = target or next(iter(targets), None)
    rows: list[dict[str, Any]] = []
    for s in results["config"]["strategies"]:
        e = targets.get(target, {}).get(s)
        if e is None:
            continue
        label = f"{s} (AUC {e['auc_mean']:.3f})"
        rows += [{"strategy": label, "fpr": f, "tpr": t} for f, t in zip(e["roc_mean"]["fpr"], e["roc_mean"]["tpr"])]
    return rows

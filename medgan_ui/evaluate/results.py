"""Turn per-(fold, strategy) predictions into the experiment's statistics and files.

Per target and strategy (PAPERS.md 7.2; computations in cv_stats.py):
* the pooled out-of-fold AUC (mean over repeats) with a patient-cluster bootstrap 95 % CI;
* the per-fold AUC mean ± SD (the papers' table) and, against 'none', the paired AUC difference with
  its patient-cluster paired bootstrap CI and p-value and the Nadeau-Bengio corrected resampled t-test
  over folds x repeats; Holm-adjusted p-values over every (target, strategy) compared;
* sensitivity at a fixed specificity (pooled out-of-fold), and sensitivity/specificity at the
  validation-chosen Youden threshold per fold, the confusion matrix summed over folds;
* the same AUC / difference statistics per value of each general label (sex, view, ...);
* ROC points per fold and vertically averaged, for plots.
"""
from __future__ import annotations

import io
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from medgan_ui.errors import UserError
from medgan_ui.evaluate import cv_stats, stats
from medgan_ui.security.csv_cells import SafeDictWriter
from medgan_ui.workspace import Workspace, atomic_write_json, atomic_write_text, read_json

FPR_GRID = np.linspace(0, 1, 101)
REFERENCE = "none"


def _mean_roc(curves: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    """Vertical averaging: TPR interpolated on a fixed FPR grid, then averaged over folds."""
    tprs = []
    for c in curves:
        fpr, tpr = np.asarray(c["fpr"]), np.asarray(c["tpr"])
        tprs.append(np.interp(FPR_GRID, fpr, tpr))
    mean = np.mean(tprs, axis=0)
    mean[0] = 0.0
    return {"fpr": [round(float(v), 4) for v in FPR_GRID], "tpr": [round(float(v), 4) for v in mean]}


def _oof(recs: list[dict[str, Any]], ti: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per repeat: the test-fold image indices and scores of its finished folds, pooled."""
    out = []
    for r in sorted({x["repeat"] for x in recs}):
        mine = [x for x in recs if x["repeat"] == r]
        out.append((np.concatenate([x["idx_test"] for x in mine]), np.concatenate([x["p_test"][:, ti] for x in mine])))
    return out


def _has_both(y: np.ndarray, oof: list[tuple[np.ndarray, np.ndarray]], rows: np.ndarray | None = None) -> bool:
    for idx, _ in oof:
        yy = y[idx] if rows is None else y[idx][rows[idx]]
        if not (yy.any() and (~yy).any()):
            return False
    return True


def _per_fold(recs: list[dict[str, Any]], ti: int) -> list[dict[str, Any]]:
    out = []
    for r in recs:
        yv, pv = r["y_val"][:, ti], r["p_val"][:, ti]
        yt, pt = r["y_test"][:, ti], r["p_test"][:, ti]
        thr = stats.youden_threshold(yv, pv)
        cm = stats.confusion_at(yt, pt, thr)
        out.append({"index": r["fold"], "repeat": r["repeat"], "fold": r["fold_in_repeat"], "auc": stats.auc(yt, pt),
                    "threshold": thr, "confusion": cm.tolist(), **stats.sens_spec(cm), "n_test": int(len(yt)),
                    "n_test_positive": int(yt.sum()), "n_fit": r["n_fit"], "roc": stats.roc_points(yt, pt)})
    return out


def _subgroups(cfg: Any, ds: Any, y: np.ndarray, pid: np.ndarray, oofs: dict[str, list]) -> dict[str, Any]:
    """Pooled AUC (+ difference against none) per value of every general label, patient-cluster bootstrap."""
    out: dict[str, Any] = {}
    scored = np.zeros(len(y), bool)
    for idx, _ in next(iter(oofs.values())):
        scored[idx] = True
    for gi, name in enumerate(ds.general_names):
        codes = ds.general[:, gi].numpy()
        for vi, value in enumerate(ds.general_values[name]):
            rows = codes == vi
            key = f"{name}={value}"
            n_pos, n_img = int((y & rows & scored).sum()), int((rows & scored).sum())
            if not _has_both(y, next(iter(oofs.values())), rows):
                out[key] = {"n_images": n_img, "n_positive": n_pos, "note": "no positive or no negative image scored"}
                continue
            boot = cv_stats.cluster_bootstrap(y, pid, oofs, cfg.n_boot, cfg.seed, REFERENCE, rows=rows)
            out[key] = {"n_images": n_img, "n_positive": n_pos, "strategies": {
                s: {"auc": b["auc"], "auc_ci95": [b["lo"], b["hi"]],
                    **({"diff_vs_none": b["diff"], "diff_ci95": [b["diff_lo"], b["diff_hi"]], "p_bootstrap": b["p"]}
                       if "diff" in b else {})}
                for s, b in boot.items()}}
    return out


def summarise(cfg: Any, records: list[dict[str, Any]], ds: Any, split_kind: str, fold_info: list[dict[str, Any]],
              notes: list[str], status: str) -> dict[str, Any]:
    by = {(r["fold"], r["strategy"]): r for r in records}
    done = sorted({r["fold"] for r in records if all((r["fold"], s) in by for s in cfg.strategies)})
    out: dict[str, Any] = {"config": asdict(cfg), "status": status, "split_kind": split_kind, "folds": fold_info,
                           "notes": list(notes), "complete_folds": done, "targets": {}, "training": [],
                           "method": METHOD}
    if status != "done":
        out["notes"].append(f"stopped early: statistics use the {len(done)} fold(s) every strategy finished")
    for r in records:
        out["training"].append({**{k: r[k] for k in ("fold", "repeat", "strategy", "n_train_real", "n_train_synthetic",
                                                     "n_synthetic_distinct", "best_epoch", "epochs_run", "seconds",
                                                     "segmentation")},
                                **{k: r.get(k) for k in ("n_synthetic_negative", "steps", "max_steps", "passes")}})
    if not done:
        return out
    _, pid = np.unique(ds.patient_id, return_inverse=True)
    official = split_kind.startswith("official")
    for ti, target in enumerate(cfg.targets):
        y = ds.detailed[:, ds.findings.index(target)].numpy().astype(bool)
        recs = {s: [by[(k, s)] for k in done] for s in cfg.strategies}
        oofs = {s: _oof(recs[s], ti) for s in cfg.strategies}
        if not _has_both(y, oofs[cfg.strategies[0]]):
            out["notes"].append(f"{target}: the finished folds hold no positive or no negative image; no statistics")
            continue
        boot = cv_stats.cluster_bootstrap(y, pid, oofs, cfg.n_boot, cfg.seed, REFERENCE)
        per_strategy: dict[str, Any] = {}
        for s in cfg.strategies:
            per_fold = _per_fold(recs[s], ti)
            aucs = np.array([p["auc"] for p in per_fold])
            b = boot[s]
            entry: dict[str, Any] = {
                "auc_pooled": b["auc"], "auc_pooled_ci95": [b["lo"], b["hi"]],
                "auc_per_fold": aucs.tolist(), "auc_fold_mean": float(aucs.mean()),
                "auc_fold_sd": float(aucs.std(ddof=1)) if len(aucs) > 1 else 0.0,
                "sens_at_spec": float(np.mean([cv_stats.sens_at_spec(y[i], sc, cfg.specificity) for i, sc in oofs[s]])),
                "specificity_target": cfg.specificity,
                "sensitivity_mean": float(np.nanmean([p["sensitivity"] for p in per_fold])),
                "specificity_mean": float(np.nanmean([p["specificity"] for p in per_fold])),
                "confusion_sum": np.sum([p["confusion"] for p in per_fold], axis=0).tolist(),
                "per_fold": per_fold, "roc_mean": _mean_roc([p["roc"] for p in per_fold]),
            }
            if "diff" in b:
                ref = np.array([p["auc"] for p in _per_fold(recs[REFERENCE], ti)])
                n_fit = float(np.mean([p["n_fit"] for p in per_fold]))
                n_test = float(np.mean([p["n_test"] for p in per_fold]))
                t = cv_stats.corrected_t_test(aucs - ref, n_fit, n_test)
                if official:  # one fixed test set: the repeats vary only seeds, there is no resampling to correct
                    t = {**t, "t": float("nan"), "p": float("nan")}
                entry["vs_none"] = {"diff": b["diff"], "diff_ci95": [b["diff_lo"], b["diff_hi"]],
                                    "p_bootstrap": b["p"], "fold_diffs": (aucs - ref).tolist(),
                                    "t_corrected": t["t"], "df": t["df"], "p_corrected_t": t["p"]}
            per_strategy[s] = entry
        out["targets"][target] = per_strategy
        out.setdefault("subgroups", {})[target] = _subgroups(cfg, ds, y, pid, oofs)
    _holm(out)
    return out


METHOD = ("AUC: pooled out-of-fold (mean over repeats) with a patient-cluster bootstrap 95 % CI (patients resampled, "
          "stratified on the target); fold mean ± SD over folds x repeats. vs none: paired bootstrap CI and p, and "
          "the Nadeau-Bengio corrected resampled t-test over folds x repeats; Holm-adjusted over every (target, "
          "strategy) compared. Sensitivity/specificity at the Youden threshold chosen on validation.")


def _holm(out: dict[str, Any]) -> None:
    """Holm step-down over every (target, strategy) compared with none, for each kind of p-value."""
    cmp = [e["vs_none"] for per in out["targets"].values() for e in per.values() if "vs_none" in e]
    for key in ("p_bootstrap", "p_corrected_t"):
        for c, adj in zip(cmp, cv_stats.holm([c[key] for c in cmp])):
            c[f"{key}_holm"] = adj


def _r(v: Any, nd: int = 4) -> Any:
    return None if v is None or not np.isfinite(v) else round(float(v), nd)


def _p(v: Any) -> Any:
    return None if v is None or not np.isfinite(v) else float(f"{v:.4g}")


def _source_of(strategy: str) -> str:
    """The synthetic source behind an arm (classic+gan:X and gan:X@x2 share gan:X's fidelity and leakage)."""
    from medgan_ui.evaluate.arms import parse_arm

    try:
        return parse_arm(strategy).source or strategy
    except UserError:
        return strategy


def table_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (target, strategy): the AUC table shown in the app, printed by the CLI, in results.csv."""
    rows = []
    order = results["config"]["strategies"]  # results.json is key-sorted; keep the configured order
    for target in [t for t in results["config"]["targets"] if t in results["targets"]]:
        per = results["targets"][target]
        for s in [s for s in order if s in per]:
            e = per[s]
            d = e.get("vs_none") or {}
            src = _source_of(s)
            rows.append({
                "target": target, "strategy": s,
                "auc_pooled": _r(e["auc_pooled"]), "ci95_lo": _r(e["auc_pooled_ci95"][0]),
                "ci95_hi": _r(e["auc_pooled_ci95"][1]),
                "auc_fold_mean": _r(e["auc_fold_mean"]), "auc_fold_sd": _r(e["auc_fold_sd"]),
                "diff_vs_none": _r(d.get("diff")), "diff_ci95_lo": _r((d.get("diff_ci95") or [None])[0]),
                "diff_ci95_hi": _r((d.get("diff_ci95") or [None, None])[1]),
                "p_bootstrap": _p(d.get("p_bootstrap")), "p_bootstrap_holm": _p(d.get("p_bootstrap_holm")),
                "p_corrected_t": _p(d.get("p_corrected_t")), "p_corrected_t_holm": _p(d.get("p_corrected_t_holm")),
                "sens_at_spec": _r(e["sens_at_spec"]),
                "sensitivity": _r(e["sensitivity_mean"]), "specificity": _r(e["specificity_mean"]),
                "auc_per_fold": " ".join(f"{a:.3f}" for a in e["auc_per_fold"]),
                # synthetic strategies: label fidelity (evaluate/label_fidelity.py), leaked patients (leakage.py)
                "label_fidelity_auc": _r(((results.get("label_fidelity") or {}).get(target) or {}).get(src, {}).get("mean")),
                "leakage_overlap": ((results.get("leakage") or {}).get(src) or {}).get("overlap_total"),
            })
    return rows


def subgroup_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (target, general label value, strategy): AUC and difference vs none in the subgroup."""
    rows = []
    order = results["config"]["strategies"]
    for target, groups in (results.get("subgroups") or {}).items():
        for key, g in groups.items():
            for s in [s for s in order if s in g.get("strategies", {})]:
                e = g["strategies"][s]
                rows.append({"target": target, "group": key, "n_images": g["n_images"], "n_positive": g["n_positive"],
                             "strategy": s, "auc_pooled": _r(e["auc"]), "ci95_lo": _r(e["auc_ci95"][0]),
                             "ci95_hi": _r(e["auc_ci95"][1]), "diff_vs_none": _r(e.get("diff_vs_none")),
                             "diff_ci95_lo": _r((e.get("diff_ci95") or [None])[0]),
                             "diff_ci95_hi": _r((e.get("diff_ci95") or [None, None])[1]),
                             "p_bootstrap": _p(e.get("p_bootstrap"))})
    return rows


def _csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    if rows:
        w = SafeDictWriter(buf, fieldnames=list(rows[0]))  # target names and strategies are user text
        w.writeheader()
        w.writerows(rows)
    return buf.getvalue()


def write_results(out: Path, results: dict[str, Any]) -> None:
    from medgan_ui.evaluate.plots import save_confusion, save_roc

    atomic_write_json(out / "results.json", results)
    rows = table_rows(results)
    atomic_write_text(out / "results.csv", _csv(rows))
    atomic_write_text(out / "results_subgroups.csv", _csv(subgroup_rows(results)))
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
        label = f"{s} (AUC {e['auc_pooled']:.3f})"
        rows += [{"strategy": label, "fpr": f, "tpr": t} for f, t in zip(e["roc_mean"]["fpr"], e["roc_mean"]["tpr"])]
    return rows

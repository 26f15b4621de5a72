"""The visual Turing test as an MRMC ROC study (built on `mrmc`), as radiology journals expect it.

Truth: synthetic = 1 (positive), real = 0. Rating: the reader's confidence that the image is
synthetic, one ordinal scale per study kind, defined once here (`turing_rating`):
  * confidence studies (a real/synthetic call plus confidence 1-5 in it): a 10-point scale from
    "surely real" to "surely synthetic": real call with confidence s -> 6 - s (1..5), synthetic call
    with confidence s -> 5 + s (6..10);
  * realism studies (1 = clearly synthetic .. 5 = clearly real): 6 - realism (1..5); the call is not
    used, the realism score already says which way the reader leans.
What is reported (first readings only; repeated cases feed only intra-reader consistency):
  * reader-averaged AUC with its OR 95 % CI (random readers and cases, DeLong covariance on shared
    cases; Hillis' single-treatment df) and the t-test against 0.5;
  * equivalence by two one-sided tests: the 90 % CI inside (0.5 - margin, 0.5 + margin), margin fixed
    when the study was created (default 0.1). A non-significant test alone shows nothing;
  * per-reader AUC with a DeLong 95 % CI; balanced accuracy with a permutation p-value (case labels
    permuted, the same permutation for every reader, so readers' shared cases stay shared);
  * the exact binomial test of each reader's accuracy only when real and synthetic cases are balanced
    (otherwise accuracy against 0.5 is not a test of anything); never pooled over readers, whose
    calls on the same images are not independent;
  * with several generators: one treatment per generator, real cases shared, synthetic cases nested
    within treatment; the OR F-test and CI of the difference say whose images are harder to tell.
With a single reader, readers are fixed (the result holds for this reader only), and the text says so.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from medgan_ui.errors import UserError
from medgan_ui.study import mrmc
from medgan_ui.study.roc_cov import roc_points

DEFAULT_MARGIN = 0.1
ALL = "all synthetic"


def turing_rating(call: str, score: int, score_kind: str) -> int:
    """Confidence that the image is synthetic on the study's ordinal scale (module docstring)."""
    s = int(score)
    if score_kind == "confidence":
        return 5 + s if call == "synthetic" else 6 - s
    return 6 - s


def generator_of(row: dict[str, Any]) -> str:
    """The synthetic source of a case ('gdgan-run'), or 'real'."""
    if row["truth"] != "synthetic":
        return "real"
    name = str(row["labels"].get("source_name") or "synthetic")
    return name.split(":", 1)[1] if name.startswith("synthetic:") else name


def long_rows(rows: list[dict[str, Any]], score_kind: str, by_generator: bool = False) -> list[dict[str, Any]]:
    """MRMC long format from study ratings (first readings). With by_generator, one treatment per
    synthetic source and every real rating repeated under each treatment (real cases are shared)."""
    firsts = [r for r in rows if not r.get("repeat_of")]
    gens = sorted({generator_of(r) for r in firsts if r["truth"] == "synthetic"})
    out = []
    for r in firsts:
        base = {"reader": r["reader"], "case": r["case_id"], "truth": int(r["truth"] == "synthetic"),
                "rating": turing_rating(r["call"], r["score"], score_kind),
                "time": None if r.get("ms") is None else round(r["ms"] / 1000.0, 3)}
        if not by_generator:
            out.append({**base, "treatment": ALL})
        elif r["truth"] == "synthetic":
            out.append({**base, "treatment": generator_of(r)})
        else:
            out += [{**base, "treatment": g} for g in gens]
    return out


def _usable(long: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Drop readers without >= 2 real and >= 2 synthetic ratings under every treatment (no AUC)."""
    treatments = {r["treatment"] for r in long}
    keep, dropped = [], []
    for reader in sorted({r["reader"] for r in long}):
        mine = [r for r in long if r["reader"] == reader]
        ok = all(sum(1 for r in mine if r["treatment"] == t and r["truth"] == y) >= 2 for t in treatments for y in (0, 1))
        (keep.extend(mine) if ok else dropped.append(reader))
    return keep, dropped


def equivalence(est: float, se: float, df: float, margin: float, alpha: float = 0.05) -> dict[str, Any]:
    """Two one-sided tests of |AUC - 0.5| < margin: both reject at alpha <=> the (1 - 2 alpha) CI is inside."""
    q = stats.t.ppf(1 - alpha, df) if np.isfinite(df) else stats.norm.ppf(1 - alpha)
    lo, hi = est - q * se, est + q * se
    dist = stats.t(df) if np.isfinite(df) else stats.norm()
    if se > 0:
        p_lower = float(dist.sf((est - (0.5 - margin)) / se))  # H0: AUC <= 0.5 - margin
        p_upper = float(dist.cdf((est - (0.5 + margin)) / se))  # H0: AUC >= 0.5 + margin
    else:
        p_lower = p_upper = 0.0 if abs(est - 0.5) < margin else 1.0
    return {"margin": margin, "ci90": [float(lo), float(hi)], "bounds": [0.5 - margin, 0.5 + margin],
            "p": max(p_lower, p_upper), "equivalent": bool(lo > 0.5 - margin and hi < 0.5 + margin)}


def balanced_accuracy(rows: list[dict[str, Any]], n_perm: int = 2000, seed: int = 0) -> dict[str, Any]:
    """(sensitivity + specificity) / 2 of the calls, with a two-sided permutation p-value (case labels permuted)."""
    cases = sorted({r["case_id"] for r in rows})
    idx = {c: i for i, c in enumerate(cases)}
    truth_case = np.zeros(len(cases), dtype=bool)
    for r in rows:
        truth_case[idx[r["case_id"]]] = r["truth"] == "synthetic"
    ci = np.array([idx[r["case_id"]] for r in rows])
    said = np.array([r["call"] == "synthetic" for r in rows])

    def ba(truth: np.ndarray) -> np.ndarray:  # truth [B, n_ratings]
        pos = truth.sum(axis=1)
        neg = truth.shape[1] - pos
        with np.errstate(invalid="ignore", divide="ignore"):
            return 0.5 * ((said & truth).sum(axis=1) / pos + (~said & ~truth).sum(axis=1) / neg)

    obs = float(ba(truth_case[ci][None, :])[0])
    if not np.isfinite(obs):
        return {"balanced_accuracy": None, "p_perm": None, "n_perm": 0}
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(truth_case) for _ in range(n_perm)])[:, ci]
    null = ba(perms)
    p = (1 + int(np.sum(np.abs(null - 0.5) >= abs(obs - 0.5) - 1e-12))) / (n_perm + 1)
    return {"balanced_accuracy": obs, "p_perm": float(p), "n_perm": n_perm}


def binomial(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Exact binomial test of accuracy vs 0.5, only for a balanced set of ratings (else None)."""
    n_syn = sum(r["truth"] == "synthetic" for r in rows)
    if not rows or 2 * n_syn != len(rows):
        return None
    k = sum(r["call"] == r["truth"] for r in rows)
    res = stats.binomtest(k, len(rows), 0.5)
    ci = res.proportion_ci(0.95, method="exact")
    return {"correct": k, "n": len(rows), "accuracy": k / len(rows), "p": float(res.pvalue), "ci95": [float(ci.low), float(ci.high)]}


def _fmt(x: float, nd: int = 2) -> str:
    return f"{x:.{nd}f}"


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def conclusion(auc: dict[str, Any], eq: dict[str, Any], who: str) -> str:
    """One plain sentence: what was shown, and what was not."""
    a, (lo, hi), p, m = auc["estimate"], auc["ci_unclipped"], auc["p_vs_chance"], eq["margin"]
    ci95 = f"reader-averaged AUC {_fmt(a)} (95% CI {_fmt(lo)} to {_fmt(hi)}, {_p(p)} vs 0.5; {who})"
    ci90 = f"90% CI {_fmt(eq['ci90'][0])} to {_fmt(eq['ci90'][1])}"
    inside = f"{_fmt(0.5 - m)} to {_fmt(0.5 + m)}"
    if p < 0.05 and a > 0.5 and not eq["equivalent"]:
        return (f"Readers told synthetic from real images apart better than chance: {ci95}; that they could not tell "
                f"them apart within ±{_fmt(m)} AUC was not shown.")
    if p < 0.05 and a < 0.5 and not eq["equivalent"]:
        return (f"Readers rated real images as more synthetic than the synthetic ones, below chance: {ci95}; "
                f"the images differ, in the unexpected direction.")
    if eq["equivalent"] and p < 0.05:
        return (f"Readers told synthetic from real images apart slightly {'better' if a > 0.5 else 'worse'} than chance "
                f"({ci95}), but by less than ±{_fmt(m)} AUC ({ci90} inside {inside}).")
    if eq["equivalent"]:
        return (f"Readers could not tell synthetic from real images within ±{_fmt(m)} AUC: {ci95}; the {ci90} lies "
                f"inside {inside} (equivalence {_p(eq['p'])}).")
    return (f"Not shown either way: {ci95} neither differs significantly from chance nor lies within ±{_fmt(m)} of it "
            f"({ci90}, not inside {inside}); more readers or cases are needed.")


def turing_analysis(rows: list[dict[str, Any]], score_kind: str, margin: float = DEFAULT_MARGIN,
                    n_perm: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Everything in the module docstring for one study's ratings (store.ratings_rows)."""
    if not 0 < margin < 0.5:
        raise UserError(f"equivalence margin must be between 0 and 0.5 AUC, got {margin}")
    firsts = [r for r in rows if not r.get("repeat_of")]
    long, dropped = _usable(long_rows(firsts, score_kind))
    out: dict[str, Any] = {"rating_scale": _scale_text(score_kind), "margin": margin, "readers_excluded": dropped,
                           "n_real": len({r["case_id"] for r in firsts if r["truth"] == "real"}),
                           "n_synthetic": len({r["case_id"] for r in firsts if r["truth"] == "synthetic"})}
    out["balanced"] = out["n_real"] == out["n_synthetic"]
    readers = sorted({r["reader"] for r in long})
    if not readers:
        out["conclusion"] = ("Not analysed: no reader has rated at least 2 real and 2 synthetic images yet, "
                             "so no reader has an ROC curve.")
        return out
    data = mrmc.MRMCData.from_rows(long)
    if len(set(data.rating.tolist())) == 1:
        out["conclusion"] = "Not analysed: every rating is the same, so the ratings carry no ROC information."
        return out
    who = (f"{len(readers)} readers, {out['n_real']} real and {out['n_synthetic']} synthetic images, readers and cases random"
           if len(readers) >= 2 else f"1 reader, {out['n_real']} real and {out['n_synthetic']} synthetic images; holds for this reader only")
    out.update(vs_chance(data, margin, who))
    out["roc"] = roc_curves(data)
    per = {p["reader"]: p for p in mrmc.single_reader(data)}
    out["per_reader"] = {}
    for k, name in enumerate(readers):
        mine = [r for r in firsts if r["reader"] == name]
        out["per_reader"][name] = {"auc": per[name]["estimate"], "ci95": per[name]["ci"], "se": per[name]["se"],
                                   **balanced_accuracy(mine, n_perm, seed + k), "binomial": binomial(mine), "n": len(mine)}
    usable = [r for r in firsts if r["reader"] in readers]
    out["balanced_accuracy"] = balanced_accuracy(usable, n_perm, seed)
    # per reader only: pooling readers' calls into one binomial test would treat them as independent
    out["binomial"] = {n: out["per_reader"][n]["binomial"] for n in readers} if out["balanced"] else None
    gens = sorted({generator_of(r) for r in firsts if r["truth"] == "synthetic"})
    if len(gens) >= 2:
        out["generators"] = compare_generators(firsts, score_kind)
    return out


def roc_curves(data: mrmc.MRMCData, treatment: str | None = None) -> dict[str, Any]:
    """Empirical ROC points per reader and their vertical average on a 0..1 FPR grid (its area is
    the reader-averaged AUC, since linear interpolation keeps each trapezoidal area)."""
    sel = np.ones(len(data.rating), bool) if treatment is None else data.treatment == treatment
    grid = np.linspace(0, 1, 101)
    curves, tprs = {}, []
    for reader in sorted(set(data.reader[sel].tolist()), key=str):
        m = sel & (data.reader == reader)
        fpr, tpr = roc_points(data.truth[m], data.rating[m])
        curves[str(reader)] = {"fpr": fpr.tolist(), "tpr": tpr.tolist()}
        tprs.append(np.interp(grid, fpr, tpr))
    return {"readers": curves, "average": {"fpr": grid.tolist(), "tpr": np.mean(tprs, axis=0).tolist()}}


def vs_chance(data: mrmc.MRMCData, margin: float, who: str, cov_method: str = "DeLong",
              readers: str | None = None, cases: str = "random") -> dict[str, Any]:
    """One treatment: reader-averaged AUC with its OR CI, t-test vs 0.5, equivalence, the conclusion."""
    n_readers = len(set(data.reader.tolist()))
    kind = readers or ("random" if n_readers >= 2 else "fixed")
    res = mrmc.or_analysis(data, cov_method, kind, cases)
    tm = res["treatment_means"][0]
    est, se, df = tm["estimate"], tm["se"], tm["df"]
    dist = stats.t(df) if np.isfinite(df) else stats.norm()
    t0 = (est - 0.5) / se if se > 0 else (0.0 if est == 0.5 else np.inf * np.sign(est - 0.5))
    q = dist.ppf(0.975)
    method = {("random", "random"): f"Obuchowski-Rockette, {cov_method} covariance, Hillis df",
              ("fixed", "random"): f"readers fixed (results hold for these readers), {cov_method} covariance",
              ("random", "fixed"): "cases fixed (results hold for these cases), t on the reader AUCs"}[(kind, cases)]
    auc = {"estimate": est, "se": se, "df": df, "ci95": tm["ci"], "ci_unclipped": [est - q * se, est + q * se],
           "t": float(t0), "p_vs_chance": float(2 * dist.sf(abs(t0))), "readers": kind, "cases": cases, "method": method,
           "var_comp": res["var_comp"], "n_readers": n_readers}
    eq = equivalence(est, se, df, margin)
    return {"auc": auc, "equivalence": eq, "conclusion": conclusion(auc, eq, who)}


def compare_generators(rows: list[dict[str, Any]], score_kind: str) -> dict[str, Any]:
    """Generators as treatments, synthetic cases nested within treatment, real cases shared."""
    long, dropped = _usable(long_rows(rows, score_kind, by_generator=True))
    readers = sorted({r["reader"] for r in long})
    if not readers:
        return {"conclusion": "Generators not compared: no reader has >= 2 real and >= 2 synthetic ratings of every generator.",
                "readers_excluded": dropped}
    kind = "random" if len(readers) >= 2 else "fixed"
    res = mrmc.or_analysis(mrmc.MRMCData.from_rows(long), "DeLong", kind)
    means = {m["treatment"]: m for m in res["treatment_means"]}
    best = min(means, key=lambda g: means[g]["estimate"])
    lines = []
    for d in res["differences"]:
        a, b = d["comparison"].split(" - ")
        harder = b if d["estimate"] > 0 else a
        sig = d["p"] < 0.05
        lines.append(f"{a} vs {b}: AUC {_fmt(means[a]['estimate'])} vs {_fmt(means[b]['estimate'])}, difference "
                     f"{_fmt(d['estimate'], 3)} (95% CI {_fmt(d['ci'][0], 3)} to {_fmt(d['ci'][1], 3)}, {_p(d['p'])}): "
                     + (f"{harder}'s images were harder to tell from real." if sig else "no difference shown."))
    t = res["test"]
    head = (f"OR F-test of equal AUC across generators: F = {t['F']:.2f}, df = {t['df1']}, {t['df2']:.1f}, {_p(t['p'])}."
            if t["statistic"] == "F" else f"Fixed-reader chi-square test: X2 = {t['X2']:.2f}, df = {t['df']}, {_p(t['p'])}.")
    return {"treatments": res["treatments"], "auc": {g: {"estimate": m["estimate"], "ci95": m["ci"]} for g, m in means.items()},
            "per_reader": res["auc"], "test": t, "differences": res["differences"], "readers": kind, "design":
            "synthetic cases nested within generator, real cases shared (partially paired; DeLong on shared cases)",
            "hardest_to_tell": best, "readers_excluded": dropped, "conclusion": " ".join([head] + lines)}


def _scale_text(score_kind: str) -> str:
    if score_kind == "confidence":
        return "1-10: real call with confidence s -> 6 - s, synthetic call with confidence s -> 5 + s (10 = surely synthetic)"
    return "1-5: 6 - realism (5 = clearly synthetic)"

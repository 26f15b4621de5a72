"""Obuchowski-Rockette (OR) multi-reader multi-case analysis of empirical ROC AUCs, Hillis' df.

Model (Obuchowski & Rockette 1995): AUC_ij = mu + tau_i + R_j + (tauR)_ij + e_ij for treatment i and
reader j; the e's have variance Var and covariances Cov1 (same reader, other treatment), Cov2 (other
reader, same treatment), Cov3 (other reader and treatment), estimated from the covariance matrix of
the AUCs over cases (`roc_cov`: DeLong or jackknife). Tests and intervals follow Hillis (2007, Stat
Med 26:596) and Hillis, Obuchowski & Berbaum (2008), exactly as the R package MRMCaov (Smith, Hillis &
Pesce) computes them, which is how this module is checked (tests/study/test_mrmc_vandyke.py):
  * random readers and cases ("rrrc"): F = MS(T) / (MS(T:R) + r max(Cov2 - Cov3, 0)), Hillis df2;
  * fixed readers ("frrc"): chi-square (t-1) MS(T) / (Var - Cov1 + (r-1)(Cov2 - Cov3)), with
    reader-specific comparisons (SE sqrt(2 (Var_j - Cov1_j)));
  * fixed cases ("rrfc"): F = MS(T) / MS(T:R), df ((t-1), (t-1)(r-1));
  * every treatment alone: its mean with a CI (clipped to [0, 1], as MRMCaov), and, unclipped, the
    SE and df that the Turing test and its equivalence test use.
Designs (as MRMCaov's `get_design`): 1 factorial, 2 cases nested within readers, 3 cases nested within
treatments; Cov2, Cov3 (design 2) or Cov1, Cov3 (design 3) are set to 0. Partially paired data (a reader
who stopped early, real cases shared by two generators) are analysed as design 1 with each covariance
estimated on the cases the two AUCs share (see roc_cov's docstring for how, and the citation).

Why not a package: PyPI (checked Dec 2026, `grep -i mrmc` and 'delong' in the package lists) has no
Obuchowski-Rockette implementation; `mlstatkit` and `rocauc-comparison` do single-reader DeLong only.
MRMCaov (R) and iMRMC (Java/R, FDA) are the reference software but not Python, so the OR formulas are
implemented here on numpy/scipy and checked against MRMCaov's published VanDyke output.
"""
from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from medgan_ui.errors import UserError
from medgan_ui.study import roc_cov

COV_METHODS = ("DeLong", "jackknife")
COLUMN_ALIASES = {  # MRMCaov / iMRMC spellings accepted by read_mrmc_csv
    "reader": ("reader", "readerid", "reader_id"),
    "treatment": ("treatment", "test", "modality", "modalityid", "modality_id"),
    "case": ("case", "caseid", "case_id"),
    "truth": ("truth", "disease", "truth_status"),
    "rating": ("rating", "score", "confidence"),
}


@dataclass
class MRMCData:
    """Long format, one row per (reader, treatment, case) rating; truth 1 = positive."""

    reader: np.ndarray
    treatment: np.ndarray
    case: np.ndarray
    truth: np.ndarray
    rating: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[dict[str, Any]]) -> "MRMCData":
        return cls(*(np.array([r[k] for r in rows]) for k in ("reader", "treatment", "case")),
                   np.array([int(r["truth"]) for r in rows]), np.array([float(r["rating"]) for r in rows]))


def read_mrmc_csv(path: str | Path) -> MRMCData:
    """Any MRMC long-format CSV (ours, MRMCaov's, iMRMC-like columns). Rows with a non-empty
    `repeat_of` (a re-reading for intra-reader consistency) are left out."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise UserError(f"{path}: no rows")
    lower = {c.strip().lower(): c for c in rows[0]}
    cols = {}
    for want, names in COLUMN_ALIASES.items():
        col = next((lower[n] for n in names if n in lower), None)
        if col is None and want == "treatment":
            cols[want] = None  # one treatment
            continue
        if col is None:
            raise UserError(f"{path}: needs a '{want}' column (also accepted: {', '.join(names[1:])}); columns are {list(rows[0])}")
        cols[want] = col
    rep = lower.get("repeat_of")
    out = []
    for k, r in enumerate(rows, start=2):
        if rep and (r.get(rep) or "").strip():
            continue
        t = str(r[cols["truth"]]).strip().lower()
        truth = {"1": 1, "0": 0, "synthetic": 1, "real": 0, "true": 1, "false": 0, "1.0": 1, "0.0": 0}.get(t)
        try:
            rating = float(r[cols["rating"]])
        except (TypeError, ValueError):
            rating = float("nan")
        if truth is None or not np.isfinite(rating):
            raise UserError(f"{path} line {k}: truth must be 0/1 (or real/synthetic) and rating a number; got {t!r}, {r[cols['rating']]!r}")
        out.append({"reader": str(r[cols["reader"]]).strip(), "case": str(r[cols["case"]]).strip(), "truth": truth, "rating": rating,
                    "treatment": str(r[cols["treatment"]]).strip() if cols["treatment"] else "1"})
    return MRMCData.from_rows(out)


def _levels(x: np.ndarray) -> list:
    """Sorted levels, numerically when they all look like numbers (so '10' follows '9')."""
    vals = list(dict.fromkeys(x.tolist()))
    try:
        return sorted(vals, key=lambda v: float(v))
    except (TypeError, ValueError):
        return sorted(vals, key=str)


def design_of(data: MRMCData) -> int:
    """1 factorial (or partially paired), 2 cases nested within readers, 3 within treatments."""
    readers_per_case: dict[Any, set] = {}
    treats_per_case: dict[Any, set] = {}
    for r, t, c in zip(data.reader.tolist(), data.treatment.tolist(), data.case.tolist()):
        readers_per_case.setdefault(c, set()).add(r)
        treats_per_case.setdefault(c, set()).add(t)
    if len(set(data.reader.tolist())) > 1 and all(len(s) == 1 for s in readers_per_case.values()):
        return 2
    if len(set(data.treatment.tolist())) > 1 and all(len(s) == 1 for s in treats_per_case.values()):
        return 3
    return 1


def reader_aucs(data: MRMCData) -> tuple[list, list, list[list[roc_cov.GroupROC]], int]:
    """Treatments, readers, groups[t][r] and the number of cases in the union."""
    treatments, readers = _levels(data.treatment), _levels(data.reader)
    cases = _levels(data.case)
    case_index = {c: i for i, c in enumerate(cases)}
    cidx = np.array([case_index[c] for c in data.case.tolist()])
    groups = []
    for t in treatments:
        row = []
        for r in readers:
            sel = (data.treatment == t) & (data.reader == r)
            if not sel.any():
                raise UserError(f"reader {r!r} has no ratings under treatment {t!r}: OR analysis needs every reader under every treatment")
            if len(set(cidx[sel].tolist())) != int(sel.sum()):
                raise UserError(f"reader {r!r} rated a case twice under treatment {t!r}: keep one rating per reader, treatment and case")
            try:
                row.append(roc_cov.group_roc(cidx[sel], data.truth[sel], data.rating[sel]))
            except ValueError as exc:
                raise UserError(f"reader {r!r}, treatment {t!r}: {exc}") from None
        groups.append(row)
    pairs = np.unique(np.stack([cidx, data.truth.astype(int)]), axis=1)  # a case's truth must not change
    ids, counts = np.unique(pairs[0], return_counts=True)
    if (counts > 1).any():
        raise UserError(f"case {cases[int(ids[counts > 1][0])]!r} has both truth 0 and 1 in different rows")
    return treatments, readers, groups, len(cases)


def _cov_components(cov: np.ndarray, t_of: np.ndarray, r_of: np.ndarray, design: int) -> tuple[float, float, float, float]:
    same_t, same_r = t_of[:, None] == t_of[None, :], r_of[:, None] == r_of[None, :]

    def mean(mask: np.ndarray) -> float:
        return float(cov[mask].mean()) if mask.any() else 0.0

    var = float(np.mean(np.diag(cov)))
    c1, c2, c3 = mean(~same_t & same_r), mean(same_t & ~same_r), mean(~same_t & ~same_r)
    if design == 2:
        c2 = c3 = 0.0
    elif design == 3:
        c1 = c3 = 0.0
    return var, c1, c2, c3


def as_data(data: "MRMCData | str | Path | list[dict[str, Any]] | Any") -> MRMCData:
    """MRMCData from itself, a long-format CSV path, a list of row dicts or a pandas DataFrame
    (columns reader, treatment, case, truth, rating; a missing treatment means one treatment)."""
    if isinstance(data, MRMCData):
        return data
    if isinstance(data, (str, Path)):
        return read_mrmc_csv(data)
    if hasattr(data, "to_dict"):
        data = data.to_dict("records")
    return MRMCData.from_rows([{"treatment": "1", **r} for r in data])


def or_analysis(data: MRMCData, cov_method: str = "jackknife", readers: str = "random", cases: str = "random",
                conf: float = 0.95) -> dict[str, Any]:
    """The full OR analysis; see the module docstring for which formulas each choice uses.
    cov_method 'DeLong' or 'jackknife' (any case); readers and cases 'random' or 'fixed'."""
    data = as_data(data)
    cov_method = {m.lower(): m for m in COV_METHODS}.get(str(cov_method).lower(), cov_method)
    if cov_method not in COV_METHODS:
        raise UserError(f"covariance method must be one of {COV_METHODS}, got {cov_method!r}")
    if readers not in ("random", "fixed") or cases not in ("random", "fixed") or readers == cases == "fixed":
        raise UserError("readers and cases are each 'random' or 'fixed', and not both fixed")
    treatments, reader_names, groups, n_cases = reader_aucs(data)
    t, r = len(treatments), len(reader_names)
    if readers == "random" and r < 2:
        raise UserError("random readers need >= 2 readers; with one reader use fixed readers")
    design = design_of(data)
    flat = [g for row in groups for g in row]
    cov = roc_cov.delong_cov(flat) if cov_method == "DeLong" else roc_cov.jackknife_cov(flat, n_cases)
    t_of, r_of = np.repeat(np.arange(t), r), np.tile(np.arange(r), t)
    theta = np.array([[g.auc for g in row] for row in groups])  # [t, r]
    var, c1, c2, c3 = _cov_components(cov, t_of, r_of, design)
    ti, rj, grand = theta.mean(axis=1), theta.mean(axis=0), theta.mean()
    ms_t = r * float(np.sum((ti - grand) ** 2)) / (t - 1) if t > 1 else float("nan")
    ms_r = t * float(np.sum((rj - grand) ** 2)) / (r - 1) if r > 1 else float("nan")
    ms_tr = (float(np.sum((theta - ti[:, None] - rj[None, :] + grand) ** 2)) / ((t - 1) * (r - 1))
             if t > 1 and r > 1 else float("nan"))
    out: dict[str, Any] = {
        "treatments": treatments, "readers": reader_names, "design": design, "cov_method": cov_method,
        "reader_type": readers, "case_type": cases, "conf_level": conf, "n_cases": n_cases,
        "auc": {str(tr): {str(rd): float(theta[i, j]) for j, rd in enumerate(reader_names)} for i, tr in enumerate(treatments)},
        "cov": cov.tolist(),
        "ms": {"T": ms_t, "R": ms_r, "T:R": ms_tr},
        "var_comp": {"error": var, "cov1": c1, "cov2": c2, "cov3": c3,
                     "reader": ((ms_r - ms_tr) / t - c1 + c3) if t > 1 else ms_r - var + c2,
                     "treatment_x_reader": (ms_tr - var + c1 + (c2 - c3)) if t > 1 else None},
        "treatment_means": [_treatment_mean(theta[i], cov[t_of == i][:, t_of == i], design, readers, cases, conf)
                            | {"treatment": str(tr)} for i, tr in enumerate(treatments)],
    }
    if t > 1:
        out.update(_global_test(theta, ms_t, ms_tr, var, c1, c2, c3, readers, cases, conf, treatments))
    if t > 1 and readers == "fixed":
        out["reader_differences"] = _reader_diffs(theta, cov, t_of, r_of, design, conf, treatments, reader_names)
    return out


def _global_test(theta, ms_t, ms_tr, var, c1, c2, c3, readers, cases, conf, treatments) -> dict[str, Any]:
    t, r = theta.shape
    est = theta.mean(axis=1)
    pairs = list(itertools.combinations(range(t), 2))
    diffs = []
    if readers == "random" and cases == "random":
        den = ms_tr + r * max(c2 - c3, 0.0)
        df2 = den ** 2 / (ms_tr ** 2 / ((t - 1) * (r - 1))) if ms_tr > 0 else float("inf")
        f = ms_t / den if den > 0 else float("inf")
        test = {"statistic": "F", "F": f, "df1": t - 1, "df2": df2, "p": float(stats.f.sf(f, t - 1, df2)), "denominator": den}
        se, df = float(np.sqrt(2 / r * den)), df2
    elif readers == "fixed":
        den = var - c1 + (r - 1) * (c2 - c3)
        x2 = (t - 1) * ms_t / den
        test = {"statistic": "X2", "X2": x2, "df": t - 1, "p": float(stats.chi2.sf(x2, t - 1)), "denominator": den}
        se, df = float(np.sqrt(2 / r * den)), float("inf")
    else:
        f = ms_t / ms_tr
        df = (t - 1) * (r - 1)
        test = {"statistic": "F", "F": f, "df1": t - 1, "df2": df, "p": float(stats.f.sf(f, t - 1, df))}
        se = float(np.sqrt(2 / r * ms_tr))
    for a, b in pairs:
        d = float(est[a] - est[b])
        diffs.append(_interval({"comparison": f"{treatments[a]} - {treatments[b]}", "estimate": d}, d, se, df, conf, test=True))
    return {"test": test, "differences": diffs}


def _interval(row: dict[str, Any], est: float, se: float, df: float, conf: float, test: bool = False,
              clip: bool = False) -> dict[str, Any]:
    q = stats.norm.ppf((1 + conf) / 2) if not np.isfinite(df) else stats.t.ppf((1 + conf) / 2, df)
    lo, hi = est - q * se, est + q * se
    if clip:
        lo, hi = max(lo, 0.0), min(hi, 1.0)
    row.update({"se": se, "df": df, "ci": [float(lo), float(hi)]})
    if test:
        stat = est / se if se > 0 else float("inf") * np.sign(est) if est else 0.0
        row["z" if not np.isfinite(df) else "t"] = float(stat)
        row["p"] = float(2 * (stats.norm.sf(abs(stat)) if not np.isfinite(df) else stats.t.sf(abs(stat), df)))
    return row


def _treatment_mean(theta_i: np.ndarray, cov_i: np.ndarray, design: int, readers: str, cases: str,
                    conf: float) -> dict[str, Any]:
    """One treatment alone: Hillis' single-treatment CI (random readers), or the fixed-reader / fixed-case one."""
    r = len(theta_i)
    est = float(theta_i.mean())
    ms_r = float(np.sum((theta_i - est) ** 2) / (r - 1)) if r > 1 else float("nan")
    off = ~np.eye(r, dtype=bool)
    cov2 = 0.0 if design == 2 or r < 2 else float(cov_i[off].mean())
    var = float(np.mean(np.diag(cov_i)))
    row: dict[str, Any] = {"estimate": est, "ms_r": ms_r, "cov2": cov2, "var": var}
    if readers == "random" and cases == "random":
        se = float(np.sqrt(ms_r / r + max(cov2, 0.0)))
        df = (ms_r + r * max(cov2, 0.0)) ** 2 / (ms_r ** 2 / (r - 1)) if ms_r > 0 else float("inf")
    elif readers == "fixed":
        se, df = float(np.sqrt((var + (r - 1) * max(cov2, 0.0)) / r)), float("inf")
    else:
        se, df = float(np.sqrt(ms_r / r)), float(r - 1)
    return _interval(row, est, se, df, conf, clip=True)


def _reader_diffs(theta, cov, t_of, r_of, design, conf, treatments, reader_names) -> list[dict[str, Any]]:
    out = []
    for j, name in enumerate(reader_names):
        sel = r_of == j
        sub = cov[sel][:, sel]
        var = float(np.mean(np.diag(sub)))
        off = ~np.eye(sub.shape[0], dtype=bool)
        c1 = 0.0 if design == 3 else float(sub[off].mean())
        se = float(np.sqrt(2 * (var - c1)))
        for a, b in itertools.combinations(range(theta.shape[0]), 2):
            d = float(theta[a, j] - theta[b, j])
            out.append(_interval({"reader": str(name), "comparison": f"{treatments[a]} - {treatments[b]}", "estimate": d},
                                 d, se, float("inf"), conf, test=True))
    return out


def single_reader(data: MRMCData, conf: float = 0.95) -> list[dict[str, Any]]:
    """Each reader x treatment AUC with its DeLong standard error and normal CI (clipped to [0, 1])."""
    treatments, reader_names, groups, _ = reader_aucs(as_data(data))
    out = []
    for i, tr in enumerate(treatments):
        for j, rd in enumerate(reader_names):
            g = groups[i][j]
            se = float(np.sqrt(roc_cov.delong_cov([g])[0, 0]))
            out.append(_interval({"treatment": str(tr), "reader": str(rd), "estimate": g.auc,
                                  "n_pos": len(g.v10), "n_neg": len(g.v01)}, g.auc, se, float("inf"), conf, clip=True))
    return out

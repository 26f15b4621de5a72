"""How many readers x cases a visual Turing test needs: the Hillis-Obuchowski-Berbaum method.

Hillis, Obuchowski & Berbaum (2008), "Power estimation for multireader ROC methods: an updated and
unified approach", Acad Radiol 15:647. The OR variance components of a pilot (Var, Cov1-3 for c0
cases; sigma2_R, sigma2_TR) are carried to c cases by scaling the case-level terms by c0 / c, and the
power follows from the (noncentral) distributions of the OR statistics with Hillis' df:
  * one treatment vs chance (is AUC = 0.5?): SE^2 = (sigma2_R + Var + (r-1) Cov2) / r,
    df = (E MS(R) + r Cov2)^2 / (E MS(R)^2 / (r-1)), E MS(R) = sigma2_R + Var - Cov2; noncentral t;
  * equivalence within +/- margin (TOST at 5 % each side, true AUC given): both one-sided t-tests reject;
  * two treatments (generators), difference d: lambda = r d^2 / 2 / (sigma2_TR + Var - Cov1 + (r-1)(Cov2 - Cov3)),
    df2 as Hillis 2007 with E MS(T:R) = sigma2_TR + Var - Cov1 - Cov2 + Cov3; noncentral F.
Without a pilot, the defaults are: Var from Hanley & McNeil's (1982) AUC variance at the assumed AUC
for the given numbers of real and synthetic cases; Cov1/Var, Cov2/Var, Cov3/Var and sigma2_R,
sigma2_TR from the OR estimates of the VanDyke study (DeLong; data/mrmc), the pilot HOB 2008 also use
as their example. Pass the `var_comp` of a finished study to plan the next one from real numbers.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats

# VanDyke OR estimates (DeLong, random readers and cases): ratios to Var and reader variances
VANDYKE = {"r1": 0.0003420090 / 0.0007921325, "r2": 0.0003395265 / 0.0007921325, "r3": 0.0002358497 / 0.0007921325,
           "sigma2_r": 0.0015364254, "sigma2_tr": 0.0002045840}


@dataclass
class Components:
    """OR variance components for c cases (Var, Cov1-3 already at that number of cases)."""

    var: float
    cov1: float
    cov2: float
    cov3: float
    sigma2_r: float
    sigma2_tr: float

    def scaled(self, factor: float) -> "Components":
        """Case-level terms times factor (c0 / c when going from c0 to c cases)."""
        return Components(self.var * factor, self.cov1 * factor, self.cov2 * factor, self.cov3 * factor,
                          self.sigma2_r, self.sigma2_tr)


def hanley_mcneil_var(auc: float, n_pos: int, n_neg: int) -> float:
    q1, q2 = auc / (2 - auc), 2 * auc ** 2 / (1 + auc)
    return (auc * (1 - auc) + (n_pos - 1) * (q1 - auc ** 2) + (n_neg - 1) * (q2 - auc ** 2)) / (n_pos * n_neg)


def default_components(n_pos: int, n_neg: int, auc: float = 0.5) -> Components:
    v = hanley_mcneil_var(auc, n_pos, n_neg)
    return Components(v, VANDYKE["r1"] * v, VANDYKE["r2"] * v, VANDYKE["r3"] * v, VANDYKE["sigma2_r"], VANDYKE["sigma2_tr"])


def from_var_comp(var_comp: dict[str, float], n_cases_pilot: int, n_cases: int) -> Components:
    """A finished study's OR estimates (mrmc var_comp), carried from its cases to n_cases."""
    c = Components(var_comp["error"], var_comp["cov1"], var_comp["cov2"], var_comp["cov3"],
                   max(var_comp["reader"], 0.0), max(var_comp.get("treatment_x_reader") or 0.0, 0.0))
    return c.scaled(n_cases_pilot / n_cases)


def _one_treatment(c: Components, readers: int) -> tuple[float, float]:
    ms_r = c.sigma2_r + c.var - c.cov2
    se = np.sqrt((ms_r + readers * max(c.cov2, 0.0)) / readers)
    df = (ms_r + readers * max(c.cov2, 0.0)) ** 2 / (ms_r ** 2 / (readers - 1)) if ms_r > 0 else np.inf
    return float(se), float(df)


def power_vs_chance(c: Components, readers: int, auc: float, alpha: float = 0.05) -> float:
    """Power of the two-sided OR t-test of AUC = 0.5 when the reader-averaged AUC is `auc`."""
    se, df = _one_treatment(c, readers)
    crit = stats.t.ppf(1 - alpha / 2, df)
    ncp = (auc - 0.5) / se
    return float(stats.nct.sf(crit, df, ncp) + stats.nct.cdf(-crit, df, ncp))


def power_equivalence(c: Components, readers: int, margin: float, auc: float = 0.5, alpha: float = 0.05) -> float:
    """Power to conclude |AUC - 0.5| < margin by two one-sided tests (the 90 % CI inside the margin)."""
    se, df = _one_treatment(c, readers)
    crit = stats.t.ppf(1 - alpha, df)
    d = auc - 0.5
    # both tests reject: (d + margin)/se > crit and (margin - d)/se > crit, with a common estimation error
    p = stats.t.cdf((margin - d) / se - crit, df) + stats.t.cdf((margin + d) / se - crit, df) - 1
    return float(max(p, 0.0))


def power_two_treatments(c: Components, readers: int, diff: float, alpha: float = 0.05) -> float:
    """Power of the OR F-test (random readers and cases) for two treatments whose AUCs differ by diff."""
    den = c.sigma2_tr + c.var - c.cov1 + (readers - 1) * (c.cov2 - c.cov3)
    ms_tr = c.sigma2_tr + c.var - c.cov1 - c.cov2 + c.cov3
    df2 = den ** 2 / (ms_tr ** 2 / (readers - 1))
    lam = readers * diff ** 2 / 2 / den
    crit = stats.f.ppf(1 - alpha, 1, df2)
    if lam < 1e-12:  # scipy's ncf.sf is wrong at noncentrality 0 (gives sf - 1); the central F is exact there
        return float(stats.f.sf(crit, 1, df2))
    return float(stats.ncf.sf(crit, 1, df2, lam))


def cases_needed(readers: int, margin: float = 0.1, detect_auc: float = 0.6, power: float = 0.8,
                 max_per_class: int = 2000) -> dict[str, int | None]:
    """Real = synthetic images needed with this many readers (default components), for each goal."""
    sizes = np.unique(np.round(np.geomspace(5, max_per_class, 120)).astype(int))

    def first(ok) -> int | None:
        return next((int(n) for n in sizes if ok(int(n))), None)

    return {"detect": first(lambda n: power_vs_chance(default_components(n, n, detect_auc), readers, detect_auc) >= power),
            "equivalence": first(lambda n: power_equivalence(default_components(n, n, 0.5), readers, margin) >= power)}


def study_size_advice(n_real: int, n_synthetic: int, margin: float = 0.1, detect_auc: float = 0.6,
                      power: float = 0.8, max_readers: int = 40, components: Components | None = None,
                      cases_pilot: int | None = None, planned_readers: int = 5) -> dict[str, Any]:
    """For a study of these cases: power by number of readers for detecting detect_auc vs 0.5 and for
    showing equivalence within margin (truth 0.5); the readers each needs; text for the UI and CLI."""
    n_pos, n_neg = max(int(n_synthetic), 2), max(int(n_real), 2)

    def comps(auc: float) -> Components:
        if components is not None:
            return components.scaled((cases_pilot or (n_pos + n_neg)) / (n_pos + n_neg))
        return default_components(n_pos, n_neg, auc)

    readers = list(range(2, max_readers + 1))
    detect = [power_vs_chance(comps(detect_auc), r, detect_auc) for r in readers]
    equiv = [power_equivalence(comps(0.5), r, margin) for r in readers]
    need_d = next((r for r, p in zip(readers, detect) if p >= power), None)
    need_e = next((r for r, p in zip(readers, equiv) if p >= power), None)

    def say(need: int | None, what: str) -> str:
        return (f"{need} readers give {power:.0%} power {what}" if need else
                f"even {max_readers} readers do not give {power:.0%} power {what}: add cases")

    per = cases_needed(planned_readers, margin, detect_auc, power)
    k = min(planned_readers, max_readers) - 2
    text = (f"With {n_real} real and {n_synthetic} synthetic images (Hillis-Obuchowski-Berbaum, "
            f"{'pilot' if components else 'default'} variance components): "
            f"{say(need_d, f'to detect AUC {detect_auc:g} vs 0.5')}; {say(need_e, f'to show equivalence within ±{margin:g}')}. "
            f"{planned_readers} readers have power {detect[k]:.0%} and {equiv[k]:.0%} here; they would need "
            f"{per['detect'] or 'over 2000'} and {per['equivalence'] or 'over 2000'} real and as many synthetic images.")
    return {"n_real": n_real, "n_synthetic": n_synthetic, "margin": margin, "detect_auc": detect_auc, "power": power,
            "readers": readers, "power_detect": detect, "power_equivalence": equiv,
            "readers_needed_detect": need_d, "readers_needed_equivalence": need_e,
            "planned_readers": planned_readers, "cases_needed_per_truth": per,
            "components": asdict(comps(0.5)), "text": text}

"""`medgan study create | status | export | analyze | add-reader | reset-reader | close | open`: reader studies headless."""
from __future__ import annotations

import argparse
import json

from medgan_ui.cli import add_workspace_arg
from medgan_ui.workspace import Workspace, atomic_write_text


def register(sub: argparse._SubParsersAction) -> None:
    study = sub.add_parser("study", help="blinded visual Turing tests: create, follow, export, analyse")
    ssub = study.add_subparsers(dest="study_command", metavar="ACTION")

    p = ssub.add_parser("create", help="build a study from real images and synthetic sets or runs")
    p.add_argument("--name", required=True)
    p.add_argument("--real", default="demo", help="'demo', a dataset name in the workspace, a .npz cache or a data folder")
    p.add_argument("--part", default="test", help="split part of the real set: train, val, test or all (default test)")
    p.add_argument("--synthetic", nargs="+", required=True, help="synthetic set folders (images + labels.csv) or run ids")
    p.add_argument("--classes", default=None, help="comma-separated finding classes (default: all + No Finding)")
    p.add_argument("--no-normal", action="store_true", help="do not add a 'No Finding' class")
    p.add_argument("--real-per-class", type=int, default=10)
    p.add_argument("--synthetic-per-class", type=int, default=None,
                   help="in total per class, shared between sources (default: as many as real, a balanced study)")
    p.add_argument("--no-match", action="store_true", help="do not match synthetic sex/view labels to the real cases")
    p.add_argument("--repeats", type=int, default=0, help="cases shown twice (intra-reader consistency)")
    p.add_argument("--score", choices=("realism", "confidence"), default="realism")
    p.add_argument("--no-finding-question", action="store_true", help="only ask real/synthetic and the score")
    p.add_argument("--size", type=int, default=None, help="image size (default: that of the real set)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--margin", type=float, default=0.1,
                   help="equivalence margin in AUC around 0.5, fixed now, before any rating (default 0.1)")
    p.add_argument("--readers", type=int, default=5, help="readers you plan to invite (for the size advice; default 5)")
    add_workspace_arg(p)
    p.set_defaults(func=_create)

    for name, fn, helptext in (("status", _status, "studies, or one study's readers and progress"),
                               ("close", _close, "stop accepting answers"), ("open", _open, "accept answers again")):
        p = ssub.add_parser(name, help=helptext)
        p.add_argument("id", nargs="?" if name == "status" else None, help="study id (status without one lists studies)")
        if name == "status":
            p.add_argument("--json", action="store_true")
        add_workspace_arg(p)
        p.set_defaults(func=fn)

    p = ssub.add_parser("add-reader", help="issue a personal reader code")
    p.add_argument("id")
    p.add_argument("name")
    add_workspace_arg(p)
    p.set_defaults(func=_add_reader)

    p = ssub.add_parser("reset-reader", help="a new reader code for a reader who lost theirs (ends their sessions)")
    p.add_argument("id")
    p.add_argument("name")
    add_workspace_arg(p)
    p.set_defaults(func=_reset_reader)

    p = ssub.add_parser("export", help="every rating as CSV (with truth: for the organiser only)")
    p.add_argument("id")
    p.add_argument("--out", required=True)
    add_workspace_arg(p)
    p.set_defaults(func=_export)

    p = ssub.add_parser("analyze", help="MRMC ROC analysis (reader-averaged AUC, equivalence), per reader, findings, kappas")
    p.add_argument("id", nargs="?", help="study id (or give --mrmc-csv)")
    p.add_argument("--mrmc-csv", default=None, metavar="FILE",
                   help="analyse any MRMC long-format CSV instead (columns reader, treatment, case, truth, rating; "
                        "MRMCaov names accepted; rows with repeat_of are skipped)")
    p.add_argument("--cov", choices=("DeLong", "jackknife"), default="DeLong", help="covariance method for --mrmc-csv")
    p.add_argument("--fixed-readers", action="store_true", help="--mrmc-csv: readers fixed (results for these readers only)")
    p.add_argument("--fixed-cases", action="store_true", help="--mrmc-csv: cases fixed")
    p.add_argument("--margin", type=float, default=0.1, help="--mrmc-csv: equivalence margin around AUC 0.5")
    p.add_argument("--json", action="store_true", help="the full result as JSON")
    p.add_argument("--figure", default=None, help="write the figure (PNG) here: per-reader ROC with the reader average, forest plot")
    p.add_argument("--model-card", default=None, help="write the turing_test block (JSON) here")
    add_workspace_arg(p)
    p.set_defaults(func=_analyze)


def _store(args: argparse.Namespace):
    from medgan_ui.study.store import StudyStore

    return StudyStore(Workspace(args.workspace).studies_db)


def _create(args: argparse.Namespace) -> int:
    from medgan_ui.study.design import StudyConfig, create_study

    cfg = StudyConfig(name=args.name, real=args.real, part=None if args.part == "all" else args.part,
                      synthetic=args.synthetic, classes=[c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None,
                      include_no_finding=not args.no_normal, real_per_class=args.real_per_class,
                      synthetic_per_class=args.synthetic_per_class, match_labels=not args.no_match, repeats=args.repeats,
                      score_kind=args.score, ask_finding=not args.no_finding_question, seed=args.seed, size=args.size,
                      equivalence_margin=args.margin, planned_readers=args.readers)
    info = create_study(Workspace(args.workspace), cfg)
    print(f"study id:    {info.study_id}")
    print(f"access code: {info.access_code}   (give it to readers; it is stored hashed and shown only now)")
    print(f"cases:       {info.n_cases} ({info.counts['real']} real, {info.counts['synthetic']} synthetic, {info.counts['repeats']} repeats)")
    print(f"margin:      equivalence within ±{args.margin:g} AUC of 0.5")
    print(f"size:        {info.size_advice['text']}")
    for w in info.warnings:
        print(f"warning:     {w}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medgan_ui.study.integrity import report_line

    store = _store(args)  # a damaged database stops here with a message (never an empty list)
    if not args.id:
        rows = store.list_studies()
        if args.json:
            print(json.dumps(rows, indent=2, default=str))
            return 0
        print(report_line(Path(store.path), store.integrity))
        for s in rows:
            print(f"{s['id']}  {s['status']:6}  cases {s['n_cases']:4}  readers {s['n_readers']:3}  {s['name']}")
        if not rows:
            print("no studies yet: medgan study create --name ... --synthetic ...")
        return 0
    study, progress = store.study(args.id), store.progress(args.id)
    if args.json:
        print(json.dumps({"study": study, "readers": progress}, indent=2, default=str))
        return 0
    print(f"{study['id']}  {study['name']}  [{study['status']}]  created {study['created']}")
    for p in progress:
        print(f"  {p['reader']:30} {p['answered']:4} / {p['total']:<4} last answer {p['last_answer'] or '-'}")
    if not progress:
        print("  no readers yet")
    return 0


def _close(args: argparse.Namespace) -> int:
    _store(args).set_status(args.id, "closed")
    print(f"{args.id} closed")
    return 0


def _open(args: argparse.Namespace) -> int:
    _store(args).set_status(args.id, "open")
    print(f"{args.id} open")
    return 0


def _add_reader(args: argparse.Namespace) -> int:
    code = _store(args).add_reader(args.id, args.name)
    print(f"reader code for {args.name}: {code}")
    return 0


def _reset_reader(args: argparse.Namespace) -> int:
    code = _store(args).reset_reader(args.id, args.name)
    print(f"new reader code for {args.name}: {code}   (give it to the reader: sign in with name + this code; "
          "the old code and their open sessions no longer work)")
    return 0


def _export(args: argparse.Namespace) -> int:
    from medgan_ui.study import analysis

    rows = _store(args).ratings_rows(args.id)
    kind = _store(args).study(args.id)["settings"].get("score_kind", "realism")
    atomic_write_text(args.out, analysis.ratings_csv(rows, kind))
    print(f"{len(rows)} ratings -> {args.out}")
    return 0


def _analyze(args: argparse.Namespace) -> int:
    from medgan_ui.errors import UserError
    from medgan_ui.study import analysis, figures

    if args.mrmc_csv:
        res = analysis.analyze_mrmc_file(args.mrmc_csv, args.cov, "fixed" if args.fixed_readers else "random",
                                         "fixed" if args.fixed_cases else "random", args.margin)
        if args.figure:
            figures.save_png(figures.mrmc_figure(res), args.figure)
        if args.json:
            print(analysis.to_json(res))
            return 0
        o = res["or"]
        print(f"{res['file']}: {len(o['readers'])} readers, {len(o['treatments'])} treatments, {o['n_cases']} cases, "
              f"design {o['design']} ({'factorial' if o['design'] == 1 else 'cases nested within ' + ('readers' if o['design'] == 2 else 'treatments')})")
        for p in res["per_reader"]:
            print(f"  {p['treatment']:>12}  reader {p['reader']:>8}  AUC {p['estimate']:.4f}  95% CI {p['ci'][0]:.3f} to {p['ci'][1]:.3f}")
        print(res["conclusion"])
        if args.figure:
            print(f"figure -> {args.figure}")
        return 0
    if not args.id:
        raise UserError("give a study id, or --mrmc-csv FILE")
    store = _store(args)
    res = analysis.analyze(store, args.id)
    if args.figure:
        analysis.summary_figure(res, store.ratings_rows(args.id), args.figure)
    if args.model_card:
        atomic_write_text(args.model_card, json.dumps({"turing_test": analysis.turing_test_block(res)}, indent=2) + "\n")
    if args.json:
        print(analysis.to_json(res))
        return 0
    t = res["turing"]
    print(f"{res['study']['name']} ({res['study']['id']}): {res['n_readers']} readers, {res['n_cases']} cases, {res['n_ratings']} ratings")
    print(f"conclusion: {t['conclusion']}")
    if t.get("generators"):
        print(f"generators: {t['generators']['conclusion']}")
    ba = t.get("balanced_accuracy") or {}
    if ba.get("balanced_accuracy") is not None:
        print(f"balanced accuracy {ba['balanced_accuracy']:.3f} (permutation p = {ba['p_perm']:.4f}, {ba['n_perm']} permutations)")
    for name, b in (t.get("binomial") or {}).items():
        if b:
            print(f"{name}: accuracy {b['accuracy']:.3f}, exact binomial p = {b['p']:.4f} (balanced design)")
    print("  ".join(f"{h:>12}" for h in analysis.SUMMARY_HEADERS))
    for row in analysis.summary_table(res):
        print("  ".join(f"{'-' if v is None else v!s:>12}" for v in row))
    for rec in res["findings"]["recognition"].values():
        if rec.get("text"):
            print(f"finding: {rec['text']}")
    ag = res["agreement_call"]
    print(f"agreement (real/synthetic): Fleiss kappa {ag['fleiss_kappa']}, mean Cohen kappa {ag['mean_cohen_kappa']}")
    for name, d in res["intra_reader"].items():
        print(f"intra-reader {name}: {d['n']} repeats, call agreement {d['call_agreement']:.2f}, mean |score diff| {d['mean_abs_score_diff']:.2f}")
    if args.figure:
        print(f"figure -> {args.figure}")
    return 0

"""Study design: per-class counts, matched labels, identical encoding, repeats, clear errors."""
from __future__ import annotations

import csv
import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image

import _study_fixtures as fx
from medgan_ui.errors import UserError
from medgan_ui.study.design import NO_FINDING, StudyConfig, create_study, encode_png, png_chunks, read_synthetic_folder
from medgan_ui.study.store import StudyStore
from medgan_ui.workspace import Workspace


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    info = fx.make_study(ws, real_per_class=4, synthetic_per_class=3, repeats=3)
    return ws, info, StudyStore(ws.studies_db)


def test_counts_per_class_and_truth(built):
    ws, info, store = built
    cases = store.cases(info.study_id)
    firsts = [c for c in cases if not c["repeat_of"]]
    per = Counter((c["labels"]["class"], c["truth"]) for c in firsts)
    classes = ["Cardiomegaly", "Effusion", "Nodule", NO_FINDING]
    assert info.counts["classes"] == classes
    for cls in classes:
        assert per[(cls, "real")] == 4 and per[(cls, "synthetic")] == 3
    for c in firsts:  # each case really shows its class
        assert (not c["labels"]["findings"]) if c["labels"]["class"] == NO_FINDING else c["labels"]["class"] in c["labels"]["findings"]
    assert {c["labels"]["source_name"] for c in firsts if c["truth"] == "synthetic"} == {"synthetic:synthetic-export"}
    study = store.study(info.study_id)
    assert study["settings"]["findings"] == ["Cardiomegaly", "Effusion", "Nodule", NO_FINDING]
    assert study["settings"]["score_kind"] == "confidence"


def test_synthetic_labels_matched_to_real(tmp_path):
    from medgan_ui.study.design import Item

    ws = Workspace(tmp_path / "ws")
    rng = np.random.default_rng(0)
    # a pool with every sex/view combination in every class, mostly the "wrong" ones
    pool = [Item(rng.integers(0, 255, (64, 64), dtype=np.uint8), f, {"sex": sx, "view": vw}, f"p{i}", "synthetic:pool")
            for i, (f, sx, vw) in enumerate([(f, sx, vw) for f in (["Effusion"], ["Nodule"], []) for sx in "FM"
                                              for vw in ("AP", "PA") for _ in range(3)])]
    cfg = StudyConfig(name="m", part=None, classes=["Effusion", "Nodule"], real_per_class=3, synthetic_per_class=3, seed=2)
    info = create_study(ws, cfg, real=fx.demo(), synthetic={"pool": pool})
    firsts = StudyStore(ws.studies_db).cases(info.study_id)
    for cls in info.counts["classes"]:
        real = [c["labels"]["general"] for c in firsts if c["truth"] == "real" and c["labels"]["class"] == cls]
        syn = [c["labels"]["general"] for c in firsts if c["truth"] == "synthetic" and c["labels"]["class"] == cls]
        key = lambda g: (g["sex"], g["view"])  # noqa: E731
        assert sorted(map(key, syn)) == sorted(map(key, real))  # each synthetic case copies a real case's sex and view
    cfg.match_labels = False
    create_study(ws, cfg, real=fx.demo(), synthetic={"pool": pool})  # unmatched selection also works


def test_every_image_encoded_identically(built):
    ws, info, store = built
    cases = store.cases(info.study_id)
    pngs = [store.case_png(info.study_id, c["id"]) for c in cases]
    assert len({len(p) for p in pngs}) == 1  # stored deflate: size depends on dimensions only
    assert {tuple(png_chunks(p)) for p in pngs} == {("IHDR", "IDAT", "IEND")}  # the export's tEXt chunk is gone
    for p in pngs:
        with Image.open(io.BytesIO(p)) as im:
            assert (im.mode, im.size, im.info) == ("L", (64, 64), {})
    assert len({c["id"] for c in cases}) == len(cases)
    assert all(len(c["id"]) == 16 and c["id"].replace("-", "").replace("_", "").isalnum() for c in cases)


def test_encode_keeps_pixels_and_resizes_to_study_size():
    a = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    with Image.open(io.BytesIO(encode_png(a, 64))) as im:
        assert np.array_equal(np.asarray(im), a)
    with Image.open(io.BytesIO(encode_png(np.zeros((100, 80), np.uint8), 32))) as im:
        assert im.size == (32, 32)
    assert len(encode_png(np.zeros((64, 64), np.uint8), 64)) == len(encode_png(np.random.randint(0, 255, (64, 64), dtype=np.uint8), 64))


def test_repeats_point_at_originals(built):
    ws, info, store = built
    cases = {c["id"]: c for c in store.cases(info.study_id)}
    reps = [c for c in cases.values() if c["repeat_of"]]
    assert len(reps) == 3 and info.n_cases == 4 * 7 + 3
    for r in reps:
        o = cases[r["repeat_of"]]
        assert (r["truth"], r["source"]) == (o["truth"], o["source"])


def test_flag_column_labels_csv_and_missing_csv(tmp_path):
    folder = tmp_path / "flags"
    folder.mkdir()
    Image.new("L", (64, 64), 10).save(folder / "a.png")
    Image.new("L", (64, 64), 20).save(folder / "b.png")
    with open(folder / "labels.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerows([["filename", "sex", "Nodule", "Effusion"], ["a.png", "F", "1", "0"], ["b.png", "M", "0", "0"]])
    items = read_synthetic_folder(folder)
    assert [it.findings for it in items] == [["Nodule"], []]
    assert items[0].general == {"sex": "F"}
    with pytest.raises(UserError, match="labels.csv"):
        read_synthetic_folder(tmp_path)


def test_too_few_images_names_the_class(tmp_path):
    ws = Workspace(tmp_path / "ws")
    syn = fx.write_synthetic_folder(tmp_path / "syn", n=240)
    cfg = StudyConfig(name="x", real="demo", part=None, synthetic=[str(syn)], classes=["Cardiomegaly"],
                      include_no_finding=False, real_per_class=50, synthetic_per_class=1)
    with pytest.raises(UserError, match="Cardiomegaly"):
        create_study(ws, cfg, real=fx.demo())
    with pytest.raises(UserError, match="synthetic"):
        create_study(ws, StudyConfig(name="x", synthetic=[], real_per_class=1), real=fx.demo())
    with pytest.raises(UserError, match="neither a folder"):
        create_study(ws, StudyConfig(name="x", part=None, synthetic=["no-such-set"], real_per_class=1), real=fx.demo())


def test_two_synthetic_sources_share_the_per_class_number(tmp_path):
    ws = Workspace(tmp_path / "ws")
    s1 = fx.write_synthetic_folder(tmp_path / "set1", n=240, seed=7)
    s2 = fx.write_synthetic_folder(tmp_path / "set2", n=240, seed=7)
    cfg = StudyConfig(name="two", real="demo", part=None, synthetic=[str(s1), str(s2)], classes=["Effusion"],
                      include_no_finding=True, real_per_class=2, synthetic_per_class=5, seed=1)
    info = create_study(ws, cfg, real=fx.demo())
    cases = StudyStore(ws.studies_db).cases(info.study_id)
    per_src = Counter((c["labels"]["source_name"], c["labels"]["class"]) for c in cases if c["truth"] == "synthetic")
    assert per_src[("synthetic:set1", "Effusion")] == 3 and per_src[("synthetic:set2", "Effusion")] == 2
    assert per_src[("synthetic:set1", NO_FINDING)] == 3 and per_src[("synthetic:set2", NO_FINDING)] == 2


def test_synthetic_cases_generated_from_a_run(tmp_path):
    from medgan_ui.data.phantom import demo_imageset
    from medgan_ui.gan import engine
    from medgan_ui.gan.runs import Run
    from medgan_ui.gan.config import make_configs

    ds = demo_imageset(n=48, size=16, seed=0)
    tc, mc = make_configs("gdgan", "tiny", steps=2)
    ws = Workspace(tmp_path / "ws")
    run_id = Run.create(ws, ds, tc, mc).id
    assert engine.train(ds, tc, mc, ws.run_dir(run_id))["status"] == "finished"
    cfg = StudyConfig(name="from run", part=None, synthetic=[run_id], classes=["Effusion"], real_per_class=2,
                      synthetic_per_class=2, seed=4)
    info = create_study(ws, cfg, real=ds)
    cases = StudyStore(ws.studies_db).cases(info.study_id)
    syn = [c for c in cases if c["truth"] == "synthetic"]
    assert len(syn) == 4 and all(c["source"].startswith(f"run:{run_id}:") for c in syn)
    real_general = sorted((c["labels"]["general"]["sex"], c["labels"]["general"]["view"], c["labels"]["class"]) for c in cases if c["truth"] == "real")
    syn_general = sorted((c["labels"]["general"]["sex"], c["labels"]["general"]["view"], c["labels"]["class"]) for c in syn)
    assert syn_general == real_general  # generated with the labels of the real cases they stand beside
    assert len({len(StudyStore(ws.studies_db).case_png(info.study_id, c["id"])) for c in cases}) == 1

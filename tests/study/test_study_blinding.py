"""Nothing served tells real from synthetic: names, URLs, headers, PNG chunks, dimensions, bit depth
and byte size are the same in kind, and a classifier on them does no better than chance.

The control at the end encodes the same images the usual way (zlib level 9): there the byte size
follows content and the same classifier finds the synthetic images, so the main assertion passes
because the encoding is blind, not because the classifier is weak.
"""
from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

import _study_fixtures as fx
from medgan_ui.study.api import mount_study_routes
from medgan_ui.study.design import png_chunks
from medgan_ui.study.store import StudyStore
from medgan_ui.workspace import Workspace


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    ws = Workspace(tmp_path_factory.mktemp("ws"))
    info = fx.make_study(ws, real_per_class=8, synthetic_per_class=8, classes=["Effusion", "Nodule"], tmp=ws.root)
    app = FastAPI()
    mount_study_routes(app, ws)
    client = TestClient(app)
    store = StudyStore(ws.studies_db)
    truth = {c["id"]: c["truth"] for c in store.cases(info.study_id)}
    r = client.post("/study/api/signin", json={"name": "Blind", "code": info.access_code}).json()
    h = {"Authorization": f"Bearer {r['token']}"}
    nxt, out = r["next"], []
    while not nxt["done"]:
        resp = client.get(nxt["image_url"])
        out.append({"url": nxt["image_url"], "truth": truth[nxt["case"]], "body": resp.content,
                    "headers": {k: v for k, v in resp.headers.items() if k.lower() != "date"}})
        nxt = client.post("/study/api/rate", headers=h, json={"case": nxt["case"], "call": "real", "score": 3,
                                                              "finding": "No Finding"}).json()["next"]
    assert {o["truth"] for o in out} == {"real", "synthetic"}
    return out


def features(body: bytes, url: str) -> list[float]:
    ihdr = body[16:29]
    width, height = int.from_bytes(ihdr[0:4], "big"), int.from_bytes(ihdr[4:8], "big")
    chunks = png_chunks(body)
    return [len(body), width, height, ihdr[8], ihdr[9], len(chunks), sum(c not in ("IHDR", "IDAT", "IEND") for c in chunks), len(url)]


def cv_accuracy(X: np.ndarray, y: np.ndarray) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier

    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    scores = [cross_val_score(m, X, y, cv=cv).mean() for m in
              (make_pipeline(StandardScaler(), LogisticRegression()), DecisionTreeClassifier(max_depth=3, random_state=0))]
    return float(max(scores))


def test_everything_served_is_identical_in_kind(served):
    assert len({features(o["body"], o["url"])[0] for o in served}) == 1  # one byte size for every case
    assert len({tuple(features(o["body"], o["url"])) for o in served}) == 1
    assert all(png_chunks(o["body"]) == ["IHDR", "IDAT", "IEND"] for o in served)
    for o in served:
        with Image.open(io.BytesIO(o["body"])) as im:
            assert (im.mode, im.size, im.info) == ("L", (64, 64), {})
        assert re.fullmatch(r"/study/img/[A-Za-z0-9_-]{16}\?k=[0-9a-f]{32}", o["url"])
    assert len({tuple(sorted(o["headers"].items())) for o in served}) == 1  # same headers, no name/date/etag


def test_classifier_on_served_metadata_is_at_chance(served):
    X = np.array([features(o["body"], o["url"]) for o in served], dtype=float)
    y = np.array([o["truth"] == "synthetic" for o in served])
    assert cv_accuracy(X, y) <= 0.6  # chance is 0.5; constant features give the majority class


def test_control_compressed_encoding_would_leak(served):
    X, y = [], []
    for o in served:
        with Image.open(io.BytesIO(o["body"])) as im:
            buf = io.BytesIO()
            im.save(buf, format="PNG", compress_level=9)
        X.append(features(buf.getvalue(), o["url"]))
        y.append(o["truth"] == "synthetic")
    assert cv_accuracy(np.array(X, dtype=float), np.array(y)) >= 0.8

"""Generator quality metrics (GAN and diffusion runs alike): IS, FID/KID against held-out real images
with a real-vs-real floor at the same n, MS-SSIM diversity within a class, and memorisation
(nearest-training-image SSIM) next to the same measure for held-out real images.

Which real images each score uses, and why the scores compare, is in medgan_ui.evaluate.reference:
every FID/KID is against n images of held-out patients; the floor is FID(reference, n real images of
training patients); the feature extractor never trained on an image it scores. With a domain
extractor the IS is named "domain IS" (its classes are the dataset's findings, not ImageNet's), and
every IS chunk holds n / 10 images for real and synthetic alike. Models are compared over training
seeds (medgan_ui.evaluate.seed_groups); the chunk SD of one run is sampling noise only.

Every result names the feature extractor it used and the images that trained it. Synthetic images are
generated with labels copied from randomly drawn real training images, so the synthetic set has the
real label mix and FID compares like with like.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import torch
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure as ms_ssim
from torchmetrics.functional.image import structural_similarity_index_measure as ssim
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.evaluate import strategies as S
from medgan_ui.evaluate import reference as R
from medgan_ui.evaluate.extractors import FeatureExtractor, get_extractor, trained_patients
from medgan_ui.evaluate.seed_groups import seed_groups, welch_over_seeds
from medgan_ui.gan.device import pick_device
from medgan_ui.workspace import Workspace, atomic_write_json, new_id, now_iso, write_manifest

MS_SSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def inception_score(probs: np.ndarray | torch.Tensor, splits: int = 10) -> dict[str, Any]:
    """IS = exp(E_x KL(p(y|x) || p(y))) per chunk, as openai/improved-gan: mean and SD over `splits` chunks
    of equal size (a remainder of fewer than `splits` images is left out)."""
    p = torch.as_tensor(probs, dtype=torch.float64)
    if len(p) < splits:
        raise UserError(f"inception score over {splits} splits needs at least {splits} images, got {len(p)}")
    p = p[: len(p) // splits * splits]
    scores = []
    for chunk in torch.tensor_split(p, splits):
        py = chunk.mean(dim=0, keepdim=True)
        kl = (chunk * (torch.log(chunk.clamp_min(1e-12)) - torch.log(py.clamp_min(1e-12)))).sum(dim=1)
        scores.append(float(torch.exp(kl.mean())))
    return {"mean": float(np.mean(scores)), "sd": float(np.std(scores)), "splits": scores,
            "chunk_size": len(p) // splits, "sd_is": "sampling noise over chunks of one sample, not a model comparison"}


def _batches(images: torch.Tensor, device: torch.device, batch: int = 128):
    for s in range(0, len(images), batch):
        yield images[s:s + batch].to(device).unsqueeze(1).float() / 255.0


def _device(ext: FeatureExtractor) -> torch.device:
    return next(ext.parameters()).device


@torch.no_grad()
def fid(ext: FeatureExtractor, real: torch.Tensor, fake: torch.Tensor) -> float:
    """Frechet distance between features of two uint8 sets [N,H,W] (torchmetrics, custom extractor)."""
    if len(real) < 2 or len(fake) < 2:
        raise UserError("FID needs at least 2 images in each set")
    metric = FrechetInceptionDistance(feature=ext, normalize=False).to(_device(ext))
    for x in _batches(real, _device(ext)):
        metric.update(x, real=True)
    for x in _batches(fake, _device(ext)):
        metric.update(x, real=False)
    return float(metric.compute())


@torch.no_grad()
def kid(ext: FeatureExtractor, real: torch.Tensor, fake: torch.Tensor, subsets: int = 50) -> dict[str, float]:
    size = min(1000, len(real), len(fake))
    with warnings.catch_warnings():  # its "features kept in memory" notice: expected, our sets are small
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=ext, subsets=subsets, subset_size=size, normalize=False).to(_device(ext))
    for x in _batches(real, _device(ext)):
        metric.update(x, real=True)
    for x in _batches(fake, _device(ext)):
        metric.update(x, real=False)
    mean, sd = metric.compute()
    return {"mean": float(mean), "sd": float(sd), "subset_size": size}


@torch.no_grad()
def is_of(ext: FeatureExtractor, images: torch.Tensor, splits: int = 10) -> dict[str, Any]:
    probs = torch.cat([ext.probs(x).cpu() for x in _batches(images, _device(ext))])
    return inception_score(probs, splits)


def ms_ssim_settings(size: int) -> dict[str, Any]:
    """The standard 11-px kernel (else 7, 5, 3) with the most scales torchmetrics accepts at this size.

    torchmetrics needs size // (scales - 1)^2 > kernel - 1, so 64 px images cannot take the standard
    5 scales x 11 px (that needs ~176 px); we use fewer scales with renormalised betas and say so."""
    for k in (11, 7, 5, 3):  # keep the standard kernel and drop coarse scales first
        for scales in range(5, 1, -1):
            if size >= 2 ** scales and size // max(1, scales - 1) ** 2 > k - 1:
                b = np.array(MS_SSIM_BETAS[:scales])
                return {"scales": scales, "kernel_size": k, "betas": tuple(float(v) for v in b / b.sum()),
                        "standard": scales == 5 and k == 11}
    raise UserError(f"images of {size} px are too small for MS-SSIM")


@torch.no_grad()
def ms_ssim_diversity(images: torch.Tensor, n_pairs: int = 200, seed: int = 0) -> dict[str, Any]:
    """Mean MS-SSIM over random pairs of distinct images (lower = more diverse; Odena et al.)."""
    if len(images) < 2:
        return {"mean": float("nan"), "pairs": 0}
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(images), n_pairs)
    j = (i + rng.integers(1, len(images), n_pairs)) % len(images)  # never the same image
    st = ms_ssim_settings(images.shape[-1])
    a = images[torch.from_numpy(i)].unsqueeze(1).float() / 255.0
    b = images[torch.from_numpy(j)].unsqueeze(1).float() / 255.0
    v = ms_ssim(a, b, data_range=1.0, kernel_size=st["kernel_size"], betas=st["betas"], reduction="none")
    return {"mean": float(v.mean()), "sd": float(v.std()), "pairs": int(n_pairs), **st}


@torch.no_grad()
def memorisation(fake: torch.Tensor, train: torch.Tensor, candidates: int = 10, chunk: int = 64) -> dict[str, Any]:
    """Per synthetic image, the highest SSIM to any training image.

    SSIM against every training image is costly, so the `candidates` nearest training images by pixel
    L2 distance are scored with SSIM (an approximation; labelled in the result)."""
    t = train.reshape(len(train), -1).float() / 255.0
    t_sq = (t * t).sum(dim=1)
    best, nn_index = [], []
    k = min(candidates, len(train))
    for s in range(0, len(fake), chunk):
        f = fake[s:s + chunk].reshape(-1, t.shape[1]).float() / 255.0
        d = (f * f).sum(dim=1, keepdim=True) - 2 * f @ t.T + t_sq[None]
        cand = d.topk(k, dim=1, largest=False).indices  # [c, k]
        a = fake[s:s + chunk].unsqueeze(1).repeat_interleave(k, 0).float() / 255.0
        b = train[cand.reshape(-1)].unsqueeze(1).float() / 255.0
        v = ssim(a, b, data_range=1.0, reduction="none").reshape(-1, k)
        m, arg = v.max(dim=1)
        best.append(m)
        nn_index.append(cand.gather(1, arg[:, None])[:, 0])
    b = torch.cat(best).numpy()
    return {"mean": float(b.mean()), "max": float(b.max()), "p95": float(np.quantile(b, 0.95)),
            "frac_above_0.9": float((b > 0.9).mean()), "per_image": [round(float(v), 4) for v in b],
            "nearest_train_index": torch.cat(nn_index).tolist(),
            "method": f"max SSIM over the {k} pixel-L2 nearest training images"}


def nearest_real(query: Any, train: torch.Tensor, k: int = 5) -> list[tuple[int, float, float]]:
    """(index into train, RMSE in [0,1] units, SSIM) of the k training images closest to one synthetic
    image (uint8 [H,W]), closest first: the per-image memorisation check shown in Browse."""
    q = torch.as_tensor(np.asarray(query), dtype=torch.float32) / 255.0
    x = train.float() / 255.0
    if x.shape[-2:] != q.shape[-2:]:
        raise ValueError(f"the synthetic image is {q.shape[-1]} px but the training images are {x.shape[-1]} px")
    rmse = (x - q).pow(2).flatten(1).mean(1).sqrt()
    top = torch.topk(rmse, min(k, len(train)), largest=False).indices
    s = ssim(x[top].unsqueeze(1), q.expand(len(top), *q.shape).unsqueeze(1), data_range=1.0, reduction="none")
    return [(int(i), float(rmse[i]), float(v)) for i, v in zip(top, s)]


def per_class(ds_like_labels: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    """Indices per class (each finding, and No Finding) from a multi-hot [N, F] array."""
    out = {"No Finding": np.flatnonzero(~ds_like_labels.any(axis=1))}
    for j, f in enumerate(names):
        out[f] = np.flatnonzero(ds_like_labels[:, j])
    return out


IS_SPLITS = 10


def is_name(ext: FeatureExtractor) -> str:
    """'IS' only for Inception weights; a domain network's score over the dataset's classes is 'domain IS'."""
    return "IS" if ext.name.startswith("inception") else "domain IS"


def evaluate_gan(
    ws: Workspace, ds: ImageSet, sources: list[str], extractor: str = "domain", n: int = 1000, seed: int = 0,
    device: str | None = None, on_progress: Callable[[dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None, result_id: str | None = None, extractor_epochs: int = 8,
) -> dict[str, Any]:
    """Metrics for each run (or synthetic set) against held-out real images (evaluate/reference.py).

    Writes experiments/<id>/ with metrics.json, manifest.json and the domain extractor (extractor.pt)."""
    emit = on_progress or (lambda e: None)
    if not sources:
        raise UserError("name at least one run (or synthetic set) to evaluate")
    if n < IS_SPLITS:
        raise UserError(f"n must be at least {IS_SPLITS} (IS uses {IS_SPLITS} splits), got {n}")
    dev = pick_device(device)
    srcs = [S.open_source(ws, s, device) for s in sources]  # bad ids and schemas fail before any compute
    notes = []
    for src in srcs:
        S.check_source(src, ds, [])
        note = R.check_trained_on(src, ds, ws)
        if note:
            notes.append(note)
    emit({"stage": "extractor", "progress": 0.05, "message": f"feature extractor: {extractor}"})
    ext = None if extractor == "domain" else get_extractor(extractor, ds, dev)
    real = R.choose_real_sets(ds, n, seed, IS_SPLITS, exclude_patients=trained_patients(ext) if ext else None,
                              keep_for_extractor=ext is None)
    if ext is None:
        ext = get_extractor("domain", ds, dev, seed=seed, epochs=extractor_epochs, should_stop=should_stop,
                            train_index=real.extractor_index)
    R.check_extractor_unseen(trained_patients(ext), ds, real)
    if real.n < n:
        notes.append(f"n = {real.n} (asked {n}): capped by the held-out images and the floor pool, and rounded "
                     f"down to a multiple of the {IS_SPLITS} IS splits")
    rid = result_id or new_id("metrics")
    out = ws.experiment_dir(rid)
    out.mkdir(parents=True, exist_ok=True)
    saved = ext.save(out / "extractor.pt") if hasattr(ext, "save") else None
    ref, floor_imgs, train_imgs = real.images(ds, "reference"), real.images(ds, "floor"), real.images(ds, "train")
    trained_on = {k: v for k, v in (ext.trained_on or {}).items() if k != "patients"}
    trained_on["n_patients"] = len((ext.trained_on or {}).get("patients") or [])
    key = "is" if is_name(ext) == "IS" else "domain_is"
    ref_det = ds.detailed[torch.from_numpy(real.reference_index)].numpy().astype(bool)
    results: dict[str, Any] = {
        "extractor": ext.name, "extractor_file": str(saved) if saved else None, "extractor_trained_on": trained_on,
        "is_name": is_name(ext), "is_key": key, "is_splits": IS_SPLITS, "n": real.n, "n_requested": int(n),
        "seed": seed, "real_sets": real.describe(ds), "design": (R.__doc__ or "").partition("Design")[2].strip(),
        "real": {"fid_floor": fid(ext, ref, floor_imgs), "kid_floor": kid(ext, ref, floor_imgs),
                 key: is_of(ext, ref), "floor_" + key: is_of(ext, floor_imgs),
                 "ms_ssim_by_class": {c: ms_ssim_diversity(ref[torch.from_numpy(ix)], seed=seed)["mean"]
                                      for c, ix in per_class(ref_det, ds.findings).items() if len(ix) >= 2},
                 "memorisation": memorisation(ref, train_imgs)},
        "models": {}, "notes": notes}
    train = ds.subset(real.train_index)
    rng = np.random.default_rng(seed)
    for m, src in enumerate(srcs):
        if should_stop and should_stop():
            break
        emit({"stage": "generate", "progress": 0.1 + 0.8 * m / len(srcs), "message": f"{src.ident}: {real.n} images"})
        findings = [f for f in train.findings if f in src.findings]
        if src.kind == "run":  # generate with the real label mix
            picks = rng.integers(0, len(train), real.n)
            fake, labels, distinct = S.synthetic_for_picks(src, train, picks, findings, seed + m)
        else:  # an exported set is scored as it is: n of its images with their own labels
            fake, labels, distinct = S.set_sample(src, findings, real.n, rng)
        emit({"stage": "metrics", "progress": 0.1 + 0.8 * (m + 0.5) / len(srcs), "message": f"{src.ident}: metrics"})
        div = {c: ms_ssim_diversity(fake[torch.from_numpy(ix)], seed=seed)["mean"]
               for c, ix in per_class(labels, findings).items() if len(ix) >= 2}
        results["models"][src.ident] = {
            "source": src.describe(), "extractor": ext.name, "n": int(len(fake)), "n_distinct": int(distinct),
            key: is_of(ext, fake), "fid": fid(ext, ref, fake), "fid_floor": results["real"]["fid_floor"],
            "kid": kid(ext, ref, fake), "ms_ssim_by_class": div,
            "ms_ssim_settings": ms_ssim_settings(ds.size), "memorisation": memorisation(fake, train_imgs),
        }
    p95 = results["real"]["memorisation"]["p95"]  # held-out real images: how close new real images come
    for r in [results["real"], *results["models"].values()]:
        r["memorisation"]["frac_above_heldout_p95"] = float(np.mean(np.array(r["memorisation"]["per_image"]) > p95))
    done = [s for s in srcs if s.ident in results["models"]]
    results["seed_groups"] = seed_groups(done)
    per_run = {i: {"fid": r["fid"], key: r[key]["mean"]} for i, r in results["models"].items()}
    results["welch_seeds"] = welch_over_seeds(results["seed_groups"], per_run)
    atomic_write_json(out / "metrics.json", results)
    write_manifest(out, kind="gan-metrics", result=rid, sources=sources, extractor=ext.name, n=real.n, seed=seed,
                   dataset=ds.name, dataset_fingerprint=ds.fingerprint, finished=now_iso())
    emit({"stage": "done", "progress": 1.0, "message": f"metrics {rid} written"})
    return {"id": rid, "dir": str(out), "results": results}

"""Feature extractors for FID / KID / IS, pluggable into torchmetrics (`feature=` an nn.Module).

* domain    - (default) a small ResNet-18 (small-input form, width 0.25, 128 features) trained on
              real training-part images to tell their classes apart (each finding, plus No Finding;
              an image with several findings counts as its rarest). The generator metrics pass the
              training images it may use (never the held-out reference nor the floor sample:
              evaluate/reference.py); `trained_on` records them (dataset, patients, image count). ImageNet features say little about
              chest films; a domain classifier's features do, and it needs no download. Saved with the
              metrics result (extractor.pt) and reusable as `domain:PATH`.
* inception - torchvision's Inception-v3 architecture with weights from a local file the user gives
              (`inception:PATH`); grey images are repeated to RGB, ImageNet-normalised and bilinearly
              resized to 299 as the GDGAN authors did (PAPERS.md 1.7). Features: the 2048-d pool;
              IS uses its 1000-way softmax.
Every extractor has a `name` and a `trained_on` record, both written into every metric result.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medgan_ui.data.imageset import ImageSet
from medgan_ui.errors import UserError
from medgan_ui.evaluate.classifiers import build_classifier
from medgan_ui.evaluate.train_classifier import _as_float

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class FeatureExtractor(nn.Module):
    """forward(float [B,1,H,W] in [0,1]) -> features [B, D]; probs() -> class softmax [B, C]."""

    name: str
    num_features: int
    trained_on: dict[str, Any] | None = None  # which images trained it; patients as a sorted list

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise TypeError(f"{type(self).__name__} must define features_and_logits")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return self.features_and_logits(x)[0]

    @torch.no_grad()
    def probs(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.uint8:
            x = x.float() / 255.0
        return torch.softmax(self.features_and_logits(x)[1].float(), dim=1)


class DomainExtractor(FeatureExtractor):
    def __init__(self, classes: list[str], image_size: int, width: float = 0.25, fingerprint: str | None = None,
                 trained_on: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.classes, self.image_size, self.width, self.fingerprint = list(classes), image_size, width, fingerprint
        self.trained_on = trained_on
        self.clf = build_classifier("resnet18", len(classes), image_size, width=width)
        self.num_features = self.clf.net.fc.in_features
        self.name = f"domain-resnet18-w{width:g}-{image_size}px" + (f"@{fingerprint}" if fingerprint else "")

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.clf.normalise(x)
        for stage in self.clf.net.encoder_stages():
            h = stage(h)
        f = torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)
        return f, self.clf.net.fc(f)

    def save(self, path: Path) -> Path:
        torch.save({"kind": "domain", "classes": self.classes, "image_size": self.image_size, "width": self.width,
                    "fingerprint": self.fingerprint, "trained_on": self.trained_on, "state_dict": self.state_dict()}, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "DomainExtractor":
        path = Path(path).expanduser()
        if not path.is_file():
            raise UserError(f"domain extractor file {str(path)!r} not found (it is saved as extractor.pt with each metrics result)")
        blob: Any = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("kind") != "domain":
            raise UserError(f"{path} is not a saved domain extractor")
        ext = cls(blob["classes"], blob["image_size"], blob["width"], blob.get("fingerprint"), blob.get("trained_on"))
        ext.load_state_dict(blob["state_dict"])
        return ext.eval()


def domain_classes(ds: ImageSet) -> tuple[list[str], np.ndarray]:
    """Class names and one class index per image: its rarest finding, or No Finding."""
    det = ds.detailed.numpy().astype(bool)
    counts = det.sum(axis=0)
    present = [j for j in range(len(ds.findings)) if counts[j] > 0]
    names = ["No Finding"] + [ds.findings[j] for j in present]
    y = np.zeros(len(ds), dtype=np.int64)
    for c, j in sorted(enumerate(present, start=1), key=lambda cj: -counts[cj[1]]):
        y[det[:, j]] = c  # rarer findings are written last, so they win
    return names, y


def train_domain_extractor(ds: ImageSet, epochs: int = 8, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                           device: str | torch.device = "cpu", width: float = 0.25,
                           should_stop: Callable[[], bool] | None = None,
                           index: np.ndarray | None = None) -> DomainExtractor:
    """Cross-entropy on the images at `index` (default: the training part; the whole set when it has no split)."""
    if index is None:
        part, what = (ds.part("train"), "train part") if ds.split is not None else (ds, "whole dataset (no split)")
    else:
        part, what = ds.subset(index), "given training-part images (train part less the metrics' floor pool)"
    names, y = domain_classes(part)
    if len(names) < 2:
        raise UserError(f"dataset {ds.name!r} has a single class, so a domain extractor cannot be trained; "
                        "use --extractor inception:PATH")
    torch.manual_seed(seed)
    trained_on = {"dataset": ds.name, "fingerprint": ds.fingerprint, "what": what, "n_images": len(part),
                  "patients": sorted(set(part.patient_id.tolist()))}
    ext = DomainExtractor(names, ds.size, width, ds.fingerprint, trained_on).to(device)
    x_all, y_all = part.images.to(device), torch.from_numpy(y).to(device)
    # class weights: the rare findings would otherwise hardly shape the features
    w = torch.bincount(y_all, minlength=len(names)).float().clamp(min=1)
    w = (w.sum() / w / len(names)).to(device)
    opt = torch.optim.Adam(ext.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        ext.train()
        perm = torch.randperm(len(x_all), generator=gen).to(device)
        for s in range(0, len(perm) - 1, batch_size):
            idx = perm[s:s + batch_size]
            if len(idx) < 2:
                break
            loss = F.cross_entropy(ext.features_and_logits(_as_float(x_all[idx]))[1], y_all[idx], weight=w)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if should_stop and should_stop():
            break
    return ext.eval()


class InceptionExtractor(FeatureExtractor):
    def __init__(self, weights: str | Path) -> None:
        super().__init__()
        from torchvision.models import inception_v3

        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"Inception-v3 weights file {str(path)!r} not found: give a local torchvision "
                            "inception_v3 state dict (nothing is downloaded)")
        try:
            sd: Any = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for non-checkpoint files
            raise UserError(f"{path}: cannot read as a PyTorch state dict ({type(exc).__name__})") from None
        self.net = inception_v3(weights=None, aux_logits=True, init_weights=False)
        try:
            self.net.load_state_dict(sd)
        except (RuntimeError, TypeError, AttributeError) as exc:
            raise UserError(f"{path} is not a torchvision inception_v3 state dict: {str(exc)[:300]}") from None
        self.net.eval()
        self.num_features = 2048
        self.name = f"inception-v3:{path.name}"
        self.trained_on = {"what": f"external weights file {path.name} (ImageNet); no image of this data", "patients": []}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.net
        x = F.interpolate(x.expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1",
                     "Conv2d_4a_3x3", "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
                     "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(n, name)(x)
        f = torch.flatten(n.avgpool(x), 1)
        return f, n.fc(f)

    def train(self, mode: bool = True) -> "InceptionExtractor":
        return super().train(False)  # always eval: fixed BN statistics, no dropout


def get_extractor(spec: str, ds: ImageSet, device: str | torch.device = "cpu", seed: int = 0,
                  epochs: int = 8, should_stop: Callable[[], bool] | None = None,
                  train_index: np.ndarray | None = None) -> FeatureExtractor:
    """'domain' (train now, on `train_index` or the training part) | 'domain:PATH' (a saved one) | 'inception:PATH'."""
    if spec == "domain":
        return train_domain_extractor(ds, epochs=epochs, seed=seed, device=device, should_stop=should_stop,
                                      index=train_index)
    if spec.startswith("domain:"):
        ext = DomainExtractor.load(spec[len("domain:"):])
        if ext.image_size != ds.size:
            raise UserError(f"the domain extractor was trained on {ext.image_size}px images, the data is {ds.size}px")
        return ext.to(device)
    if spec.startswith("inception:") and len(spec) > len("inception:"):
        return InceptionExtractor(spec[len("inception:"):]).to(device)
    raise UserError(f"extractor must be 'domain', 'domain:PATH' or 'inception:PATH', got {spec!r}")


def trained_patients(ext: FeatureExtractor) -> set[str]:
    """The patients whose images trained the extractor (none for Inception weights). A domain extractor
    saved before it recorded them is refused: it might have trained on the images it would score."""
    if ext.trained_on is None:
        raise UserError(f"feature extractor {ext.name} does not record which images trained it (saved by an older "
                        "version); use --extractor domain to train one on training patients only")
    return set(ext.trained_on.get("patients") or [])

"""Segmentation-pretrained classifiers (Wong et al., PAPERS.md 4; seed 000).

ASSUMPTION (PAPERS.md 4.2: the paper's layer list, feature choice and freezing are NOT FOUND): we train a
small U-Net whose encoder *is the classifier's own encoder* (its `encoder_stages()`), with a light
decoder (upsample + skip concat + conv-BN-ReLU per level, 1x1 conv to one logit per structure), on the
dataset's masks (phantom: lungs, heart; or a user's mask folder). Afterwards the trained encoder
initialises the classifier; with `freeze=True` it is frozen and only the head trains, i.e. the
segmentation features *feed* the classifier as in PAPERS.md 4.3. Only training-split images are used,
so no test image influences the classifier.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from medgan_ui.data.imageset import ImageSet
from medgan_ui.data.preprocess import resize_gray, square, to_gray_array
from medgan_ui.errors import UserError
from medgan_ui.evaluate.classifiers import Classifier

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class EncoderUNet(nn.Module):
    """U-Net around a classifier's encoder: skips from every encoder stage, one output per mask."""

    def __init__(self, classifier: Classifier, n_masks: int, image_size: int) -> None:
        super().__init__()
        self.classifier = classifier
        with torch.no_grad():
            feats = self._encode(torch.zeros(1, 1, image_size, image_size))
        chans = [f.shape[1] for f in feats]
        self.dec = nn.ModuleList()
        c_up = chans[-1]
        for c_skip in reversed(chans[:-1]):
            c_out = min(c_skip, 128)
            self.dec.append(nn.Sequential(nn.Conv2d(c_up + c_skip, c_out, 3, padding=1, bias=False),
                                          nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)))
            c_up = c_out
        self.out = nn.Conv2d(c_up, n_masks, 1)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.classifier.normalise(x)
        feats = []
        for stage in self.classifier.net.encoder_stages():
            x = stage(x)
            feats.append(x)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self._encode(x)
        y = feats[-1]
        for block, skip in zip(self.dec, reversed(feats[:-1])):
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = block(torch.cat([y, skip], dim=1))
        return F.interpolate(self.out(y), size=x.shape[-2:], mode="bilinear", align_corners=False)


def load_mask_folder(ds: ImageSet, folder: str | Path, fit: str | None = None) -> tuple[np.ndarray, torch.Tensor, list[str]]:
    """Masks for some of ds's images from PNGs keyed by the image's file stem.

    Layouts: `folder/<structure>/<stem>.png` (one sub-folder per structure, e.g. lungs/, heart/) or a
    flat `folder/<stem>.png` (one structure). Images without a mask are simply not used for
    segmentation pretraining. Returns (image indices, uint8 masks [n, K, H, W] in {0, 255}, names).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise UserError(f"mask folder {str(folder)!r} not found")
    subdirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    structures = [(p.name, p) for p in subdirs] or [(folder.name, folder)]
    fit = fit or str(ds.meta.get("fit", "crop"))
    stems: dict[str, int] = {}
    for i, src in enumerate(ds.source):
        stems.setdefault(Path(src).stem, i)
    per_structure: list[dict[int, np.ndarray]] = []
    for _, sdir in structures:
        found: dict[int, np.ndarray] = {}
        for f in sdir.iterdir():
            if f.suffix.lower() in IMAGE_EXTS and f.stem in stems:
                try:
                    with Image.open(f) as im:
                        arr = resize_gray(square(to_gray_array(im), fit), ds.size)
                except OSError as exc:
                    raise UserError(f"mask {f}: cannot read ({exc})") from None
                found[stems[f.stem]] = np.where(arr >= 128, 255, 0).astype(np.uint8)
        per_structure.append(found)
    common = sorted(set.intersection(*(set(d) for d in per_structure)))
    if not common:
        raise UserError(f"no mask in {folder} matches an image of dataset {ds.name!r} by file stem "
                        f"(e.g. image {Path(ds.source[0]).stem!r} needs {Path(ds.source[0]).stem}.png)")
    masks = np.stack([np.stack([d[i] for d in per_structure]) for i in common])
    return np.asarray(common), torch.from_numpy(masks), [n for n, _ in structures]


def pretrain_segmentation(
    classifier: Classifier,
    images: torch.Tensor,
    masks: torch.Tensor,
    epochs: int = 10,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    device: str | torch.device = "cpu",
    freeze: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> dict[str, float]:
    """Train the U-Net on (uint8 images [N,H,W], uint8 masks [N,K,H,W]); the classifier's encoder
    keeps the trained weights. Returns the soft Dice (all structures) of the first and last epoch."""
    if len(images) < 2:
        raise UserError("segmentation pretraining needs at least 2 training images with masks")
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    unet = EncoderUNet(classifier, masks.shape[1], images.shape[-1]).to(device)
    x_all = images.to(device)
    m_all = masks.to(device)
    opt = torch.optim.Adam(unet.parameters(), lr=lr)
    unet.train()
    dice = first = float("nan")
    for ep in range(epochs):
        perm = torch.randperm(len(x_all), generator=gen).to(device)
        inter = union = 0.0
        for s in range(0, len(perm), batch_size):
            idx = perm[s:s + batch_size]
            x = x_all[idx].unsqueeze(1).float() / 255.0
            t = m_all[idx].float() / 255.0
            logits = unet(x)
            p = torch.sigmoid(logits)
            # BCE + soft Dice: Dice keeps small structures (heart, nodules) from being ignored
            soft_dice = 2 * (p * t).sum() / (p.sum() + t.sum() + 1.0)
            loss = F.binary_cross_entropy_with_logits(logits, t) + (1 - soft_dice)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            p = p.detach()
            inter += float((p * t).sum())
            union += float(p.sum() + t.sum())
        dice = 2 * inter / max(union, 1e-8)
        first = dice if ep == 0 else first
        if should_stop and should_stop():
            break
    if freeze:
        freeze_encoder(classifier)
    return {"train_dice": dice, "first_epoch_dice": first, "epochs": float(epochs), "n_images": float(len(images))}


def freeze_encoder(classifier: Classifier) -> None:
    """Only the head trains from now on: the segmentation features feed it unchanged."""
    for stage in classifier.net.encoder_stages():
        for prm in stage.parameters():
            prm.requires_grad_(False)


def frozen_encoder_eval(classifier: Classifier) -> None:
    """Keep a frozen encoder's BatchNorm statistics fixed while the head trains."""
    for stage in classifier.net.encoder_stages():
        if all(not p.requires_grad for p in stage.parameters()):
            stage.eval()

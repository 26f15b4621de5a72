"""Classifiers for the augmentation comparison, all with one-channel input.

* vgg19    - GDGAN's classifier (PAPERS.md 1.6): torchvision VGG-19 layout (no BN), first conv takes one
             channel, AdaptiveAvgPool(7x7) + 4096-4096 head so ImageNet weights load unchanged at any
             input size. `width` < 1 scales every channel count to make it CPU-feasible (then
             ImageNet weights cannot load).
* resnet18 - MedMNIST v2 small-input form (PAPERS.md 6): 3x3 stride-1 stem, no max-pool, 1 channel.
             Parameter names match torchvision's resnet18, so its state dict loads directly.
* fridadar - Frid-Adar et al. (PAPERS.md 2.3): valid-padding 3x3 convs 32/64/128 each + 2x2 max-pool,
             dense 256 + dropout 0.5; about 1.3M parameters at 64x64 with 3 classes.

Every network exposes `encoder_stages()` (feature maps shallow -> deep) and `head(x)`, so a U-Net
decoder can be attached to the same encoder for segmentation pretraining (Wong et al., PAPERS.md 4).
Inputs to `Classifier.forward` are float images in [0, 1], shape [B, 1, H, W]; each classifier
normalises them the way its reference did.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import BasicBlock

from medgan_ui.errors import UserError

CLASSIFIERS = ("resnet18", "vgg19", "fridadar")
VGG19_CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# grey-level ImageNet statistics: mean/std of the RGB means and stds, for summed-RGB first convs
IMAGENET_GRAY = (0.449, 0.226)


def _w(c: int, width: float) -> int:
    return max(4, int(round(c * width)))


class ResNet18Small(nn.Module):
    """ResNet-18 for small inputs (MedMNIST's 28x28 form); torchvision parameter names."""

    def __init__(self, n_outputs: int, width: float = 1.0, stem_kernel: int = 3) -> None:
        super().__init__()
        c = [_w(64, width), _w(128, width), _w(256, width), _w(512, width)]
        # stride-1 stem and no max-pool keep resolution for 28-64 px inputs; a 7x7 stem (still stride 1)
        # is used when ImageNet weights are loaded so the pretrained kernel keeps its shape
        self.conv1 = nn.Conv2d(1, c[0], stem_kernel, 1, stem_kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(c[0])
        self.relu = nn.ReLU(inplace=True)
        self.inplanes = c[0]
        self.layer1 = self._make_layer(c[0], 1)
        self.layer2 = self._make_layer(c[1], 2)
        self.layer3 = self._make_layer(c[2], 2)
        self.layer4 = self._make_layer(c[3], 2)
        self.fc = nn.Linear(c[3], n_outputs)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or self.inplanes != planes:
            down = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, down), BasicBlock(planes, planes)]
        self.inplanes = planes
        return nn.Sequential(*layers)

    def encoder_stages(self) -> list[nn.Module]:
        return [nn.Sequential(self.conv1, self.bn1, self.relu), self.layer1, self.layer2, self.layer3, self.layer4]

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.encoder_stages():
            x = stage(x)
        return self.head(x)


class VGG19Gray(nn.Module):
    """VGG-19 (no BN) with torchvision's layout and names (`features`, `avgpool`, `classifier`)."""

    def __init__(self, n_outputs: int, width: float = 1.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for v in VGG19_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                c = _w(int(v), width)
                layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(inplace=True)]
                c_in = c
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        hidden = _w(4096, width)
        self.classifier = nn.Sequential(
            nn.Linear(c_in * 49, hidden), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(0.5),
            nn.Linear(hidden, n_outputs),
        )
        for m in self.modules():  # torchvision's VGG initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)
        pools = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        self._bounds = list(zip([0] + [p + 1 for p in pools[:-1]], [p + 1 for p in pools]))

    def encoder_stages(self) -> list[nn.Module]:
        # one stage per resolution, each ending in its max-pool
        return [self.features[a:b] for a, b in self._bounds]

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class FridAdarCNN(nn.Module):
    """Frid-Adar's liver-lesion CNN (valid padding; 64 -> 62 -> 31 -> 29 -> 14 -> 12 -> 6)."""

    def __init__(self, n_outputs: int, image_size: int = 64, width: float = 1.0) -> None:
        super().__init__()
        c = [_w(32, width), _w(64, width), _w(128, width)]
        self.conv1 = nn.Conv2d(1, c[0], 3)
        self.conv2 = nn.Conv2d(c[0], c[1], 3)
        self.conv3 = nn.Conv2d(c[1], c[2], 3)
        s = image_size
        for _ in range(3):
            s = (s - 2) // 2
        if s < 1:
            raise UserError(f"the Frid-Adar CNN needs images of at least 22 px, got {image_size}")
        self.fc1 = nn.Linear(c[2] * s * s, _w(256, width))
        self.drop = nn.Dropout(0.5)
        self.fc2 = nn.Linear(_w(256, width), n_outputs)

    def encoder_stages(self) -> list[nn.Module]:
        return [nn.Sequential(self.conv1, nn.ReLU()), nn.Sequential(nn.MaxPool2d(2), self.conv2, nn.ReLU()),
                nn.Sequential(nn.MaxPool2d(2), self.conv3, nn.ReLU())]

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(F.max_pool2d(x, 2), 1)
        return self.fc2(self.drop(F.relu(self.fc1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.encoder_stages():
            x = stage(x)
        return self.head(x)


class Classifier(nn.Module):
    """A network plus the input normalisation its reference used; takes floats in [0, 1]."""

    def __init__(self, name: str, net: nn.Module, norm: str, image_size: int) -> None:
        super().__init__()
        self.name, self.net, self.norm = name, net, norm
        # Frid-Adar subtract the training-set mean image; set by set_mean_image before training
        self.register_buffer("mean_image", torch.full((1, 1, image_size, image_size), 0.5))

    def set_mean_image(self, images01: torch.Tensor) -> None:
        self.mean_image.copy_(images01.float().mean(dim=0, keepdim=True).reshape(self.mean_image.shape))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm == "mean_image":
            return x - self.mean_image
        if self.norm == "imagenet":
            return (x - IMAGENET_GRAY[0]) / IMAGENET_GRAY[1]
        return (x - 0.5) / 0.5  # MedMNIST / GDGAN: Normalize(.5, .5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalise(x))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def build_classifier(name: str, n_outputs: int, image_size: int, width: float = 1.0, init: str = "scratch") -> Classifier:
    """A classifier by name; `init` 'imagenet:PATH' loads a local torchvision state dict now."""
    if name not in CLASSIFIERS:
        raise UserError(f"unknown classifier {name!r}; choose one of {list(CLASSIFIERS)}")
    if not 0 < width <= 1:
        raise UserError(f"classifier width must be in (0, 1], got {width}")
    kind, weights = parse_init(init)
    if name == "resnet18":
        net: nn.Module = ResNet18Small(n_outputs, width, stem_kernel=7 if kind == "imagenet" else 3)
    elif name == "vgg19":
        net = VGG19Gray(n_outputs, width)
    else:
        net = FridAdarCNN(n_outputs, image_size, width)
    norm = "mean_image" if name == "fridadar" else ("imagenet" if kind == "imagenet" else "half")
    model = Classifier(name, net, norm, image_size)
    if kind == "imagenet":
        load_imagenet(model, Path(weights), width)
    return model


def parse_init(init: str) -> tuple[str, str | None]:
    """'scratch' | 'segmentation' | 'imagenet:PATH' -> (kind, path)."""
    if init in ("scratch", "segmentation"):
        return init, None
    if init.startswith("imagenet:") and len(init) > len("imagenet:"):
        return "imagenet", init[len("imagenet:"):]
    raise UserError(f"init must be 'scratch', 'segmentation' or 'imagenet:PATH' (a local torchvision "
                    f"state-dict file), got {init!r}")


def check_weights_file(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"ImageNet weights file {str(path)!r} not found: give the path of a torchvision "
                        "state dict saved locally (nothing is downloaded)")
    return path


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        sd: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-checkpoint files
        raise UserError(f"{path}: cannot read as a PyTorch state dict ({type(exc).__name__}: {exc})") from None
    if isinstance(sd, dict) and isinstance(sd.get("state_dict"), dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f"{path}: expected a dict of tensors (a torchvision model's state_dict())")
    return sd


def load_imagenet(model: Classifier, path: Path, width: float = 1.0) -> None:
    """Load torchvision resnet18 / vgg19 ImageNet weights: RGB first conv summed to one channel,
    final layer left at its fresh initialisation (its class count differs)."""
    path = check_weights_file(path)
    if model.name == "fridadar":
        raise UserError("the Frid-Adar CNN has no ImageNet weights; use init 'scratch' or 'segmentation'")
    if width != 1:
        raise UserError(f"ImageNet weights need the full-width {model.name} (width 1), got width {width}")
    sd = _read_state_dict(path)
    first = "conv1.weight" if model.name == "resnet18" else "features.0.weight"
    last = ("fc.weight", "fc.bias") if model.name == "resnet18" else ("classifier.6.weight", "classifier.6.bias")
    own = model.net.state_dict()
    new: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        if k in last or k not in own:
            continue
        if k == first and v.ndim == 4 and v.shape[1] == 3:
            v = v.sum(dim=1, keepdim=True)  # grey = R = G = B, so summing keeps the response
        if v.shape != own[k].shape:
            raise UserError(f"{path}: weight {k} has shape {tuple(v.shape)}, {model.name} needs {tuple(own[k].shape)}; "
                            f"is this a torchvision {model.name} state dict?")
        new[k] = v
    missing = [k for k in own if k not in new and k not in last and not k.endswith("num_batches_tracked")]
    if missing:
        raise UserError(f"{path}: not a torchvision {model.name} state dict; missing {missing[:5]}"
                        f"{' ...' if len(missing) > 5 else ''}")
    model.net.load_state_dict(new, strict=False)

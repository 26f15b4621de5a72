"""Classifier shapes, the Frid-Adar parameter count, ImageNet loading from a local file, segmentation pretraining."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from _imagesets import make_imageset
from medgan_ui.errors import UserError
from medgan_ui.evaluate import classifiers as C
from medgan_ui.evaluate.segmentation import load_mask_folder, pretrain_segmentation
from medgan_ui.evaluate.train_classifier import TrainSettings, predict, train_classifier

torch.set_num_threads(1)


def test_fridadar_has_about_1_3m_parameters_at_64px_3_classes():
    m = C.build_classifier("fridadar", 3, 64)
    # valid padding: 64->62->31->29->14->12->6, flatten 6*6*128 = 4608 (PAPERS.md 2.3)
    assert m.n_params() == 320 + 18496 + 73856 + (4608 * 256 + 256) + (256 * 3 + 3) == 1_273_347
    assert m.net.fc1.in_features == 4608


@pytest.mark.parametrize("name,width,size", [("resnet18", 0.25, 28), ("resnet18", 1.0, 32),
                                             ("vgg19", 0.125, 64), ("fridadar", 1.0, 32)])
def test_forward_shapes_one_channel(name, width, size):
    m = C.build_classifier(name, 2, size, width=width)
    first = next(mod for mod in m.net.modules() if isinstance(mod, torch.nn.Conv2d))
    assert first.in_channels == 1
    assert m(torch.rand(3, 1, size, size)).shape == (3, 2)


def test_resnet_small_input_form():
    net = C.build_classifier("resnet18", 1, 28).net
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in net.modules())


def test_imagenet_weights_from_local_file(tmp_path):
    tv = pytest.importorskip("torchvision")
    ref = tv.models.resnet18(weights=None)  # randomly initialised stand-in for a user's ImageNet file
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    m = C.build_classifier("resnet18", 2, 32, init=f"imagenet:{path}")
    torch.testing.assert_close(m.net.conv1.weight, ref.conv1.weight.sum(dim=1, keepdim=True))
    torch.testing.assert_close(m.net.layer3[1].conv2.weight, ref.layer3[1].conv2.weight)
    assert m.net.fc.out_features == 2 and m.norm == "imagenet"
    assert m(torch.rand(2, 1, 32, 32)).shape == (2, 2)
    with pytest.raises(UserError, match="nowhere.pth"):
        C.build_classifier("resnet18", 2, 32, init=f"imagenet:{tmp_path / 'nowhere.pth'}")
    with pytest.raises(UserError, match="width"):
        C.build_classifier("resnet18", 2, 32, width=0.5, init=f"imagenet:{path}")
    with pytest.raises(UserError, match="not a torchvision vgg19|shape"):
        C.build_classifier("vgg19", 2, 64, width=1.0, init=f"imagenet:{path}")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.pth"):
        C.build_classifier("resnet18", 2, 32, init=f"imagenet:{junk}")
    with pytest.raises(UserError, match="init must be"):
        C.build_classifier("resnet18", 2, 32, init="pretrained")


def _tiny_set(n=48, size=24, seed=0):
    """Bright square (findings=1) vs no square; the 'mask' is the square."""
    g = torch.Generator().manual_seed(seed)
    imgs = (torch.rand(n, size, size, generator=g) * 60).to(torch.uint8)
    masks = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    y = torch.arange(n) % 2
    for i in range(n):
        if y[i]:
            r, c = torch.randint(2, size - 10, (2,), generator=g).tolist()
            imgs[i, r:r + 8, c:c + 8] = 220
            masks[i, 0, r:r + 8, c:c + 8] = 255
    return make_imageset(imgs, findings=["Square"], detailed=y[:, None], patient_id=np.arange(n).astype(str),
                         source=[f"/x/img_{i:03d}.png" for i in range(n)], masks=masks, mask_names=["square"])


def test_training_learns_an_easy_task_and_keeps_best_epoch():
    ds = _tiny_set()
    m = C.build_classifier("fridadar", 1, 24, width=0.25)
    m.set_mean_image(ds.images[:32].unsqueeze(1).float() / 255)
    res = train_classifier(m, ds.images[:32], ds.detailed[:32], ds.images[32:], ds.detailed[32:],
                           TrainSettings(epochs=8, batch_size=8, lr=3e-3, patience=8))
    assert 1 <= res.best_epoch <= res.epochs_run and res.best_score == max(h["val_score"] for h in res.history)
    p = predict(m, ds.images[32:])
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(ds.detailed[32:, 0].numpy(), p[:, 0]) == pytest.approx(res.best_score)
    assert res.best_score > 0.8


def test_segmentation_pretraining_changes_encoder_and_can_freeze(tmp_path):
    ds = _tiny_set(n=64)
    m = C.build_classifier("resnet18", 1, 24, width=0.125)
    before = m.net.layer1[0].conv1.weight.detach().clone()
    fc_before = m.net.fc.weight.detach().clone()
    info = pretrain_segmentation(m, ds.images, ds.masks, epochs=8, batch_size=8, lr=3e-3, freeze=True)
    assert info["train_dice"] > info["first_epoch_dice"] + 0.1, info
    assert not torch.equal(before, m.net.layer1[0].conv1.weight)
    assert torch.equal(fc_before, m.net.fc.weight)  # the head is not part of the U-Net
    assert not m.net.layer4[0].conv1.weight.requires_grad and m.net.fc.weight.requires_grad


def test_mask_folder_keyed_by_stem(tmp_path):
    ds = _tiny_set(n=6, size=24)
    for sub in ("lungs", "heart"):
        (tmp_path / sub).mkdir()
        for i in (1, 3, 4):
            Image.fromarray(ds.masks[i, 0].numpy()).resize((48, 48)).save(tmp_path / sub / f"img_{i:03d}.png")
    (tmp_path / "heart" / "img_001.png").unlink()  # only images with every structure are used
    idx, masks, names = load_mask_folder(ds, tmp_path)
    assert idx.tolist() == [3, 4] and names == ["heart", "lungs"] and masks.shape == (2, 2, 24, 24)
    assert ((masks == 0) | (masks == 255)).all()
    assert (masks[0, 1] == ds.masks[3, 0]).float().mean() > 0.95
    with pytest.raises(UserError, match="no mask"):
        load_mask_folder(_tiny_set(n=2, size=24).subset([0]), tmp_path / "lungs")

"""Fixtures every test folder shares (tests/data, tests/gan, tests/evaluate, tests/study, tests/ui)."""
from __future__ import annotations

import pytest
import torch

from _imagesets import make_imageset
from medgan_ui.data.phantom import demo_imageset
from medgan_ui.data.imageset import ImageSet


@pytest.fixture
def imageset_factory():
    """make_imageset (tests/_imagesets.py): a valid ImageSet from just the labels a test cares about."""
    return make_imageset


@pytest.fixture(scope="module")
def demo16() -> ImageSet:
    """The demo phantom at 16x16, 48 images: what the GAN tests train on in seconds."""
    return demo_imageset(n=48, size=16, seed=0)


@pytest.fixture
def deterministic():
    """One thread and deterministic kernels, for bit-for-bit comparisons (resume equivalence)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(False)
    torch.set_num_threads(threads)

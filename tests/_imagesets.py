"""The one ImageSet factory of the tests: give the labels that matter to a test, get a valid set.

Importable at module level (tests/ is on sys.path; some tests build their set at import time) and
offered as the `imageset_factory` fixture by conftest.py.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from medgan_ui.data.imageset import ImageSet


def make_imageset(images: torch.Tensor | None = None, *, n: int | None = None, size: int = 8,
                  general_values: dict[str, list[str]] | None = None, general: Any = None,
                  findings: Sequence[str] = (), detailed: Any = None, patient_id: Sequence[str] | None = None,
                  source: Sequence[str] | None = None, **extra: Any) -> ImageSet:
    """images uint8 [n,H,W] (zeros [n,size,size] when None); general codes [n,G] in the order of
    general_values (-1 = unknown; none when omitted); detailed multi-hot [n,F] over `findings` (none
    when omitted); one patient and one source name per image unless given. `extra` goes to ImageSet
    (masks, mask_names, meta, ...)."""
    if images is None:
        images = torch.zeros(int(n), size, size, dtype=torch.uint8)
    n = int(images.shape[0])
    general_values = dict(general_values or {})
    general = torch.zeros(n, 0, dtype=torch.long) if general is None else torch.as_tensor(np.asarray(general)).long()
    detailed = (torch.zeros(n, len(findings), dtype=torch.uint8) if detailed is None
                else torch.as_tensor(np.asarray(detailed)).to(torch.uint8))
    return ImageSet(images=images, general_names=list(general_values), general_values=general_values, general=general,
                    findings=list(findings), detailed=detailed,
                    patient_id=np.asarray(patient_id if patient_id is not None else [f"p{i}" for i in range(n)]),
                    source=list(source) if source is not None else [f"img{i}.png" for i in range(n)], **extra)

"""Label cells -> conditioning tensors, and the fixed-noise sample grid written during training.

Grid layout: one row per label cell (general combination x {no finding, each finding}), one column
per fixed noise vector. The same noise is used in every row, so a row-to-row change is the effect
of the labels alone. GDGAN grids show the stage-1 image panel to the left of the stage-2 panel.
Long row lists are wrapped into blocks side by side, so the sheet is wider than tall and readable
at its native size (see render).
"""
from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from medgan_ui.errors import UserError
from medgan_ui.gan.base import LabelSchema
from medgan_ui.workspace import atomic_write_bytes

Cell = tuple[dict[str, str], list[str]]


def encode_labels(schema: LabelSchema, general: dict[str, str] | None, findings: list[str] | None, n: int,
                  device: torch.device, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(general codes long [n,G], detailed float [n,F]). Unnamed general labels are drawn uniformly
    per image from `generator`, so "any sex" yields a mix rather than an input the net never saw."""
    try:
        codes = schema.general_codes(general or {})
        vec = schema.finding_vector(findings or [])
    except KeyError as exc:
        raise UserError(str(exc.args[0])) from exc
    g = torch.empty(n, len(codes), dtype=torch.long)
    for j, (name, code) in enumerate(zip(schema.general_names, codes)):
        k = len(schema.general_values[name])
        g[:, j] = code if code >= 0 else torch.randint(k, (n,), generator=generator)
    d = torch.tensor(vec, dtype=torch.float32).expand(n, len(vec)).clone()
    return g.to(device), d.to(device)


def default_cells(schema: LabelSchema, max_rows: int = 16, findings: list[str] | None = None) -> list[Cell]:
    """Every general combination x (no finding, then each finding alone: of `findings`, default all the
    schema's; a DCGAN per class has generators for its classes only), capped at max_rows."""
    findings = list(schema.findings if findings is None else findings)
    combos = [dict(zip(schema.general_names, vals))
              for vals in itertools.product(*(schema.general_values[n] for n in schema.general_names))] or [{}]
    combos = combos[:max_rows]
    n_find = max(0, min(len(findings), max_rows // len(combos) - 1))
    finding_sets: list[list[str]] = [[]] + [[f] for f in findings[:n_find]]
    return [(c, f) for f in finding_sets for c in combos]


def cell_label(cell: Cell) -> str:
    general, findings = cell
    return "/".join(general.values()) + (" " if general else "") + ("+".join(findings) or "none")


def to_uint8(images: torch.Tensor, size: int | None = None) -> torch.Tensor:
    """[n,1,h,w] float in [-1,1] -> uint8 [n,H,W] on the CPU (nearest upscaling for low PGGAN phases)."""
    x = images.detach().float()
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="nearest")
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].cpu()


def _font(px: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=px)  # Pillow's bundled TrueType font (needs FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def render(panels: list[torch.Tensor], rows: int, cols: int, row_labels: list[str], titles: list[str] | None = None,
           pad: int = 2, min_cell: int = 64, aspect: float = 2.0) -> Image.Image:
    """panels: uint8 [rows*cols, H, W] each (row-major); returns one grayscale sheet, wider than tall.

    Images are upscaled (nearest) to at least `min_cell` px and the label rows are split into
    blocks placed side by side, the block count chosen so width / height is closest to `aspect`:
    the sheet is read at its native size, where the labels are legible."""
    size = int(panels[0].shape[-1])
    scale = max(1, -(-min_cell // size))
    cell = size * scale
    font = _font(max(12, min(18, cell // 4)))
    text_w = max((int(font.getbbox(t)[2]) for t in row_labels), default=0)
    label_w = text_w + 12 + 12  # a gap before each block's labels
    head = (int(font.getbbox("Ag")[3]) + 8) if titles else pad
    panel_w = cols * (cell + pad)
    block_w = label_w + len(panels) * (panel_w + 3 * pad)

    def shape(blocks: int) -> tuple[int, int]:
        return blocks * block_w + pad, head + -(-rows // blocks) * (cell + pad) + pad

    blocks = min(range(1, rows + 1), key=lambda b: (abs(shape(b)[0] / shape(b)[1] - aspect), b))
    per_block = -(-rows // blocks)
    width, height = shape(blocks)
    canvas = np.full((height, width), 255, dtype=np.uint8)
    arrays = [imgs.numpy().repeat(scale, axis=1).repeat(scale, axis=2) for imgs in panels]
    for p, arr in enumerate(arrays):
        for i in range(rows * cols):
            r, c = divmod(i, cols)
            b, rr = divmod(r, per_block)
            y = head + rr * (cell + pad)
            x = b * block_w + label_w + p * (panel_w + 3 * pad) + c * (cell + pad)
            canvas[y:y + cell, x:x + cell] = arr[i]
    img = Image.fromarray(canvas, mode="L")
    draw = ImageDraw.Draw(img)
    for r, text in enumerate(row_labels):
        b, rr = divmod(r, per_block)
        draw.text((b * block_w + 12, head + rr * (cell + pad) + cell // 2), text, fill=0, font=font, anchor="lm")
    for b in range(blocks if titles else 0):
        for p, title in enumerate(titles or []):
            draw.text((b * block_w + label_w + p * (panel_w + 3 * pad), 4), title, fill=0, font=font)
    return img


def save_png(img: Image.Image, path: Path) -> Path:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return atomic_write_bytes(path, buf.getvalue())


class FixedGrid:
    """The grid's inputs, fixed for the whole run (rebuilt identically on resume from the seed)."""

    def __init__(self, model, schema: LabelSchema, device: torch.device, seed: int, cols: int = 8,
                 max_rows: int = 16) -> None:
        self.cells = default_cells(schema, max_rows, model.generated_findings())
        self.rows, self.cols, self.size = len(self.cells), cols, schema.image_size
        gen = torch.Generator().manual_seed(int(seed) + 99991)
        z = model.noise(cols, generator=gen).to(device)
        self.z = z[torch.arange(self.rows * cols) % cols]
        gs, ds = zip(*(encode_labels(schema, g, f, cols, device, gen) for g, f in self.cells))
        self.general, self.detailed = torch.cat(gs), torch.cat(ds)

    @torch.inference_mode()
    def image(self, model) -> Image.Image:
        out = model.generate(self.z, self.general, self.detailed, ema=True)
        panels = [to_uint8(out["images"], self.size)]
        titles = None
        stage1 = out.get("stage1")
        if stage1 is not None and not torch.equal(stage1, out["images"]):
            panels.insert(0, to_uint8(stage1, self.size))
            titles = ["stage 1", "stage 2"]
        return render(panels, self.rows, self.cols, [cell_label(c) for c in self.cells], titles)

"""Burned-in text annotations: the ISG Hardcopy Server's formatter (seeds/004 appendix B, 2.2:
"text and graphics overlays are added" before the image goes to the printer).

A layout's ``[annotation]`` table holds one template per box corner; a template is text with
``{Keyword}`` fields naming DICOM attributes of the printed instance (PS3.6 keywords) and a few
job fields: ``{text}`` (free text given with the job), ``{frame}`` and ``{frames}``::

    [annotation]
    top_left = "{PatientName}\\n{PatientID}"
    top_right = "{InstitutionName}\\n{StudyDate}"
    bottom_left = "Se {SeriesNumber} Im {InstanceNumber}"
    bottom_right = "{text}"
    size = 0.022          # text height as a fraction of the box height

Text is drawn without anti-aliasing (white with a black outline) so that what the printer gets
is exactly reproducible: a test compares the printer's pixels with ours.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset

from mediasvc.config import Table

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
JOB_FIELDS = ("text", "frame", "frames")

_FILL, _STROKE = 255, 128


@dataclass(frozen=True)
class AnnotationTemplate:
    top_left: str = ""
    top_right: str = ""
    bottom_left: str = ""
    bottom_right: str = ""
    size: float = 0.022

    def corners(self) -> dict[str, str]:
        return {c: getattr(self, c) for c in CORNERS if getattr(self, c)}

    def render_text(self, ds: Dataset, *, text: str = "", frame: int = 1,
                    frames: int = 1) -> dict[str, str]:
        """Fill the templates from one instance; missing attributes become empty."""
        fields = {"text": text, "frame": str(frame), "frames": str(frames)}
        out: dict[str, str] = {}
        for corner, template in self.corners().items():
            values = {name: fields[name] if name in fields else attribute_text(ds, name)
                      for name in template_fields(template)}
            rendered = template.format(**values)
            lines = [ln.rstrip() for ln in rendered.split("\n")]
            if any(lines):
                out[corner] = "\n".join(lines)
        return out


def template_fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def parse_annotation(t: Table) -> AnnotationTemplate:
    t.check_keys({*CORNERS, "size"})
    values: dict[str, Any] = {}
    for corner in CORNERS:
        template = t.str(corner, "")
        try:
            names = template_fields(template)
        except ValueError as exc:
            raise t.error(corner, f"not a valid template: {exc}") from None
        for name in names:
            if name not in JOB_FIELDS and tag_for_keyword(name) is None:
                raise t.error(corner, f"{{{name}}} is neither a DICOM keyword (PS3.6) nor one "
                                      f"of {', '.join(JOB_FIELDS)}")
        values[corner] = template
    values["size"] = t.float("size", 0.022, min=0.005, max=0.2)
    return AnnotationTemplate(**values)


def attribute_text(ds: Dataset, keyword: str) -> str:
    """An attribute's value as a person reads it: names without carets, dates as YYYY-MM-DD."""
    value = ds.get(keyword)
    if value is None or value == "":
        return ""
    if not isinstance(value, str | int | float) and hasattr(value, "__getitem__") \
            and not hasattr(value, "family_name"):
        try:
            value = value[0]
        except (IndexError, TypeError):
            return ""
    vr = dictionary_VR(keyword)
    text = str(value)
    if vr == "PN":
        text = " ".join(p for p in text.replace("^", " ").split() if p)
    elif vr == "DA" and len(text) == 8 and text.isdigit():
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    elif vr == "TM" and len(text) >= 4 and text[:4].isdigit():
        text = f"{text[:2]}:{text[2:4]}"
    return text


@lru_cache(maxsize=32)
def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=px)


@lru_cache(maxsize=256)
def _corner_mask(text: str, corner: str, px: int) -> np.ndarray:
    """255 glyphs, 128 outline, 0 elsewhere, on a patch just large enough for the text.
    Cached: a film repeats the patient's name and ID on every box."""
    font = _font(px)
    left = corner.endswith("left")
    spacing = max(1, px // 5)
    align = "left" if left else "right"
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    bbox = probe.multiline_textbbox((0, 0), text, font=font, anchor="la", align=align,
                                    stroke_width=1, spacing=spacing)
    x0, y0, x1, y1 = (int(np.floor(bbox[0])), int(np.floor(bbox[1])), int(np.ceil(bbox[2])),
                      int(np.ceil(bbox[3])))
    size = (x1 - min(x0, 0) + 2, y1 - min(y0, 0) + 2)
    origin = (1 - min(x0, 0), 1 - min(y0, 0))
    layers = []
    for stroke in (0, 1):
        img = Image.new("L", size, 0)
        draw = ImageDraw.Draw(img)
        draw.fontmode = "1"
        draw.multiline_text(origin, text, font=font, fill=255, anchor="la", align=align,
                            stroke_width=stroke, stroke_fill=255, spacing=spacing)
        layers.append(np.asarray(img))
    # Thresholding makes the result exact: Pillow anti-aliases strokes even in fontmode "1".
    mask = np.where(layers[1] >= 128, _STROKE, 0).astype(np.uint8)
    mask[layers[0] >= 128] = _FILL
    mask.setflags(write=False)  # shared by the cache
    return mask


def text_mask(width: int, height: int, texts: dict[str, str], size: float) -> np.ndarray:
    """A uint8 mask of the box: 255 text, 128 outline, 0 elsewhere (no grey levels)."""
    mask = np.zeros((height, width), dtype=np.uint8)
    for _corner, y, x, patch in _patches(width, height, texts, size):
        region = mask[y:y + patch.shape[0], x:x + patch.shape[1]]
        np.maximum(region, patch[:region.shape[0], :region.shape[1]], out=region)
    return mask


def _patches(width: int, height: int, texts: dict[str, str],
             size: float) -> list[tuple[str, int, int, np.ndarray]]:
    """(corner, top, left, patch) for every text, clipped to the box."""
    px = max(8, round(height * size))
    margin = max(2, px // 3)
    out = []
    for corner, text in texts.items():
        patch = _corner_mask(text, corner, px)
        ph, pw = patch.shape
        x = margin if corner.endswith("left") else width - margin - pw
        y = margin if corner.startswith("top") else height - margin - ph
        if x < 0:
            patch, x = patch[:, -x:], 0
        if y < 0:
            patch, y = patch[-y:, :], 0
        out.append((corner, y, x, patch[:height - y, :width - x]))
    return out


def burn_in(box: np.ndarray, texts: dict[str, str], size: float, white: int) -> np.ndarray:
    """Burn the texts into a box (rows x cols, or rows x cols x 3), white on a black outline.
    Only the corner patches are touched (the box is modified in place and returned)."""
    for _corner, y, x, patch in _patches(box.shape[1], box.shape[0], texts, size):
        region = box[y:y + patch.shape[0], x:x + patch.shape[1]]
        region[patch == _STROKE] = 0
        region[patch == _FILL] = white
    return box

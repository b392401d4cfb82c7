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


_FONTS: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}


def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if px not in _FONTS:
        _FONTS[px] = ImageFont.load_default(size=px)
    return _FONTS[px]


def text_mask(width: int, height: int, texts: dict[str, str], size: float) -> np.ndarray:
    """A uint8 mask of the box: 255 text, 128 outline, 0 elsewhere (no grey levels)."""
    px = max(8, round(height * size))
    margin = max(2, px // 3)
    glyphs = Image.new("L", (width, height), 0)
    outline = Image.new("L", (width, height), 0)
    font = _font(px)
    for img, stroke in ((glyphs, 0), (outline, 1)):
        draw = ImageDraw.Draw(img)
        draw.fontmode = "1"
        for corner, text in texts.items():
            left = corner.endswith("left")
            top = corner.startswith("top")
            x = margin if left else width - margin
            y = margin if top else height - margin
            anchor = ("l" if left else "r") + ("a" if top else "d")
            draw.multiline_text((x, y), text, font=font, fill=255, anchor=anchor,
                                align="left" if left else "right", stroke_width=stroke,
                                stroke_fill=255, spacing=max(1, px // 5))
    # Thresholding makes the result exact: Pillow anti-aliases strokes even in fontmode "1".
    mask = np.where(np.asarray(outline) >= 128, _STROKE, 0).astype(np.uint8)
    mask[np.asarray(glyphs) >= 128] = _FILL
    return mask


def burn_in(box: np.ndarray, texts: dict[str, str], size: float, white: int) -> np.ndarray:
    """Burn the texts into a box (rows x cols, or rows x cols x 3), white on a black outline."""
    if not texts:
        return box
    mask = text_mask(box.shape[1], box.shape[0], texts, size)
    out = box.copy()
    out[mask == _STROKE] = 0
    out[mask == _FILL] = white
    return out

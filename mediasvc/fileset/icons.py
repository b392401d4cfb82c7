"""Icon Image Sequence items (PS3.3 F.7): small 8-bit MONOCHROME2 renderings of an image.

STD-CTMR asks for 64x64 icons (PS3.11 Annex F); others allow up to 128x128. The image is
windowed (VOI from the file, else its full range after the modality LUT), MONOCHROME1 is
inverted, color is converted to luminance, and the result is fitted into the square keeping
the aspect ratio, padded with black.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut


def render_gray8(ds: Dataset, frame: int = 0) -> np.ndarray:
    """The first frame of an image as 8-bit grayscale (display values)."""
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1:
        arr = arr[frame]
    if samples > 1:
        photometric = str(ds.get("PhotometricInterpretation", "RGB"))
        if photometric.startswith("YBR"):
            from pydicom.pixels.processing import convert_color_space

            arr = convert_color_space(arr, photometric, "RGB")
        rgb = arr.astype(np.float64)
        gray = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
        return np.clip(gray, 0, 255).astype(np.uint8)
    values = apply_modality_lut(arr, ds)
    if "WindowCenter" in ds or "VOILUTSequence" in ds:
        values = apply_voi_lut(values, ds)
    values = values.astype(np.float64)
    lo, hi = float(values.min()), float(values.max())
    scaled = (values - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(values)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        scaled = 255.0 - scaled
    return np.clip(scaled + 0.5, 0, 255).astype(np.uint8)


def make_icon(ds: Dataset, size: int = 64) -> Dataset:
    """An Icon Image Sequence item of size x size, 8-bit MONOCHROME2."""
    gray = Image.fromarray(render_gray8(ds))
    gray.thumbnail((size, size), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (size, size), 0)
    canvas.paste(gray, ((size - gray.width) // 2, (size - gray.height) // 2))
    icon = Dataset()
    icon.SamplesPerPixel = 1
    icon.PhotometricInterpretation = "MONOCHROME2"
    icon.Rows = size
    icon.Columns = size
    icon.BitsAllocated = 8
    icon.BitsStored = 8
    icon.HighBit = 7
    icon.PixelRepresentation = 0
    icon.PixelData = np.asarray(canvas, dtype=np.uint8).tobytes()
    icon["PixelData"].VR = "OB"
    return icon

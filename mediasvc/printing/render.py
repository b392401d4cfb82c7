"""The formatter: DICOM images -> image boxes of a film, as the printer will get them.

The grayscale pipeline follows PS3.4 N.2 (the Grayscale Standard Display Pipeline as a print
SCU sees it): stored values -> Modality LUT (rescale, or a Modality LUT Sequence; PS3.3
C.11.1) -> VOI LUT (the window from the file or the job, or a VOI LUT Sequence; PS3.3 C.11.2)
-> MONOCHROME1 inversion (minimum = white, PS3.3 C.7.6.3.1.2) -> polarity and Presentation LUT
shape (PS3.3 C.11.6: INVERSE) -> P-values, quantised to 8 bits or 12 bits (stored in 16, PS3.3
C.13.5). The image is then fitted into the box's pixel matrix keeping its aspect ratio
(including non-square pixels), centred on black, and the annotation is burned in.

Color images (RGB, YBR_* decoded to RGB by pydicom, PALETTE COLOR through its LUT) stay RGB
for Basic Color Print Management; on a grayscale film they are converted to luminance.
Multi-frame images contribute one box per frame.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.uid import ImplicitVRLittleEndian

from mediasvc.errors import InputError
from mediasvc.printing.annotate import AnnotationTemplate, burn_in
from mediasvc.printing.layouts import FilmLayout

log = logging.getLogger(__name__)

_RESAMPLE = {"REPLICATE": Image.Resampling.NEAREST, "NONE": Image.Resampling.NEAREST,
             "BILINEAR": Image.Resampling.BILINEAR, "CUBIC": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class RenderOptions:
    bits: int = 8  # 8, or 12 (grayscale only)
    color: bool = False  # RGB boxes for Basic Color Print Management
    polarity: str = "NORMAL"
    plut_shape: str = "IDENTITY"
    magnification: str = "CUBIC"
    window: tuple[float, float] | None = None  # (center, width) overriding the files'
    annotation: AnnotationTemplate = field(default_factory=AnnotationTemplate)
    text: str = ""  # the job's free text, {text} in templates

    @classmethod
    def from_layout(cls, layout: FilmLayout, *, color: bool = False,
                    window: tuple[float, float] | None = None, text: str = "") -> RenderOptions:
        return cls(bits=8 if color else layout.bits, color=color, polarity=layout.polarity,
                   plut_shape=layout.presentation_lut_shape, magnification=layout.magnification,
                   window=window, annotation=layout.annotation, text=text)

    @property
    def white(self) -> int:
        return 4095 if self.bits == 12 and not self.color else 255


@dataclass
class SourceImage:
    """One frame of one input file, decoded."""

    path: Path
    dataset: Dataset  # without Pixel Data
    pixels: np.ndarray  # rows x cols, or rows x cols x 3 (RGB)
    frame: int  # 0-based
    frames: int

    @property
    def is_color(self) -> bool:
        return self.pixels.ndim == 3


@dataclass
class Film:
    """The boxes of one film, in Image Box Position order, and where they lie on the film."""

    boxes: list[np.ndarray]
    rects: list[tuple[int, int, int, int]]
    size: tuple[int, int]  # film (width, height) in printer pixels


# -- reading ---------------------------------------------------------------------------------

def read_dataset(path: Path) -> Dataset:
    """Read a DICOM file, tolerating a missing File Meta header (old ACR-NEMA-style files)."""
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError:
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception as exc:  # pydicom raises many kinds on garbage
            raise InputError(path, f"not a DICOM file: {exc}") from exc
        if "PixelData" not in ds and "SOPClassUID" not in ds:
            raise InputError(path, "not a DICOM file") from None
        if "TransferSyntaxUID" not in ds.file_meta:
            # Without a header, pydicom detected the encoding: only implicit LE is plausible
            # for such files; other guesses would decode garbage.
            if not (ds.is_implicit_VR and ds.is_little_endian):
                raise InputError(path, "no File Meta header and not implicit VR little "
                                       "endian") from None
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    except OSError as exc:
        raise InputError(path, f"cannot read: {exc.strerror}") from exc
    except Exception as exc:
        raise InputError(path, f"not a readable DICOM file: {exc}") from exc
    return ds


def load_images(paths: Iterable[Path]) -> list[SourceImage]:
    """Decode every frame of every file, in the order given (frames in file order)."""
    images: list[SourceImage] = []
    for path in paths:
        ds = read_dataset(path)
        if "PixelData" not in ds:
            raise InputError(path, "has no Pixel Data: nothing to print")
        try:
            arr = ds.pixel_array
        except Exception as exc:
            ts = ds.file_meta.get("TransferSyntaxUID", "unknown transfer syntax")
            raise InputError(path, f"cannot decode the pixel data ({ts}): {exc}") from exc
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
        if photometric == "PALETTE COLOR":
            arr = apply_color_lut(arr, ds)
            arr = (arr >> 8).astype(np.uint8) if arr.dtype.itemsize > 1 else arr
        samples = int(ds.get("SamplesPerPixel", 1))
        per_frame = arr if frames > 1 else arr[np.newaxis, ...]
        del ds.PixelData  # the arrays hold the pixels; keep the header small
        for i in range(per_frame.shape[0]):
            frame = per_frame[i]
            if samples == 3 or frame.ndim == 3:
                frame = _to_rgb8(frame, ds)
            images.append(SourceImage(path, ds, frame, i, frames))
    return images


def _to_rgb8(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    if frame.dtype == np.uint8:
        return frame
    bits = int(ds.get("BitsStored", 8))
    scaled = np.clip(frame.astype(np.float32) * (255.0 / (2**bits - 1)), 0, 255)
    out: np.ndarray = scaled.astype(np.uint8)
    return out


# -- grayscale pipeline ----------------------------------------------------------------------

def _frame_item(ds: Dataset, frame: int, sequence: str) -> Dataset | None:
    """A functional group macro of an enhanced multi-frame image (PS3.3 C.7.6.16), per frame
    first, then shared."""
    for groups, index in (("PerFrameFunctionalGroupsSequence", frame),
                          ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq is not None and len(seq) > index and sequence in seq[index]:
            items = seq[index].get(sequence) or []
            if len(items):
                item: Dataset = items[0]
                return item
    return None


def _first(value: Any) -> float:
    if isinstance(value, str | int | float):
        return float(value)
    return float(value[0])


def display_values(src: SourceImage, window: tuple[float, float] | None = None) -> np.ndarray:
    """Grayscale frame -> float32 in [0, 1], 0 black, 1 white, before polarity and P-LUT."""
    ds, arr = src.dataset, src.pixels
    if arr.ndim == 3:  # color onto grayscale film: ITU-R BT.601 luma, as Pillow's "L"
        luma = Image.fromarray(arr, "RGB").convert("L")
        return np.asarray(luma, dtype=np.float32) / 255.0
    # Modality LUT (PS3.3 C.11.1)
    pvt = _frame_item(ds, src.frame, "PixelValueTransformationSequence")
    values = None
    if "ModalityLUTSequence" in ds:
        try:
            values = np.asarray(apply_modality_lut(arr, ds), dtype=np.float32)
        except (TypeError, ValueError, IndexError, AttributeError):
            log.warning("%s: unusable Modality LUT Sequence, using the stored values",
                        src.path.name)
    if values is None:
        source = pvt if pvt is not None and "RescaleSlope" in pvt else ds
        slope = float(source.get("RescaleSlope", 1) or 1)
        intercept = float(source.get("RescaleIntercept", 0) or 0)
        values = arr.astype(np.float32)
        if slope != 1 or intercept != 0:
            values = values * np.float32(slope) + np.float32(intercept)
    # VOI LUT (PS3.3 C.11.2): the job's window, else the file's window, else its LUT
    voi = _frame_item(ds, src.frame, "FrameVOILUTSequence")
    wsrc = voi if voi is not None and "WindowCenter" in voi else ds
    if window is None and "WindowCenter" in wsrc and "WindowWidth" in wsrc:
        try:
            window = (_first(wsrc.WindowCenter), _first(wsrc.WindowWidth))
        except (TypeError, ValueError, IndexError):
            window = None
    function = str(wsrc.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    out: np.ndarray | None = None
    if window is not None and window[1] > 0:
        out = _window(values, window[0], window[1], function)
    else:
        out = _voi_lut(values, ds, src.path) if "VOILUTSequence" in ds else None
        if out is None:  # no VOI in the file: the full range of this frame
            lo, hi = float(values.min()), float(values.max())
            out = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        out = 1.0 - out  # MONOCHROME1: the minimum value is displayed white
    return out.astype(np.float32)


def _voi_lut(values: np.ndarray, ds: Dataset, path: Path) -> np.ndarray | None:
    """The first VOI LUT of the file, scaled to [0, 1]; None when it is unusable."""
    try:
        lut = np.asarray(apply_voi_lut(values.astype(np.int64), ds, index=0, prefer_lut=True),
                         dtype=np.float32)
        top = float(np.max(np.asarray(ds.VOILUTSequence[0].LUTData)))
    except (TypeError, ValueError, IndexError, AttributeError, KeyError):
        log.warning("%s: unusable VOI LUT Sequence, using the full range", path.name)
        return None
    return np.clip(lut / top, 0, 1) if top > 0 else None


def _window(x: np.ndarray, c: float, w: float, function: str) -> np.ndarray:
    """VOI windowing to [0, 1] (PS3.3 C.11.2.1.2.1 LINEAR, C.11.2.1.3.2 LINEAR_EXACT,
    C.11.2.1.3.1 SIGMOID)."""
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))).astype(np.float32)
    if function == "LINEAR_EXACT":
        return np.clip((x - c) / w + 0.5, 0, 1)
    w = max(w, 1.0)
    if w == 1.0:
        return (x > c - 0.5).astype(np.float32)
    return np.clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)


# -- fitting ---------------------------------------------------------------------------------

def _aspect(ds: Dataset) -> float:
    """Horizontal stretch factor of a pixel: column spacing / row spacing (PS3.3 C.7.6.3.1.7,
    C.7.6.2.1.1)."""
    try:
        if "PixelAspectRatio" in ds:
            v, h = (float(x) for x in ds.PixelAspectRatio)
            return h / v if v > 0 and h > 0 else 1.0
        for kw in ("PixelSpacing", "ImagerPixelSpacing"):
            if kw in ds:
                row_sp, col_sp = (float(x) for x in ds[kw].value)
                return col_sp / row_sp if row_sp > 0 and col_sp > 0 else 1.0
    except (TypeError, ValueError):
        pass
    return 1.0


def fit_size(rows: int, cols: int, aspect: float, box_w: int, box_h: int,
             magnification: str) -> tuple[int, int]:
    """(width, height) of the image fitted into the box, keeping its physical aspect ratio."""
    width = cols * aspect
    scale = min(box_w / width, box_h / rows)
    if magnification == "NONE":
        scale = min(scale, 1.0)  # NONE: never magnify, only reduce what does not fit
    return max(1, min(box_w, round(width * scale))), max(1, min(box_h, round(rows * scale)))


def render_box(src: SourceImage, box_w: int, box_h: int, opts: RenderOptions) -> np.ndarray:
    """One image box: (box_h, box_w) uint8/uint16, or (box_h, box_w, 3) uint8 for color."""
    resample = _RESAMPLE[opts.magnification]
    aspect = _aspect(src.dataset)
    rows, cols = src.pixels.shape[:2]
    w, h = fit_size(rows, cols, aspect, box_w, box_h, opts.magnification)
    invert = (opts.polarity == "REVERSE") != (opts.plut_shape == "INVERSE")
    if opts.color:
        if src.is_color:
            rgb = Image.fromarray(src.pixels, "RGB")
            if (w, h) != (cols, rows):
                rgb = rgb.resize((w, h), resample)
            img = np.asarray(rgb)
        else:
            gray = _resize_gray(_quantise(display_values(src, opts.window), 255), w, h, resample)
            img = np.repeat(gray[:, :, np.newaxis], 3, axis=2)
        if invert:
            img = 255 - img
        box = np.zeros((box_h, box_w, 3), dtype=np.uint8)
    else:
        values = display_values(src, opts.window)
        if invert:
            values = 1.0 - values
        # Quantise at the source size, then resample the integers: the same result within
        # one step of the output, at a fraction of the cost of resampling floats.
        img = _resize_gray(_quantise(values, opts.white), w, h, resample)
        box = np.zeros((box_h, box_w), dtype=img.dtype)
    y, x = (box_h - h) // 2, (box_w - w) // 2
    box[y:y + h, x:x + w] = img
    texts = opts.annotation.render_text(src.dataset, text=opts.text, frame=src.frame + 1,
                                        frames=src.frames)
    return burn_in(box, texts, opts.annotation.size, opts.white)


def _resize_gray(values: np.ndarray, w: int, h: int,
                 resample: Image.Resampling) -> np.ndarray:
    """Resample quantised P-values: uint8 as Pillow "L", 12 bits in uint16 as "I;16"."""
    if values.shape == (h, w):
        return values
    img = Image.fromarray(values).resize((w, h), resample)
    out: np.ndarray = np.asarray(img)
    if values.dtype == np.uint16:
        # "I;16" is not clipped at 12 bits: cubic overshoot would exceed 4095
        out = np.minimum(out, np.uint16(4095))
    return out


def _quantise(values: np.ndarray, white: int) -> np.ndarray:
    dtype = np.uint8 if white <= 255 else np.uint16
    scaled = np.clip(values * np.float32(white), 0, white)
    return np.rint(scaled).astype(dtype)


# -- films -----------------------------------------------------------------------------------

def render_films(images: Sequence[SourceImage], layout: FilmLayout,
                 film_size_px: tuple[int, int], opts: RenderOptions) -> list[Film]:
    """Lay the images out on as many films as they need; boxes in position order."""
    width, height = film_size_px
    rects = layout.display_format.box_rects(width, height)
    per_film = len(rects)
    films: list[Film] = []
    for start in range(0, len(images), per_film):
        chunk = images[start:start + per_film]
        # Pillow and numpy release the GIL while resampling: one thread per core.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            boxes = list(pool.map(render_box, chunk, [r[2] for r in rects],
                                  [r[3] for r in rects], [opts] * len(chunk)))
        films.append(Film(boxes, rects[:len(boxes)], (width, height)))
    return films


def compose(film: Film, *, empty_white: bool = False) -> Image.Image:
    """The whole film as it would print (8-bit PNG-able image)."""
    width, height = film.size
    color = bool(film.boxes) and film.boxes[0].ndim == 3
    mode = "RGB" if color else "L"
    canvas = Image.new(mode, (width, height), (255, 255, 255) if color and empty_white
                       else 255 if empty_white else 0)
    for (x, y, w, h), box in zip(film.rects, film.boxes, strict=True):
        data = box if box.dtype == np.uint8 else (box >> 4).astype(np.uint8)
        canvas.paste(Image.fromarray(data, mode), (x, y, x + w, y + h))
    return canvas


def write_previews(films: Sequence[Film], path: Path, *, empty_white: bool = False) -> list[Path]:
    """PATH for one film; PATH-1.png, PATH-2.png ... for several. Returns the files written."""
    if len(films) == 1:
        targets = [path]
    else:
        targets = [path.with_name(f"{path.stem}-{i}{path.suffix or '.png'}")
                   for i in range(1, len(films) + 1)]
    for film, target in zip(films, targets, strict=True):
        tmp = target.with_name(f".{target.name}.tmp")
        compose(film, empty_white=empty_white).save(tmp, format="PNG")
        tmp.replace(target)
    return targets

"""IHE PDI web content (`--web`): XHTML pages and JPEG renderings in IHE_PDI/.

IHE RAD TF-1 PDI "web content" option: a browser without any DICOM software can see what is
on the medium. Rules followed here:
* only XHTML and JPEG, all under IHE_PDI/, 8.3 upper-case names (ISO 9660 level 1, PS3.12);
* renderings only of DICOM content on this volume, windowed as a viewer would show them:
  Modality LUT (rescale), then the VOI LUT or the first Window Center/Width of the instance
  (PS3.3 C.11.2), else the full range of the frame; MONOCHROME1 inverted; the first frame
  of a multi-frame instance; at most 512 pixels wide or high;
* pages per patient (PATnnnnn.HTM), study (STUnnnnn.HTM) and series (SERnnnnn.HTM); the
  images of series n are in IHE_PDI/Snnnnn/Innnnn.JPG. They are not for diagnosis, and say so.

An instance without pixel data (SR, KO, PR, ...) gets a line in its series page, no image;
an image that cannot be decoded gets a line saying why, and the export goes on.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from PIL import Image

from mediasvc.durable import atomic_write as write_atomic
from mediasvc.errors import MediaError
from mediasvc.media.pdi import (
    VolumeInfo,
    dicom_date,
    person_name,
    xhtml_page,
)

log = logging.getLogger(__name__)

WEB_DIR = "IHE_PDI"
MAX_SIDE = 512
JPEG_QUALITY = 85
# Size estimate of the web content per instance for the spanning planner (a 512x512 JPEG at
# quality 85 of a CT is 30-70 kB; pages add little).
ESTIMATED_BYTES_PER_IMAGE = 96 * 1024


@dataclass
class WebResult:
    pages: int = 0
    images: int = 0
    failed: int = 0
    study_pages: dict[str, str] = field(default_factory=dict)  # study UID -> IHE_PDI/STUnnnnn.HTM


def _first(value: object) -> float:
    """First value of a possibly multi-valued DS (Window Center/Width may list several)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return float(value[0])  # type: ignore[index]
    return float(value)  # type: ignore[arg-type]


def _window(data: np.ndarray, ds: pydicom.Dataset, apply_voi_lut: Any) -> np.ndarray:
    """Modality values -> 8-bit display values (PS3.3 C.11.2.1)."""
    if "VOILUTSequence" in ds:
        lut = ds.VOILUTSequence[0]
        out_bits = int(lut.LUTDescriptor[2]) or 16
        shown: np.ndarray = np.asarray(apply_voi_lut(data, ds, index=0), dtype=np.float64)
        scale = 255.0 / float((1 << out_bits) - 1)
        return (shown * scale).clip(0, 255).astype(np.uint8)
    center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
    if center is not None and width is not None and _first(width) >= 1:
        # C.11.2.1.2.1, the LINEAR function: the window maps onto the full output range.
        c, w = _first(center), _first(width)
        if w == 1:
            return np.where(data <= c - 0.5, 0, 255).astype(np.uint8)
        shown = ((data - (c - 0.5)) / (w - 1) + 0.5) * 255.0
        return shown.clip(0, 255).astype(np.uint8)
    lo, hi = float(data.min()), float(data.max())  # no window: the full range of the frame
    if hi <= lo:
        return np.zeros(data.shape, dtype=np.uint8)
    return ((data - lo) / (hi - lo) * 255.0).astype(np.uint8)


def render_jpeg(dicom_file: Path, out: Path) -> tuple[int, int]:
    """Render the first frame of an image instance to an 8-bit JPEG; return its size."""
    from pydicom.pixels.processing import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(dicom_file)
    if "PixelData" not in ds:
        raise ValueError("no pixel data")
    arr = ds.pixel_array
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    if frames > 1:
        arr = arr[0]
    if samples == 1:
        pixels = _window(apply_modality_lut(arr, ds).astype(np.float64), ds, apply_voi_lut)
        if str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1":
            pixels = 255 - pixels
        img = Image.fromarray(pixels, mode="L")
    else:
        # pydicom returns colour pixel data as RGB (YBR converted on decode).
        if arr.dtype != np.uint8:
            arr = (arr.astype(np.float64) / max(1.0, float(arr.max())) * 255).astype(np.uint8)
        img = Image.fromarray(arr, mode="RGB")
    img.thumbnail((MAX_SIDE, MAX_SIDE))
    img.save(out, format="JPEG", quality=JPEG_QUALITY)
    return img.size


def write_web_content(root: Path, vol: VolumeInfo, into: Path | None = None,
                      mapped: Mapping[tuple[str, ...], Path] | None = None) -> WebResult:
    """Write ROOT/IHE_PDI/ for the DICOM content listed in VOL (read from ROOT's DICOMDIR).
    ``into``: another folder to write the same pages to (its links are relative, so it can be
    renamed to ROOT/IHE_PDI afterwards: pdi_refresh.py builds the new content beside the old).
    ``mapped``: File ID -> source for instances not placed under ROOT (creator link "map")."""
    e = html.escape
    web = into if into is not None else root / WEB_DIR
    try:
        web.mkdir(exist_ok=True)
    except OSError as exc:
        raise MediaError(f"{web}: cannot create: {exc.strerror}") from exc
    result = WebResult()
    n_study = n_series = 0
    notice = "<p><em>JPEG renderings for orientation only, not for diagnosis.</em></p>"
    for n_patient, patient in enumerate(vol.patients, 1):
        p_page = f"PAT{n_patient:05d}.HTM"
        p_title = f"{person_name(patient.name) or '(no name)'} [{patient.patient_id}]"
        p_body = [f"<h1>{e(p_title)}</h1>",
                  f"<p>Birth date: {e(dicom_date(patient.birth_date) or 'unknown')}</p>",
                  '<p><a href="../INDEX.HTM">Back to the medium</a></p>', "<ul>"]
        for study in patient.studies:
            n_study += 1
            s_page = f"STU{n_study:05d}.HTM"
            result.study_pages[study.uid] = f"{WEB_DIR}/{s_page}"
            p_body.append(f'<li><a href="{s_page}">{e(dicom_date(study.date))} '
                          f"{e(study.description or '(no description)')}</a></li>")
            s_body = [f"<h1>{e(study.description or 'Study')} "
                      f"{e(dicom_date(study.date))}</h1>",
                      f'<p>Patient: <a href="{p_page}">{e(p_title)}</a>; accession '
                      f"{e(study.accession or '-')}</p>", notice, "<ul>"]
            for series in study.series:
                n_series += 1
                r_page = f"SER{n_series:05d}.HTM"
                r_dir = f"S{n_series:05d}"
                s_body.append(f'<li><a href="{r_page}">Series {e(series.number)} '
                              f"{e(series.modality)} {e(series.description)} "
                              f"({len(series.files)} instances)</a></li>")
                r_body = [f"<h1>Series {e(series.number)} {e(series.modality)} "
                          f"{e(series.description)}</h1>",
                          f'<p><a href="{s_page}">Back to the study</a></p>', notice]
                for n_image, file_id in enumerate(series.files, 1):
                    jpg = f"I{n_image:05d}.JPG"
                    try:
                        (web / r_dir).mkdir(exist_ok=True)
                        w, h = render_jpeg((mapped or {}).get(file_id) or root.joinpath(*file_id),
                                           web / r_dir / jpg)
                    except Exception as exc:  # noqa: BLE001 - one bad image must not stop the disc
                        reason = "no image (not an image object)" if str(exc) == \
                            "no pixel data" else f"no rendering: {exc}"
                        r_body.append(f"<p>{e(chr(92).join(file_id))}: {e(reason)}</p>")
                        result.failed += str(exc) != "no pixel data"
                        continue
                    result.images += 1
                    r_body.append(f'<p><img src="{r_dir}/{jpg}" width="{w}" height="{h}" '
                                  f'alt="image {n_image}" /></p>')
                write_atomic(web / r_page, xhtml_page(f"Series {series.number}",
                                                      r_body).encode("utf-8"))
                result.pages += 1
            s_body.append("</ul>")
            write_atomic(web / s_page, xhtml_page(study.description or "Study",
                                                  s_body).encode("utf-8"))
            result.pages += 1
        p_body.append("</ul>")
        write_atomic(web / p_page, xhtml_page(p_title, p_body).encode("utf-8"))
        result.pages += 1
    if result.failed:
        log.warning("%s: %d image(s) could not be rendered for the web pages", root,
                    result.failed)
    return result

"""Transcoding a source file to a transfer syntax its profile allows (PS3.5 section 10).

- Implicit VR LE, Explicit VR Big Endian, Deflated -> Explicit VR Little Endian (re-encoding;
  big endian pixel data is converted through the decoded array, since pydicom does not swap
  OW values itself).
- Compressed -> Explicit VR Little Endian: decoded with pydicom's pixel plugins (pylibjpeg,
  openjpeg, RLE); YCbCr JPEG becomes RGB.
- Uncompressed -> JPEG 2000 (lossless or not) with pydicom's encoder (pylibjpeg-openjpeg),
  JPEG Baseline (8-bit) with Pillow, or JPEG Lossless SV1 (the syntax of STD-CTMR and
  STD-XABC) with DCMTK's dcmcjpeg: no Python library encodes JPEG Lossless, and DCMTK is the
  reference implementation of these profiles, installed with mediasvc.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
J2K = "1.2.840.10008.1.2.4.91"
COMPRESS_CHOICES = {"jpeg-baseline": JPEG_BASELINE, "jpeg-lossless": JPEG_LOSSLESS_SV1,
                    "j2k-lossless": J2K_LOSSLESS, "j2k": J2K}
ENCODABLE = {JPEG_BASELINE, J2K_LOSSLESS, J2K}
if shutil.which("dcmcjpeg"):
    ENCODABLE.add(JPEG_LOSSLESS_SV1)
_BINARY_VRS = {"OW", "OF", "OD", "OL", "OV", "US or OW", "US or SS or OW"}


class TranscodeError(Exception):
    """Why a file could not be converted (becomes the file's rejection reason)."""


def transcode(src: Path, dst: Path, target: str) -> str:
    """Write ``src`` re-encoded in ``target`` to ``dst`` (fsynced); returns the SOP Instance
    UID of the written file: the same, except after lossy compression, which makes a new
    instance (PS3.3 C.7.6.1.1.5)."""
    ds = dcmread(src, force=True)
    if "TransferSyntaxUID" not in ds.file_meta:
        _add_file_meta(ds)
    ts = UID(str(ds.file_meta.TransferSyntaxUID))
    try:
        if ts.is_compressed:
            # Decoding keeps the instance: the pixels are those that were stored.
            ds.decompress(generate_instance_uid=False)
        elif not ts.is_little_endian:
            _big_to_little(ds)
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        if target == J2K_LOSSLESS:
            ds.compress(J2K_LOSSLESS, encoding_plugin="pylibjpeg", generate_instance_uid=False)
        elif target == J2K:
            # Lossy: a new instance (PS3.3 C.7.6.1.1.5; pydicom assigns the new UID).
            ds.compress(J2K, encoding_plugin="pylibjpeg", j2k_cr=[20])
            _mark_lossy(ds, "ISO_15444_1", 20.0)
        elif target == JPEG_BASELINE:
            _jpeg_baseline(ds)
        elif target == JPEG_LOSSLESS_SV1:
            _jpeg_lossless_dcmtk(ds, dst)
            return str(ds.SOPInstanceUID)
        elif target != ExplicitVRLittleEndian:
            raise TranscodeError(f"no encoder for {UID(target).name}")
    except TranscodeError:
        raise
    except Exception as exc:  # decoders and encoders raise many kinds; report the words
        raise TranscodeError(f"cannot convert {ts.name} to {UID(target).name}: {exc}") from exc
    with dst.open("wb") as fh:
        dcmwrite(fh, ds, enforce_file_format=True)
        fh.flush()
        os.fsync(fh.fileno())
    return str(ds.SOPInstanceUID)


def _add_file_meta(ds: Dataset) -> None:
    """File meta for a bare data set (PS3.10 7.1), in the encoding pydicom found it in."""
    implicit, little = ds.original_encoding
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit and little
                              else ExplicitVRBigEndian if not little else ExplicitVRLittleEndian)
    ds.file_meta = meta


def _big_to_little(ds: Dataset) -> None:
    for elem in ds.iterall():
        if elem.VR in _BINARY_VRS and elem.tag != 0x7FE00010 and elem.value:
            raise TranscodeError(f"big endian binary element {elem.tag} ({elem.keyword}) "
                                 "cannot be converted safely")
    if "PixelData" in ds:
        arr = ds.pixel_array
        ds.PixelData = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("<"))).tobytes()
        ds["PixelData"].VR = "OW" if int(ds.BitsAllocated) > 8 else "OB"


def _jpeg_lossless_dcmtk(ds: Dataset, dst: Path) -> None:
    """Explicit VR LE to a temp file, then dcmcjpeg +e1 (Process 14, Selection Value 1)."""
    if not shutil.which("dcmcjpeg"):
        raise TranscodeError("no JPEG Lossless encoder: DCMTK's dcmcjpeg is not installed")
    tmp = dst.with_name(dst.name + ".ele")
    try:
        with tmp.open("wb") as fh:
            dcmwrite(fh, ds, enforce_file_format=True)
        proc = subprocess.run(["dcmcjpeg", "--encode-lossless-sv1", str(tmp), str(dst)],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            words = (proc.stderr or proc.stdout).strip().splitlines()
            raise TranscodeError("dcmcjpeg could not encode JPEG Lossless: "
                                 + (words[-1] if words else f"exit {proc.returncode}"))
        with dst.open("rb+") as fh:
            os.fsync(fh.fileno())
    finally:
        tmp.unlink(missing_ok=True)


def _mark_lossy(ds: Dataset, method: str, ratio: float) -> None:
    # PS3.3 C.7.6.1.1.5: once lossy compressed, always flagged.
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionMethod = method
    ds.LossyImageCompressionRatio = f"{ratio:.1f}"


def _jpeg_baseline(ds: Dataset) -> None:
    from PIL import Image

    if int(ds.BitsAllocated) != 8:
        raise TranscodeError("JPEG Baseline holds 8-bit images only; this one has "
                             f"{ds.BitsAllocated} bits allocated")
    arr = ds.pixel_array
    frames = arr if int(ds.get("NumberOfFrames", 1) or 1) > 1 else arr[np.newaxis]
    color = int(ds.SamplesPerPixel) == 3
    fragments = []
    for frame in frames:
        buf = io.BytesIO()
        Image.fromarray(frame, "RGB" if color else "L").save(
            buf, "JPEG", quality=90, subsampling=1 if color else 0)
        fragments.append(buf.getvalue())
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    if color:
        ds.PhotometricInterpretation = "YBR_FULL_422"  # PS3.5 8.2.1
        ds.PlanarConfiguration = 0
    ds.file_meta.TransferSyntaxUID = UID(JPEG_BASELINE)
    _mark_lossy(ds, "ISO_10918_1", 10.0)
    ds.SOPInstanceUID = generate_uid()  # lossy: a new instance (PS3.3 C.7.6.1.1.5)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID

"""Staging trees: the volumes a STAGING argument names, and facts about one volume.

A staging tree is one volume's root (DICOMDIR, DICOM/..., README.TXT, INDEX.HTM, optionally
IHE_PDI/ and a viewer folder). A spanned export writes DIR/VOL001, DIR/VOL002, ...; burning DIR
then means burning each volume in turn, each on its own medium.
"""

from __future__ import annotations

import re
from pathlib import Path

from mediasvc.errors import MediaError

VOLUME_DIR = re.compile(r"VOL(\d{3})")
# Present in an export's DIR while its volumes are being written (media/production.py).
PRODUCTION_MARKER = ".mediasvc-production"


def volume_dir_name(number: int) -> str:
    return f"VOL{number:03d}"


def volumes_of(staging: Path) -> list[Path]:
    """[STAGING] when it is a volume root, else its VOLnnn subfolders in order."""
    if not staging.is_dir():
        raise MediaError(f"{staging}: staging tree not found (not a folder)")
    if (staging / PRODUCTION_MARKER).exists():
        raise MediaError(f"{staging}: the export that writes these volumes did not finish; "
                         "run it again before burning")
    if (staging / "DICOMDIR").is_file():
        return [staging]
    vols = sorted((p for p in staging.iterdir()
                   if p.is_dir() and VOLUME_DIR.fullmatch(p.name)), key=lambda p: p.name)
    if not vols:
        raise MediaError(f"{staging}: not a staging tree (no DICOMDIR and no VOL001, VOL002, ...)")
    for vol in vols:
        if not (vol / "DICOMDIR").is_file():
            raise MediaError(f"{vol}: volume without a DICOMDIR (incomplete export?)")
    return vols


def has_web_content(root: Path) -> bool:
    """IHE PDI web content present (IHE_PDI/ folder): 'DICOM PLUS WEB' on the label."""
    return (root / "IHE_PDI").is_dir()

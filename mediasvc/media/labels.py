"""Disc label merge data: the fields a publisher prints on the disc, taken from the DICOMDIR.

Fields: PATIENT_NAME, PATIENT_ID, BIRTH_DATE, STUDY_DATES, STUDY_DESCRIPTIONS, INSTITUTION,
CONTENT ("DICOM ONLY" or "DICOM PLUS WEB"), VOLUME ("1 OF 2"). Values are escaped for a job
file of ``KEY=value`` lines: no control characters (a newline would start a new key in the
job file, i.e. inject a command), ASCII only (the label software reads the job file in the
publisher's ANSI code page), bounded length. Dates are shown as given when they are not
plain YYYYMMDD: empty and pre-1900 birth dates occur on real media and must not fail a job.

``--label-data FILE`` names a TOML file (validated by config.Table):

    template = "C:\\\\Labels\\\\dicom.std"    # label design the publisher merges into
    [fields]                                   # fixed values, override the computed ones
    INSTITUTION = "Example Hospital, Radiology"
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from mediasvc.config import load_toml
from mediasvc.media.pdi import SiteInfo, VolumeInfo, dicom_date, person_name

FIELDS = ("PATIENT_NAME", "PATIENT_ID", "BIRTH_DATE", "STUDY_DATES", "STUDY_DESCRIPTIONS",
          "INSTITUTION", "CONTENT", "VOLUME")
MAX_FIELD = 120


@dataclass(frozen=True)
class LabelSettings:
    template: str = ""
    fields: dict[str, str] = field(default_factory=dict)


def load_label_settings(path: Path) -> LabelSettings:
    t = load_toml(path)
    t.check_keys({"template", "fields"})
    fields_table = t.table("fields")
    fields: dict[str, str] = {}
    for key in fields_table.data:
        if key not in FIELDS:
            raise fields_table.error(key, f"unknown label field (known: {', '.join(FIELDS)})")
        fields[key] = fields_table.str(key)
    return LabelSettings(template=t.str("template", ""), fields=fields)


def escape_field(value: str, max_len: int = MAX_FIELD) -> str:
    """One line of printable ASCII: accents folded (É -> E), controls to spaces, bounded."""
    folded = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    one_line = re.sub(r"[\x00-\x1f\x7f]+", " ", folded)
    squeezed = re.sub(r" {2,}", " ", one_line).strip()
    return squeezed[:max_len].rstrip()


def label_fields(vol: VolumeInfo, site: SiteInfo, *, web: bool, number: int = 1,
                 count: int = 1, settings: LabelSettings | None = None) -> dict[str, str]:
    """Merge data for one volume, escaped, in FIELDS order."""
    patients = vol.patients
    if len(patients) == 1:
        name, pid = person_name(patients[0].name), patients[0].patient_id
        birth = dicom_date(patients[0].birth_date)
    else:
        name, pid, birth = f"{len(patients)} PATIENTS", "", ""
    studies = [s for _, s in vol.studies]
    dates = sorted({dicom_date(s.date) for s in studies if s.date.strip()})
    descriptions = list(dict.fromkeys(s.description for s in studies if s.description))
    institution = site.institution
    values = {
        "PATIENT_NAME": name,
        "PATIENT_ID": pid,
        "BIRTH_DATE": birth,
        "STUDY_DATES": ", ".join(dates),
        "STUDY_DESCRIPTIONS": "; ".join(descriptions),
        "INSTITUTION": institution,
        "CONTENT": "DICOM PLUS WEB" if web else "DICOM ONLY",
        "VOLUME": f"{number} OF {count}",
    }
    if settings:
        values.update(settings.fields)
    return {k: escape_field(values[k]) for k in FIELDS}

"""IHE PDI (Portable Data for Imaging) root content: README.TXT and INDEX.HTM per volume.

IHE RAD TF-1 PDI and PS3.12 leave the DICOM file-set alone (DICOMDIR + DICOM/...) and add, at
the root of every volume, a README.TXT (who made the medium and how to reach them, the
application that made it, what the medium holds, how to view it) and an INDEX.HTM a browser
can open. On a spanned set each volume also says "volume k of n" and what the others hold.

What the volume holds is read back from its DICOMDIR (``read_volume``), so this module works
for any file-set: ours, DCMTK's or a third party's.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.charset import convert_encodings
from pydicom.dataelem import RawDataElement, convert_raw_data_element

from mediasvc import __version__
from mediasvc.durable import atomic_write as write_atomic
from mediasvc.errors import FileSetError, MediaError
from mediasvc.fileset.reader import DirRecord, read_fileset

APPLICATION = "mediasvc"


@dataclass
class SeriesInfo:
    uid: str
    modality: str
    number: str
    description: str
    files: list[tuple[str, ...]] = field(default_factory=list)


@dataclass
class StudyInfo:
    uid: str
    date: str
    time: str
    description: str
    accession: str
    study_id: str
    series: list[SeriesInfo] = field(default_factory=list)

    @property
    def modalities(self) -> list[str]:
        return sorted({s.modality for s in self.series if s.modality})

    @property
    def instance_count(self) -> int:
        return sum(len(s.files) for s in self.series)


@dataclass
class PatientInfo:
    name: str
    patient_id: str
    birth_date: str
    sex: str
    studies: list[StudyInfo] = field(default_factory=list)


@dataclass
class VolumeInfo:
    """What one volume holds, as its DICOMDIR says."""

    fileset_id: str
    patients: list[PatientInfo] = field(default_factory=list)

    @property
    def studies(self) -> list[tuple[PatientInfo, StudyInfo]]:
        return [(p, s) for p in self.patients for s in p.studies]

    @property
    def instance_count(self) -> int:
        return sum(s.instance_count for _, s in self.studies)


@dataclass(frozen=True)
class SiteInfo:
    """The creating institution as the README names it (IHE PDI: 'creating institution')."""

    institution: str = ""
    contact: str = ""


@dataclass(frozen=True)
class VolumeContext:
    """Where a volume sits in its set, and what else is on it, for README.TXT and INDEX.HTM."""

    number: int = 1
    count: int = 1
    others: tuple[tuple[int, VolumeInfo], ...] = ()
    split_notes: tuple[str, ...] = ()
    web: bool = False
    viewer: str | None = None  # folder name of the viewer at the root, if any
    # What the other volumes hold as already formatted study lines: when a volume's README
    # is refreshed after an update (pdi_refresh.py), the other volumes are not at hand.
    other_lines: tuple[tuple[int, tuple[str, ...]], ...] = ()

    def other_volumes(self) -> list[tuple[int, list[str]]]:
        """(volume number, its study lines) of every other volume of the set."""
        listed = [(n, [_study_line(p, s) for p, s in other.studies]) for n, other in self.others]
        return sorted(listed + [(n, list(lines)) for n, lines in self.other_lines])


def read_volume(root: Path) -> VolumeInfo:
    """Read ROOT/DICOMDIR into a patient/study/series tree (PS3.3 F.3 record hierarchy),
    through the File-set Reader (offsets followed, inactive records skipped)."""
    try:
        listing = read_fileset(root, scan_fallback=False)
    except FileSetError as exc:
        raise MediaError(f"{root / 'DICOMDIR'}: cannot read the DICOMDIR: {exc}") from exc

    def below(rec: DirRecord, rtype: str) -> list[DirRecord]:
        return [c for c in rec.children if c.in_use and c.record_type == rtype]

    vol = VolumeInfo(fileset_id=listing.fileset_id)
    for prec in listing.roots:
        if not prec.in_use or prec.record_type != "PATIENT":
            continue
        patient = PatientInfo(prec.get("PatientName"), prec.get("PatientID"),
                              prec.get("PatientBirthDate"), prec.get("PatientSex"))
        vol.patients.append(patient)
        for strec in below(prec, "STUDY"):
            study = StudyInfo(strec.get("StudyInstanceUID"), strec.get("StudyDate"),
                              strec.get("StudyTime"), strec.get("StudyDescription"),
                              strec.get("AccessionNumber"), strec.get("StudyID"))
            patient.studies.append(study)
            for serec in below(strec, "SERIES"):
                series = SeriesInfo(serec.get("SeriesInstanceUID"), serec.get("Modality"),
                                    serec.get("SeriesNumber"), serec.get("SeriesDescription"))
                study.series.append(series)
                series.files += [tuple(c.file_id) for c in serec.children
                                 if c.in_use and c.file_id]
    return vol


def volume_from_instances(instances: Sequence[Any], file_ids: dict[str, str]) -> VolumeInfo:
    """The same tree as read_volume, from the File-set Creator's SourceInstances (their
    directory keys) and the File IDs it assigned: no need to parse the DICOMDIR just written.
    ``file_ids``: SOP Instance UID -> 'DICOM\\PA000001\\...' of every placed instance."""
    def key(inst: Any, level: str, keyword: str) -> str:
        keys = inst.keys.get(level, {})
        elem = keys.get(keyword)
        if elem is None:
            return ""
        if isinstance(elem, RawDataElement):  # kept as read: decode with its character set
            charset = keys.get("SpecificCharacterSet")
            encodings = None
            if charset is not None and charset.value:
                raw_cs = charset.value
                if isinstance(raw_cs, bytes):
                    raw_cs = raw_cs.decode("ascii", "replace").split("\\")
                encodings = convert_encodings(raw_cs)
            try:
                elem = convert_raw_data_element(elem, encoding=encodings)
            except Exception:  # noqa: BLE001 - a README line must not fail the export
                return ""
        value = elem.value
        return "" if value is None else str(value).strip()

    vol = VolumeInfo(fileset_id="")
    patients: dict[str, PatientInfo] = {}
    studies: dict[str, StudyInfo] = {}
    series_by_uid: dict[str, SeriesInfo] = {}
    for inst in instances:
        file_id = file_ids.get(inst.sop_instance_uid)
        if file_id is None or inst.single_level:
            continue
        patient = patients.get(inst.patient_id)
        if patient is None:
            patient = patients[inst.patient_id] = PatientInfo(
                key(inst, "PATIENT", "PatientName"), inst.patient_id,
                key(inst, "PATIENT", "PatientBirthDate"), key(inst, "PATIENT", "PatientSex"))
            vol.patients.append(patient)
        study = studies.get(inst.study_uid)
        if study is None:
            study = studies[inst.study_uid] = StudyInfo(
                inst.study_uid, key(inst, "STUDY", "StudyDate"), key(inst, "STUDY", "StudyTime"),
                key(inst, "STUDY", "StudyDescription"), key(inst, "STUDY", "AccessionNumber"),
                key(inst, "STUDY", "StudyID"))
            patient.studies.append(study)
        series = series_by_uid.get(inst.series_uid)
        if series is None:
            series = series_by_uid[inst.series_uid] = SeriesInfo(
                inst.series_uid, inst.modality, key(inst, "SERIES", "SeriesNumber"),
                key(inst, "SERIES", "SeriesDescription"))
            study.series.append(series)
        series.files.append(tuple(file_id.split("\\")))
    return vol


# -- formatting helpers ------------------------------------------------------------------------

def person_name(value: str) -> str:
    """DICOM PN 'FAMILY^GIVEN^MIDDLE^PREFIX^SUFFIX' (PS3.5 6.2) as 'FAMILY, GIVEN MIDDLE'."""
    alphabetic = value.split("=")[0]
    parts = [p.strip() for p in alphabetic.split("^")]
    parts += [""] * (5 - len(parts))
    family, given, middle, prefix, suffix = parts[:5]
    first = " ".join(p for p in (prefix, given, middle) if p)
    name = f"{family}, {first}" if family and first else family or first
    return f"{name} {suffix}".strip() if suffix else name


def dicom_date(value: str) -> str:
    """DA 'YYYYMMDD' (also pre-1900) as 'YYYY-MM-DD'; anything else (empty, partial, legacy
    ACR-NEMA 'YYYY.MM.DD' garbled) is shown as given, never rejected."""
    v = value.strip().replace(".", "")
    if len(v) == 8 and v.isdigit():
        return f"{v[:4]}-{v[4:6]}-{v[6:]}"
    return value.strip()


def _study_line(patient: PatientInfo, study: StudyInfo) -> str:
    what = study.description or "(no description)"
    mods = "/".join(study.modalities) or "?"
    return (f"{person_name(patient.name) or '(no name)'} [{patient.patient_id or 'no ID'}] "
            f"{dicom_date(study.date) or 'undated'} {mods} {what}: "
            f"{len(study.series)} series, {study.instance_count} instances")


def readme_text(vol: VolumeInfo, site: SiteInfo, ctx: VolumeContext) -> str:
    """README.TXT for one volume (IHE PDI content: institution, application, content, viewing)."""
    lines = [
        "DICOM MEDIUM - README",
        "=====================",
        "",
        f"This medium holds medical images in DICOM format (PS3.10 file-set "
        f"'{vol.fileset_id}').",
    ]
    if ctx.count > 1:
        lines.append(f"It is volume {ctx.number} of {ctx.count} of a set.")
    lines += [
        "",
        "Created by:",
        f"  Institution: {site.institution or '(not configured)'}",
        f"  Contact:     {site.contact or '(not configured)'}",
        f"  Application: {APPLICATION} {__version__}",
        "",
        f"Content of this volume ({len(vol.patients)} patient(s), {len(vol.studies)} study(ies), "
        f"{vol.instance_count} instances):",
    ]
    lines += [f"  - {_study_line(p, s)}" for p, s in vol.studies]
    if ctx.split_notes:
        lines += ["", "Studies split over several volumes (too large for one):"]
        lines += [f"  - {note}" for note in ctx.split_notes]
    for number, study_lines in ctx.other_volumes():
        lines += ["", f"On volume {number} of {ctx.count}:"]
        lines += [f"  - {line}" for line in study_lines]
    lines += [
        "",
        "How to view:",
        "  - Open the file DICOMDIR at the root of this medium with a DICOM viewer;",
        "    it indexes every image in the DICOM folder.",
        "  - Open INDEX.HTM with a web browser for a summary of the content.",
    ]
    if ctx.web:
        lines.append("  - The IHE_PDI folder holds web pages with JPEG renderings of the images"
                     " (not for diagnosis).")
    if ctx.viewer:
        lines.append(f"  - A DICOM viewer is provided in the folder {ctx.viewer}"
                     " (it does not start automatically).")
    lines += ["", "The images on this medium are confidential patient information.", ""]
    return "\r\n".join(lines)  # CRLF: readable with the plainest editor of every platform


_XHTML_HEAD = (
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.0 Strict//EN" '
    '"http://www.w3.org/TR/xhtml1/DTD/xhtml1-strict.dtd">\n'
    '<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en" lang="en">\n'
    '<head><meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />'
    "<title>{title}</title></head>\n<body>\n"
)


def xhtml_page(title: str, body: Sequence[str]) -> str:
    """An XHTML 1.0 Strict page (IHE PDI web content is XHTML only)."""
    return _XHTML_HEAD.format(title=html.escape(title)) + "\n".join(body) + "\n</body>\n</html>\n"


def index_htm(vol: VolumeInfo, site: SiteInfo, ctx: VolumeContext,
              web_links: dict[str, str] | None = None) -> str:
    """INDEX.HTM: the same facts as README.TXT; with --web, links to the IHE_PDI study pages.

    ``web_links``: Study Instance UID -> relative path of its page under IHE_PDI/.
    """
    e = html.escape
    title = f"DICOM medium {vol.fileset_id}"
    if ctx.count > 1:
        title += f" (volume {ctx.number} of {ctx.count})"
    body = [f"<h1>{e(title)}</h1>",
            f"<p>Created by {e(site.institution or '(institution not configured)')}; "
            f"contact: {e(site.contact or '(not configured)')}; "
            f"application: {e(APPLICATION)} {e(__version__)}.</p>",
            "<h2>Content of this volume</h2>", "<ul>"]
    for patient, study in vol.studies:
        text = e(_study_line(patient, study))
        link = (web_links or {}).get(study.uid)
        body.append(f'<li><a href="{e(link)}">{text}</a></li>' if link else f"<li>{text}</li>")
    body.append("</ul>")
    if ctx.split_notes:
        body += ["<h2>Studies split over several volumes</h2>", "<ul>"]
        body += [f"<li>{e(n)}</li>" for n in ctx.split_notes]
        body.append("</ul>")
    for number, study_lines in ctx.other_volumes():
        body += [f"<h2>On volume {number} of {ctx.count}</h2>", "<ul>"]
        body += [f"<li>{e(line)}</li>" for line in study_lines]
        body.append("</ul>")
    body += ["<h2>How to view</h2>",
             "<p>Open the file DICOMDIR at the root of this medium with a DICOM viewer.</p>"]
    if ctx.viewer:
        body.append(f"<p>A DICOM viewer is provided in the folder {e(ctx.viewer)}.</p>")
    if ctx.web:
        body.append("<p>The images shown in these pages are JPEG renderings, not for "
                    "diagnosis.</p>")
    return xhtml_page(title, body)


def write_root_files(root: Path, vol: VolumeInfo, site: SiteInfo, ctx: VolumeContext,
                     web_links: dict[str, str] | None = None) -> list[Path]:
    """Write README.TXT and INDEX.HTM at the root of a volume; return their paths."""
    readme = root / "README.TXT"
    index = root / "INDEX.HTM"
    try:
        write_atomic(readme, readme_text(vol, site, ctx).encode("utf-8"))
        write_atomic(index, index_htm(vol, site, ctx, web_links).encode("utf-8"))
    except OSError as exc:
        raise MediaError(f"{root}: cannot write README.TXT/INDEX.HTM: {exc.strerror}") from exc
    return [readme, index]

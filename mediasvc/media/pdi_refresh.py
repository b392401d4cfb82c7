"""Refresh the IHE PDI content of a volume after `fileset add/remove/compact`.

README.TXT, INDEX.HTM and IHE_PDI/ say what the volume holds (IHE RAD TF-1 PDI); once the
File-set Updater has changed the DICOMDIR they are out of date. Only what mediasvc wrote
itself is rewritten: a README.TXT is ours when it carries the line ``  Application: mediasvc``
(pdi.readme_text writes it), an INDEX.HTM when it says ``application: mediasvc``; IHE_PDI/ is
rewritten only beside a README or INDEX of ours. Anything else (a third party's README, a
vendor's INDEX) is left alone and the report says so, since its words are not ours to change.

What the old README said that the DICOMDIR cannot tell (institution and contact, "volume k of
n", what the other volumes hold, the split studies, the viewer folder) is read back from it
and written again; the content list is read from the DICOMDIR as it is now.

Writes: README.TXT and INDEX.HTM by durable.atomic_write (temp + fsync + rename). IHE_PDI/ is
built complete in .IHE_PDI.new, synced, then swapped in by two renames (old -> .IHE_PDI.old,
new -> IHE_PDI); a crash between them is finished by the next refresh (``_recover_web``).
"""

from __future__ import annotations

import html
import logging
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from mediasvc.durable import atomic_write, fsync_dir, syncfs
from mediasvc.errors import MediaError
from mediasvc.media.pdi import (
    APPLICATION,
    SiteInfo,
    VolumeContext,
    VolumeInfo,
    index_htm,
    read_volume,
    readme_text,
)
from mediasvc.media.web import WEB_DIR, write_web_content

log = logging.getLogger(__name__)

README, INDEX = "README.TXT", "INDEX.HTM"
NEW_WEB, OLD_WEB = f".{WEB_DIR}.new", f".{WEB_DIR}.old"
README_MARKER = re.compile(rf"^  Application: {APPLICATION}\b", re.MULTILINE)
INDEX_MARKER = f"application: {APPLICATION}"
_NOT_CONFIGURED = "(not configured)"


@dataclass
class RefreshReport:
    written: list[str] = field(default_factory=list)  # names relative to the volume root
    left_alone: list[str] = field(default_factory=list)  # why, one line per file

    def lines(self) -> list[str]:
        out = [f"refreshed {', '.join(self.written)}"] if self.written else []
        return out + self.left_alone


@dataclass
class _Said:
    """What an old README of ours said beyond the content list."""

    site: SiteInfo = SiteInfo()
    number: int = 1
    count: int = 1
    split_notes: list[str] = field(default_factory=list)
    others: dict[int, list[str]] = field(default_factory=dict)
    viewer: str | None = None


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise MediaError(f"{path}: cannot read: {exc.strerror}") from exc


def parse_readme(text: str) -> _Said:
    """The facts of a README.TXT written by pdi.readme_text, other than the content list."""
    said = _Said()
    institution = contact = ""
    section: list[str] | None = None
    for line in text.splitlines():
        if m := re.fullmatch(r"It is volume (\d+) of (\d+) of a set\.", line):
            said.number, said.count = int(m.group(1)), int(m.group(2))
        elif m := re.fullmatch(r"  Institution: (.*)", line):
            institution = m.group(1).strip()
        elif m := re.fullmatch(r"  Contact: +(.*)", line):
            contact = m.group(1).strip()
        elif line.startswith("Studies split over several volumes"):
            section = said.split_notes
            continue
        elif m := re.fullmatch(r"On volume (\d+) of \d+:", line):
            section = said.others.setdefault(int(m.group(1)), [])
            continue
        elif m := re.fullmatch(r"  - A DICOM viewer is provided in the folder (\S+) .*", line):
            said.viewer = m.group(1)
        if section is not None:
            if line.startswith("  - "):
                section.append(line[4:])
            else:
                section = None
    said.site = SiteInfo("" if institution == _NOT_CONFIGURED else institution,
                         "" if contact == _NOT_CONFIGURED else contact)
    return said


def parse_index(text: str) -> _Said:
    """The facts of an INDEX.HTM written by pdi.index_htm (used when README.TXT is not ours)."""
    said = _Said()
    if m := re.search(r"<title>[^<]*\(volume (\d+) of (\d+)\)</title>", text):
        said.number, said.count = int(m.group(1)), int(m.group(2))
    if m := re.search(r"<p>Created by (.*?); contact: (.*?); application:", text):
        institution, contact = (html.unescape(g).strip() for g in m.groups())
        said.site = SiteInfo("" if institution == "(institution not configured)" else institution,
                             "" if contact == _NOT_CONFIGURED else contact)
    return said


def _recover_web(root: Path) -> None:
    """Finish or undo a swap of IHE_PDI/ that a crash interrupted; drop a half-built one."""
    web, new, old = root / WEB_DIR, root / NEW_WEB, root / OLD_WEB
    if old.exists():
        if not web.exists():
            # The old content was moved aside only once the new was complete.
            os.replace(new if new.exists() else old, web)
        shutil.rmtree(old, ignore_errors=True)
    if new.exists():
        shutil.rmtree(new, ignore_errors=True)
    fsync_dir(root)


def _sync_tree(folder: Path) -> None:
    """Make the files of a new folder durable: PIL writes the JPEGs without fsync."""
    if syncfs(folder):
        return
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def _swap_web(root: Path, vol: VolumeInfo) -> dict[str, str]:
    """Build IHE_PDI/ anew beside the old one and swap it in; the new study page links."""
    web, new, old = root / WEB_DIR, root / NEW_WEB, root / OLD_WEB
    new.mkdir()
    result = write_web_content(root, vol, into=new)
    _sync_tree(new)
    fsync_dir(root)
    os.replace(web, old)
    os.replace(new, web)
    fsync_dir(root)
    shutil.rmtree(old, ignore_errors=True)
    return result.study_pages


def refresh_volume(media: Path) -> RefreshReport:
    """Rewrite README.TXT, INDEX.HTM and IHE_PDI/ of the volume at MEDIA (a folder or its
    DICOMDIR) from its DICOMDIR, where mediasvc wrote them."""
    root = media.parent if media.is_file() else media
    report = RefreshReport()
    readme_old = _read_text(root / README)
    index_old = _read_text(root / INDEX)
    ours_readme = readme_old is not None and bool(README_MARKER.search(readme_old))
    ours_index = index_old is not None and INDEX_MARKER in index_old
    for name, text, ours in ((README, readme_old, ours_readme), (INDEX, index_old, ours_index)):
        if text is not None and not ours:
            report.left_alone.append(f"{name} was not written by {APPLICATION}: left alone "
                                     "(it may not list what the DICOMDIR now holds)")
    if not (ours_readme or ours_index):
        if (root / WEB_DIR).is_dir():
            report.left_alone.append(f"{WEB_DIR}/ was not written by {APPLICATION}: left "
                                     "alone")
        return report
    try:
        _recover_web(root)
        vol = read_volume(root)
        if ours_readme and readme_old is not None:
            said = parse_readme(readme_old)
        else:
            said = parse_index(index_old or "")
        links: dict[str, str] | None = None
        web = (root / WEB_DIR).is_dir()
        if web:
            links = _swap_web(root, vol)
            report.written.append(f"{WEB_DIR}/")
        ctx = VolumeContext(said.number, said.count, (), tuple(said.split_notes), web,
                            said.viewer,
                            tuple((n, tuple(lines)) for n, lines in said.others.items()))
        if ours_readme:
            atomic_write(root / README, readme_text(vol, said.site, ctx).encode("utf-8"))
            report.written.append(README)
        if ours_index:
            atomic_write(root / INDEX, index_htm(vol, said.site, ctx, links).encode("utf-8"))
            report.written.append(INDEX)
    except OSError as exc:
        raise MediaError(f"{root}: cannot refresh the IHE PDI content: {exc}") from exc
    log.info("%s: %s", root, "; ".join(report.lines()))
    return report

"""File IDs (PS3.10 section 8.2, PS3.12 Annex F for ISO 9660 media).

A File ID is at most 8 components, each 1 to 8 characters of upper-case A-Z, digits 0-9 and
underscore; it is stored in Referenced File ID (0004,1500) with backslash-separated values.

Reading is tolerant (lowercase, dotted names, ISO ";1" version suffixes are found), but never
unsafe: a File ID that is absolute, contains ``..``, or resolves (through a symlink) outside
the media root is refused and its target is never opened (pydicom CVE-2026-32711, Weasis#911).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from mediasvc.errors import UnsafePathError

MAX_COMPONENTS = 8
MAX_LENGTH = 8
_COMPONENT_RE = re.compile(r"[A-Z0-9_]{1,8}")


def split_file_id(value: object) -> tuple[str, ...]:
    """Referenced File ID as stored (pydicom MultiValue, list or one string) -> components."""
    if value is None:
        return ()
    if isinstance(value, str):
        parts: list[str] = re.split(r"[\\/]", value)
    elif isinstance(value, Iterable):
        parts = [str(v) for v in value]
    else:
        parts = [str(value)]
    parts = [p.strip() for p in parts]
    comps = [p for p in parts if p != ""]
    if comps and parts[0] == "":
        # A leading separator ("\\ETC\\PASSWD", "/etc/passwd") makes the File ID absolute;
        # keep that visible so that resolve_file_id refuses it instead of re-rooting it.
        comps[0] = "\\" + comps[0]
    return tuple(comps)


def conformance_problem(components: Sequence[str]) -> str | None:
    """Why a File ID breaks PS3.10 8.2, or None when it is conformant."""
    if not components:
        return "empty File ID"
    if len(components) > MAX_COMPONENTS:
        return f"{len(components)} components (at most {MAX_COMPONENTS})"
    for comp in components:
        if not _COMPONENT_RE.fullmatch(comp):
            return (f"component '{comp}' is not 1-{MAX_LENGTH} characters of A-Z, 0-9 and _")
    return None


def _unsafe_reason(components: Sequence[str]) -> str | None:
    for comp in components:
        if comp in ("..", ".") or comp.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", comp):
            return f"component '{comp}' would leave the media root"
        if "/" in comp or "\\" in comp:  # "A/../../X" in one value would be a path
            return f"component '{comp}' contains a path separator"
        if "\x00" in comp:
            return "NUL character in File ID"
    return None


def _show(components: Sequence[str]) -> str:
    return "\\".join(components)


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def resolve_file_id(root: Path, components: Sequence[str],
                    listings: dict[str, dict[str, str]] | None = None) -> Path:
    """The path of a File ID under ``root``, found tolerantly; never outside ``root``.

    Raises UnsafePathError when the File ID is absolute, has ``..`` or resolves outside the
    root through a symlink, and FileNotFoundError when no such file exists. Matching tolerates
    case differences and ISO 9660 decorations (``NAME.;1``, ``NAME;1``, ``NAME.``).
    ``listings``: a cache (directory -> normalised name -> name) shared over many calls, so that
    resolving N lowercase names in one folder (an ISO 9660 disc mounted without Rock Ridge
    shows lowercase names) lists the folder once instead of N times.
    """
    reason = _unsafe_reason(components)
    if reason:
        raise UnsafePathError(f"Referenced File ID '{_show(components)}': {reason}")
    if not components:
        raise FileNotFoundError("empty File ID")
    current = Path(root)
    linked = False
    for comp in components:
        current = _find_entry(current, comp, listings)
        # Only a symlink can lead out (".." was refused above), and a plain entry in a folder
        # known to be inside stays inside: one lstat per component, realpath only for links
        # (two realpaths per file were a third of the time a 2,000-file DICOMDIR took).
        if os.path.islink(current):
            linked = True
            if not _within(os.path.realpath(current), os.path.realpath(root)):
                raise _outside(components)
    if linked and not _within(os.path.realpath(current), os.path.realpath(root)):
        raise _outside(components)   # belt and braces: a link to a link
    return current


def _outside(components: Sequence[str]) -> UnsafePathError:
    return UnsafePathError(f"Referenced File ID '{_show(components)}' resolves outside the "
                           "media root (symlink); not opened")


def _find_entry(directory: Path, name: str,
                listings: dict[str, dict[str, str]] | None = None) -> Path:
    exact = directory / name
    if os.path.lexists(exact):
        return exact
    wanted = _normalise(name)
    listing = None if listings is None else listings.get(str(directory))
    if listing is None:
        listing = {}
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    listing.setdefault(_normalise(entry.name), entry.name)
        except (NotADirectoryError, FileNotFoundError):
            pass
        if listings is not None:
            listings[str(directory)] = listing
    found = listing.get(wanted)
    if found is not None:
        return directory / found
    raise FileNotFoundError(str(exact))


def _normalise(name: str) -> str:
    name = name.upper()
    name = re.sub(r";\d+$", "", name)
    return name.rstrip(".")


class FileIdAllocator:
    """Conformant names for new files: DICOM/PA000001/ST000001/SE000001/IM000001.

    One directory per patient, study and series keeps every directory small (readers and ISO
    9660 cope badly with thousands of entries) and lets an Updater append without renaming:
    it continues after the highest number already used at each level.
    """

    def __init__(self, used: Iterable[Sequence[str]] = ()) -> None:
        self._children: dict[tuple[str, ...], int] = {}
        self._assigned: dict[tuple[str, ...], tuple[str, ...]] = {}
        for comps in used:
            self._note_used(tuple(comps))

    def _note_used(self, comps: tuple[str, ...]) -> None:
        for depth in range(1, len(comps)):
            parent, name = comps[:depth], comps[depth]
            m = re.fullmatch(r"[A-Z]{2}(\d{6})", name.upper())
            if m:
                self._children[parent] = max(self._children.get(parent, 0), int(m.group(1)))

    def _next(self, parent: tuple[str, ...], prefix: str) -> tuple[str, ...]:
        n = self._children.get(parent, 0) + 1
        if n > 999_999:
            raise ValueError(f"more than 999999 entries under {'/'.join(parent)}")
        self._children[parent] = n
        return (*parent, f"{prefix}{n:06d}")

    def directory(self, key: tuple[str, ...], parent: tuple[str, ...], prefix: str,
                  existing: tuple[str, ...] | None = None) -> tuple[str, ...]:
        """The folder for an entity ``key`` (e.g. (patient,) or (patient, study)); stable."""
        if key not in self._assigned:
            self._assigned[key] = existing if existing is not None else self._next(parent, prefix)
        return self._assigned[key]

    def file(self, series_dir: tuple[str, ...]) -> tuple[str, ...]:
        return self._next(series_dir, "IM")

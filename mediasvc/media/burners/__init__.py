"""Burn targets: where a staged volume goes. ``parse_target("KIND:WHERE")`` picks the backend.

    iso:PATH        an ISO 9660 image file (burners/image.py)
    drive:/dev/srN  an optical drive, through xorriso (burners/drive.py)
    folder:PATH     a USB stick or a share: copy, fsync, verify (burners/folder.py)
    ptburn:FOLDER   a Primera disc publisher's PTBurn job folder (burners/ptburn.py)
    epson:FOLDER    an Epson disc producer's TD Bridge job folder (burners/epson.py)

Each backend takes a ``BurnJob`` (one volume, N copies) and returns one ``CopyResult`` per
copy, or raises BurnError/VerifyError/CapacityError having left the staging tree untouched: the
same job can be run again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from mediasvc.errors import UsageError


@dataclass(frozen=True)
class BurnJob:
    staging: Path  # one volume root
    copies: int = 1
    verify: bool = False
    number: int = 1  # volume k ...
    count: int = 1  # ... of n
    label: dict[str, str] = field(default_factory=dict)  # escaped merge fields (labels.py)
    label_template: str = ""
    timeout: float | None = None
    # Who burns this volume, for a publisher's claim (publisher.py): a burn cut off and run
    # again under the same claim adopts or withdraws the job file it left. "" = the staging.
    claim: str = ""


@dataclass
class CopyResult:
    copy: int
    target: str
    status: str  # "done" | "failed"
    verified: bool | None = None  # None: not verified
    verify_method: str = ""
    detail: str = ""
    files: int = 0
    bytes: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backend(Protocol):
    kind: str

    def describe(self) -> str: ...

    def burn(self, job: BurnJob) -> list[CopyResult]: ...


KINDS = ("iso", "drive", "folder", "ptburn", "epson")


def parse_target(spec: str) -> Backend:
    """'KIND:WHERE' -> a backend; UsageError naming the known kinds otherwise."""
    kind, sep, where = spec.partition(":")
    if not sep or not where or kind not in KINDS:
        raise UsageError(f"target {spec!r}: expected KIND:WHERE with KIND one of "
                         f"{', '.join(KINDS)} (e.g. iso:/tmp/out.iso, drive:/dev/sr0)")
    if kind == "iso":
        from mediasvc.media.burners.image import IsoBackend
        return IsoBackend(Path(where))
    if kind == "drive":
        from mediasvc.media.burners.drive import DriveBackend
        return DriveBackend(where)
    if kind == "folder":
        from mediasvc.media.burners.folder import FolderBackend
        return FolderBackend(Path(where))
    if kind == "ptburn":
        from mediasvc.media.burners.ptburn import PTBurnBackend
        return PTBurnBackend(Path(where))
    from mediasvc.media.burners.epson import EpsonBackend
    return EpsonBackend(Path(where))

"""`mediasvc burn`: every volume of a staging tree to a target, N copies, with read-back.

The staging tree is only read: whatever fails (target not writable or too small, xorriso
failing, a publisher error or timeout), the same command can be run again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mediasvc.errors import UsageError
from mediasvc.media.burners import Backend, BurnJob, CopyResult
from mediasvc.media.iso import fileset_id_of
from mediasvc.media.labels import LabelSettings, label_fields, load_label_settings
from mediasvc.media.pdi import SiteInfo, read_volume
from mediasvc.media.staging import has_web_content, volumes_of

log = logging.getLogger(__name__)


@dataclass
class BurnReport:
    target: str
    volumes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def copies(self) -> list[CopyResult]:
        return [c for v in self.volumes for c in v["copies"]]

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target,
                "volumes": [{**v, "copies": [c.as_dict() for c in v["copies"]]}
                            for v in self.volumes]}


def burn(staging: Path, backend: Backend, *, copies: int = 1, verify: bool = False,
         label_file: Path | None = None, site: SiteInfo | None = None,
         timeout: float | None = None, claim: str = "", skip: Collection[int] = (),
         on_volume: Callable[[dict[str, Any]], None] | None = None) -> BurnReport:
    """Burn every volume; ``skip``: volume numbers already burned (a redo of the service's
    job), ``on_volume``: told each volume's entry (as in BurnReport.as_dict) once burned.
    ``claim``: who burns (the service's job); a publisher adopts or withdraws the job file
    an earlier, cut off burn of the same claim left (burners/publisher.py)."""
    if copies < 1:
        raise UsageError(f"--copies {copies}: must be at least 1")
    volumes = volumes_of(staging)
    settings = load_label_settings(label_file) if label_file else LabelSettings()
    site = site or SiteInfo()
    report = BurnReport(backend.describe())
    for number, root in enumerate(volumes, start=1):
        if number in skip:
            continue
        missing = [n for n in ("README.TXT", "INDEX.HTM") if not (root / n).is_file()]
        if missing:
            log.warning("%s: no %s at the root (IHE PDI asks for both); burning anyway",
                        root, " and no ".join(missing))
        label: dict[str, str] = {}
        if getattr(backend, "prints_labels", False):
            # Only a publisher prints labels; the others need not parse the whole DICOMDIR.
            info = read_volume(root)
            label = label_fields(info, site, web=has_web_content(root), number=number,
                                 count=len(volumes), settings=settings)
        job = BurnJob(root, copies=copies, verify=verify, number=number, count=len(volumes),
                      label=label, label_template=settings.template, timeout=timeout,
                      claim=f"{claim}:volume{number}" if claim else "")
        log.info("burning volume %d of %d (%s) to %s", number, len(volumes), root,
                 backend.describe())
        results = backend.burn(job)
        entry = {"volume": number, "staging": str(root), "fileset_id": fileset_id_of(root),
                 "copies": results}
        report.volumes.append(entry)
        if on_volume is not None:
            on_volume({**entry, "copies": [c.as_dict() for c in results]})
    return report

"""Patient identity reconciliation on import (IHE RAD Import Reconciliation Workflow).

Media from another institution carry that institution's patient ID. On import the local
identity is coerced onto the instances: Patient ID (0010,0020), and where given Patient's Name
(0010,0010) and Issuer of Patient ID (0010,0021). The values they replace are kept in the
Original Attributes Sequence (0400,0561) as PS3.3 C.12.1 (SOP Common Module) asks: one item
with Modified Attributes Sequence (0400,0550) holding the prior values, Attribute Modification
DateTime (0400,0562), Modifying System (0400,0563), Source of Previous Values (0400,0564) and
Reason for the Attribute Modification (0400,0565) = COERCE (the defined term for values
replaced on import / reconciliation). SOP Instance, Series and Study Instance UIDs are never
changed: the images stay the same images.

The identity comes either from the command line (one patient for the whole medium) or from a
mapping file, old Patient ID -> new ID/name/issuer, as TOML::

    [[patient]]
    old_id = "EXT123"
    new_id = "LOC-0042"
    name = "DOE^JANE"      # optional
    issuer = "HOSP-A"      # optional

or CSV with a header ``old_id,new_id[,name][,issuer]``.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from mediasvc.config import load_toml
from mediasvc.errors import NO_VALUE, ConfigError

MODIFYING_SYSTEM = "MEDIASVC"
REASON = "COERCE"  # PS3.3 C.12.1.1.9.2 defined term for import reconciliation


@dataclass(frozen=True)
class Identity:
    """The local identity to coerce; None fields are left as they are on the medium."""

    patient_id: str
    patient_name: str | None = None
    issuer: str | None = None


class Reconciler:
    """Decides the identity for each instance and rewrites it with the audit trail."""

    def __init__(self, fixed: Identity | None = None,
                 mapping: dict[str, Identity] | None = None) -> None:
        self.fixed = fixed
        self.mapping = mapping or {}

    @property
    def active(self) -> bool:
        return self.fixed is not None or bool(self.mapping)

    def identity_for(self, ds: Dataset) -> Identity | None:
        if self.fixed is not None:
            return self.fixed
        return self.mapping.get(str(ds.get("PatientID", "") or ""))

    def apply(self, ds: Dataset, source: str = "") -> list[str]:
        """Coerce ``ds`` in place; return the keywords changed (empty: nothing to do)."""
        ident = self.identity_for(ds)
        if ident is None:
            return []
        wanted: dict[str, str] = {"PatientID": ident.patient_id}
        if ident.patient_name is not None:
            wanted["PatientName"] = ident.patient_name
        if ident.issuer is not None:
            wanted["IssuerOfPatientID"] = ident.issuer
        changed = [kw for kw, value in wanted.items() if str(ds.get(kw, "") or "") != value]
        if not changed:
            return []
        prior = Dataset()
        for kw in changed:
            # The prior value, or empty when the attribute was absent (C.12.1.1.9.1: the item
            # holds the attributes as they were before modification, empty if they were absent).
            setattr(prior, kw, ds[kw].value if kw in ds else "")
        item = Dataset()
        item.ModifiedAttributesSequence = Sequence([prior])
        item.AttributeModificationDateTime = dt.datetime.now().strftime("%Y%m%d%H%M%S")
        item.ModifyingSystem = MODIFYING_SYSTEM
        item.SourceOfPreviousValues = source
        item.ReasonForTheAttributeModification = REASON
        if "OriginalAttributesSequence" not in ds:
            ds.OriginalAttributesSequence = Sequence()
        ds.OriginalAttributesSequence.append(item)
        for kw in changed:
            setattr(ds, kw, wanted[kw])
        return changed


def load_mapping(path: Path) -> dict[str, Identity]:
    """Read a TOML or CSV mapping file (see module doc); errors name file, row/key, value."""
    if path.suffix.lower() == ".csv":
        return _load_csv(path)
    root = load_toml(path)
    root.check_keys(["patient"])
    out: dict[str, Identity] = {}
    for entry in root.tables("patient"):
        entry.check_keys(["old_id", "new_id", "name", "issuer"])
        old = entry.str("old_id")
        if old in out:
            raise entry.error("old_id", "mapped twice")
        out[old] = Identity(entry.str("new_id"), entry.str("name", None),
                            entry.str("issuer", None))
    if not out:
        raise ConfigError(path, "patient", NO_VALUE, "no [[patient]] entries")
    return out


def _load_csv(path: Path) -> dict[str, Identity]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(path, "", NO_VALUE, f"cannot read: {exc}") from exc
    out: dict[str, Identity] = {}
    for n, row in enumerate(rows, start=2):
        old, new = (row.get("old_id") or "").strip(), (row.get("new_id") or "").strip()
        if not old or not new:
            raise ConfigError(path, f"line {n}", dict(row), "needs old_id and new_id")
        if old in out:
            raise ConfigError(path, f"line {n}", old, "old_id mapped twice")
        out[old] = Identity(new, _opt(row, "name"), _opt(row, "issuer"))
    if not out:
        raise ConfigError(path, "", NO_VALUE, "no rows (header old_id,new_id[,name][,issuer])")
    return out


def _opt(row: dict[str, Any], key: str) -> str | None:
    value = (row.get(key) or "").strip()
    return value or None

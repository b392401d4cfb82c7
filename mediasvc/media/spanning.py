"""Spanning planner: which instances go on which volume when the content exceeds one medium.

A pure function over (study, series, instance, size) items. The rules (issue 3, after IHE PDI
and PS3.12 which say nothing about spanning beyond "each volume is a complete file-set"):

1. a study that fits on one volume is never split: recipients open one disc per study;
2. a study too large for one volume is split by series (each series whole on one volume);
3. a series too large for one volume is split by instance;
and every split is reported (``Plan.splits``) so the README of each volume can say so.

Sizes are counted as they land on an ISO 9660 medium: each file occupies whole 2 KiB logical
blocks (ECMA-119 section 6.1.2), plus an allowance per instance for its DICOMDIR directory
record and its ISO directory entry, plus a fixed reserve per volume for the volume
descriptors, path tables, README.TXT, INDEX.HTM and the upper levels of the DICOMDIR.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mediasvc.errors import CapacityError

BLOCK = 2048
# Directory record of an IMAGE (~250-500 bytes with keys) + an ISO 9660 directory entry (~40).
PER_INSTANCE_OVERHEAD = 1024
# System area (32 KiB) + volume descriptors + path tables + directory extents + README.TXT and
# INDEX.HTM + the PATIENT/STUDY/SERIES records: well under this for hundreds of studies.
VOLUME_RESERVE = 256 * 1024


def blocks(size: int) -> int:
    """Bytes a file of ``size`` occupies on an ISO 9660 medium (whole 2 KiB blocks)."""
    return -(-size // BLOCK) * BLOCK


@dataclass(frozen=True)
class Item:
    """One instance to place. ``ref`` is the caller's object (e.g. a SourceInstance)."""

    study_uid: str
    series_uid: str
    sop_instance_uid: str
    size: int
    ref: Any = None

    @property
    def cost(self) -> int:
        return blocks(self.size) + PER_INSTANCE_OVERHEAD


@dataclass
class Volume:
    number: int  # 1-based
    items: list[Item] = field(default_factory=list)
    used: int = 0

    def add(self, items: Iterable[Item]) -> None:
        for item in items:
            self.items.append(item)
            self.used += item.cost

    @property
    def study_uids(self) -> list[str]:
        return list(dict.fromkeys(i.study_uid for i in self.items))


@dataclass(frozen=True)
class Split:
    """A study that could not stay on one volume: how it was split and where it went."""

    study_uid: str
    by: str  # "series" or "instance"
    volumes: tuple[int, ...]

    def describe(self) -> str:
        vols = ", ".join(str(v) for v in self.volumes)
        return (f"study {self.study_uid} is larger than one volume: split by {self.by} "
                f"over volumes {vols}")


@dataclass
class Plan:
    capacity: int
    usable: int
    volumes: list[Volume]
    splits: list[Split]

    def volume_of(self) -> dict[str, list[int]]:
        """Study UID -> the volume numbers holding part of it."""
        where: dict[str, list[int]] = {}
        for vol in self.volumes:
            for uid in vol.study_uids:
                where.setdefault(uid, []).append(vol.number)
        return where


def _group(items: Sequence[Item]) -> dict[str, dict[str, list[Item]]]:
    studies: dict[str, dict[str, list[Item]]] = {}
    for item in items:
        studies.setdefault(item.study_uid, {}).setdefault(item.series_uid, []).append(item)
    return studies


def plan_volumes(items: Sequence[Item], capacity: int, *,
                 reserve: int = VOLUME_RESERVE) -> Plan:
    """Place every item on exactly one volume of ``capacity`` bytes; see the module docstring.

    Whole studies are packed first-fit decreasing (few volumes, deterministic); the parts of
    oversized studies are placed first, in series order on consecutive volumes, so that a
    split study reads from consecutive discs.
    """
    usable = capacity - reserve
    if usable <= 0:
        raise CapacityError(f"capacity {capacity} bytes leaves no room after the reserve of "
                            f"{reserve} bytes for DICOMDIR, README.TXT and INDEX.HTM")
    seen: set[str] = set()
    for item in items:
        if item.sop_instance_uid in seen:
            raise CapacityError(f"instance {item.sop_instance_uid} given twice to the planner")
        seen.add(item.sop_instance_uid)
        if item.cost > usable:
            raise CapacityError(
                f"instance {item.sop_instance_uid} ({item.size} bytes) is larger than one "
                f"volume ({usable} usable bytes of {capacity})")
    studies = _group(items)
    volumes: list[Volume] = []
    splits: list[Split] = []

    def new_volume() -> Volume:
        vol = Volume(len(volumes) + 1)
        volumes.append(vol)
        return vol

    whole: list[tuple[str, list[Item], int]] = []
    for study_uid, series in studies.items():
        flat = [i for s in series.values() for i in s]
        cost = sum(i.cost for i in flat)
        if cost <= usable:
            whole.append((study_uid, flat, cost))
            continue
        # Too big for one volume: whole series where they fit, else instance by instance.
        by = "series"
        units: list[list[Item]] = []
        for s_items in series.values():
            if sum(i.cost for i in s_items) <= usable:
                units.append(s_items)
            else:
                by = "instance"
                units.extend([i] for i in s_items)
        current = new_volume()
        used_by_study = [current.number]
        for unit in units:
            unit_cost = sum(i.cost for i in unit)
            if current.used + unit_cost > usable:
                current = new_volume()
                used_by_study.append(current.number)
            current.add(unit)
        splits.append(Split(study_uid, by, tuple(used_by_study)))

    # First-fit decreasing for whole studies; ties keep input order (sort is stable).
    for _uid, flat, cost in sorted(whole, key=lambda w: -w[2]):
        target = next((v for v in volumes if v.used + cost <= usable), None)
        (target or new_volume()).add(flat)
    if not volumes:
        new_volume()
    return Plan(capacity=capacity, usable=usable, volumes=volumes, splits=splits)

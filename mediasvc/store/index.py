"""The local store: content-addressed files (files.py) indexed in SQLite (WAL).

Tables: patients, studies, series, instances (with origin, checksum and the extracted minimum
data set as JSON), imports (one row per import run), forwards (C-STORE state per instance and
destination, so that a PACS that was down can be retried).

Consistency rule: no row without its file, no file without its row, at any kill moment.
- Files are written and fsynced before the rows that name them are committed (files.py).
- A writer holds an exclusive lock (``lock`` file, flock) and sets ``meta.dirty`` before it
  writes its first file; a clean finish clears it. A store found dirty on the next write (the
  writer was killed) is recovered: ``tmp/`` emptied, files under ``objects/`` without a row
  deleted (they were never committed, the import that wrote them will write them again), rows
  without a file dropped and reported. Readers never need the lock (WAL).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mediasvc.errors import StoreError
from mediasvc.store import files

log = logging.getLogger(__name__)

DEFAULT_ROOT = Path("var/store")
INDEX = "index.sqlite"
LOCK = "lock"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS patients(
    id INTEGER PRIMARY KEY,
    patient_id TEXT NOT NULL,
    issuer TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    birth_date TEXT NOT NULL DEFAULT '',
    sex TEXT NOT NULL DEFAULT '',
    UNIQUE(patient_id, issuer));
CREATE TABLE IF NOT EXISTS studies(
    study_uid TEXT PRIMARY KEY,
    patient INTEGER NOT NULL REFERENCES patients(id),
    study_date TEXT NOT NULL DEFAULT '',
    study_time TEXT NOT NULL DEFAULT '',
    accession_number TEXT NOT NULL DEFAULT '',
    study_id TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS series(
    series_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL REFERENCES studies(study_uid),
    modality TEXT NOT NULL DEFAULT '',
    number INTEGER,
    description TEXT NOT NULL DEFAULT '',
    body_part TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS imports(
    id INTEGER PRIMARY KEY,
    started TEXT NOT NULL,
    finished TEXT,
    media TEXT NOT NULL,
    medium_label TEXT NOT NULL DEFAULT '',
    fileset_id TEXT NOT NULL DEFAULT '',
    method TEXT NOT NULL DEFAULT '',
    complete INTEGER,
    summary TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS instances(
    id INTEGER PRIMARY KEY,
    sop_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL DEFAULT '',
    series_uid TEXT NOT NULL REFERENCES series(series_uid),
    number INTEGER,
    transfer_syntax TEXT NOT NULL DEFAULT '',
    path TEXT NOT NULL UNIQUE,
    checksum TEXT NOT NULL,
    source_checksum TEXT NOT NULL,
    size INTEGER NOT NULL,
    conflict INTEGER NOT NULL DEFAULT 0,
    import_id INTEGER REFERENCES imports(id),
    medium_label TEXT NOT NULL DEFAULT '',
    fileset_id TEXT NOT NULL DEFAULT '',
    volume TEXT NOT NULL DEFAULT '',
    source_path TEXT NOT NULL DEFAULT '',
    imported_at TEXT NOT NULL,
    mds TEXT NOT NULL DEFAULT '{}',
    UNIQUE(sop_uid, checksum));
CREATE INDEX IF NOT EXISTS instances_sop ON instances(sop_uid);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid);
CREATE INDEX IF NOT EXISTS series_study ON series(study_uid);
-- Searches of the web console (by patient, date, accession number), newest first.
CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient);
CREATE INDEX IF NOT EXISTS studies_date ON studies(study_date);
CREATE INDEX IF NOT EXISTS studies_accession ON studies(accession_number);
CREATE TABLE IF NOT EXISTS forwards(
    instance INTEGER NOT NULL REFERENCES instances(id) ON DELETE CASCADE,
    destination TEXT NOT NULL,
    state TEXT NOT NULL CHECK(state IN ('pending', 'sent', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    updated TEXT NOT NULL,
    PRIMARY KEY(instance, destination));
"""


def _like(text: str) -> str:
    """``text`` as a literal inside a LIKE pattern (ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


# -- rows ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Origin:
    """Where an instance came from: the medium (label, file-set ID, volume) and the file on it."""

    medium_label: str
    fileset_id: str
    volume: str
    source_path: str
    imported_at: str
    import_id: int | None = None


@dataclass(frozen=True)
class StudyRow:
    study_uid: str
    patient_id: str
    patient_name: str
    issuer: str
    birth_date: str
    sex: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    description: str
    n_series: int
    n_instances: int
    modalities: tuple[str, ...]


@dataclass(frozen=True)
class SeriesRow:
    series_uid: str
    study_uid: str
    modality: str
    number: int | None
    description: str
    body_part: str
    n_instances: int


@dataclass(frozen=True)
class InstanceRow:
    id: int
    sop_uid: str
    sop_class_uid: str
    series_uid: str
    study_uid: str
    number: int | None
    transfer_syntax: str
    path: Path
    checksum: str
    size: int
    conflict: bool
    origin: Origin
    mds: dict[str, Any] = field(default_factory=dict)


@dataclass
class NewInstance:
    """What the importer hands to :meth:`Store.add`: header values, stored file and origin."""

    patient_id: str
    issuer: str
    patient_name: str
    birth_date: str
    sex: str
    study_uid: str
    study_date: str
    study_time: str
    accession_number: str
    study_id: str
    study_description: str
    series_uid: str
    modality: str
    series_number: int | None
    series_description: str
    body_part: str
    sop_uid: str
    sop_class_uid: str
    instance_number: int | None
    transfer_syntax: str
    relpath: str
    checksum: str
    source_checksum: str
    size: int
    source_path: str
    mds: dict[str, Any]


@dataclass
class Recovery:
    """What recovery found after an interrupted writer."""

    tmp_removed: int = 0
    orphan_files_removed: list[str] = field(default_factory=list)
    rows_without_file: list[str] = field(default_factory=list)


# -- the store -------------------------------------------------------------------------------

class Store:
    """Files under ``root`` and their SQLite index ``root/index.sqlite``."""

    def __init__(self, root: Path, db: sqlite3.Connection) -> None:
        self.root = root
        self.db = db
        self.last_recovery = Recovery()
        self._lock_fd: int | None = None

    @classmethod
    def open(cls, root: Path) -> Store:
        """Open (creating if needed) the store at ``root``; recover it if a writer was killed."""
        root = Path(root).absolute()
        try:
            root.mkdir(parents=True, exist_ok=True)
            files.prepare(root)
            db = sqlite3.connect(root / INDEX, isolation_level=None, timeout=30.0)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed row survives a power cut too; commits are batched so it is cheap.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{root}: cannot open the store: {exc}") from exc
        store = cls(root, db)
        # Recover now if no writer is at work (a reader must not delete a writer's fresh files).
        if store._try_lock():
            try:
                store._recover_if_dirty()
            finally:
                store._unlock()
        return store

    @classmethod
    def open_readonly(cls, root: Path) -> Store:
        """Read the index of an existing store without ever writing (no schema, no recovery):
        for readers in other processes, such as the web console."""
        path = Path(root).absolute() / INDEX
        if not path.is_file():
            raise StoreError(f"{root}: no store here (nothing imported yet)")
        try:
            db = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, timeout=30.0)
            db.row_factory = sqlite3.Row
        except sqlite3.Error as exc:
            raise StoreError(f"{root}: cannot open the store: {exc}") from exc
        return cls(Path(root).absolute(), db)

    def close(self) -> None:
        self._unlock()
        self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- locking and recovery ----------------------------------------------------------------
    def _try_lock(self, wait: float = 0.0) -> bool:
        if self._lock_fd is not None:
            return True
        fd = os.open(self.root / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._lock_fd = fd
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return False
                time.sleep(0.2)

    @property
    def lock_fd(self) -> int | None:
        """The descriptor holding the writer lock (forked workers must close it)."""
        return self._lock_fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", (key, value))

    def _recover_if_dirty(self) -> None:
        rec = Recovery(tmp_removed=files.clear_tmp(self.root))
        if self._meta("dirty") == "1":
            rec = self.recover()
            rec.tmp_removed = max(rec.tmp_removed, 0)
            self._set_meta("dirty", "0")
        self.last_recovery = rec

    def recover(self) -> Recovery:
        """Make files and rows agree again (see module doc). Needs the writer lock."""
        rec = Recovery(tmp_removed=files.clear_tmp(self.root))
        known = {str(r[0]) for r in self.db.execute("SELECT path FROM instances")}
        for path in files.all_objects(self.root):
            rel = path.relative_to(self.root).as_posix()
            if rel not in known:
                files.remove(self.root, rel)
                rec.orphan_files_removed.append(rel)
        missing = [rel for rel in known if not (self.root / rel).is_file()]
        if missing:
            with self.transaction():
                for rel in missing:
                    self.db.execute("DELETE FROM instances WHERE path=?", (rel,))
            rec.rows_without_file = missing
            log.warning("store %s: %d index rows had no file and were dropped",
                        self.root, len(missing))
        if rec.orphan_files_removed:
            log.info("store %s: removed %d files left by an interrupted import",
                     self.root, len(rec.orphan_files_removed))
        return rec

    @contextlib.contextmanager
    def writing(self, wait: float = 600.0) -> Iterator[Store]:
        """Exclusive write session: lock, recover if needed, mark dirty; clean on success."""
        if not self._try_lock(wait):
            raise StoreError(f"{self.root}: another import is writing to this store; "
                             "try again when it has finished")
        try:
            self._recover_if_dirty()
            self._set_meta("dirty", "1")
            yield self
            self._set_meta("dirty", "0")
        finally:
            self._unlock()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- writing -----------------------------------------------------------------------------
    def known(self, sop_uid: str) -> list[tuple[int, str, str]]:
        """(row id, checksum, source checksum) of every instance stored under ``sop_uid``."""
        return [(int(r[0]), str(r[1]), str(r[2])) for r in self.db.execute(
            "SELECT id, checksum, source_checksum FROM instances WHERE sop_uid=?", (sop_uid,))]

    def begin_import(self, media: str, medium_label: str, fileset_id: str, method: str) -> int:
        cur = self.db.execute(
            "INSERT INTO imports(started, media, medium_label, fileset_id, method) "
            "VALUES(?, ?, ?, ?, ?)", (now_iso(), media, medium_label, fileset_id, method))
        return int(cur.lastrowid or 0)

    def finish_import(self, import_id: int, complete: bool, summary: dict[str, Any]) -> None:
        self.db.execute("UPDATE imports SET finished=?, complete=?, summary=? WHERE id=?",
                        (now_iso(), int(complete), json.dumps(summary), import_id))

    def add(self, items: Sequence[NewInstance], *, import_id: int, medium_label: str,
            fileset_id: str, volume: str) -> list[int]:
        """Index stored files in one transaction; returns the new instance row ids.

        An item whose SOP Instance UID already exists with other content is kept as a second
        row and both rows are flagged ``conflict``; nothing is overwritten.
        """
        ids: list[int] = []
        stamp = now_iso()
        # Patients, studies and series already written in this transaction are not written
        # again (a batch is mostly one series: 3 statements less per instance).
        patients: dict[tuple[str, str], int] = {}
        studies: set[str] = set()
        series: set[str] = set()
        with self.transaction() as db:
            for it in items:
                pkey = patients.get((it.patient_id, it.issuer))
                if pkey is None:
                    db.execute(
                        "INSERT INTO patients(patient_id, issuer, name, birth_date, sex) "
                        "VALUES(?, ?, ?, ?, ?) ON CONFLICT(patient_id, issuer) DO NOTHING",
                        (it.patient_id, it.issuer, it.patient_name, it.birth_date, it.sex))
                    pkey = int(db.execute(
                        "SELECT id FROM patients WHERE patient_id=? AND issuer=?",
                        (it.patient_id, it.issuer)).fetchone()[0])
                    patients[(it.patient_id, it.issuer)] = pkey
                if it.study_uid not in studies:
                    db.execute(
                        "INSERT INTO studies(study_uid, patient, study_date, study_time, "
                        "accession_number, study_id, description) VALUES(?, ?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT(study_uid) DO NOTHING",
                        (it.study_uid, pkey, it.study_date, it.study_time, it.accession_number,
                         it.study_id, it.study_description))
                    studies.add(it.study_uid)
                if it.series_uid not in series:
                    db.execute(
                        "INSERT INTO series(series_uid, study_uid, modality, number, "
                        "description, body_part) VALUES(?, ?, ?, ?, ?, ?) "
                        "ON CONFLICT(series_uid) DO NOTHING",
                        (it.series_uid, it.study_uid, it.modality, it.series_number,
                         it.series_description, it.body_part))
                    series.add(it.series_uid)
                prior = db.execute("SELECT COUNT(*) FROM instances WHERE sop_uid=?",
                                   (it.sop_uid,)).fetchone()[0]
                cur = db.execute(
                    "INSERT INTO instances(sop_uid, sop_class_uid, series_uid, number, "
                    "transfer_syntax, path, checksum, source_checksum, size, conflict, import_id, "
                    "medium_label, fileset_id, volume, source_path, imported_at, mds) "
                    "VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (it.sop_uid, it.sop_class_uid, it.series_uid, it.instance_number,
                     it.transfer_syntax, it.relpath, it.checksum, it.source_checksum, it.size,
                     int(prior > 0),
                     import_id, medium_label, fileset_id, volume, it.source_path, stamp,
                     json.dumps(it.mds, default=str)))
                if prior:
                    db.execute("UPDATE instances SET conflict=1 WHERE sop_uid=?", (it.sop_uid,))
                ids.append(int(cur.lastrowid or 0))
        return ids

    # -- reading -----------------------------------------------------------------------------
    def studies(self, study_uid: str | None = None,
                patient_id: str | None = None) -> list[StudyRow]:
        where, params = [], []
        if study_uid is not None:
            where.append("s.study_uid=?")
            params.append(study_uid)
        if patient_id is not None:
            where.append("p.patient_id=?")
            params.append(patient_id)
        return [row for _key, row in self._studies(
            where, params, " ORDER BY p.patient_id, s.study_date, s.study_uid")]

    def _studies(self, where: list[str], params: Sequence[object],
                 tail: str) -> list[tuple[int, StudyRow]]:
        """(row id, study) pairs; the row id is the study's opaque key (web console URLs)."""
        sql = ("SELECT s.rowid AS key, s.*, p.patient_id, p.name, p.issuer, p.birth_date, "
               "p.sex, "
               "(SELECT COUNT(*) FROM series se WHERE se.study_uid=s.study_uid) AS n_series, "
               "(SELECT COUNT(*) FROM instances i JOIN series se ON i.series_uid=se.series_uid "
               " WHERE se.study_uid=s.study_uid) AS n_instances, "
               "(SELECT group_concat(DISTINCT se.modality) FROM series se "
               " WHERE se.study_uid=s.study_uid) AS modalities "
               "FROM studies s JOIN patients p ON s.patient=p.id")
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [(int(r["key"]), StudyRow(
            study_uid=r["study_uid"], patient_id=r["patient_id"], patient_name=r["name"],
            issuer=r["issuer"], birth_date=r["birth_date"], sex=r["sex"],
            study_date=r["study_date"], study_time=r["study_time"],
            accession_number=r["accession_number"], study_id=r["study_id"],
            description=r["description"], n_series=r["n_series"],
            n_instances=r["n_instances"],
            modalities=tuple(sorted(m for m in (r["modalities"] or "").split(",") if m))))
            for r in self.db.execute(sql + tail, params)]

    # -- browsing (the web console: pages of rows, opaque keys) ------------------------------
    def find_studies(self, *, name: str = "", patient_id: str = "", accession: str = "",
                     date_from: str = "", date_to: str = "", limit: int = 50,
                     offset: int = 0) -> tuple[list[tuple[int, StudyRow]], int]:
        """Studies matching every criterion given, newest first, one page of them, and how
        many match in all. ``name``: each word appears in the Patient's Name (any case);
        ``patient_id``: a prefix of the Patient ID; dates: DICOM DA (YYYYMMDD), inclusive."""
        where: list[str] = []
        params: list[object] = []
        for word in name.replace("^", " ").split():
            where.append("p.name LIKE ? ESCAPE '\\'")
            params.append(f"%{_like(word)}%")
        if patient_id:
            where.append("p.patient_id LIKE ? ESCAPE '\\'")
            params.append(f"{_like(patient_id)}%")
        if accession:
            where.append("s.accession_number=?")
            params.append(accession)
        if date_from:
            where.append("s.study_date>=?")
            params.append(date_from)
        if date_to:
            where.append("s.study_date<=?")
            params.append(date_to)
        count_sql = "SELECT COUNT(*) FROM studies s JOIN patients p ON s.patient=p.id"
        if where:
            count_sql += " WHERE " + " AND ".join(where)
        total = int(self.db.execute(count_sql, params).fetchone()[0])
        rows = self._studies(where, params, " ORDER BY s.study_date DESC, s.rowid DESC "
                             f"LIMIT {int(limit)} OFFSET {int(offset)}")
        return rows, total

    def study_by_key(self, key: int) -> StudyRow | None:
        rows = self._studies(["s.rowid=?"], [int(key)], "")
        return rows[0][1] if rows else None

    def series_keys(self, study_uid: str) -> list[tuple[int, SeriesRow]]:
        """The series of a study with their opaque keys, in series number order."""
        keys = {str(r[0]): int(r[1]) for r in self.db.execute(
            "SELECT series_uid, rowid FROM series WHERE study_uid=?", (study_uid,))}
        return [(keys[se.series_uid], se) for se in self.series_of(study_uid)]

    def series_by_key(self, key: int) -> SeriesRow | None:
        row = self.db.execute("SELECT study_uid, series_uid FROM series WHERE rowid=?",
                              (int(key),)).fetchone()
        if row is None:
            return None
        return next((se for se in self.series_of(str(row[0]))
                     if se.series_uid == str(row[1])), None)

    def patients_page(self, limit: int = 50, offset: int = 0
                      ) -> tuple[list[dict[str, Any]], int]:
        """Patients newest first with their number of studies (``key``: the opaque row id),
        one page, and how many there are."""
        total = int(self.db.execute("SELECT COUNT(*) FROM patients").fetchone()[0])
        rows = self.db.execute(
            "SELECT p.*, (SELECT COUNT(*) FROM studies s WHERE s.patient=p.id) AS n_studies "
            "FROM patients p ORDER BY p.id DESC LIMIT ? OFFSET ?", (int(limit), int(offset)))
        return [{"key": r["id"], "patient_id": r["patient_id"], "issuer": r["issuer"],
                 "name": r["name"], "birth_date": r["birth_date"], "sex": r["sex"],
                 "n_studies": r["n_studies"]} for r in rows], total

    def totals(self) -> dict[str, int]:
        """How many patients, studies, series and instances the store holds."""
        return {table: int(self.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
                for table in ("patients", "studies", "series", "instances")}

    def series_of(self, study_uid: str) -> list[SeriesRow]:
        rows = self.db.execute(
            "SELECT se.*, (SELECT COUNT(*) FROM instances i WHERE i.series_uid=se.series_uid) "
            "AS n FROM series se WHERE se.study_uid=? ORDER BY se.number, se.series_uid",
            (study_uid,))
        return [SeriesRow(series_uid=r["series_uid"], study_uid=r["study_uid"],
                          modality=r["modality"], number=r["number"],
                          description=r["description"], body_part=r["body_part"],
                          n_instances=r["n"]) for r in rows]

    def instances_of(self, series_uid: str) -> list[InstanceRow]:
        return self._instances("WHERE i.series_uid=? ORDER BY i.number, i.sop_uid",
                               (series_uid,))

    def instances(self, ids: Sequence[int] | None = None) -> list[InstanceRow]:
        """All instances, or those with the given row ids."""
        if ids is None:
            return self._instances("ORDER BY i.id", ())
        out: list[InstanceRow] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start:start + 500])
            marks = ",".join("?" * len(chunk))
            out += self._instances(f"WHERE i.id IN ({marks}) ORDER BY i.id", chunk)
        return out

    def _instances(self, tail: str, params: Sequence[object]) -> list[InstanceRow]:
        rows = self.db.execute(
            "SELECT i.*, se.study_uid FROM instances i JOIN series se "
            f"ON i.series_uid=se.series_uid {tail}", params)
        return [InstanceRow(
            id=r["id"], sop_uid=r["sop_uid"], sop_class_uid=r["sop_class_uid"],
            series_uid=r["series_uid"], study_uid=r["study_uid"], number=r["number"],
            transfer_syntax=r["transfer_syntax"], path=self.root / r["path"],
            checksum=r["checksum"], size=r["size"], conflict=bool(r["conflict"]),
            origin=Origin(r["medium_label"], r["fileset_id"], r["volume"], r["source_path"],
                          r["imported_at"], r["import_id"]),
            mds=json.loads(r["mds"])) for r in rows]

    def count_instances(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])

    # -- checking ----------------------------------------------------------------------------
    def check(self, rehash: bool = True) -> list[str]:
        """Problems found: rows without file or with a wrong checksum, files without a row."""
        problems: list[str] = []
        known: dict[str, str] = {}
        for r in self.db.execute("SELECT path, checksum FROM instances"):
            known[str(r[0])] = str(r[1])
        for rel, checksum in known.items():
            path = self.root / rel
            if not path.is_file():
                problems.append(f"{rel}: indexed but the file is missing")
            elif rehash and files.sha256_file(path) != checksum:
                problems.append(f"{rel}: content does not match its checksum")
        for path in files.all_objects(self.root):
            rel = path.relative_to(self.root).as_posix()
            if rel not in known:
                problems.append(f"{rel}: file without an index row")
        return problems

    # -- forwarding state --------------------------------------------------------------------
    def queue_forward(self, instance_ids: Sequence[int], destination: str) -> None:
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO forwards(instance, destination, state, updated) "
                "VALUES(?, ?, 'pending', ?) ON CONFLICT(instance, destination) DO UPDATE SET "
                "state=CASE WHEN state='sent' THEN 'sent' ELSE 'pending' END",
                [(i, destination, now_iso()) for i in instance_ids])

    def pending_forwards(self, destination: str) -> list[int]:
        return [int(r[0]) for r in self.db.execute(
            "SELECT instance FROM forwards WHERE destination=? AND state='pending' "
            "ORDER BY instance", (destination,))]

    def set_forward_state(self, instance_id: int, destination: str, state: str,
                          error: str = "") -> None:
        with self.transaction() as db:
            db.execute("UPDATE forwards SET state=?, attempts=attempts+1, last_error=?, "
                       "updated=? WHERE instance=? AND destination=?",
                       (state, error, now_iso(), instance_id, destination))

    def forward_states(self, destination: str | None = None) -> list[dict[str, Any]]:
        sql = ("SELECT f.*, i.sop_uid FROM forwards f JOIN instances i ON f.instance=i.id")
        params: tuple[str, ...] = ()
        if destination is not None:
            sql += " WHERE f.destination=?"
            params = (destination,)
        return [dict(r) for r in self.db.execute(sql, params)]

"""Media Creation Management SCP (PS3.4 Annex S, SOP Class 1.2.840.10008.5.1.1.33).

- N-CREATE: a media creation request (PS3.4 S.3.2.1), with the SCU's Affected SOP Instance
  UID or without (the SCP assigns one, PS3.7 10.1.5.1.4): Referenced SOP Sequence (with
  Requested Media Application Profile per item), Storage Media File-Set ID, Label Using
  Information Extracted From Instances, Label Text, Number of Copies, Request Priority.
  Stored in the queue database (state.py) with Execution Status IDLE.
- N-ACTION type 1, Initiate Media Creation (S.3.2.2.1): the referenced instances must have
  been received by C-STORE on the MCM AE (ingress/held/) or be in the local store; they are
  linked into a spool entry and queued as ONE export job (the same queue, reports, retries as
  a drop-folder job). Status PENDING, then CREATING while the job runs, DONE or FAILURE.
  A request whose instances are missing, duplicated or not allowed by the profile goes to
  FAILURE at once with NO_INSTANCE / DUPL_REF_INST / INST_AP_CONFLICT / NOT_SUPPORTED and the
  Failed SOP Sequence. A second initiate: 0xA510.
- N-ACTION type 2, Cancel Media Creation (S.3.2.2.2): a queued job is cancelled (FAILURE);
  a running one cannot be interrupted (0xC202); a finished one: 0xC201.
- N-GET (S.3.2.3): Execution Status, Execution Status Info, Failed SOP Sequence and the
  request's own attributes; Total Number of Pieces of Media Created once DONE.

docs/mcm-conformance.md states what is supported.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections import Counter
from typing import Any, cast

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from pynetdicom import evt
from pynetdicom.dimse_primitives import N_ACTION, N_CREATE, N_GET
from pynetdicom.events import Event

from mediasvc.durable import atomic_write, fsync_dir
from mediasvc.errors import JobError, MediasvcError
from mediasvc.jobqueue import JobQueue, State
from mediasvc.profiles import media_profiles
from mediasvc.service import spool
from mediasvc.service.config import ServiceConfig

from . import state
from .receive import Spooler, valid_uid

log = logging.getLogger("mediasvc.ingress")

INITIATE, CANCEL = 1, 2
# PS3.4 Annex S / PS3.7 C: Failure Reason (0008,1197) values in the Failed SOP Sequence.
NO_SUCH_INSTANCE, CLASS_NOT_SUPPORTED = 0x0112, 0x0122
_FILESET_ID = re.compile(r"[A-Z0-9_ ]{1,16}")


def _status(code: int, comment: str = "") -> Dataset:
    ds = Dataset()
    ds.Status = code
    if comment:
        ds.ErrorComment = comment[:64]
    return ds


class MediaCreationSCP:
    def __init__(self, cfg: ServiceConfig, q: JobQueue, spooler: Spooler) -> None:
        assert cfg.ingress is not None and cfg.ingress.mcm is not None
        self.cfg = cfg
        self.mcm = cfg.ingress.mcm
        self.q = q
        self.spooler = spooler
        self.layout = spooler.layout

    def handlers(self) -> list[Any]:
        return [(evt.EVT_N_CREATE, self.on_create), (evt.EVT_N_ACTION, self.on_action),
                (evt.EVT_N_GET, self.on_get)]

    # -- N-CREATE -------------------------------------------------------------------------
    def on_create(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        given = cast(N_CREATE, event.request).AffectedSOPInstanceUID
        # PS3.7 10.1.5.1.4: the SCU may leave the Affected SOP Instance UID out; the SCP then
        # assigns one and returns it in the N-CREATE-RSP (pynetdicom moves an
        # AffectedSOPInstanceUID of the handler's dataset into the response command set).
        uid = str(given) if given else generate_uid()
        if not valid_uid(uid):
            return _status(0x0117, "Affected SOP Instance UID is not a valid UID"), None
        if state.mcm_get(self.cfg.db, uid) is not None:
            return 0x0111, None   # Duplicate SOP Instance
        ds = event.attribute_list
        refs = ds.get("ReferencedSOPSequence")
        if not refs:
            return _status(0x0120, "Referenced SOP Sequence missing or empty"), None
        referenced = []
        for item in refs:
            cls = str(item.get("ReferencedSOPClassUID", ""))
            inst = str(item.get("ReferencedSOPInstanceUID", ""))
            if not valid_uid(cls) or not valid_uid(inst):
                return _status(0x0121, "Referenced SOP Class/Instance UID missing"), None
            referenced.append({"class": cls, "instance": inst,
                               "profile": str(item.get("RequestedMediaApplicationProfile", ""))})
        priority = str(ds.get("RequestPriority", "") or "MED").upper()
        if priority not in ("HIGH", "MED", "LOW"):
            return _status(0x0106, "Request Priority must be HIGH, MED or LOW"), None
        copies = int(ds.get("NumberOfCopies", 1) or 1)
        if not 1 <= copies <= 99:
            return _status(0x0116, "Number of Copies out of range 1-99"), None
        fileset_id = str(ds.get("StorageMediaFileSetID", "") or "")
        if fileset_id and not _FILESET_ID.fullmatch(fileset_id):
            return _status(0x0106, "Storage Media File-Set ID: PS3.10 8.2 characters"), None
        request = {"referenced": referenced, "priority": priority, "copies": copies,
                   "fileset_id": fileset_id, "label_text": str(ds.get("LabelText", "")),
                   "label_from_instances": str(
                       ds.get("LabelUsingInformationExtractedFromInstances", "") or "NO")}
        state.mcm_put(self.cfg.db, uid, event.assoc.requestor.ae_title.strip(), request)
        log.info("media creation request created: %d instance(s)", len(referenced))
        rsp = Dataset()
        if not given:
            rsp.AffectedSOPInstanceUID = uid
        rsp.ExecutionStatus = state.IDLE
        rsp.ExecutionStatusInfo = "NORMAL"
        rsp.RequestPriority = priority
        rsp.NumberOfCopies = copies
        return 0x0000, rsp

    # -- N-ACTION -------------------------------------------------------------------------
    def on_action(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        uid = str(cast(N_ACTION, event.request).RequestedSOPInstanceUID or "")
        req = state.mcm_get(self.cfg.db, uid)
        if req is None:
            return 0x0112, None   # No such SOP Instance
        action = int(event.action_type or 0)
        if action == INITIATE:
            if req["job_uid"] or req["status"] != state.IDLE:
                return 0xA510, None
            try:
                self._initiate(uid, req)
            except (MediasvcError, OSError) as exc:
                log.error("media creation request: cannot queue it: %s", exc)
                state.mcm_update(self.cfg.db, uid, status=state.FAILURE,
                                 status_info="PROC_FAILURE")
                return _status(0x0110, "cannot queue the request"), None
            return 0x0000, None
        if action == CANCEL:
            return self._cancel(uid, req), None
        return 0x0123, None   # No such action type

    def _initiate(self, uid: str, req: dict[str, Any]) -> None:
        request = req["request"]
        refs = request["referenced"]
        asked = {r["profile"] for r in refs if r["profile"]}
        profile_id = self.mcm.default_profile if not asked else sorted(asked)[0]
        profiles = media_profiles()
        failed: list[dict[str, Any]] = []
        info = ""
        if len(asked) > 1 or profile_id not in profiles \
                or profile_id not in self.cfg.export_profiles:
            info = "NOT_SUPPORTED"
            failed = [{**r, "reason": CLASS_NOT_SUPPORTED} for r in refs
                      if r["profile"] and r["profile"] != self.mcm.default_profile]
        times = Counter(r["instance"] for r in refs)
        dups = [r for r in refs if times[r["instance"]] > 1]
        if not info and dups:
            info, failed = "DUPL_REF_INST", [{**r, "reason": 0x0111} for r in dups]
        sources: dict[str, str] = {}
        if not info:
            sources, missing = self._locate([r["instance"] for r in refs])
            if missing:
                info = "NO_INSTANCE"
                failed = [{**r, "reason": NO_SUCH_INSTANCE} for r in refs
                          if r["instance"] in missing]
        if not info:
            prof = profiles[profile_id]
            bad = [r for r in refs if not prof.allows_sop_class(r["class"])]
            if bad:
                info, failed = "INST_AP_CONFLICT", [{**r, "reason": CLASS_NOT_SUPPORTED}
                                                    for r in bad]
        if info:
            log.warning("media creation request refused: %s (%d instance(s))", info,
                        len(failed))
            state.mcm_update(self.cfg.db, uid, status=state.FAILURE, status_info=info,
                             failed=failed)
            return
        job_uid = spool.new_uid()
        entry = self.cfg.spool / job_uid
        name = f"mcm-{uid[-12:].replace('.', '_')}"
        options = [f'priority = "{request["priority"]}"', f'target = "{self.mcm.target}"']
        if request["copies"] > 1:
            options.append(f"copies = {request['copies']}")
        if request["fileset_id"]:
            options.append(f'fileset_id = "{request["fileset_id"]}"')
        meta: dict[str, Any] = {
            "uid": job_uid, "kind": "export", "group": profile_id, "name": name,
            "origin": "ingress/mcm", "settled_at": time.time(), "is_file": False,
            "mcm": {"request": uid, "instances": len(refs),
                    "label_text": request["label_text"]}}
        # Held instances are durable in the journals; linked into a job, they must be so
        # under their own names (receive.py).
        self.spooler.sync_all()
        staging = self.cfg.spool / f".mcm-{job_uid}"
        staging.mkdir(parents=True)
        for sop, src in sources.items():
            _link_or_copy(src, str(staging / f"{sop}.dcm"))
        atomic_write(staging / spool.JOB_TOML, ("\n".join(options) + "\n").encode())
        entry.mkdir()
        atomic_write(entry / "claim.json", json.dumps(meta).encode())
        os.rename(staging, entry / "input")
        fsync_dir(entry)
        fsync_dir(self.cfg.spool)
        # Recorded before the submit: a crash between the two leaves a spool entry that the
        # daemon's recovery queues (spool.adopt), and N-GET finds it by its uid.
        state.mcm_update(self.cfg.db, uid, status=state.PENDING, status_info="QUEUED",
                         job_uid=job_uid)
        job = spool.submit(self.cfg, self.q, entry, meta)
        log.info("job %d: media creation request of %d instance(s) queued (%s)", job.id,
                 len(refs), profile_id)

    def _locate(self, sops: list[str]) -> tuple[dict[str, str], set[str]]:
        """Where each referenced instance is: held by C-STORE, else the local store."""
        found: dict[str, str] = {}
        for sop in sops:
            p = self.layout.held / f"{sop}.dcm"
            if p.is_file():
                found[sop] = str(p)
        rest = [s for s in sops if s not in found]
        if rest and (self.cfg.store / "index.sqlite").exists():
            from mediasvc.store.index import Store

            with Store.open(self.cfg.store) as store:
                for sop in rest:
                    rows = store.known(sop)
                    if rows:
                        inst = store.instances([rows[0][0]])
                        if inst:
                            found[sop] = str(inst[0].path)
        return found, {s for s in sops if s not in found}

    def _cancel(self, uid: str, req: dict[str, Any]) -> int:
        job = self.q.find(req["job_uid"]) if req["job_uid"] else None
        if job is None:
            if req["status"] in (state.DONE, state.FAILURE):
                return 0xC201
            state.mcm_update(self.cfg.db, uid, status=state.FAILURE,
                             status_info="PROC_FAILURE")
            return 0x0000
        if job.state is State.RUNNING:
            return 0xC202
        if job.state in (State.DONE, State.FAILED, State.CANCELLED):
            return 0xC201
        try:
            self.q.cancel(job.id)
        except JobError:
            return 0xC203
        log.info("job %d: media creation request cancelled by the SCU", job.id)
        return 0x0000

    # -- N-GET ----------------------------------------------------------------------------
    def on_get(self, event: Event) -> tuple[int | Dataset, Dataset | None]:
        get = cast(N_GET, event.request)
        uid = str(get.RequestedSOPInstanceUID or "")
        req = state.mcm_get(self.cfg.db, uid)
        if req is None:
            return 0x0112, None
        job = self.q.find(req["job_uid"]) if req["job_uid"] else None
        status, info = state.mcm_status(req, job)
        r = req["request"]
        ds = Dataset()
        ds.ExecutionStatus = status
        ds.ExecutionStatusInfo = info
        ds.RequestPriority = r["priority"]
        ds.NumberOfCopies = r["copies"]
        if r["fileset_id"]:
            ds.StorageMediaFileSetID = r["fileset_id"]
        if r["label_text"]:
            ds.LabelText = r["label_text"]
        ds.LabelUsingInformationExtractedFromInstances = r["label_from_instances"]
        ref = Sequence()
        for item in r["referenced"]:
            it = Dataset()
            it.ReferencedSOPClassUID = item["class"]
            it.ReferencedSOPInstanceUID = item["instance"]
            ref.append(it)
        ds.ReferencedSOPSequence = ref
        failed = list(req["failed"])
        if job is not None and job.state in (State.FAILED, State.CANCELLED) and not failed:
            failed = [{**x, "reason": 0x0110} for x in r["referenced"]]
        if failed:
            seq = Sequence()
            for f in failed:
                it = Dataset()
                it.ReferencedSOPClassUID = f["class"]
                it.ReferencedSOPInstanceUID = f["instance"]
                it.FailureReason = int(f["reason"])
                seq.append(it)
            ds.FailedSOPSequence = seq
        if status == state.DONE and job is not None and job.result:
            vols = (job.result.get("fileset") or {}).get("volumes", 1)
            ds.TotalNumberOfPiecesOfMediaCreated = int(vols) * int(r["copies"])
        ids = get.AttributeIdentifierList
        wanted = ids if isinstance(ids, list) else [ids] if ids else []
        if wanted:
            keep = Dataset()
            for tag in wanted:
                if tag in ds:
                    keep[tag] = ds[tag]
            ds = keep
        return 0x0000, ds


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)

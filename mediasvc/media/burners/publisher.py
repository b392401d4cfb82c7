"""Disc publishers driven through a hot folder (Primera PTBurn, Epson TD Bridge).

Both take a text job file of ``KEY=value`` lines and move it through a lifecycle by renaming
it: submitted -> queued/received -> in progress -> done or error. We hand over an ISO image
that we mastered ourselves (ISO 9660 level 1, DICOMDIR first: the publisher's own mastering
would not keep these), plus the label merge fields.

* The image and the job file are written in a spool folder (FOLDER/MEDIASVC, same file
  system as the hot folder) and the job file is renamed into the hot folder only when
  complete: the publisher never reads a half-written job (rename is atomic on one file system).
* Timeouts: a job not picked up within ``pickup_timeout`` is withdrawn (renamed back out of
  the hot folder) so it can be retried, e.g. once the publisher software runs; a job picked up
  but not finished within ``timeout`` is reported and left to the publisher.
* A job ending in the error state is reported with the publisher's message.
* A burn killed midway (the service's runner SIGKILLed, the host down) is never burned twice.
  Before its job file is written, a claim (FOLDER/MEDIASVC/CLAIM-<hash>.JSON, written
  durably) names the job file that belongs to this volume, keyed by ``BurnJob.claim`` (the
  service's job, else the staging folder). The next burn of the same volume reads it: a job
  file still waiting in the hot folder (submitted, not yet taken by the publisher) is
  withdrawn and a fresh one submitted; one the publisher already took (queued, in progress,
  done or failed) is adopted: its result is awaited instead of writing a second job. The claim
  goes when the job ends; a job left to the publisher after the overall timeout keeps it, so
  a retry follows that job rather than burning another disc.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from mediasvc.durable import atomic_write, fsync_dir
from mediasvc.errors import BurnError
from mediasvc.media.burners import BurnJob, CopyResult
from mediasvc.media.iso import make_iso
from mediasvc.media.verify import compare, iso_checksums, raise_if_bad, tree_checksums

log = logging.getLogger(__name__)

CD_BYTES = 700 * 1000 * 1000
DVD_BYTES = 4_700_000_000


@dataclass(frozen=True)
class Lifecycle:
    submitted: str
    queued: str
    progress: str
    done: str
    error: str

    def states(self) -> tuple[str, ...]:
        return (self.submitted, self.queued, self.progress, self.done, self.error)


def _sync_entries(folder: Path) -> None:
    """fsync of a folder's entries; a share that cannot fsync a folder (EINVAL) is let be."""
    try:
        fsync_dir(folder)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise


def disc_type(size: int) -> str:
    """cd / dvd / bd by image size (nominal capacities of PS3.12's media)."""
    return "cd" if size <= CD_BYTES else "dvd" if size <= DVD_BYTES else "bd"


def read_job_file(path: Path) -> dict[str, list[str]]:
    """KEY=value lines -> {KEY: [values...]} (keys repeat: MergeField, REPLACE_FIELD)."""
    out: dict[str, list[str]] = {}
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return out
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out.setdefault(key.strip(), []).append(value.strip())
    return out


class PublisherBackend:
    """Common hot-folder logic; subclasses say how a job file reads."""

    kind = "publisher"
    prints_labels = True
    lifecycle = Lifecycle(".JRQ", ".QRJ", ".INP", ".DON", ".ERR")
    poll = 0.2

    def __init__(self, folder: Path, *, pickup_timeout: float = 60.0,
                 timeout: float = 3600.0) -> None:
        self.folder = folder
        self.pickup_timeout = pickup_timeout
        self.timeout = timeout

    def describe(self) -> str:
        return f"{self.kind}:{self.folder}"

    # -- to be provided by the vendor modules ---------------------------------------------
    def job_text(self, job: BurnJob, job_id: str, image: Path, size: int) -> str:
        raise NotImplementedError

    def error_message(self, fields: dict[str, list[str]]) -> str:
        raise NotImplementedError

    # -- lifecycle ------------------------------------------------------------------------
    def _job_path(self, job_id: str, ext: str) -> Path:
        return self.folder / f"{job_id}{ext}"

    def state(self, job_id: str) -> str | None:
        for ext in reversed(self.lifecycle.states()):
            if self._job_path(job_id, ext).exists():
                return ext
        return None

    def burn(self, job: BurnJob) -> list[CopyResult]:
        what = f"{self.kind}:{self.folder}"
        if not self.folder.is_dir():
            raise BurnError(f"{what}: the job folder does not exist (is the publisher share "
                            "mounted?)")
        if not os.access(self.folder, os.W_OK):
            raise BurnError(f"{what}: the job folder is not writable")
        spool = self.folder / "MEDIASVC"
        try:
            spool.mkdir(exist_ok=True)
        except OSError as exc:
            raise BurnError(f"{what}: cannot create the spool folder: {exc.strerror}") from exc
        claim = self._claim_path(job)
        job_id = self._resume(claim, what)
        if job_id is None:
            # A fresh ID per attempt: a retry never collides with the remains of an earlier one.
            job_id = f"MSVC{time.strftime('%Y%m%d%H%M%S')}{uuid.uuid4().hex[:6].upper()}"
            # The claim first, durably: whatever job file exists later is known to be ours.
            atomic_write(claim, json.dumps({"key": self._claim_key(job),
                                            "job_id": job_id}).encode())
        image = spool / f"{job_id}.ISO"
        adopted = self.state(job_id) is not None
        try:
            image_verified: bool | None = None
            if adopted:  # its image was made and handed over by the burn cut off
                size = image.stat().st_size if image.exists() else 0
            else:
                size = make_iso(job.staging, image, timeout=job.timeout).size
            if job.verify and image.exists():
                check = compare(tree_checksums(job.staging), iso_checksums(image))
                raise_if_bad(check, f"{what}: image {image}")
                image_verified = True
            if not adopted:
                tmp = spool / f"{job_id}.tmp"
                with open(tmp, "w", encoding="ascii", newline="\r\n") as fh:
                    fh.write(self.job_text(job, job_id, image, size))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self._job_path(job_id, self.lifecycle.submitted))
                _sync_entries(self.folder)
            final, fields = self._wait(job_id, what)
        except BaseException:
            self._cleanup(job_id, image, keep_job=True)
            if self.state(job_id) in (None, self.lifecycle.done, self.lifecycle.error):
                self._drop_claim(claim)  # else still the publisher's: a retry follows it
            raise
        self._cleanup(job_id, image, keep_job=True)
        self._drop_claim(claim)
        if final == self.lifecycle.error:
            raise BurnError(f"{what}: job {job_id} failed: {self.error_message(fields)}; "
                            "the staging tree is intact, the job can be retried")
        method = "publisher-verify" if job.verify else ""
        results = []
        for n in range(1, job.copies + 1):
            # Per-copy lines (CopyN=OK|...) where the publisher reports them in the done file.
            said = fields.get(f"Copy{n}", [""])[0]
            failed = bool(said) and said.upper() != "OK"
            results.append(CopyResult(
                n, f"{what} job {job_id}", "failed" if failed else "done",
                verified=(image_verified and not failed) if job.verify else None,
                verify_method=f"image-readback-sha256+{method}" if job.verify else "",
                detail=f"{disc_type(size)} image {size} bytes"
                       + (f"; publisher: {said}" if said else "")))
        if any(r.status == "failed" for r in results):
            bad = ", ".join(str(r.copy) for r in results if r.status == "failed")
            raise BurnError(f"{what}: job {job_id}: copies {bad} failed at the publisher")
        return results

    # -- claims: which job file of the hot folder is this volume's ---------------------------
    @staticmethod
    def _claim_key(job: BurnJob) -> str:
        return job.claim or f"staging:{job.staging.resolve()}"

    def _claim_path(self, job: BurnJob) -> Path:
        digest = hashlib.sha256(self._claim_key(job).encode()).hexdigest()[:16].upper()
        return self.folder / "MEDIASVC" / f"CLAIM-{digest}.JSON"

    def _drop_claim(self, claim: Path) -> None:
        with contextlib.suppress(OSError):  # a claim left over only costs a withdraw later
            claim.unlink(missing_ok=True)
            _sync_entries(claim.parent)

    def _resume(self, claim: Path, what: str) -> str | None:
        """The job ID to adopt, left by an earlier burn of this volume that was cut off; or
        None, having withdrawn a job file the publisher had not taken yet."""
        try:
            job_id = str(json.loads(claim.read_text(encoding="ascii"))["job_id"])
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            self._drop_claim(claim)  # unreadable: atomic_write never leaves one, so not ours
            return None
        state = self.state(job_id)
        if state == self.lifecycle.submitted:
            try:  # not taken: withdraw it, so that only the fresh job file can be burned
                os.replace(self._job_path(job_id, state),
                           self.folder / "MEDIASVC" / f"{job_id}.WDN")
                _sync_entries(self.folder)
                log.info("%s: job %s of an interrupted burn was still waiting: withdrawn",
                         what, job_id)
                state = None
            except FileNotFoundError:
                state = self.state(job_id)  # taken just now: follow it
        if state is not None:
            log.info("%s: job %s of an interrupted burn is the publisher's (%s): adopted",
                     what, job_id, state)
            return job_id
        self._cleanup(job_id, self.folder / "MEDIASVC" / f"{job_id}.ISO", keep_job=True)
        self._drop_claim(claim)
        return None

    def _wait(self, job_id: str, what: str) -> tuple[str, dict[str, list[str]]]:
        start = time.monotonic()
        submitted = self._job_path(job_id, self.lifecycle.submitted)
        while True:
            state = self.state(job_id)
            elapsed = time.monotonic() - start
            if state in (self.lifecycle.done, self.lifecycle.error):
                return state, read_job_file(self._job_path(job_id, state))
            if state == self.lifecycle.submitted and elapsed > self.pickup_timeout:
                try:  # withdraw: the publisher has not seen it, so it must not burn it later
                    os.replace(submitted, self.folder / "MEDIASVC" / f"{job_id}.WDN")
                except FileNotFoundError:
                    continue  # picked up just now: keep following it
                raise BurnError(f"{what}: job {job_id} was not picked up within "
                                f"{self.pickup_timeout:.0f} s (is the publisher software "
                                "running?); withdrawn, the job can be retried")
            if state is None and elapsed > self.pickup_timeout:
                raise BurnError(f"{what}: job {job_id} vanished from the job folder")
            if elapsed > self.timeout:
                raise BurnError(f"{what}: job {job_id} not finished within "
                                f"{self.timeout:.0f} s (state {state}); left to the publisher")
            time.sleep(self.poll)

    def _cleanup(self, job_id: str, image: Path, *, keep_job: bool) -> None:
        state = self.state(job_id)
        # The image is the publisher's input until the job ends; never pull it from under it.
        if state in (None, self.lifecycle.done, self.lifecycle.error):
            image.unlink(missing_ok=True)
        (self.folder / "MEDIASVC" / f"{job_id}.tmp").unlink(missing_ok=True)
        if not keep_job and state is not None:
            self._job_path(job_id, state).unlink(missing_ok=True)

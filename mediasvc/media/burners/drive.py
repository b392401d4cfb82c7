"""`drive:/dev/srN`: burn a volume onto an optical disc with xorriso.

Before writing, the medium is checked with ``xorriso -outdev DEV -toc -tell_media_space``:
no disc, a read-only disc (CD-ROM, DVD-ROM), a disc that is not blank (we never append to or
blank someone's disc), or one too small for the volume each give a clear error and write
nothing. With several copies the disc is ejected after each one and the next blank disc is
awaited (up to the job's timeout).

A device path must be a block device: xorriso would happily treat a regular file as a
"stdio" pseudo drive, which is never what ``drive:`` means. (``allow_stdio`` exists for the
tests: xorriso's stdio pseudo drive is the one real drive this machine has.)
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from mediasvc.errors import BurnError, CapacityError
from mediasvc.media.burners import BurnJob, CopyResult
from mediasvc.media.iso import (
    XORRISO,
    fileset_id_of,
    level1_problems,
    run_xorriso,
    tree_size,
    volume_id,
    xorriso_args,
)
from mediasvc.media.verify import compare, iso_checksums, raise_if_bad, tree_checksums

READ_ONLY_MEDIA = ("CD-ROM", "DVD-ROM", "BD-ROM", "HD DVD-ROM")
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class MediaState:
    present: bool
    blank: bool
    media: str  # "CD-R", "DVD+R", "stdio file", ...
    status: str  # xorriso's "Media status" text
    free_bytes: int | None


def parse_toc(output: str) -> MediaState:
    """Read xorriso's -toc / -tell_media_space report (its 'Media ...' lines)."""
    media = status = ""
    free: int | None = None
    for line in output.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "Media current":
            media = value
        elif key == "Media status":
            status = value
        elif key == "Media space":
            m = re.match(r"(\d+)s", value)
            if m:
                free = int(m.group(1)) * 2048
    present = bool(status) and "is not present" not in status and media != "is not present"
    return MediaState(present, "is blank" in status, media, status, free)


def media_problem(state: MediaState, needed: int) -> str | None:
    """Why the medium in the drive cannot take a volume of ``needed`` bytes, or None."""
    if not state.present:
        return "no disc in the drive; insert a blank disc and retry"
    if any(state.media.startswith(ro) for ro in READ_ONLY_MEDIA):
        return (f"wrong medium ({state.media} is read-only); insert a blank CD-R, DVD-R/+R "
                "or BD-R")
    if not state.blank:
        return (f"the disc is not blank ({state.status}); insert a blank disc (mediasvc "
                "never appends to or erases a disc)")
    if state.free_bytes is not None and state.free_bytes < needed:
        return (f"the volume needs {needed} bytes but the disc ({state.media}) holds "
                f"{state.free_bytes}")
    return None


class DriveBackend:
    kind = "drive"

    def __init__(self, device: str, *, allow_stdio: bool = False) -> None:
        self.device = device
        self.allow_stdio = allow_stdio

    def describe(self) -> str:
        return f"drive:{self.device}"

    def _outdev(self) -> str:
        if self.allow_stdio and self.device.startswith("stdio:"):
            return self.device
        try:
            st = os.stat(self.device)
        except FileNotFoundError:
            raise BurnError(f"drive {self.device}: no such device (is the drive connected? "
                            "drives are /dev/sr0, /dev/sr1, ...)") from None
        except OSError as exc:
            raise BurnError(f"drive {self.device}: cannot access: {exc.strerror}") from exc
        if not stat.S_ISBLK(st.st_mode):
            kind = "a regular file" if stat.S_ISREG(st.st_mode) else "not a block device"
            raise BurnError(f"drive {self.device}: {kind}, not an optical drive; "
                            "use iso:PATH for an image file")
        return self.device

    def media_state(self, timeout: float | None = None) -> MediaState:
        outdev = self._outdev()
        proc = run_xorriso([XORRISO, "-no_rc", "-abort_on", "FAILURE", "-outdev", outdev,
                            "-toc", "-tell_media_space"], f"drive {self.device}", timeout)
        return parse_toc(proc.stdout + "\n" + proc.stderr)

    def check_blank(self, needed: int, timeout: float | None = None) -> MediaState:
        state = self.media_state(timeout)
        problem = media_problem(state, needed)
        if problem:
            error = CapacityError if problem.startswith("the volume needs") else BurnError
            raise error(f"drive {self.device}: {problem}")
        return state

    def _wait_for_blank(self, needed: int, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                self.check_blank(needed)
                return
            except BurnError as exc:
                if deadline is not None and time.monotonic() > deadline:
                    raise BurnError(f"drive {self.device}: no blank disc inserted within "
                                    f"{timeout:.0f} s: {exc}") from exc
                time.sleep(POLL_SECONDS)

    def burn(self, job: BurnJob) -> list[CopyResult]:
        outdev = self._outdev()
        problems = level1_problems(job.staging)
        if problems:
            raise BurnError(f"{job.staging}: cannot master as ISO 9660 level 1: {problems[0]}")
        _count, needed = tree_size(job.staging)
        vid = volume_id(fileset_id_of(job.staging))
        expected = tree_checksums(job.staging) if job.verify else {}
        results: list[CopyResult] = []
        for copy in range(1, job.copies + 1):
            if copy == 1:
                self.check_blank(needed, job.timeout)
            else:
                self._wait_for_blank(needed, job.timeout)
            start = time.monotonic()
            run_xorriso(xorriso_args(job.staging, outdev, vid, extra=["-close", "on"]),
                        f"drive {self.device}, copy {copy}", job.timeout)
            result = CopyResult(copy, f"drive:{self.device}", "done",
                                detail=f"volume id {vid}, {time.monotonic() - start:.1f} s")
            results.append(result)
            if job.verify:
                device_path = outdev.removeprefix("stdio:")
                check = compare(expected, iso_checksums(Path(device_path)))
                result.verified, result.verify_method = check.ok, "disc-readback-sha256"
                result.files, result.bytes = check.files, check.bytes
                raise_if_bad(check, f"drive {self.device}, copy {copy}")
            if not outdev.startswith("stdio:"):
                run_xorriso([XORRISO, "-no_rc", "-outdev", outdev, "-eject", "all"],
                            f"drive {self.device}: eject", job.timeout)
        return results

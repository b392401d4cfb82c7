"""The exception hierarchy of mediasvc. A leaf module: it imports nothing from the package.

    MediasvcError                 anything mediasvc reports to a user
    ├── UsageError                a command line that cannot be carried out as given
    ├── ConfigError               a TOML file (profile, layout, MDS, service config) is invalid;
    │                             the message names file, key and value
    ├── InputError                one input file is unusable (not DICOM, truncated, ...)
    │   └── RejectedFile          ... for the profile or file-set at hand; carries path + reason
    ├── FileSetError              a file-set cannot be written, updated or read
    │   ├── UnsafePathError       a Referenced File ID resolves outside the media root
    │   └── CapacityError         the content does not fit the medium
    ├── MediaError                staging, ISO images, burners, publishers
    │   ├── BurnError             a burn or publisher job failed
    │   └── VerifyError           read-back differs from the staging tree
    ├── StoreError                the local store or its index
    ├── PeerError                 a DICOM peer (PACS, printer) failed; `transient` says whether
    │   │                         a retry may help (down, busy) or not (refused, bad request)
    │   └── PrintError            a Print SCP refused or failed a film
    └── JobError                  the service's job queue

Foreign exceptions (OSError, pydicom's InvalidDicomError, subprocess failures) are translated
into these at the boundary where they are caught, with ``raise ... from exc``.
"""

from __future__ import annotations

from pathlib import Path


class MediasvcError(Exception):
    """Base of every error mediasvc reports to a user; its message is meant for that user."""


class UsageError(MediasvcError):
    """A command line that cannot be carried out as given."""


class ConfigError(MediasvcError):
    """An invalid TOML file: profile, film layout, MDS definition or service configuration."""

    def __init__(self, file: str | Path, key: str, value: object, reason: str) -> None:
        self.file = str(file)
        self.key = key
        self.value = value
        self.reason = reason
        where = f"{self.file}: {key}" if key else self.file
        shown = "" if value is _NO_VALUE else f" = {value!r}"
        super().__init__(f"{where}{shown}: {reason}")


class _NoValue:
    def __repr__(self) -> str:  # pragma: no cover - never shown
        return "<no value>"


_NO_VALUE: object = _NoValue()
NO_VALUE = _NO_VALUE
"""Pass as ConfigError(value=...) when the key is missing rather than wrong."""


class InputError(MediasvcError):
    """One input file is unusable."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class RejectedFile(InputError):
    """An input file that the profile or the file-set at hand does not accept."""


class FileSetError(MediasvcError):
    """A file-set cannot be written, updated or read."""


class UnsafePathError(FileSetError):
    """A Referenced File ID that resolves outside the media root (``..``, absolute, symlink)."""


class CapacityError(FileSetError):
    """The content does not fit the medium's capacity."""


class MediaError(MediasvcError):
    """Staging trees, ISO images, burners and publishers."""


class BurnError(MediaError):
    """A burn or a disc publisher job failed."""


class VerifyError(MediaError):
    """What was read back differs from the staging tree."""


class StoreError(MediasvcError):
    """The local store or its SQLite index."""


class PeerError(MediasvcError):
    """A DICOM peer (PACS, Print SCP) failed. ``transient``: a retry may help."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        self.transient = transient
        super().__init__(message)


class PrintError(PeerError):
    """A Print SCP refused or failed a film."""


class JobError(MediasvcError):
    """The service's job queue."""

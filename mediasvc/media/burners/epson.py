"""`epson:FOLDER`: Epson disc producers through TD Bridge's job folder.

Lifecycle: the client drops NAME.JDF (a text file of KEY=value lines, keys upper-case and
case sensitive); TD Bridge renames it NAME.RJD when received, NAME.INP while publishing, and
NAME.DON or NAME.ERR at the end (ERROR/ERROR_CODE keys carry the reason).
JOB_ID: at most 40 characters of A-Z, 0-9, '-' and '_' (ours: MSVC + time + 6 hex digits).
"""

from __future__ import annotations

from pathlib import Path

from mediasvc.media.burners import BurnJob
from mediasvc.media.burners.publisher import Lifecycle, PublisherBackend, disc_type

DISC_TYPES = {"cd": "CD", "dvd": "DVD", "bd": "BD"}


class EpsonBackend(PublisherBackend):
    kind = "epson"
    lifecycle = Lifecycle(".JDF", ".RJD", ".INP", ".DON", ".ERR")

    def job_text(self, job: BurnJob, job_id: str, image: Path, size: int) -> str:
        lines = [
            f"JOB_ID={job_id}",
            f"COPIES={job.copies}",
            f"DISC_TYPE={DISC_TYPES[disc_type(size)]}",
            f"IMAGE={image}",
            f"VERIFY={'YES' if job.verify else 'NO'}",
        ]
        if job.label_template:
            lines.append(f"LABEL={job.label_template}")
        # REPLACE_FIELD lines fill the label's replaceable text fields in order.
        lines += [f"REPLACE_FIELD={value}" for value in job.label.values()]
        return "\n".join(lines) + "\n"

    def error_message(self, fields: dict[str, list[str]]) -> str:
        text = "; ".join(fields.get("ERROR", []))
        code = ", ".join(fields.get("ERROR_CODE", []))
        return f"{text} (code {code})" if code else text or "no message from TD Bridge"

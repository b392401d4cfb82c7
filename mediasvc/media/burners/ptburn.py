"""`ptburn:FOLDER`: Primera disc publishers through PTBurn's job request folder.

Lifecycle (PTBurn SDK): the client drops NAME.JRQ; PTBurn renames it NAME.QRJ when it has
queued the job, NAME.INP while burning/printing, and NAME.DON or NAME.ERR at the end (the error
text is in the file's ErrorString/ErrorCode keys, as our emulator writes it too).
"""

from __future__ import annotations

from pathlib import Path

from mediasvc.media.burners import BurnJob
from mediasvc.media.burners.publisher import Lifecycle, PublisherBackend, disc_type

DISC_TYPES = {"cd": "CDR", "dvd": "DVDR", "bd": "BDR"}


class PTBurnBackend(PublisherBackend):
    kind = "ptburn"
    lifecycle = Lifecycle(".JRQ", ".QRJ", ".INP", ".DON", ".ERR")

    def job_text(self, job: BurnJob, job_id: str, image: Path, size: int) -> str:
        lines = [
            f"JobID={job_id}",
            "ClientID=mediasvc",
            f"DiscType={DISC_TYPES[disc_type(size)]}",
            f"ImageFile={image}",
            f"Copies={job.copies}",
            f"VerifyDisc={'YES' if job.verify else 'NO'}",
            "RejectIfNotBlank=YES",
            "CloseDisc=YES",
            "DeleteFiles=NO",
        ]
        if job.label_template:
            lines.append(f"PrintLabel={job.label_template}")
        # MergeField values fill the label design's merge fields in order (PTBurn SDK).
        lines += [f"MergeField={value}" for value in job.label.values()]
        return "\n".join(lines) + "\n"

    def error_message(self, fields: dict[str, list[str]]) -> str:
        text = "; ".join(fields.get("ErrorString", []))
        code = ", ".join(fields.get("ErrorCode", []))
        return f"{text} (code {code})" if code else text or "no message from PTBurn"

"""File-set Updater (FSU): add, remove (Record In-use Flag 0000H), compact. Landing soon.

    add_files(media: Path, files: Sequence[Path], profile: MediaProfile | None = None) -> AddReport
    remove(media: Path, *, sop_instance=None, series=None, study=None, patient=None) -> int
    compact(media: Path) -> int
"""

"""File-set Creator (FSC, PS3.10 section 7.1 / PS3.11): scan sources, write a file-set.

API (stable; the implementation is landing):

    scan = scan_sources(paths, profile, compress=None)      # -> ScanResult
        scan.instances: list[SourceInstance]  accepted, one per SOP Instance UID
        scan.verdicts:  list[Verdict]          one per input file (placed later / rejected now)
    result = write_fileset(scan.instances, out, profile, fileset_id="ID", link="copy")
        writes out/DICOMDIR and out/DICOM/..., returns FileSetResult (verdicts, file ids, bytes)
    report = create_fileset(paths, out, profile, fileset_id=None, capacity=None, compress=None)
        scan + capacity check + write; CapacityError when over capacity

``link``: "copy" (default), "hardlink" (no byte written twice: the staging tree shares the
source's inodes; transcoded files are always new files) or "reflink" (FICLONE, copy fallback).
"""

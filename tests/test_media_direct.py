"""media/direct.py: the extents of an image filled by direct I/O hold exactly the bytes a copy
through the page cache gives, and the image's own bytes (metadata, padding) are kept.
The fallback where a file system refuses O_DIRECT is tested on a ramfs in
test_media_oneshot.py (tmpfs takes O_DIRECT since Linux 6.6)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from mediasvc.errors import MediaError
from mediasvc.media.direct import ALIGN, fill_extents

# Sizes around every boundary that matters: the 2 KiB ISO block, the 4 KiB alignment, the
# chunk (64 KiB here, so that a few MB cross many chunks), and the empty file.
SIZES = [0, 1, 2047, 2048, 2049, 4095, 4096, 4097, 65535, 65536, 65537, 200_003, 3 << 20, 7]


def _layout(tmp: Path, metadata: int, gap_bytes: bool) -> tuple[Path, list[tuple[Path, int, int]],
                                                                  bytearray, int]:
    """An 'image' as pycdlib leaves it: random metadata at the start, holes for the extents
    (2 KiB blocks each), random bytes in some gaps and after the last extent; the sources;
    and the bytes the image must hold afterwards."""
    rng = random.Random(12)
    image = tmp / "image.part"
    expect = bytearray(rng.randbytes(metadata))
    extents = []
    offset = -(-metadata // 2048) * 2048
    for n, size in enumerate(SIZES):
        src = tmp / f"src{n:02d}"
        data = rng.randbytes(size)
        src.write_bytes(data)
        extents.append((src, offset, size))
        expect.extend(bytes(offset - len(expect)))
        expect.extend(data)
        offset += -(-size // 2048) * 2048 + (2048 if n % 3 == 0 else 0)  # some spare blocks
    trailer = rng.randbytes(3000)
    expect.extend(bytes(offset - len(expect)))
    expect.extend(trailer)
    with image.open("wb") as fh:
        fh.write(expect[:metadata])
        if gap_bytes:  # bytes pycdlib might write between extents must survive
            for _src, off, size in extents[1::4]:
                pad = (-size) % 2048
                if pad:
                    fh.seek(off + size)
                    marks = rng.randbytes(pad)
                    fh.write(marks)
                    expect[off + size:off + size + pad] = marks
        fh.seek(offset)
        fh.write(trailer)
    return image, extents, expect, len(expect)


@pytest.mark.parametrize("gap_bytes", [False, True])
@pytest.mark.parametrize("metadata", [32768 + 1234, 4096])
def test_extents_by_direct_io_hold_the_bytes_of_a_plain_copy(tmp_path: Path, metadata: int,
                                                               gap_bytes: bool) -> None:
    image, extents, expect, end = _layout(tmp_path, metadata, gap_bytes)
    assert fill_extents(image, extents, end, chunk=64 << 10) is True  # ext4 takes O_DIRECT
    got = image.read_bytes()
    assert len(got) == end  # the last aligned write is truncated back
    assert got == bytes(expect)


def test_default_chunk_and_a_source_cut_short(tmp_path: Path) -> None:
    image, extents, expect, end = _layout(tmp_path, 40000, True)
    assert fill_extents(image, extents, end) is True
    assert image.read_bytes() == bytes(expect)
    # A source that shrank after it was listed: an error naming it, never a padded extent.
    src, off, size = extents[12]
    os.truncate(src, size - 100)
    with pytest.raises(MediaError, match=rf"{src.name}: shorter than when it was listed"):
        fill_extents(image, extents, end, chunk=16 * ALIGN)

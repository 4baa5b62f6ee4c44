"""Sparse files for the tests that check holes survive heal and rebalance:
one layout of data extents, and the extents a brick file really has
(SEEK_DATA/SEEK_HOLE on the brick's own file, as `filefrag` would see)."""

from __future__ import annotations

import os
from pathlib import Path

MIB = 1 << 20
SPARSE_SIZE = 64 * MIB
# Three 1 MiB data extents and a trailing hole, as a VM image made by
# truncate and partly written: the size comes from a truncate, not data.
SPARSE_EXTENTS = ((3 * MIB, MIB), (29 * MIB, MIB), (60 * MIB, MIB))


def sparse_chunks() -> list[tuple[int, bytes]]:
    """(offset, bytes) of each extent; non-zero and different per extent."""
    return [(off, bytes([k + 1]) * 4096 * (n // 4096))
            for k, (off, n) in enumerate(SPARSE_EXTENTS)]


async def write_sparse(top, fd) -> None:
    """The layout through a translator tree's top: the writes, then the
    size."""
    for off, data in sparse_chunks():
        await top.writev(fd, data, off, 0, None)
    await top.ftruncate(fd, SPARSE_SIZE, None)


def sparse_content() -> bytes:
    buf = bytearray(SPARSE_SIZE)
    for off, data in sparse_chunks():
        buf[off:off + len(data)] = data
    return bytes(buf)


def data_extents(path: Path) -> list[tuple[int, int]]:
    """[(start, end)] of the file's data, from lseek SEEK_DATA/SEEK_HOLE."""
    out: list[tuple[int, int]] = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        off = 0
        while off < size:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:     # ENXIO: no data past off
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            off = end
    finally:
        os.close(fd)
    return out


def assert_sparse_copy(path: Path, source: Path | None = None) -> None:
    """`path` holds the sparse content, allocates about the data only, and
    (when given) has the same data extents as `source`."""
    st = os.stat(path)
    assert st.st_size == SPARSE_SIZE
    data = sum(n for _, n in SPARSE_EXTENTS)
    # ext4/xfs may round extents up, never by tens of MiB
    assert st.st_blocks * 512 <= 2 * data, f"{path}: {st.st_blocks * 512} bytes allocated"
    assert path.read_bytes() == sparse_content()
    extents = data_extents(path)
    assert extents and sum(e - s for s, e in extents) <= 2 * data, extents
    if source is not None:
        assert extents == data_extents(source)

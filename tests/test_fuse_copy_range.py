"""copy_file_range(2) and lseek's SEEK_DATA/SEEK_HOLE on a FUSE mount
(glusterpy/fuse/copy_range.py): the kernel's requests reach the graph, so a
copy of a VM image on a mount - os.copy_file_range, or coreutils' `cp` -
is made on the brick and its holes stay holes.  What crosses the mount is
measured with the client's io-stats (data_written, data_read: every byte a
read or write moved through the graph's top).
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from pathlib import Path

import pytest

from test_fuse import Mount

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")

COUNTED = """
volume s-posix
    type storage/posix
    option directory {brick}
end-volume

volume s-stats
    type debug/io-stats
    option count-fop-hits on
    subvolumes s-posix
end-volume
"""

SIZE = 64 << 20
#: the sparse image's data: (offset, bytes)
EXTENTS = [(1 << 20, b"A" * 65536), (40 << 20, b"B" * 4096), (SIZE - 4096, b"C" * 4096)]
DATA = sum(len(b) for _, b in EXTENTS)


@pytest.fixture
def cleanup():
    mounts: list[Mount] = []
    yield mounts.append
    for m in mounts:
        m.unmount()


def mounted(base: Path) -> Mount:
    m = Mount(base, volfile=COUNTED)
    assert m.ok(), m.result.stderr + (m.log.read_text() if m.log.exists() else "")
    return m


def sparse_image(path: Path) -> None:
    with open(path, "wb") as f:
        f.truncate(SIZE)
        for off, data in EXTENTS:
            f.seek(off)
            f.write(data)


def moved(m: Mount) -> tuple[int, int, int]:
    """(bytes read, bytes written, copy_file_range calls) through the mount's graph."""
    report = json.loads(os.getxattr(m.mnt, "trusted.glusterpy.io-stats.cumulative.peek"))
    c = report["cumulative"]
    return (c["data_read"], c["data_written"],
            c["fops"].get("COPY_FILE_RANGE", {}).get("hits", 0))


def delta(after, before):
    return tuple(a - b for a, b in zip(after, before))


def assert_sparse_copy(src: Path, dst: Path) -> None:
    """dst (on the brick) equals src and has src's holes."""
    assert os.path.getsize(dst) == SIZE
    with open(src, "rb") as a, open(dst, "rb") as b:
        while True:
            x, y = a.read(1 << 20), b.read(1 << 20)
            assert x == y
            if not x:
                break
    fd = os.open(dst, os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, os.SEEK_HOLE) == 0  # it starts with a hole
        assert os.lseek(fd, 0, os.SEEK_DATA) == 1 << 20
    finally:
        os.close(fd)
    assert os.stat(dst).st_blocks * 512 < 1 << 20


def test_copy_file_range_is_made_on_the_brick(tmp_path, cleanup):
    m = mounted(tmp_path)
    cleanup(m)
    sparse_image(m.mnt / "src.img")
    before = moved(m)
    a = os.open(m.mnt / "src.img", os.O_RDONLY)
    b = os.open(m.mnt / "dst.img", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        copied = 0
        while copied < SIZE:
            n = os.copy_file_range(a, b, SIZE - copied)
            assert n > 0
            copied += n
        # with offsets: a piece of the source's data, into the middle of a file
        c = os.open(m.mnt / "piece", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            assert os.copy_file_range(a, c, 4096, (40 << 20) + 1024, 8192) == 4096
            read, written, calls = delta(moved(m), before)
            assert os.pread(c, 8192 + 4096, 0) == bytes(8192) + b"B" * 3072 + bytes(1024)
        finally:
            os.close(c)
    finally:
        os.close(a)
        os.close(b)
    # nothing of the image crossed the mount: the brick copied it
    assert (read, written) == (0, 0) and calls >= 2
    assert_sparse_copy(m.brick / "src.img", m.brick / "dst.img")
    assert (m.mnt / "dst.img").read_bytes() == (m.brick / "src.img").read_bytes()


def test_cp_keeps_holes_and_moves_only_the_data(tmp_path, cleanup):
    """coreutils' cp of a sparse file asks SEEK_DATA/SEEK_HOLE for its
    extents and copies those; the answers come from the brick, so only the
    data (here 72 KiB of 64 MiB) crosses the mount."""
    m = mounted(tmp_path)
    cleanup(m)
    sparse_image(m.mnt / "src.img")
    fd = os.open(m.mnt / "src.img", os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, os.SEEK_DATA) == 1 << 20
        assert os.lseek(fd, 1 << 20, os.SEEK_HOLE) == (1 << 20) + 65536
        assert os.lseek(fd, (1 << 20) + 65536, os.SEEK_DATA) == 40 << 20
        with pytest.raises(OSError) as e:
            os.lseek(fd, SIZE, os.SEEK_DATA)
        assert e.value.errno == errno.ENXIO
    finally:
        os.close(fd)
    before = moved(m)
    subprocess.run(["cp", str(m.mnt / "src.img"), str(m.mnt / "cp.img")], check=True)
    read, written, _ = delta(moved(m), before)
    assert read <= 2 * DATA and written <= DATA, (read, written)
    assert_sparse_copy(m.brick / "src.img", m.brick / "cp.img")


def test_cp_of_a_dense_file_copies_on_the_brick(tmp_path, cleanup):
    """A file without holes: cp asks for copy_file_range, and no byte of it
    crosses the mount."""
    m = mounted(tmp_path)
    cleanup(m)
    payload = os.urandom(8 << 20)
    (m.mnt / "dense").write_bytes(payload)
    before = moved(m)
    subprocess.run(["cp", str(m.mnt / "dense"), str(m.mnt / "dense2")], check=True)
    read, written, calls = delta(moved(m), before)
    assert (read, written) == (0, 0) and calls >= 1, (read, written, calls)
    assert (m.brick / "dense2").read_bytes() == payload


def test_copy_errors(tmp_path, cleanup):
    m = mounted(tmp_path / "one")
    cleanup(m)
    (m.mnt / "f").write_bytes(b"x" * 8192)
    src = os.open(m.mnt / "f", os.O_RDONLY)
    wronly = os.open(m.mnt / "g", os.O_WRONLY | os.O_CREAT, 0o644)
    outside = os.open(tmp_path / "outside", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        before = moved(m)
        # the kernel's own checks: a source not open for reading, a target
        # not open for writing
        for a, b in ((wronly, wronly), (src, src)):
            with pytest.raises(OSError) as e:
                os.copy_file_range(a, b, 4096)
            assert e.value.errno == errno.EBADF
        # to another filesystem: EXDEV (cp falls back to read+write)
        with pytest.raises(OSError) as e:
            os.copy_file_range(src, outside, 4096)
        assert e.value.errno == errno.EXDEV
        assert delta(moved(m), before)[2] == 0
        # between two mounts (two FUSE connections): the kernel copies by
        # read+write itself, and the copy is right
        m2 = mounted(tmp_path / "two")
        cleanup(m2)
        other = os.open(m2.mnt / "h", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            assert os.copy_file_range(src, other, 8192) == 8192
        finally:
            os.close(other)
        assert (m2.brick / "h").read_bytes() == b"x" * 8192
        assert moved(m2)[2] == 0
    finally:
        for fd in (src, wronly, outside):
            os.close(fd)

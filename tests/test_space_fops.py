"""discard, zerofill, fallocate and SEEK_DATA/SEEK_HOLE through
distribute over replicate and through stripe (issue 21: QEMU's gluster
driver uses them for discard, write-zeroes and block status).

The conformance suite (tests/conformance.py) checks what these fops read
back on each translator alone; here the bricks themselves are looked at:
a discard frees the range on every brick that holds it (a hole SEEK_HOLE
finds there, fewer blocks allocated), replicas stay alike extent for
extent, and the volume's SEEK_DATA/SEEK_HOLE answers are what the brick
files' own extents say.

Graphs are in process over storage/posix bricks (the brick stacks of
replicate_support; test_stripe's volfile), as the conformance tests run.
"""

from __future__ import annotations

import errno
import os

import pytest

from glusterpy.fops import ROOT_GFID, Fd, FopError, Loc, SeekWhat
from glusterpy.graph import Graph
from xlators.cluster.stripe import Geometry

from replicate_support import afr_xattrs, brick_stack, gfid_req, make_bricks
from sparse_support import data_extents
from test_distribute import is_linkto
from test_stripe import stripe_volfile

MIB = 1 << 20
KEEP_SIZE = 0x01            # FALLOC_FL_KEEP_SIZE
SIZE = 4 * MIB
DISCARDED = (1 * MIB, MIB)
ZEROED = (3 * MIB, MIB // 2)
KEPT = (SIZE, MIB)          # fallocate KEEP_SIZE past the end
GROWN = (SIZE, 2 * MIB)     # fallocate that grows the file


def dist_rep_volfile(bricks, vol: str = "dr", replica: int = 2) -> str:
    """distribute over len(bricks)/replica replicate sets of brick stacks,
    named as glusterd's volgen names them."""
    text, sets = "", []
    for s in range(len(bricks) // replica):
        children = []
        for i in range(s * replica, (s + 1) * replica):
            t, top = brick_stack(vol, i, bricks[i])
            text += t
            children.append(top)
        text += (f"volume {vol}-replicate-{s}\n    type cluster/replicate\n"
                 f"    option afr-pending-xattr {','.join(children)}\n"
                 f"    subvolumes {' '.join(children)}\nend-volume\n")
        sets.append(f"{vol}-replicate-{s}")
    return text + (f"volume {vol}-dht\n    type cluster/distribute\n"
                   f"    subvolumes {' '.join(sets)}\nend-volume\n")


def expected() -> bytes:
    buf = bytearray(b"\x11" * SIZE)
    for off, n in (DISCARDED, ZEROED):
        buf[off:off + n] = bytes(n)
    return bytes(buf) + bytes(GROWN[1])


async def seek_or_enxio(top, fd, off, what) -> int | None:
    try:
        return (await top.seek(fd, off, what, None)).offset
    except FopError as e:
        assert e.errno == errno.ENXIO, e
        return None


def lseek_or_enxio(path, off, whence) -> int | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, off, whence)
    except OSError as e:
        assert e.errno == errno.ENXIO, e
        return None
    finally:
        os.close(fd)


def allocated(paths) -> int:
    return sum(os.stat(p).st_blocks * 512 for p in paths)


async def exercise(top, brick_files, copies: int):
    """The fops in the order a guest sends them; returns the fd (open).
    `brick_files()` lists the brick files holding the file's data, which
    keep `copies` copies of each byte."""
    fd = Fd(flags=os.O_RDWR)
    r = await top.create(Loc(path="/img", pargfid=ROOT_GFID, name="img"),
                         os.O_RDWR | os.O_CREAT, 0o644, 0, fd, gfid_req())
    fd.gfid = r.iatt.gfid
    for off in range(0, SIZE, MIB):
        await top.writev(fd, b"\x11" * MIB, off, 0, None)
    await top.fsync(fd, 0, None)
    full = allocated(brick_files())
    assert full >= SIZE * copies, full

    await top.discard(fd, *DISCARDED, None)
    freed = full - allocated(brick_files())
    # every copy of the range is freed, not just overwritten with zeros
    assert freed >= DISCARDED[1] * copies, (full, freed)
    # the volume finds the hole where the discard made it
    assert (await top.seek(fd, 0, SeekWhat.HOLE, None)).offset == DISCARDED[0]
    assert (await top.seek(fd, DISCARDED[0], SeekWhat.DATA, None)).offset == sum(DISCARDED)

    await top.zerofill(fd, *ZEROED, None)
    assert (await top.fstat(fd, None)).iatt.size == SIZE
    await top.fallocate(fd, KEEP_SIZE, *KEPT, None)
    assert (await top.fstat(fd, None)).iatt.size == SIZE
    await top.fallocate(fd, 0, *GROWN, None)
    assert (await top.fstat(fd, None)).iatt.size == SIZE + GROWN[1]
    back = bytes((await top.readv(fd, 2 * SIZE, 0, 0, None)).data)
    assert back == expected()
    return fd


def probe_offsets(size: int) -> list[int]:
    return sorted({*range(0, size, MIB // 4), *(o + 4097 for o in range(0, size, MIB // 2)),
                   size - 1})


async def test_distribute_replicate_frees_holes_on_every_replica(tmp_path):
    bricks = make_bricks(tmp_path, 4)
    graph = Graph.from_text(dist_rep_volfile(bricks))
    async with graph.running():
        assert await graph.wait_child_up(5)
        top = graph.top
        await top.lookup(Loc.root(), None)

        def copies():
            return [b / "img" for b in bricks
                    if (b / "img").exists() and not is_linkto(b / "img")]

        fd = await exercise(top, copies, 2)
        await top.flush(fd, None)
        files = copies()
        assert len(files) == 2
        # the replicas are alike byte for byte and extent for extent, and
        # nothing is left pending between them
        assert files[0].read_bytes() == files[1].read_bytes() == expected()
        assert data_extents(files[0]) == data_extents(files[1])
        assert (DISCARDED[0], sum(DISCARDED)) not in data_extents(files[0])
        for f in files:
            assert all(v == bytes(12) for v in afr_xattrs(f).values()), afr_xattrs(f)
        # SEEK_DATA/SEEK_HOLE through the volume are the brick file's
        size = SIZE + GROWN[1]
        for off in probe_offsets(size):
            for what, whence in ((SeekWhat.DATA, os.SEEK_DATA),
                                 (SeekWhat.HOLE, os.SEEK_HOLE)):
                assert await seek_or_enxio(top, fd, off, what) == \
                    lseek_or_enxio(files[0], off, whence), (off, what)
        await top.release(fd, None)


def file_seek(pieces, geometry: Geometry, size: int, off: int, data: bool) -> int | None:
    """SEEK_DATA/SEEK_HOLE of a striped file from its pieces' own extents,
    in steps of 4 KiB (every range here is 4 KiB aligned)."""
    def is_data(pos):
        piece = pieces[(pos // geometry.block_size) % geometry.count]
        local = geometry.local_offset(pos)
        at = lseek_or_enxio(piece, local, os.SEEK_DATA)
        return at is not None and at <= local
    step = 4096
    pos = off
    while pos < size:
        if is_data(pos) == data:
            return pos
        pos = (pos // step + 1) * step
    return None if data else size


@pytest.mark.parametrize("coalesce", [True, False])
async def test_stripe_frees_holes_in_the_pieces(tmp_path, coalesce):
    graph = Graph.from_text(stripe_volfile(tmp_path, 2, coalesce, block_size="64KB"))
    pieces = [tmp_path / f"brick{i}" / "img" for i in range(2)]
    async with graph.running():
        assert await graph.wait_child_up(5)
        top = graph.top
        await top.lookup(Loc.root(), None)
        fd = await exercise(top, lambda: [p for p in pieces if p.exists()], 1)
        geometry = Geometry(64 * 1024, 2, coalesce)
        size = SIZE + GROWN[1]
        # each piece lost its share of the discarded range
        for p in pieces:
            local = geometry.local_offset(DISCARDED[0])
            at = lseek_or_enxio(p, local, os.SEEK_HOLE)
            assert at == local, (p, local, data_extents(p))
        for off in probe_offsets(size):
            for what, data in ((SeekWhat.DATA, True), (SeekWhat.HOLE, False)):
                assert await seek_or_enxio(top, fd, off, what) == \
                    file_seek(pieces, geometry, size, off, data), (off, what)
        await top.release(fd, None)

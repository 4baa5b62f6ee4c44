"""storage/posix's per-fd iatt (PosixMdata._fd_iatt keeps the fields of the
last iatt it made for a descriptor and reuses them while the fstat shows
the same file; issue 15): every reply still tells the file as it is now -
after a write through the brick, a change from outside it, an mdata
store - and each reply gets its own Iatt object."""

from __future__ import annotations

import os
import time

import pytest

from glusterpy import volfile as vf
from glusterpy.fops import Iatt
from glusterpy.graph import Graph
from glusterpy.keys import MDATA_KEY
from test_io_threads import make_file, volfile
from xlators.storage.posix.mdata import mdata_decode, mdata_encode

BLOCK = 4096
NS = 1_000_000_000


def fields(ia: Iatt) -> dict:
    return {name: getattr(ia, name) for name in Iatt.__slots__}


@pytest.mark.parametrize("o_direct", [False, True], ids=["buffered", "o-direct-aio"])
async def test_read_replies_tell_the_file_as_it_is(brick, o_direct):
    graph = Graph.from_text(volfile(brick, o_direct=o_direct, linux_aio=True))
    async with graph.running():
        top = graph.top
        fd = await make_file(top, "img", os.urandom(2 * BLOCK))
        path = brick / "img"

        first = (await top.readv(fd, BLOCK, 0, 0, None)).iatt
        second = (await top.readv(fd, BLOCK, BLOCK, 0, None)).iatt
        assert fields(first) == fields(second) and first is not second
        assert first.size == 2 * BLOCK and first.nlink == 1
        # a translator above may change its reply's iatt: the next is unharmed
        first.size, first.mtime = 1, 1
        assert fields((await top.readv(fd, BLOCK, 0, 0, None)).iatt) == fields(second)

        # a write through the brick: the size, and the times it moved (mdata)
        written = await top.writev(fd, os.urandom(BLOCK), 2 * BLOCK, 0, None)
        after = (await top.readv(fd, BLOCK, 0, 0, None)).iatt
        assert after.size == 3 * BLOCK
        assert (after.mtime, after.mtime_nsec) == (written.postbuf.mtime,
                                                   written.postbuf.mtime_nsec)
        assert fields(after) == fields(written.postbuf)

        # from outside the brick: a larger file, then other times in the mdata xattr
        time.sleep(0.02)             # past the kernel's ctime tick of the last change
        os.truncate(path, 4 * BLOCK)
        assert (await top.readv(fd, BLOCK, 0, 0, None)).iatt.size == 4 * BLOCK
        c, m, a = mdata_decode(os.getxattr(path, MDATA_KEY))
        time.sleep(0.02)
        os.setxattr(path, MDATA_KEY, mdata_encode(c, 1_500_000_000 * NS + 7, a))
        moved = (await top.readv(fd, BLOCK, 0, 0, None)).iatt
        assert (moved.mtime, moved.mtime_nsec) == (1_500_000_000, 7)
        assert moved.size == 4 * BLOCK

        # the ctime option off: the times are the inode's own again
        graph.reconfigure(vf.parses(volfile(brick, o_direct=o_direct, linux_aio=True)
                                    .replace(" option linux-aio",
                                             " option ctime off\n option linux-aio")))
        plain = (await top.readv(fd, BLOCK, 0, 0, None)).iatt
        st = os.stat(path)
        assert plain.mtime * NS + plain.mtime_nsec == st.st_mtime_ns
        await top.release(fd, None)

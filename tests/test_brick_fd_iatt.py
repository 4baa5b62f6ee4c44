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


@pytest.mark.parametrize("o_direct", [False, True], ids=["buffered", "o-direct-aio"])
async def test_writes_store_mdata_without_reading_it_again(brick, o_direct, monkeypatch):
    """A write moves the mdata times with one fsetxattr and no fgetxattr
    once the file's mdata is known (posix_set_ctime's inode-context copy);
    each reply's postbuf carries the times stored on disk, and a store from
    outside the brick between writes is still seen and never moved back."""
    graph = Graph.from_text(volfile(brick, o_direct=o_direct, linux_aio=True))
    async with graph.running():
        top = graph.top
        fd = await make_file(top, "img", os.urandom(BLOCK))
        path = brick / "img"
        await top.writev(fd, os.urandom(BLOCK), 0, 0, None)   # the mdata is known now
        calls = {"get": 0, "set": 0}
        real_get, real_set = os.getxattr, os.setxattr

        def counting_get(target, key, *a, **kw):
            calls["get"] += key == MDATA_KEY
            return real_get(target, key, *a, **kw)

        def counting_set(target, key, *a, **kw):
            calls["set"] += key == MDATA_KEY
            return real_set(target, key, *a, **kw)
        monkeypatch.setattr(os, "getxattr", counting_get)
        monkeypatch.setattr(os, "setxattr", counting_set)
        last = 0
        for i in range(4):
            post = (await top.writev(fd, os.urandom(BLOCK), i * BLOCK, 0, None)).postbuf
            stored = mdata_decode(real_get(path, MDATA_KEY))
            assert (post.ctime * NS + post.ctime_nsec, post.mtime * NS + post.mtime_nsec) \
                == stored[:2]
            assert stored[1] >= last
            last = stored[1]
        assert calls == {"get": 0, "set": 4}
        monkeypatch.undo()

        # from outside: an mtime ahead of any clock; the next write must keep it
        time.sleep(0.02)             # past the kernel's ctime tick of the last change
        c, _m, a = mdata_decode(os.getxattr(path, MDATA_KEY))
        ahead = 4_000_000_000 * NS + 11
        os.setxattr(path, MDATA_KEY, mdata_encode(c, ahead, a))
        post = (await top.writev(fd, os.urandom(BLOCK), 0, 0, None)).postbuf
        assert (post.mtime, post.mtime_nsec) == (4_000_000_000, 11)
        assert mdata_decode(os.getxattr(path, MDATA_KEY))[1] == ahead
        await top.release(fd, None)

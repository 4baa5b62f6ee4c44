"""storage/posix's per-fd iatt (PosixMdata._fd_iatt keeps the fields of the
last iatt it made for a descriptor and reuses them while the fstat shows
the same file; issue 15): every reply still tells the file as it is now -
after a write through the brick, a change from outside it, an mdata
store - and each reply gets its own Iatt object."""

from __future__ import annotations

import os
import time

import pytest

from glusterpy import fops
from glusterpy import volfile as vf
from glusterpy.fops import GFID, Fd, Iatt, Loc
from glusterpy.graph import Graph
from glusterpy.keys import MDATA_KEY
from test_io_threads import make_file, volfile
from xlators.storage.posix.helpers import MdataCache, xset
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


def _times(ia: Iatt) -> tuple[int, int, int]:
    return (ia.ctime * NS + ia.ctime_nsec, ia.mtime * NS + ia.mtime_nsec,
            ia.atime * NS + ia.atime_nsec)


def test_a_named_store_retires_only_its_inode_and_none_outlives_one(tmp_path, monkeypatch):
    """MdataCache retires per inode (GlusterFS keeps mdata in the inode's
    context): a store of one file's mdata leaves the other files' entries
    held, yet no entry - read, or kept from a store (`put`) - is served
    once a later store through the brick landed on its inode, even when
    that store left ctime as it was (the kernel's coarse clock: the stat
    below is the one taken before every store).  A store whose inode is
    not named retires every entry; so does forgetting the per-inode
    numbers past their bound."""
    (tmp_path / "a").write_bytes(b"")
    (tmp_path / "b").write_bytes(b"")
    fa = os.open(tmp_path / "a", os.O_RDONLY)
    fb = os.open(tmp_path / "b", os.O_RDONLY)
    try:
        sta, stb = os.fstat(fa), os.fstat(fb)
        ia, ib = (sta.st_dev, sta.st_ino), (stb.st_dev, stb.st_ino)
        xset(fa, MDATA_KEY, b"a1", 0, ia)
        xset(fb, MDATA_KEY, b"b1", 0, ib)
        sta, stb = os.fstat(fa), os.fstat(fb)
        cache = MdataCache()
        assert cache.get(fa, sta) == b"a1" and cache.get(fb, stb) == b"b1"
        os.setxattr(fb, MDATA_KEY, b"b-beside")        # beside the brick, ctime kept
        xset(fa, MDATA_KEY, b"a2", 0, ia)              # a's store, in the same tick
        assert cache.get(fa, sta) == b"a2"             # never older than our store
        assert cache.get(fb, stb) == b"b1"             # b's entry outlived a's store
        n = xset(fa, MDATA_KEY, b"a3", 0, ia)          # a write's store, kept
        cache.put(sta, b"a3", n)
        assert cache.get(fa, sta) == b"a3"
        xset(fa, MDATA_KEY, b"a4", 0, ia)              # another client's setattr
        assert cache.get(fa, sta) == b"a4"
        cache.put(sta, b"a3", n)                       # a put of an older store
        assert cache.get(fa, sta) == b"a4"
        xset(fa, MDATA_KEY, b"a5", 0)                  # the inode not named
        assert cache.get(fb, stb) == b"b-beside" and cache.get(fa, sta) == b"a5"
        os.setxattr(fb, MDATA_KEY, b"b-again")         # beside the brick, ctime kept
        assert cache.get(fb, stb) == b"b-beside"       # held
        monkeypatch.setattr(MdataCache, "STORES_LIMIT", len(MdataCache.inode_stores))
        xset(fa, MDATA_KEY, b"a6", 0, ia)              # past the bound: all forgotten
        assert len(MdataCache.inode_stores) == 1
        assert cache.get(fb, stb) == b"b-again" and cache.get(fa, sta) == b"a6"
    finally:
        os.close(fa)
        os.close(fb)


async def test_writes_across_files_and_creates_in_a_directory_read_no_mdata(brick, monkeypatch):
    """Issue 15/17: a store of one file's (or the parent's) mdata no longer
    retires what is held of the others, so writes spread over several open
    files, and a create storm in one directory with a write right after
    each create, read no mdata xattr (fio's random writes over 4 jobs, the
    small-file creates); every reply still carries exactly the times
    stored on disk before and after it - also after another client's
    setattr of times on one of the files through the same brick."""
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        dgfid = GFID.random()
        await top.mkdir(Loc.child(Loc.root(), "d"), 0o755, 0o022, {"gfid-req": dgfid})
        dloc = Loc(gfid=dgfid, path="/d")
        d = brick / "d"
        fds = []
        for i in range(4):
            fd = Fd()
            await top.create(Loc.child(dloc, f"w{i}"), os.O_CREAT | os.O_RDWR, 0o644, 0o022,
                             fd, {"gfid-req": GFID.random()})
            await top.writev(fd, os.urandom(BLOCK), 0, 0, None)
            fds.append(fd)
        real_get = os.getxattr
        reads = []

        def counting_get(target, key, *a, **kw):
            if key == MDATA_KEY:
                reads.append(target)
            return real_get(target, key, *a, **kw)

        def disk(path) -> tuple[int, int, int]:
            return mdata_decode(real_get(path, MDATA_KEY))
        monkeypatch.setattr(os, "getxattr", counting_get)
        for r in range(3):
            for i, fd in enumerate(fds):
                before = disk(d / f"w{i}")
                w = await top.writev(fd, os.urandom(BLOCK), BLOCK * r, 0, None)
                assert _times(w.prebuf) == before
                assert _times(w.postbuf) == disk(d / f"w{i}")
        for i in range(4):
            parent = disk(d)
            fd = Fd()
            c = await top.create(Loc.child(dloc, f"n{i}"),
                                 os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644, 0o022, fd,
                                 {"gfid-req": GFID.random()})
            assert _times(c.preparent) == parent and _times(c.postparent) == disk(d)
            assert _times(c.iatt) == disk(d / f"n{i}")
            w = await top.writev(fd, b"x" * 100, 0, 0, None)
            assert _times(w.prebuf) == _times(c.iatt)
            assert _times(w.postbuf) == disk(d / f"n{i}")
            await top.release(fd, None)
        assert reads == []
        # another client sets w0's times through the same brick; the next
        # write through the first client's fd starts from them, keeps the
        # atime set and moves mtime and ctime from there
        r = await top.lookup(Loc.child(dloc, "w0"), None)
        atime, mtime = 1_100_000_000 * NS + 3, 1_200_000_000 * NS + 5
        await top.setattr(Loc(gfid=r.iatt.gfid), Iatt(atime=atime // NS, atime_nsec=atime % NS,
                                                      mtime=mtime // NS, mtime_nsec=mtime % NS),
                          fops.SET_ATTR_ATIME | fops.SET_ATTR_MTIME, None)
        w = await top.writev(fds[0], os.urandom(BLOCK), 0, 0, None)
        assert _times(w.prebuf)[1:] == (mtime, atime)
        c, m, a = disk(d / "w0")
        assert a == atime and m > mtime and _times(w.postbuf) == (c, m, a)
        monkeypatch.undo()
        for fd in fds:
            await top.release(fd, None)

"""The conformance suite every translator and every stack runs.

A test module hands it a factory - an async context manager that sets up
what the stack needs (bricks, a server process) and yields a Graph not yet
started - and gets one test per check:

    from conformance import conformance_tests
    test_conformance = conformance_tests(my_factory)

Each check starts a fresh graph and drives it either with raw fops on the
top translator (so path-level help from gfapi cannot hide a fault) or
through gfapi's AsyncVolume over that graph.  A stack passes when it
behaves like a local POSIX filesystem as GlusterFS presents one: the same
results, the same errnos, data read back as written.
"""

from __future__ import annotations

import errno
import os
import stat

import pytest
import trio

from glusterpy import fops
from glusterpy.fops import (GFID, ROOT_GFID, Fd, FopError, Iatt, Loc, SET_ATTR_MODE,
                            SET_ATTR_MTIME, SET_ATTR_ATIME, SeekWhat)
from glusterpy.gfapi import AsyncVolume

CHECKS = []


def check(fn):
    """A check on raw fops: gets the running graph."""
    fn.kind = "fops"
    CHECKS.append(fn)
    return fn


def gfapi_check(fn):
    """A check through gfapi: gets an AsyncVolume mounted on the graph."""
    fn.kind = "gfapi"
    CHECKS.append(fn)
    return fn


def gfid_req() -> dict:
    return {"gfid-req": GFID.random()}


async def fop_error(awaitable) -> str:
    try:
        await awaitable
    except FopError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    return "ok"


# -- raw fops -----------------------------------------------------------------

@check
async def root_lookup_and_statfs(graph):
    top = graph.top
    root = (await top.lookup(Loc.root(), None)).iatt
    assert root.gfid == ROOT_GFID and root.is_dir
    sv = (await top.statfs(Loc.root(), None)).statvfs
    assert sv.blocks > 0 and sv.bsize > 0


@check
async def create_write_read_stat(graph):
    top = graph.top
    fd = Fd(flags=os.O_RDWR)
    reply = await top.create(Loc(path="/f", pargfid=ROOT_GFID, name="f"),
                             os.O_RDWR | os.O_CREAT, 0o640, 0, fd, gfid_req())
    gfid = reply.iatt.gfid
    fd.gfid = gfid
    assert reply.iatt.is_reg and stat.S_IMODE(reply.iatt.mode) == 0o640
    data = bytes(range(256)) * 1024
    w = await top.writev(fd, data, 4096, 0, None)
    assert w.count == len(data) and w.postbuf.size == 4096 + len(data)
    r = await top.readv(fd, len(data) + 100, 4096, 0, None)
    assert bytes(r.data) == data
    r = await top.readv(fd, 4096, 0, 0, None)
    assert bytes(r.data) == bytes(4096)  # the hole reads as zeros
    assert bytes((await top.readv(fd, 10, 10 ** 9, 0, None)).data) == b""
    st_ = (await top.fstat(fd, None)).iatt
    assert st_.gfid == gfid and st_.size == 4096 + len(data)
    looked = (await top.lookup(Loc(path="/f", pargfid=ROOT_GFID, name="f"), None)).iatt
    assert looked.gfid == gfid
    by_gfid = (await top.stat(Loc(gfid=gfid), None)).iatt
    assert by_gfid.size == st_.size
    await top.flush(fd, None)
    await top.release(fd, None)


@check
async def namespace_errors(graph):
    top = graph.top
    missing = Loc(path="/nope", pargfid=ROOT_GFID, name="nope")
    assert await fop_error(top.lookup(missing, None)) == "ENOENT"
    d = await top.mkdir(Loc(path="/d", pargfid=ROOT_GFID, name="d"), 0o755, 0, gfid_req())
    assert await fop_error(top.mkdir(Loc(path="/d", pargfid=ROOT_GFID, name="d"),
                                     0o755, 0, gfid_req())) == "EEXIST"
    fd = Fd(flags=os.O_WRONLY)
    await top.create(Loc(path="/d/x", pargfid=d.iatt.gfid, name="x"),
                     os.O_WRONLY | os.O_CREAT, 0o644, 0, fd, gfid_req())
    await top.release(fd, None)
    assert await fop_error(top.rmdir(Loc(path="/d", pargfid=ROOT_GFID, name="d",
                                         gfid=d.iatt.gfid), 0, None)) == "ENOTEMPTY"
    assert await fop_error(top.unlink(Loc(path="/d", pargfid=ROOT_GFID, name="d",
                                          gfid=d.iatt.gfid), 0, None)) == "EISDIR"
    await top.unlink(Loc(path="/d/x", pargfid=d.iatt.gfid, name="x"), 0, None)
    await top.rmdir(Loc(path="/d", pargfid=ROOT_GFID, name="d", gfid=d.iatt.gfid), 0, None)
    assert await fop_error(top.lookup(Loc(path="/d", pargfid=ROOT_GFID, name="d"),
                                      None)) == "ENOENT"


@check
async def rename_link_symlink(graph):
    top = graph.top
    fd = Fd(flags=os.O_WRONLY)
    a = await top.create(Loc(path="/a", pargfid=ROOT_GFID, name="a"),
                         os.O_WRONLY | os.O_CREAT, 0o644, 0, fd, gfid_req())
    await top.release(fd, None)
    gfid = a.iatt.gfid
    linked = await top.link(Loc(path="/a", gfid=gfid, pargfid=ROOT_GFID, name="a"),
                            Loc(path="/b", pargfid=ROOT_GFID, name="b"), None)
    assert linked.iatt.gfid == gfid and linked.iatt.nlink == 2
    await top.rename(Loc(path="/b", gfid=gfid, pargfid=ROOT_GFID, name="b"),
                     Loc(path="/c", pargfid=ROOT_GFID, name="c"), None)
    assert (await top.lookup(Loc(path="/c", pargfid=ROOT_GFID, name="c"), None)).iatt.gfid == gfid
    s = await top.symlink("c", Loc(path="/s", pargfid=ROOT_GFID, name="s"), 0, gfid_req())
    assert s.iatt.is_link
    assert (await top.readlink(Loc(path="/s", gfid=s.iatt.gfid), 4096, None)).path == "c"


@check
async def readdir_resumes_from_offsets(graph):
    top = graph.top
    d = await top.mkdir(Loc(path="/many", pargfid=ROOT_GFID, name="many"), 0o755, 0,
                        gfid_req())
    names = {f"entry-{i:03}" for i in range(150)}
    for name in names:
        await top.mknod(Loc(path=f"/many/{name}", pargfid=d.iatt.gfid, name=name),
                        stat.S_IFREG | 0o644, 0, 0, gfid_req())
    dfd = Fd(gfid=d.iatt.gfid, is_dir=True)
    await top.opendir(Loc(path="/many", gfid=d.iatt.gfid), dfd, None)
    seen, offset = [], 0
    while True:
        # a small budget forces many round trips
        entries = (await top.readdirp(dfd, 1024, offset, None)).entries
        if not entries:
            break
        for e in entries:
            seen.append(e.name)
            if e.name not in (".", ".."):
                assert e.iatt is not None and e.iatt.is_reg
        offset = entries[-1].off
    await top.releasedir(dfd, None)
    assert sorted(n for n in seen if n not in (".", "..")) == sorted(names)
    assert len(seen) == len(set(seen))


@check
async def xattrs_and_xattrop(graph):
    top = graph.top
    d = await top.mkdir(Loc(path="/x", pargfid=ROOT_GFID, name="x"), 0o755, 0, gfid_req())
    loc = Loc(path="/x", gfid=d.iatt.gfid)
    await top.setxattr(loc, {"user.k": b"v1"}, 0, None)
    assert (await top.getxattr(loc, "user.k", None)).dict["user.k"] == b"v1"
    assert await fop_error(top.setxattr(loc, {"user.k": b"v2"}, 1, None)) == "EEXIST"
    assert await fop_error(top.getxattr(loc, "user.none", None)) == "ENODATA"
    counter = (2).to_bytes(4, "big") + (0).to_bytes(4, "big")
    got = await top.xattrop(loc, fops.XattropType.ADD_ARRAY, {"trusted.test": counter}, None)
    assert got.dict["trusted.test"] == counter
    got = await top.xattrop(loc, fops.XattropType.ADD_ARRAY, {"trusted.test": counter}, None)
    assert got.dict["trusted.test"] == (4).to_bytes(4, "big") + bytes(4)
    await top.removexattr(loc, "user.k", None)
    assert await fop_error(top.getxattr(loc, "user.k", None)) == "ENODATA"


@check
async def setattr_truncate_and_space_fops(graph):
    top = graph.top
    fd = Fd(flags=os.O_RDWR)
    r = await top.create(Loc(path="/t", pargfid=ROOT_GFID, name="t"),
                         os.O_RDWR | os.O_CREAT, 0o600, 0, fd, gfid_req())
    fd.gfid = r.iatt.gfid
    loc = Loc(path="/t", gfid=r.iatt.gfid)
    await top.writev(fd, b"\x01" * 65536, 0, 0, None)
    post = (await top.setattr(loc, Iatt(mode=0o751, mtime=1234, atime=99), SET_ATTR_MODE |
                              SET_ATTR_MTIME | SET_ATTR_ATIME, None)).postbuf
    assert stat.S_IMODE(post.mode) == 0o751 and post.mtime == 1234
    await top.zerofill(fd, 0, 4096, None)
    await top.discard(fd, 8192, 4096, None)
    data = bytes((await top.readv(fd, 16384, 0, 0, None)).data)
    assert data == bytes(4096) + b"\x01" * 4096 + bytes(4096) + b"\x01" * 4096
    assert (await top.ftruncate(fd, 100, None)).postbuf.size == 100
    assert (await top.truncate(loc, 5000, None)).postbuf.size == 5000
    await top.fallocate(fd, 0, 0, 1 << 20, None)
    assert (await top.fstat(fd, None)).iatt.size == 1 << 20
    await top.release(fd, None)


@check
async def copy_file_range_and_seek(graph):
    """copy_file_range copies within the volume (every stack serves it);
    SEEK_DATA finds the data a write put at 0, SEEK_HOLE no hole before it."""
    top = graph.top
    fds = []
    for name in ("src", "dst"):
        fd = Fd(flags=os.O_RDWR)
        r = await top.create(Loc(path=f"/{name}", pargfid=ROOT_GFID, name=name),
                             os.O_RDWR | os.O_CREAT, 0o600, 0, fd, gfid_req())
        fd.gfid = r.iatt.gfid
        fds.append(fd)
    src, dst = fds
    data = os.urandom(100_000)
    await top.writev(src, data, 0, 0, None)
    await top.writev(dst, b"\x07" * 10, 0, 0, None)
    r = await top.copy_file_range(src, 10, dst, 5, 50_000, 0, None)
    assert r.count == 50_000
    back = bytes((await top.readv(dst, 60_000, 0, 0, None)).data)
    assert back[:5] == b"\x07" * 5 and back[5:50_005] == data[10:50_010]
    assert (await top.seek(src, 0, SeekWhat.DATA, None)).offset == 0
    assert (await top.seek(src, 0, SeekWhat.HOLE, None)).offset >= 4096
    for fd in fds:
        await top.release(fd, None)


# -- through gfapi -----------------------------------------------------------------

@gfapi_check
async def gfapi_tree_round_trip(vol):
    await vol.makedirs("/p/q/r")
    for i in range(20):
        async with await vol.fopen(f"/p/q/r/f{i}", "w") as f:
            await f.write(os.urandom(10) + bytes([i]) * (i * 1000))
    await vol.symlink("q/r", "/p/rl")
    assert sorted(await vol.listdir("/p/rl")) == sorted(f"f{i}" for i in range(20))
    for i in range(20):
        async with await vol.fopen(f"/p/rl/f{i}") as f:
            data = await f.read()
        assert data[10:] == bytes([i]) * (i * 1000)
    await vol.rename("/p/q", "/p/moved")
    assert await vol.isfile("/p/moved/r/f3")
    await vol.rmtree("/p")
    assert await vol.listdir("/") == []


@gfapi_check
async def concurrent_writers_do_not_mix(vol):
    async def writer(n):
        async with await vol.fopen(f"/w{n}", "w") as f:
            for chunk in range(16):
                await f.write(bytes([n]) * 8192)
    async with trio.open_nursery() as nursery:
        for n in range(8):
            nursery.start_soon(writer, n)
    for n in range(8):
        async with await vol.fopen(f"/w{n}") as f:
            assert await f.read() == bytes([n]) * 8192 * 16


def conformance_tests(factory, *, up_timeout: float = 20):
    """A parametrized test running every check on graphs from `factory(tmp_path)`
    (an async context manager yielding a Graph not yet started)."""
    @pytest.mark.parametrize("check_fn", CHECKS, ids=[c.__name__ for c in CHECKS])
    async def test_conformance(check_fn, tmp_path):
        async with factory(tmp_path) as graph:
            if check_fn.kind == "gfapi":
                async with AsyncVolume(graph, mount_timeout=up_timeout) as vol:
                    await check_fn(vol)
            else:
                async with graph.running():
                    assert await graph.wait_child_up(up_timeout), "the stack never came up"
                    await check_fn(graph)
    return test_conformance

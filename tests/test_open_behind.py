"""performance/open-behind: an open is answered at once and sent when a fop
needs it; what depends on the open (writes, locks, unlink of an open file,
a second open) finds it done; its errors come back on the fop that sent it."""

from __future__ import annotations

import errno
import os

import pytest
import trio

from glusterpy import fops
from glusterpy.fops import GFID, ROOT_GFID, Caller, Fd, Flock, FopError, Iatt, LockCmd, LockType, Loc
from glusterpy.graph import Graph
from glusterpy.volfile import VolfileError


def volfile(brick, **options) -> str:
    opts = "".join(f"    option {k.replace('_', '-')} {v}\n" for k, v in options.items())
    return (f"volume ob-posix\n    type storage/posix\n    option directory {brick}\n"
            f"end-volume\n\n"
            f"volume ob-locks\n    type features/locks\n    subvolumes ob-posix\nend-volume\n\n"
            f"volume ob\n    type performance/open-behind\n{opts}"
            f"    subvolumes ob-locks\nend-volume\n")


def at(name):
    return Loc(path=f"/{name}", pargfid=ROOT_GFID, name=name)


class Opens:
    """Records the opens and releases that reach the layer below."""

    def __init__(self, top):
        self.opens: list[int] = []
        self.releases = 0
        child = top.first_child
        open_, release = child.open, child.release

        async def counted_open(loc, flags, fd, xdata=None):
            self.opens.append(flags)
            self.callers = getattr(self, "callers", []) + [fops.caller.get()]
            return await open_(loc, flags, fd, xdata)

        async def counted_release(fd, xdata=None):
            self.releases += 1
            return await release(fd, xdata)
        child.open, child.release = counted_open, counted_release


async def new_file(top, name, data=b""):
    fd = Fd(flags=os.O_RDWR)
    reply = await top.create(at(name), os.O_RDWR | os.O_CREAT, 0o644, 0, fd,
                             {"gfid-req": GFID.random()})
    fd.gfid = reply.iatt.gfid
    if data:
        await top.writev(fd, data, 0, 0, None)
    await top.release(fd, None)
    return reply.iatt.gfid


async def opened(top, gfid, flags=os.O_RDONLY):
    fd = Fd(gfid=gfid, flags=flags)
    await top.open(Loc(gfid=gfid), flags, fd, None)
    return fd


async def test_open_read_close_with_read_after_open(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        gfid = await new_file(top, "f", b"data")
        seen = Opens(top)
        fd = await opened(top, gfid)
        assert seen.opens == []                         # acknowledged, not sent
        await top.flush(fd, None)                       # nothing to flush yet
        assert seen.opens == []
        assert bytes((await top.readv(fd, 10, 0, 0, None)).data) == b"data"
        assert seen.opens == [os.O_RDONLY]              # the read sent it
        await top.readv(fd, 10, 0, 0, None)
        await top.flush(fd, None)
        await top.release(fd, None)
        assert seen.opens == [os.O_RDONLY] and seen.releases == 1
        assert top.dump_state() == {"pending": 0, "deferred": 1, "triggered": 1,
                                    "cancelled": 0}
        assert not list(top.itable.contexts(top))     # the record went with the last fd


async def test_open_and_close_without_io_never_reaches_the_brick(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        gfid = await new_file(top, "f", b"x")
        seen = Opens(top)
        for _ in range(3):
            fd = await opened(top, gfid)
            await top.flush(fd, None)
            await top.release(fd, None)
        assert seen.opens == [] and seen.releases == 0
        assert top.dump_state()["cancelled"] == 3


async def test_writes_locks_and_fd_fops_send_the_open_first(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        gfid = await new_file(top, "f")
        seen = Opens(top)
        fd = await opened(top, gfid, os.O_RDWR)
        assert seen.opens == []
        await top.writev(fd, b"written", 0, 0, None)
        assert seen.opens == [os.O_RDWR]
        assert (brick / "f").read_bytes() == b"written"
        fd2 = await opened(top, (await top.lookup(at("f"), None)).iatt.gfid, os.O_RDWR)
        # a second fd of an open file is opened at once
        assert seen.opens == [os.O_RDWR, os.O_RDWR]
        await top.release(fd2, None)
        await top.release(fd, None)
        # each on a fresh fd, the only one open: its open waits for the fop
        for fop in ("lk", "fsync", "ftruncate", "fgetxattr", "fsetattr", "rchecksum"):
            fresh = await opened(top, gfid, os.O_RDWR)
            n = len(seen.opens)
            if fop == "lk":
                token = fops.caller.set(Caller(lk_owner=b"owner-1"))
                try:
                    await top.lk(fresh, LockCmd.SETLK, Flock(type=LockType.WRLCK,
                                                             owner=b"owner-1"), None)
                finally:
                    fops.caller.reset(token)
            elif fop == "fsync":
                await top.fsync(fresh, 0, None)
            elif fop == "ftruncate":
                await top.ftruncate(fresh, 3, None)
            elif fop == "fgetxattr":
                await top.fgetxattr(fresh, "", None)
            elif fop == "fsetattr":
                await top.fsetattr(fresh, Iatt(mode=0o600), fops.SET_ATTR_MODE, None)
            else:
                await top.rchecksum(fresh, 0, 3, None)
            assert len(seen.opens) == n + 1, fop
            await top.release(fresh, None)
        assert top.dump_state()["pending"] == 0 and not list(top.itable.contexts(top))


async def test_o_trunc_open_is_never_delayed(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        gfid = await new_file(top, "f", b"old content")
        seen = Opens(top)
        fd = await opened(top, gfid, os.O_WRONLY | os.O_TRUNC)
        assert seen.opens == [os.O_WRONLY | os.O_TRUNC]
        assert (brick / "f").read_bytes() == b""
        await top.release(fd, None)


async def test_a_second_open_sends_the_pending_one_first(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        gfid = await new_file(top, "f", b"abc")
        seen = Opens(top)
        first = await opened(top, gfid)
        assert seen.opens == []
        second = await opened(top, gfid, os.O_WRONLY | os.O_TRUNC)
        assert seen.opens == [os.O_RDONLY, os.O_WRONLY | os.O_TRUNC]
        assert top.dump_state()["pending"] == 0
        await top.release(second, None)
        await top.release(first, None)
        assert seen.releases == 2


async def test_an_unlinked_open_file_stays_readable(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        gfid = await new_file(top, "f", b"still here")
        fd = await opened(top, gfid)
        # the FUSE bridge names the victim by parent and name only
        await top.unlink(at("f"), 0, None)
        assert not (brick / "f").exists()
        assert bytes((await top.readv(fd, 100, 0, 0, None)).data) == b"still here"
        await top.release(fd, None)
        # replaced by a rename: the same
        gfid = await new_file(top, "g", b"old g")
        await new_file(top, "h", b"new g")
        fd = await opened(top, gfid)
        await top.rename(at("h"), at("g"), None)
        assert bytes((await top.readv(fd, 100, 0, 0, None)).data) == b"old g"
        await top.release(fd, None)


async def test_the_deferred_open_error_comes_back_on_the_fop_that_sends_it(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        (brick / "target").write_bytes(b"t")
        os.symlink("target", brick / "link")
        gfid = (await top.lookup(at("link"), {"gfid-req": GFID.random()})).iatt.gfid
        await top.lookup(at("target"), {"gfid-req": GFID.random()})
        fd = await opened(top, gfid)                    # a symlink: posix refuses it...
        with pytest.raises(FopError) as e:
            await top.readv(fd, 10, 0, 0, None)         # ...here
        assert e.value.errno == errno.ELOOP
        with pytest.raises(FopError) as e:
            await top.fstat(fd, None)                   # and on every later fop
        assert e.value.errno == errno.ELOOP
        await top.release(fd, None)
        assert top.dump_state()["pending"] == 0


async def test_the_deferred_open_runs_as_the_opener(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        gfid = await new_file(top, "f", b"x")
        seen = Opens(top)
        token = fops.caller.set(Caller(uid=1234, gid=99, pid=77))
        try:
            fd = await opened(top, gfid)
        finally:
            fops.caller.reset(token)
        await top.readv(fd, 1, 0, 0, None)
        assert seen.callers[0].uid == 1234 and seen.callers[0].pid == 77
        await top.release(fd, None)


async def test_anonymous_fd_reads_do_not_open(brick):
    graph = Graph.from_text(volfile(brick, use_anonymous_fd="yes", read_after_open="no"))
    async with graph.running():
        top = graph.top
        gfid = await new_file(top, "f", b"anonymous")
        seen = Opens(top)
        fd = await opened(top, gfid)
        assert bytes((await top.readv(fd, 100, 0, 0, None)).data) == b"anonymous"
        assert (await top.fstat(fd, None)).iatt.size == 9
        assert seen.opens == []
        await top.release(fd, None)
        assert seen.opens == [] and seen.releases == 1   # the anonymous fd's release
    # with read-after-open (the default) a read opens even with anonymous fds on
    graph = Graph.from_text(volfile(brick, use_anonymous_fd="yes"))
    async with graph.running():
        top = graph.top
        seen = Opens(top)
        fd = await opened(top, gfid)
        await top.fstat(fd, None)
        assert seen.opens == []
        await top.readv(fd, 1, 0, 0, None)
        assert seen.opens == [os.O_RDONLY]
        await top.release(fd, None)


async def test_lazy_open_off_opens_in_the_background(brick):
    graph = Graph.from_text(volfile(brick, lazy_open="off"))
    async with graph.running():
        top = graph.top
        gfid = await new_file(top, "f", b"x")
        seen = Opens(top)
        fd = await opened(top, gfid)
        with trio.fail_after(5):
            while not seen.opens:
                await trio.sleep(0.01)
        assert top.dump_state()["pending"] == 0
        await top.release(fd, None)
        assert seen.releases == 1


async def test_concurrent_fops_share_one_open(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        gfid = await new_file(top, "f", b"0123456789")
        seen = Opens(top)
        child = top.first_child
        open_ = child.open

        async def slow_open(loc, flags, fd, xdata=None):
            await trio.sleep(0.05)
            return await open_(loc, flags, fd, xdata)
        child.open = slow_open
        fd = await opened(top, gfid)
        results = []

        async def read(offset):
            results.append(bytes((await top.readv(fd, 1, offset, 0, None)).data))
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(read, i)
        assert sorted(results) == [b"0", b"1", b"2", b"3", b"4"]
        assert len(seen.opens) == 1
        await top.release(fd, None)


async def test_pass_through_and_bad_options(brick):
    graph = Graph.from_text(volfile(brick, pass_through="on"))
    async with graph.running():
        top = graph.top
        gfid = await new_file(top, "f", b"x")
        seen = Opens(top)
        fd = await opened(top, gfid)
        assert seen.opens == [os.O_RDONLY]
        await top.release(fd, None)
    for key, bad in (("lazy-open", "sometimes"), ("use-anonymous-fd", "2"),
                     ("read-after-open", ""), ("pass-through", "perhaps")):
        with pytest.raises(VolfileError, match=f"option '{key}'"):
            Graph.from_text(volfile(brick, **{key.replace("-", "_"): repr(bad)}))


async def test_setattr_on_the_inode_sends_the_pending_open(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        gfid = await new_file(top, "f", b"x")
        seen = Opens(top)
        fd = await opened(top, gfid)
        await top.setattr(Loc(gfid=gfid), Iatt(mode=0o400), fops.SET_ATTR_MODE, None)
        assert seen.opens == [os.O_RDONLY]
        await top.release(fd, None)

"""features/utime and storage/posix's side of the ctime feature: the times
a brick stores are the client's clock, for the fops utime's table names,
over a local graph and over the wire; noatime; legacy files on lookup."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import struct
import time
from pathlib import Path

import pytest
import trio

from glusterpy import fops
from glusterpy.fops import (GFID, Caller, Fd, FopError, Iatt, Loc, SET_ATTR_ATIME,
                            SET_ATTR_ATIME_NOW, SET_ATTR_MODE, SET_ATTR_MTIME,
                            SET_ATTR_MTIME_NOW)
from glusterpy.graph import Graph
from glusterpy import volfile as vf
from glusterpy.xlator import Translator

from brickclient import brick_volfile
from conformance import conformance_tests
from xlators.features.utime import (ATIME_FOPS, FLAGS, MDATA_ATIME, MDATA_CTIME, MDATA_MTIME,
                                    MDATA_PAR_CTIME, MDATA_PAR_MTIME, Utime)
from xlators.storage.posix import Posix

SAMPLES = Path("/work/shared/glusterfs10-samples/volfiles")
MDATA_KEY = "trusted.glusterfs.mdata"
NS = 1_000_000_000
#: clocks far from the machine's, so that no brick clock can be mistaken for them
FUTURE = 3_000_000_000 * NS + 123_456_789          # 2065
LATER = 3_100_000_000 * NS + 987_654_321           # 2068


def stored(path) -> tuple[int, int, int]:
    """(ctime, mtime, atime) in ns from the brick's trusted.glusterfs.mdata
    (GlusterFS's posix_mdata_disk_t, big-endian)."""
    raw = os.getxattr(path, MDATA_KEY, follow_symlinks=False)
    _, _, cs, cn, ms, mn, as_, an = struct.unpack(">BQqQqQqQ", raw)
    return cs * NS + cn, ms * NS + mn, as_ * NS + an


def times(iatt: Iatt) -> tuple[int, int, int]:
    return iatt.ctime_ns, iatt.mtime_ns, iatt.atime_ns


class Ticking:
    """A client clock that moves one second per reading, from FUTURE."""

    def __init__(self, start: int = FUTURE):
        self.now = start

    def __call__(self) -> int:
        self.now += NS
        return self.now


def volfile(brick, **options) -> str:
    text = (f"volume u-posix\n    type storage/posix\n    option directory {brick}\n"
            f"end-volume\nvolume u-utime\n    type features/utime\n")
    text += "".join(f"    option {k} {v}\n" for k, v in options.items())
    return text + "    subvolumes u-posix\nend-volume\n"


@contextlib.asynccontextmanager
async def utime_graph(brick, clock=None, **options):
    graph = Graph.from_text(volfile(brick, **options))
    if clock is not None:
        graph.top.clock = clock
    async with graph.running():
        yield graph.top


def req() -> dict:
    return {"gfid-req": GFID.random()}


def child(parent: Loc, name: str, gfid=None) -> Loc:
    return Loc.child(parent, name, gfid)


# -- the client's clock reaches the brick -----------------------------------------

async def test_new_entries_store_the_clients_clock(brick):
    async with utime_graph(brick, clock=lambda: FUTURE) as top:
        d = await top.mkdir(child(Loc.root(), "d"), 0o755, 0, req())
        dloc = Loc(path="/d", gfid=d.iatt.gfid)
        f = await top.create(child(dloc, "f"), os.O_RDWR, 0o644, 0, Fd(), req())
        s = await top.symlink("f", child(dloc, "s"), 0, req())
        n = await top.mknod(child(dloc, "n"), 0o100600, 0, 0, req())
    for reply in (d, f, s, n):
        assert times(reply.iatt) == (FUTURE,) * 3
    for name in ("d", "d/f", "d/s", "d/n"):
        assert stored(brick / name) == (FUTURE,) * 3, name
    ctime, mtime, _ = stored(brick)
    assert (ctime, mtime) == (FUTURE, FUTURE)      # the parent of d: ctime and mtime
    assert times(f.postparent)[:2] == (FUTURE, FUTURE)


async def test_each_fop_stamps_the_clients_clock_on_the_times_it_moves(brick):
    """Every fop in utime's table, through posix: the times it moves become
    the clock's reading for that call; the others stay."""
    clock = Ticking()
    async with utime_graph(brick, clock=clock) as top:
        root = Loc.root()
        d1 = Loc(path="/d1", gfid=(await top.mkdir(child(root, "d1"), 0o755, 0, req())).iatt.gfid)
        d2 = Loc(path="/d2", gfid=(await top.mkdir(child(root, "d2"), 0o755, 0, req())).iatt.gfid)
        fd = Fd(flags=os.O_RDWR)
        made = await top.create(child(d1, "f"), os.O_RDWR, 0o644, 0, fd, req())
        fd.gfid = made.iatt.gfid
        f = Loc(path="/d1/f", gfid=fd.gfid)

        def moved(before, after):
            return "".join(k for k, b, a in zip("cma", before, after) if a != b)

        async def check(call, path, expect, parents=()):
            before = {p: stored(brick / p) for p in (path, *parents)}
            await call
            now = clock.now
            after = stored(brick / path)
            assert moved(before[path], after) == expect, (call, path)
            for k, value in zip("cma", after):
                if k in expect:
                    assert value == now, (call, k)
            for p in parents:
                assert moved(before[p], stored(brick / p)) == "cm", (call, p)
                assert stored(brick / p)[:2] == (now, now)

        await check(top.writev(fd, b"x" * 100, 0, 0, None), "d1/f", "cm")
        await check(top.ftruncate(fd, 50, None), "d1/f", "cm")
        await check(top.truncate(f, 10, None), "d1/f", "cm")
        await check(top.fallocate(fd, 0, 0, 4096, None), "d1/f", "ma")
        await check(top.zerofill(fd, 0, 100, None), "d1/f", "ma")
        await check(top.setxattr(f, {"user.k": b"v"}, 0, None), "d1/f", "c")
        await check(top.fsetxattr(fd, {"user.j": b"w"}, 0, None), "d1/f", "c")
        await check(top.removexattr(f, "user.k", None), "d1/f", "c")
        await check(top.fremovexattr(fd, "user.j", None), "d1/f", "c")
        await check(top.setattr(f, Iatt(mode=0o600), SET_ATTR_MODE, None), "d1/f", "c")
        await check(top.fsetattr(fd, Iatt(mode=0o640), SET_ATTR_MODE, None), "d1/f", "c")
        await check(top.link(f, child(d2, "hard")), "d1/f", "c", parents=("d2",))
        await check(top.rename(child(d2, "hard", fd.gfid), child(d1, "g")), "d1/f", "c",
                    parents=("d1", "d2"))
        await check(top.unlink(child(d1, "g", fd.gfid), 0, None), "d1/f", "c",
                    parents=("d1",))
        sub = await top.mkdir(child(d2, "sub"), 0o755, 0, req())
        await check(top.rmdir(child(d2, "sub", sub.iatt.gfid), 0, None), "d2", "cm")
        # noatime (the default): reads, opens and opendirs move nothing
        await check(top.readv(fd, 10, 0, 0, None), "d1/f", "")
        await check(top.open(f, os.O_RDONLY, Fd(), None), "d1/f", "")
        await check(top.opendir(d1, Fd(is_dir=True), None), "d1", "")
        # explicit times are the caller's; ctime is the clock
        given = Iatt(atime=1_000_000, atime_nsec=1, mtime=2_000_000, mtime_nsec=2)
        await top.setattr(f, given, SET_ATTR_ATIME | SET_ATTR_MTIME, None)
        assert stored(brick / "d1/f") == (clock.now, given.mtime_ns, given.atime_ns)


async def test_setattr_now_takes_the_time_the_client_sent(brick):
    """With ATIME_NOW/MTIME_NOW the client fills in its own "now" and utime
    stamps that (GlusterFS's FOPS_SETATTR_TEMPLATE); an empty one keeps the
    clock."""
    async with utime_graph(brick, clock=lambda: FUTURE) as top:
        made = await top.create(child(Loc.root(), "f"), os.O_RDWR, 0o644, 0, Fd(), req())
        f = Loc(path="/f", gfid=made.iatt.gfid)
        sent = LATER // NS
        valid = SET_ATTR_ATIME | SET_ATTR_MTIME | SET_ATTR_ATIME_NOW | SET_ATTR_MTIME_NOW
        reply = await top.setattr(f, Iatt(atime=sent, mtime=sent), valid, None)
        assert stored(brick / "f") == (sent * NS,) * 3
        assert times(reply.postbuf) == (sent * NS,) * 3
        g = await top.create(child(Loc.root(), "g"), os.O_RDWR, 0o644, 0, Fd(), req())
        # an unfilled stbuf: the clock, never the epoch
        await top.setattr(Loc(path="/g", gfid=g.iatt.gfid), Iatt(), valid, None)
        assert stored(brick / "g") == (FUTURE,) * 3


async def test_noatime_off_moves_atime_on_reads_opens_and_opendirs(brick):
    clock = Ticking()
    async with utime_graph(brick, clock=clock, noatime="off") as top:
        fd = Fd(flags=os.O_RDWR)
        made = await top.create(child(Loc.root(), "f"), os.O_RDWR, 0o644, 0, fd, req())
        fd.gfid = made.iatt.gfid
        await top.writev(fd, b"data", 0, 0, None)
        c, m, _ = stored(brick / "f")
        await top.readv(fd, 4, 0, 0, None)
        assert stored(brick / "f") == (c, m, clock.now)
        await top.open(Loc(path="/f", gfid=fd.gfid), os.O_RDONLY, Fd(), None)
        assert stored(brick / "f") == (c, m, clock.now)
        await top.opendir(Loc.root(), Fd(is_dir=True), None)
        assert stored(brick)[2] == clock.now
        dst = Fd(flags=os.O_RDWR)
        made = await top.create(child(Loc.root(), "dst"), os.O_RDWR, 0o644, 0, dst, req())
        dst.gfid = made.iatt.gfid
        await top.copy_file_range(fd, 0, dst, 0, 4, 0, None)
        assert stored(brick / "f") == (c, m, clock.now)     # the source: atime only
        assert stored(brick / "dst")[:2] == (clock.now, clock.now)
        # noatime back on, live: reads leave atime alone again
        top.reconfigure({"noatime": "on"})
        before = stored(brick / "f")
        await top.readv(fd, 4, 0, 0, None)
        assert stored(brick / "f") == before


async def test_times_never_go_back(brick):
    """posix_set_mdata_xattr keeps the highest time, so a client whose clock
    lags cannot move a file's times backwards."""
    async with utime_graph(brick, clock=lambda: LATER) as top:
        fd = Fd(flags=os.O_RDWR)
        made = await top.create(child(Loc.root(), "f"), os.O_RDWR, 0o644, 0, fd, req())
        fd.gfid = made.iatt.gfid
        top.clock = lambda: FUTURE
        reply = await top.writev(fd, b"late", 0, 0, None)
        assert stored(brick / "f") == (LATER,) * 3 and times(reply.postbuf) == (LATER,) * 3


# -- two clients of one brick, over the wire ------------------------------------------

def client_volfile(port: int, subvolume: str) -> str:
    return (f"volume c-client\n    type protocol/client\n    option remote-host 127.0.0.1\n"
            f"    option remote-port {port}\n    option remote-subvolume {subvolume}\n"
            f"end-volume\nvolume c-utime\n    type features/utime\n"
            f"    subvolumes c-client\nend-volume\n")


@contextlib.asynccontextmanager
async def utime_client(port: int, subvolume: str, clock):
    graph = Graph.from_text(client_volfile(port, subvolume))
    graph.top.clock = clock
    async with graph.running():
        assert await graph.wait_child_up(10), "the client never came up"
        yield graph.top


async def test_two_clients_of_a_brick_store_their_own_clocks(brick):
    """The clock travels in the v3 auth header (ctime_sec/nsec) with the
    MDATA flags; the brick stores it rather than its own."""
    brick_graph = Graph.from_text(brick_volfile(brick))
    async with brick_graph.running():
        port, subvolume = brick_graph.top.port, brick_graph.top.children[0].name
        async with utime_client(port, subvolume, lambda: FUTURE) as a, \
                utime_client(port, subvolume, lambda: LATER) as b:
            fd_a = Fd(flags=os.O_RDWR)
            made = await a.create(child(Loc.root(), "f"), os.O_RDWR, 0o644, 0, fd_a, req())
            fd_a.gfid = made.iatt.gfid
            assert times(made.iatt) == (FUTURE,) * 3
            assert stored(brick / "f") == (FUTURE,) * 3
            await a.writev(fd_a, b"from a", 0, 0, None)
            assert stored(brick / "f") == (FUTURE,) * 3

            fd_b = Fd(flags=os.O_RDWR)
            await b.open(Loc(path="/f", gfid=fd_a.gfid), os.O_RDWR, fd_b, None)
            fd_b.gfid = fd_a.gfid
            reply = await b.writev(fd_b, b"from b", 0, 0, None)
            assert stored(brick / "f") == (LATER, LATER, FUTURE)
            assert times(reply.postbuf) == (LATER, LATER, FUTURE)
            # a's older clock does not move them back; both see the same times
            await a.writev(fd_a, b"a again", 0, 0, None)
            seen_a = (await a.stat(Loc(path="/f", gfid=fd_a.gfid), None)).iatt
            seen_b = (await b.stat(Loc(path="/f", gfid=fd_a.gfid), None)).iatt
            assert times(seen_a) == times(seen_b) == (LATER, LATER, FUTURE)
            for top, fd in ((a, fd_a), (b, fd_b)):
                await top.release(fd, None)


# -- what utime puts in the Caller ---------------------------------------------------

class Recorder(Translator):
    """Winds every fop to its child and records the Caller it ran under,
    as GlusterFS's debug/trace would show frame->root."""

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self.seen: list[tuple[str, Caller]] = []


def _recording(fop: fops.Fop):
    async def method(self, *args):
        self.seen.append((fop.name, fops.caller.get()))
        return await getattr(self.first_child, fop.name)(*args)
    method.__name__ = fop.name
    return method


for _fop in fops.CATALOGUE:
    setattr(Recorder, _fop.name, _recording(_fop))


@contextlib.asynccontextmanager
async def recorded(brick, **options):
    """utime -> recorder -> posix, started as Graph.running() starts a graph."""
    posix = Posix("r-posix", {"directory": str(brick)})
    recorder = Recorder("r-recorder", {}, [posix])
    utime = Utime("r-utime", options, [recorder])
    async with trio.open_nursery() as nursery:
        for xl in (posix, recorder, utime):
            xl.nursery = nursery
            await xl.init()
        try:
            yield utime, recorder
        finally:
            for xl in (utime, recorder, posix):
                await xl.fini()
            nursery.cancel_scope.cancel()


@pytest.mark.parametrize("noatime", ["on", "off"])
async def test_flags_follow_glusterfs_table(brick, noatime):
    async with recorded(brick, noatime=noatime) as (top, recorder):
        top.clock = lambda: FUTURE
        outer = Caller(uid=7, gid=8, groups=(9,), pid=1234, lk_owner=b"owner", flags=0x40)
        token = fops.caller.set(outer)
        try:
            fd = Fd(flags=os.O_RDWR)
            made = await top.create(child(Loc.root(), "f"), os.O_RDWR, 0o644, 0, fd, req())
            fd.gfid = made.iatt.gfid
            f = Loc(path="/f", gfid=fd.gfid)
            await top.writev(fd, b"abc", 0, 0, None)
            await top.readv(fd, 3, 0, 0, None)
            await top.open(f, os.O_RDONLY, Fd(), None)
            await top.opendir(Loc.root(), Fd(is_dir=True), None)
            await top.fallocate(fd, 0, 0, 10, None)
            await top.setxattr(f, {"user.a": b"1"}, 0, None)
            await top.mkdir(child(Loc.root(), "d"), 0o755, 0, req())
            await top.setattr(f, Iatt(mode=0o600), SET_ATTR_MODE, None)
            await top.setattr(f, Iatt(atime=1, mtime=1), SET_ATTR_ATIME | SET_ATTR_MTIME, None)
            await top.setattr(f, Iatt(), 0, None)
            await top.stat(f, None)
            await top.fsync(fd, 0, None)
            # the Caller is the outer one again between fops
            assert fops.caller.get() is outer
        finally:
            fops.caller.reset(token)
    atime = MDATA_ATIME if noatime == "off" else 0
    expected = {
        "create": MDATA_CTIME | MDATA_MTIME | MDATA_ATIME | MDATA_PAR_CTIME | MDATA_PAR_MTIME,
        "writev": MDATA_CTIME | MDATA_MTIME, "readv": atime, "open": atime, "opendir": atime,
        "fallocate": MDATA_MTIME | MDATA_ATIME, "setxattr": MDATA_CTIME,
        "mkdir": MDATA_CTIME | MDATA_MTIME | MDATA_ATIME | MDATA_PAR_CTIME | MDATA_PAR_MTIME,
    }
    seen = [(name, c) for name, c in recorder.seen if name != "lookup"]
    stamped = {name: c for name, c in seen if name in expected}
    for name, flags in expected.items():
        c = stamped[name]
        assert c.flags == 0x40 | flags, name            # added to the caller's own
        assert c.ctime_ns == FUTURE, name
        assert (c.uid, c.gid, c.groups, c.pid, c.lk_owner) == (7, 8, (9,), 1234, b"owner")
    setattrs = [c for name, c in seen if name == "setattr"]
    assert [c.flags for c in setattrs] == [0x40 | MDATA_CTIME, 0x40, 0x40 | MDATA_CTIME]
    assert all(c.ctime_ns == FUTURE for c in setattrs)
    # fops outside the table pass through with the caller as it was
    untouched = [c for name, c in seen if name in ("stat", "fsync")]
    assert untouched == [outer, outer]


def test_the_table_is_glusterfs_s():
    assert set(ATIME_FOPS) == {"readv", "open", "opendir", "copy_file_range"}
    assert all(name in fops.BY_NAME for name in FLAGS)
    assert FLAGS["unlink"] == FLAGS["rmdir"] == FLAGS["link"] == FLAGS["rename"] == \
        MDATA_CTIME | MDATA_PAR_CTIME | MDATA_PAR_MTIME


# -- legacy files --------------------------------------------------------------------------

async def made_without_ctime(brick, name: str, mtime_s: int) -> GFID:
    """A file made before the ctime feature: no mdata, times of its own."""
    graph = Graph.from_text(volfile(brick).split("volume u-utime")[0])
    async with graph.running():
        made = await graph.top.mknod(child(Loc.root(), name), 0o100644, 0, 0, req())
    os.removexattr(brick / name, MDATA_KEY)
    os.utime(brick / name, ns=(mtime_s * NS + 11, mtime_s * NS + 22))
    return made.iatt.gfid


async def test_lookup_gives_a_legacy_file_stored_times(brick):
    gfid = await made_without_ctime(brick, "old", 1_234_567_890)
    st = os.stat(brick / "old")
    async with utime_graph(brick, clock=lambda: FUTURE) as top:
        reply = await top.lookup(child(Loc.root(), "old"), None)
        # the file's own times are stored, not the client's clock
        assert stored(brick / "old") == (st.st_ctime_ns, 1_234_567_890 * NS + 22,
                                         1_234_567_890 * NS + 11)
        assert times(reply.iatt) == stored(brick / "old")
        assert reply.iatt.gfid == gfid
        # stored once: a later change on the brick does not replace them
        os.utime(brick / "old", ns=(5 * NS, 5 * NS))
        again = await top.lookup(Loc(path="/old", gfid=gfid), None)
        assert times(again.iatt)[1] == 1_234_567_890 * NS + 22
        assert MDATA_KEY in again.xdata
        # a failed lookup fails as it did
        with pytest.raises(FopError) as e:
            await top.lookup(child(Loc.root(), "missing"), None)
        assert e.value.errno == errno.ENOENT


def _set_immutable(path, on: bool) -> bool:
    """chattr +i / -i through FS_IOC_SETFLAGS; False where the filesystem
    has no such flag."""
    FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_IMMUTABLE_FL = 0x80086601, 0x40086602, 0x10
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        buf = bytearray(struct.pack("l", 0))
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
        flags = struct.unpack("l", buf)[0]
        flags = flags | FS_IMMUTABLE_FL if on else flags & ~FS_IMMUTABLE_FL
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("l", flags))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


async def test_lookup_of_a_legacy_file_succeeds_when_storing_fails(brick, caplog):
    """gf_utime_set_mdata_setxattr_cbk: 'Don't fail lookup if mdata setxattr
    fails' - here the brick file is immutable, so posix cannot set the xattr."""
    await made_without_ctime(brick, "frozen", 1_000_000_000)
    if not _set_immutable(brick / "frozen", True):
        pytest.skip("this filesystem has no immutable flag (FS_IOC_SETFLAGS)")
    try:
        async with utime_graph(brick, clock=lambda: FUTURE) as top:
            reply = await top.lookup(child(Loc.root(), "frozen"), None)
            assert reply.iatt.mtime == 1_000_000_000
        assert "set-ctime-mdata failed" in caplog.text
        with pytest.raises(OSError):
            os.getxattr(brick / "frozen", MDATA_KEY)
    finally:
        _set_immutable(brick / "frozen", False)


# -- storage/posix on its own: the caller's clock when it carries one ------------------------

async def test_posix_stamps_the_callers_clock_or_its_own(brick, posix_graph):
    async with posix_graph(brick) as top:
        token = fops.caller.set(Caller(ctime_ns=FUTURE))
        try:
            await top.mkdir(child(Loc.root(), "client"), 0o755, 0, req())
        finally:
            fops.caller.reset(token)
        before = time.time_ns()
        await top.mkdir(child(Loc.root(), "brick"), 0o755, 0, req())
        after = time.time_ns()
    assert stored(brick / "client") == (FUTURE,) * 3
    assert all(before <= t <= after for t in stored(brick / "brick"))


async def test_posix_moves_atime_only_when_the_caller_asks(brick, posix_graph):
    async with posix_graph(brick) as top:
        fd = Fd(flags=os.O_RDWR)
        made = await top.create(child(Loc.root(), "f"), os.O_RDWR, 0o644, 0, fd, req())
        fd.gfid = made.iatt.gfid
        await top.writev(fd, b"abc", 0, 0, None)
        first = stored(brick / "f")
        await top.readv(fd, 3, 0, 0, None)
        assert stored(brick / "f") == first
        token = fops.caller.set(Caller(flags=MDATA_ATIME, ctime_ns=FUTURE))
        try:
            reply = await top.readv(fd, 3, 0, 0, None)
        finally:
            fops.caller.reset(token)
        assert stored(brick / "f") == (first[0], first[1], FUTURE)
        assert reply.iatt.atime_ns == FUTURE


# -- volfiles, gfapi, conformance ---------------------------------------------------------------

def sample_utime_sections():
    for path in sorted(SAMPLES.glob("*.vol")):
        for vdef in vf.load(path).volumes:
            if vdef.type == "features/utime":
                yield pytest.param(path, vdef, id=f"{path.name}:{vdef.name}")


@pytest.mark.parametrize("path,vdef", list(sample_utime_sections()))
async def test_sample_volfile_utime_sections_load(path, vdef, brick):
    text = f"volume p\n    type storage/posix\n    option directory {brick}\nend-volume\n"
    text += f"volume {vdef.name}\n    type {vdef.type}\n"
    text += "".join(f"    option {k} {v}\n" for k, v in vdef.options.items())
    text += "    subvolumes p\nend-volume\n"
    graph = Graph.from_text(text, filename=str(path))
    async with graph.running():
        assert isinstance(graph.top, Utime) and graph.top.opts.noatime is True
        await graph.top.lookup(Loc.root(), None)


def test_the_samples_are_there():
    assert len(list(sample_utime_sections())) >= 10


def test_gfapi_keeps_its_inline_path(brick, tmp_path):
    from glusterpy.gfapi import Volume
    path = tmp_path / "v.vol"
    path.write_text(volfile(brick))
    with Volume.from_volfile(path) as vol:
        assert vol.runs_inline
        with vol.fopen("/g", "w") as f:
            f.write(b"gfapi")
        assert vol.stat("/g").st_size == 5


@contextlib.asynccontextmanager
async def utime_stack(tmp_path):
    brick = tmp_path / "brick"
    brick.mkdir()
    yield Graph.from_text(volfile(brick))


test_utime_conformance = conformance_tests(utime_stack)

"""performance/quick-read: small files come whole with their lookup and are
read from the cache; writes through the graph are seen at once, another
client's within cache-timeout; the cache stays within cache-size.  Also a
FUSE mount of posix -> open-behind -> quick-read -> nl-cache."""

from __future__ import annotations

import errno
import os
import shutil
import time

import pytest
import trio

from glusterpy.fops import GFID, ROOT_GFID, SET_ATTR_SIZE, Fd, FopError, Iatt, Loc
from glusterpy.graph import Graph
from glusterpy.keys import CONTENT_KEY
from glusterpy.options import OptionError
from glusterpy.volfile import VolfileError
from glusterpy.xlator import Event
from xlators.performance.quick_read import QuickRead


def volfile(brick, **options) -> str:
    opts = "".join(f"    option {k.replace('_', '-')} {v}\n" for k, v in options.items())
    return (f"volume qr-posix\n    type storage/posix\n    option directory {brick}\n"
            f"end-volume\n\n"
            f"volume qr\n    type performance/quick-read\n{opts}"
            f"    subvolumes qr-posix\nend-volume\n")


def at(name):
    return Loc(path=f"/{name}", pargfid=ROOT_GFID, name=name)


async def new_file(top, name, data):
    fd = Fd(flags=os.O_RDWR)
    reply = await top.create(at(name), os.O_RDWR | os.O_CREAT, 0o644, 0, fd,
                             {"gfid-req": GFID.random()})
    fd.gfid = reply.iatt.gfid
    if data:
        await top.writev(fd, data, 0, 0, None)
    await top.release(fd, None)
    return reply.iatt.gfid


async def open_read(top, name, size=1 << 20, offset=0, flags=os.O_RDONLY):
    """lookup + open + readv + release, as a client reads a file whole."""
    gfid = (await top.lookup(at(name), None)).iatt.gfid
    fd = Fd(gfid=gfid, flags=flags)
    await top.open(Loc(path=f"/{name}", gfid=gfid), flags, fd, None)
    try:
        return bytes((await top.readv(fd, size, offset, 0, None)).data)
    finally:
        await top.release(fd, None)


class CountingReads:
    """Counts the readv calls that reach the brick."""

    def __init__(self, top):
        self.n = 0
        child = top.first_child
        original = child.readv

        async def readv(*args, **kwargs):
            self.n += 1
            return await original(*args, **kwargs)
        child.readv = readv


async def test_small_file_is_read_from_the_lookup(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        await new_file(top, "f", b"hello quick-read")
        reads = CountingReads(top)
        assert await open_read(top, "f") == b"hello quick-read"
        assert await open_read(top, "f", 5, 6) == b"quick"
        assert await open_read(top, "f", 100, 16) == b""        # at EOF: from the brick
        assert reads.n == 1 and top.hits == 2
        assert top.dump_state()["cached_bytes"] == 16
        # the content key quick-read added does not travel up
        reply = await top.lookup(at("f"), None)
        assert reply.xdata is None or CONTENT_KEY not in reply.xdata


async def test_a_named_re_lookup_through_md_cache_does_not_fetch_held_content(brick):
    """md-cache resolves a name it knows to its gfid before the lookup, as
    fuse-bridge does: quick-read below then finds the content it holds and
    does not ask the brick for it again (qr_lookup) - a FUSE revalidation
    of a small file before an unlink or a late stat.  Content changed
    beside the client is still seen by the attributes it changed."""
    text = volfile(brick) + ("volume mdc\n    type performance/md-cache\n"
                             "    option md-cache-timeout 0\n    subvolumes qr\nend-volume\n")
    graph = Graph.from_text(text)
    async with graph.running():
        top = graph.top
        await new_file(top, "f", b"hello quick-read")
        posix = graph.by_name["qr-posix"]
        asked = []
        original = posix.lookup

        async def lookup(loc, xdata=None):
            asked.append(bool(xdata and CONTENT_KEY in xdata))
            return await original(loc, xdata)
        posix.lookup = lookup
        assert await open_read(top, "f") == b"hello quick-read"
        assert await open_read(top, "f") == b"hello quick-read"
        await top.lookup(at("f"), None)
        assert asked == [True, False, False]
        # a change beside the client (another size, another mtime): the
        # held content is dropped and fetched again
        (brick / "f").write_bytes(b"changed")
        assert await open_read(top, "f") == b"changed"
        assert await open_read(top, "f") == b"changed"
        assert asked[3:] == [False, True]


async def test_larger_files_and_direct_io_go_to_the_brick(brick):
    graph = Graph.from_text(volfile(brick, max_file_size="1KB"))
    async with graph.running():
        top = graph.top
        await new_file(top, "big", b"b" * 2000)
        await new_file(top, "small", b"s" * 1000)
        reads = CountingReads(top)
        assert await open_read(top, "big") == b"b" * 2000
        assert await open_read(top, "small", flags=os.O_RDONLY | os.O_DIRECT) == b"s" * 1000
        assert reads.n == 2 and top.hits == 0
        assert await open_read(top, "small") == b"s" * 1000
        assert reads.n == 2 and top.hits == 1


async def test_own_changes_are_seen_at_once(brick):
    graph = Graph.from_text(volfile(brick, cache_timeout=60))
    async with graph.running():
        top = graph.top
        gfid = await new_file(top, "f", b"0123456789")
        assert await open_read(top, "f") == b"0123456789"
        fd = Fd(gfid=gfid, flags=os.O_RDWR)
        await top.open(Loc(gfid=gfid), os.O_RDWR, fd, None)
        await top.writev(fd, b"AB", 2, 0, None)
        assert await open_read(top, "f") == b"01AB456789"
        await top.ftruncate(fd, 4, None)
        assert await open_read(top, "f") == b"01AB"
        await top.setattr(Loc(gfid=gfid), Iatt(size=2), SET_ATTR_SIZE, None)
        await top.truncate(Loc(gfid=gfid), 3, None)
        assert await open_read(top, "f") == b"01\x00"     # cut to 2, grown to 3
        await top.zerofill(fd, 0, 1, None)
        assert await open_read(top, "f") == b"\x001\x00"
        await top.release(fd, None)
        # an O_TRUNC open empties it
        fd = Fd(gfid=gfid, flags=os.O_WRONLY | os.O_TRUNC)
        await top.open(Loc(gfid=gfid), os.O_WRONLY | os.O_TRUNC, fd, None)
        await top.release(fd, None)
        assert await open_read(top, "f") == b""


async def test_a_lookup_racing_a_write_does_not_bring_old_content_back(brick):
    """The lookup reads the old content on the brick, the write lands and
    invalidates, then the lookup's reply arrives: it must not be cached."""
    for known in (False, True):
        await _race(brick, known)


async def _race(brick, known: bool):
    graph = Graph.from_text(volfile(brick, cache_timeout=60))
    async with graph.running():
        top = graph.top
        gfid = await new_file(top, "f", b"old")
        if known:   # a record without content: cached once, then written
            assert await open_read(top, "f") == b"old"
            wfd = Fd(gfid=gfid, flags=os.O_RDWR)
            await top.open(Loc(gfid=gfid), os.O_RDWR, wfd, None)
            await top.writev(wfd, b"old", 0, 0, None)
            assert top.itable.peek_ctx(top, gfid).data is None
        posix = top.first_child
        original = posix.lookup
        reached, release = trio.Event(), trio.Event()

        async def slow_lookup(loc, xdata=None):
            reply = await original(loc, xdata)
            reached.set()
            await release.wait()
            return reply
        posix.lookup = slow_lookup
        async with trio.open_nursery() as nursery:
            nursery.start_soon(top.lookup, at("f"), None)
            await reached.wait()
            fd = Fd(gfid=gfid, flags=os.O_RDWR)
            await posix.open(Loc(gfid=gfid), os.O_RDWR, fd, None)
            await top.writev(fd, b"new", 0, 0, None)
            release.set()
        posix.lookup = original
        assert top.dump_state()["cached_bytes"] == 0
        assert await open_read(top, "f") == b"new"


async def test_another_client_is_seen_within_cache_timeout(brick):
    mine = Graph.from_text(volfile(brick, cache_timeout=1))
    other = Graph.from_text(volfile(brick))
    async with mine.running(), other.running():
        gfid = await new_file(mine.top, "f", b"first")
        assert await open_read(mine.top, "f") == b"first"
        fd = Fd(gfid=gfid, flags=os.O_RDWR)
        await other.top.open(Loc(gfid=gfid), os.O_RDWR, fd, None)
        await other.top.writev(fd, b"SECOND", 0, 0, None)
        await other.top.release(fd, None)
        await trio.sleep(1.1)
        # stale now: the read goes to the brick, the next lookup sees the new mtime
        assert await open_read(mine.top, "f") == b"SECOND"
        assert await open_read(mine.top, "f") == b"SECOND"


async def test_child_down_makes_the_cache_stale(brick):
    graph = Graph.from_text(volfile(brick, cache_timeout=60))
    async with graph.running():
        top = graph.top
        await new_file(top, "f", b"x")
        await open_read(top, "f")
        hits = top.hits
        top.notify(Event.CHILD_DOWN, top.first_child)
        reads = CountingReads(top)
        gfid = (await top.first_child.lookup(at("f"), None)).iatt.gfid
        fd = Fd(gfid=gfid)
        await top.open(Loc(gfid=gfid), os.O_RDONLY, fd, None)
        assert bytes((await top.readv(fd, 10, 0, 0, None)).data) == b"x"
        assert reads.n == 1 and top.hits == hits


async def test_cache_size_bounds_the_content_lru_first(brick):
    graph = Graph.from_text(volfile(brick, cache_size="100KB", cache_timeout=60))
    async with graph.running():
        top = graph.top
        for i in range(40):
            await new_file(top, f"f{i}", bytes([i]) * 10_000)
        for i in range(40):
            assert await open_read(top, f"f{i}") == bytes([i]) * 10_000
            assert top.dump_state()["cached_bytes"] <= 100 << 10
        assert top.dump_state()["files"] == 10

        def cached(name):
            gfid = (brick / name)
            record = top.itable.peek_ctx(top, GFID(os.getxattr(gfid, "trusted.gfid")))
            return record is not None and record.data is not None
        assert cached("f39") and cached("f30") and not cached("f29") and not cached("f0")
        # an evicted file comes back with its next lookup
        assert await open_read(top, "f0") == bytes([0]) * 10_000
        assert cached("f0") and not cached("f30")


async def test_a_walk_of_many_files_stays_within_the_inode_table(brick):
    graph = Graph.from_text(volfile(brick, cache_size="64KB"))
    async with graph.running():
        top = graph.top
        top.itable.limit = 50
        for i in range(300):
            (brick / f"w{i}").write_bytes(b"w" * 1000)
        for i in range(300):
            await top.lookup(at(f"w{i}"), {"gfid-req": GFID.random()})
        assert len(top.itable) <= 51
        assert top.dump_state()["cached_bytes"] <= 64 << 10
        assert top.dump_state()["files"] <= 50


async def test_upcall_invalidation_when_enabled(brick):
    class Message:
        flags = 0x8

    class Upcall:
        event_type = 1

        def __init__(self, gfid):
            self.gfid, self.message = gfid, Message()

    for enabled in (False, True):
        graph = Graph.from_text(volfile(brick, cache_timeout=60,
                                        quick_read_cache_invalidation=enabled))
        async with graph.running():
            top = graph.top
            name = f"u{enabled}"
            gfid = await new_file(top, name, b"u")
            await open_read(top, name)
            top.notify(Event.UPCALL, top.first_child, Upcall(gfid))
            assert top.dump_state()["files"] == (0 if enabled else 1)


async def test_priority_keeps_high_priority_files(brick):
    graph = Graph.from_text(volfile(brick, cache_size="30KB", cache_timeout=60,
                                    priority="/keep*:2"))
    async with graph.running():
        top = graph.top
        await new_file(top, "keep", b"k" * 10_000)
        await open_read(top, "keep")            # fetched at priority 0...
        await open_read(top, "keep")            # ...its open sets priority 2
        for i in range(5):
            await new_file(top, f"o{i}", b"o" * 10_000)
            await open_read(top, f"o{i}")
        hits = top.hits
        await open_read(top, "keep")
        assert top.hits == hits + 1


def test_bad_options_are_refused():
    for key, bad in (("max-file-size", "2MB"), ("cache-timeout", "-1"), ("cache-size", "lots"),
                     ("ctime-invalidation", "maybe"), ("priority", "nocolon"),
                     ("cache-size", "64PB")):
        with pytest.raises(VolfileError, match=f"option '{key}'"):
            Graph.from_text(volfile("/nonexistent", **{key.replace("-", "_"): bad}))
    with pytest.raises(OptionError, match="physical memory"):
        QuickRead("qr", {"cache-size": "64PB"})


async def test_reconfigure_validates_first(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        with pytest.raises(OptionError):
            top.reconfigure({"cache-size": "64PB"})
        assert top.opts.cache_size == 128 << 20
        top.reconfigure({"cache-size": "1MB", "cache-timeout": "5"})
        assert top.opts.cache_size == 1 << 20 and top.opts.cache_timeout == 5


async def test_missing_files_and_directories(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        with pytest.raises(FopError) as e:
            await top.lookup(at("missing"), None)
        assert e.value.errno == errno.ENOENT
        await top.mkdir(at("d"), 0o755, 0, {"gfid-req": GFID.random()})
        assert (await top.lookup(at("d"), None)).iatt.is_dir
        assert top.dump_state()["files"] == 0


# -- through a real FUSE mount ------------------------------------------------------------

PERF_VOLFILE = """
volume m-posix
    type storage/posix
    option directory {brick}
end-volume

volume m-open-behind
    type performance/open-behind
    subvolumes m-posix
end-volume

volume m-quick-read
    type performance/quick-read
    subvolumes m-open-behind
end-volume

volume m-nl-cache
    type performance/nl-cache
    option nl-cache-timeout 600
    subvolumes m-quick-read
end-volume
"""

fuse = pytest.mark.skipif(not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None,
                          reason="needs /dev/fuse and fusermount3 (fuse3)")


@fuse
def test_fuse_mount_with_the_three_translators(tmp_path):
    from test_fuse import Mount
    m = Mount(tmp_path, volfile=PERF_VOLFILE)
    try:
        assert m.ok(), m.result.stderr + (m.log.read_text() if m.log.exists() else "")
        mnt = m.mnt
        # small files: written, read back whole, rewritten, read again
        for i in range(20):
            (mnt / f"s{i}").write_bytes(f"small file {i}".encode())
        for i in range(20):
            assert (mnt / f"s{i}").read_bytes() == f"small file {i}".encode()
        (mnt / "s0").write_bytes(b"rewritten")
        assert (mnt / "s0").read_bytes() == b"rewritten"
        with open(mnt / "s1", "r+b") as f:
            f.write(b"SMALL")
        assert (mnt / "s1").read_bytes() == b"SMALL file 1"
        os.truncate(mnt / "s2", 3)
        assert (mnt / "s2").read_bytes() == b"sma"
        # negative lookups, then the name created: it is found
        for _ in range(3):
            assert not (mnt / "later").exists()
        (mnt / "later").write_bytes(b"now")
        assert (mnt / "later").read_bytes() == b"now"
        os.mkdir(mnt / "d")
        assert not (mnt / "d" / "x").exists()
        os.rename(mnt / "later", mnt / "d" / "x")
        assert (mnt / "d" / "x").read_bytes() == b"now" and not (mnt / "later").exists()
        # an open file stays readable after unlink (the pending open is sent first)
        with open(mnt / "s3", "rb") as f:
            os.unlink(mnt / "s3")
            assert f.read() == b"small file 3"
        assert not (mnt / "s3").exists()
        # open, read-only, of a file another writer changes: seen after close
        with open(mnt / "s4", "rb") as f:
            with open(mnt / "s4", "r+b") as w:
                w.write(b"CHANGED")
            time.sleep(1.1)
            f.seek(0)
            assert f.read().startswith(b"CHANGED")
        assert (m.brick / "s4").read_bytes().startswith(b"CHANGED")
        assert sorted(os.listdir(mnt)) == sorted([f"s{i}" for i in range(20) if i != 3] + ["d"])
        # writes reached the brick
        assert (m.brick / "s0").read_bytes() == b"rewritten"
    finally:
        m.unmount()

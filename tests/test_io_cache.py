"""performance/io-cache: what it caches, what it evicts, and that no read
through the graph ever returns data older than a write made through it."""

from __future__ import annotations

import os

import pytest
import trio
from hypothesis import HealthCheck, given, settings, strategies as s

from glusterpy.fops import GFID, ROOT_GFID, Fd, Loc
from glusterpy.graph import Graph
from glusterpy.options import OptionError

PAGE = 128 * 1024


def volfile(brick, delay_fops: str = "", **options) -> str:
    """posix -> [debug/delay-gen] -> io-cache; delay-gen makes the listed
    fops suspend, so fops through io-cache really interleave."""
    opts = "".join(f"    option {k.replace('_', '-')} {v}\n" for k, v in options.items())
    below = "ioc-posix"
    text = (f"volume ioc-posix\n    type storage/posix\n    option directory {brick}\n"
            f"end-volume\n\n")
    if delay_fops:
        text += (f"volume ioc-delay\n    type debug/delay-gen\n"
                 f"    option delay-percentage 50%\n    option delay-duration 2000\n"
                 f"    option enable {delay_fops}\n    subvolumes ioc-posix\nend-volume\n\n")
        below = "ioc-delay"
    return text + (f"volume ioc\n    type performance/io-cache\n{opts}"
                   f"    subvolumes {below}\nend-volume\n")


async def new_file(top, name, data, flags=os.O_RDWR):
    fd = Fd(flags=flags)
    reply = await top.create(Loc(path=f"/{name}", pargfid=ROOT_GFID, name=name),
                             flags | os.O_CREAT, 0o644, 0, fd, {"gfid-req": GFID.random()})
    fd.gfid = reply.iatt.gfid
    if data:
        await top.writev(fd, data, 0, 0, None)
    return fd


async def reopen(top, fd, flags=os.O_RDONLY, path="/x"):
    new = Fd(gfid=fd.gfid, flags=flags)
    await top.open(Loc(path=path, gfid=fd.gfid), flags, new, None)
    return new


async def read(top, fd, size, offset=0):
    return bytes((await top.readv(fd, size, offset, 0, None)).data)


async def test_second_read_is_a_hit(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        fd = await new_file(top, "f", b"a" * (3 * PAGE))
        rfd = await reopen(top, fd)
        assert await read(top, rfd, 3 * PAGE) == b"a" * (3 * PAGE)
        misses = top.misses
        assert await read(top, rfd, 1000, PAGE + 5) == b"a" * 1000
        assert top.misses == misses and top.hits >= 1
        assert top.dump_state()["pages"] == 3


async def test_own_writes_are_seen_at_once(brick):
    graph = Graph.from_text(volfile(brick, cache_timeout=60))
    async with graph.running():
        top = graph.top
        fd = await new_file(top, "f", b"1" * PAGE)
        assert await read(top, fd, PAGE) == b"1" * PAGE
        await top.writev(fd, b"2" * 10, 100, 0, None)
        assert (await read(top, fd, 20, 95)) == b"11111" + b"2" * 10 + b"11111"
        await top.ftruncate(fd, 50, None)
        assert await read(top, fd, PAGE) == b"1" * 50
        await top.zerofill(fd, 0, 10, None)
        assert await read(top, fd, 12) == bytes(10) + b"11"
        await top.discard(fd, 0, 4096, None)
        assert await read(top, fd, 50) == bytes(50)


async def test_another_client_change_is_seen_after_revalidation(brick):
    """A second graph on the same brick plays the other client."""
    mine = Graph.from_text(volfile(brick, cache_timeout=1))
    other = Graph.from_text(volfile(brick))
    async with mine.running(), other.running():
        fd = await new_file(mine.top, "f", b"old!" * 1024)
        assert await read(mine.top, fd, 4096) == b"old!" * 1024
        ofd = await reopen(other.top, fd, os.O_RDWR)
        await other.top.writev(ofd, b"new!" * 1024, 0, 0, None)
        # within cache-timeout the page may still be served...
        await trio.sleep(1.1)
        # ...after it, the fstat revalidation sees the new mtime
        assert await read(mine.top, fd, 4096) == b"new!" * 1024


async def test_lookup_showing_a_change_drops_pages(brick):
    mine = Graph.from_text(volfile(brick, cache_timeout=60))
    other = Graph.from_text(volfile(brick))
    async with mine.running(), other.running():
        fd = await new_file(mine.top, "f", b"x" * 100)
        assert await read(mine.top, fd, 100) == b"x" * 100
        ofd = await reopen(other.top, fd, os.O_RDWR)
        await other.top.writev(ofd, b"y" * 200, 0, 0, None)
        await mine.top.lookup(Loc(path="/f", pargfid=ROOT_GFID, name="f"), None)
        assert await read(mine.top, fd, 200) == b"y" * 200


async def test_lru_eviction_under_cache_size(brick):
    graph = Graph.from_text(volfile(brick, cache_size="4MB"))
    async with graph.running():
        top = graph.top
        fd = await new_file(top, "big", os.urandom(8 << 20))
        for off in range(0, 8 << 20, PAGE):
            await read(top, fd, PAGE, off)
        state = top.dump_state()
        assert state["cached_bytes"] <= 4 << 20
        assert state["pages"] == (4 << 20) // PAGE
        # the oldest pages went first: the last ones are still cached
        hits = top.hits
        await read(top, fd, PAGE, (8 << 20) - PAGE)
        assert top.hits == hits + 1


async def test_low_priority_is_evicted_first(brick):
    graph = Graph.from_text(volfile(brick, cache_size="4MB", priority="*.hot:3,*:1"))
    async with graph.running():
        top = graph.top
        hot_w = await new_file(top, "a.hot", os.urandom(2 << 20))
        cold_w = await new_file(top, "b.cold", os.urandom(4 << 20))
        hot = await reopen(top, hot_w, path="/a.hot")
        cold = await reopen(top, cold_w, path="/b.cold")
        for off in range(0, 2 << 20, PAGE):
            await read(top, hot, PAGE, off)
        for off in range(0, 4 << 20, PAGE):
            await read(top, cold, PAGE, off)
        # the hot file was read first but survives: cold pages were evicted
        hits = top.hits
        for off in range(0, 2 << 20, PAGE):
            await read(top, hot, PAGE, off)
        assert top.hits == hits + (2 << 20) // PAGE


async def test_size_limits_and_direct_io_bypass(brick):
    graph = Graph.from_text(volfile(brick, min_file_size="1KB", max_file_size="1MB"))
    async with graph.running():
        top = graph.top
        small = await new_file(top, "small", b"s" * 100)
        big = await new_file(top, "big", b"b" * (2 << 20))
        for fd in (small, big):
            await read(top, fd, 100)
            await read(top, fd, 100)
        assert top.dump_state()["pages"] == 0
        direct_w = await new_file(top, "d", b"d" * 4096)
        direct = await reopen(top, direct_w, os.O_RDONLY | os.O_DIRECT, path="/d")
        await read(top, direct, 4096)
        assert top.dump_state()["pages"] == 0


async def test_pass_through_and_live_reconfigure(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        fd = await new_file(top, "f", b"z" * PAGE)
        await read(top, fd, PAGE)
        assert top.dump_state()["pages"] == 1
        top.reconfigure({"pass-through": "on"})
        assert top.dump_state()["pages"] == 0
        await read(top, fd, PAGE)
        assert top.dump_state()["pages"] == 0
        with pytest.raises(OptionError):
            top.reconfigure({"cache-size": "1MB"})  # below the 4MB minimum
        assert top.opts.pass_through  # a refused change leaves the old options
        top.reconfigure({"cache-size": "8MB"})
        assert top.opts.cache_size == 8 << 20 and not top.opts.pass_through


_ops = s.lists(s.tuples(s.sampled_from(["write", "read", "truncate"]),
                        s.integers(0, 3 * PAGE), s.integers(0, PAGE + 7)), max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
async def test_reads_never_older_than_writes(tmp_path_factory, ops):
    """Random writes, truncates and reads - some concurrent - against a
    bytearray model: every read returns what the model holds."""
    brick = tmp_path_factory.mktemp("b")
    graph = Graph.from_text(volfile(brick, delay_fops="READ,WRITE,FTRUNCATE",
                                    cache_timeout=60, cache_size="4MB"))
    model = bytearray()
    async with graph.running():
        top = graph.top
        fd = await new_file(top, "f", b"")
        for op, offset, size in ops:
            if op == "write":
                data = os.urandom(size)
                # a concurrent read of the same range must not poison the cache
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read, top, fd, PAGE, offset - offset % PAGE)
                    await top.writev(fd, data, offset, 0, None)
                if size:  # a zero-byte write does not extend the file
                    if len(model) < offset:
                        model.extend(bytes(offset - len(model)))
                    model[offset:offset + size] = data
            elif op == "truncate":
                await top.ftruncate(fd, offset, None)
                del model[offset:]
                model.extend(bytes(max(0, offset - len(model))))
            else:
                if size:
                    assert await read(top, fd, size, offset) == bytes(model[offset:offset + size])
        if model:
            assert await read(top, fd, len(model)) == bytes(model)


async def test_a_write_reply_without_attributes_makes_the_size_unknown(brick):
    """Under io-cache, write-behind answers writes before they land and
    without a post-write iatt: io-cache must not keep serving the size it
    knew before (a read past it would come back short)."""
    text = (f"volume w-posix\n    type storage/posix\n    option directory {brick}\n"
            "end-volume\n\nvolume w-wb\n    type performance/write-behind\n"
            "    subvolumes w-posix\nend-volume\n\nvolume w-ioc\n"
            "    type performance/io-cache\n    option cache-timeout 60\n"
            "    subvolumes w-wb\nend-volume\n")
    graph = Graph.from_text(text)
    async with graph.running():
        top = graph.top
        fd = await new_file(top, "f", b"1" * 10)
        assert await read(top, fd, 100) == b"1" * 10        # cached, size 10 known
        reply = await top.writev(fd, b"2" * 20, 10, 0, None)
        assert reply.postbuf is None                        # acknowledged early
        assert await read(top, fd, 100) == b"1" * 10 + b"2" * 20

"""performance/read-ahead: sequential reads come from pages fetched ahead,
seeks and O_DIRECT pass through, every change through the graph drops the
pages, memory stays within the window, and no read returns data older than
a write made through the graph."""

from __future__ import annotations

import os

import pytest
import trio
from hypothesis import HealthCheck, given, settings, strategies as s

from glusterpy import graph as graph_mod
from glusterpy.fops import GFID, ROOT_GFID, Fd, Loc
from glusterpy.graph import Graph
from glusterpy.options import OptionError
from glusterpy.volfile import VolfileError

PAGE = 128 * 1024


def volfile(brick, delay_fops: str = "", **options) -> str:
    """posix -> [debug/delay-gen] -> read-ahead."""
    opts = "".join(f"    option {k.replace('_', '-')} {v}\n" for k, v in options.items())
    text = f"volume ra-posix\n    type storage/posix\n    option directory {brick}\nend-volume\n\n"
    below = "ra-posix"
    if delay_fops:
        text += (f"volume ra-delay\n    type debug/delay-gen\n"
                 f"    option delay-percentage 50%\n    option delay-duration 2000\n"
                 f"    option enable {delay_fops}\n    subvolumes ra-posix\nend-volume\n\n")
        below = "ra-delay"
    return text + (f"volume ra\n    type performance/read-ahead\n{opts}"
                   f"    subvolumes {below}\nend-volume\n")


def plain(brick) -> str:
    return f"volume p\n    type storage/posix\n    option directory {brick}\nend-volume\n"


async def new_file(top, name, data, flags=os.O_RDWR):
    fd = Fd(flags=flags)
    reply = await top.create(Loc(path=f"/{name}", pargfid=ROOT_GFID, name=name),
                             flags | os.O_CREAT, 0o644, 0, fd, {"gfid-req": GFID.random()})
    fd.gfid = reply.iatt.gfid
    if data:
        await top.writev(fd, data, 0, 0, None)
    return fd


async def reopen(top, gfid, flags=os.O_RDONLY):
    fd = Fd(gfid=gfid, flags=flags)
    await top.open(Loc(gfid=gfid), flags, fd, None)
    return fd


async def read(top, fd, size, offset=0):
    return bytes((await top.readv(fd, size, offset, 0, None)).data)


async def read_all(top, fd, chunk, offset=0, check=None):
    out = bytearray()
    while True:
        data = await read(top, fd, chunk, offset)
        if check:
            check()
        if not data:
            return bytes(out)
        out += data
        offset += len(data)


async def test_sequential_reads_come_from_pages_read_ahead(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        data = os.urandom(6 * 1024 * 1024 + 12345)
        w = await new_file(top, "f", data)
        fd = await reopen(top, w.gfid)
        pages_seen = []
        got = await read_all(top, fd, 4096,
                             check=lambda: pages_seen.append(top.dump_state()["pages"]))
        assert got == data
        state = top.dump_state()
        # one fetch per 128KB page, not per 4KB read
        assert state["misses"] <= 3 and state["hits"] > 1500, state
        # the window: pages behind the reader are dropped as it passes them
        assert max(pages_seen) <= 2 * 4 + 1
        fd2 = await reopen(top, w.gfid)
        assert await read_all(top, fd2, PAGE) == data
        assert await read_all(top, fd2, 100_000, offset=7) == data[7:]
        await top.flush(fd, None)
        await top.release(fd, None)
        await top.release(fd2, None)
        assert top.dump_state()["cached_bytes"] == 0 and top.dump_state()["files"] == 1


async def test_a_seek_passes_through_and_drops_the_pages(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        data = os.urandom(4 << 20)
        w = await new_file(top, "f", data)
        fd = await reopen(top, w.gfid)
        assert await read(top, fd, 65536, 0) == data[:65536]
        assert await read(top, fd, 65536, 65536) == data[65536:131072]
        assert top.dump_state()["pages"] > 0
        passed = top.dump_state()["passed"]
        for offset in (3 << 20, 12345, 2 << 20, 999_999):
            assert await read(top, fd, 4096, offset) == data[offset:offset + 4096]
        state = top.dump_state()
        assert state["passed"] == passed + 4 and state["pages"] == 0
        # sequential again from the last read on: read ahead again
        assert await read(top, fd, 4096, 999_999 + 4096) == data[1_004_095:1_008_191]
        assert top.dump_state()["pages"] >= 1
        await top.release(fd, None)


async def test_direct_io_and_write_only_fds_are_not_read_ahead(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        data = os.urandom(1 << 20)
        w = await new_file(top, "f", data, flags=os.O_WRONLY)
        direct = await reopen(top, w.gfid, os.O_RDONLY | os.O_DIRECT)
        assert await read_all(top, direct, PAGE) == data
        assert top.dump_state()["pages"] == 0 and top.dump_state()["hits"] == 0
        await top.writev(w, b"more", len(data), 0, None)
        assert top.dump_state()["pages"] == 0


async def test_own_changes_are_seen_at_once_through_any_fd(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        data = bytearray(os.urandom(2 << 20))
        w = await new_file(top, "f", bytes(data))
        fd = await reopen(top, w.gfid)
        offset = 0
        for _ in range(8):      # the window is open and pages lie ahead
            assert await read(top, fd, 32768, offset) == data[offset:offset + 32768]
            offset += 32768
        assert top.dump_state()["pages"] >= 2
        # a write through another fd, into a page already fetched ahead
        await top.writev(w, b"N" * 5000, offset + 1000, 0, None)
        data[offset + 1000:offset + 6000] = b"N" * 5000
        assert await read(top, fd, 32768, offset) == data[offset:offset + 32768]
        offset += 32768
        await top.zerofill(w, offset, 3000, None)
        data[offset:offset + 3000] = bytes(3000)
        assert await read(top, fd, 32768, offset) == data[offset:offset + 32768]
        offset += 32768
        await top.ftruncate(w, offset + 10, None)
        del data[offset + 10:]
        assert await read(top, fd, 32768, offset) == data[offset:]
        assert await read(top, fd, 32768, offset + 10) == b""
        await top.truncate(Loc(gfid=w.gfid), 4 << 20, None)
        data.extend(bytes((4 << 20) - len(data)))
        assert await read_all(top, fd, 32768, offset + 10) == data[offset + 10:]
        await top.release(fd, None)


async def test_another_clients_write_is_seen_beyond_the_window(brick):
    mine = Graph.from_text(volfile(brick))
    other = Graph.from_text(plain(brick))
    async with mine.running(), other.running():
        data = os.urandom(4 << 20)
        w = await new_file(mine.top, "f", data)
        fd = await reopen(mine.top, w.gfid)
        assert await read(mine.top, fd, PAGE, 0) == data[:PAGE]
        ofd = await reopen(other.top, w.gfid, os.O_RDWR)
        await other.top.writev(ofd, b"Z" * PAGE, 3 << 20, 0, None)
        got = await read_all(mine.top, fd, PAGE, PAGE)
        assert got[(3 << 20) - PAGE:(3 << 20)] == b"Z" * PAGE
        await mine.top.release(fd, None)


async def test_pass_through_reconfigure_and_bad_options(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        data = os.urandom(1 << 20)
        w = await new_file(top, "f", data)
        fd = await reopen(top, w.gfid)
        await read(top, fd, 4096)
        assert top.dump_state()["pages"] >= 1
        top.reconfigure({"pass-through": "on"})
        assert top.dump_state()["pages"] == 0
        assert await read(top, fd, 4096, 4096) == data[4096:8192]
        assert top.dump_state()["pages"] == 0
        with pytest.raises(OptionError, match="page-count"):
            top.reconfigure({"page-count": "17"})
        assert top.opts.pass_through          # a refused change keeps the old options
        top.reconfigure({"page-count": "16"})
        assert top.opts.page_count == 16 and not top.opts.pass_through
        await top.release(fd, None)
    for key, value in (("page-count", "0"), ("page-size", "1KB"), ("page-size", "65MB"),
                       ("force-atime-update", "sometimes")):
        with pytest.raises(VolfileError, match=f"option '{key}'"):
            Graph.from_text(volfile(brick, **{key.replace("-", "_"): value}))


def test_options_and_volume_set_keys_are_glusterfs():
    opts = {o.key: o for o in graph_mod.translator_class("performance/read-ahead").OPTIONS}
    assert (opts["page-count"].default, opts["page-count"].min, opts["page-count"].max) == \
        ("4", 1, 16)
    assert opts["page-count"].set_keys == ("performance.read-ahead-page-count",)
    assert opts["page-size"].default == "131072"
    assert opts["pass-through"].set_keys == ("performance.read-ahead-pass-through",)


_ops = s.lists(s.tuples(s.sampled_from(["write", "read", "read", "seqread", "truncate"]),
                        s.integers(0, 5 * PAGE), s.integers(0, PAGE + 7)), max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
async def test_reads_never_older_than_writes(tmp_path_factory, ops):
    """Random writes, truncates, sequential runs and reads - writes racing
    sequential reads - against a bytearray model."""
    brick = tmp_path_factory.mktemp("b")
    graph = Graph.from_text(volfile(brick, delay_fops="READ,WRITE,FTRUNCATE"))
    model = bytearray()
    async with graph.running():
        top = graph.top
        w = await new_file(top, "f", b"")
        fd = await reopen(top, w.gfid)
        position = 0
        for op, offset, size in ops:
            if op == "write":
                data = os.urandom(size)
                async with trio.open_nursery() as nursery:   # a read racing the write
                    nursery.start_soon(read, top, fd, 4096, position)
                    await top.writev(w, data, offset, 0, None)
                position += 4096
                if size:
                    if len(model) < offset:
                        model.extend(bytes(offset - len(model)))
                    model[offset:offset + size] = data
            elif op == "truncate":
                await top.ftruncate(w, offset, None)
                del model[offset:]
                model.extend(bytes(max(0, offset - len(model))))
            elif op == "seqread":
                for _ in range(6):
                    got = await read(top, fd, 20000, position)
                    assert got == bytes(model[position:position + 20000])
                    position += 20000
            elif size:
                assert await read(top, fd, size, offset) == bytes(model[offset:offset + size])
                position = offset + size
        assert await read_all(top, fd, 8192) == bytes(model)
        await top.release(fd, None)
        assert top.dump_state()["pages"] == 0


FUSE_VOLFILE = """
volume m-posix
    type storage/posix
    option directory {brick}
end-volume

volume m-read-ahead
    type performance/read-ahead
    subvolumes m-posix
end-volume
"""


def test_fuse_mount_reads_through_read_ahead(tmp_path):
    from test_fuse import Mount
    if not os.path.exists("/dev/fuse"):
        pytest.skip("needs /dev/fuse")
    m = Mount(tmp_path, volfile=FUSE_VOLFILE)
    assert m.ok(), m.result.stderr + (m.log.read_text() if m.log.exists() else "")
    try:
        data = bytearray(os.urandom(24 << 20))
        path = m.mnt / "f"
        path.write_bytes(data)
        with open(path, "rb", buffering=0) as f:
            got = bytearray()
            while chunk := f.read(4096):
                got += chunk
        assert got == data
        # writes through one descriptor are seen by a sequential reader of another
        with open(path, "rb", buffering=0) as r, open(path, "r+b", buffering=0) as w:
            assert r.read(1 << 20) == data[:1 << 20]
            w.seek((1 << 20) + 5000)
            w.write(b"W" * 70000)
            data[(1 << 20) + 5000:(1 << 20) + 75000] = b"W" * 70000
            assert r.read(1 << 20) == data[1 << 20:2 << 20]
            os.ftruncate(w.fileno(), 3 << 20)
            del data[3 << 20:]
            assert r.read() == data[2 << 20:]
        # random reads
        fd = os.open(path, os.O_RDONLY)
        try:
            for offset in (123457, 2_000_001, 7, 3_000_000, 1_048_575):
                assert os.pread(fd, 10000, offset) == data[offset:offset + 10000]
        finally:
            os.close(fd)
    finally:
        m.unmount()


async def test_a_read_waiting_on_a_fetch_cut_short_reads_below(brick):
    """The graph stopping cancels fetches in flight; a read waiting on one
    must not take the empty page for the end of the file."""
    graph = Graph.from_text(volfile(brick, delay_fops="READ"))
    data = os.urandom(1 << 20)
    async with graph.running():
        top = graph.top
        top.first_child.reconfigure({"enable": "READ", "delay-percentage": "100%",
                                     "delay-duration": "200000"})
        w = await new_file(top, "f", data)
        fd = await reopen(top, w.gfid)
        got = []

        async def reader():
            got.append(await read(top, fd, 4096, 0))

        graph_nursery = top.nursery
        async with trio.open_nursery() as outer:
            async with trio.open_nursery() as fetches:
                top.nursery = fetches               # the fetch runs here, the read in outer
                outer.start_soon(reader)
                await trio.sleep(0.05)              # the page fetch waits in delay-gen
                assert top.dump_state()["pages"] == 1
                fetches.cancel_scope.cancel()       # as the graph stopping does
            top.nursery = graph_nursery
        assert got == [data[:4096]]                 # read below, not an empty "EOF"
        assert top.dump_state()["pages"] == 0

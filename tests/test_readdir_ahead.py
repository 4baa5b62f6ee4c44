"""performance/readdir-ahead: listings through it are the brick's listings,
answered from a prefetched buffer; seeks and readdir pass through; entries
show the attributes after changes made through this graph; errors come in
order; the buffers stay under rda-cache-limit."""

from __future__ import annotations

import errno
import os

import pytest
import trio

from glusterpy import graph as graph_mod
from glusterpy.fops import GFID, ROOT_GFID, Fd, FopError, Loc
from glusterpy.graph import Graph
from glusterpy.options import OptionError
from glusterpy.volfile import VolfileError
from glusterpy.xlator import Translator


def volfile(brick, below: str = "", **options) -> str:
    """posix -> [below] -> readdir-ahead."""
    opts = "".join(f"    option {k.replace('_', '-')} {v}\n" for k, v in options.items())
    text = f"volume rda-posix\n    type storage/posix\n    option directory {brick}\nend-volume\n\n"
    under = "rda-posix"
    if below:
        text += f"volume rda-below\n    type {below}\n    subvolumes rda-posix\nend-volume\n\n"
        under = "rda-below"
    return text + (f"volume rda\n    type performance/readdir-ahead\n{opts}"
                   f"    subvolumes {under}\nend-volume\n")


def plain(brick) -> str:
    return f"volume p\n    type storage/posix\n    option directory {brick}\nend-volume\n"


async def make_dir(top, name, count, parent=ROOT_GFID):
    reply = await top.mkdir(Loc(path=f"/{name}", pargfid=parent, name=name), 0o755, 0,
                            {"gfid-req": GFID.random()})
    gfid = reply.iatt.gfid
    files = {}
    for i in range(count):
        fd = Fd(flags=os.O_RDWR)
        created = await top.create(Loc(pargfid=gfid, name=f"file-{i:05d}"),
                                   os.O_RDWR | os.O_CREAT, 0o644, 0, fd,
                                   {"gfid-req": GFID.random()})
        fd.gfid = created.iatt.gfid
        files[f"file-{i:05d}"] = fd
    return Loc(path=f"/{name}", gfid=gfid), files


async def opendir(top, loc):
    fd = Fd(gfid=loc.gfid, is_dir=True)
    await top.opendir(loc, fd, None)
    return fd


async def listing(top, fd, size=4096, offset=0, plus=True):
    """Every entry from `offset` on, in `size` requests: [(name, off, iatt)]."""
    out = []
    while True:
        call = top.readdirp if plus else top.readdir
        reply = await call(fd, size, offset, None)
        if not reply.entries:
            return out
        out += [(e.name, e.off, e.iatt) for e in reply.entries]
        offset = reply.entries[-1].off


async def wait_for(predicate):
    with trio.fail_after(10):
        while not predicate():
            await trio.sleep(0.01)


async def test_sequential_listing_is_the_bricks_and_uses_large_requests(brick):
    graph = Graph.from_text(volfile(brick))
    direct = Graph.from_text(plain(brick))
    async with graph.running(), direct.running():
        top = graph.top
        loc, files = await make_dir(top, "d", 1500)
        for fd in files.values():
            await top.release(fd, None)
        fd = await opendir(top, loc)
        got = await listing(top, fd)
        dfd = await opendir(direct.top, loc)
        want = await listing(direct.top, dfd)
        assert [(n, o) for n, o, _ in got] == [(n, o) for n, o, _ in want]
        assert {n for n, _, _ in got} >= set(files)
        assert all(a is not None and a.gfid == b.gfid and a.size == b.size
                   for (_, _, a), (_, _, b) in zip(got, want))
        state = top.dump_state()
        # ~95 4KB answers came from a handful of 128KB requests
        assert state["served"] > 80 and state["requests"] <= 5, state
        assert state["bypassed"] == 0
        await top.releasedir(fd, None)
        assert top.dump_state()["cached_bytes"] == 0


async def test_seek_and_readdir_pass_through_and_stay_correct(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        loc, _ = await make_dir(top, "d", 300)
        fd = await opendir(top, loc)
        everything = await listing(top, fd)
        await top.releasedir(fd, None)
        fd = await opendir(top, loc)
        first = (await top.readdirp(fd, 4096, 0, None)).entries
        # jump to the middle: the fd bypasses from now on, entries still right
        middle = everything[150][1]
        rest = await listing(top, fd, offset=middle)
        assert [n for n, _, _ in rest] == [n for n, _, _ in everything[151:]]
        assert top.dump_state()["bypassed"] == 1
        assert [e.name for e in first] == [n for n, _, _ in everything[:len(first)]]
        await top.releasedir(fd, None)
        fd = await opendir(top, loc)
        names = [n for n, _, _ in await listing(top, fd, plus=False)]
        assert names == [n for n, _, _ in everything]
        await top.releasedir(fd, None)


async def test_rewind_after_the_end_lists_afresh(brick):
    graph = Graph.from_text(volfile(brick))
    other = Graph.from_text(plain(brick))   # a second client
    async with graph.running(), other.running():
        top = graph.top
        loc, _ = await make_dir(top, "d", 50)
        fd = await opendir(top, loc)
        before = {n for n, _, _ in await listing(top, fd)}
        await other.top.mknod(Loc(pargfid=loc.gfid, name="late"), 0o100644, 0, 0,
                              {"gfid-req": GFID.random()})
        after = {n for n, _, _ in await listing(top, fd)}  # offset 0 again
        assert "late" not in before and after == before | {"late"}
        await top.releasedir(fd, None)


async def test_entries_show_changes_made_through_the_graph_after_the_prefetch(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        loc, files = await make_dir(top, "d", 40)
        fd = await opendir(top, loc)
        await wait_for(lambda: top.dump_state()["prefetching"] == 0)  # all buffered
        await top.writev(files["file-00007"], b"x" * 1234, 0, 0, None)
        await top.ftruncate(files["file-00009"], 77, None)
        await top.fsetxattr(files["file-00011"], {"user.k": b"v"}, 0, None)
        ctime_before = (await top.fstat(files["file-00011"], None)).iatt.ctime_ns
        got = {n: a for n, _, a in await listing(top, fd)}
        assert got["file-00007"].size == 1234
        assert got["file-00009"].size == 77
        fresh = (await top.fstat(files["file-00011"], None)).iatt
        assert got["file-00011"].ctime_ns == fresh.ctime_ns >= ctime_before
        assert got["file-00001"].size == 0
        await top.releasedir(fd, None)


class FailReaddirp(Translator):
    """Fails readdirp past the first answer with EIO (a brick going bad)."""

    async def readdirp(self, fd, size, offset, xdata=None):
        if offset:
            raise FopError(errno.EIO, "injected")
        return await self.first_child.readdirp(fd, min(size, 4096), offset, xdata)


TRANSLATOR = FailReaddirp


async def test_a_prefetch_error_comes_after_the_entries_before_it(brick, monkeypatch):
    monkeypatch.setitem(graph_mod.TRANSLATORS, "testing/fail-readdirp", __name__)
    graph = Graph.from_text(volfile(brick, below="testing/fail-readdirp"))
    async with graph.running():
        top = graph.top
        loc, _ = await make_dir(top, "d", 100)
        fd = await opendir(top, loc)
        first = await top.readdirp(fd, 1024, 0, None)
        seen = list(first.entries)
        with pytest.raises(FopError) as err:
            offset = seen[-1].off
            while True:
                reply = await top.readdirp(fd, 1024, offset, None)
                assert reply.entries
                seen += reply.entries
                offset = reply.entries[-1].off
        assert err.value.errno == errno.EIO
        # every entry of the first (4KB) brick answer came before the error
        assert 15 <= len(seen) <= 20
        await top.releasedir(fd, None)


async def test_buffers_stay_under_the_cache_limit(brick):
    graph = Graph.from_text(volfile(brick, rda_cache_limit="64KB", rda_request_size="16KB"))
    async with graph.running():
        top = graph.top
        dirs = [await make_dir(top, f"d{i}", 600) for i in range(4)]
        fds = [await opendir(top, loc) for loc, _ in dirs]
        peak = 0

        async def watch():
            nonlocal peak
            while True:
                peak = max(peak, top.dump_state()["cached_bytes"])
                await trio.sleep(0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            lists = [await listing(top, fd) for fd in fds]
            nursery.cancel_scope.cancel()
        assert all(len(entries) == 602 for entries in lists)   # with . and ..
        # the limit, overshot by at most one request made for a waiting
        # reader, on top of the few entries it had left (under its 4KB)
        assert peak <= (64 << 10) + (16 << 10) + 4096, peak
        for fd in fds:
            await top.releasedir(fd, None)
        assert top.dump_state()["cached_bytes"] == 0


async def test_release_while_prefetching_and_pass_through(brick):
    graph = Graph.from_text(volfile(brick, below="debug/delay-gen"))
    async with graph.running():
        top = graph.top
        top.first_child.reconfigure({"enable": "READDIRP", "delay-percentage": "100%",
                                     "delay-duration": "50000"})
        loc, _ = await make_dir(top, "d", 20)
        fd = await opendir(top, loc)
        assert top.dump_state()["prefetching"] == 1
        await top.releasedir(fd, None)     # waits for the request in flight
        assert top.dump_state()["prefetching"] == 0 and top.dump_state()["cached_bytes"] == 0
        top.reconfigure({"pass-through": "on"})
        fd = await opendir(top, loc)
        assert len(await listing(top, fd)) == 22
        assert top.dump_state()["served"] == 0 and top.dump_state()["cached_bytes"] == 0
        await top.releasedir(fd, None)


@pytest.mark.parametrize("key, value", [("rda-request-size", "1MB"), ("rda-request-size", "1KB"),
                                        ("rda-low-wmark", "lots"), ("rda-high-wmark", "200MB"),
                                        ("parallel-readdir", "maybe")])
async def test_bad_option_values_are_refused(brick, key, value):
    with pytest.raises(VolfileError, match=f"option '{key}'"):
        Graph.from_text(volfile(brick, **{key.replace("-", "_"): value}))
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        with pytest.raises(OptionError, match=f"option '{key}'"):
            graph.top.reconfigure({key: value})
        assert graph.top.opts.rda_request_size == 131072 and not graph.top.opts.parallel_readdir


def test_options_and_volume_set_keys_are_glusterfs():
    cls = graph_mod.translator_class("performance/readdir-ahead")
    opts = {o.key: o for o in cls.OPTIONS}
    assert opts["rda-request-size"].default == "131072"
    assert opts["rda-cache-limit"].default == "10MB"
    assert opts["pass-through"].set_keys == ("performance.readdir-ahead-pass-through",)
    assert opts["parallel-readdir"].set_keys == ("performance.parallel-readdir",)


FUSE_VOLFILE = """
volume m-posix
    type storage/posix
    option directory {brick}
end-volume

volume m-read-ahead
    type performance/read-ahead
    subvolumes m-posix
end-volume

volume m-readdir-ahead
    type performance/readdir-ahead
    option rda-cache-limit 256KB
    subvolumes m-read-ahead
end-volume
"""


def test_fuse_mount_lists_and_stats_through_readdir_ahead(tmp_path):
    from test_fuse import Mount
    if not os.path.exists("/dev/fuse"):
        pytest.skip("needs /dev/fuse")
    m = Mount(tmp_path, volfile=FUSE_VOLFILE)
    assert m.ok(), m.result.stderr + (m.log.read_text() if m.log.exists() else "")
    try:
        big = m.mnt / "big"
        big.mkdir()
        names = {f"entry-{i:05d}-{'x' * (i % 40)}" for i in range(3000)}
        for name in names:
            (big / name).write_bytes(b"")
        assert set(os.listdir(big)) == names
        assert set(os.listdir(m.brick / "big")) == names
        # a listing opened before writes shows the sizes after them
        with os.scandir(big) as it:
            first = next(it)
            for i, name in enumerate(sorted(names)[:50]):
                (big / name).write_bytes(b"y" * (i + 1))
            sizes = {e.name: e.stat(follow_symlinks=False).st_size for e in [first, *it]}
        assert len(sizes) == 3000
        for i, name in enumerate(sorted(names)[:50]):
            assert os.stat(big / name).st_size == i + 1
            assert sizes[name] in (0, i + 1) if name == first.name else sizes[name] == i + 1
        # seekdir/telldir and rewinddir through the mount
        fd = os.open(big, os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert len(os.listdir(fd)) == 3000
            os.lseek(fd, 0, os.SEEK_SET)
            (big / "late").write_bytes(b"")
            assert "late" in os.listdir(fd)
        finally:
            os.close(fd)
        for name in list(names)[:1000]:
            os.unlink(big / name)
        assert len(os.listdir(big)) == 2001
    finally:
        m.unmount()


async def test_a_reader_that_kept_part_of_an_answer_gets_the_rest(brick):
    """The FUSE bridge's case: ask 128KB, keep a few entries, ask again
    from the last one kept - served from the buffer, not bypassed."""
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        loc, _ = await make_dir(top, "d", 2000)
        fd = await opendir(top, loc)
        whole = await listing(top, fd, size=4096)
        await top.releasedir(fd, None)
        requests = top.dump_state()["requests"]
        fd = await opendir(top, loc)
        seen, offset = [], 0
        for kept in (3, 1, 17, 40) * 200:
            reply = await top.readdirp(fd, 128 * 1024, offset, None)
            if not reply.entries:
                break
            seen += [e.name for e in reply.entries[:kept]]
            offset = reply.entries[:kept][-1].off
        assert seen == [n for n, _, _ in whole]
        state = top.dump_state()
        assert state["bypassed"] == 0 and state["requests"] - requests <= 6, state
        # a real seek still bypasses
        await top.readdirp(fd, 4096, whole[5][1], None)
        assert top.dump_state()["bypassed"] == 1
        await top.releasedir(fd, None)
        assert top.dump_state()["cached_bytes"] == 0


async def test_rewind_in_the_middle_shows_the_directory_as_it_is_now(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        loc, _ = await make_dir(top, "d", 300)
        fd = await opendir(top, loc)
        first = await top.readdirp(fd, 4096, 0, None)
        await top.mknod(Loc(pargfid=loc.gfid, name="new"), 0o100644, 0, 0,
                        {"gfid-req": GFID.random()})
        await top.unlink(Loc(pargfid=loc.gfid, name=first.entries[-1].name), 0)
        names = {n for n, _, _ in await listing(top, fd)}   # rewinddir: offset 0
        assert "new" in names and first.entries[-1].name not in names
        await top.releasedir(fd, None)

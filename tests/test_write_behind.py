"""performance/write-behind: writes are answered at once and sent behind,
aggregated; whatever depends on them (reads, stat, truncate, flush, fsync,
close, another client after close) sees them; their errors come back from
flush or fsync; the window bounds what a file holds."""

from __future__ import annotations

import errno
import os

import pytest
import trio
from hypothesis import HealthCheck, given, settings, strategies as s

from glusterpy.fops import GFID, ROOT_GFID, Fd, FopError, Loc
from glusterpy.graph import Graph
from glusterpy.options import OptionError
from glusterpy.volfile import VolfileError

K = 4096


def volfile(brick, delay_fops: str = "", percent: int = 50, **options) -> str:
    """posix -> [debug/delay-gen] -> write-behind; delay-gen makes the
    listed fops suspend, so behind writes really are in flight."""
    opts = "".join(f"    option {k.replace('_', '-').replace('O-DIRECT', 'O_DIRECT')} {v}\n"
                   for k, v in options.items())
    below = "wb-posix"
    text = f"volume wb-posix\n    type storage/posix\n    option directory {brick}\nend-volume\n\n"
    if delay_fops:
        text += (f"volume wb-delay\n    type debug/delay-gen\n"
                 f"    option delay-percentage {percent}%\n    option delay-duration 3000\n"
                 f"    option enable {delay_fops}\n    subvolumes wb-posix\nend-volume\n\n")
        below = "wb-delay"
    return text + f"volume wb\n    type performance/write-behind\n{opts}    subvolumes {below}\nend-volume\n"


async def create(top, name, flags=os.O_RDWR):
    fd = Fd(flags=flags)
    reply = await top.create(Loc(path=f"/{name}", pargfid=ROOT_GFID, name=name),
                             flags | os.O_CREAT, 0o644, 0, fd, {"gfid-req": GFID.random()})
    fd.gfid = reply.iatt.gfid
    return fd


async def reopen(top, fd, flags=os.O_RDWR, name="f"):
    new = Fd(gfid=fd.gfid, flags=flags)
    await top.open(Loc(path=f"/{name}", gfid=fd.gfid), flags, new, None)
    return new


async def read(top, fd, size, offset=0):
    return bytes((await top.readv(fd, size, offset, 0, None)).data)


async def test_small_writes_are_acknowledged_at_once_and_aggregated(brick):
    graph = Graph.from_text(volfile(brick, delay_fops="WRITE", percent=100))
    async with graph.running():
        top = graph.top
        fd = await create(top, "f")
        blocks = [os.urandom(K) for _ in range(64)]
        with trio.fail_after(0.5):  # 64 delayed writes of 3 ms would take 190 ms each way
            for n, block in enumerate(blocks):
                assert (await top.writev(fd, block, n * K, 0, None)).count == K
        state = top.dump_state()
        assert state["lied"] == 64 and state["window"] > 0
        await top.flush(fd, None)
        assert top.dump_state()["window"] == 0
        # the first went alone (trickling), the rest in aggregates of <= 128 KB
        assert 2 <= top.sent <= 4
        await top.release(fd, None)
    assert (brick / "f").read_bytes() == b"".join(blocks)


async def test_a_read_sees_the_writes_before_it(brick):
    graph = Graph.from_text(volfile(brick, delay_fops="WRITE", percent=100))
    async with graph.running():
        top = graph.top
        fd = await create(top, "f")
        await top.writev(fd, b"a" * 100, 0, 0, None)
        await top.writev(fd, b"b" * 10, 50, 0, None)   # overlaps: applied after
        assert await read(top, fd, 200) == b"a" * 50 + b"b" * 10 + b"a" * 40
        # a write past the end: a read of the hole it leaves sees zeros
        await top.writev(fd, b"z", 1 << 20, 0, None)
        assert await read(top, fd, K, 4096) == bytes(K)
        rfd = await reopen(top, fd, os.O_RDONLY)       # another fd of the inode
        await top.writev(fd, b"c" * 5, 0, 0, None)
        assert await read(top, rfd, 6) == b"ccccca"


async def test_stat_answers_reflect_behind_writes(brick):
    graph = Graph.from_text(volfile(brick, delay_fops="WRITE", percent=100))
    async with graph.running():
        top = graph.top
        fd = await create(top, "f")
        for n in range(10):
            await top.writev(fd, b"x" * 1000, n * 1000, 0, None)
        assert (await top.fstat(fd, None)).iatt.size == 10_000
        await top.writev(fd, b"y" * 5000, 10_000, 0, None)
        assert (await top.stat(Loc(gfid=fd.gfid), None)).iatt.size == 15_000
        await top.writev(fd, b"y", 20_000, 0, None)
        reply = await top.lookup(Loc(path="/f", pargfid=ROOT_GFID, name="f"), None)
        assert reply.iatt.size == 20_001
        await top.writev(fd, b"w", 30_000, 0, None)
        # a listing looks at its entries only while some file has writes
        # queued (or an error kept): it is counted, and this one is
        assert top.dump_state()["queued_files"] == 1
        dfd = Fd(gfid=ROOT_GFID, is_dir=True)
        await top.opendir(Loc.root(), dfd, None)
        entries = (await top.readdirp(dfd, 65536, 0, None)).entries
        assert [e.iatt.size for e in entries if e.name == "f"] == [30_001]
        await top.fsync(fd, 0, None)  # (a flush goes behind too)
        assert top.dump_state()["queued_files"] == 0


async def test_truncate_and_data_changes_wait_for_earlier_writes(brick):
    graph = Graph.from_text(volfile(brick, delay_fops="WRITE", percent=100))
    async with graph.running():
        top = graph.top
        fd = await create(top, "f")
        await top.writev(fd, b"1" * 8192, 0, 0, None)
        await top.ftruncate(fd, 100, None)      # must not be overtaken by the write
        assert (brick / "f").stat().st_size == 100
        await top.writev(fd, b"2" * 8192, 0, 0, None)
        await top.truncate(Loc(gfid=fd.gfid), 10, None)
        assert (brick / "f").read_bytes() == b"2" * 10
        await top.writev(fd, b"3" * 8192, 0, 0, None)
        await top.zerofill(fd, 0, 4, None)
        assert (brick / "f").read_bytes()[:6] == b"\0\0\0\0" + b"33"


async def test_sync_and_direct_writes_are_not_delayed(brick):
    graph = Graph.from_text(volfile(brick, strict_O_DIRECT="on"))
    async with graph.running():
        top = graph.top
        fd = await create(top, "f", os.O_RDWR | os.O_SYNC)
        await top.writev(fd, b"s" * 100, 0, 0, None)
        plain = await create(top, "g")
        await top.writev(plain, b"d" * 100, 0, os.O_DSYNC, None)  # per-call flag
        direct = await create(top, "h")
        direct.flags |= os.O_DIRECT   # as the fd of an O_DIRECT open
        await top.writev(direct, bytearray(K), 0, 0, None)
        assert top.dump_state()["lied"] == 0
        top.reconfigure({"strict-O_DIRECT": "off"})
        await top.writev(direct, bytes(K), K, 0, None)
        assert top.dump_state()["lied"] == 1


async def test_writes_from_several_fds_land_in_order(brick):
    graph = Graph.from_text(volfile(brick, delay_fops="WRITE", percent=50))
    async with graph.running():
        top = graph.top
        a = await create(top, "f")
        b = await reopen(top, a)
        for n in range(50):
            await top.writev(a if n % 2 else b, bytes([n]) * 3000, (n % 7) * 1000, 0, None)
        expected = bytearray(9000)
        for n in range(50):
            expected[(n % 7) * 1000:(n % 7) * 1000 + 3000] = bytes([n]) * 3000
        await top.flush(a, None)
        await top.release(a, None)
        await top.release(b, None)
    assert (brick / "f").read_bytes() == bytes(expected)


async def test_release_and_fini_send_what_is_behind(brick):
    graph = Graph.from_text(volfile(brick, delay_fops="WRITE", percent=100,
                                    trickling_writes="off"))
    async with graph.running():
        top = graph.top
        fd = await create(top, "f")
        await top.writev(fd, b"r" * 100, 0, 0, None)
        assert top.sent == 0  # no trickling: it waits for company
        await top.release(fd, None)          # no flush: release must still send it
        assert (brick / "f").read_bytes() == b"r" * 100
        other = await create(top, "g")
        await top.writev(other, b"u" * 100, 0, 0, None)
    # the graph stopped with a write behind: fini sent it
    assert (brick / "g").read_bytes() == b"u" * 100


async def test_another_client_sees_the_writes_after_close(brick):
    mine = Graph.from_text(volfile(brick, delay_fops="WRITE,FLUSH", percent=100))
    other = Graph.from_text(volfile(brick))
    async with mine.running(), other.running():
        fd = await create(mine.top, "f")
        for n in range(40):
            await mine.top.writev(fd, b"%04d" % n * 256, n * 1024, 0, None)
        await mine.top.flush(fd, None)       # close(2): the writes before it land
        ofd = await reopen(other.top, fd, os.O_RDONLY)
        assert await read(other.top, ofd, 40 * 1024) == b"".join(b"%04d" % n * 256
                                                                 for n in range(40))


async def test_a_failed_behind_write_is_reported_by_flush_then_cleared(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        fd = await create(top, "f")
        await top.writev(fd, b"ok", 0, 0, None)
        rfd = await reopen(top, fd, os.O_RDONLY)
        # the brick refuses a write on a read-only fd - behind the caller's back
        assert (await top.writev(rfd, b"lost", 0, 0, None)).count == 4
        await trio.sleep(0.01)               # let it be sent and fail
        with pytest.raises(FopError) as e:
            await read(top, fd, 4)             # overlaps the failed write
        assert e.value.errno == errno.EBADF
        with pytest.raises(FopError) as e:
            await top.flush(rfd, None)
        assert e.value.errno == errno.EBADF
        await top.flush(rfd, None)           # reported once, then cleared
        assert await read(top, fd, 4) == b"ok"
        assert top.dump_state()["window"] == 0


@pytest.fixture
def tiny_brick(tmp_path):
    """A 1 MiB tmpfs as the brick, to run out of space."""
    import subprocess
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = tmp_path / "tiny"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)], check=True)
    yield path
    subprocess.run(["umount", "-l", str(path)], check=True)


async def test_a_failed_behind_write_is_retried_when_the_next_fop_comes(tiny_brick):
    graph = Graph.from_text(volfile(tiny_brick))
    async with graph.running():
        top = graph.top
        fd = await create(top, "f")
        filler = tiny_brick / "filler"
        with open(filler, "wb") as f:   # the brick fills up behind the client's back
            try:
                f.write(b"\0" * (2 << 20))
            except OSError:
                pass
        data = os.urandom(256 << 10)
        await top.writev(fd, data, 0, 0, None)    # lied; fails ENOSPC below
        await trio.sleep(0.02)
        assert top.dump_state()["queued"] == 1   # kept, not dropped
        filler.unlink()                           # space again
        assert await read(top, fd, len(data)) == data   # the read retried it first
        await top.flush(fd, None)                 # nothing left to report
        assert (tiny_brick / "f").read_bytes() == data

async def test_fsync_reports_and_resync_keeps_failed_writes(brick):
    graph = Graph.from_text(volfile(brick, resync_failed_syncs_after_fsync="on"))
    async with graph.running():
        top = graph.top
        fd = await create(top, "f")
        rfd = await reopen(top, fd, os.O_RDONLY)
        await top.writev(rfd, b"lost", 0, 0, None)
        for _ in range(2):   # kept for a retry after each failed fsync...
            with pytest.raises(FopError) as e:
                await top.fsync(fd, 0, None)
            assert e.value.errno == errno.EBADF
        with pytest.raises(FopError):
            await top.flush(fd, None)           # ...until a flush forgets them
        await top.fsync(fd, 0, None)
        top.reconfigure({"resync-failed-syncs-after-fsync": "off"})
        await top.writev(rfd, b"lost", 0, 0, None)
        with pytest.raises(FopError):
            await top.fsync(fd, 0, None)
        await top.fsync(fd, 0, None)            # forgotten at once


async def test_an_error_dropped_at_release_is_reported_by_the_next_fsync(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        fd = await create(top, "f")
        rfd = await reopen(top, fd, os.O_RDONLY)
        await top.writev(rfd, b"lost", 0, 0, None)
        await top.release(rfd, None)            # no flush: nobody was told yet
        # the kept error counts as a file a listing must look at
        assert (top.dump_state()["queued_files"], top.dump_state()["failed_files"]) == (0, 1)
        with pytest.raises(FopError) as e:
            await top.fsync(fd, 0, None)
        assert e.value.errno == errno.EBADF
        assert top.dump_state()["failed_files"] == 0
        await top.fsync(fd, 0, None)


async def test_the_window_bounds_what_a_file_holds(brick):
    graph = Graph.from_text(volfile(brick, delay_fops="WRITE", percent=100,
                                    cache_size="512KB", aggregate_size="64KB"))
    async with graph.running():
        top = graph.top
        fd = await create(top, "f")
        peak = 0
        for n in range(512):                     # 2 MB, four windows' worth
            await top.writev(fd, os.urandom(K)[:1] * K, n * K * 3, 0, None)
            peak = max(peak, top.dump_state()["window"])
        assert 256 << 10 < peak <= 512 << 10
        await top.flush(fd, None)


class _Spawns(trio.abc.Instrument):
    def __init__(self):
        self.names = []

    def task_spawned(self, task):
        if "write_behind" in task.name:   # not the brick's own (posix's AIO loop)
            self.names.append(task.name)


async def test_behind_writes_start_no_task_each(brick):
    """GlusterFS winds due writes from the thread that made them due; here a
    few sender tasks are started once and kept, not a trio task per write
    (which was 13% of a FUSE mount's samples on writes)."""
    graph = Graph.from_text(volfile(brick, delay_fops="WRITE", percent=50))
    async with graph.running():
        top = graph.top
        fds = [await create(top, f"f{i}") for i in range(4)]
        spawns = _Spawns()
        trio.lowlevel.add_instrument(spawns)
        try:
            for n in range(200):     # 4 files, writes and flushes interleaved
                for fd in fds:
                    await top.writev(fd, os.urandom(K), n * 2 * K, 0, None)
                if n % 50 == 49:
                    for fd in fds:
                        await top.flush(fd, None)
            for fd in fds:
                await top.flush(fd, None)
        finally:
            trio.lowlevel.remove_instrument(spawns)
        assert top.sent >= 200       # not aggregated (holes): hundreds of sends ...
        # ... by a few tasks, kept between bursts (4 files x 4 in flight each,
        # and a sender started while another was finishing; a task each: 820)
        assert len(spawns.names) <= 24, sorted(set(spawns.names))
        for fd in fds:
            await top.release(fd, None)
    for i in range(4):
        data = (brick / f"f{i}").read_bytes()
        assert len(data) == 199 * 2 * K + K


async def test_a_file_whose_writes_hang_holds_no_other_files(brick, monkeypatch):
    """The senders are shared, but a file whose writes hang below (a hung
    brick) keeps at most a few of them: another file's writes still go."""
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        stuck, free = await create(top, "stuck"), await create(top, "free")
        posix, release = graph.by_name["wb-posix"], trio.Event()
        real_writev = posix.writev

        async def writev(fd, data, offset, flags, xdata=None):
            if fd.gfid == stuck.gfid:
                await release.wait()
            return await real_writev(fd, data, offset, flags, xdata)
        monkeypatch.setattr(posix, "writev", writev)
        try:
            for n in range(40):    # holes: 40 requests, none aggregated
                await top.writev(stuck, os.urandom(K), n * 2 * K, 0, None)
            with trio.fail_after(5):
                for n in range(40):
                    await top.writev(free, os.urandom(K), n * 2 * K, 0, None)
                await top.flush(free, None)
            assert (brick / "free").stat().st_size == 79 * K
            assert (brick / "stuck").stat().st_size == 0
        finally:
            release.set()  # else the graph's stop would wait for them forever
        await top.flush(stuck, None)
        assert (brick / "stuck").stat().st_size == 79 * K
        for fd in (stuck, free):
            await top.release(fd, None)


async def test_behind_writes_keep_their_inode_in_the_table(brick):
    graph = Graph.from_text(volfile(brick, delay_fops="WRITE", percent=100))
    async with graph.running():
        top = graph.top
        top.itable.limit = 2
        fd = await create(top, "f")
        await top.writev(fd, b"k" * 100, 0, 0, None)
        top.itable.forget(fd.gfid)              # as the kernel's FORGET would
        for n in range(5):                      # and a walk pushing the LRU
            top.itable.find_or_create(GFID.random())
        assert top.itable.peek_ctx(top, fd.gfid) is not None
        assert (await top.fstat(fd, None)).iatt.size == 100
        await top.flush(fd, None)
        await trio.sleep(0.02)
        for n in range(5):
            top.itable.find_or_create(GFID.random())
        assert top.itable.peek_ctx(top, fd.gfid) is None  # idle: the LRU may take it


async def test_flush_behind_and_lk_order(brick):
    graph = Graph.from_text(volfile(brick, delay_fops="FLUSH", percent=100))
    async with graph.running():
        top = graph.top
        fd = await create(top, "f")
        await top.flush(fd, None)
        assert top.dump_state()["queued"] == 1       # answered, the flush still behind
        await top.fstat(fd, None)                  # waits for it
        assert top.dump_state()["queued"] == 0
        top.reconfigure({"flush-behind": "off"})
        await top.flush(fd, None)
        assert top.dump_state()["queued"] == 0


async def test_strict_write_ordering_and_pass_through(brick):
    graph = Graph.from_text(volfile(brick, delay_fops="WRITE", percent=100,
                                    strict_write_ordering="on"))
    async with graph.running():
        top = graph.top
        fd = await create(top, "f")
        for n in range(4):
            await top.writev(fd, b"%d" % n * K, n * 2 * K, 0, None)  # not contiguous
        await trio.sleep(0)
        assert top.dump_state()["transit"] == K  # one at a time
        await top.flush(fd, None)
        top.reconfigure({"pass-through": "on"})
        lied = top.lied
        await top.writev(fd, b"p", 0, 0, None)
        assert top.lied == lied


def test_invalid_options_are_refused(brick):
    with pytest.raises(VolfileError, match="'cache-size': '100KB' is below the minimum"):
        Graph.from_text(volfile(brick, cache_size="100KB"))
    with pytest.raises(VolfileError, match="'aggregate-size' .* cannot be more than"):
        Graph.from_text(volfile(brick, cache_size="512KB", aggregate_size="1MB"))
    with pytest.raises(VolfileError, match="'flush-behind': 'maybe' is not a boolean"):
        Graph.from_text(volfile(brick, flush_behind="maybe"))
    graph = Graph.from_text(volfile(brick, window_size="2MB"))  # GlusterFS's alias
    assert graph.top.opts.cache_size == 2 << 20


def test_volume_set_keys_are_glusterfs_ones():
    from glusterpy.glusterd import volgen
    for key, option in (("performance.write-behind-window-size", "cache-size"),
                        ("performance.flush-behind", "flush-behind"),
                        ("performance.strict-o-direct", "strict-O_DIRECT"),
                        ("performance.strict-write-ordering", "strict-write-ordering"),
                        ("performance.write-behind-trickling-writes", "trickling-writes"),
                        ("performance.resync-failed-syncs-after-fsync",
                         "resync-failed-syncs-after-fsync"),
                        ("performance.aggregate-size", "aggregate-size"),
                        ("performance.write-behind-pass-through", "pass-through")):
        found = volgen.lookup_key(key)
        assert found.types == ("performance/write-behind",) and found.option.key == option
    assert volgen.lookup_key("performance.write-behind").toggles == "performance/write-behind"
    with pytest.raises(OptionError):
        volgen.lookup_key("performance.nfs.write-behind-window-size")  # no gNFS here

async def test_a_refused_reconfigure_changes_nothing(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        with pytest.raises(OptionError):
            top.reconfigure({"aggregate-size": "4MB"})
        assert top.opts.aggregate_size == 128 << 10 and top._aggregate == 128 << 10
        top.reconfigure({"cache-size": "4MB", "aggregate-size": "1MB"})
        assert top._window == 4 << 20 and top._aggregate == 1 << 20


_ops = s.lists(s.tuples(s.sampled_from(["write", "write", "write", "read", "truncate", "stat"]),
                        s.integers(0, 64 * K), s.integers(0, 3 * K), s.booleans()),
               max_size=40)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_ops)
async def test_every_read_matches_a_model(tmp_path_factory, ops):
    """Random writes through two fds, truncates, stats and reads, with the
    child's writes delayed at random: every answer is the model's."""
    brick = tmp_path_factory.mktemp("b")
    graph = Graph.from_text(volfile(brick, delay_fops="WRITE,READ,FTRUNCATE", percent=30,
                                    cache_size="512KB", aggregate_size="16KB"))
    model = bytearray()
    async with graph.running():
        top = graph.top
        a = await create(top, "f")
        b = await reopen(top, a)
        for op, offset, size, other in ops:
            fd = b if other else a
            if op == "write":
                data = os.urandom(size)
                await top.writev(fd, data, offset, 0, None)
                if size:
                    model.extend(bytes(max(0, offset + size - len(model))))
                    model[offset:offset + size] = data
            elif op == "truncate":
                await top.ftruncate(fd, offset, None)
                del model[offset:]
                model.extend(bytes(offset - len(model)))
            elif op == "stat":
                assert (await top.fstat(fd, None)).iatt.size == len(model)
            elif size:
                assert await read(top, fd, size, offset) == bytes(model[offset:offset + size])
        await top.flush(a, None)
        await top.release(a, None)
        await top.release(b, None)
    assert (brick / "f").read_bytes() == bytes(model)


# -- through a real FUSE mount ---------------------------------------------------

FUSE_VOLFILE = """
volume f-posix
    type storage/posix
    option directory {brick}
end-volume

volume f-delay
    type debug/delay-gen
    option delay-percentage 100%
    option delay-duration 1000
    option enable WRITE
    subvolumes f-posix
end-volume

volume f-wb
    type performance/write-behind
    subvolumes f-delay
end-volume
"""


def fuse_mount(base, brick=None, options=""):
    import shutil

    from test_fuse import Mount
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        pytest.skip("needs /dev/fuse and fusermount3 (fuse3)")
    text = FUSE_VOLFILE if brick is None else FUSE_VOLFILE.replace("{brick}", str(brick))
    m = Mount(base, options=options, volfile=text)
    assert m.ok(), m.result.stderr + (m.log.read_text() if m.log.exists() else "")
    return m


@pytest.mark.parametrize("mode", ["disable", "enable"])
def test_fuse_writes_reads_and_sizes_match_a_local_file(tmp_path, mode):
    """Small writes, reads of them (through the page cache and, with
    direct-io-mode, through write-behind itself), truncates and sizes on
    the mount match the same calls on a local file; after close the brick
    holds it all.  Every write below write-behind is delayed (debug/delay-gen),
    so the behind ones really are behind when the reads come."""
    import random
    m = fuse_mount(tmp_path, options=f"direct-io-mode={mode}")
    local = tmp_path / "local"
    try:
        rng = random.Random(17)
        fds = [os.open(m.mnt / "f", os.O_RDWR | os.O_CREAT, 0o644),
               os.open(local, os.O_RDWR | os.O_CREAT, 0o644)]
        for _ in range(1500):
            op = rng.choice("wwwwwrrst")
            off, size = rng.randrange(0, 256 * K), rng.randrange(1, 3 * K)
            data = rng.randbytes(size)
            results = []
            for fd in fds:
                if op == "w":
                    results.append(os.pwrite(fd, data, off))
                elif op == "r":
                    results.append(os.pread(fd, size, off))
                elif op == "t":
                    results.append(os.ftruncate(fd, off))
                else:
                    results.append(os.fstat(fd).st_size)
            assert results[0] == results[1], op
        for fd in fds:
            os.close(fd)
        assert (m.mnt / "f").read_bytes() == local.read_bytes()
        assert (m.brick / "f").read_bytes() == local.read_bytes()
    finally:
        m.unmount()


def test_fuse_sequential_writes_land_by_close_and_errors_surface(tmp_path):
    """A sequential writer (4 KiB writes) on the mount: another reader of
    the brick sees everything once close(2) returned; on a full brick the
    writer is told ENOSPC, by a write(2) or at the latest by close(2)."""
    import subprocess
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(tiny)], check=True)
    m = fuse_mount(tmp_path, brick=tiny)
    try:
        data = os.urandom(512 * 1024)
        fd = os.open(m.mnt / "seq", os.O_WRONLY | os.O_CREAT, 0o644)
        for off in range(0, len(data), K):
            assert os.write(fd, data[off:off + K]) == K
        assert os.fstat(fd).st_size == len(data)
        os.close(fd)
        assert (tiny / "seq").read_bytes() == data
        os.unlink(m.mnt / "seq")
        fd = os.open(m.mnt / "big", os.O_WRONLY | os.O_CREAT, 0o644)
        told = None
        try:
            for _ in range(2048):                   # 8 MiB onto a 1 MiB brick
                os.write(fd, b"w" * K)
        except OSError as e:
            told = e.errno
        try:
            os.close(fd)
        except OSError as e:
            told = told or e.errno
        assert told == errno.ENOSPC
    finally:
        m.unmount()
        subprocess.run(["umount", "-l", str(tiny)], check=True)


async def test_writes_go_through_while_the_child_is_down(brick):
    from glusterpy.xlator import Event
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        fd = await create(top, "f")
        top.notify(Event.CHILD_DOWN, top.first_child)   # as protocol/client says it
        await top.writev(fd, b"now", 0, 0, None)
        assert top.lied == 0 and (brick / "f").read_bytes() == b"now"
        top.notify(Event.CHILD_UP, top.first_child)
        await top.writev(fd, b"later", 3, 0, None)
        assert top.lied == 1

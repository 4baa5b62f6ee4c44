"""Linux native AIO (glusterpy.linux_aio) and storage/posix's `linux-aio`:
O_DIRECT reads and writes under io-threads go to the kernel without a
worker thread, with the same answers - data, short reads, errors - as the
synchronous path, and a cancelled caller still waits for its buffer."""

from __future__ import annotations

import errno
import mmap
import os

import pytest
import trio

from glusterpy import linux_aio
from glusterpy import volfile as vf
from glusterpy.fops import FopError
from glusterpy.graph import Graph
from glusterpy.linux_aio import AioContext
from test_io_threads import iot_of, make_file, volfile

BLOCK = 64 * 1024


@pytest.fixture
async def aio(nursery):
    ctx = AioContext.open(depth=8)
    assert ctx is not None, "this kernel gives no AIO context"
    nursery.start_soon(ctx.run)
    yield ctx
    ctx.close()


def direct_file(path, data: bytes) -> int:
    path.write_bytes(data)
    return os.open(path, os.O_RDWR | os.O_DIRECT)


async def test_reads_and_writes_more_than_the_depth_at_once(aio, tmp_path):
    blobs = [os.urandom(BLOCK) for _ in range(20)]      # depth 8: the rest wait for slots
    fd = direct_file(tmp_path / "f", bytes(BLOCK * len(blobs)))
    try:
        async def write(i):
            buf = mmap.mmap(-1, BLOCK)
            buf[:] = blobs[i]
            assert await aio.pwrite(fd, buf, i * BLOCK) == BLOCK
        async with trio.open_nursery() as n:
            for i in range(len(blobs)):
                n.start_soon(write, i)
        assert (tmp_path / "f").read_bytes() == b"".join(blobs)
        got = {}

        async def read(i):
            buf = mmap.mmap(-1, BLOCK)
            assert await aio.pread(fd, buf, i * BLOCK) == BLOCK
            got[i] = bytes(buf)
        async with trio.open_nursery() as n:
            for i in range(len(blobs)):
                n.start_soon(read, i)
        assert [got[i] for i in range(len(blobs))] == blobs
        # at and past the end of the file: short, then nothing
        buf = mmap.mmap(-1, 2 * BLOCK)
        assert await aio.pread(fd, buf, (len(blobs) - 1) * BLOCK) == BLOCK
        assert await aio.pread(fd, buf, len(blobs) * BLOCK) == 0
    finally:
        os.close(fd)


async def test_errors_come_back_as_oserror(aio, tmp_path):
    fd = direct_file(tmp_path / "f", bytes(BLOCK))
    try:
        with pytest.raises(OSError) as e:
            await aio.pread(fd, mmap.mmap(-1, 4096), 100)    # O_DIRECT: misaligned
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            await aio.pread(987654, mmap.mmap(-1, 4096), 0)   # no such descriptor
        assert e.value.errno == errno.EBADF
        ro = os.open(tmp_path / "f", os.O_RDONLY | os.O_DIRECT)
        try:
            with pytest.raises(OSError) as e:
                await aio.pwrite(ro, mmap.mmap(-1, 4096), 0)
            assert e.value.errno == errno.EBADF
        finally:
            os.close(ro)
        # the context still works after errors
        assert await aio.pread(fd, mmap.mmap(-1, 4096), 0) == 4096
    finally:
        os.close(fd)


async def test_a_cancelled_caller_still_gets_its_buffer_filled(aio, tmp_path):
    data = os.urandom(BLOCK)
    fd = direct_file(tmp_path / "f", data)
    buf = mmap.mmap(-1, BLOCK)
    try:
        with trio.CancelScope() as scope:
            scope.cancel()
            n = await aio.pread(fd, buf, 0)     # submitted: waited for regardless
            await trio.sleep(0)                 # the cancel is delivered here
        assert scope.cancelled_caught and n == BLOCK and bytes(buf) == data
    finally:
        os.close(fd)


class _Steps(trio.abc.Instrument):
    def __init__(self):
        self.steps = {}

    def before_task_step(self, task):
        self.steps[task] = self.steps.get(task, 0) + 1


async def test_a_lone_read_is_submitted_at_once_and_concurrent_ones_together(
        aio, tmp_path, monkeypatch):
    """Issue 15: a read made while nothing else is in flight is submitted by
    its caller (the submitter task never runs: no pass of the scheduler
    before it reaches the disk); reads made together still go to the
    kernel in fewer io_submit calls than reads."""
    data = os.urandom(8 * BLOCK)
    fd = direct_file(tmp_path / "f", data)
    submits = []
    real = linux_aio._syscall

    def counting(nr, *args):
        if nr.value == aio._nr_submit:
            submits.append(args[1].value)
        return real(nr, *args)
    monkeypatch.setattr(linux_aio, "_syscall", counting)
    try:
        await aio.pread(fd, mmap.mmap(-1, BLOCK), 0)    # the submitter has parked since
        steps = _Steps()
        trio.lowlevel.add_instrument(steps)
        try:
            for i in range(8):
                buf = mmap.mmap(-1, BLOCK)
                assert await aio.pread(fd, buf, i * BLOCK) == BLOCK
                assert bytes(buf) == data[i * BLOCK:(i + 1) * BLOCK]
        finally:
            trio.lowlevel.remove_instrument(steps)
        assert steps.steps.get(aio._submitter, 0) == 0
        del submits[:]
        got = {}

        async def one(i):
            buf = mmap.mmap(-1, BLOCK)
            assert await aio.pread(fd, buf, i * BLOCK) == BLOCK
            got[i] = bytes(buf)
        async with trio.open_nursery() as n:
            for i in range(8):
                n.start_soon(one, i)
        assert got == {i: data[i * BLOCK:(i + 1) * BLOCK] for i in range(8)}
        assert sum(submits) == 8 and len(submits) < 8, submits
    finally:
        os.close(fd)


async def test_closed_context_refuses_and_no_context_means_none(tmp_path, monkeypatch):
    ctx = AioContext.open(depth=4)
    ctx.close()
    with pytest.raises(OSError) as e:
        await ctx.pread(0, mmap.mmap(-1, 4096), 0)
    assert e.value.errno == errno.EBADF
    monkeypatch.setattr(linux_aio, "_SYSCALLS", {})
    assert AioContext.open() is None


# -- storage/posix ---------------------------------------------------------------

async def test_posix_o_direct_io_goes_to_aio_not_the_workers(brick):
    blobs = [os.urandom(BLOCK) for _ in range(16)]
    graph = Graph.from_text(volfile(brick, {"offload-above-usec": "0"}, o_direct=True,
                                    linux_aio=True))
    async with graph.running():
        top, pool = graph.top, iot_of(graph).pool
        assert graph.by_name["t-posix"]._aio is not None
        fd = await make_file(top, "img")
        # writes that extend the file go to the workers: ext4 runs an
        # extending O_DIRECT write inside io_submit, which would hold the
        # event loop (bench/notes/qemu.md (16)); so does O_APPEND
        # (posix's own one-worker pool: see PosixFdOps._blocking)
        before = pool.jobs
        for i in range(len(blobs)):
            assert (await top.writev(fd, os.urandom(BLOCK), i * BLOCK, 0, None)).count == BLOCK
        serial = graph.by_name["t-posix"]._serial_pool
        assert serial.jobs == len(blobs) and pool.jobs == before
        assert (await top.writev(fd, blobs[0], (len(blobs) - 1) * BLOCK + 4096, 0,
                                 None)).count == BLOCK     # partly past the end
        assert serial.jobs == len(blobs) + 1
        await top.ftruncate(fd, len(blobs) * BLOCK, None)
        before = pool.jobs

        # within the file: Linux AIO, all at once
        async def write(i):
            assert (await top.writev(fd, blobs[i], i * BLOCK, 0, None)).count == BLOCK
        async with trio.open_nursery() as n:
            for i in range(len(blobs)):
                n.start_soon(write, i)
        got = {}

        async def read(i):
            got[i] = bytes((await top.readv(fd, BLOCK, i * BLOCK, 0, None)).data)
        async with trio.open_nursery() as n:
            for i in range(len(blobs)):
                n.start_soon(read, i)
        assert [got[i] for i in range(len(blobs))] == blobs
        assert pool.jobs == before          # not one worker hop
        assert (brick / "img").read_bytes() == b"".join(blobs)
        # a read of a size that is no multiple of 512, and at the end of the file
        assert bytes((await top.readv(fd, 1000, 0, 0, None)).data) == blobs[0][:1000]
        end = len(blobs) * BLOCK
        assert bytes((await top.readv(fd, 8192, end - 4096, 0, None)).data) == \
            blobs[-1][-4096:]
        assert bytes((await top.readv(fd, 4096, end, 0, None)).data) == b""
        # a write of several buffers, O_SYNC asked: one request, then fsync (a worker)
        r = await top.writev(fd, [b"a" * 4096, b"b" * 4096], 0, os.O_SYNC, None)
        assert r.count == 8192 and pool.jobs == before + 1
        assert (brick / "img").read_bytes()[:8192] == b"a" * 4096 + b"b" * 4096
        # a misaligned O_DIRECT write fails as it does without AIO
        with pytest.raises(FopError) as e:
            await top.writev(fd, b"x" * 100, 10, 0, None)
        assert e.value.errno == errno.EINVAL
        # volume set storage.linux-aio off, live: the workers again
        graph.reconfigure(vf.parses(volfile(brick, {"offload-above-usec": "0"},
                                            o_direct=True, linux_aio=False)))
        before = pool.jobs
        assert bytes((await top.readv(fd, 4096, BLOCK, 0, None)).data) == blobs[1][:4096]
        assert pool.jobs == before + 1
        await top.release(fd, None)
        # O_APPEND: Linux appends whatever the offset, so past the end
        graph.reconfigure(vf.parses(volfile(brick, {"offload-above-usec": "0"},
                                            o_direct=True, linux_aio=True)))
        fd = await make_file(top, "log", flags=os.O_RDWR | os.O_APPEND)
        await top.writev(fd, blobs[0], 0, 0, None)
        before = serial.jobs
        assert (await top.writev(fd, blobs[1], 0, 0, None)).count == BLOCK
        assert serial.jobs == before + 1
        assert (brick / "log").read_bytes() == blobs[0] + blobs[1]
        await top.release(fd, None)


async def test_posix_without_io_threads_or_o_direct_never_uses_aio(brick, monkeypatch):
    """posix alone stays synchronous (its fops never suspend); a buffered
    descriptor under io-threads does not take the AIO path either."""
    submitted = []
    real = AioContext._submit

    async def spy(self, *args):
        submitted.append(args[0])
        return await real(self, *args)
    monkeypatch.setattr(AioContext, "_submit", spy)
    for text, o_direct in ((volfile(brick, o_direct=True, io_threads=False, linux_aio=True),
                            True),
                           (volfile(brick, linux_aio=True), False)):
        graph = Graph.from_text(text)
        async with graph.running():
            top = graph.top
            name = f"f{o_direct}"
            fd = await make_file(top, name, os.urandom(BLOCK))
            assert len((await top.readv(fd, 4096, 0, 0, None)).data) == 4096
            await top.release(fd, None)
    assert submitted == []


def test_aligned_buffers_are_reused_only_once_every_view_is_gone():
    import ctypes
    from glusterpy.aligned import MAX_POOLED, PAGE, AlignedBuffers
    pool = AlignedBuffers(limit=8 << 20)
    a = pool.take(1000)
    assert len(a) == 1000 and not a.readonly
    assert ctypes.addressof(ctypes.c_char.from_buffer(a)) % PAGE == 0
    a[:3] = b"abc"
    part = a[:3]                   # a reply may hold a slice of it
    del a
    b = pool.take(1000)            # the first slot is still held by `part`
    assert bytes(part) == b"abc"
    b[:3] = b"xyz"
    assert bytes(part) == b"abc"
    held = ctypes.addressof(ctypes.c_char.from_buffer(part))
    del part, b
    kept = [pool.take(1000) for _ in range(2)]
    again = {ctypes.addressof(ctypes.c_char.from_buffer(v)) for v in kept}
    assert held in again           # given back, then handed out again
    big = pool.take(MAX_POOLED + 1)
    assert len(big) == MAX_POOLED + 1 and pool.fresh == 1
    small = AlignedBuffers(limit=0)     # nothing may be pooled: fresh maps
    assert len(small.take(4096)) == 4096 and small.fresh == 1 and small.mapped == 0

"""performance/io-threads and its pool (glusterpy.iothreads): GlusterFS's
options and priorities, the pool's limits, idle exits, batched wake-ups and
cancellation, and storage/posix's syscalls through it - data on the disk,
O_DIRECT, real concurrency, descriptors pinned while a worker uses them -
while posix alone behaves as before.

Concurrency checks are timing-based with wide margins (a slow syscall of
0.3 s; "concurrent" means well under the serial time); nothing here asserts
speed.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time

import pytest
import trio

from glusterpy import fops, iothreads
from glusterpy import volfile as vf
from glusterpy.fops import GFID, Caller, Fd, Loc
from glusterpy.graph import Graph
from glusterpy.iothreads import HIGH, LEAST, LOW, NORMAL, Pool
from glusterpy.options import OptionError, validate
from xlators.performance.io_threads import IoThreads

SLOW = 0.3


def volfile(brick, iot_options: dict | None = None, o_direct: bool = False,
            io_threads: bool = True, linux_aio: bool = False) -> str:
    """posix [under io-threads]; O_DIRECT IO through the pool unless
    `linux_aio` (posix's default) sends it to the kernel's AIO."""
    text = (f"volume t-posix\n type storage/posix\n option directory {brick}\n"
            + (" option o-direct on\n" if o_direct else "")
            + f" option linux-aio {'on' if linux_aio else 'off'}\n" + "end-volume\n")
    if io_threads:
        text += "volume t-iot\n type performance/io-threads\n"
        for k, v in (iot_options or {}).items():
            text += f" option {k} {v}\n"
        text += " subvolumes t-posix\nend-volume\n"
    return text


def iot_of(graph: Graph) -> IoThreads:
    return graph.by_name["t-iot"]


async def make_file(top, name: str, data: bytes = b"", flags: int = os.O_RDWR) -> Fd:
    fd = Fd()
    await top.create(Loc.child(Loc.root(), name), flags | os.O_CREAT | os.O_EXCL, 0o644, 0,
                     fd, {"gfid-req": GFID.random()})
    if data:
        await top.writev(fd, data, 0, 0, None)
    return fd


async def open_file(top, name: str, flags: int) -> Fd:
    r = await top.lookup(Loc.child(Loc.root(), name), None)
    fd = Fd()
    await top.open(Loc(path="/" + name, gfid=r.iatt.gfid), flags, fd, None)
    return fd


# -- options and priorities -------------------------------------------------------

def test_options_are_glusterfs_ones():
    opts = validate(IoThreads.OPTIONS, {})
    assert (opts.thread_count, opts.high_prio_threads, opts.normal_prio_threads,
            opts.low_prio_threads, opts.least_prio_threads) == (16, 16, 16, 16, 1)
    assert opts.enable_least_priority is True and opts.idle_time == 120
    assert opts.watchdog_secs == 0 and opts.pass_through is False
    for bad in ({"thread-count": "0"}, {"thread-count": "65"}, {"low-prio-threads": "65"},
                {"idle-time": "0"}):
        with pytest.raises(OptionError):
            validate(IoThreads.OPTIONS, bad)
    keys = {k for o in IoThreads.OPTIONS for k in o.set_keys}
    assert {"performance.io-thread-count", "performance.high-prio-threads",
            "performance.normal-prio-threads", "performance.low-prio-threads",
            "performance.least-prio-threads", "performance.enable-least-priority",
            "performance.iot-watchdog-secs", "performance.iot-cleanup-disconnected-reqs",
            "performance.iot-pass-through", "performance.iot-offload-above-usec"} == keys


def test_priorities_are_iot_schedules():
    xl = IoThreads("iot", {}, [Graph.from_text(volfile("/nonexistent", io_threads=False)).top])
    prio = {name: xl.lane_for(name).prio for name in
            ("lookup", "stat", "readdirp", "open", "create", "inodelk", "setxattr", "put",
             "readv", "writev", "fsync", "fxattrop", "rchecksum", "seek")}
    assert prio == {"lookup": HIGH, "stat": HIGH, "readdirp": HIGH, "open": HIGH,
                    "create": NORMAL, "inodelk": NORMAL, "setxattr": NORMAL, "put": NORMAL,
                    "readv": LOW, "writev": LOW, "fsync": LOW, "fxattrop": LOW,
                    "rchecksum": LOW, "seek": LOW}
    assert xl.lane_for("release") is None and xl.lane_for("ipc") is None
    # internal clients (negative pid) go to LEAST, but not -4 (no-root-squash)
    for pid, expected in ((-6, LEAST), (-1, LEAST), (-4, HIGH), (0, HIGH), (1234, HIGH)):
        token = fops.caller.set(Caller(pid=pid))
        try:
            assert xl.lane_for("stat").prio == expected, pid
        finally:
            fops.caller.reset(token)
    xl.reconfigure({"enable-least-priority": "off"})
    token = fops.caller.set(Caller(pid=-6))
    try:
        assert xl.lane_for("stat").prio == HIGH
    finally:
        fops.caller.reset(token)
    xl.reconfigure({"pass-through": "on"})
    assert xl.lane_for("readv") is None


# -- the pool ---------------------------------------------------------------------

async def wait_for(predicate, timeout=5.0):
    deadline = trio.current_time() + timeout
    while not predicate():
        if trio.current_time() > deadline:
            raise AssertionError("condition not reached")
        await trio.sleep(0.005)


async def test_high_priority_overtakes_a_flood_of_low():
    pool = Pool(thread_count=1)
    gate = threading.Event()
    order = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.run, LOW, gate.wait)
            await wait_for(lambda: pool.state()["active"][LOW] == 1)
            for i in range(20):
                nursery.start_soon(pool.run, LOW, order.append, f"low{i}")
            await wait_for(lambda: pool.queued()[LOW] == 20)
            nursery.start_soon(pool.run, HIGH, order.append, "high")
            nursery.start_soon(pool.run, NORMAL, order.append, "normal")
            await wait_for(lambda: sum(pool.queued()) == 22)
            gate.set()
    finally:
        gate.set()
        pool.close()
    assert order[:2] == ["high", "normal"]
    assert sorted(order[2:]) == sorted(f"low{i}" for i in range(20))


class Concurrency:
    """A job that sleeps and counts how many ran at once."""

    def __init__(self, seconds=0.05):
        self.seconds = seconds
        self.lock = threading.Lock()
        self.now = self.most = 0

    def __call__(self):
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1


async def test_thread_count_and_per_priority_limits_are_respected():
    pool = Pool(thread_count=4, limits=(16, 16, 2, 1))
    try:
        job = Concurrency()
        async with trio.open_nursery() as nursery:
            for _ in range(24):
                nursery.start_soon(pool.run, HIGH, job)
        assert job.most == 4 and pool.max_threads == 4
        low, least = Concurrency(), Concurrency()
        async with trio.open_nursery() as nursery:
            for _ in range(8):
                nursery.start_soon(pool.run, LOW, low)
                nursery.start_soon(pool.run, LEAST, least)
        assert low.most == 2 and least.most == 1
        assert pool.max_active[LOW] == 2 and pool.max_active[LEAST] == 1
        assert pool.threads <= 4
    finally:
        pool.close()


async def test_idle_workers_exit_down_to_one():
    pool = Pool(thread_count=6, idle_time=0.2)
    try:
        job = Concurrency(0.1)
        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(pool.run, LOW, job)
        assert pool.max_threads == 6
        await wait_for(lambda: pool.threads == iothreads.MIN_THREADS)
        await trio.sleep(0.5)          # the last one stays
        assert pool.threads == 1 and pool.exited == 5
        assert await pool.run(LOW, lambda: 42) == 42
    finally:
        pool.close()
    assert pool.wait_idle()


async def test_completions_that_finish_together_wake_the_loop_once():
    pool = Pool(thread_count=8)
    gate = threading.Event()
    results = []

    async def one(i):
        results.append(await pool.run(LOW, lambda: (gate.wait(), i)[1]))
    try:
        async with trio.open_nursery() as nursery:
            for i in range(8):
                nursery.start_soon(one, i)
            await wait_for(lambda: pool.state()["active"][LOW] == 8)
            before = pool.deliveries
            gate.set()
            time.sleep(0.3)    # block the loop: all 8 finish before it runs again
        assert sorted(results) == list(range(8))
        assert pool.deliveries - before == 1
    finally:
        gate.set()
        pool.close()


async def test_exceptions_come_back_to_the_caller():
    pool = Pool(thread_count=2)
    try:
        with pytest.raises(FileNotFoundError):
            await pool.run(LOW, os.stat, "/nonexistent/x")
        with pytest.raises(ZeroDivisionError):
            await pool.run(HIGH, lambda: 1 / 0)
    finally:
        pool.close()


async def test_a_cancelled_queued_job_never_runs():
    pool = Pool(thread_count=1)
    gate = threading.Event()
    ran = []
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pool.run, LOW, gate.wait)
            await wait_for(lambda: pool.state()["active"][LOW] == 1)
            with trio.move_on_after(0.05) as scope:
                await pool.run(LOW, ran.append, "queued")
            assert scope.cancelled_caught
            gate.set()
        await pool.run(LOW, ran.append, "after")
        assert ran == ["after"] and pool.dropped == 1
    finally:
        gate.set()
        pool.close()


async def test_a_cancelled_running_job_is_waited_for_and_fills_its_buffer():
    """Cancelling a task whose syscall runs does not abandon the worker: the
    task waits, gets the result, and sees Cancelled at its next checkpoint."""
    pool = Pool(thread_count=1)
    gate = threading.Event()
    buf = bytearray(4)
    seen = {}

    def fill():
        gate.wait()
        time.sleep(0.1)
        buf[:] = b"done"
        return 4

    async def reader(task_status=trio.TASK_STATUS_IGNORED):
        with trio.CancelScope() as scope:
            task_status.started(scope)
            seen["n"] = await pool.run(LOW, fill)
            seen["after"] = bytes(buf)
            await trio.sleep(0)            # the cancellation lands here
            seen["not reached"] = True
        seen["cancelled"] = scope.cancelled_caught
    try:
        async with trio.open_nursery() as nursery:
            scope = await nursery.start(reader)
            await wait_for(lambda: pool.state()["active"][LOW] == 1)
            scope.cancel()
            await trio.sleep(0.05)
            assert "n" not in seen         # still waiting for the worker
            gate.set()
    finally:
        gate.set()
        pool.close()
    assert seen == {"n": 4, "after": b"done", "cancelled": True}


# -- storage/posix through io-threads --------------------------------------------------

async def test_o_direct_data_through_the_pool_reaches_the_disk(brick):
    block = 64 * 1024
    blobs = [os.urandom(block) for _ in range(32)]
    graph = Graph.from_text(volfile(brick, {"offload-above-usec": "0"}, o_direct=True))
    async with graph.running():
        top, pool = graph.top, iot_of(graph).pool
        fd = await make_file(top, "img")
        of = fd.ctx[graph.by_name["t-posix"]]
        flags = int(open(f"/proc/self/fdinfo/{of.osfd}").read().split("flags:")[1].split()[0], 8)
        assert flags & os.O_DIRECT

        async def write(i):
            r = await top.writev(fd, blobs[i], i * block, 0, None)
            assert r.count == block
        async with trio.open_nursery() as nursery:
            for i in range(len(blobs)):
                nursery.start_soon(write, i)
        assert pool.jobs >= len(blobs)
        await top.fsync(fd, 0, None)
        with open(brick / "img", "rb") as f:
            assert f.read() == b"".join(blobs)
        got = {}

        async def read(i):
            got[i] = bytes((await top.readv(fd, block, i * block, 0, None)).data)
        async with trio.open_nursery() as nursery:
            for i in range(len(blobs)):
                nursery.start_soon(read, i)
        assert [got[i] for i in range(len(blobs))] == blobs
        # a short read at the end of the file, and past it
        assert bytes((await top.readv(fd, 8192, len(blobs) * block - 4096, 0, None)).data) \
            == blobs[-1][-4096:]
        assert bytes((await top.readv(fd, 4096, len(blobs) * block, 0, None)).data) == b""
        await top.release(fd, None)


async def test_every_offloaded_fop_answers_as_posix_alone(brick, tmp_path):
    """The same sequence on posix alone and on io-threads over posix."""
    async def sequence(top):
        out = []
        fd = await make_file(top, "f", bytes(range(256)) * 1024)
        src = await make_file(top, "src", b"x" * 100_000)
        out.append((await top.ftruncate(fd, 200_000, None)).postbuf.size)
        out.append((await top.truncate(Loc(path="/f", gfid=fd.gfid), 150_000, None))
                   .postbuf.size)
        out.append((await top.fallocate(fd, 0, 300_000, 4096, None)).postbuf.size)
        await top.discard(fd, 0, 4096, None)
        await top.zerofill(fd, 8192, 4096, None)
        r = await top.rchecksum(fd, 0, 65536, {"check-zero-filled": 1})
        out.append((r.weak, r.strong, r.xdata))
        out.append((await top.seek(fd, 0, fops.SeekWhat.DATA, None)).offset)
        c = await top.copy_file_range(src, 0, fd, 50_000, 100_000, 0, None)
        out.append((c.count, c.postbuf_dst.size))
        out.append((await top.fsync(fd, 1, None)).postbuf.size)
        w = await top.writev(fd, b"sync", 7, os.O_SYNC, None)
        out.append((w.count, w.postbuf.size))
        data = (await top.readv(fd, 400_000, 0, 0, None)).data
        out.append(hashlib.sha256(bytes(data)).hexdigest())
        await top.release(fd, None)
        await top.release(src, None)
        return out

    alone, threaded = tmp_path / "alone", tmp_path / "threaded"
    alone.mkdir(), threaded.mkdir()
    g1 = Graph.from_text(volfile(alone, io_threads=False))
    async with g1.running():
        expected = await sequence(g1.top)
    g2 = Graph.from_text(volfile(threaded, {"offload-above-usec": "0"}))
    async with g2.running():
        got = await sequence(g2.top)
        assert iot_of(g2).pool.jobs >= 10
    assert got == expected
    assert (alone / "f").read_bytes() == (threaded / "f").read_bytes()


@pytest.fixture
def slow_preadv(monkeypatch):
    """os.preadv without flags (the blocking read) takes SLOW seconds."""
    real = os.preadv
    calls = []

    def slow(fd, buffers, offset, *flags):
        if not flags:
            calls.append(threading.get_ident())
            time.sleep(SLOW)
        return real(fd, buffers, offset, *flags)
    monkeypatch.setattr(os, "preadv", slow)
    return calls


async def concurrent_reads(top, fd, n):
    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(top.readv, fd, 4096, i * 4096, 0, None)


async def test_reads_run_concurrently_and_the_loop_keeps_serving(brick, slow_preadv):
    graph = Graph.from_text(volfile(brick, {"thread-count": "8"}, o_direct=True))
    async with graph.running():
        top = graph.top
        fd = await make_file(top, "img", os.urandom(64 * 4096))
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(concurrent_reads, top, fd, 8)
            await trio.sleep(SLOW / 3)
            # a stat (high priority, never queued behind reads) answers now
            t = trio.current_time()
            await top.stat(Loc(path="/img", gfid=fd.gfid), None)
            assert trio.current_time() - t < SLOW / 2
        elapsed = trio.current_time() - start
        assert len(slow_preadv) == 8 and len(set(slow_preadv)) > 1
        assert elapsed < 8 * SLOW / 2, elapsed      # serially it would be 8 x SLOW
        # thread-count 1 (live): one at a time again
        graph.reconfigure(vf.parses(volfile(brick, {"thread-count": "1"}, o_direct=True)))
        assert iot_of(graph).pool.thread_count == 1
        start = trio.current_time()
        await concurrent_reads(top, fd, 3)
        assert trio.current_time() - start >= 3 * SLOW * 0.9
        await top.release(fd, None)


async def test_posix_alone_runs_inline_as_before(brick, slow_preadv):
    """No lane: the syscall runs in the calling task, with no checkpoint -
    even a cancelled task completes its readv, as before io-threads."""
    graph = Graph.from_text(volfile(brick, o_direct=True, io_threads=False))
    async with graph.running():
        top = graph.top
        fd = await make_file(top, "img", os.urandom(4 * 4096))
        with trio.CancelScope() as scope:
            scope.cancel()
            r = await top.readv(fd, 4096, 0, 0, None)
        assert len(r.data) == 4096 and not scope.cancelled_caught
        assert slow_preadv == [threading.get_ident()]
        start = trio.current_time()
        await concurrent_reads(top, fd, 3)
        assert trio.current_time() - start >= 3 * SLOW * 0.9
        await top.release(fd, None)


async def test_a_release_during_a_read_waits_for_the_worker(brick, slow_preadv):
    """The descriptor a worker reads from is not closed (and its number not
    reused) until the syscall has returned."""
    graph = Graph.from_text(volfile(brick, o_direct=True))
    data = os.urandom(4 * 4096)
    async with graph.running():
        top, posix = graph.top, graph.by_name["t-posix"]
        fd = await make_file(top, "img", data)
        osfd = fd.ctx[posix].osfd
        got = {}

        async def read():
            got["data"] = bytes((await top.readv(fd, 4096, 4096, 0, None)).data)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            await wait_for(lambda: posix._busy)
            await top.release(fd, None)
            assert os.fstat(osfd)          # still open: the worker uses it
            assert osfd in posix._close_later
            # a new open cannot be given the same number meanwhile
            other = await make_file(top, "other", b"x" * 4096)
            assert other.ctx[posix].osfd != osfd
        assert got["data"] == data[4096:8192]
        await top.stat(Loc(path="/img", gfid=fd.gfid), None)   # the next fop closes it
        with pytest.raises(OSError):
            os.fstat(osfd)
        assert not posix._busy and not posix._close_later
        await top.release(other, None)


async def test_a_cancelled_read_in_a_worker_is_waited_for(brick, slow_preadv):
    graph = Graph.from_text(volfile(brick, o_direct=True))
    async with graph.running():
        top = graph.top
        fd = await make_file(top, "img", os.urandom(4 * 4096))
        with trio.move_on_after(SLOW / 3) as scope:
            await top.readv(fd, 4096, 0, 0, None)
            await trio.sleep(0)
        assert scope.cancelled_caught
        assert len(slow_preadv) == 1
        assert not graph.by_name["t-posix"]._busy       # returned before we did
        await top.release(fd, None)


async def test_syscalls_cheaper_than_a_hop_run_inline(brick, monkeypatch):
    """A function is first run in a worker; while its measured duration
    stays below offload-above-usec it runs inline, once it is slow it goes
    back to the workers."""
    graph = Graph.from_text(volfile(brick, o_direct=True))
    async with graph.running():
        top, pool = graph.top, iot_of(graph).pool
        fd = await make_file(top, "img", os.urandom(16 * 4096))
        first = pool.jobs
        for i in range(400):     # the first read goes to a worker; the average falls
            await top.readv(fd, 4096, (i % 16) * 4096, 0, None)
            if pool.runs_inline(os.preadv):
                break
        assert pool.runs_inline(os.preadv), pool.costs()   # an O_DIRECT 4 KiB pread
        assert pool.jobs >= first + 1
        before = pool.jobs
        for i in range(16):
            await top.readv(fd, 4096, i * 4096, 0, None)
        assert pool.jobs == before
        real = os.preadv

        def slow(*args):
            time.sleep(0.05)
            return real(*args)
        monkeypatch.setattr(os, "preadv", slow)
        for i in range(3):       # a function not seen yet: measured in a worker, slow
            await top.readv(fd, 4096, 0, 0, None)
        assert not pool.runs_inline(slow) and pool.jobs == before + 3
        assert pool.costs()["slow"] > 40_000
        graph.reconfigure(vf.parses(volfile(brick, {"offload-above-usec": "0"},
                                            o_direct=True)))
        monkeypatch.setattr(os, "preadv", real)
        before = pool.jobs
        await top.readv(fd, 4096, 0, 0, None)
        assert pool.jobs == before + 1
        await top.release(fd, None)


async def test_buffered_reads_hit_the_page_cache_inline(brick, slow_preadv):
    """Without O_DIRECT a cached read is served inline (RWF_NOWAIT); only a
    miss goes to a worker."""
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top, pool = graph.top, iot_of(graph).pool
        data = os.urandom(8 * 4096)
        fd = await make_file(top, "f", data)
        jobs = pool.jobs
        r = await top.readv(fd, len(data), 0, 0, None)
        assert bytes(r.data) == data and pool.jobs == jobs and not slow_preadv
        await top.release(fd, None)


async def test_volume_set_reaches_the_brick_volfile():
    from glusterpy.glusterd import volgen
    from glusterpy.glusterd.model import Volume
    vol = Volume.from_json({
        "name": "vm", "id": "6a1b0a5e-3f77-4c8c-9e38-1b7d1cde5a10", "replica": 1,
        "stripe": 1, "options": {"performance.io-thread-count": "32",
                                 "performance.low-prio-threads": "8"},
        "bricks": [{"host": "127.0.0.1", "path": "/srv/b1", "node": "u1"}]})
    brick_vf = vf.parses(volgen.brick_volfile(vol, vol.bricks[0]))
    iot = [v for v in brick_vf.volumes if v.type == "performance/io-threads"]
    assert len(iot) == 1
    assert iot[0].options == {"thread-count": "32", "low-prio-threads": "8"}


@pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")
def test_volume_set_reconfigures_the_running_brick(tmp_path):
    """`volume set performance.io-thread-count` reaches the brick's
    io-threads live: same brick process, new limits."""
    from test_glusterd_support import running_daemon, wait_for as wait_until
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "iot", f"127.0.0.1:{tmp_path / 'b1'}")
        d.ok("volume", "start", "iot")
        pid = d.ok("volume", "status", "iot", "--json").json()["volumes"][0]["bricks"][0]["pid"]
        vol_path = next((d.workdir / "vols" / "iot").glob("iot.127.0.0.1.*.vol"))
        assert "type performance/io-threads" in vol_path.read_text()
        d.ok("volume", "set", "iot", "performance.io-thread-count", "32")
        d.ok("volume", "set", "iot", "performance.least-prio-threads", "2")
        brick_log = next((d.workdir / "logs" / "bricks").glob("*.log"))
        wait_until(lambda: "io-threads reconfigured: thread-count 32, high/normal/low/least "
                           "16/16/16/2" in brick_log.read_text(), what="io-threads reconfigured")
        assert "option thread-count 32" in vol_path.read_text()
        rows = d.ok("volume", "status", "iot", "--json").json()["volumes"][0]["bricks"]
        assert rows[0]["pid"] == pid and rows[0]["online"]
        assert d.cli("volume", "set", "iot", "performance.io-thread-count", "65").rc != 0

"""Micro-benchmark of the io-threads hop (issue 15): us per offloaded no-op
and O_DIRECT 4 KiB pread through glusterpy.iothreads.Pool vs
trio.to_thread.run_sync vs inline.  Not a suite: python -m bench.iothreads_hop"""
import os, time, mmap, trio
# run from the repository root: python -m bench.iothreads_hop
from glusterpy.iothreads import Pool

def noop(): return None

async def seq(label, call, n):
    t = time.perf_counter()
    for _ in range(n):
        await call()
    dt = time.perf_counter() - t
    print(f"{label:45s} {dt / n * 1e6:8.2f} us/op (sequential, one at a time)")

async def par(label, call, n, width=64):
    t = time.perf_counter()
    async def worker(k):
        for _ in range(k):
            await call()
    async with trio.open_nursery() as nursery:
        for _ in range(width):
            nursery.start_soon(worker, n // width)
    dt = time.perf_counter() - t
    print(f"{label:45s} {dt / n * 1e6:8.2f} us/op ({width} tasks in flight)")

async def main():
    pool = Pool(16)
    n = 20000
    async def inline(): noop()
    async def pooled(): await pool.run(2, noop)
    async def to_thread(): await trio.to_thread.run_sync(noop)
    for _ in range(2):
        await seq("inline no-op", inline, n)
        await seq("Pool.run no-op", pooled, n)
        await seq("trio.to_thread.run_sync no-op", to_thread, n)
        await par("Pool.run no-op", pooled, n)
        await par("trio.to_thread.run_sync no-op", to_thread, n)
    st = pool.state(); print("pool:", {k: st[k] for k in ("max-threads", "jobs", "deliveries")})
    # O_DIRECT 4 KiB reads
    p = "/var/tmp/iot_hop.img"
    with open(p, "wb") as f: f.write(os.urandom(64 << 20))
    os.sync()
    fd = os.open(p, os.O_RDONLY | os.O_DIRECT)
    import random
    def rd(buf, off): return os.preadv(fd, [buf], off)
    n = 4000
    async def inline_rd():
        rd(mmap.mmap(-1, 4096), random.randrange(16384) * 4096)
    async def pool_rd():
        await pool.run(2, rd, mmap.mmap(-1, 4096), random.randrange(16384) * 4096)
    async def thr_rd():
        await trio.to_thread.run_sync(rd, mmap.mmap(-1, 4096), random.randrange(16384) * 4096)
    for _ in range(2):
        await seq("inline O_DIRECT 4k pread", inline_rd, n)
        await par("Pool.run O_DIRECT 4k pread", pool_rd, n)
        await par("trio.to_thread O_DIRECT 4k pread", thr_rd, n)
    os.unlink(p)
    pool.close()

trio.run(main)

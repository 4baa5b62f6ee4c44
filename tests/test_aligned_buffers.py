"""glusterpy/aligned.py's pool without a finalizer per buffer (issue 15):
a buffer is lent again only once no view of it is alive - whoever holds
the view (a slice in a reply, a list queued for sendmsg, a Linux AIO
request's ctypes array) - and buffers do come back, so a steady stream of
requests runs in one arena."""

import ctypes
import random

from glusterpy.aligned import ARENA, PAGE, AlignedBuffers


def address(view) -> int:
    return ctypes.addressof(ctypes.c_char.from_buffer(view))


def head(held) -> bytes:
    view = held[0] if isinstance(held, list) else held
    return bytes(memoryview(view).cast("B")[:4])


def test_a_held_buffer_is_never_lent_twice():
    """Random holders of random lifetimes, over every path of `take` (the
    oldest given back, the free list, a full look, a new arena, fresh maps
    once the limit is reached): no two live views ever share memory, and
    what a holder wrote stays as it wrote it."""
    rng = random.Random(15)
    pool = AlignedBuffers(limit=2 * ARENA)
    live: dict[int, tuple] = {}     # address -> (holder, the bytes it wrote)
    for i in range(20_000):
        size = rng.choice((512, 4096, 4096, 65536, 100_000))
        view = pool.take(size)
        at = address(view)
        assert at % PAGE == 0
        assert at not in live, f"take {i}: a buffer still held was lent again"
        stamp = i.to_bytes(4, "little")
        view[:4] = stamp
        kind = rng.randrange(4)
        if kind == 0:
            holder = view[:rng.randrange(4, size + 1)]           # a reply's slice
        elif kind == 1:
            holder = [view.cast("B")]                             # a send queue
        elif kind == 2:
            holder = (ctypes.c_char * len(view)).from_buffer(view)  # an AIO request
        else:
            holder = view
        del view
        live[at] = (holder, stamp)
        # replies leave in roughly the order they came, some much later
        for at_ in list(live)[:max(0, len(live) - rng.randrange(1, 200))]:
            if rng.random() < 0.9:
                held, wrote = live.pop(at_)
                assert head(held) == wrote
                del held
    for held, wrote in live.values():
        assert head(held) == wrote
    assert pool.reused > 0 and pool.mapped <= 2 * ARENA


def test_buffers_come_back_without_a_finalizer():
    """65 requests in flight, 100,000 requests: each buffer is lent again
    as soon as its last view is gone, so a few more buffers than requests
    in flight serve them all, from one arena."""
    pool = AlignedBuffers()
    inflight = []
    used = set()
    for _ in range(100_000):
        view = pool.take(4096)
        used.add(address(view))
        inflight.append(view[:4000])
        del view
        if len(inflight) > 64:
            inflight.pop(0)
    assert len(used) <= 66, len(used)
    assert pool.mapped == ARENA and pool.fresh == 0


def test_a_full_pool_maps_fresh_buffers_then_recovers():
    """Every pooled buffer held (a client that never reads its replies):
    `take` maps fresh buffers, without a scan per take; once the holders
    let go, the pool's own buffers are lent again."""
    pool = AlignedBuffers(limit=ARENA)
    held = [pool.take(4096) for _ in range(ARENA // 4096)]
    assert pool.mapped == ARENA and pool.fresh == 0
    extra = [pool.take(4096) for _ in range(1000)]
    assert pool.fresh == 1000 and pool.mapped == ARENA
    pooled = {address(v) for v in held}
    assert not pooled & {address(v) for v in extra}
    held.clear()
    again = [pool.take(4096) for _ in range(ARENA // 4096)]
    assert {address(v) for v in again} == pooled
    assert pool.fresh == 1000

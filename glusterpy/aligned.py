"""Page-aligned buffers for O_DIRECT IO, reused instead of mapped per request.

An O_DIRECT read or write needs a page-aligned buffer.  A fresh anonymous
mmap per request costs a mmap and a munmap, and a page fault for each page
the first time the kernel or we touch it: ~12 us for one 4 KiB page on the
virtual machines this project is measured on, ~10% of a brick's time per
4 KiB read (bench/notes/qemu.md).  `take(size)` hands out a slice of an
arena that was mapped once and faulted in (MAP_POPULATE), as a writable
memoryview; the slice goes back to its free list when the last view of it
is gone - after the reply that carries it was sent - so callers need not
give it back.

Sizes are rounded up to a power of two of pages (4 KiB ... MAX_POOLED);
each size has its own free list, fed by arenas of ARENA bytes, and all
arenas together stay under `limit` bytes: past that, and for larger sizes,
`take` maps a fresh buffer as before.
"""

from __future__ import annotations

import ctypes
import mmap
import weakref

PAGE = mmap.PAGESIZE
#: the largest size kept in free lists (GlusterFS's largest READ/WRITE is 1 MiB)
MAX_POOLED = 1 << 20
#: bytes mapped at a time for one size class
ARENA = 4 << 20
#: bytes all arenas together may hold by default
DEFAULT_LIMIT = 64 << 20

_MAP_FLAGS = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)


class AlignedBuffers:
    """Free lists of page-aligned buffers, one per power-of-two size."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self.mapped = 0                               # bytes in arenas
        self._free: dict[int, list[tuple[mmap.mmap, int]]] = {}
        self.reused = self.fresh = 0                  # for tests and curiosity

    def take(self, size: int) -> memoryview:
        """A writable, page-aligned, zero-or-stale-filled view of `size`
        bytes (at least one page): its memory is reused once every view of
        it is gone."""
        if size > MAX_POOLED:
            return self._fresh(size)
        cls = max(PAGE, 1 << (max(size, 1) - 1).bit_length())
        free = self._free.setdefault(cls, [])
        if not free and not self._grow(cls, free):
            return self._fresh(size)
        arena, offset = free.pop()
        self.reused += 1
        owner = (ctypes.c_char * cls).from_buffer(arena, offset)
        weakref.finalize(owner, free.append, (arena, offset))
        return memoryview(owner).cast("B")[:size]

    def _grow(self, cls: int, free: list) -> bool:
        size = max(ARENA, cls)
        if self.mapped + size > self.limit:
            return False
        arena = mmap.mmap(-1, size, flags=_MAP_FLAGS)
        self.mapped += size
        free.extend((arena, offset) for offset in range(0, size, cls))
        return True

    def _fresh(self, size: int) -> memoryview:
        self.fresh += 1
        length = max(PAGE, -(-size // PAGE) * PAGE)
        return memoryview(mmap.mmap(-1, length))[:size]


#: the process's pool: bricks serve from one event loop per process
BUFFERS = AlignedBuffers()

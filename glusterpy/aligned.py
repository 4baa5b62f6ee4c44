"""Page-aligned buffers for O_DIRECT IO, reused instead of mapped per request.

An O_DIRECT read or write needs a page-aligned buffer.  A fresh anonymous
mmap per request costs a mmap and a munmap, and a page fault for each page
the first time the kernel or we touch it: ~12 us for one 4 KiB page on the
virtual machines this project is measured on, ~10% of a brick's time per
4 KiB read (bench/notes/qemu.md).  `take(size)` hands out a slice of an
arena that was mapped once and faulted in (MAP_POPULATE), as a writable
memoryview; the slice may be handed out again once the last view of it is
gone - after the reply that carries it was sent - so callers need not give
it back.

How the pool knows a slice is no longer used, without a hook per request:
each slice is a ctypes array over the arena (its *owner*), and every view
`take` returns is made from a fresh `memoryview(owner)`, whose buffer keeps
one reference to the owner for as long as any view of it (a slice, a cast,
a ctypes array over it such as a Linux AIO request's) is alive.  The pool
keeps the slices it lent in lending order and, at each `take`, looks at
the oldest one: if nothing but the pool refers to its owner (its reference
count is the pool's own), it is lent again; if it is still in use the
buffer comes from the free list (replies mostly leave in the order their
requests came, so the oldest is usually the one given back).  That is
one reference count read per request, where a `weakref.finalize` per
buffer cost ~3 us to make and run (bench/notes/qemu.md (11)).  When the
free list is empty every lent slice is looked at once before the pool
maps another arena.  A slice whose owner is referenced is never lent
again, whoever holds the view: no buffer goes to two readers.

Sizes are rounded up to a power of two of pages (4 KiB ... MAX_POOLED);
each size has its own free list, fed by arenas of ARENA bytes, and all
arenas together stay under `limit` bytes: past that, and for larger sizes,
`take` maps a fresh buffer as before.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from collections import deque

PAGE = mmap.PAGESIZE
#: the largest size kept in free lists (GlusterFS's largest READ/WRITE is 1 MiB)
MAX_POOLED = 1 << 20
#: bytes mapped at a time for one size class
ARENA = 4 << 20
#: bytes all arenas together may hold by default
DEFAULT_LIMIT = 64 << 20

_MAP_FLAGS = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | getattr(mmap, "MAP_POPULATE", 0)


def _refs(lent: deque) -> int:
    """The reference count of the oldest owner in `lent`, as `take` reads it
    (the deque's, this frame's `owner`, getrefcount's argument; one more
    while any view of it is alive)."""
    owner = lent[0]
    return sys.getrefcount(owner)


def _idle_refs() -> int:
    """What `_refs` says of an owner that nothing else refers to (CPython's
    counts, measured rather than assumed)."""
    return _refs(deque([(ctypes.c_char * PAGE)()]))


_IDLE = _idle_refs()


class AlignedBuffers:
    """Free lists of page-aligned buffers, one per power-of-two size."""

    def __init__(self, limit: int = DEFAULT_LIMIT) -> None:
        self.limit = limit
        self.mapped = 0                               # bytes in arenas
        #: per size: owners nobody uses, and owners lent (oldest first)
        self._free: dict[int, list] = {}
        self._lent: dict[int, deque] = {}
        self._wait: dict[int, int] = {}               # takes until the next full look
        self.reused = self.fresh = 0                  # for tests and curiosity

    def take(self, size: int) -> memoryview:
        """A writable, page-aligned, zero-or-stale-filled view of `size`
        bytes (at least one page): its memory is reused once every view of
        it is gone."""
        if size > MAX_POOLED:
            return self._fresh(size)
        cls = max(PAGE, 1 << (max(size, 1) - 1).bit_length())
        lent = self._lent.get(cls)
        if lent is None:
            lent = self._lent[cls] = deque()
            self._free[cls] = []
        if lent and _refs(lent) == _IDLE:
            owner = lent.popleft()                    # the oldest, given back
        else:
            free = self._free[cls]
            if not free and not self._reclaim(cls, lent, free) and not self._grow(cls, free):
                return self._fresh(size)
            owner = free.pop()
        lent.append(owner)
        self.reused += 1
        return memoryview(owner).cast("B")[:size]

    def _reclaim(self, cls: int, lent: deque, free: list) -> bool:
        """Move every lent owner nobody uses any more to `free` (each one is
        looked at once, oldest first); whether any was.  After a look that
        found none, the next len(lent) // 4 takes do not look again (they
        map fresh buffers if the pool is full): a pool whose every buffer is
        held - replies nobody reads - costs no scan per request."""
        wait = self._wait.get(cls, 0)
        if wait:
            self._wait[cls] = wait - 1
            return False
        for _ in range(len(lent)):
            if _refs(lent) == _IDLE:
                free.append(lent.popleft())
            else:
                lent.rotate(-1)
        if not free:
            self._wait[cls] = len(lent) // 4
        return bool(free)

    def _grow(self, cls: int, free: list) -> bool:
        size = max(ARENA, cls)
        if self.mapped + size > self.limit:
            return False
        arena = mmap.mmap(-1, size, flags=_MAP_FLAGS)
        self.mapped += size
        # the owners are made once, with the arena: a take only makes views
        free.extend((ctypes.c_char * cls).from_buffer(arena, offset)
                    for offset in range(size - cls, -1, -cls))
        return True

    def _fresh(self, size: int) -> memoryview:
        self.fresh += 1
        length = max(PAGE, -(-size // PAGE) * PAGE)
        return memoryview(mmap.mmap(-1, length))[:size]


#: the process's pool: bricks serve from one event loop per process
BUFFERS = AlignedBuffers()
#: the brick's receive arenas (rpc.record.RecordDecoder.arena_view): every
#: byte a brick receives lands in one, and its WRITE calls' payloads are cut
#: from it as they lie (a new bytearray per record cost its malloc and
#: zero-fill, ~11 us for 128 KiB: bench/notes/qemu.md (13)); a pool apart
#: from BUFFERS so that a flood of WRITEs cannot take O_DIRECT's buffers
RECEIVE_BUFFERS = AlignedBuffers(limit=32 << 20)

#: the smallest block an O_DIRECT transfer's length is a multiple of (the
#: logical block of the disks bricks run on; the buffer itself is asked to
#: be page-aligned, which covers every logical block size up to a page)
DIRECT_BLOCK = 512


class _PyBuffer(ctypes.Structure):
    """CPython's Py_buffer: the address of any buffer, read-only ones too
    (ctypes' from_buffer wants a writable one)."""
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p),
                ("len", ctypes.c_ssize_t), ("itemsize", ctypes.c_ssize_t),
                ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p),
                ("strides", ctypes.c_void_p), ("suboffsets", ctypes.c_void_p),
                ("internal", ctypes.c_void_p)]


_get_buffer = ctypes.pythonapi.PyObject_GetBuffer
_get_buffer.argtypes = [ctypes.py_object, ctypes.POINTER(_PyBuffer), ctypes.c_int]
_get_buffer.restype = ctypes.c_int
_release_buffer = ctypes.pythonapi.PyBuffer_Release
_release_buffer.argtypes = [ctypes.POINTER(_PyBuffer)]
_release_buffer.restype = None


def address(buf) -> int:
    """The address of a contiguous buffer's first byte (read-only or not)."""
    view = _PyBuffer()
    _get_buffer(buf, ctypes.byref(view), 0)     # PyBUF_SIMPLE; raises if not contiguous
    try:
        return view.buf or 0
    finally:
        _release_buffer(ctypes.byref(view))


def direct_ready(buf) -> bool:
    """Whether `buf` can go to an O_DIRECT write as it lies: page-aligned,
    and a whole number of DIRECT_BLOCKs long (a WRITE's payload that the
    brick's receive arena placed so: rpc.record)."""
    n = memoryview(buf).nbytes
    return n > 0 and n % DIRECT_BLOCK == 0 and address(buf) % PAGE == 0


def direct_write_source(buf) -> ctypes.Array | None:
    """For an O_DIRECT write of `buf` through Linux AIO without copying it:
    a ctypes array over the same memory (AioContext takes a writable
    buffer's address; a WRITE's payload is a read-only view and the kernel
    only reads it), or None when `buf` is not direct_ready.  The array does
    not keep `buf`'s memory alive: the caller holds `buf` until the write
    completes."""
    if not direct_ready(buf):
        return None
    return (ctypes.c_char * memoryview(buf).nbytes).from_address(address(buf))

"""Copy-on-write snapshots of LVs in user space, in the kernel's own format.

An LVM snapshot ("old-style", `lvcreate -s`) is two things in LVM's
metadata: a COW LV that holds the exception store, and a hidden
`snapshotN` LV of segment type "snapshot" that names the origin, the COW
LV and the chunk size.  device-mapper's dm-snapshot then serves the
snapshot from the store.  Without device-mapper storage/bd does the same in
user space, on the same bytes, so a kernel with device-mapper activates the
result as a normal snapshot (and a snapshot it made reads here):

* the store is the kernel's persistent exception store
  (drivers/md/dm-snap-persistent.c, disk version 1), all little-endian.
  Chunk 0 is the header: magic "SnAp" (0x70416e53), valid, version 1, the
  chunk size in 512-byte sectors.  Then metadata areas, each one chunk of
  (old_chunk, new_chunk) u64 pairs - chunk_size / 16 of them - followed by
  that many data chunks: area k sits at chunk 1 + k * (chunk_size/16 + 1).
  A pair with new_chunk 0 ends the list (chunk 0 is the header, never
  data).  A fresh store starts with a zero magic; the header is written and
  area 0 zeroed before the first exception, as the kernel does on
  activation.
* reading the snapshot: an exception's chunk in the store, else the
  origin's bytes.
* writing the origin: first, for every valid snapshot of it, each chunk
  the write touches that has no exception yet is copied into the store;
  then the origin is written.  Writing the snapshot: a chunk without an
  exception gets one (a partial write copies the rest of the chunk from the
  origin first).
* crash order, as the kernel commits: the exceptions' data is written and
  flushed, then their metadata entries (a full area zeroes the next one
  before it is written), flushed again, and only then the origin's write
  goes on.  A crash leaves either a committed exception or none, never an
  entry pointing at unwritten data.
* a full store invalidates the snapshot as the kernel does: the header's
  `valid` becomes 0; the snapshot's reads and writes then fail with EIO,
  the origin is written without copying.  (The kernel never recovers an
  invalid snapshot; nor does this.)

One lock per store keeps its snapshot's IO and its origin's writes apart
(an origin write holds the locks of all its stores), so a snapshot never
reads an origin chunk that a concurrent write is replacing.

Thin snapshots are not done here: a thin pool's metadata is a
copy-on-write btree of device mappings and space maps (dm-thin-metadata.c,
persistent-data/), which this module does not read or write; without
device-mapper thin LVs stay unopenable (ENOTSUP), as storage/bd says.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import struct
import threading
from typing import Iterable, Iterator, Sequence, Union, cast

from glusterpy.bd import ExtentMap

log = logging.getLogger(__name__)

Buffer = Union[bytes, bytearray, memoryview]

SNAP_MAGIC = 0x70416E53                 # "SnAp" as a little-endian u32
SNAPSHOT_DISK_VERSION = 1
SECTOR = 512
HEADER = struct.Struct("<IIII")         # magic, valid, version, chunk_size (sectors)
EXCEPTION = struct.Struct("<QQ")        # old_chunk, new_chunk
#: LVM's default chunk size for `lvcreate -s` (4 KiB)
DEFAULT_CHUNK_SIZE = 4096
#: the smallest store that holds one exception: header, an area, a chunk
MIN_STORE_CHUNKS = 3


class SnapshotInvalid(OSError):
    """The snapshot was invalidated (its store filled up or failed)."""


def _check_chunk_size(chunk: int) -> None:
    if chunk < SECTOR or chunk & (chunk - 1):
        raise OSError(errno.EINVAL, f"snapshot chunk size {chunk} is not a power of two "
                                    f"of at least {SECTOR} bytes")


class ExceptionStore:
    """One snapshot's persistent exception store on its COW LV's bytes."""

    def __init__(self, cow: ExtentMap, chunk_size: int, name: str):
        _check_chunk_size(chunk_size)
        self.cow = cow
        self.chunk = chunk_size
        self.name = name
        self.per_area = chunk_size // EXCEPTION.size
        self.stride = self.per_area + 1
        self.lock = threading.Lock()
        self.exceptions: dict[int, int] = {}
        self.valid = True
        self.fresh = True               # magic 0: the header is not written yet
        self.next_free = 2              # skipping the header and the first area
        self.current_area = 0
        self.committed = 0              # entries in the current area
        self.area = bytearray(chunk_size)
        self.retired = False            # the snapshot's LV is gone

    # -- the format --------------------------------------------------------

    def area_location(self, area: int) -> int:
        return 1 + self.stride * area

    def _write_chunk(self, chunk: int, data: Buffer) -> None:
        self.cow.pwrite(data, chunk * self.chunk)

    def _write_header(self) -> None:
        head = bytearray(self.chunk)
        HEADER.pack_into(head, 0, SNAP_MAGIC, int(self.valid), SNAPSHOT_DISK_VERSION,
                         self.chunk // SECTOR)
        self._write_chunk(0, head)

    def _start(self) -> None:
        """What the kernel does to a fresh store: the header, area 0 zeroed."""
        if self.cow.size < MIN_STORE_CHUNKS * self.chunk:
            raise OSError(errno.ENOSPC, f"{self.name}: a store of {self.cow.size} bytes holds "
                                        f"no exception of {self.chunk}-byte chunks")
        self._write_chunk(self.area_location(0), bytes(self.chunk))
        self._write_header()
        self.cow.sync()
        self.fresh = False

    @classmethod
    def create(cls, cow: ExtentMap, chunk_size: int, name: str) -> "ExceptionStore":
        """A new, empty store written to `cow` (header and area 0)."""
        store = cls(cow, chunk_size, name)
        store._start()
        return store

    @classmethod
    def load(cls, cow: ExtentMap, chunk_size: int, name: str) -> "ExceptionStore":
        """The store on `cow`: its header, then its areas up to the first one
        not full (the kernel's read_exceptions).  The header's chunk size
        wins over LVM's, as in the kernel."""
        head = bytes(cow.pread(HEADER.size, 0))
        if len(head) < HEADER.size:
            raise OSError(errno.EIO, f"{name}: the COW store is smaller than its header")
        magic, valid, version, sectors = HEADER.unpack(head)
        if magic == 0:
            return cls(cow, chunk_size, name)       # fresh: nothing copied yet
        if magic != SNAP_MAGIC:
            raise OSError(errno.EIO, f"{name}: the COW store has no snapshot header "
                                     f"(magic {magic:#x}, not {SNAP_MAGIC:#x})")
        if version != SNAPSHOT_DISK_VERSION:
            raise OSError(errno.EIO, f"{name}: snapshot disk version {version} is not "
                                     f"{SNAPSHOT_DISK_VERSION}")
        if sectors * SECTOR != chunk_size:
            log.warning("%s: chunk size %d in the store overrides LVM's %d", name,
                        sectors * SECTOR, chunk_size)
        store = cls(cow, sectors * SECTOR, name)
        store.fresh = False
        store.valid = bool(valid)
        if not store.valid:
            return store
        area = 0
        while True:
            at = store.area_location(area)
            if (at + 1) * store.chunk > cow.size:
                # the last area was full and the store ends there: nothing
                # more fits, the next allocation invalidates the snapshot
                store.current_area = max(area - 1, 0)
                store.committed = store.per_area if area else 0
                break
            data = bytes(cow.pread(store.chunk, at * store.chunk))
            full = True
            for i in range(store.per_area):
                old, new = EXCEPTION.unpack_from(data, i * EXCEPTION.size)
                if new == 0:
                    full = False
                    store.committed = i
                    break
                store.next_free = max(store.next_free, new + 1)
                store.exceptions[old] = new
            if not full:
                store.current_area = area
                store.area[:] = data
                break
            area += 1
        store._skip_metadata()
        return store

    def _skip_metadata(self) -> None:
        if self.next_free % self.stride == 1:
            self.next_free += 1

    # -- changes (the caller holds the lock) --------------------------------

    def check(self) -> None:
        if not self.valid:
            raise SnapshotInvalid(errno.EIO, f"snapshot {self.name} is invalid (its COW "
                                             f"store filled up): it cannot be read")

    def allocate(self) -> int:
        """The next free data chunk (the kernel's prepare_exception);
        ENOSPC when the store is full."""
        if self.fresh:
            self._start()
        if (self.next_free + 1) * self.chunk > self.cow.size:
            raise OSError(errno.ENOSPC, f"snapshot {self.name}: its COW store is full")
        new = self.next_free
        self.next_free += 1
        self._skip_metadata()
        return new

    def commit(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Record exceptions whose data is written and flushed already:
        into the current area, which is written (a full one zeroes the
        next area first and moves on), then flushed."""
        dirty = False
        for old, new in pairs:
            EXCEPTION.pack_into(self.area, self.committed * EXCEPTION.size, old, new)
            self.committed += 1
            self.exceptions[old] = new
            dirty = True
            if self.committed == self.per_area:
                self._write_chunk(self.area_location(self.current_area + 1), bytes(self.chunk))
                self._write_chunk(self.area_location(self.current_area), self.area)
                self.current_area += 1
                self.committed = 0
                self.area = bytearray(self.chunk)
                dirty = False
        if dirty:
            self._write_chunk(self.area_location(self.current_area), self.area)
        self.cow.sync()

    def invalidate(self, why: str) -> None:
        """The kernel's drop_snapshot: valid = 0 in the header."""
        log.warning("snapshot %s invalidated: %s", self.name, why)
        self.valid = False
        with contextlib.suppress(OSError):
            self._write_header()
            self.cow.sync()

    def copy_in(self, chunks: Iterable[tuple[int, bytes]]) -> None:
        """New exceptions for (old chunk, its bytes): data written and
        flushed, then committed.  A full store invalidates the snapshot
        (SnapshotInvalid)."""
        pairs = []
        try:
            for old, data in chunks:
                new = self.allocate()
                self._write_chunk(new, data)
                pairs.append((old, new))
            if pairs:
                self.cow.sync()
                self.commit(pairs)
        except OSError as e:
            self.invalidate(e.strerror or str(e))
            raise SnapshotInvalid(errno.EIO, f"snapshot {self.name} invalidated: "
                                             f"{e.strerror or e}") from None


def _chunk_of(origin: ExtentMap, chunk: int, size: int) -> bytearray:
    """Origin chunk `chunk` as a full chunk (zero-padded at the origin's end)."""
    buf = bytearray(size)
    data = origin.pread(size, chunk * size)
    buf[:len(data)] = data
    return buf


class SnapshotMap:
    """A snapshot's bytes: exceptions from its store, the rest from the
    origin.  Its size is the origin's when the snapshot was taken."""

    read_only = ""

    def __init__(self, origin: ExtentMap, store: ExceptionStore, size: int):
        self.origin = origin
        self.store = store
        self.size = size
        self.fds = tuple(sorted(set(origin.fds) | set(store.cow.fds)))

    def truncated(self, size: int) -> "SnapshotMap":
        return SnapshotMap(self.origin, self.store, min(size, self.size))

    def pread(self, size: int, offset: int) -> Buffer:
        end = min(offset + size, self.size)
        if end <= offset:
            return b""
        store, cs = self.store, self.store.chunk
        with store.lock:
            store.check()
            if not store.exceptions:
                data: Buffer = self.origin.pread(end - offset, offset)
                return data
            buf = bytearray(end - offset)
            pos = offset
            while pos < end:
                c, within = divmod(pos, cs)
                new = store.exceptions.get(c)
                if new is not None:
                    n = min(cs - within, end - pos)
                    data = store.cow.pread(n, new * cs + within)
                else:
                    # a run of chunks without exceptions: one read of the origin
                    stop = min((c + 1) * cs, end)
                    while stop < end and stop // cs not in store.exceptions:
                        stop = min(stop + cs, end)
                    n = stop - pos
                    data = self.origin.pread(n, pos)
                if len(data) != n:
                    raise OSError(errno.EIO, "short read in a snapshot")
                buf[pos - offset:pos - offset + n] = data
                pos += n
            return buf

    def pwrite(self, data: Buffer | Sequence[Buffer], offset: int) -> int:
        if isinstance(data, (list, tuple)):
            view = memoryview(b"".join(bytes(b) for b in data))
        else:   # any buffer, as ExtentMap takes
            view = memoryview(cast(Buffer, data)).cast("B")
        n = len(view)
        if offset + n > self.size:
            raise OSError(errno.ENOSPC, "write beyond the end of the snapshot")
        store, cs = self.store, self.store.chunk
        with store.lock:
            store.check()
            fresh: list[tuple[int, bytes]] = []
            pos = 0
            while pos < n:
                c, within = divmod(offset + pos, cs)
                k = min(cs - within, n - pos)
                piece = view[pos:pos + k]
                new = store.exceptions.get(c)
                if new is not None:
                    store.cow.pwrite(piece, new * cs + within)
                elif k == cs:
                    fresh.append((c, bytes(piece)))
                else:
                    chunk = _chunk_of(self.origin, c, cs)
                    chunk[within:within + k] = piece
                    fresh.append((c, bytes(chunk)))
                pos += k
            store.copy_in(fresh)
        return n

    def zero(self, offset: int, length: int) -> None:
        end = min(offset + length, self.size)
        step = 1 << 20
        while offset < end:
            k = min(step, end - offset)
            self.pwrite(bytes(k), offset)
            offset += k

    def sync(self, datasync: bool = True) -> None:
        self.store.cow.sync(datasync)


class OriginMap:
    """An origin with snapshots: every write first copies the chunks it
    replaces into each valid snapshot's store that lacks them."""

    read_only = ""

    def __init__(self, base: ExtentMap, snapshots: Sequence[tuple[ExceptionStore, int]]):
        self.base = base
        self.size = base.size
        #: (store, the snapshot's size), in one order for taking the locks
        self.snapshots = tuple(sorted(snapshots, key=lambda s: s[0].name))
        self.fds = base.fds

    def truncated(self, size: int) -> "OriginMap":
        return OriginMap(self.base.truncated(size), self.snapshots)

    def pread(self, size: int, offset: int) -> Buffer:
        data: Buffer = self.base.pread(size, offset)
        return data

    @contextlib.contextmanager
    def _preserved(self, offset: int, length: int) -> Iterator[None]:
        """Hold every store's lock while the old chunks of [offset, +length)
        are copied aside and the caller writes."""
        with contextlib.ExitStack() as held:
            for store, _ in self.snapshots:
                held.enter_context(store.lock)
            for store, limit in self.snapshots:
                if store.retired or not store.valid:
                    continue
                end = min(offset + length, limit)
                if end <= offset:
                    continue
                cs = store.chunk
                todo = [c for c in range(offset // cs, (end - 1) // cs + 1)
                        if c not in store.exceptions]
                if not todo:
                    continue
                # one read of the origin for the chunks to copy
                lo = todo[0]
                span = bytearray((todo[-1] + 1 - lo) * cs)
                got = self.base.pread(len(span), lo * cs)
                span[:len(got)] = got
                try:
                    store.copy_in((c, bytes(span[(c - lo) * cs:(c - lo + 1) * cs]))
                                  for c in todo)
                except SnapshotInvalid:
                    pass    # the snapshot is gone; the origin's write goes on, as in the kernel
            yield

    def pwrite(self, data: Buffer | Sequence[Buffer], offset: int) -> int:
        if isinstance(data, (list, tuple)):
            length = sum(memoryview(b).nbytes for b in data)
        else:
            length = memoryview(cast(Buffer, data)).nbytes
        with self._preserved(offset, length):
            return self.base.pwrite(data, offset)

    def zero(self, offset: int, length: int) -> None:
        with self._preserved(offset, length):
            self.base.zero(offset, length)

    def sync(self, datasync: bool = True) -> None:
        self.base.sync(datasync)

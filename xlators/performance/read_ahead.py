"""performance/read-ahead: fetch the pages a sequential reader will ask for next.

Follows GlusterFS's read-ahead (xlators/performance/read-ahead): each open
fd keeps the offset its next read would have if it reads sequentially.  A
read at that offset is served from `page-size` pages (128KB), fetched from
the child in whole pages, and pages beyond it are fetched in the background
so they are ready when the reader gets there.  The window ahead grows with
the bytes read sequentially - one page per `page-size` read, up to
`page-count` pages (4) - and the pages behind the reader are dropped as it
passes them.

* A read at any other offset (a seek) drops the fd's pages and resets its
  window; an fd opened O_DIRECT or write-only is never read ahead.
* A write, truncate, fallocate, discard, zerofill, copy_file_range into the
  file, size-changing setattr, O_TRUNC open or POSIX lock on the file
  through this translator drops the pages of every fd open on it (an fd's
  list is this translator's slot of the file's inode in the graph's inode
  table, held in the table while fds are open), before the fop and again
  after it, and resets the windows; a page whose fetch was in flight across
  such a change is never kept, so no read issued after a write returns
  data from before it.
* Another client's writes are seen once the pages fetched before them are
  consumed or dropped: read-ahead keeps at most the window ahead of the
  reader (GlusterFS's documented behaviour: read-ahead does not revalidate).
* Memory: at most the pages of one read (a read larger than the whole
  window passes through) plus `page-count` pages ahead, per fd; flush and
  release drop them.
* `force-atime-update`: a read served entirely from pages sends a 1-byte
  read to the child so the file's atime moves, and fstat drops the pages,
  as GlusterFS does.

Departures from GlusterFS, and why:

* A non-sequential read is wound as it is instead of being fetched as
  whole pages: GlusterFS turns a 4KB random read into a 128KB one, which is
  what QEMU's random IO through a gluster:// disk would pay for nothing.
* Fetch errors are returned to the reads waiting on that page only; the
  page is forgotten so a later read fetches it again.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

import trio

from glusterpy.fops import GFID, SET_ATTR_SIZE, Fd, FopError, Iatt, ReadReply
from glusterpy.options import Option, OptionType
from glusterpy.xlator import Translator


@dataclass(eq=False, slots=True)
class _Page:
    offset: int
    generation: int
    ready: trio.Event = field(default_factory=trio.Event)
    data: bytes | bytearray | memoryview = b""
    iatt: Iatt | None = None
    error: FopError | None = None
    lost: bool = False      # the fetch was cancelled (the graph stops): read below


@dataclass(eq=False, slots=True)
class _File:
    """What read-ahead keeps for one open fd (GlusterFS's ra_file_t)."""

    fd: Fd
    gfid: GFID
    page_size: int
    disabled: bool
    offset: int = 0        # where the next sequential read starts
    expected: int = 0      # bytes read sequentially, capped at the full window
    window: int = 1        # pages to keep ahead (GlusterFS's file->page_count)
    size: int = -1         # end of file as the last fetch saw it (-1: unknown)
    generation: int = 0    # bumped by every change: older fetches are not kept
    pages: dict[int, _Page] = field(default_factory=dict)
    inflight: int = 0
    idle: trio.Event | None = None
    closed: bool = False


class ReadAhead(Translator):
    OPTIONS = (
        Option("read-ahead", OptionType.BOOL, "off",
               "enable/disable read-ahead (GlusterFS declares it; the translator "
               "works whenever it is in the graph)"),
        Option("force-atime-update", OptionType.BOOL, "false",
               "Send a 1-byte read to the server when a read is served from pages, "
               "so that the file's atime is updated", reconfigurable=False),
        Option("page-count", OptionType.INT, "4", "Number of pages that will be pre-fetched",
               min=1, max=16, set_keys=("performance.read-ahead-page-count",)),
        Option("page-size", OptionType.SIZE, "131072",
               "Page size with which read-ahead performs server I/O",
               min=4096, max=64 << 20),
        Option("pass-through", OptionType.BOOL, "false",
               "Enable/Disable read ahead translator",
               set_keys=("performance.read-ahead-pass-through",)),
    )

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self.hits = self.misses = self.passed = 0
        self._cached = 0   # bytes held in ready pages, over all fds
        self._stopped = False

    async def fini(self) -> None:
        self._stopped = True   # the graph's nursery is about to be cancelled

    # -- opening and closing ---------------------------------------------------------

    async def open(self, loc, flags, fd, xdata=None):
        truncating = flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY
        if truncating:
            self._invalidate(loc.gfid)
        reply = await self.first_child.open(loc, flags, fd, xdata)
        if truncating:
            self._invalidate(loc.gfid)
        self._remember(fd, loc.gfid, flags)
        return reply

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        reply = await self.first_child.create(loc, flags, mode, umask, fd, xdata)
        self._remember(fd, reply.iatt.gfid, flags)
        return reply

    def _remember(self, fd, gfid, flags) -> None:
        if gfid is None:
            return
        disabled = bool(flags & os.O_DIRECT) or flags & os.O_ACCMODE == os.O_WRONLY
        f = fd.ctx[self] = _File(fd, gfid, self.opts.page_size, disabled)
        files = self.itable.ctx(self, gfid)
        if files is None:
            files = set()
            # held in the table while fds are open: a write through any fd
            # must find every fd's pages
            self.itable.ref(gfid)
            self.itable.set_ctx(self, gfid, files)
        files.add(f)

    async def flush(self, fd, xdata=None):
        f = fd.ctx.get(self)
        if f is not None:
            self._drop(f)
        return await self.first_child.flush(fd, xdata)

    async def release(self, fd, xdata=None):
        f = fd.ctx.pop(self, None)
        if f is not None:
            f.closed = True
            self._drop(f)
            if f.inflight:      # the child must not see a read after the release
                f.idle = trio.Event()
                await f.idle.wait()
            files = self.itable.peek_ctx(self, f.gfid)
            if files is not None and f in files:
                files.discard(f)
                if not files:
                    self.itable.del_ctx(self, f.gfid)
                    inode = self.itable.peek(f.gfid)
                    if inode is not None:
                        self.itable.unref(inode)
        return await self.first_child.release(fd, xdata)

    # -- reads ---------------------------------------------------------------------------

    async def readv(self, fd, size, offset, flags, xdata=None):
        f: _File | None = fd.ctx.get(self)
        if (f is None or f.disabled or self.opts.pass_through or self._stopped or xdata
                or size <= 0 or offset < 0 or size > f.page_size * self.opts.page_count):
            self.passed += 1
            return await self.first_child.readv(fd, size, offset, flags, xdata)
        page_size = f.page_size
        if offset != f.offset:
            # not sequential: forget the pages and the window, read as asked
            self._drop(f)
            f.expected = f.window = 0
            f.offset = offset + size
            self.passed += 1
            return await self.first_child.readv(fd, size, offset, flags, xdata)
        full = page_size * self.opts.page_count
        if f.expected < full:
            f.expected += size
            f.window = min(f.expected // page_size, self.opts.page_count)
        first = offset - offset % page_size
        wanted: list[_Page] = []
        faulted = False
        for at in range(first, offset + size, page_size):
            page = f.pages.get(at)
            if page is None:
                page = self._fault(f, at)
                faulted = True
            wanted.append(page)
        if len(f.pages) > len(wanted):
            for at in [at for at in f.pages if at < first]:
                self._forget(f, f.pages[at])    # the reader is past it
        self._read_ahead(f, first, offset)
        f.offset = offset + size
        if faulted:
            self.misses += 1
        else:
            self.hits += 1
        for page in wanted:
            if not page.ready.is_set():     # (waiting on a set event still
                await page.ready.wait()     # yields to the scheduler: a hit need not)
            if page.error is not None:
                raise page.error
            if page.lost:
                return await self.first_child.readv(fd, size, offset, flags, xdata)
        if not faulted and self.opts.force_atime_update:
            await self.first_child.readv(fd, 1, offset, 0, None)
        return self._assemble(wanted, page_size, offset, offset + size)

    def _read_ahead(self, f: _File, first: int, offset: int) -> None:
        """Fault pages so `window` pages past the first missing one from the
        reader's page on are on their way (GlusterFS's read_ahead)."""
        span = f.page_size * f.window
        if not span:
            return
        cap = f.size if f.size >= 0 else offset + span
        at = first
        while at < min(offset + span, cap):
            if at not in f.pages:
                break
            at += f.page_size
        else:
            return      # comfortable enough
        cap = f.size if f.size >= 0 else at + span
        end = min(at + span, cap)
        while at < end:
            if at not in f.pages:
                self._fault(f, at)
            at += f.page_size

    def _fault(self, f: _File, at: int) -> _Page:
        page = f.pages[at] = _Page(at, f.generation)
        f.inflight += 1
        self.spawn(self._fetch, f, page, name=f"{self.name}:fetch")
        return page

    async def _fetch(self, f: _File, page: _Page) -> None:
        page.lost = True
        try:
            reply = await self.first_child.readv(f.fd, f.page_size, page.offset, 0, None)
            page.data, page.iatt, page.lost = reply.data, reply.iatt, False
            if page.generation == f.generation:
                if len(reply.data) < f.page_size:
                    f.size = page.offset + len(reply.data)
                elif reply.iatt is not None:
                    f.size = reply.iatt.size
        except FopError as e:
            page.error, page.lost = e, False
        except Exception as e:  # noqa: BLE001 - a bug below must not kill the graph
            self.log.exception("read-ahead fetch failed")
            page.error, page.lost = FopError(errno.EIO, f"read-ahead: {e}"), False
        finally:
            kept = f.pages.get(page.offset) is page
            if kept and (page.error is not None or page.lost or f.closed
                         or page.generation != f.generation):
                del f.pages[page.offset]    # refetched by the next read that wants it
                kept = False
            if kept:
                self._cached += len(page.data)
            page.ready.set()
            f.inflight -= 1
            if not f.inflight and f.idle is not None:
                f.idle.set()

    @staticmethod
    def _assemble(pages: list[_Page], page_size: int, offset: int, end: int) -> ReadReply:
        parts = []
        for page in pages:
            data = page.data
            start, stop = max(offset - page.offset, 0), min(end - page.offset, len(data))
            if start == 0 and stop == len(data) and len(pages) == 1:
                parts.append(data)      # the whole page: no copy
            elif start < stop:
                parts.append(memoryview(data)[start:stop])
            if len(data) < page_size:
                break                   # end of file
        out = parts[0] if len(parts) == 1 else b"".join(parts)
        return ReadReply(out, pages[-1].iatt)

    # -- pages ----------------------------------------------------------------------------

    def _forget(self, f: _File, page: _Page) -> None:
        if f.pages.get(page.offset) is page:
            del f.pages[page.offset]
            if page.ready.is_set():
                self._cached -= len(page.data)

    def _drop(self, f: _File) -> None:
        """Forget every page of the fd; fetches in flight are not kept."""
        f.generation += 1
        for page in list(f.pages.values()):
            self._forget(f, page)
        f.size = -1

    def _invalidate(self, gfid) -> None:
        files = self.itable.peek_ctx(self, gfid)
        for f in list(files or ()):
            self._drop(f)
            f.expected = f.window = 0

    async def _changing(self, gfid, call):
        self._invalidate(gfid)
        try:
            return await call
        finally:
            self._invalidate(gfid)   # a fetch that raced the change is not kept

    # -- fops that change a file's data ----------------------------------------------------

    async def writev(self, fd, data, offset, flags, xdata=None):
        return await self._changing(fd.gfid, self.first_child.writev(
            fd, data, offset, flags, xdata))

    async def truncate(self, loc, offset, xdata=None):
        return await self._changing(loc.gfid, self.first_child.truncate(loc, offset, xdata))

    async def ftruncate(self, fd, offset, xdata=None):
        return await self._changing(fd.gfid, self.first_child.ftruncate(fd, offset, xdata))

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        return await self._changing(fd.gfid, self.first_child.fallocate(
            fd, mode, offset, length, xdata))

    async def discard(self, fd, offset, length, xdata=None):
        return await self._changing(fd.gfid, self.first_child.discard(
            fd, offset, length, xdata))

    async def zerofill(self, fd, offset, length, xdata=None):
        return await self._changing(fd.gfid, self.first_child.zerofill(
            fd, offset, length, xdata))

    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags, xdata=None):
        return await self._changing(fd_out.gfid, self.first_child.copy_file_range(
            fd_in, off_in, fd_out, off_out, length, flags, xdata))

    async def put(self, loc, mode, umask, flags, data, offset, xattrs, xdata=None):
        # a put may write over a file open here (its gfid known by the loc)
        return await self._changing(loc.gfid, self.first_child.put(
            loc, mode, umask, flags, data, offset, xattrs, xdata))

    async def setattr(self, loc, stbuf, valid, xdata=None):
        if not valid & SET_ATTR_SIZE:
            return await self.first_child.setattr(loc, stbuf, valid, xdata)
        return await self._changing(loc.gfid, self.first_child.setattr(
            loc, stbuf, valid, xdata))

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        if not valid & SET_ATTR_SIZE:
            return await self.first_child.fsetattr(fd, stbuf, valid, xdata)
        return await self._changing(fd.gfid, self.first_child.fsetattr(
            fd, stbuf, valid, xdata))

    async def lk(self, fd, cmd, flock, xdata=None):
        # a lock holder must read what the previous holder wrote elsewhere
        return await self._changing(fd.gfid, self.first_child.lk(fd, cmd, flock, xdata))

    async def fstat(self, fd, xdata=None):
        if self.opts.force_atime_update:
            self._invalidate(fd.gfid)
        return await self.first_child.fstat(fd, xdata)

    def options_changed(self, old) -> None:
        if self.opts.pass_through and not old.pass_through:
            for _, files in self.itable.contexts(self):
                for f in files:
                    self._drop(f)

    def dump_state(self) -> dict:
        files = [f for _, fs in self.itable.contexts(self) for f in fs]
        return {"files": len(files), "pages": sum(len(f.pages) for f in files),
                "cached_bytes": self._cached, "hits": self.hits,
                "misses": self.misses, "passed": self.passed}


TRANSLATOR = ReadAhead

"""performance/io-cache: a client-side read cache of file pages.

Follows GlusterFS's io-cache (xlators/performance/io-cache): files are cached
in pages of `page-size` bytes, up to `cache-size` in all, evicting the least
recently used pages of the lowest `priority` first.  A file's pages are
dropped when

* a lookup, stat, fstat, open, readdirp or any other reply shows a changed
  mtime or size (another client wrote),
* `cache-timeout` seconds have passed since the last check and a fresh fstat
  shows such a change (checked on the next read),
* this graph writes, truncates, discards, zero-fills, fallocates or takes a
  POSIX lock on it (as GlusterFS flushes on lk, so lock users see fresh
  data).

Departures from GlusterFS: missing pages are fetched with one readv per run
of adjacent pages instead of one per page, and every inode carries a
generation number bumped by each invalidation, so a fill that was in flight
while a write ran is never inserted: no read through this graph returns data
older than a write made through it.
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from glusterpy.fops import GFID, Fd, Iatt, ReadReply
from glusterpy.options import Option, OptionType
from glusterpy.xlator import Translator


@dataclass(slots=True)
class _Inode:
    """What the cache knows of one file."""

    mtime_ns: int = -1
    size: int = -1
    iatt: Iatt | None = None
    validated: float = 0.0
    generation: int = 0
    priority: int = 1
    pages: dict[int, bytes] = field(default_factory=dict)


class IoCache(Translator):
    SKIP_DEFAULT_FOPS = True  # its default fops only wind
    FOPS_NEVER_SUSPEND = True  # it awaits only its child

    OPTIONS = (
        Option("priority", OptionType.PRIORITY_LIST, "",
               "Assigns priority to filenames with specific patterns so that when a page "
               "needs to be ejected out of the cache, the page of a file whose priority is "
               "the lowest will be ejected earlier",
               set_keys=("performance.cache-priority",)),
        Option("cache-timeout", OptionType.INT, "1",
               "The cached data for a file will be retained for 'cache-refresh-timeout' "
               "seconds, after which data re-validation is performed.",
               min=0, max=60, aliases=("force-revalidate-timeout",),
               set_keys=("performance.cache-refresh-timeout",)),
        Option("cache-size", OptionType.SIZE, "32MB", "Size of the read cache.",
               min=4 << 20, max=(1 << 63) - 1,
               set_keys=("performance.cache-size", "performance.io-cache-size")),
        Option("min-file-size", OptionType.SIZE, "0",
               "Minimum file size which would be cached by the io-cache translator.",
               set_keys=("performance.cache-min-file-size",)),
        Option("max-file-size", OptionType.SIZE, "0",
               "Maximum file size which would be cached by the io-cache translator "
               "(0: no limit).",
               set_keys=("performance.cache-max-file-size",)),
        Option("page-size", OptionType.SIZE, "128KB",
               "Size of one cached page; reads are fetched in whole pages.",
               min=4096, max=1 << 20, reconfigurable=False),
        Option("pass-through", OptionType.BOOL, "false",
               "Enable/Disable io cache translator",
               set_keys=("performance.io-cache-pass-through",)),
    )

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        # what it knows of each file is its slot in the graph's inode table
        # (self.itable), dropped with the inode (forget below)
        # LRU of cached pages per priority: (gfid, page index) -> bytes held
        self._lru: dict[int, OrderedDict[tuple[GFID, int], int]] = {}
        self._cached_bytes = 0
        self.hits = self.misses = 0

    def options_changed(self, old) -> None:
        if self.opts.pass_through and not old.pass_through:
            self._drop_everything()
        self._prune()

    # -- replies that reveal an inode's state --------------------------------

    async def lookup(self, loc, xdata=None):
        reply = await self.first_child.lookup(loc, xdata)
        self._observe(reply.iatt)
        return reply

    async def stat(self, loc, xdata=None):
        reply = await self.first_child.stat(loc, xdata)
        self._observe(reply.iatt)
        return reply

    async def fstat(self, fd, xdata=None):
        reply = await self.first_child.fstat(fd, xdata)
        self._observe(reply.iatt)
        return reply

    async def readdirp(self, fd, size, offset, xdata=None):
        reply = await self.first_child.readdirp(fd, size, offset, xdata)
        # ioc_readdirp_cbk: an entry matters only to a file this cache holds
        # (a context made by a read), so the inode's context is the one test
        # per entry - most listed files were never read here
        for entry, _ in self.itable.listed_held(self, reply.entries):
            self._observe(entry.iatt)
        return reply

    async def open(self, loc, flags, fd, xdata=None):
        truncating = flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY
        if truncating:
            self._invalidate(loc.gfid)
        reply = await self.first_child.open(loc, flags, fd, xdata)
        if truncating:
            self._invalidate(loc.gfid)
            inode = self.itable.ctx(self, loc.gfid)
            if inode is not None:
                inode.size = -1  # unknown until the next fstat
        self._remember_fd(loc, flags, fd)
        return reply

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        reply = await self.first_child.create(loc, flags, mode, umask, fd, xdata)
        self._observe(reply.iatt)
        self._remember_fd(loc, flags, fd)
        return reply

    async def release(self, fd, xdata=None):
        fd.ctx.pop(self, None)
        return await self.first_child.release(fd, xdata)

    # -- reads -------------------------------------------------------------------

    async def readv(self, fd, size, offset, flags, xdata=None):
        cacheable = fd.ctx.get(self)
        if not cacheable or self.opts.pass_through or size <= 0 or offset < 0 or xdata:
            return await self.first_child.readv(fd, size, offset, flags, xdata)
        inode = self.itable.ctx(self, fd.gfid)
        if inode is None:
            inode = _Inode(priority=cacheable)
            self.itable.set_ctx(self, fd.gfid, inode)
        if time.monotonic() - inode.validated >= self.opts.cache_timeout or inode.size < 0:
            self._observe((await self.first_child.fstat(fd, None)).iatt)
            if self.itable.peek_ctx(self, fd.gfid) is not inode:
                # the table dropped the inode while fstat ran: serve uncached
                return await self.first_child.readv(fd, size, offset, flags, xdata)
            inode.validated = time.monotonic()
        if not self._size_in_range(inode.size):
            return await self.first_child.readv(fd, size, offset, flags, xdata)
        page_size = self.opts.page_size
        end = min(offset + size, inode.size)
        if offset >= end:
            return ReadReply(b"", inode.iatt)
        first, last = offset // page_size, (end - 1) // page_size
        missing = [i for i in range(first, last + 1) if i not in inode.pages]
        if missing:
            self.misses += 1
            await self._fill(fd, inode, missing)
            if any(i not in inode.pages for i in range(first, last + 1)):
                # invalidated while filling, or the file shrank: do not guess
                return await self.first_child.readv(fd, size, offset, flags, xdata)
        else:
            self.hits += 1
        self._touch(fd.gfid, inode, range(first, last + 1))
        return ReadReply(self._assemble(inode, offset, end), inode.iatt)

    async def _fill(self, fd: Fd, inode: _Inode, missing: list[int]) -> None:
        """Fetch the missing pages, one readv per run of adjacent pages."""
        page_size = self.opts.page_size
        generation = inode.generation
        runs: list[list[int]] = []
        for index in missing:
            if runs and runs[-1][-1] == index - 1:
                runs[-1].append(index)
            else:
                runs.append([index])
        for run in runs:
            reply = await self.first_child.readv(
                fd, len(run) * page_size, run[0] * page_size, 0, None)
            if inode.generation != generation:
                return  # a write or invalidation ran meanwhile: the data may be old
            if len(run) == 1 and isinstance(reply.data, bytes):
                # the common sequential case: keep the child's buffer, no copy
                if reply.data:
                    self._store(fd.gfid, inode, run[0], reply.data)
                continue
            data = memoryview(reply.data)
            for n, index in enumerate(run):
                piece = data[n * page_size:(n + 1) * page_size]
                if not piece:
                    break
                self._store(fd.gfid, inode, index, bytes(piece))

    def _assemble(self, inode: _Inode, offset: int, end: int) -> bytes:
        page_size = self.opts.page_size
        first, last = offset // page_size, (end - 1) // page_size
        if first == last:
            page = inode.pages[first]
            start = offset - first * page_size
            if start == 0 and end - offset == len(page):
                return page  # the whole page: no copy
            return page[start:end - first * page_size]
        parts = []
        for index in range(first, last + 1):
            page = inode.pages[index]
            base = index * page_size
            parts.append(page[max(offset - base, 0):min(end - base, len(page))])
        return b"".join(parts)

    # -- fops that change data: drop the pages before and after ----------------

    async def writev(self, fd, data, offset, flags, xdata=None):
        self._invalidate(fd.gfid)
        reply = await self.first_child.writev(fd, data, offset, flags, xdata)
        self._after_change(fd.gfid, reply.postbuf)
        return reply

    async def truncate(self, loc, offset, xdata=None):
        self._invalidate(loc.gfid)
        reply = await self.first_child.truncate(loc, offset, xdata)
        self._after_change(loc.gfid, reply.postbuf)
        return reply

    async def ftruncate(self, fd, offset, xdata=None):
        self._invalidate(fd.gfid)
        reply = await self.first_child.ftruncate(fd, offset, xdata)
        self._after_change(fd.gfid, reply.postbuf)
        return reply

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        self._invalidate(fd.gfid)
        reply = await self.first_child.fallocate(fd, mode, offset, length, xdata)
        self._after_change(fd.gfid, reply.postbuf)
        return reply

    async def discard(self, fd, offset, length, xdata=None):
        self._invalidate(fd.gfid)
        reply = await self.first_child.discard(fd, offset, length, xdata)
        self._after_change(fd.gfid, reply.postbuf)
        return reply

    async def zerofill(self, fd, offset, length, xdata=None):
        self._invalidate(fd.gfid)
        reply = await self.first_child.zerofill(fd, offset, length, xdata)
        self._after_change(fd.gfid, reply.postbuf)
        return reply

    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags, xdata=None):
        self._invalidate(fd_out.gfid)
        reply = await self.first_child.copy_file_range(
            fd_in, off_in, fd_out, off_out, length, flags, xdata)
        self._after_change(fd_out.gfid, reply.postbuf_dst)
        return reply

    async def put(self, loc, mode, umask, flags, data, offset, xattrs, xdata=None):
        reply = await self.first_child.put(loc, mode, umask, flags, data, offset, xattrs, xdata)
        self._invalidate(reply.iatt.gfid)
        return reply

    async def setattr(self, loc, stbuf, valid, xdata=None):
        reply = await self.first_child.setattr(loc, stbuf, valid, xdata)
        self._observe(reply.postbuf)
        return reply

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        reply = await self.first_child.fsetattr(fd, stbuf, valid, xdata)
        self._observe(reply.postbuf)
        return reply

    async def lk(self, fd, cmd, flock, xdata=None):
        # a lock holder must read what the previous holder wrote elsewhere
        self._invalidate(fd.gfid)
        return await self.first_child.lk(fd, cmd, flock, xdata)

    # -- helpers ---------------------------------------------------------------

    def _remember_fd(self, loc, flags, fd) -> None:
        """Mark the fd cacheable (its value is the file's priority) unless
        it was opened for direct IO."""
        if flags & os.O_DIRECT or self.opts.pass_through:
            return
        fd.ctx[self] = self._priority(loc.path or "")

    def _priority(self, path: str) -> int:
        for pattern, prio in self.opts.priority:
            if fnmatch.fnmatchcase(path, pattern):
                return prio
        return 1

    def _size_in_range(self, size: int) -> bool:
        lo, hi = self.opts.min_file_size, self.opts.max_file_size
        return size >= lo and (hi == 0 or size <= hi)

    def _observe(self, iatt: Iatt | None) -> None:
        """A reply showed the inode's attributes: drop pages if it changed."""
        if iatt is None or not iatt.is_reg:
            return
        inode = self.itable.ctx(self, iatt.gfid)
        if inode is None:
            return
        if inode.mtime_ns != iatt.mtime_ns or inode.size != iatt.size:
            if inode.size >= 0:
                self._invalidate(iatt.gfid)
            inode.mtime_ns, inode.size = iatt.mtime_ns, iatt.size
        inode.iatt = iatt

    def _after_change(self, gfid: GFID | None, postbuf: Iatt | None) -> None:
        self._invalidate(gfid)
        inode = self.itable.ctx(self, gfid)
        if inode is None:
            return
        if postbuf is not None:
            inode.mtime_ns, inode.size, inode.iatt = postbuf.mtime_ns, postbuf.size, postbuf
        else:
            # a reply without attributes (write-behind's acknowledged-early
            # writes): the size is unknown until the next fstat
            inode.size = -1

    def _invalidate(self, gfid: GFID | None) -> None:
        inode = self.itable.peek_ctx(self, gfid)
        if inode is not None:
            self._drop_pages(gfid, inode)

    def forget(self, inode) -> None:
        self._drop_pages(inode.gfid, inode.ctx[self])

    def _drop_pages(self, gfid, inode: _Inode) -> None:
        inode.generation += 1
        lru = self._lru.get(inode.priority)
        for index, page in inode.pages.items():
            self._cached_bytes -= len(page)
            if lru is not None:
                lru.pop((gfid, index), None)
        inode.pages.clear()

    def _store(self, gfid: GFID, inode: _Inode, index: int, page: bytes) -> None:
        old = inode.pages.get(index)
        if old is not None:
            self._cached_bytes -= len(old)
        inode.pages[index] = page
        self._cached_bytes += len(page)
        self._lru.setdefault(inode.priority, OrderedDict())[(gfid, index)] = len(page)
        self._prune()

    def _touch(self, gfid: GFID, inode: _Inode, indexes) -> None:
        lru = self._lru.get(inode.priority)
        if lru is not None:
            for index in indexes:
                if (gfid, index) in lru:
                    lru.move_to_end((gfid, index))

    def _prune(self) -> None:
        """Evict least recently used pages, lowest priority first."""
        limit = self.opts.cache_size
        for prio in sorted(self._lru):
            lru = self._lru[prio]
            while self._cached_bytes > limit and lru:
                (gfid, index), _ = lru.popitem(last=False)
                inode = self.itable.peek_ctx(self, gfid)
                page = inode.pages.pop(index, None) if inode else None
                if page is not None:
                    self._cached_bytes -= len(page)
            if self._cached_bytes <= limit:
                break

    def _drop_everything(self) -> None:
        for gfid, inode in self.itable.contexts(self):
            self._drop_pages(gfid, inode)

    def dump_state(self) -> dict:
        files = [inode for _, inode in self.itable.contexts(self)]
        return {"cached_bytes": self._cached_bytes, "files": len(files),
                "pages": sum(len(i.pages) for i in files),
                "hits": self.hits, "misses": self.misses}


TRANSLATOR = IoCache

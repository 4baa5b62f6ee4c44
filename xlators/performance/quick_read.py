"""performance/quick-read: whole small files fetched with their lookup.

Follows GlusterFS's quick-read (xlators/performance/quick-read): a lookup
asks the brick for the whole content of the file in the same round trip
(xdata `glusterfs.content` = `max-file-size`; storage/posix answers it for a
regular file no larger than that, as posix_lookup/posix_fill_content do).
The content is kept in the inode's slot of the graph's inode table and
reads of the file are served from it while it is fresh.  Together with
open-behind below it, open+read+close of a small file costs the lookup
alone.

* Freshness: the content is served for `cache-timeout` seconds after it
  was fetched or last validated.  A later lookup (or readdirp entry) that
  shows the same mtime (ctime with `ctime-invalidation`) and a size within
  `max-file-size` validates it again; any other attributes drop it, and the
  next lookup fetches the content anew.  A CHILD_DOWN makes everything
  cached before it stale.  With `quick-read-cache-invalidation` an upcall
  reporting a write (UP_SIZE|UP_TIMES) drops the file's content at once.
  So another client's write is seen within `cache-timeout` (1 s), which is
  GlusterFS's documented bound.
* This graph's own changes: writev, truncate, ftruncate, fallocate,
  discard, zerofill drop the content (before the fop and again after it).
  Every cache fill carries the generation taken when its lookup started; a
  fill older than the last invalidation of the file is thrown away, so a
  lookup that raced a write never brings the old content back.
* Memory: the content of all files together stays within `cache-size`;
  past it the least recently used files of the lowest `priority` go first
  (GlusterFS's LRU per priority).  The per-file record lives in the inode
  table and goes with the inode (`forget`), so a walk of a large namespace
  stays within the table's bound plus `cache-size`.

Departures from GlusterFS, for POSIX users of every glusterpy client:
setattr/fsetattr, copy_file_range (destination), put and an open with
O_TRUNC also drop the content (GlusterFS relies on the mtime check of the
next lookup and may serve the old content until then); fds opened with
O_DIRECT always read from the brick; the `quick-read` enable flag GlusterFS
declares (glusterd's `!perf` toggle) is not an option here - glusterd adds
or leaves out the translator.
"""

from __future__ import annotations

import fnmatch
import itertools
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from glusterpy.fops import GFID, FopError, Iatt, ReadReply, UInt
from glusterpy.keys import CONTENT_KEY
from glusterpy.options import Option, OptionError, OptionType, validate
from glusterpy.xlator import Event, Translator

#: upcall-utils.h: the flags of a cache invalidation that mean "data changed"
UP_WRITE_FLAGS = 0x8 | 0x10            # UP_SIZE | UP_TIMES
UPCALL_CACHE_INVALIDATION = 1          # gf_upcall_event_t


@dataclass(slots=True)
class _QrInode:
    """What quick-read keeps about one file (its inode-table slot)."""

    data: bytes | None = None
    iatt: Iatt | None = None
    last_refresh: float = 0.0
    priority: int = 0
    #: the generation of the last invalidation: fills started before it are stale
    invalidated: int = 0


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


class QuickRead(Translator):
    SKIP_DEFAULT_FOPS = True  # its default fops only wind
    FOPS_NEVER_SUSPEND = True  # it awaits only its child

    OPTIONS = (
        Option("priority", OptionType.PRIORITY_LIST, "",
               "PATTERN:PRIORITY,... - files whose path matches a pattern of a higher "
               "priority are evicted later (the last matching pattern counts)."),
        Option("cache-size", OptionType.SIZE, "128MB", "Size of small file read cache.",
               min=0, max=(1 << 63) - 1,
               set_keys=("performance.quick-read-cache-size", "performance.cache-size")),
        Option("cache-timeout", OptionType.INT, "1",
               "Seconds cached content is served before a lookup must validate it again.",
               min=0, max=(1 << 31) - 1,
               set_keys=("performance.quick-read-cache-timeout",
                         "performance.qr-cache-timeout")),
        Option("max-file-size", OptionType.SIZE, "64KB",
               "Files up to this size are fetched whole with their lookup and cached.",
               min=0, max=1000 << 10),
        Option("quick-read-cache-invalidation", OptionType.BOOL, "false",
               "When \"on\", invalidates/updates the metadata cache, on receiving the "
               "cache-invalidation notifications",
               set_keys=("performance.quick-read-cache-invalidation",)),
        Option("ctime-invalidation", OptionType.BOOL, "false",
               "Quick-read by default uses mtime to identify changes to file data; this "
               "makes it use ctime, which applications cannot set (rsync sets mtime).",
               set_keys=("performance.ctime-invalidation",)),
    )

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self._check_cache_size(self.opts.cache_size)
        #: priority -> LRU of the files whose content is cached (gfid -> bytes)
        self._lru: dict[int, OrderedDict[GFID, int]] = {}
        self._cached_bytes = 0
        self._generation = itertools.count(1)
        #: generation of the last invalidation of a file that had no record:
        #: a new record refuses fills older than it
        self._unrecorded_invalidation = 0
        self._last_child_down = time.monotonic()
        self.hits = self.misses = self.invalidations = 0

    def _check_cache_size(self, size: int) -> None:
        # GlusterFS refuses a cache larger than the machine's memory
        memory = _physical_memory()
        if memory is not None and size > memory:
            raise OptionError("cache-size", f"option 'cache-size': {size} is greater than "
                                            f"the max size of {memory} (physical memory)")

    def reconfigure(self, options) -> None:
        self._check_cache_size(validate(self.OPTIONS, options).cache_size)
        super().reconfigure(options)

    def options_changed(self, old) -> None:
        self._prune()

    def notify(self, event, source, data=None):
        if event in (Event.CHILD_DOWN, Event.SOME_DESCENDENT_DOWN):
            self._last_child_down = time.monotonic()
        elif event == Event.UPCALL and self.opts.quick_read_cache_invalidation:
            if getattr(data, "event_type", None) == UPCALL_CACHE_INVALIDATION and \
                    getattr(getattr(data, "message", None), "flags", 0) & UP_WRITE_FLAGS:
                self.invalidations += 1
                self._invalidate(data.gfid)
        super().notify(event, source, data)

    # -- lookup: where content comes in -------------------------------------------

    async def lookup(self, loc, xdata=None):
        incident = next(self._generation)
        record = self.itable.peek_ctx(self, loc.gfid)
        asked = False
        if (record is None or record.data is None) and self.opts.max_file_size \
                and not (xdata and CONTENT_KEY in xdata):
            xdata = dict(xdata or {})
            xdata[CONTENT_KEY] = UInt(self.opts.max_file_size)
            asked = True
        try:
            reply = await self.first_child.lookup(loc, xdata)
        except FopError:
            self._invalidate(loc.gfid)
            raise
        content = reply.xdata.pop(CONTENT_KEY, None) if asked and reply.xdata else None
        iatt = reply.iatt
        if iatt is not None and iatt.is_reg:
            if isinstance(content, (bytes, bytearray)) and len(content) == iatt.size \
                    and iatt.size <= self.opts.max_file_size:
                self._fill(iatt, bytes(content), incident)
            else:
                self._refresh(iatt, incident)
        return reply

    async def readdirp(self, fd, size, offset, xdata=None):
        incident = next(self._generation)
        reply = await self.first_child.readdirp(fd, size, offset, xdata)
        # qr_readdirp_cbk: only files whose content is held here are refreshed
        for entry, record in self.itable.listed_held(self, reply.entries):
            if record.data is not None:
                self._refresh(entry.iatt, incident)
        return reply

    async def open(self, loc, flags, fd, xdata=None):
        truncating = flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY
        if truncating:
            self._invalidate(loc.gfid)
        try:
            reply = await self.first_child.open(loc, flags, fd, xdata)
        finally:
            if truncating:
                self._invalidate(loc.gfid)
        record = self.itable.ctx(self, loc.gfid)
        if record is not None and loc.path:
            self._set_priority(loc.gfid, record, self._priority(loc.path))
        return reply

    # -- readv: the hit ----------------------------------------------------------------

    async def readv(self, fd, size, offset, flags, xdata=None):
        record = self.itable.ctx(self, fd.gfid)
        if record is not None and record.data is not None and offset >= 0 \
                and offset < len(record.data) and size > 0 \
                and not fd.flags & os.O_DIRECT and self._fresh(record):
            self.hits += 1
            lru = self._lru.get(record.priority)
            if lru is not None and fd.gfid in lru:
                lru.move_to_end(fd.gfid)
            data = record.data
            if offset or size < len(data):
                data = data[offset:offset + size]
            return ReadReply(data, record.iatt)
        if record is not None and record.data is not None:
            self.misses += 1
        return await self.first_child.readv(fd, size, offset, flags, xdata)

    # -- what changes data: drop the content before and after ----------------------------

    async def _changing(self, gfid, call, *args):
        self._invalidate(gfid)
        try:
            return await call(*args)
        finally:
            self._invalidate(gfid)

    async def writev(self, fd, data, offset, flags, xdata=None):
        return await self._changing(fd.gfid, self.first_child.writev, fd, data, offset, flags,
                                    xdata)

    async def truncate(self, loc, offset, xdata=None):
        return await self._changing(loc.gfid, self.first_child.truncate, loc, offset, xdata)

    async def ftruncate(self, fd, offset, xdata=None):
        return await self._changing(fd.gfid, self.first_child.ftruncate, fd, offset, xdata)

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        return await self._changing(fd.gfid, self.first_child.fallocate, fd, mode, offset,
                                    length, xdata)

    async def discard(self, fd, offset, length, xdata=None):
        return await self._changing(fd.gfid, self.first_child.discard, fd, offset, length, xdata)

    async def zerofill(self, fd, offset, length, xdata=None):
        return await self._changing(fd.gfid, self.first_child.zerofill, fd, offset, length,
                                    xdata)

    async def setattr(self, loc, stbuf, valid, xdata=None):
        return await self._changing(loc.gfid, self.first_child.setattr, loc, stbuf, valid, xdata)

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        return await self._changing(fd.gfid, self.first_child.fsetattr, fd, stbuf, valid, xdata)

    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags, xdata=None):
        return await self._changing(fd_out.gfid, self.first_child.copy_file_range, fd_in, off_in,
                                    fd_out, off_out, length, flags, xdata)

    async def put(self, loc, mode, umask, flags, data, offset, xattrs, xdata=None):
        reply = await self.first_child.put(loc, mode, umask, flags, data, offset, xattrs, xdata)
        self._invalidate(reply.iatt.gfid)
        return reply

    # -- the cache ---------------------------------------------------------------------

    def _fresh(self, record: _QrInode) -> bool:
        return record.last_refresh >= self._last_child_down and \
            time.monotonic() - record.last_refresh < self.opts.cache_timeout

    def _same_times(self, old: Iatt, new: Iatt) -> bool:
        if self.opts.ctime_invalidation:
            return old.ctime_ns == new.ctime_ns
        return old.mtime_ns == new.mtime_ns

    def _fill(self, iatt: Iatt, content: bytes, incident: int) -> None:
        """A lookup brought the file's content (qr_content_update)."""
        record = self.itable.ctx(self, iatt.gfid)
        if record is None:
            if self._unrecorded_invalidation > incident:
                return
            record = _QrInode()
            self.itable.set_ctx(self, iatt.gfid, record)
        if record.invalidated > incident:
            return  # the file changed through this graph while the lookup ran
        self._drop_data(iatt.gfid, record)
        record.data, record.iatt, record.last_refresh = content, iatt, time.monotonic()
        self._lru.setdefault(record.priority, OrderedDict())[iatt.gfid] = len(content)
        self._cached_bytes += len(content)
        self._prune()

    def _refresh(self, iatt: Iatt, incident: int) -> None:
        """A reply showed the file's attributes (qr_content_refresh)."""
        record = self.itable.peek_ctx(self, iatt.gfid)
        if record is None or record.data is None or record.invalidated > incident:
            return
        if record.iatt is not None and self._same_times(record.iatt, iatt) \
                and iatt.size == len(record.data) and iatt.size <= self.opts.max_file_size:
            record.iatt, record.last_refresh = iatt, time.monotonic()
        else:
            self._invalidate(iatt.gfid)

    def _invalidate(self, gfid: GFID | None) -> None:
        generation = next(self._generation)
        record = self.itable.peek_ctx(self, gfid)
        if record is None:
            self._unrecorded_invalidation = generation
            return
        record.invalidated = generation
        self._drop_data(gfid, record)

    def _drop_data(self, gfid, record: _QrInode) -> None:
        if record.data is not None:
            self._cached_bytes -= len(record.data)
            self._lru.get(record.priority, {}).pop(gfid, None)
            record.data = None

    def _priority(self, path: str) -> int:
        priority = 0
        for pattern, prio in self.opts.priority:
            if fnmatch.fnmatchcase(path, pattern):
                priority = prio
        return priority

    def _set_priority(self, gfid: GFID, record: _QrInode, priority: int) -> None:
        if record.data is not None:
            size = self._lru.get(record.priority, {}).pop(gfid, len(record.data))
            self._lru.setdefault(priority, OrderedDict())[gfid] = size
        record.priority = priority

    def _prune(self) -> None:
        """Evict least recently used files, lowest priority first."""
        limit = self.opts.cache_size
        for priority in sorted(self._lru):
            lru = self._lru[priority]
            while self._cached_bytes > limit and lru:
                gfid, size = lru.popitem(last=False)
                self._cached_bytes -= size
                record = self.itable.peek_ctx(self, gfid)
                if record is not None:
                    record.data = None
            if self._cached_bytes <= limit:
                break

    def forget(self, inode) -> None:
        self._drop_data(inode.gfid, inode.ctx[self])

    def dump_state(self) -> dict[str, Any]:
        return {"cached_bytes": self._cached_bytes,
                "files": sum(len(lru) for lru in self._lru.values()),
                "hits": self.hits, "misses": self.misses,
                "invalidations": self.invalidations}


TRANSLATOR = QuickRead

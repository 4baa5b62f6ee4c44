"""performance/readdir-ahead: read a directory ahead of its reader.

Follows GlusterFS's readdir-ahead (xlators/performance/readdir-ahead): on
opendir (or on the first readdirp at offset 0 of a directory opened past
it) a background task lists the directory with readdirp in
`rda-request-size` requests into a buffer kept with the fd, and sequential
readdirp calls are answered from that buffer.  A FUSE mount asks for 4KB of
entries at a time; the brick is asked for 128KB.

* The buffer is "plugged" - a reader waits for a fuller buffer rather than
  take a few entries - until it holds `rda-high-wmark` bytes, and plugs
  again when serving drains it to `rda-low-wmark` (GlusterFS's watermarks).
  A request is served as soon as the buffer holds a request's worth, or the
  prefetch reached the end of the directory or failed.
* The prefetch runs until the end of the directory or until all buffers
  together (with the requests in flight) would pass `rda-cache-limit`; it
  resumes when a reader finds the buffer short, and a reader waiting on a
  drained buffer gets its request made even past the limit (GlusterFS's
  pending stub keeps the prefetch running): the limit is overshot by at most
  one request per waiting reader.  Entries are counted as storage/posix counts them against a
  readdirp size (DIRENT_COST + name + 1).
* An error of the prefetch is returned in order: after the entries before
  it have been served, then the fd passes every later call through.
* A reader that kept only part of an answer (glusterpy's FUSE bridge asks
  for 128KB, the kernel keeps a page's worth) asks again from the last entry
  it kept: the rest of that answer is served again (a departure: GlusterFS's
  fuse-bridge asks for what the kernel takes, so it has no such case).
* A readdirp at any other offset than the one the reader reached (a seek), a
  readdir (not p), or a readdirp asking for other xdata than the prefetch
  used switches the fd to pass-through for good ("bypass"), as GlusterFS
  does; a rewind (offset 0) after the whole directory was served starts a
  fresh prefetch.
* Entries' attributes: writes, truncates, setattrs, xattr and entry changes
  that pass through here record in this translator's slot of the changed
  inode (the graph's inode table, bounded by its LRU) the attributes their
  reply carries - or that they are unknown, when it carries none - and an
  entry buffered before such a change is served with the attributes after
  it.  A change made while a prefetch was in flight makes that prefetch's
  iatt of the inode untrusted (GlusterFS's writes_during_prefetch).

Departures from GlusterFS, and why:

* An entry whose attributes are unknown is served with a fresh stat
  instead of a zeroed iatt: glusterpy's FUSE bridge drops readdirp entries
  without an iatt, so a zeroed one would hide a name.
* Only changed inodes get a slot (GlusterFS makes one for every entry it
  prefetches): entries are stamped with the translator's change count, so
  serving a listing nothing changed under costs no inode table work.
* A bypass or a release waits for the prefetch's request in flight before
  winding: the child sees one readdirp at a time on a directory fd, as
  GlusterFS's posix ensures with its fd lock.
* `parallel-readdir` is declared for volfiles and `volume set`, and does
  nothing here: in GlusterFS it is glusterd that places readdir-ahead under
  each distribute subvolume when it is on.
"""

from __future__ import annotations

import errno
import os
from collections import deque
from dataclasses import dataclass, field

import trio

from glusterpy.fops import GFID, DirReply, Dirent, Fd, FopError, Iatt, Loc
from glusterpy.options import Option, OptionType
from glusterpy.xlator import Translator

#: what one entry costs against a readdirp size: storage/posix's count
DIRENT_COST = 208


def entry_cost(entry: Dirent) -> int:
    return DIRENT_COST + len(os.fsencode(entry.name)) + 1


def _NONE(reply) -> None:
    """The reply carries no iatt of the inode: its attributes become unknown."""
    return None


@dataclass(slots=True)
class _Attr:
    """This translator's slot on an inode changed through it: the
    attributes the change left (None: unknown, stat before serving) and the
    translator's change count when it happened."""

    iatt: Iatt | None = None
    changed: int = 0


@dataclass(eq=False, slots=True)
class _Dir:
    """The prefetch state of one directory fd (GlusterFS's rda_fd_ctx)."""

    xdata: dict | None = None
    #: (entry, its cost, the translator's change count when it was buffered)
    entries: deque = field(default_factory=deque)
    size: int = 0             # bytes buffered
    cur_offset: int = 0       # where the reader's next sequential readdirp asks
    next_offset: int = 0      # where the prefetch reads next
    plugged: bool = False
    eod: bool = False
    error: FopError | None = None
    bypass: bool = False
    closed: bool = False
    running: bool = False
    done: trio.Event = field(default_factory=trio.Event)   # the running prefetch ended
    wakeup: trio.Event = field(default_factory=trio.Event)  # entries arrived or it ended
    waiting: bool = False     # a readdirp waits for the prefetch (GlusterFS's stub)
    starved: bool = False     # ... and nothing it can take is buffered yet
    #: the last answer, and where it started: what a reader that kept only
    #: part of it asks for again
    last: list = field(default_factory=list)
    last_start: int = 0
    #: gfids changed through this translator while a prefetch was in flight
    changed: set = field(default_factory=set)


class ReaddirAhead(Translator):
    OPTIONS = (
        Option("readdir-ahead", OptionType.BOOL, "off",
               "enable/disable readdir-ahead (GlusterFS declares it; the translator "
               "works whenever it is in the graph)"),
        Option("rda-request-size", OptionType.SIZE, "131072",
               "size of buffer in readdirp calls initiated by readdir-ahead ",
               min=4096, max=131072, set_keys=("performance.rda-request-size",)),
        Option("rda-low-wmark", OptionType.SIZE, "4096",
               "the value under which readdir-ahead plugs",
               min=0, max=10 << 20, set_keys=("performance.rda-low-wmark",)),
        Option("rda-high-wmark", OptionType.SIZE, "128KB",
               "the value over which readdir-ahead unplugs",
               min=0, max=100 << 20, set_keys=("performance.rda-high-wmark",)),
        Option("rda-cache-limit", OptionType.SIZE, "10MB",
               "maximum size of cache consumed by readdir-ahead xlator. This value is "
               "global and total memory consumption by readdir-ahead is capped by this "
               "value, irrespective of the number/size of directories cached",
               min=0, set_keys=("performance.rda-cache-limit",)),
        Option("parallel-readdir", OptionType.BOOL, "off",
               "If this option is enabled, the readdir operation is performed in "
               "parallel on all the bricks, thus improving the performance of readdir. "
               "Note that the performance improvement is higher in large clusters",
               set_keys=("performance.parallel-readdir",)),
        Option("pass-through", OptionType.BOOL, "false",
               "Enable/Disable readdir ahead translator",
               set_keys=("performance.readdir-ahead-pass-through",)),
    )

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self._cached = 0                  # bytes buffered over all fds
        self._reserved = 0                # bytes asked for by prefetches in flight
        self._prefetching: set[_Dir] = set()
        #: changes seen through this translator (an entry buffered before
        #: the latest one whose inode slot is gone is stat'ed when served)
        self._changes = 0
        self._forgotten = 0   # the latest change whose inode slot the table dropped
        self._stopped = False
        self.served = self.bypassed = self.requests = 0

    async def fini(self) -> None:
        # the graph's nursery is about to be cancelled: no more prefetches
        self._stopped = True
        for d in list(self._prefetching):
            d.bypass = True

    def options_changed(self, old) -> None:
        if self.opts.pass_through and not old.pass_through:
            for d in list(self._prefetching):
                d.bypass = True

    # -- directories ----------------------------------------------------------------

    async def opendir(self, loc, fd, xdata=None):
        reply = await self.first_child.opendir(loc, fd, xdata)
        if not self.opts.pass_through:
            d = fd.ctx[self] = _Dir(xdata=dict(xdata) if xdata else None)
            self._start(fd, d)
        return reply

    async def readdirp(self, fd, size, offset, xdata=None):
        d: _Dir | None = fd.ctx.get(self)
        if d is None and offset == 0 and not self.opts.pass_through:
            d = fd.ctx[self] = _Dir(xdata=dict(xdata) if xdata else None)
        if d is None or d.bypass or self.opts.pass_through:
            return await self._bypass(fd, d, size, offset, xdata)
        if offset == 0 and d.eod and not d.entries and not d.running:
            self._reset(d)          # a rewind after the whole listing: list afresh
            d.xdata = dict(xdata) if xdata else None
        if offset != d.cur_offset and not d.waiting:
            self._take_back(d, offset)
        if offset != d.cur_offset or d.waiting or (xdata or None) != d.xdata:
            return await self._bypass(fd, d, size, offset, xdata)
        while not self._can_serve(d, size):
            if not d.running:
                self._start(fd, d)
            d.waiting = d.starved = True
            d.wakeup = trio.Event()
            try:
                await d.wakeup.wait()
            finally:
                d.waiting = False
            if d.bypass or d.closed or self.opts.pass_through:
                return await self._bypass(fd, d, size, offset, xdata)
        return await self._serve(d, size)

    def _take_back(self, d: _Dir, offset: int) -> None:
        """A reader that took only part of the last answer asks again from
        the last entry it kept: put the rest back in front of the buffer.
        glusterpy's FUSE bridge asks for 128KB and the kernel keeps what
        fits its 4KB page, so this is the common case there, not a seek.
        Offset 0 is never taken back: it is also rewinddir, which must show
        the directory as it is now."""
        if not d.last or offset == 0:
            return
        if offset == d.last_start:
            keep = 0
        else:
            keep = next((i + 1 for i, (entry, _, _) in enumerate(d.last) if entry.off == offset),
                        None)
            if keep is None:
                return
        back = d.last[keep:]
        d.entries.extendleft(reversed(back))
        for _, cost, _ in back:
            d.size += cost
            self._cached += cost
        d.last = []
        d.cur_offset = d.last_start = offset

    async def readdir(self, fd, size, offset, xdata=None):
        # plain readdir is not served from the buffer (GlusterFS serves only
        # readdirp); the fd stops prefetching so the child sees one reader
        return await self._bypass(fd, fd.ctx.get(self), size, offset, xdata, plus=False)

    async def releasedir(self, fd, xdata=None):
        d = fd.ctx.pop(self, None)
        if d is not None:
            d.closed = True
            await self._stop(d)
            self._drop_buffer(d)
        return await self.first_child.releasedir(fd, xdata)

    async def _bypass(self, fd, d, size, offset, xdata, plus=True):
        if d is not None:
            if not d.bypass:
                d.bypass = True
                self.bypassed += 1
            await self._stop(d)
            self._drop_buffer(d)
        if plus:
            return await self.first_child.readdirp(fd, size, offset, xdata)
        return await self.first_child.readdir(fd, size, offset, xdata)

    async def _stop(self, d: _Dir) -> None:
        """Let the prefetch's request in flight finish; it then ends."""
        if d.running:
            await d.done.wait()

    # -- the prefetch ------------------------------------------------------------------

    def _start(self, fd: Fd, d: _Dir) -> None:
        if self._stopped:
            d.bypass = True
            return
        if d.running or d.eod or d.error is not None or d.bypass or d.closed:
            return
        d.running = True
        d.done = trio.Event()
        if self.opts.rda_low_wmark and d.size <= self.opts.rda_low_wmark:
            d.plugged = True    # wait for a fuller buffer before serving
        self._prefetching.add(d)
        self.spawn(self._prefetch, fd, d, name=f"{self.name}:prefetch")

    async def _prefetch(self, fd: Fd, d: _Dir) -> None:
        ended = False
        try:
            while not (d.bypass or d.closed or self.opts.pass_through):
                request_size = self.opts.rda_request_size
                # requests in flight count against the limit too, so several
                # directories prefetching at once overshoot it by one request
                # at most; a reader waiting on an empty buffer is served anyway
                if (self._cached + self._reserved + request_size > self.opts.rda_cache_limit
                        and not d.starved):
                    break           # resumes when a reader finds the buffer short
                d.changed.clear()
                self.requests += 1
                self._reserved += request_size
                try:
                    reply = await self.first_child.readdirp(
                        fd, request_size, d.next_offset, d.xdata)
                except FopError as e:
                    d.error = e
                    break
                except Exception as e:  # noqa: BLE001 - a bug below must not kill the graph
                    self.log.exception("readdirp prefetch failed")
                    d.error = FopError(errno.EIO, f"readdir-ahead prefetch: {e}")
                    break
                finally:
                    self._reserved -= request_size
                if d.bypass or d.closed:
                    break
                if not reply.entries:
                    d.eod = True
                    break
                self._buffer(d, reply.entries)
                d.starved = False
                if d.size >= self.opts.rda_high_wmark:
                    d.plugged = False
                d.wakeup.set()
            ended = True
        finally:
            if not ended:
                d.bypass = True     # cancelled (the graph stops): readers go below
            d.running = False
            self._prefetching.discard(d)
            d.wakeup.set()
            d.done.set()

    def _buffer(self, d: _Dir, entries: list[Dirent]) -> None:
        changes = self._changes
        for entry in entries:
            cost = entry_cost(entry)
            # the translator's change count stamps the entry; an iatt fetched
            # while its inode changed here is older than any count (-1)
            stamp = -1 if entry.iatt is not None and entry.iatt.gfid in d.changed else changes
            d.entries.append((entry, cost, stamp))
            d.size += cost
            self._cached += cost
            d.next_offset = entry.off

    # -- serving ------------------------------------------------------------------------

    def _can_serve(self, d: _Dir, size: int) -> bool:
        return (d.eod or d.error is not None or (not d.plugged and d.size > 0)
                or (size > 0 and d.size >= size))

    async def _serve(self, d: _Dir, size: int) -> DirReply:
        out: list[Dirent] = []
        d.last = []
        d.last_start = d.cur_offset
        filled = 0
        stale: list[Dirent] = []
        while d.entries:
            entry, cost, stamp = d.entries[0]
            if out and filled + cost > size:
                break
            d.last.append(d.entries.popleft())
            d.size -= cost
            self._cached -= cost
            filled += cost
            if stamp != self._changes and entry.iatt is not None \
                    and entry.name not in (".", ".."):
                self._freshen(entry, stamp, stale)   # something changed since
            out.append(entry)
            d.cur_offset = entry.off
        if d.size <= self.opts.rda_low_wmark:
            d.plugged = True
        if not out and d.error is not None:
            error, d.error = d.error, None
            d.bypass = True     # the prefetch stopped: later calls pass through
            raise error
        for entry in stale:
            await self._refresh(entry)
        self.served += 1
        return DirReply(out)

    def _freshen(self, entry: Dirent, stamp: int, stale: list[Dirent]) -> None:
        """Serve the attributes after the changes made here since `entry` was
        fetched: the recorded ones if newer, a fresh stat if they are unknown."""
        assert entry.iatt is not None
        attr = self.itable.peek_ctx(self, entry.iatt.gfid)
        if attr is None:
            if stamp < 0 or stamp < self._forgotten:
                stale.append(entry)     # its record is gone: do not guess
        elif attr.changed > stamp:
            if attr.iatt is None:
                stale.append(entry)
            elif attr.iatt.ctime_ns >= entry.iatt.ctime_ns:
                entry.iatt = attr.iatt

    async def _refresh(self, entry: Dirent) -> None:
        assert entry.iatt is not None
        gfid = entry.iatt.gfid
        attr = self.itable.peek_ctx(self, gfid)
        changed = attr.changed if attr is not None else None
        try:
            iatt = (await self.first_child.stat(Loc(gfid=gfid), None)).iatt
        except FopError:
            return              # gone since: the listing keeps what it saw
        entry.iatt = iatt
        if attr is not None and attr.changed == changed and attr.iatt is None:
            attr.iatt = iatt    # no change ran meanwhile: known again

    # -- attributes kept per inode (GlusterFS's rda inode ctx) -------------------------

    def _record(self, gfid: GFID, iatt: Iatt | None) -> None:
        """A change through this translator left `iatt` (None: the reply had
        none, the attributes are unknown until a stat); a newer ctime wins."""
        attr = self.itable.ctx(self, gfid)
        if attr is None:
            attr = _Attr()
            self.itable.set_ctx(self, gfid, attr)
        attr.changed = self._changes
        if iatt is None or (iatt.ctime == 0 and iatt.ctime_nsec == 0):
            attr.iatt = None
        elif attr.iatt is None or iatt.ctime_ns >= attr.iatt.ctime_ns:
            attr.iatt = iatt

    def forget(self, inode) -> None:
        # an entry buffered before this change can no longer learn of it
        self._forgotten = max(self._forgotten, inode.ctx[self].changed)

    async def _changed(self, call, *targets):
        """Wind a fop that changes inodes, then record what it left: each
        target is (gfid, reply -> its iatt after the fop, or None if the
        reply has none)."""
        reply = await call
        self._changes += 1
        for gfid, after in targets:
            if gfid is not None:
                for d in self._prefetching:
                    d.changed.add(gfid)
                self._record(gfid, after(reply))
        return reply

    def _reset(self, d: _Dir) -> None:
        self._drop_buffer(d)
        d.cur_offset = d.next_offset = d.last_start = 0
        d.eod = False
        d.error = None
        d.plugged = False

    def _drop_buffer(self, d: _Dir) -> None:
        self._cached -= d.size
        d.size = 0
        d.entries.clear()
        d.last = []

    # -- fops that change an inode: keep its attributes current -----------------------

    async def writev(self, fd, data, offset, flags, xdata=None):
        return await self._changed(self.first_child.writev(
            fd, data, offset, flags, xdata), (fd.gfid, lambda r: r.postbuf))

    async def truncate(self, loc, offset, xdata=None):
        return await self._changed(self.first_child.truncate(
            loc, offset, xdata), (loc.gfid, lambda r: r.postbuf))

    async def ftruncate(self, fd, offset, xdata=None):
        return await self._changed(self.first_child.ftruncate(
            fd, offset, xdata), (fd.gfid, lambda r: r.postbuf))

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        return await self._changed(self.first_child.fallocate(
            fd, mode, offset, length, xdata), (fd.gfid, lambda r: r.postbuf))

    async def discard(self, fd, offset, length, xdata=None):
        return await self._changed(self.first_child.discard(
            fd, offset, length, xdata), (fd.gfid, lambda r: r.postbuf))

    async def zerofill(self, fd, offset, length, xdata=None):
        return await self._changed(self.first_child.zerofill(
            fd, offset, length, xdata), (fd.gfid, lambda r: r.postbuf))

    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags, xdata=None):
        return await self._changed(self.first_child.copy_file_range(
            fd_in, off_in, fd_out, off_out, length, flags, xdata),
            (fd_out.gfid, lambda r: r.postbuf_dst))

    async def setattr(self, loc, stbuf, valid, xdata=None):
        return await self._changed(self.first_child.setattr(
            loc, stbuf, valid, xdata), (loc.gfid, lambda r: r.postbuf))

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        return await self._changed(self.first_child.fsetattr(
            fd, stbuf, valid, xdata), (fd.gfid, lambda r: r.postbuf))

    # xattr changes move the ctime but reply no iatt: the attributes become unknown

    async def setxattr(self, loc, xattrs, flags, xdata=None):
        return await self._changed(self.first_child.setxattr(
            loc, xattrs, flags, xdata), (loc.gfid, _NONE))

    async def fsetxattr(self, fd, xattrs, flags, xdata=None):
        return await self._changed(self.first_child.fsetxattr(
            fd, xattrs, flags, xdata), (fd.gfid, _NONE))

    async def removexattr(self, loc, name, xdata=None):
        return await self._changed(self.first_child.removexattr(
            loc, name, xdata), (loc.gfid, _NONE))

    async def fremovexattr(self, fd, name, xdata=None):
        return await self._changed(self.first_child.fremovexattr(
            fd, name, xdata), (fd.gfid, _NONE))

    # entry changes move the parent's (and a renamed, linked or unlinked
    # inode's) attributes, which a listing of the grandparent may hold -
    # GlusterFS leaves this as a TODO; the replies carry what is needed

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        return await self._changed(self.first_child.create(
            loc, flags, mode, umask, fd, xdata), (loc.pargfid, lambda r: r.postparent))

    async def mknod(self, loc, mode, rdev, umask, xdata=None):
        return await self._changed(self.first_child.mknod(
            loc, mode, rdev, umask, xdata), (loc.pargfid, lambda r: r.postparent))

    async def mkdir(self, loc, mode, umask, xdata=None):
        return await self._changed(self.first_child.mkdir(
            loc, mode, umask, xdata), (loc.pargfid, lambda r: r.postparent))

    async def symlink(self, linkname, loc, umask, xdata=None):
        return await self._changed(self.first_child.symlink(
            linkname, loc, umask, xdata), (loc.pargfid, lambda r: r.postparent))

    async def unlink(self, loc, xflags, xdata=None):
        return await self._changed(self.first_child.unlink(loc, xflags, xdata),
                                   (loc.pargfid, lambda r: r.postparent), (loc.gfid, _NONE))

    async def rmdir(self, loc, xflags, xdata=None):
        return await self._changed(self.first_child.rmdir(loc, xflags, xdata),
                                   (loc.pargfid, lambda r: r.postparent))

    async def link(self, oldloc, newloc, xdata=None):
        return await self._changed(self.first_child.link(oldloc, newloc, xdata),
                                   (newloc.pargfid, lambda r: r.postparent),
                                   (oldloc.gfid, lambda r: r.iatt))

    async def rename(self, oldloc, newloc, xdata=None):
        return await self._changed(self.first_child.rename(oldloc, newloc, xdata),
                                   (oldloc.pargfid, lambda r: r.postoldparent),
                                   (newloc.pargfid, lambda r: r.postnewparent),
                                   (oldloc.gfid, lambda r: r.iatt), (newloc.gfid, _NONE))

    def dump_state(self) -> dict:
        return {"cached_bytes": self._cached, "prefetching": len(self._prefetching),
                "served": self.served, "bypassed": self.bypassed,
                "requests": self.requests}


TRANSLATOR = ReaddirAhead

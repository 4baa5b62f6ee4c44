"""performance/write-behind: writes acknowledged at once, sent behind.

Follows GlusterFS's write-behind (xlators/performance/write-behind): a
write is answered as soon as it is queued ("lied"), and sent to the child
behind the application's back, contiguous small writes of one fd and one
caller aggregated into one write of up to `aggregate-size`.  What a file
may hold in lied, not yet acknowledged bytes is its window (`cache-size`,
GlusterFS's window-size); past it, a write waits until acknowledgements
free it (GlusterFS's temptation list), or goes through when nothing is in
flight to free it.  Per file (the graph's inode table slot, so several fds
of one inode share one order; the inode is held in the table while
anything of it is queued):

* Writes with O_SYNC/O_DSYNC (on the fd or the call) are never delayed;
  O_DIRECT ones are not when `strict-O_DIRECT` is on.  They still wait for
  earlier overlapping behind writes, and later overlapping writes wait for
  them: two overlapping writes are never in flight at once.
* A fop that depends on the file's data or size waits for the earlier
  behind writes it depends on ("a read sees the writes before it"): readv
  (the overlapping ones), and stat, fstat, lookup, setattr/fsetattr,
  truncate/ftruncate, fallocate/discard/zerofill, copy_file_range, seek,
  rchecksum, lk, link, rename and unlink of the inode, open with O_TRUNC
  (all of them).  A write's range starts at the file's known size when it
  lies past it, so a read of the hole it leaves waits for it too.  stat
  answers therefore reflect the behind writes, as GlusterFS's do.
* A behind write that fails is kept and retried whenever a fop of the file
  arrives (as GlusterFS's queue processing does).  A read or data change
  that overlaps it and finds it failed again fails with its error
  (GlusterFS's failed conflict); flush and fsync retry it and return its
  error; flush (and fsync unless `resync-failed-syncs-after-fsync`) then
  forget it.  A failed write dropped unreported (release, unmount) leaves
  its error on the inode for the next flush or fsync: no write error is
  silently lost.
* `flush-behind`: once the writes before it are settled, a flush is sent
  in the background and answered at once; fops of the inode that need it
  done (lk, release, later writes) wait for it.
* While the child is down (from CHILD_DOWN, or a behind write's ENOTCONN,
  until CHILD_UP or a write that goes through), writes and flushes go
  through, so their ENOTCONN comes back at once and close(2) returns the
  flush's error (GlusterFS lies regardless).
* `trickling-writes`: a write is sent at once when nothing of the file is
  in flight, so aggregation only happens while the child is busy;
  `strict-write-ordering` makes every write wait for all earlier ones.
* release waits for the fd's behind writes; fini sends and waits for all.
* No task per behind write: the requests due go to a queue that sender
  tasks of the translator drain, as GlusterFS winds them from whichever
  thread made them due (wb_process_queue) with no thread of its own.  A
  sender is started when a request finds none parked (a write stuck on
  one brick holds no other file's), and up to `SENDERS` are kept, parked,
  for the next.  A file has at most `FILE_SENDS` requests in flight; the
  rest of its due ones wait in its own queue for the sender that finishes
  one (departure: GlusterFS winds every due request at once, bounded only
  by the window; an unbounded number in flight needs as many tasks).  A
  trio task started per write was 13% of a FUSE mount's samples on writes.

Departures from GlusterFS, and why: O_APPEND writes are not delayed (an
append's offset is only known at the brick, and gfapi follows its reply's
post-size as the fd's offset); writev replies of lied writes carry no
iatts (GlusterFS sends zeroed ones; a cache above must take a write reply
without postbuf as "attributes unknown"); a background flush that fails is only
logged (GlusterFS drops it too); readdirp entries of a file with behind
writes are re-stat'ed after they land instead of being stripped of their
stat (glusterpy's FUSE bridge skips stat-less entries); flush and fsync are
sent even when they report an earlier write's error (GlusterFS does not
wind them, and a flush not sent leaves the closer's POSIX locks held).
"""

from __future__ import annotations

import errno
import os
from collections import deque
from dataclasses import dataclass, field

import trio

from glusterpy import fops
from glusterpy.fops import Fd, FopError, Loc, PrePostReply, Reply, WriteReply
from glusterpy.options import Option, OptionError, OptionType, validate
from glusterpy.xlator import Event, Translator

INF = 1 << 63
#: overlap checks index requests by 4 KiB block; a request spanning more
#: blocks than this (a flush, a write past the end of file) is checked one
#: by one
BLOCK_SHIFT, WIDE_BLOCKS, WIDE = 12, 40, -2
QUEUED, INFLIGHT, FAILED = 0, 1, 2
WRITE, SYNC, FLUSH = 0, 1, 2
#: idle senders kept parked for the next requests due (the FUSE mount serves
#: 16 requests at a time); more run while more are due, then end
SENDERS = 16
#: requests of one file in flight below at once (4 aggregated writes of
#: 128 KiB: half the default window); its other due requests wait, counted in
#: its transit already, so the window and trickling see them as sent
FILE_SENDS = 4


class _Req:
    """One queued write (lied or sync) or background flush."""

    __slots__ = ("kind", "fd", "offset", "data", "flags", "caller", "seq", "start", "end",
                 "state", "errno", "go", "lied", "b0", "b1")

    def __init__(self, kind: int, fd: Fd, offset: int, data, flags: int, caller,
                 seq: int, start: int, end: int, state: int):
        self.kind = kind
        self.fd = fd
        self.offset = offset
        self.data = data
        self.flags = flags
        self.caller = caller
        self.seq = seq
        #: the range later fops order against: [start, end)
        self.start = start
        self.end = end
        self.state = state
        self.errno = 0
        #: sent as soon as nothing earlier overlaps it (no more aggregation)
        self.go = False
        #: bytes acknowledged to the application: what it holds of the window
        self.lied = 0
        #: the blocks it covers in _WbInode.blocks (-1: none yet); b1 == WIDE:
        #: in _WbInode.wide instead
        self.b0 = self.b1 = -1


@dataclass(slots=True)
class _WbInode:
    """What write-behind keeps of one file: its queue, in arrival order."""

    pending: list[_Req] = field(default_factory=list)
    queue: list[_Req] = field(default_factory=list)      # the QUEUED ones, in order
    blocks: dict[int, int] = field(default_factory=dict)  # block -> requests on it
    wide: list[_Req] = field(default_factory=list)
    window: int = 0          # lied bytes not yet acknowledged by the child
    transit: int = 0         # bytes being written below
    size: int = 0            # the size once every queued write lands (0: unknown)
    seq: int = 0
    error: int = 0           # an error dropped unreported, for the next flush/fsync
    failed: int = 0          # requests FAILED, waiting for a retry
    event: trio.Event | None = None
    inode: object = None     # the table's inode, ref'ed while anything is queued
    sending: int = 0         # its requests with a sender (at most FILE_SENDS)
    due: deque = field(default_factory=deque)  # INFLIGHT ones waiting for a sender

    def wait(self):
        if self.event is None:
            self.event = trio.Event()
        return self.event.wait()

    def wake(self) -> None:
        if self.event is not None:
            self.event.set()
            self.event = None


class WriteBehind(Translator):
    SKIP_DEFAULT_FOPS = True  # its default fops only wind
    # GlusterFS's performance.nfs.* keys set the same options in its gNFS
    # server's graph; glusterpy has none, so they are not taken here (they
    # would change every client's write-behind instead)
    OPTIONS = (
        Option("write-behind", OptionType.BOOL, "off", "enable/disable write-behind"),
        Option("pass-through", OptionType.BOOL, "false",
               "Enable/disable write-behind pass-through",
               set_keys=("performance.write-behind-pass-through",)),
        Option("flush-behind", OptionType.BOOL, "on",
               "If this option is set ON, instructs write-behind translator to perform "
               "flush in background, by returning success (or any errors, if any of "
               "previous writes were failed) to application even before flush FOP is "
               "sent to backend filesystem.",
               set_keys=("performance.flush-behind",)),
        Option("cache-size", OptionType.SIZE, "1MB",
               "Size of the write-behind buffer for a single file (inode).",
               min=512 << 10, max=1 << 30, aliases=("window-size",),
               set_keys=("performance.write-behind-window-size",)),
        Option("trickling-writes", OptionType.BOOL, "on",
               "Send a write at once when nothing of the file is in flight "
               "(aggregation then happens only while the brick is busy).",
               set_keys=("performance.write-behind-trickling-writes",)),
        Option("strict-O_DIRECT", OptionType.BOOL, "off",
               "This option when set to off, ignores the O_DIRECT flag.",
               set_keys=("performance.strict-o-direct",)),
        Option("strict-write-ordering", OptionType.BOOL, "off",
               "Do not let later writes overtake earlier writes even if they do not overlap",
               set_keys=("performance.strict-write-ordering",)),
        Option("resync-failed-syncs-after-fsync", OptionType.BOOL, "off",
               "If sync of \"cached-writes issued before fsync\" (to backend) fails, this "
               "option configures whether to retry syncing them after fsync or forget "
               "them. If set to on, cached-writes are retried till a \"flush\" fop (or a "
               "successful sync) on sync failures. fsync itself is failed irrespective "
               "of the value of this option.",
               set_keys=("performance.resync-failed-syncs-after-fsync",)),
        Option("aggregate-size", OptionType.SIZE, "128KB",
               "Will aggregate writes until data of specified size is fully filled for a "
               "single file provided there are no dependent fops on cached writes.",
               min=4096, max=1 << 30, set_keys=("performance.aggregate-size",)),
    )

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self._check(self.opts)
        self.options_changed(self.opts)
        #: the child said CHILD_DOWN: write through, so the caller gets the
        #: ENOTCONN at once instead of at close
        self._down = False
        self.sent = 0      # writes sent below (after aggregation), for tests and dumps
        self.lied = 0      # writes acknowledged before they were sent
        #: requests due, for the senders; the senders alive, and those parked
        self._due: deque[tuple[_WbInode, _Req]] = deque()
        self._senders = 0
        self._idle = trio.lowlevel.ParkingLot()
        #: files with writes queued (their inode ref'd) and files holding a
        #: dropped write's error: while both are 0, no listed entry can be
        #: one readdirp must refresh, and the listing is passed up untouched
        self._queued_files = 0
        self._failed_files = 0

    @staticmethod
    def _check(opts) -> None:
        # GlusterFS's init refuses the same (aggregate-size > window-size)
        if opts.aggregate_size > opts.cache_size:
            raise OptionError("aggregate-size",
                              f"option 'aggregate-size' ({opts.aggregate_size}) cannot be "
                              f"more than 'cache-size' ({opts.cache_size})")

    def reconfigure(self, options) -> None:
        self._check(validate(self.OPTIONS, options))
        super().reconfigure(options)

    def options_changed(self, old) -> None:
        # read on every write: plain attributes, not OptionValues lookups
        opts = self.opts
        self._window, self._aggregate = opts.cache_size, opts.aggregate_size
        self._sync_flags = os.O_SYNC | os.O_DSYNC | os.O_APPEND
        if opts.strict_O_DIRECT:
            self._sync_flags |= os.O_DIRECT
        self._pass = opts.pass_through

    def notify(self, event, source, data=None) -> None:
        if event == Event.CHILD_DOWN:
            self._down = True
        elif event == Event.CHILD_UP:
            self._down = False
        super().notify(event, source, data)

    # -- the queue --------------------------------------------------------------

    def _ws(self, gfid) -> _WbInode:
        ws = self.itable.peek_ctx(self, gfid)
        if ws is None:
            ws = _WbInode()
            self.itable.set_ctx(self, gfid, ws)
        return ws

    def _active(self, gfid) -> _WbInode | None:
        """The file's state if anything of it is queued, else None."""
        ws = self.itable.peek_ctx(self, gfid) if gfid is not None else None
        return ws if ws is not None and (ws.pending or ws.error) else None

    def _enqueue(self, ws: _WbInode, gfid, req: _Req) -> None:
        if not ws.pending:
            # keep the inode (and this slot) in the table while data is queued:
            # the kernel's forget or the LRU must not lose the order
            ws.inode = self.itable.ref(gfid)
            self._queued_files += 1
        ws.pending.append(req)
        if req.state == QUEUED:
            ws.queue.append(req)
        ws.seq += 1
        self._index(ws, req, req.start, req.end)

    @staticmethod
    def _index(ws: _WbInode, req: _Req, start: int, end: int) -> None:
        """Count [start, end) of `req` (new, or grown at its end) in the
        overlap index."""
        if req.b1 == WIDE:
            return
        b0 = start >> BLOCK_SHIFT if req.b0 < 0 else req.b0
        b1 = (max(end, start + 1) - 1) >> BLOCK_SHIFT
        if b1 - b0 > WIDE_BLOCKS:
            WriteBehind._unindex(ws, req)
            req.b0, req.b1 = 0, WIDE
            ws.wide.append(req)
            return
        blocks = ws.blocks
        for b in range(max(b0, req.b1 + 1), b1 + 1):
            blocks[b] = blocks.get(b, 0) + 1
        req.b0, req.b1 = b0, b1

    @staticmethod
    def _unindex(ws: _WbInode, req: _Req) -> None:
        if req.b1 == WIDE:
            ws.wide.remove(req)
        elif req.b0 >= 0:
            blocks = ws.blocks
            for b in range(req.b0, req.b1 + 1):
                n = blocks[b] - 1
                if n:
                    blocks[b] = n
                else:
                    del blocks[b]
        req.b0 = req.b1 = -1

    @staticmethod
    def _overlaps_earlier(ws: _WbInode, req: _Req) -> bool:
        """Does a request that arrived before `req` overlap it?"""
        start, end, seq = req.start, req.end, req.seq
        for w in ws.wide:
            if w.seq < seq and w.start < end and start < w.end:
                return True
        if req.b1 != WIDE:
            blocks = ws.blocks
            if all(blocks[b] == 1 for b in range(req.b0, req.b1 + 1)):
                return False  # nothing else on its blocks
        return any(e.seq < seq and e.start < end and start < e.end
                   for e in ws.pending if e is not req)

    def _remove(self, ws: _WbInode, req: _Req) -> None:
        pending = ws.pending
        if pending and pending[0] is req:
            del pending[0]
        else:
            pending.remove(req)
        if req.state == QUEUED:
            ws.queue.remove(req)
        elif req.state == FAILED:
            ws.failed -= 1
        self._unindex(ws, req)
        ws.window -= req.lied
        if not pending and ws.inode is not None:
            self.itable.unref(ws.inode)
            ws.inode = None
            self._queued_files -= 1

    def _kick(self, ws: _WbInode) -> None:
        """Send every queued request that may go: ready (go, or trickling
        with nothing in flight) and overlapping nothing earlier."""
        if not ws.queue:
            return
        trickle = self.opts.trickling_writes
        strict = self.opts.strict_write_ordering
        waiting = []
        for req in ws.queue:
            if (req.go or (trickle and not ws.transit)) \
                    and not (ws.pending[0] is not req if strict
                             else self._overlaps_earlier(ws, req)):
                req.state = INFLIGHT
                req.go = True
                ws.transit += len(req.data)
                self.sent += 1
                self._post(ws, req)
            else:
                waiting.append(req)
        ws.queue = waiting

    def _post(self, ws: _WbInode, req: _Req) -> None:
        """Hand a request (INFLIGHT already) to a sender: a parked one, else
        a new one (never a wait for a busy one: a write stuck on one brick
        must not hold another file's)."""
        if ws.sending >= FILE_SENDS:
            ws.due.append(req)
            return
        ws.sending += 1
        self._due.append((ws, req))
        if self._idle:
            self._idle.unpark()
        else:
            assert self.nursery is not None
            self._senders += 1
            # the sender runs in a copy of this task's context, as the task
            # per request did; _send sets the one variable that differs per
            # request (the writer's identity)
            self.nursery.start_soon(self._sender)

    async def _sender(self) -> None:
        due = self._due
        try:
            while True:
                while due:
                    ws, req = due.popleft()
                    while True:
                        await self._send(ws, req)
                        if not ws.due:
                            break
                        req = ws.due.popleft()  # the file's next, on this sender
                    ws.sending -= 1
                if self._senders > SENDERS:
                    return  # a burst's extra sender: not kept
                await self._idle.park()
        finally:
            # the graph's nursery cancelled it (after fini drained every
            # queue): a graph run again starts its senders anew
            self._senders -= 1

    async def _send(self, ws: _WbInode, req: _Req) -> None:
        fops.caller.set(req.caller)  # the writer's identity, not whoever kicked
        size = len(req.data)
        try:
            if req.kind == FLUSH:
                await self.first_child.flush(req.fd, None)
            else:
                await self._write_all(ws, req)
        except FopError as e:
            err = e.errno
        except Exception:
            self.log.exception("behind write of %s failed", req.fd.gfid)
            err = errno.EIO
        else:
            err = 0
        ws.transit -= size
        if err and req.kind == WRITE:
            self.log.warning("behind write of %d bytes at %d to %s failed: %s",
                             len(req.data), req.offset, req.fd.gfid, os.strerror(err))
            req.state, req.errno = FAILED, err
            ws.failed += 1
            if err == errno.ENOTCONN:
                self._down = True  # CHILD_DOWN may still be on its way
        else:
            if err:
                self.log.warning("background flush of %s failed: %s",
                                 req.fd.gfid, os.strerror(err))
            self._remove(ws, req)
        self._kick(ws)
        ws.wake()

    async def _write_all(self, ws: _WbInode, req: _Req) -> None:
        """One write below; a short write is resumed where it stopped."""
        while True:
            reply = await self.first_child.writev(req.fd, req.data, req.offset, req.flags, None)
            if reply.postbuf is not None:
                ws.size = max(ws.size, reply.postbuf.size)
            if reply.count >= len(req.data):
                return
            if reply.count <= 0:
                raise FopError(errno.EIO, "write made no progress")
            req.data = req.data[reply.count:]
            req.offset += reply.count

    async def _settle(self, ws: _WbInode, lo: int = 0, hi: int = INF, fail: bool = False,
                      mine=None, mark: int | None = None) -> None:
        """Wait until no request that arrived before this call (before
        `mark`) and overlaps [lo, hi) (or, with `mine`, that it picks) is
        queued or in flight.  A failed one overlapping raises its error when
        `fail`; one stuck behind a failed one (it may not overtake it) does
        not hold the wait: only a flush or fsync unsticks it."""
        mark = ws.seq if mark is None else mark
        self._retry(ws, ws.pending)
        while True:
            busy = False
            stuck: list[_Req] = []
            for req in ws.pending:
                if req.seq >= mark:
                    break
                if req.state == FAILED:
                    if fail and req.start < hi and lo < req.end:
                        raise FopError(req.errno, "an earlier write-behind write failed: "
                                                  + os.strerror(req.errno))
                    stuck.append(req)
                    continue
                if req.state == QUEUED and any(f.start < req.end and req.start < f.end
                                               for f in stuck):
                    stuck.append(req)
                    continue
                if (req.start < hi and lo < req.end) if mine is None else mine(req):
                    busy = True
                    req.go = True
            if not busy:
                return
            self._kick(ws)
            await ws.wait()

    async def _barrier(self, ws: _WbInode, forget: bool) -> int:
        """flush/fsync: retry the failed writes before it once, wait for every
        earlier write, and return the first error (0 if none); failed ones
        are dropped when `forget`, else kept for the next retry."""
        mark = ws.seq
        self._retry(ws, [r for r in ws.pending if r.seq < mark])
        err = 0
        while True:
            await self._settle(ws, mark=mark)
            failed = [r for r in ws.pending if r.seq < mark and r.state == FAILED]
            if not failed:
                break
            err = err or failed[0].errno
            if not forget:
                break
            for req in failed:
                self._remove(ws, req)
            self._kick(ws)  # writes stuck behind them may go now
        if ws.error:
            err, ws.error = err or ws.error, 0
            self._failed_files -= 1
        return err

    @staticmethod
    def _retry(ws: _WbInode, reqs: list[_Req]) -> None:
        """Queue failed writes again (GlusterFS retries them whenever a fop
        of the file arrives, until a flush or fsync reports them)."""
        if not ws.failed:
            return
        for req in reqs:
            if req.state == FAILED:
                req.state, req.go = QUEUED, True
                ws.queue.append(req)
                ws.failed -= 1
        ws.queue.sort(key=lambda r: r.seq)

    # -- writes -----------------------------------------------------------------------

    async def writev(self, fd, data, offset, flags, xdata=None):
        n = len(data)
        ws = self._ws(fd.gfid)
        if n == 0 or xdata or offset < 0 or (fd.flags | flags) & self._sync_flags or self._pass \
                or self._down:
            return await self._write_through(ws, fd, data, offset, flags, xdata)
        if ws.failed:
            self._retry(ws, ws.pending)
        while ws.window >= self._window:
            # the window is full: wait for acknowledgements (GlusterFS's
            # temptation list), sending whatever still waits for company
            for req in ws.queue:
                req.go = True
            self._kick(ws)
            if not ws.transit:  # nothing will free it but a flush (failed writes)
                return await self._write_through(ws, fd, data, offset, flags, xdata)
            await ws.wait()
        end = offset + n
        caller = fops.caller.get()
        pending = ws.pending
        last = pending[-1] if pending else None
        if last is not None and last.state == QUEUED and not last.go and last.kind == WRITE:
            if last.fd is fd and last.offset + len(last.data) == offset \
                    and len(last.data) + n <= self._aggregate \
                    and (last.caller is caller or last.caller == caller):
                if isinstance(last.data, bytes):
                    last.data = bytearray(last.data)
                last.data += data
                if end > last.end:
                    self._index(ws, last, last.end, end)
                    last.end = end
                last.lied += n
                ws.window += n
                ws.size = max(ws.size, end)
                self.lied += 1
                if len(last.data) >= self._aggregate:
                    last.go = True
                    self._kick(ws)
                return WriteReply(count=n)
            last.go = True  # not contiguous: it has waited for company long enough
        req = _Req(WRITE, fd, offset, data if isinstance(data, bytes) else bytes(data),
                   flags, caller, ws.seq, min(offset, ws.size), end, QUEUED)
        req.lied = n
        ws.window += n
        ws.size = max(ws.size, end)
        self._enqueue(ws, fd.gfid, req)
        self.lied += 1
        self._kick(ws)
        return WriteReply(count=n)

    async def _write_through(self, ws, fd, data, offset, flags, xdata):
        if (fd.flags | flags) & os.O_APPEND:
            start, end = 0, INF  # lands at an end only the brick knows
        else:
            start, end = min(offset, ws.size), offset + len(data)
        await self._settle(ws, start, end, fail=True)
        # in the queue while it runs: no later overlapping write overtakes it
        req = _Req(SYNC, fd, offset, b"", flags, None, ws.seq, start, end, INFLIGHT)
        self._enqueue(ws, fd.gfid, req)
        try:
            reply = await self.first_child.writev(fd, data, offset, flags, xdata)
        finally:
            self._remove(ws, req)
            self._kick(ws)
            ws.wake()
        self._down = False  # evidently reachable again
        if reply.postbuf is not None and not ws.pending:
            ws.size = reply.postbuf.size
        else:
            ws.size = max(ws.size, offset + len(data))
        return reply

    # -- flush, fsync, release ----------------------------------------------------

    async def flush(self, fd, xdata=None):
        ws = self._active(fd.gfid)
        err = await self._barrier(ws, forget=True) if ws is not None else 0
        if self.opts.flush_behind and not self.opts.pass_through and not self._down:
            ws = self._ws(fd.gfid)
            req = _Req(FLUSH, fd, 0, b"", 0, fops.caller.get(), ws.seq, 0, INF, INFLIGHT)
            self._enqueue(ws, fd.gfid, req)
            self._post(ws, req)
            reply = Reply()
        else:
            reply = await self.first_child.flush(fd, xdata)
        if err:
            raise FopError(err, "an earlier write-behind write failed: " + os.strerror(err))
        return reply

    async def fsync(self, fd, datasync, xdata=None):
        ws = self._active(fd.gfid)
        if ws is None:
            return await self.first_child.fsync(fd, datasync, xdata)
        err = await self._barrier(ws, forget=not self.opts.resync_failed_syncs_after_fsync)
        reply = await self.first_child.fsync(fd, datasync, xdata)
        if err:
            raise FopError(err, "an earlier write-behind write failed: " + os.strerror(err))
        return reply

    async def release(self, fd, xdata=None):
        ws = self._active(fd.gfid)
        if ws is not None and any(r.fd is fd for r in ws.pending):
            await self._drain(ws, lambda r: r.fd is fd)
        return await self.first_child.release(fd, xdata)

    async def fini(self) -> None:
        for _gfid, ws in self.itable.contexts(self):
            if ws.pending:
                await self._drain(ws, lambda r: True)

    async def _drain(self, ws: _WbInode, mine) -> None:
        """Send and wait for every request `mine` picks (an fd going, the
        graph stopping); what still fails after a retry, or stays stuck
        behind such a write, is dropped - its error left on the inode for
        the next flush or fsync."""
        self._retry(ws, list(ws.pending))
        for attempt in range(2):
            await self._settle(ws, mine=mine)
            err = 0
            for req in [r for r in ws.pending if r.state == FAILED]:
                err = err or req.errno
                if mine(req):
                    self._drop(ws, req, req.errno)
            left = [r for r in ws.pending if mine(r)]
            if not left:
                break
            if attempt:  # stuck behind another fd's failed write: give up on them
                for req in left:
                    self._drop(ws, req, err or errno.EIO)
            self._kick(ws)  # those stuck behind the dropped ones may go now
        ws.wake()

    def _drop(self, ws: _WbInode, req: _Req, err: int) -> None:
        self.log.error("dropping a behind write of %d bytes at %d to %s that cannot be "
                       "written (%s); the next flush or fsync reports it", len(req.data),
                       req.offset, req.fd.gfid, os.strerror(err))
        if not ws.error:
            self._failed_files += 1
        ws.error = ws.error or err
        self._remove(ws, req)

    # -- fops that depend on the file's data or size -----------------------------

    async def _wait(self, gfid, fail: bool = False, lo: int = 0, hi: int = INF) -> None:
        ws = self._active(gfid)
        if ws is not None:
            await self._settle(ws, lo, hi, fail)

    def _observe(self, iatt) -> None:
        """A reply showed the file's size (after the writes before it)."""
        if iatt is None:
            return
        ws = self.itable.peek_ctx(self, iatt.gfid)
        if ws is not None:
            ws.size = iatt.size if not ws.pending else max(ws.size, iatt.size)

    async def readv(self, fd, size, offset, flags, xdata=None):
        ws = self._active(fd.gfid)
        if ws is not None:
            await self._settle(ws, offset, offset + max(size, 1), fail=True)
        return await self.first_child.readv(fd, size, offset, flags, xdata)

    async def lookup(self, loc, xdata=None):
        await self._wait(loc.gfid)
        reply = await self.first_child.lookup(loc, xdata)
        gfid = reply.iatt.gfid
        if gfid != loc.gfid and self._active(gfid) is not None:
            # found by name with writes still behind: ask again once they landed
            await self._wait(gfid)
            reply = await self.first_child.lookup(loc, xdata)
        self._observe(reply.iatt)
        return reply

    async def stat(self, loc, xdata=None):
        await self._wait(loc.gfid)
        reply = await self.first_child.stat(loc, xdata)
        self._observe(reply.iatt)
        return reply

    async def fstat(self, fd, xdata=None):
        await self._wait(fd.gfid)
        reply = await self.first_child.fstat(fd, xdata)
        self._observe(reply.iatt)
        return reply

    async def readdirp(self, fd, size, offset, xdata=None):
        reply = await self.first_child.readdirp(fd, size, offset, xdata)
        if not (self._queued_files or self._failed_files):
            return reply  # every file's state is idle: no entry to refresh
        for entry, ws in self.itable.listed_held(self, reply.entries):
            # only a file with writes queued has a state with pending or error
            if ws.pending or ws.error:
                # its stat predates the writes behind: ask again once they landed
                await self._wait(entry.iatt.gfid)
                try:
                    entry.iatt = (await self.first_child.stat(
                        Loc(gfid=entry.iatt.gfid), None)).iatt
                except FopError:
                    pass
        return reply

    async def setattr(self, loc, stbuf, valid, xdata=None):
        await self._wait(loc.gfid)
        return await self.first_child.setattr(loc, stbuf, valid, xdata)

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        await self._wait(fd.gfid)
        return await self.first_child.fsetattr(fd, stbuf, valid, xdata)

    def _resized(self, reply: PrePostReply) -> PrePostReply:
        self._observe(reply.postbuf)
        return reply

    async def truncate(self, loc, offset, xdata=None):
        await self._wait(loc.gfid, fail=True)
        return self._resized(await self.first_child.truncate(loc, offset, xdata))

    async def ftruncate(self, fd, offset, xdata=None):
        await self._wait(fd.gfid, fail=True)
        return self._resized(await self.first_child.ftruncate(fd, offset, xdata))

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        await self._wait(fd.gfid, fail=True)
        return self._resized(await self.first_child.fallocate(
            fd, mode, offset, length, xdata))

    async def discard(self, fd, offset, length, xdata=None):
        await self._wait(fd.gfid, fail=True)
        return self._resized(await self.first_child.discard(
            fd, offset, length, xdata))

    async def zerofill(self, fd, offset, length, xdata=None):
        await self._wait(fd.gfid, fail=True)
        return self._resized(await self.first_child.zerofill(
            fd, offset, length, xdata))

    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags, xdata=None):
        await self._wait(fd_in.gfid, True, off_in, off_in + max(length, 1))
        await self._wait(fd_out.gfid, fail=True)
        reply = await self.first_child.copy_file_range(
            fd_in, off_in, fd_out, off_out, length, flags, xdata)
        if reply.postbuf_dst is not None:
            self._observe(reply.postbuf_dst)
        return reply

    async def seek(self, fd, offset, what, xdata=None):
        await self._wait(fd.gfid)
        return await self.first_child.seek(fd, offset, what, xdata)

    async def rchecksum(self, fd, offset, length, xdata=None):
        await self._wait(fd.gfid, True, offset, offset + max(length, 1))
        return await self.first_child.rchecksum(fd, offset, length, xdata)

    async def lk(self, fd, cmd, flock, xdata=None):
        # a lock handed over must cover what its last holder wrote (and a
        # flush-behind's unlock must have reached the locks translator)
        await self._wait(fd.gfid)
        return await self.first_child.lk(fd, cmd, flock, xdata)

    async def open(self, loc, flags, fd, xdata=None):
        truncating = flags & os.O_TRUNC and flags & os.O_ACCMODE != os.O_RDONLY
        if truncating:
            await self._wait(loc.gfid, fail=True)
        reply = await self.first_child.open(loc, flags, fd, xdata)
        if truncating:
            ws = self.itable.peek_ctx(self, loc.gfid)
            if ws is not None and not ws.pending:
                ws.size = 0
        return reply

    async def link(self, oldloc, newloc, xdata=None):
        await self._wait(oldloc.gfid)
        return await self.first_child.link(oldloc, newloc, xdata)

    async def rename(self, oldloc, newloc, xdata=None):
        await self._wait(oldloc.gfid)
        return await self.first_child.rename(oldloc, newloc, xdata)

    async def unlink(self, loc, xflags, xdata=None):
        await self._wait(loc.gfid)
        return await self.first_child.unlink(loc, xflags, xdata)

    # -- the inode table's hooks ------------------------------------------------------

    def inode_busy(self, ctx) -> bool:
        return bool(ctx.pending)

    def forget(self, inode) -> None:
        if inode.ctx[self].error:  # its error goes with the inode (never queued: not busy)
            self._failed_files -= 1

    def dump_state(self) -> dict:
        files = [ws for _, ws in self.itable.contexts(self)]
        return {"files": len(files), "queued": sum(len(ws.pending) for ws in files),
                "window": sum(ws.window for ws in files),
                "transit": sum(ws.transit for ws in files),
                "sent": self.sent, "lied": self.lied, "senders": self._senders,
                "queued_files": self._queued_files, "failed_files": self._failed_files}


TRANSLATOR = WriteBehind

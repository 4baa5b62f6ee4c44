"""performance/open-behind: acknowledge an open at once, open on the brick later.

Follows GlusterFS's open-behind (xlators/performance/open-behind, the
GlusterFS 9+ design): the first open of a file that has no other open fd
here is answered at once and kept pending; the real open is wound only when
a fop needs it.  With quick-read above it, open+read+close of a small file
then costs no request beyond the lookup.

* Which opens wait: every open without O_TRUNC (an O_TRUNC open changes the
  file and is always wound at once), and only while no other fd of the file
  is open here.  A second open of the same file first opens the pending one
  and then goes down itself; so does a create.  `lazy-open` off sends the
  pending open in the background right after the reply.
* What opens it (GlusterFS's `trigger`): every fd fop except flush - writev,
  fsync, lk, ftruncate, f*xattr*, finodelk, fentrylk, fsetattr, fallocate,
  discard, zerofill, and (beyond GlusterFS's list, because glusterpy's
  protocol/client cannot send a never-opened fd) rchecksum, copy_file_range
  and any other fd fop; readv when `read-after-open` is on or
  `use-anonymous-fd` off; fstat and seek when `use-anonymous-fd` is off.
  Inode fops that must see the file open first open the pending fds of
  their inode: unlink and rename (so the file stays readable through them
  after its name is gone, as posix keeps unlinked open files), setattr and
  setxattr (except ACL and SELinux keys).  Where the fop names its target
  only by parent and name (the FUSE bridge does) every pending open is sent
  - they are few (files open here, each opened at most once).
* With `use-anonymous-fd` on, the reads that do not trigger (readv with
  `read-after-open` off, fstat, seek) go on an anonymous fd: a second Fd of
  the file never opened here (storage/posix opens it on demand); if the
  layer below refuses it (EBADFD) the real open is made instead.
* flush of a still-pending fd answers at once (nothing below saw the fd);
  release of a pending fd winds nothing.
* Errors of the deferred open are returned by the fop that triggered it and
  by every later fop on that fd, as GlusterFS keeps the errno in the fd ctx.
  The deferred open runs under the caller identity of the original open.

State: `fd.ctx[self]` per fd (the pending open), and a per-inode record in
the graph's inode table (open fds here, the pending fd), dropped when the
last fd closes.  Waiting for an open that another fop started is the only
suspension beyond awaiting the child, so FOPS_NEVER_SUSPEND is False.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Any

import trio

from glusterpy import fops
from glusterpy.fops import Fd, FopError, OpenReply, Reply
from glusterpy.keys import ACL_ACCESS_KEY, ACL_DEFAULT_KEY, SELINUX_KEY
from glusterpy.options import Option, OptionType
from glusterpy.xlator import Translator

_PENDING, _OPENING, _OPEN, _FAILED = range(4)


class _ObFd:
    """A deferred open (GlusterFS's first_fd with its open stub)."""

    __slots__ = ("loc", "flags", "xdata", "caller", "state", "errno", "opened", "anon")

    def __init__(self, loc, flags, xdata, caller):
        self.loc, self.flags, self.xdata, self.caller = loc, flags, xdata, caller
        self.state = _PENDING
        self.errno = 0
        self.opened: trio.Event | None = None
        self.anon: Fd | None = None


@dataclass(slots=True)
class _ObInode:
    open_count: int = 0
    first: Fd | None = None     # the fd whose open is still pending


#: fops with an fd that open-behind handles itself; every other fd fop opens
#: the pending fd first
_OWN_FD_FOPS = {"open", "create", "opendir", "readv", "fstat", "seek", "flush", "release",
                "releasedir"}


class OpenBehind(Translator):
    SKIP_DEFAULT_FOPS = True  # its default fops only wind
    OPTIONS = (
        Option("use-anonymous-fd", OptionType.BOOL, "no",
               "For read operations, use anonymous FD when original FD is open-behind "
               "and not yet opened in the backend."),
        Option("lazy-open", OptionType.BOOL, "yes",
               "Perform open in the backend only when a necessary FOP arrives (e.g writev "
               "on the FD, unlink of the file). When option is disabled, perform backend "
               "open right after unwinding open().",
               set_keys=("performance.lazy-open",)),
        Option("read-after-open", OptionType.BOOL, "yes",
               "read is sent only after actual open happens and real fd is obtained, "
               "instead of doing on anonymous fd (similar to write)",
               set_keys=("performance.read-after-open",)),
        Option("pass-through", OptionType.BOOL, "false",
               "Enable/Disable open behind translator",
               set_keys=("performance.open-behind-pass-through",)),
    )

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self._pending = 0      # fds whose open has not been sent yet
        self.deferred = self.triggered = self.cancelled = 0

    # -- open, create, release --------------------------------------------------------

    async def open(self, loc, flags, fd, xdata=None):
        gfid = loc.gfid if loc.gfid is not None else fd.gfid
        if self.opts.pass_through or gfid is None:
            return await self.first_child.open(loc, flags, fd, xdata)
        record = self._record(gfid)
        record.open_count += 1
        if flags & os.O_TRUNC or record.open_count > 1:
            # another fd is open here (or this open changes the file): the
            # pending one goes first, then this one, synchronously
            try:
                await self._open_pending_of(gfid)
                reply = await self.first_child.open(loc, flags, fd, xdata)
            except BaseException:
                self._closed(gfid, fd)
                raise
            fd.ctx[self] = None   # counted: release uncounts it
            return reply
        if fd.gfid is None:
            fd.gfid = gfid
        ob = fd.ctx[self] = _ObFd(loc, flags, xdata, fops.caller.get())
        record.first = fd
        self._pending += 1
        self.deferred += 1
        if not self.opts.lazy_open and self.nursery is not None:
            self.spawn(self._background_open, fd, ob)
        return OpenReply(fd)

    async def _background_open(self, fd: Fd, ob: _ObFd) -> None:
        try:
            await self._ensure_open(fd)
        except FopError:
            pass  # kept in the fd: the next fop on it returns it

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        reply = await self.first_child.create(loc, flags, mode, umask, fd, xdata)
        if not self.opts.pass_through:
            # counted, so that a later open of the file goes down at once
            self._record(reply.iatt.gfid).open_count += 1
            fd.ctx[self] = None
        return reply

    async def release(self, fd, xdata=None):
        if self not in fd.ctx:
            return await self.first_child.release(fd, xdata)
        ob = fd.ctx.pop(self)
        self._closed(fd.gfid, fd)
        if ob is not None:
            if ob.anon is not None:
                await self.first_child.release(ob.anon, None)
            if ob.state == _OPENING and ob.opened is not None:
                await ob.opened.wait()
            if ob.state in (_PENDING, _FAILED, _OPENING):
                if ob.state == _PENDING:
                    self._pending -= 1
                    self.cancelled += 1
                return Reply()  # nothing below ever saw this fd open
        return await self.first_child.release(fd, xdata)

    async def flush(self, fd, xdata=None):
        ob = fd.ctx.get(self)
        if ob is not None and ob.state != _OPEN:
            if ob.state == _PENDING:
                return Reply()  # GlusterFS: nothing to flush on a fd never opened
            await self._ensure_open(fd)
        return await self.first_child.flush(fd, xdata)

    # -- reads that may go on an anonymous fd ----------------------------------------------

    async def readv(self, fd, size, offset, flags, xdata=None):
        trigger = self.opts.read_after_open or not self.opts.use_anonymous_fd
        target = await self._fd_for(fd, trigger)
        try:
            return await self.first_child.readv(target, size, offset, flags, xdata)
        except FopError as e:
            if target is fd or e.errno != errno.EBADFD:
                raise
        await self._ensure_open(fd)
        return await self.first_child.readv(fd, size, offset, flags, xdata)

    async def fstat(self, fd, xdata=None):
        target = await self._fd_for(fd, not self.opts.use_anonymous_fd)
        try:
            return await self.first_child.fstat(target, xdata)
        except FopError as e:
            if target is fd or e.errno != errno.EBADFD:
                raise
        await self._ensure_open(fd)
        return await self.first_child.fstat(fd, xdata)

    async def seek(self, fd, offset, what, xdata=None):
        target = await self._fd_for(fd, not self.opts.use_anonymous_fd)
        try:
            return await self.first_child.seek(target, offset, what, xdata)
        except FopError as e:
            if target is fd or e.errno != errno.EBADFD:
                raise
        await self._ensure_open(fd)
        return await self.first_child.seek(fd, offset, what, xdata)

    async def _fd_for(self, fd: Fd, trigger: bool) -> Fd:
        """The fd to send a read on: `fd` once open, else an anonymous one."""
        ob = fd.ctx.get(self)
        if ob is None or ob.state == _OPEN:
            return fd
        if trigger or ob.state != _PENDING:
            await self._ensure_open(fd)
            return fd
        if ob.anon is None:
            ob.anon = Fd(gfid=fd.gfid, flags=ob.flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC))
        return ob.anon

    # -- inode fops that need the file open first ------------------------------------------

    async def unlink(self, loc, xflags, xdata=None):
        await self._open_pending_of(loc.gfid)
        return await self.first_child.unlink(loc, xflags, xdata)

    async def rename(self, oldloc, newloc, xdata=None):
        await self._open_pending_of(newloc.gfid)
        return await self.first_child.rename(oldloc, newloc, xdata)

    async def setattr(self, loc, stbuf, valid, xdata=None):
        await self._open_pending_of(loc.gfid)
        return await self.first_child.setattr(loc, stbuf, valid, xdata)

    async def setxattr(self, loc, xattrs, flags, xdata=None):
        if not any(k in xattrs for k in (ACL_ACCESS_KEY, ACL_DEFAULT_KEY, SELINUX_KEY)):
            await self._open_pending_of(loc.gfid)
        return await self.first_child.setxattr(loc, xattrs, flags, xdata)

    # -- the deferred open -------------------------------------------------------------

    async def _ensure_open(self, fd: Fd) -> None:
        """Send the pending open of `fd` (or wait for the one under way);
        raise what it failed with."""
        while True:
            ob = fd.ctx.get(self)
            if ob is None or ob.state == _OPEN:
                return
            if ob.state == _FAILED:
                raise FopError(ob.errno, f"{self.name}: the deferred open failed")
            if ob.state == _OPENING:
                assert ob.opened is not None
                await ob.opened.wait()
                continue
            ob.state, ob.opened = _OPENING, trio.Event()
            self._pending -= 1
            self.triggered += 1
            try:
                token = fops.caller.set(ob.caller)
                try:
                    await self.first_child.open(ob.loc, ob.flags, fd, ob.xdata)
                finally:
                    fops.caller.reset(token)
            except FopError as e:
                ob.state, ob.errno = _FAILED, e.errno or errno.EIO
            except BaseException:
                ob.state = _PENDING   # cancelled: a later fop tries again
                self._pending += 1
                raise
            else:
                ob.state = _OPEN
            finally:
                ob.opened.set()
                record = self.itable.peek_ctx(self, fd.gfid)
                if record is not None and record.first is fd and ob.state != _PENDING:
                    record.first = None

    async def _open_pending_of(self, gfid) -> None:
        """Open the pending fd of the inode; of every inode when the fop
        does not say which (a loc of parent and name only)."""
        if not self._pending:
            return
        if gfid is not None:
            targets = [self.itable.peek_ctx(self, gfid)]
        else:
            targets = [record for _, record in self.itable.contexts(self)]
        for record in targets:
            if record is not None and record.first is not None:
                try:
                    await self._ensure_open(record.first)
                except FopError:
                    pass  # the error belongs to that fd's own fops

    def _record(self, gfid) -> _ObInode:
        record = self.itable.ctx(self, gfid)
        if record is None:
            record = _ObInode()
            self.itable.set_ctx(self, gfid, record)
        return record

    def _closed(self, gfid, fd: Fd) -> None:
        record = self.itable.peek_ctx(self, gfid)
        if record is None:
            return
        if record.first is fd:
            record.first = None
        record.open_count -= 1
        if record.open_count <= 0:
            self.itable.del_ctx(self, gfid)

    def inode_busy(self, ctx: Any) -> bool:
        return ctx.open_count > 0   # open fds keep their record

    def dump_state(self) -> dict[str, Any]:
        return {"pending": self._pending, "deferred": self.deferred,
                "triggered": self.triggered, "cancelled": self.cancelled}


def _triggering(name: str):
    """A fd fop that opens its pending fd(s) first, then winds."""
    fop = fops.BY_NAME[name]
    fd_positions = [i for i, a in enumerate(fop.args) if a.kind == "fd"]

    async def method(self, *args, xdata=None):
        if len(args) > len(fop.args):   # xdata given positionally
            args, xdata = args[:len(fop.args)], args[len(fop.args)]
        for i in fd_positions:
            if args[i] is not None and args[i].ctx.get(self) is not None:
                await self._ensure_open(args[i])
        return await getattr(self.first_child, name)(*args, xdata)
    method.__name__ = method.__qualname__ = name
    method.__doc__ = f"{name}: open the pending fd first (open-behind), then wind."
    return method


for _fop in fops.CATALOGUE:
    if _fop.name not in _OWN_FD_FOPS and _fop.name not in OpenBehind.__dict__ \
            and any(a.kind == "fd" for a in _fop.args):
        setattr(OpenBehind, _fop.name, _triggering(_fop.name))


TRANSLATOR = OpenBehind

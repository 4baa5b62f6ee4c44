"""fcntl record locks on a FUSE mount, sent to the bricks as the lk fop.

pyfuse3 (3.5) has no lock handlers: it fills libfuse's table of low-level
operations (struct fuse_lowlevel_ops) without getlk and setlk, so libfuse
never offers the kernel FUSE_CAP_POSIX_LOCKS and the kernel keeps every
fcntl lock to itself - locks that two mounts (two clients) never see.
GlusterFS's fuse-bridge sends them down the graph as lk, where
features/locks on the bricks arbitrates between all clients.

So `install()` fills those two slots of the session's copy of the table
with ctypes callbacks (and takes over its flush slot, see below), the way
ops_table.py finds and checks it; otherwise locks stay local to the mount,
as before, and a warning says why.

A callback runs inside the session loop (in trio's thread), copies
what it needs out of the request, and starts a task in the mount's
nursery; the task sends lk down the graph and answers with
fuse_reply_lock/fuse_reply_err when it completes - libfuse lets a request
be answered later, so an F_SETLKW that waits does not hold the loop up.  A
waiter the kernel interrupts (a signal to the waiting process) is
interrupted as fuse-bridge does it: fgetxattr of
"glusterfs.intrlk.tposix.kblocked" with the waiter's lock owner makes
features/locks fail that waiter with EINTR (and where that does not reach
the waiting lock, the request is answered EINTR here a second later).

The lock owner is the kernel's lock_owner for the request (one per open
file table, i.e. per process for fcntl locks), as fuse-bridge uses it.
close(2) must release the closing owner's locks and nobody else's, and
only FLUSH tells which owner closes, so the flush slot is taken over as
well: the same work as pyfuse3's flush (the bridge's flush), with that
owner as the caller, so features/locks drops that owner's locks - a child
closing the fds it inherited (every fork and exec does) leaves its
parent's locks alone.  flock(2) stays with the kernel (no flock handler, so
libfuse does not ask for FUSE_CAP_FLOCK_LOCKS).  Limit: a graph switch (a
volfile change of the graph's shape) releases the old graph's fds and with
them their locks - GlusterFS migrates them (getactivelk/setactivelk),
glusterpy does not yet.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os

import trio

from ..fops import Caller, Flock, FopError, LockCmd, LockType, caller
from ..keys import INTERRUPT_KEY
from .ops_table import (INTERRUPT_FN, CFlock, FileInfo, SlotHandlers, guarded, libfuse,
                        reply_when_done)

log = logging.getLogger(__name__)

#: struct fuse_lowlevel_ops of libfuse 3 (fuse_lowlevel.h): the slots used here
FLUSH_SLOT, GETLK_SLOT, SETLK_SLOT = 17, 31, 32

GETLK_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.POINTER(FileInfo),
                            ctypes.POINTER(CFlock))
SETLK_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.POINTER(FileInfo),
                            ctypes.POINTER(CFlock), ctypes.c_int)
FLUSH_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.POINTER(FileInfo))

#: fcntl's lock types <-> GlusterFS's (the numbers differ between platforms)
TO_GF = {fcntl.F_RDLCK: LockType.RDLCK, fcntl.F_WRLCK: LockType.WRLCK,
         fcntl.F_UNLCK: LockType.UNLCK}
FROM_GF = {v: k for k, v in TO_GF.items()}


# -- the lock requests ------------------------------------------------------------


class _Waiter:
    """An F_SETLKW being answered: what an interrupt needs to end it."""

    __slots__ = ("fh", "who", "scope")

    def __init__(self, fh: int, who: Caller):
        self.fh, self.who = fh, who
        self.scope = trio.CancelScope()


def _guarded(name):
    # without a mount: ENOSYS, as libfuse answers a slot it does not have
    return guarded(name, lambda: PosixLocks, errno.ENOSYS)


@GETLK_FN
@_guarded("getlk")
def _on_getlk(mount, req, ino, fi, lock) -> None:
    mount.nursery.start_soon(mount._getlk_task, req, *mount._request(req, fi, lock))


@SETLK_FN
@_guarded("setlk")
def _on_setlk(mount, req, ino, fi, lock, sleep) -> None:
    who, fh, flock = mount._request(req, fi, lock)
    waiter = None
    if sleep:
        waiter = mount._waiting[req] = _Waiter(fh, who)
        # called at once if the request was interrupted already
        libfuse().fuse_req_interrupt_func(req, _on_interrupt, None)
    mount.nursery.start_soon(mount._setlk_task, req, who, fh, flock, waiter)


@FLUSH_FN
@_guarded("flush")
def _on_flush(mount, req, ino, fi) -> None:
    ctx = libfuse().fuse_req_ctx(req).contents
    who = Caller(uid=ctx.uid, gid=ctx.gid, pid=ctx.pid,
                 lk_owner=int(fi.contents.lock_owner).to_bytes(8, "little"))
    mount.nursery.start_soon(mount._flush_task, req, who, int(fi.contents.fh))


@INTERRUPT_FN
def _on_interrupt(req, data) -> None:
    try:
        mount = PosixLocks.active
        waiter = None if mount is None else mount._waiting.get(req)
        if waiter is not None and mount.nursery is not None:
            mount.nursery.start_soon(mount._interrupt_task, waiter)
    except BaseException:
        log.exception("interrupt")


class PosixLocks(SlotHandlers):
    """getlk/setlk (and flush, with the closing owner) for the mount
    (FuseBridge) of this process."""

    WITHOUT = "fcntl locks stay local to this mount"
    SLOTS = (GETLK_SLOT, SETLK_SLOT)
    TAKES_OVER = (FLUSH_SLOT,)

    def __init__(self, bridge):
        super().__init__(bridge)
        self._waiting: dict[int, _Waiter] = {}  # req -> the F_SETLKW it is

    def callbacks(self):
        return {GETLK_SLOT: _on_getlk, SETLK_SLOT: _on_setlk, FLUSH_SLOT: _on_flush}

    def _request(self, req, fi, lock) -> tuple:
        """Copy a request out of libfuse's frame (valid during the call only)."""
        ctx = libfuse().fuse_req_ctx(req).contents
        who = Caller(uid=ctx.uid, gid=ctx.gid, pid=ctx.pid,
                     lk_owner=int(fi.contents.lock_owner).to_bytes(8, "little"))
        fl = lock.contents
        flock = Flock(type=TO_GF.get(fl.l_type, -1), whence=fl.l_whence, start=fl.l_start,
                      len=fl.l_len, pid=fl.l_pid, owner=who.lk_owner)
        return who, int(fi.contents.fh), flock

    # the graph side

    async def _lk(self, who: Caller, fh: int, cmd: LockCmd, flock: Flock) -> Flock:
        bridge = self.bridge
        while bridge._switching is not None:  # a graph switch is under way
            await bridge._switching.wait()
        fd = bridge._handles.get(fh)
        if fd is None:
            raise FopError(errno.EBADF)
        if flock.type not in FROM_GF:
            raise FopError(errno.EINVAL, "unknown lock type")
        token = caller.set(who)
        try:
            return (await bridge.top.lk(fd, cmd, flock, None)).flock
        finally:
            caller.reset(token)

    async def _getlk_task(self, req, who, fh, flock) -> None:
        def reply(answer: Flock) -> None:
            out = CFlock(l_type=FROM_GF.get(answer.type, fcntl.F_UNLCK), l_whence=os.SEEK_SET,
                         l_start=answer.start, l_len=answer.len, l_pid=answer.pid)
            libfuse().fuse_reply_lock(req, ctypes.byref(out))
        await reply_when_done("getlk", req, self._lk(who, fh, LockCmd.GETLK, flock), reply)

    async def _setlk_task(self, req, who, fh, flock, waiter: _Waiter | None) -> None:
        cmd = LockCmd.SETLK if waiter is None else LockCmd.SETLKW
        try:
            if waiter is None:
                await self._lk(who, fh, cmd, flock)
            else:
                with waiter.scope:
                    await self._lk(who, fh, cmd, flock)
            err = errno.EINTR if waiter is not None and waiter.scope.cancelled_caught else 0
        except FopError as e:
            err = e.errno
        except Exception:
            log.exception("setlk")
            err = errno.EIO
        finally:
            # before the reply: libfuse frees req with it, and may reuse it
            self._waiting.pop(req, None)
        libfuse().fuse_reply_err(req, err)

    async def _flush_task(self, req, who: Caller, fh: int) -> None:
        """pyfuse3's flush, with the closing process's lock owner: close(2)
        releases that owner's locks on the file (features/locks' flush),
        and only theirs - a child that closes the fds it inherited (every
        fork and exec does) leaves its parent's locks alone."""
        await reply_when_done("flush", req, self._flush_as(who, fh),
                              lambda _: libfuse().fuse_reply_err(req, 0))

    async def _flush_as(self, who: Caller, fh: int) -> None:
        token = caller.set(who)
        try:
            await self.bridge.flush(fh)
        finally:
            caller.reset(token)

    async def _interrupt_task(self, waiter: _Waiter) -> None:
        """fuse-bridge's fuse_setlk_interrupt_handler: fgetxattr of
        INTERRUPT_KEY with the waiter's owner makes features/locks fail its
        waiting lock with EINTR, which answers the request.  That reaches
        the brick the fd's file is on; where a cluster translator sent the
        lock elsewhere (replicate locks on every brick), the request is
        answered EINTR here after a moment, and the lock left waiting on a
        brick goes when the process closes the file (flush, release)."""
        fd = self.bridge._handles.get(waiter.fh)
        if fd is not None:
            token = caller.set(waiter.who)
            try:
                await self.bridge.top.fgetxattr(fd, INTERRUPT_KEY, None)
            except FopError as e:
                log.debug("interrupting a waiting lock: %s", e)
            finally:
                caller.reset(token)
        await trio.sleep(1)
        waiter.scope.cancel()

"""features/locks: lk, POSIX record locks with fcntl semantics, their
release on flush and release, and lock migration (getactivelk /
setactivelk).

GlusterFS's posix.c (pl_lk, pl_flush, pl_release, pl_getactivelk,
pl_setactivelk) and common.c (pl_setlk, __insert_and_merge,
grant_blocked_locks).
"""

from __future__ import annotations

import errno
import weakref

import trio

from glusterpy import fops
from glusterpy.fops import (ActiveLock, Flock, FopError, LkReply, LockCmd, LockListReply, LockType,
                            Reply)
from glusterpy.keys import LOCK_MODE

from .common import (BLOCKED, GONE, GRANTED, LLONG_MAX, Lock, PosixLock, client_uid, fd_gfid,
                     null_owner, owner_of, posixlk_text, s32, s64)
from .counts import fd_target


class PosixLkFops:
    """lk, flush, release, getactivelk and setactivelk; see the package docstring."""

    # ======================================================================
    # lk: POSIX record locks

    async def lk(self, fd, cmd, flock, xdata=None):
        who = fops.caller.get()
        gfid = fd_gfid(fd)
        start, length = s64(flock.start), s64(flock.len)
        if start < 0 or start + length < 0:
            raise FopError(errno.EINVAL, "invalid lock range")
        if length < 0:  # fcntl(2): the bytes [start+len, start-1]
            start, length = start + length, -length
        if start + length > LLONG_MAX + 1:
            raise FopError(errno.EINVAL, "lock range beyond the largest offset")
        if flock.type not in (LockType.RDLCK, LockType.WRLCK, LockType.UNLCK):
            raise FopError(errno.EINVAL, f"invalid lock type {flock.type}")
        if null_owner(who.lk_owner):
            raise FopError(errno.EINVAL, "lk needs a lock owner")
        request = Flock(flock.type, flock.whence, start, length, s32(flock.pid), flock.owner)
        lock = PosixLock(
            gfid=gfid, client=who.client, owner=who.lk_owner, pid=who.pid, type=flock.type,
            start=start, end=LLONG_MAX if length == 0 else start + length - 1,
            whence=flock.whence, flock_pid=request.pid, fd=weakref.ref(fd),
            lk_flags=_lock_mode(xdata), client_uid=client_uid(who.client),
            blocking=cmd == LockCmd.SETLKW)
        text = posixlk_text(cmd, request, who.lk_owner) if self.opts.trace else ""
        self._trace("REQUEST", who, fd, text)

        if cmd == LockCmd.GETLK:
            pinode = self._inodes.get(gfid)
            conflict = None if pinode is None else self._posix_conflict(pinode, lock)
            if conflict is not None:
                answer = conflict.to_flock(flock.whence)
            else:
                answer = Flock(LockType.UNLCK, flock.whence, start, length, request.pid,
                               who.lk_owner)
            self._trace("GRANTED", who, fd, text)
            return LkReply(answer)
        if cmd not in (LockCmd.SETLK, LockCmd.SETLKW):
            raise self._traced_error(errno.ENOTSUP, who, fd, text,
                                     "reservation locks and GETLK_FD are not supported")
        if request.type != LockType.UNLCK:
            self._refuse_departed(who.client)

        pinode = self._inode(gfid)
        try:
            granted = self._posix_setlk(pinode, lock, can_block=lock.blocking)
            if granted:
                if request.type == LockType.UNLCK:
                    # NLM's "last unlock on this fd" test (pl_locks_by_fd)
                    still = any(lk.taken_through(fd) for lk in
                                pinode.posixlks + pinode.blocked_posixlks)
                    request.type = LockType.RDLCK if still else LockType.UNLCK
                self._trace("GRANTED", who, fd, text)
                return LkReply(request)
            if lock.state is not BLOCKED:
                self._trace("TRYAGAIN", who, fd, text)
                raise FopError(errno.EAGAIN)
            self._trace("BLOCKED", who, fd, text)
        finally:
            self._tidy(pinode)
        await self._wait(lock, lambda: pinode.blocked_posixlks.remove(lock))
        return LkReply(lock.reply)

    def _posix_setlk(self, pinode, lock, can_block) -> bool:
        """pl_setlk: apply `lock` (or unlock) if nothing conflicts, else queue
        it when it may wait; then let the waiters try again.  True if applied."""
        if can_block and not self._posix_grantable(pinode, lock):
            # pl_send_prelock_unlock: give up the owner's own locks in the
            # range first, so that two owners upgrading do not deadlock
            unlock = lock.piece(lock.start, lock.end)
            unlock.type = LockType.UNLCK
            self._posix_insert_and_merge(pinode, unlock)
            self._grant_blocked_posixlks(pinode)
        applied = self._posix_grantable(pinode, lock)
        if applied:
            self._posix_insert_and_merge(pinode, lock)
        elif can_block:
            lock.state = BLOCKED
            lock.blocked_at = trio.current_time()
            pinode.blocked_posixlks.append(lock)
        self._grant_blocked_posixlks(pinode)
        return applied

    @staticmethod
    def _posix_conflict(pinode, lock) -> PosixLock | None:
        """The first granted lock of another owner that `lock` conflicts with."""
        for held in pinode.posixlks:
            if held.overlaps(lock) and not held.same_owner(lock) and \
                    LockType.WRLCK in (held.type, lock.type):
                return held
        return None

    def _posix_grantable(self, pinode, lock) -> bool:
        return lock.type == LockType.UNLCK or self._posix_conflict(pinode, lock) is None

    @staticmethod
    def _posix_insert_and_merge(pinode, lock) -> None:
        """Apply a granted request (or an unlock) to its owner's locks.

        The owner's locks overlapping the request give up the requested
        range (keeping what lies outside it); those of the same type and
        mode instead merge with the request into one lock.  The owner's
        locks never overlap one another, which is what makes this enough
        (__insert_and_merge reaches the same result by recursion).
        """
        start, end = lock.start, lock.end
        leftovers = []
        for held in [lk for lk in pinode.posixlks if lk.same_owner(lock) and lk.overlaps(lock)]:
            pinode.posixlks.remove(held)
            held.state = GONE
            if lock.type != LockType.UNLCK and held.type == lock.type \
                    and held.lk_flags == lock.lk_flags:
                start, end = min(start, held.start), max(end, held.end)
                continue
            if held.start < lock.start:
                leftovers.append(held.piece(held.start, lock.start - 1))
            if held.end > lock.end:
                leftovers.append(held.piece(lock.end + 1, held.end))
        if lock.type != LockType.UNLCK:
            lock.start, lock.end = start, end
            lock.state = GRANTED
            lock.granted_at = trio.current_time()
            leftovers.append(lock)
        pinode.posixlks.extend(sorted(leftovers, key=lambda lk: lk.start))

    def _grant_blocked_posixlks(self, pinode) -> None:
        """Grant every waiter that no longer conflicts, oldest first."""
        waiting, pinode.blocked_posixlks = pinode.blocked_posixlks, []
        for lock in waiting:
            if self._posix_grantable(pinode, lock):
                lock.reply = lock.to_flock()
                self._posix_insert_and_merge(pinode, lock)
                if self.opts.trace:
                    self._trace("GRANTED", owner_of(lock), pinode.gfid,
                                posixlk_text(LockCmd.SETLKW, lock.reply, lock.owner))
                lock.woken.set()
            else:
                pinode.blocked_posixlks.append(lock)

    def _drop_fd_locks(self, pinode, fd) -> None:
        """delete_locks_of_fd: every lock taken through `fd` goes; its
        waiters fail with EAGAIN."""
        pinode.posixlks = self._without(pinode.posixlks, lambda lk: lk.taken_through(fd))
        for lock in [lk for lk in pinode.blocked_posixlks if lk.taken_through(fd)]:
            pinode.blocked_posixlks.remove(lock)
            self._fail(lock, errno.EAGAIN)
        self._grant_blocked_posixlks(pinode)

    async def flush(self, fd, xdata=None):
        who = fops.caller.get()
        pinode = self._inodes.get(fd.gfid) if fd.gfid is not None else None
        if pinode is not None and (pinode.posixlks or pinode.blocked_posixlks):
            self._trace("FLUSH", who, fd, None)
            if not who.lk_owner:
                # protocol/server flushes a departed client's fds with an
                # empty lk_owner: every lock of the fd goes
                self._drop_fd_locks(pinode, fd)
            else:
                probe = Lock(gfid=pinode.gfid, client=who.client, owner=who.lk_owner, pid=0)
                pinode.posixlks = self._without(pinode.posixlks, probe.same_owner)
                self._grant_blocked_posixlks(pinode)
            self._tidy(pinode)
        return await self._wind_counting("flush", (fd,), xdata, fd_target(fd))

    async def release(self, fd, xdata=None):
        pinode = self._inodes.get(fd.gfid) if fd.gfid is not None else None
        if pinode is not None:
            if self.opts.trace:
                self.log.info("[RELEASE] Lockee = {%r}", fd)
            self._drop_fd_locks(pinode, fd)
            self._tidy(pinode)
        return await self.first_child.release(fd, xdata)

    # ======================================================================
    # getactivelk / setactivelk (lock migration)

    async def getactivelk(self, loc, xdata=None):
        pinode = self._inodes.get(await self._gfid_of(loc))
        locks = [] if pinode is None else [
            ActiveLock(lk.to_flock(), lk.client_uid, lk.lk_flags) for lk in pinode.posixlks]
        return LockListReply(locks)

    async def setactivelk(self, loc, locks, xdata=None):
        """pl_write_active_locks: install migrated locks on an inode that has
        none.  Their client is the caller (rebalance), their uid the one
        migrated; they are tied to no fd."""
        who = fops.caller.get()
        gfid = await self._gfid_of(loc)
        pinode = self._inode(gfid)
        try:
            if pinode.posixlks or pinode.blocked_posixlks:
                raise FopError(errno.EINVAL, "the inode already has POSIX locks")
            if not locks:
                raise FopError(errno.EINVAL, "empty lock list")
            now = trio.current_time()
            for active in locks:
                start, length = s64(active.flock.start), s64(active.flock.len)
                pinode.posixlks.append(PosixLock(
                    gfid=gfid, client=who.client, owner=active.flock.owner,
                    pid=s32(active.flock.pid), state=GRANTED, granted_at=now,
                    type=active.flock.type, start=start,
                    end=LLONG_MAX if length == 0 else start + length - 1,
                    flock_pid=s32(active.flock.pid), lk_flags=active.lk_flags,
                    client_uid=active.client_uid))
        finally:
            self._tidy(pinode)
        return Reply()


def _lock_mode(xdata) -> int:
    """lk's "glusterfs.lk.lkmode" (GF_LK_ADVISORY 0 / GF_LK_MANDATORY 1);
    a value that is not a number counts as absent, as dict_get_uint32 fails."""
    try:
        return int((xdata or {}).get(LOCK_MODE, 0))
    except (TypeError, ValueError):
        return 0

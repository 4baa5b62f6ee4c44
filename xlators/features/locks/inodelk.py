"""features/locks: inodelk / finodelk, byte-range locks per domain.

GlusterFS's inodelk.c, with its lock revocation (__inodelk_prune_stale).
"""

from __future__ import annotations

import errno

import trio

from glusterpy import fops
from glusterpy.fops import Flock, FopError, LockCmd, LockType, Reply
from glusterpy.keys import CONNECTION_ID

from .common import (BLOCKED, GONE, GRANTED, LLONG_MAX, InodeLock, fd_gfid, inodelk_text,
                     null_owner, owner_of, s32, s64, xdata_str)


class InodelkFops:
    """inodelk and finodelk; see the package docstring."""

    async def inodelk(self, volume, loc, cmd, flock, xdata=None):
        gfid = await self._gfid_of(loc)
        return await self._common_inodelk(volume, gfid, cmd, flock, xdata, loc)

    async def finodelk(self, volume, fd, cmd, flock, xdata=None):
        return await self._common_inodelk(volume, fd_gfid(fd), cmd, flock, xdata, fd)

    async def _common_inodelk(self, volume, gfid, cmd, flock, xdata, lockee) -> Reply:
        who = fops.caller.get()
        start, length = s64(flock.start), s64(flock.len)
        if start < 0 or length < 0 or start + length > LLONG_MAX + 1:
            raise FopError(errno.EINVAL, "invalid inodelk range")
        if start == LLONG_MAX - 1 and length == 0 and not volume.endswith(":metadata"):
            volume += ":metadata"
        text = inodelk_text(cmd, flock, volume) if self.opts.trace else ""
        self._trace("REQUEST", who, lockee, text)
        if null_owner(who.lk_owner):
            raise FopError(errno.EINVAL, "inodelk needs a lock owner")
        if cmd not in (LockCmd.SETLK, LockCmd.SETLKW):
            raise self._traced_error(errno.ENOTSUP, who, lockee, text,
                                     "inodelk supports only SETLK and SETLKW")
        if flock.type not in (LockType.RDLCK, LockType.WRLCK, LockType.UNLCK):
            raise FopError(errno.EINVAL, f"invalid lock type {flock.type}")
        if flock.type != LockType.UNLCK:
            self._refuse_departed(who.client)

        lock = InodeLock(
            gfid=gfid, client=who.client, owner=who.lk_owner, pid=who.pid, domain=volume,
            type=flock.type, start=start, end=LLONG_MAX if length == 0 else start + length - 1,
            flock=Flock(flock.type, flock.whence, start, length, s32(flock.pid), flock.owner),
            conn_id=xdata_str(xdata, CONNECTION_ID))
        pinode = self._inode(gfid)
        dom = pinode.domain(volume)
        try:
            if lock.type == LockType.UNLCK:
                self._inodelk_unlock(pinode, dom, lock, who, lockee)
                self._trace("GRANTED", who, lockee, text)
                return Reply()
            if self.opts.revocation_secs:
                self._inodelk_prune_stale(pinode, dom, lock)
            can_block = cmd == LockCmd.SETLKW
            if self._lock_inodelk(pinode, dom, lock, can_block):
                self._trace("GRANTED", who, lockee, text)
                return Reply()
            if not can_block:
                self._trace("TRYAGAIN", who, lockee, text)
                raise FopError(errno.EAGAIN)
            self._trace("BLOCKED", who, lockee, text)
        finally:
            self._tidy(pinode)
        await self._wait(lock, lambda: self._cancel_inodelk(pinode, dom, lock))
        return Reply()

    def _inodelk_unlock(self, pinode, dom, request, who, lockee) -> None:
        """Remove the owner's lock with exactly this range (inodelk.c
        __inode_unlock_lock), then wake whatever it held back."""
        if self.opts.revocation_secs and self.opts.monkey_unlocking \
                and self._monkey.randrange(100) == 0:
            self.log.warning("MONKEY LOCKING (forcing stuck lock)!")
            return
        held = next((lk for lk in dom.inodelks if lk.start == request.start
                     and lk.end == request.end and lk.same_owner(request)), None)
        if held is None:
            self.log.debug("matching lock not found for unlock %d-%d by %s on %s",
                           request.start, request.end, request.owner.hex(), pinode.gfid)
            raise FopError(errno.EINVAL, "no such inodelk")
        dom.inodelks.remove(held)
        held.state = GONE
        self._wake_removals(pinode)
        self._grant_blocked_inodelks(pinode, dom)

    def _lock_inodelk(self, pinode, dom, lock, can_block) -> bool:
        """Grant `lock` or (when it may wait) queue it: __lock_inodelk."""
        held_back = self._removal_blocks(pinode, lock)
        conflict = None if held_back else self._inodelk_conflict(dom, lock)
        if not held_back and conflict is None:
            # a grantable lock still waits behind an earlier conflicting
            # waiter, unless its owner has a lock here (nested locks)
            starving = any(lk.conflicts(lock) for lk in dom.blocked_inodelks)
            if not starving or self._inodelk_owner_present(dom, lock):
                lock.state = GRANTED
                lock.granted_at = trio.current_time()
                dom.inodelks.insert(0, lock)
                return True
        if can_block:
            lock.state = BLOCKED
            if lock.blocked_at is None:
                lock.blocked_at = trio.current_time()
            dom.blocked_inodelks.append(lock)
        return False

    def _inodelk_conflict(self, dom, lock) -> InodeLock | None:
        """The first granted lock of another owner that conflicts with
        `lock`; every such holder is considered for a contention upcall."""
        first = None
        for held in dom.inodelks:
            if held.conflicts(lock) and not held.same_owner(lock):
                if first is None:
                    first = held
                    if not self.opts.notify_contention:
                        break
                self._note_contention(held)
        return first

    @staticmethod
    def _inodelk_owner_present(dom, lock) -> bool:
        return any(lk.same_owner(lock) for lk in dom.inodelks) or \
            any(lk.same_owner(lock) for lk in dom.blocked_inodelks)

    def _grant_blocked_inodelks(self, pinode, dom) -> None:
        """Try every waiter again, oldest first (__grant_blocked_inode_locks)."""
        waiting, dom.blocked_inodelks = dom.blocked_inodelks, []
        for lock in waiting:
            if self._lock_inodelk(pinode, dom, lock, can_block=True):
                if self.opts.trace:
                    self._trace("GRANTED", owner_of(lock), pinode.gfid,
                                inodelk_text(LockCmd.SETLKW, lock.flock, lock.domain))
                lock.woken.set()

    def _cancel_inodelk(self, pinode, dom, lock) -> None:
        dom.blocked_inodelks.remove(lock)
        self._grant_blocked_inodelks(pinode, dom)

    def _inodelk_prune_stale(self, pinode, dom, request) -> None:
        """revocation-secs / revocation-max-blocked (__inodelk_prune_stale)."""
        reason, age = self._revocation_reason(dom.inodelks, dom.blocked_inodelks,
                                              lambda held: held.conflicts(request))
        if reason is None:
            return
        blocked, granted = self._clear_inodelks(pinode, dom, self._revocation_kind(), None)
        self.log.warning("Lock revocation [reason: %s; gfid: %s; domain: %s; age: %s sec] - "
                         "Inode lock revoked:  %d granted & %d blocked locks cleared",
                         reason, pinode.gfid, dom.name, int(age or 0), granted, blocked)

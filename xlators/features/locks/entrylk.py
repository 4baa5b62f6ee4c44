"""features/locks: entrylk / fentrylk, locks on names in a directory.

GlusterFS's entrylk.c, with its lock revocation (__entrylk_prune_stale).
"""

from __future__ import annotations

import errno

import trio

from glusterpy import fops
from glusterpy.fops import EntrylkCmd, FopError, Reply
from glusterpy.keys import CONNECTION_ID

from .common import (BLOCKED, GONE, GRANTED, EntryLock, entrylk_text, fd_gfid, null_owner,
                     owner_of, xdata_str)


class EntrylkFops:
    """entrylk and fentrylk; see the package docstring."""

    async def entrylk(self, volume, loc, basename, cmd, type, xdata=None):
        gfid = await self._gfid_of(loc)
        return await self._common_entrylk(volume, gfid, basename, cmd, type, xdata, loc)

    async def fentrylk(self, volume, fd, basename, cmd, type, xdata=None):
        return await self._common_entrylk(volume, fd_gfid(fd), basename, cmd, type, xdata, fd)

    async def _common_entrylk(self, volume, gfid, basename, cmd, type_, xdata, lockee) -> Reply:
        who = fops.caller.get()
        text = entrylk_text(cmd, type_, basename, volume) if self.opts.trace else ""
        self._trace("REQUEST", who, lockee, text)
        if cmd not in (EntrylkCmd.LOCK, EntrylkCmd.LOCK_NB, EntrylkCmd.UNLOCK):
            raise FopError(errno.EINVAL, f"unknown entrylk command {cmd}")
        if null_owner(who.lk_owner):
            raise FopError(errno.EINVAL, "entrylk needs a lock owner")
        if cmd != EntrylkCmd.UNLOCK:
            self._refuse_departed(who.client)
        lock = EntryLock(gfid=gfid, client=who.client, owner=who.lk_owner, pid=who.pid,
                          domain=volume, basename=basename or None, type=type_,
                          conn_id=xdata_str(xdata, CONNECTION_ID))
        pinode = self._inode(gfid)
        dom = pinode.domain(volume)
        try:
            if cmd == EntrylkCmd.UNLOCK:
                if self.opts.revocation_secs and self.opts.monkey_unlocking \
                        and self._monkey.randrange(100) == 0:
                    self.log.warning("MONKEY LOCKING (forcing stuck lock)!")
                    return Reply()
                held = next((lk for lk in dom.entrylks if lk.basename == lock.basename
                             and lk.same_owner(lock) and lk.type == lock.type), None)
                if held is not None:
                    dom.entrylks.remove(held)
                    held.state = GONE
                # GlusterFS tries the waiters even when the unlock failed
                self._grant_blocked_entrylks(dom)
                if held is None:
                    self.log.error("unlock on %s attempted but no matching lock found",
                                   lock.basename)
                    raise self._traced_error(errno.EINVAL, who, lockee, text, "no such entrylk")
                self._trace("GRANTED", who, lockee, text)
                return Reply()
            if self.opts.revocation_secs:
                self._entrylk_prune_stale(pinode, dom, lock)
            nonblock = cmd == EntrylkCmd.LOCK_NB
            if self._lock_entrylk(dom, lock, can_block=not nonblock):
                self._trace("GRANTED", who, lockee, text)
                return Reply()
            if nonblock:
                self._trace("TRYAGAIN", who, lockee, text)
                raise FopError(errno.EAGAIN)
            self._trace("BLOCKED", who, lockee, text)
        finally:
            self._tidy(pinode)
        await self._wait(lock, lambda: self._cancel_entrylk(dom, lock))
        return Reply()

    def _lock_entrylk(self, dom, lock, can_block) -> bool:
        """Grant `lock` or (when it may wait) queue it: __lock_entrylk."""
        conflict = None
        for held in dom.entrylks:
            if held.names_conflict(lock) and not held.same_owner(lock):
                if conflict is None:
                    conflict = held
                    if not self.opts.notify_contention:
                        break
                self._note_contention(held)
        if conflict is None:
            starving = any(lk.names_conflict(lock) for lk in dom.blocked_entrylks)
            owner_present = any(lk.same_owner(lock) for lk in dom.entrylks) or \
                any(lk.same_owner(lock) for lk in dom.blocked_entrylks)
            if not starving or owner_present:
                lock.state = GRANTED
                lock.granted_at = trio.current_time()
                dom.entrylks.insert(0, lock)
                return True
        if can_block:
            lock.state = BLOCKED
            if lock.blocked_at is None:
                lock.blocked_at = trio.current_time()
            dom.blocked_entrylks.append(lock)
        return False

    def _grant_blocked_entrylks(self, dom) -> None:
        waiting, dom.blocked_entrylks = dom.blocked_entrylks, []
        for lock in waiting:
            if self._lock_entrylk(dom, lock, can_block=True):
                if self.opts.trace:
                    self._trace("GRANTED", owner_of(lock), lock.gfid, entrylk_text(
                        EntrylkCmd.LOCK, lock.type, lock.basename, lock.domain))
                lock.woken.set()

    def _cancel_entrylk(self, dom, lock) -> None:
        dom.blocked_entrylks.remove(lock)
        self._grant_blocked_entrylks(dom)

    def _entrylk_prune_stale(self, pinode, dom, request) -> None:
        """revocation for entry locks (__entrylk_prune_stale): the age test
        looks only at names, not owners."""
        reason, age = self._revocation_reason(dom.entrylks, dom.blocked_entrylks,
                                              lambda held: held.names_conflict(request))
        if reason is None:
            return
        blocked, granted = self._clear_entrylks(dom, self._revocation_kind(), None)
        self.log.warning("Lock revocation [reason: %s; gfid: %s; domain: %s; age: %s sec] - "
                         "Entry lock revoked:  %d granted & %d blocked locks cleared",
                         reason, pinode.gfid, dom.name, int(age or 0), granted, blocked)

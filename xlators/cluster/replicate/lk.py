"""Locks: the transactions' inodelk and entrylk (afr-lk-common.c) and the lock
fops for the layers above (afr-common.c's afr_inodelk, afr_entrylk, afr_lk).
"""

from __future__ import annotations

import dataclasses
import errno

from glusterpy import fops
from glusterpy.fops import (Caller, EntrylkCmd, EntrylkType, Flock, FopError, Loc, LockCmd,
                            LockType, Reply)

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.state import Lockee, Txn, errno_of, is_ok


class AfrLk:
    """The transactions' locks and the lock fops."""

    # ======================================================================
    # The transactions' locks (afr-lk-common.c)

    def _owner_caller(self, txn: Txn) -> Caller:
        return dataclasses.replace(txn.caller, lk_owner=txn.owner)

    def _lock_call(self, lockee: Lockee, i: int, cmd, txn: Txn, unlock=False):
        child = self.children[i]
        if lockee.kind == "entry":
            c = EntrylkCmd.UNLOCK if unlock else cmd
            return child.entrylk(self.domain, lockee.loc, lockee.basename, c,
                                 EntrylkType.WRLCK, None)
        flock = Flock(type=LockType.UNLCK if unlock else LockType.WRLCK,
                      start=lockee.start, len=lockee.length)
        c = LockCmd.SETLK if unlock else cmd
        fdctx = lockee.fd.ctx.get(self) if lockee.fd is not None else None
        if lockee.fd is not None and (fdctx is None or fdctx.opened_on[i]):
            return child.finodelk(self.domain, lockee.fd, c, flock, None)
        return child.inodelk(self.domain, lockee.loc or Loc(gfid=lockee.fd.gfid), c, flock,
                             None)

    async def _lock(self, txn: Txn) -> None:
        """afr_lock_nonblocking, then afr_blocking_lock: every lockee on every
        up child at once without waiting; on any failure, release and take
        them one child after another, waiting.  At least one child must
        hold every lockee."""
        n = self.child_count
        lockees = txn.lockees
        held = [[False] * n for _ in lockees]
        txn.held = held
        caller = self._owner_caller(txn)
        pairs = [(k, i) for k in range(len(lockees)) for i in range(n) if txn.up[i]]
        nb_cmd = {"entry": EntrylkCmd.LOCK_NB, "inode": LockCmd.SETLK}
        results = await self._gather(
            [lambda k=k, i=i: self._lock_call(lockees[k], i, nb_cmd[lockees[k].kind], txn)
             for k, i in pairs], caller)
        failed = False
        for (k, i), r in zip(pairs, results):
            if is_ok(r):
                held[k][i] = True
            else:
                failed = True
                txn.lock_errno = r.errno
                if r.errno == errno.ENOSYS:
                    self.log.error("subvolume does not support locking. please load "
                                   "features/locks xlator on server")
        if any(errno_of(r) == errno.ENOSYS for r in results):
            await self._unlock(txn)
            raise FopError(errno.ENOSYS, "subvolume does not support locking")
        if failed:
            await self._unlock(txn)
            block_cmd = {"entry": EntrylkCmd.LOCK, "inode": LockCmd.SETLKW}
            tok = fops.caller.set(caller)
            try:
                for k, lockee in enumerate(lockees):
                    for i in range(n):
                        if not txn.up[i]:
                            continue
                        try:
                            await self._lock_call(lockee, i, block_cmd[lockee.kind], txn)
                            held[k][i] = True
                        except FopError as e:
                            txn.lock_errno = e.errno
            finally:
                fops.caller.reset(tok)
        for i in range(n):
            txn.locked[i] = all(held[k][i] for k in range(len(lockees)))
        if not any(txn.locked):
            await self._unlock(txn)
            self.log.warning("Unable to lock %s on any subvolume while attempting %s",
                             txn.gfid or txn.loc, txn.op)
            raise FopError(txn.lock_errno or errno.ENOTCONN, "could not lock any subvolume")

    async def _unlock(self, txn: Txn, held=None) -> None:
        held = held if held is not None else getattr(txn, "held", None)
        if not held:
            return
        calls = []
        for k, lockee in enumerate(txn.lockees):
            for i in range(self.child_count):
                if held[k][i]:
                    calls.append(lambda k=k, i=i, lk=lockee: self._lock_call(lk, i, None, txn,
                                                                             unlock=True))
                    held[k][i] = False
        await self._gather(calls, self._owner_caller(txn))

    # ======================================================================
    # Locks for the layers above (afr-common.c afr_inodelk, afr_entrylk, afr_lk)

    async def inodelk(self, volume, loc, cmd, flock, xdata=None):
        unlock = dataclasses.replace(flock, type=LockType.UNLCK)
        return await self._app_lock(
            cmd, flock.type == LockType.UNLCK, LockCmd.SETLK, LockCmd.SETLKW,
            lambda i, c, undo: self.children[i].inodelk(
                volume, loc, LockCmd.SETLK if undo else c, unlock if undo else flock, xdata))

    async def finodelk(self, volume, fd, cmd, flock, xdata=None):
        unlock = dataclasses.replace(flock, type=LockType.UNLCK)
        return await self._app_lock(
            cmd, flock.type == LockType.UNLCK, LockCmd.SETLK, LockCmd.SETLKW,
            lambda i, c, undo: self.children[i].finodelk(
                volume, fd, LockCmd.SETLK if undo else c, unlock if undo else flock, xdata))

    async def entrylk(self, volume, loc, basename, cmd, type, xdata=None):
        return await self._app_lock(
            cmd, cmd == EntrylkCmd.UNLOCK, EntrylkCmd.LOCK_NB, EntrylkCmd.LOCK,
            lambda i, c, undo: self.children[i].entrylk(
                volume, loc, basename, EntrylkCmd.UNLOCK if undo else c, type, xdata))

    async def fentrylk(self, volume, fd, basename, cmd, type, xdata=None):
        return await self._app_lock(
            cmd, cmd == EntrylkCmd.UNLOCK, EntrylkCmd.LOCK_NB, EntrylkCmd.LOCK,
            lambda i, c, undo: self.children[i].fentrylk(
                volume, fd, basename, EntrylkCmd.UNLOCK if undo else c, type, xdata))

    async def _app_lock(self, cmd, is_unlock, nb_cmd, block_cmd, call):
        """afr_fop_handle_lock: an unlock goes everywhere; a lock is tried on
        every up child at once without waiting, and, when that fails and
        the caller may wait, taken again one child after another in child
        order (so two clients cannot deadlock).  A child that went away
        does not count; any other refusal undoes the granted locks."""
        up = self._up_or_enotconn(quorum=not is_unlock)
        targets = [i for i in range(self.child_count) if up[i]]
        if is_unlock:
            replies = await self.fan(targets, lambda i: call(i, cmd, False))
            if not any(is_ok(r) for r in replies):
                raise FopError(self._final_errno(replies) or errno.ENOTCONN)
            return Reply()
        replies = await self.fan(targets, lambda i: call(i, nb_cmd, False))
        locked = [is_ok(r) for r in replies]
        if all(locked[i] or errno_of(replies[i]) == errno.ENOTCONN for i in targets) \
                and any(locked):
            return Reply()
        await self.fan([i for i in targets if locked[i]], lambda i: call(i, cmd, True))
        errors = [r.errno for r in replies if isinstance(r, FopError)]
        if cmd != block_cmd:
            raise FopError(errno.EAGAIN if errno.EAGAIN in errors else
                           cl.final_errno(errors) or errno.ENOTCONN)
        done: list[int] = []
        for i in targets:
            try:
                await call(i, block_cmd, False)
                done.append(i)
            except FopError as e:
                if e.errno == errno.ENOTCONN:
                    continue
                await self.fan(done, lambda j: call(j, cmd, True))
                raise
        if not done or (self.quorum_count and not cl.has_quorum(
                [i in done for i in range(self.child_count)], self.quorum_count)):
            await self.fan(done, lambda j: call(j, cmd, True))
            raise FopError(errno.ENOTCONN)
        return Reply()

    async def lk(self, fd, cmd, flock, xdata=None):
        """afr_lk: POSIX locks on every child one after another (so two
        clients cannot each win on a different child); GETLK asks the first
        up child; a failure undoes what was granted."""
        targets = self._fd_targets(fd)
        if not targets:
            raise FopError(errno.ENOTCONN)
        if cmd in (LockCmd.GETLK, LockCmd.GETLK_FD):
            return await self.children[targets[0]].lk(fd, cmd, flock, xdata)
        if flock.type == LockType.UNLCK:
            replies = await self.fan(targets, lambda i: self.children[i].lk(fd, cmd, flock,
                                                                             xdata))
            good = [r for r in replies if is_ok(r)]
            if not good:
                raise FopError(self._final_errno(replies) or errno.ENOTCONN)
            return good[0]
        granted: list[int] = []
        reply = None
        try:
            for i in targets:
                reply = await self.children[i].lk(fd, cmd, flock, xdata)
                granted.append(i)
        except FopError:
            undo = dataclasses.replace(flock, type=LockType.UNLCK)
            await self.fan(granted, lambda i: self.children[i].lk(fd, LockCmd.SETLK, undo,
                                                                   None))
            raise
        return reply

"""features/locks: removal of inodes that other clients hold inodelks on.

GlusterFS's pl_inode_remove_prepare, pl_inode_remove_cbk,
pl_inode_remove_unlocked and pl_inode_remove_inodelk (common.c) with the
unlink, rmdir and rename fops of posix.c.
"""

from __future__ import annotations

from glusterpy import fops
from glusterpy.fops import FopError, Loc

from .common import LockedInode, RemoveWaiter
from .counts import parent_target


class InodeRemoval:
    """unlink, rmdir and rename wait for other clients' inodelks on the victim."""

    async def unlink(self, loc, xflags, xdata=None):
        return await self._remove("unlink", loc, (loc, xflags), xdata, parent_target(loc))

    async def rmdir(self, loc, xflags, xdata=None):
        return await self._remove("rmdir", loc, (loc, xflags), xdata, parent_target(loc))

    async def rename(self, oldloc, newloc, xdata=None):
        targets = parent_target(oldloc)
        if newloc.gfid is not None:
            targets += parent_target(newloc)
        return await self._remove("rename", newloc, (oldloc, newloc), xdata, targets)

    async def _remove(self, fop_name, victim: Loc, args, xdata, targets):
        """PL_INODE_REMOVE: wait while other clients hold inodelks on the
        victim, hold new inodelks back while the removal runs."""
        pinode = await self._removal_prepare(victim)
        try:
            return await self._wind_counting(fop_name, args, xdata, targets)
        finally:
            if pinode is not None:
                pinode.remove_running -= 1
                self._settle_removal(pinode)
                self._tidy(pinode)

    async def _removal_prepare(self, victim: Loc) -> LockedInode | None:
        gfid = victim.gfid
        if gfid is None:
            if not any(dom.inodelks for pinode in self._inodes.values()
                       for dom in pinode.domains.values()):
                return None
            try:
                gfid = (await self.first_child.lookup(victim, None)).iatt.gfid
            except FopError:
                return None  # nothing there: the child answers the removal
        client = fops.caller.get().client
        while True:
            pinode = self._inode(gfid)
            if not self._has_other_owners(pinode, client, notify=True):
                pinode.removal_pending = True
                pinode.remove_running += 1
                self._send_contention()
                return pinode
            waiter = RemoveWaiter(client)
            pinode.remove_waiters.append(waiter)
            pinode.removal_pending = True
            self._send_contention()
            try:
                await waiter.woken.wait()
            except BaseException:
                if waiter.admitted:  # trio cancels no woken task; keep the count right anyway
                    pinode.remove_running -= 1
                else:
                    pinode.remove_waiters.remove(waiter)
                self._settle_removal(pinode)
                self._tidy(pinode)
                raise
            return pinode  # admitted by _wake_removals

    def _has_other_owners(self, pinode, client, notify: bool) -> bool:
        """pl_inode_has_owners: a user lock (pid >= 0) of another client."""
        found = False
        for dom in pinode.domains.values():
            for held in dom.inodelks:
                if held.client is client or held.pid < 0:
                    continue
                if not notify:
                    return True
                found = True
                self._note_contention(held)
        return found

    def _removal_blocks(self, pinode, lock) -> bool:
        """pl_inode_remove_inodelk: must this inodelk wait for a removal?"""
        if lock.pid < 0 or not pinode.removal_pending:
            return False
        if pinode.remove_running > 0:
            return True
        return not any(held.client is lock.client for dom in pinode.domains.values()
                       for held in dom.inodelks)

    def _wake_removals(self, pinode) -> None:
        """pl_inode_remove_unlocked + pl_inode_remove_wake: removals whose
        obstacles are gone run.  GlusterFS resumes them at once, so they
        count as running before any held-back inodelk is tried again; here
        they are admitted (counted) now and their tasks wind when they run."""
        if not pinode.removal_pending:
            return
        for waiter in list(pinode.remove_waiters):
            if not self._has_other_owners(pinode, waiter.client, notify=False):
                pinode.remove_waiters.remove(waiter)
                pinode.remove_running += 1
                waiter.admitted = True
                waiter.woken.set()

    def _settle_removal(self, pinode) -> None:
        """pl_inode_remove_cbk: with no removal running or waiting, inodelks
        held back may be granted."""
        if pinode.remove_running == 0 and not pinode.remove_waiters and pinode.removal_pending:
            pinode.removal_pending = False
            for dom in list(pinode.domains.values()):
                self._grant_blocked_inodelks(pinode, dom)

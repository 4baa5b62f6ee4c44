"""The namespace fops (afr-dir-write.c): entry transactions on the parents.
"""

from __future__ import annotations

import errno
import os
import stat as _stat
from typing import Sequence

from glusterpy.fops import (GFID, Caller, CreateReply, EntryReply, FopError, Iatt, Loc,
                            ParentReply, RenameReply, XattropType)
from glusterpy.keys import GFID_REQ

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.changelog import ENTRY_TXN, RENAME_TXN
from xlators.cluster.replicate.state import FdCtx, Lockee, Txn, is_ok


class AfrDirWrite:
    """create, mkdir, link, unlink, rmdir, rename and the others."""

    # ======================================================================
    # Namespace fops (afr-dir-write.c)

    def _entry_txn(self, op: str, parents: list[tuple[Loc, str]], *,
                   loc: Loc | None = None, extra: Sequence[Lockee] = (),
                   type_: str = ENTRY_TXN) -> Txn:
        for ploc, _ in parents:
            if ploc.gfid is None:
                raise FopError(errno.EINVAL, f"{op} needs the parent's gfid")
        txn = self._new_txn(type_, op, gfid=parents[0][0].gfid, loc=loc)
        txn.parents = parents
        lockees = [Lockee("entry", loc=p, basename=name) for p, name in parents]
        lockees.extend(extra)
        lockees.sort(key=Lockee.sort_key)
        txn.lockees = lockees
        return txn

    @staticmethod
    def _parent_of(loc: Loc) -> Loc:
        path = os.path.dirname(loc.path) if loc.path else None
        return Loc(gfid=loc.pargfid, path=path or None)

    async def _dir_write_finalize(self, txn: Txn, new_mode: int | None = None):
        """__afr_dir_write_finalize (+ afr_mark_entry_pending_changelog for
        create, mknod and mkdir: a new entry that some children missed gets
        its sources' accusation right away, so it is healed whole)."""
        good = [(i, r) for i, r in enumerate(txn.replies) if is_ok(r)]
        if not good:
            errors = [r.errno for r in txn.replies if isinstance(r, FopError)]
            raise FopError(cl.final_errno(errors) or txn.op_errno or errno.ENOTCONN)
        first_i, first = good[0]
        iatt = getattr(first, "iatt", None)
        chosen = first
        if iatt is not None and txn.op not in ("rename", "link"):
            iatts = [getattr(r, "iatt", None) if is_ok(r) else None for r in txn.replies]
            ctx = self._interpret(iatts, [r.xdata if is_ok(r) else None for r in txn.replies])
            if ctx is not None:
                read = self._read_subvol_decide(ctx, iatt)
                if read >= 0 and is_ok(txn.replies[read]):
                    chosen = txn.replies[read]
        if any(isinstance(r, FopError) for r in txn.replies):
            for ploc, _ in txn.parents:
                pctx = self.itable.ctx(self, ploc.gfid)
                if pctx is not None:
                    pctx.need_refresh = True
        pctx = self.itable.ctx(self, txn.parents[0][0].gfid)
        par = self._select_read(pctx.data, pctx.gfid, pctx.mode) \
            if pctx is not None and pctx.data else -1
        parent_reply = txn.replies[par] if par >= 0 and is_ok(txn.replies[par]) else first
        if txn.op in ("create", "mknod", "mkdir") and iatt is not None:
            await self._mark_new_entry(txn, chosen.iatt)
        return chosen, parent_reply

    async def _mark_new_entry(self, txn: Txn, iatt: Iatt) -> None:
        """afr_mark_new_entry_changelog."""
        n = self.child_count
        done = [txn.pre_op[i] and not txn.failed[i] for i in range(n)]
        if all(done):
            return
        if not cl.has_quorum([is_ok(r) for r in txn.replies], self.quorum_count):
            return
        pending = [not d for d in done]
        rows = cl.new_entry_rows(pending, iatt.mode, bool(self.opts.granular_entry_heal))
        xattr = cl.changelog_dict(self.pending_keys, rows)
        loc = Loc(gfid=iatt.gfid)
        await self.fan([i for i in range(n) if done[i]],
                        lambda i: self.children[i].xattrop(loc, XattropType.ADD_ARRAY, xattr,
                                                           None),
                        Caller(pid=txn.caller.pid, uid=txn.caller.uid, gid=txn.caller.gid,
                               lk_owner=os.urandom(4)))

    @staticmethod
    def _with_gfid_req(xdata) -> dict:
        req = dict(xdata or {})
        if GFID_REQ not in req:
            req[GFID_REQ] = GFID.random()   # every child must make the same gfid
        return req

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        parent = self._parent_of(loc)
        txn = self._entry_txn("create", [(parent, loc.name)], loc=loc)
        req = self._with_gfid_req(xdata)
        fdctx = fd.ctx[self] = FdCtx([False] * self.child_count, flags)

        async def finalize(t):
            for i, r in enumerate(t.replies):
                fdctx.opened_on[i] = is_ok(r)
            chosen, par = await self._dir_write_finalize(t)
            return CreateReply(fd, chosen.iatt, par.preparent, par.postparent,
                               xdata=chosen.xdata)

        reply = await self._transaction(
            txn, lambda i: self.children[i].create(loc, flags, mode, umask, fd, req), finalize)
        if fd.gfid is None:
            fd.gfid = reply.iatt.gfid
        return reply

    async def mknod(self, loc, mode, rdev, umask, xdata=None):
        return await self._new_entry("mknod", loc, xdata, lambda i, req: self.children[i].mknod(
            loc, mode, rdev, umask, req))

    async def mkdir(self, loc, mode, umask, xdata=None):
        return await self._new_entry("mkdir", loc, xdata, lambda i, req: self.children[i].mkdir(
            loc, mode, umask, req))

    async def symlink(self, linkname, loc, umask, xdata=None):
        return await self._new_entry("symlink", loc, xdata,
                                     lambda i, req: self.children[i].symlink(
                                         linkname, loc, umask, req))

    async def _new_entry(self, op, loc, xdata, call):
        txn = self._entry_txn(op, [(self._parent_of(loc), loc.name)], loc=loc)
        req = self._with_gfid_req(xdata)

        async def finalize(t):
            chosen, par = await self._dir_write_finalize(t)
            return EntryReply(chosen.iatt, par.preparent, par.postparent, xdata=chosen.xdata)

        return await self._transaction(txn, lambda i: call(i, req), finalize)

    async def link(self, oldloc, newloc, xdata=None):
        txn = self._entry_txn("link", [(self._parent_of(newloc), newloc.name)], loc=newloc)

        async def finalize(t):
            chosen, par = await self._dir_write_finalize(t)
            return EntryReply(chosen.iatt, par.preparent, par.postparent, xdata=chosen.xdata)

        return await self._transaction(
            txn, lambda i: self.children[i].link(oldloc, newloc, xdata), finalize)

    async def unlink(self, loc, xflags, xdata=None):
        txn = self._entry_txn("unlink", [(self._parent_of(loc), loc.name)], loc=loc)

        async def finalize(t):
            chosen, par = await self._dir_write_finalize(t)
            return ParentReply(par.preparent, par.postparent, xdata=chosen.xdata)

        return await self._transaction(
            txn, lambda i: self.children[i].unlink(loc, xflags, xdata), finalize)

    async def rmdir(self, loc, xflags, xdata=None):
        """afr_rmdir: also locks the directory itself, so nothing is created
        in it meanwhile."""
        gfid = loc.gfid if loc.gfid is not None else await self._gfid_of(loc)
        txn = self._entry_txn("rmdir", [(self._parent_of(loc), loc.name)], loc=loc,
                              extra=[Lockee("entry", loc=Loc(gfid=gfid, path=loc.path))])

        async def finalize(t):
            chosen, par = await self._dir_write_finalize(t)
            return ParentReply(par.preparent, par.postparent, xdata=chosen.xdata)

        return await self._transaction(
            txn, lambda i: self.children[i].rmdir(loc, xflags, xdata), finalize)

    async def rename(self, oldloc, newloc, xdata=None):
        """afr_rename: an entry transaction on both parents (and on the
        directory being replaced, if any)."""
        extra = []
        if newloc.gfid is not None:
            vctx = self.itable.ctx(self, newloc.gfid)
            if vctx is not None and _stat.S_ISDIR(vctx.mode):
                extra.append(Lockee("entry", loc=Loc(gfid=newloc.gfid, path=newloc.path)))
        txn = self._entry_txn("rename", [(self._parent_of(oldloc), oldloc.name),
                                         (self._parent_of(newloc), newloc.name)],
                              loc=oldloc, extra=extra, type_=RENAME_TXN)

        async def finalize(t):
            chosen, par = await self._dir_write_finalize(t)
            pctx2 = self.itable.ctx(self, newloc.pargfid)
            par2_i = self._select_read(pctx2.data, pctx2.gfid, pctx2.mode) \
                if pctx2 is not None and pctx2.data else -1
            par2 = t.replies[par2_i] if par2_i >= 0 and is_ok(t.replies[par2_i]) else par
            return RenameReply(chosen.iatt, par.preoldparent, par.postoldparent,
                               par2.prenewparent, par2.postnewparent, xdata=chosen.xdata)

        return await self._transaction(
            txn, lambda i: self.children[i].rename(oldloc, newloc, xdata), finalize)

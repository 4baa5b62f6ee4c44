"""The inode write fops (afr-inode-write.c): data and metadata transactions.
"""

from __future__ import annotations

import dataclasses
import errno
import os

from glusterpy.fops import GFID, CopyRangeReply, Fd, FopError, Loc, Reply, UInt, WriteReply
from glusterpy.keys import (ACTIVE_FD_COUNT, CHANGELOG_ROLLOVER_KEY, INODELK_COUNT,
                            INODELK_DOM_COUNT, SBRAIN_CHOICE_KEY, WRITE_IS_APPEND)

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.changelog import DATA_TXN, METADATA_TXN
from xlators.cluster.replicate.state import METADATA_LOCK_START, Lockee, Txn, is_ok


class AfrInodeWrite:
    """writev, truncate, setattr, setxattr and the other inode writes."""

    # ======================================================================
    # Inode write fops (afr-inode-write.c)

    def _inode_txn(self, type_: str, op: str, *, fd: Fd | None = None,
                   loc: Loc | None = None, gfid: GFID | None = None,
                   start: int = 0, length: int = 0) -> Txn:
        gfid = gfid if gfid is not None else (fd.gfid if fd is not None else loc.gfid)
        txn = self._new_txn(type_, op, gfid=gfid, fd=fd, loc=loc, start=start, length=length)
        txn.ctx = self._ctx(gfid)
        if type_ == METADATA_TXN:
            lstart, llen = METADATA_LOCK_START, 0
        elif self.arbiter is not None or self.opts.eager_lock or self.opts.full_lock:
            lstart, llen = 0, 0      # the whole file: no network split can interleave
        else:
            lstart, llen = start, length
        txn.lockees = [Lockee("inode", loc=Loc(gfid=gfid), fd=fd, start=lstart, length=llen)]
        return txn

    async def _inode_write_finalize(self, txn: Txn):
        """__afr_inode_write_finalize: the reply with the largest op_ret,
        the read child's on a tie."""
        ctx = txn.ctx
        readable = (ctx.metadata if txn.type == METADATA_TXN else ctx.data) \
            if ctx is not None and ctx.data is not None else None
        read = self._select_read(readable, txn.gfid, ctx.mode) if readable else -1
        best = None
        for i, r in enumerate(txn.replies):
            if not is_ok(r):
                continue
            count = getattr(r, "count", 0)
            if best is None or count > getattr(best, "count", 0) or \
                    (count == getattr(best, "count", 0) and i == read):
                best = r
            xd = r.xdata or {}
            if isinstance(xd.get(INODELK_COUNT), int) and txn.eager is not None:
                txn.eager.num_inodelks = max(txn.eager.num_inodelks if txn.op != "writev"
                                             else 0, xd[INODELK_COUNT])
        if best is None:
            errors = [r.errno for r in txn.replies if isinstance(r, FopError)]
            raise FopError(cl.final_errno(errors) or txn.op_errno or errno.ENOTCONN)
        return best

    async def _inode_write(self, txn: Txn, wind):
        return await self._transaction(txn, wind, self._inode_write_finalize)

    async def writev(self, fd, data, offset, flags, xdata=None):
        """afr_writev: a data transaction; the arbiter gets one byte."""
        await self._fix_open(fd)
        length = sum(len(b) for b in data) if isinstance(data, (list, tuple)) else len(data)
        ctx_fd = self._fd_ctx(fd)
        append = bool(ctx_fd.flags & os.O_APPEND)
        txn = self._inode_txn(DATA_TXN, "writev", fd=fd, start=0 if append else offset,
                              length=0 if append else length)
        txn.stable_write = bool((ctx_fd.flags | flags) & (os.O_SYNC | os.O_DSYNC))
        req = dict(xdata or {})
        req[ACTIVE_FD_COUNT] = UInt(4)
        req[INODELK_DOM_COUNT] = self.domain
        req[WRITE_IS_APPEND] = UInt(4)

        def wind(i):
            if i == self.arbiter:
                return self.children[i].writev(fd, b"\xff", offset, flags, req)
            return self.children[i].writev(fd, data, offset, flags, req)

        async def finalize(t: Txn):
            for i, r in enumerate(t.replies):
                if is_ok(r) and i == self.arbiter and r.count == 1:
                    t.replies[i] = dataclasses.replace(r, count=length)
            append_write = all(is_ok(r) and (r.xdata or {}).get(WRITE_IS_APPEND)
                               for r in t.replies if r is not None)
            if not t.stable_write and not append_write:
                t.ctx.unstable_write = True
            for r in t.replies:
                if is_ok(r) and isinstance((r.xdata or {}).get(ACTIVE_FD_COUNT), int):
                    t.ctx.open_fd_count = max(t.ctx.open_fd_count, r.xdata[ACTIVE_FD_COUNT])
            if t.eager is not None:
                counts = [(r.xdata or {}).get(INODELK_COUNT) for r in t.replies if is_ok(r)]
                counts = [c for c in counts if isinstance(c, int)]
                if counts:
                    t.eager.num_inodelks = max(counts)
            best = await self._inode_write_finalize(t)
            # afr_writev_handle_short_writes: a shorter write is a failure
            for i, r in enumerate(t.replies):
                if is_ok(r) and r.count < best.count:
                    t.failed[i] = True
            return WriteReply(best.prebuf, best.postbuf, count=best.count, xdata=best.xdata)

        return await self._transaction(txn, wind, finalize)

    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags,
                              xdata=None):
        """Each replica copies its own copy of the source into its own copy
        of the destination: one data transaction on the destination, as a
        writev.  A replica whose source copy is not a good one (pending
        heal) is not asked; the transaction counts it failed, so the
        changelog marks its destination for heal from the others.  The
        arbiter, which keeps no data, gets a one-byte write, as for writev."""
        if flags:
            raise FopError(errno.EINVAL, "copy_file_range takes no flags")
        if length < 0 or off_in < 0 or off_out < 0:
            raise FopError(errno.EINVAL)
        await self._fix_open(fd_in)
        await self._fix_open(fd_out)
        src = self._ctx(fd_in.gfid)
        if src.data is None or src.need_refresh or src.generation != self.event_generation:
            src = await self._refresh(fd_in.gfid, fd_in)
        good = self._readable_for(src, DATA_TXN)
        if not any(g and self.child_up[i] and i != self.arbiter for i, g in enumerate(good)):
            raise FopError(errno.EIO, f"no good copy of {fd_in.gfid} is up")
        txn = self._inode_txn(DATA_TXN, "copy_file_range", fd=fd_out, start=off_out,
                              length=length)

        async def stale(i):
            raise FopError(errno.EIO, f"{self.children[i].name} holds a stale copy of the source")

        def wind(i):
            if i == self.arbiter:
                return self.children[i].writev(fd_out, b"\xff", off_out, 0, xdata)
            if not good[i]:
                return stale(i)
            return self.children[i].copy_file_range(fd_in, off_in, fd_out, off_out, length,
                                                    flags, xdata)

        async def finalize(t: Txn):
            copies = [i for i, r in enumerate(t.replies) if is_ok(r) and i != self.arbiter]
            if not copies:
                return await self._inode_write_finalize(t)
            count = max(t.replies[i].count for i in copies)
            if self.arbiter is not None and is_ok(t.replies[self.arbiter]):
                a = t.replies[self.arbiter]
                t.replies[self.arbiter] = CopyRangeReply(None, a.prebuf, a.postbuf, count)
            best = await self._inode_write_finalize(t)
            # a shorter copy than another replica's is a failure, as a short write
            for i, r in enumerate(t.replies):
                if is_ok(r) and r.count < best.count:
                    t.failed[i] = True
            # the replicas that did not copy leave the destination's readable
            # set at once: the transaction's rule for every inode write
            # (transaction.py's _drop_failed_readers)
            return best

        return await self._transaction(txn, wind, finalize)

    async def truncate(self, loc, offset, xdata=None):
        gfid = await self._gfid_of(loc)
        txn = self._inode_txn(DATA_TXN, "truncate", loc=loc, gfid=gfid, start=offset)
        return await self._inode_write(
            txn, lambda i: self.children[i].truncate(loc, offset, xdata))

    async def ftruncate(self, fd, offset, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(DATA_TXN, "ftruncate", fd=fd, start=offset)
        return await self._inode_write(
            txn, lambda i: self.children[i].ftruncate(fd, offset, xdata))

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(DATA_TXN, "fallocate", fd=fd, start=offset)
        return await self._inode_write(
            txn, lambda i: self.children[i].fallocate(fd, mode, offset, length, xdata))

    async def discard(self, fd, offset, length, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(DATA_TXN, "discard", fd=fd, start=offset)
        return await self._inode_write(
            txn, lambda i: self.children[i].discard(fd, offset, length, xdata))

    async def zerofill(self, fd, offset, length, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(DATA_TXN, "zerofill", fd=fd, start=offset, length=length)
        return await self._inode_write(
            txn, lambda i: self.children[i].zerofill(fd, offset, length, xdata))

    async def fsync(self, fd, datasync, xdata=None):
        """afr_fsync: a data transaction (so a delayed post-op can ride on
        it); ``last-fsync`` ends the delay."""
        await self._fix_open(fd)
        txn = self._inode_txn(DATA_TXN, "fsync", fd=fd)
        req = dict(xdata or {})
        if req.get("last-fsync"):
            txn.disable_delay = True
        req[INODELK_DOM_COUNT] = self.domain
        if txn.ctx is not None:
            txn.ctx.unstable_write = False
        return await self._inode_write(
            txn, lambda i: self.children[i].fsync(fd, datasync, req))

    async def setattr(self, loc, stbuf, valid, xdata=None):
        gfid = await self._gfid_of(loc)
        txn = self._inode_txn(METADATA_TXN, "setattr", loc=loc, gfid=gfid)
        return await self._inode_write(
            txn, lambda i: self.children[i].setattr(loc, stbuf, valid, xdata))

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(METADATA_TXN, "fsetattr", fd=fd)
        return await self._inode_write(
            txn, lambda i: self.children[i].fsetattr(fd, stbuf, valid, xdata))

    async def setxattr(self, loc, xattrs, flags, xdata=None):
        gfid = await self._gfid_of(loc)
        if SBRAIN_CHOICE_KEY in (xattrs or {}):
            return self._set_split_brain_choice(gfid, xattrs[SBRAIN_CHOICE_KEY])
        if CHANGELOG_ROLLOVER_KEY in (xattrs or {}):
            return await self._rollover_journals(loc, xattrs, flags, xdata)
        txn = self._inode_txn(METADATA_TXN, "setxattr", loc=loc, gfid=gfid)
        return await self._inode_write(
            txn, lambda i: self.children[i].setxattr(loc, xattrs, flags, xdata))

    async def _rollover_journals(self, loc, xattrs, flags, xdata):
        """The bricks' explicit changelog rollover (features/changelog):
        a request, not a change - wound to every brick that is up, with no
        transaction, so a brick that is down marks nothing to heal; done
        when one brick did it (the asker reads its own brick's journal)."""
        up = self._up_or_enotconn()
        replies = await self.fan([i for i in range(self.child_count) if up[i]],
                                 lambda i: self.children[i].setxattr(loc, xattrs, flags, xdata))
        if not any(is_ok(r) for r in replies if r is not None):
            raise FopError(self._final_errno([r for r in replies if r is not None])
                           or errno.EIO)
        return Reply()

    async def fsetxattr(self, fd, xattrs, flags, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(METADATA_TXN, "fsetxattr", fd=fd)
        return await self._inode_write(
            txn, lambda i: self.children[i].fsetxattr(fd, xattrs, flags, xdata))

    async def removexattr(self, loc, name, xdata=None):
        gfid = await self._gfid_of(loc)
        txn = self._inode_txn(METADATA_TXN, "removexattr", loc=loc, gfid=gfid)
        return await self._inode_write(
            txn, lambda i: self.children[i].removexattr(loc, name, xdata))

    async def fremovexattr(self, fd, name, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(METADATA_TXN, "fremovexattr", fd=fd)
        return await self._inode_write(
            txn, lambda i: self.children[i].fremovexattr(fd, name, xdata))

    async def xattrop(self, loc, optype, xattrs, xdata=None):
        gfid = await self._gfid_of(loc)
        txn = self._inode_txn(METADATA_TXN, "xattrop", loc=loc, gfid=gfid)
        return await self._inode_write(
            txn, lambda i: self.children[i].xattrop(loc, optype, xattrs, xdata))

    async def fxattrop(self, fd, optype, xattrs, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(METADATA_TXN, "fxattrop", fd=fd)
        return await self._inode_write(
            txn, lambda i: self.children[i].fxattrop(fd, optype, xattrs, xdata))

    def _set_split_brain_choice(self, gfid: GFID, value) -> Reply:
        """``replica.split-brain-choice``: read a split-brain file from one
        child (or "none") until it is resolved."""
        text = value.rstrip(b"\0").decode() if isinstance(value, bytes) else str(value)
        ctx = self._ctx(gfid)
        if text == "none":
            ctx.spb_choice = -1
            return Reply()
        names = [c.name for c in self.children]
        if text not in names:
            raise FopError(errno.EINVAL, f"{text} is not a subvolume of {self.name}")
        ctx.spb_choice = names.index(text)
        return Reply()

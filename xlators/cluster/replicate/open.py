"""Opening and closing (afr-open.c, afr-common.c's flush and release): fds
open on every up child, and opened again where a child came back.
"""

from __future__ import annotations

import errno
import os

from glusterpy.fops import Fd, FopError, Loc, OpenReply, Reply

from xlators.cluster.replicate.state import FdCtx, is_ok


class AfrOpen:
    """open, opendir, flush, release and the fd's context."""

    # ======================================================================
    # Opening and closing

    async def open(self, loc, flags, fd, xdata=None):
        """afr_open: on every up child, O_TRUNC done afterwards as a
        replicated ftruncate."""
        up = self._up_or_enotconn(quorum=True)
        ctx = fd.ctx[self] = FdCtx([False] * self.child_count, flags)
        replies = await self.fan([i for i in range(self.child_count) if up[i]],
                                  lambda i: self.children[i].open(loc, flags & ~os.O_TRUNC,
                                                                  fd, xdata))
        for i, r in enumerate(replies):
            ctx.opened_on[i] = is_ok(r)
        self._replies_quorum(replies)
        if not any(ctx.opened_on):
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        if fd.gfid is None:
            fd.gfid = loc.gfid
        if flags & os.O_TRUNC:
            await self.ftruncate(fd, 0, None)
        good = next(r for r in replies if is_ok(r))
        return OpenReply(fd, xdata=good.xdata)

    async def opendir(self, loc, fd, xdata=None):
        up = self._up_or_enotconn(quorum=True)
        ctx = fd.ctx[self] = FdCtx([False] * self.child_count, 0, is_dir=True)
        replies = await self.fan([i for i in range(self.child_count) if up[i]],
                                  lambda i: self.children[i].opendir(loc, fd, None))
        for i, r in enumerate(replies):
            ctx.opened_on[i] = is_ok(r)
        self._replies_quorum(replies)
        if not any(ctx.opened_on):
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        if fd.gfid is None:
            fd.gfid = loc.gfid
        return OpenReply(fd)

    async def release(self, fd, xdata=None):
        """Nothing answers to a release (its caller learns nothing from it,
        and GlusterFS never waits for one): the fd's delayed post-op,
        unlock and the release itself - up to three round trips in a row,
        in this order, in one task - go on behind the caller.  Not when
        that post-op accuses a copy (`_fd_delayed_accuses`)."""
        if not self._fd_delayed_accuses(fd) and self._behind(self._release_now, fd):
            return Reply()
        return await self._release_now(fd)

    async def _release_now(self, fd):
        await self._wake_fd_delayed(fd)
        ctx = fd.ctx.get(self)
        for unlocked in ctx.unlocking if ctx is not None else ():
            await unlocked.wait()
        return await self._release_all("release", fd)

    async def releasedir(self, fd, xdata=None):
        return await self._release_all("releasedir", fd)

    async def _release_all(self, name: str, fd: Fd):
        ctx = fd.ctx.pop(self, None)
        targets = [i for i in range(self.child_count)
                   if ctx is None or ctx.opened_on[i]]
        await self.fan(targets, lambda i: getattr(self.children[i], name)(fd, None))
        return Reply()

    async def flush(self, fd, xdata=None):
        """afr_flush: the fd's delayed post-op first, then every up child,
        the unlock going on behind (afr_flush's stub resumes once the
        post-op is done)."""
        await self._wake_fd_delayed(fd, unlock_behind=True)
        targets = self._fd_targets(fd)
        replies = await self.fan(targets, lambda i: self.children[i].flush(fd, xdata))
        good = [r for r in replies if is_ok(r)]
        if not good:
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        return Reply(xdata=good[0].xdata)

    async def fsyncdir(self, fd, datasync, xdata=None):
        replies = await self.fan(self._fd_targets(fd),
                                  lambda i: self.children[i].fsyncdir(fd, datasync, xdata))
        good = [r for r in replies if is_ok(r)]
        if not good:
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        return Reply(xdata=good[0].xdata)

    async def statfs(self, loc, xdata=None):
        """afr_statfs: the child with the least space available answers."""
        up = self._up_or_enotconn(quorum=True)
        replies = await self.fan([i for i in range(self.child_count) if up[i]],
                                  lambda i: self.children[i].statfs(loc, xdata))
        good = [r for r in replies if is_ok(r)]
        if not good:
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        return min(good, key=lambda r: r.statvfs.bavail)

    def _fd_ctx(self, fd: Fd) -> FdCtx:
        ctx = fd.ctx.get(self)
        if ctx is None:
            # an fd opened below us or anonymous: treat it as open everywhere
            ctx = fd.ctx[self] = FdCtx([True] * self.child_count, fd.flags, fd.is_dir)
        return ctx

    def _fd_targets(self, fd: Fd) -> list[int]:
        ctx = self._fd_ctx(fd)
        return [i for i in range(self.child_count) if self.child_up[i] and ctx.opened_on[i]]

    async def _fix_open(self, fd: Fd) -> None:
        """afr_fix_open: open the fd on children that came up after it was
        opened (or whose open failed), as GlusterFS does before using it."""
        ctx = self._fd_ctx(fd)
        if fd.gfid is None:
            return
        need = [i for i in range(self.child_count) if self.child_up[i] and not ctx.opened_on[i]]
        if not need:
            return
        loc = Loc(gfid=fd.gfid)
        if ctx.is_dir:
            replies = await self.fan(need, lambda i: self.children[i].opendir(loc, fd, None))
        else:
            flags = ctx.flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC)
            replies = await self.fan(need, lambda i: self.children[i].open(loc, flags, fd,
                                                                            None))
        for i in need:
            ctx.opened_on[i] = is_ok(replies[i])

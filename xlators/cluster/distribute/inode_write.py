"""cluster/distribute's fops that change a file's data or attributes, kept
right while the file migrates: applied to the old copy and then the new one
(marked as written by a client), or held back while this translator copies
a block (dht-inode-write.c)."""

from __future__ import annotations

import errno
import os
import stat

from glusterpy.fops import GFID, Fd, FopError, Iatt, Loc, PrePostReply, SET_ATTR_MODE
from glusterpy.keys import PROTECT_WRITES_KEY

from . import layout as dl
from .common import DirCtx, FileFd, as_root, merge_dir_iatts, post_iatt, prepost


class DhtInodeWrite:
    """writev, truncate, fallocate, setattr and their kin."""

    # ======================================================================
    # inode fops that write

    async def truncate(self, loc, offset, xdata=None):
        """On the data subvolume; during a migration also on the new brick."""
        loc, ctx = await self._inode(loc)
        if isinstance(ctx, DirCtx):
            raise FopError(errno.EISDIR)
        mig = self.migrations.get(loc.gfid)
        if mig is not None:
            async with mig.lock:
                if not mig.done:
                    reply = await self._wind(mig.src, "truncate", loc, offset, xdata)
                    await self._wind(mig.dst, "truncate", Loc(gfid=loc.gfid), offset, xdata)
                    return prepost(reply)
        reply = await self._on_file(loc, ctx, lambda i: self._wind(i, "truncate", loc, offset,
                                                                     xdata))
        if reply.postbuf is not None and dl.is_migration_phase1(reply.postbuf.mode):
            target = await self._migration_target_of(ctx.cached, Loc(gfid=loc.gfid))
            if target is not None:
                await self._protect(target, Loc(gfid=loc.gfid), None)
                await self._wind(target, "truncate", Loc(gfid=loc.gfid), offset, xdata)
        return prepost(reply)

    async def setattr(self, loc, stbuf, valid, xdata=None):
        """A directory: the mds subvolume first, then the others (dht_setattr)."""
        loc, ctx = await self._inode(loc)
        if isinstance(ctx, DirCtx):
            replies = await self._dir_mds_then_all(
                loc, ctx, lambda i: self._wind(i, "setattr", loc, stbuf, valid, xdata))
            return PrePostReply(merge_dir_iatts([r.prebuf for r in replies]),
                                merge_dir_iatts([r.postbuf for r in replies]),
                                xdata=replies[0].xdata)
        reply = await self._on_file(loc, ctx, lambda i: self._wind(i, "setattr", loc, stbuf,
                                                                     valid, xdata))
        await self._keep_migration_mark(reply, valid, lambda i, ia: self._wind(
            i, "setattr", Loc(gfid=loc.gfid), ia, SET_ATTR_MODE, None), ctx.cached)
        return prepost(reply)

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        if self._fd_is_dir(fd):
            replies = await self._dir_fd_mds_then_all(
                fd, lambda i: self._wind(i, "fsetattr", fd, stbuf, valid, xdata))
            return PrePostReply(merge_dir_iatts([r.prebuf for r in replies]),
                                merge_dir_iatts([r.postbuf for r in replies]),
                                xdata=replies[0].xdata)
        reply = await self._fd_call(fd, lambda i: self._wind(i, "fsetattr", fd, stbuf, valid,
                                                             xdata))
        await self._keep_migration_mark(reply, valid, lambda i, ia: self._wind(
            i, "fsetattr", fd, ia, SET_ATTR_MODE, None), await self._fd_subvol(fd))
        return prepost(reply)

    async def _keep_migration_mark(self, reply, valid: int, set_mode, i: int) -> None:
        """A chmod of a file being migrated must not wipe the migration's
        mark (S_ISGID|S_ISVTX): other clients go by it."""
        pre, post = reply.prebuf, reply.postbuf
        if valid & SET_ATTR_MODE and pre is not None and post is not None and \
                dl.is_migration_phase1(pre.mode) and not dl.is_migration_phase1(post.mode):
            mark = stat.S_IMODE(post.mode) | stat.S_ISGID | stat.S_ISVTX
            await set_mode(i, Iatt(mode=mark))

    async def writev(self, fd, data, offset, flags, xdata=None):
        return await self._fd_data(fd, "writev", data, offset, flags, xdata)

    async def ftruncate(self, fd, offset, xdata=None):
        return await self._fd_data(fd, "ftruncate", offset, xdata)

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        return await self._fd_data(fd, "fallocate", mode, offset, length, xdata)

    async def discard(self, fd, offset, length, xdata=None):
        return await self._fd_data(fd, "discard", offset, length, xdata)

    async def zerofill(self, fd, offset, length, xdata=None):
        return await self._fd_data(fd, "zerofill", offset, length, xdata)

    # ======================================================================
    # helpers: writes during a migration

    async def _fd_data(self, fd: Fd, fop: str, *args):
        """A fop that changes a file's data (writev, ftruncate, fallocate,
        discard, zerofill), as dht-inode-write.c: during a migration's copy
        (phase 1) it is applied to the old copy and then to the new one,
        marked with trusted.glusterfs.protect.writes first so that the
        migrating process notices and gives up instead of overwriting it
        (GlusterFS's GF_PROTECT_FROM_EXTERNAL_WRITES); a migration by this
        translator instead holds the writes back while it copies a block."""
        gfid = GFID(fd.gfid) if fd.gfid is not None else None
        mig = self.migrations.get(gfid) if gfid is not None else None
        if mig is not None:
            async with mig.lock:
                if not mig.done:
                    i = await self._fd_subvol(fd)
                    reply = await self._wind(i, fop, fd, *args)
                    if i == mig.src:
                        await self._fd_open_on(fd, mig.dst)
                        await self._wind(mig.dst, fop, fd, *_mirror_args(fd, fop, args, reply))
                    return prepost(reply)
        reply = await self._fd_call(fd, lambda i: self._wind(i, fop, fd, *args))
        post = post_iatt(reply)
        if post is not None and dl.is_migration_phase1(post.mode) and self.count > 1:
            i = await self._fd_subvol(fd)
            target = await self._fd_migration_target(fd, i)
            if target is not None and target != i:
                await self._fd_open_on(fd, target)
                await self._protect(target, None, fd)
                await self._wind(target, fop, fd, *_mirror_args(fd, fop, args, reply))
        return prepost(reply)

    async def _fd_migration_target(self, fd: Fd, i: int) -> int | None:
        """dht_rebalance_in_progress_check: the subvolume a file is being
        migrated to, from the linkto xattr of the copy being migrated."""
        where = fd.ctx.get(self)
        if isinstance(where, FileFd) and where.migration_target is not None:
            return where.migration_target
        try:
            reply = await self._wind(i, "fgetxattr", fd, self.linkto_key, None)
        except FopError:
            return None
        target = self._linkto_subvol(reply.dict)
        if isinstance(where, FileFd):
            where.migration_target = target
        return target

    async def _migration_target_of(self, i: int, loc: Loc) -> int | None:
        try:
            reply = await self._wind(i, "getxattr", loc, self.linkto_key, None)
        except FopError:
            return None
        return self._linkto_subvol(reply.dict)

    async def _protect(self, i: int, loc: Loc | None, fd: Fd | None) -> None:
        """Mark the new copy as written by a client (before writing it)."""
        value = {PROTECT_WRITES_KEY: b"1\0"}
        try:
            with as_root():
                if fd is not None:
                    await self._wind(i, "fsetxattr", fd, value, 0, None)
                else:
                    await self._wind(i, "setxattr", loc, value, 0, None)
        except FopError as e:
            self.log.warning("could not mark a migrating file as written: %s", e)


def _mirror_args(fd: Fd, fop: str, args: tuple, reply) -> tuple:
    """A data fop's arguments for the migration's new copy: a write through
    an O_APPEND fd landed at the old copy's end, so the new copy (opened
    without O_APPEND) gets it at that offset."""
    if fop == "writev" and fd.flags & os.O_APPEND:
        data, offset, flags, xdata = args
        post = reply.postbuf
        if post is not None and reply.count and post.size >= reply.count:
            offset = post.size - reply.count
        return data, offset, flags, xdata
    return args

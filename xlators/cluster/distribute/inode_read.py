"""cluster/distribute's fops that read a file or act on one subvolume: a
file's data subvolume (following a migration), a directory's first one or
all of them (dht-inode-read.c: open, stat, readv, access, flush, fsync,
locks, xattrop ...), and the helpers that find a file's or fd's subvolume."""

from __future__ import annotations

import errno
import os
from typing import Awaitable, Callable

from glusterpy.fops import (GFID, CopyRangeReply, Fd, FopError, Loc, OpenReply, Reply, SeekWhat,
                            StatReply)
from glusterpy.keys import GFID2PATH_VIRT_KEY

from . import layout as dl
from .common import (MISSING, DirCtx, DirFd, FileCtx, FileFd, merge_dir_iatts, post_iatt,
                     prepost, strip_phase1)

#: copy_file_range between two bricks moves data in pieces of this size
_COPY_CHUNK = 1 << 20


class DhtInodeRead:
    """Fops on one inode that leave its data alone."""

    # ======================================================================
    # inode fops: a file's data subvolume, or every brick of a directory

    async def stat(self, loc, xdata=None):
        loc, ctx = await self._inode(loc)
        if isinstance(ctx, DirCtx):
            replies = await self._dir_each(ctx, lambda i: self._wind(i, "stat", loc, xdata))
            return StatReply(merge_dir_iatts([r.iatt for r in replies]),
                             xdata=replies[0].xdata)
        reply = await self._on_file(loc, ctx, lambda i: self._wind(i, "stat", loc, xdata))
        return StatReply(strip_phase1(reply.iatt), xdata=reply.xdata)

    async def fstat(self, fd, xdata=None):
        if self._fd_is_dir(fd):
            replies = await self._dir_fd_all(fd, lambda i: self._wind(i, "fstat", fd, xdata))
            return StatReply(merge_dir_iatts([r.iatt for r in replies]),
                             xdata=replies[0].xdata)
        reply = await self._fd_call(fd, lambda i: self._wind(i, "fstat", fd, xdata))
        return StatReply(strip_phase1(reply.iatt), xdata=reply.xdata)

    async def access(self, loc, mask, xdata=None):
        loc, ctx = await self._inode(loc)
        return await self._on_inode(loc, ctx, lambda i: self._wind(i, "access", loc, mask, xdata))

    async def readlink(self, loc, size, xdata=None):
        loc, ctx = await self._inode(loc)
        if isinstance(ctx, DirCtx):
            raise FopError(errno.EINVAL)
        return await self._on_file(loc, ctx, lambda i: self._wind(i, "readlink", loc, size,
                                                                    xdata))

    async def xattrop(self, loc, optype, xattrs, xdata=None):
        """A file's data subvolume; a directory's first subvolume (dht_xattrop)."""
        loc, ctx = await self._inode(loc)
        return await self._on_inode(loc, ctx, lambda i: self._wind(i, "xattrop", loc, optype,
                                                                     xattrs, xdata))

    async def fxattrop(self, fd, optype, xattrs, xdata=None):
        if self._fd_is_dir(fd):
            return await self._wind(await self._dir_fd_lead(fd), "fxattrop", fd, optype, xattrs,
                                    xdata)
        return await self._fd_call(fd, lambda i: self._wind(i, "fxattrop", fd, optype, xattrs,
                                                            xdata))

    # -- locks and leases: a file's data subvolume, a directory's first -------

    async def inodelk(self, volume, loc, cmd, flock, xdata=None):
        loc, ctx = await self._inode(loc)
        return await self._on_inode(loc, ctx, lambda i: self._wind(i, "inodelk", volume, loc,
                                                                     cmd, flock, xdata))

    async def finodelk(self, volume, fd, cmd, flock, xdata=None):
        if self._fd_is_dir(fd):
            return await self._wind(await self._dir_fd_lead(fd), "finodelk", volume, fd, cmd,
                                    flock, xdata)
        return await self._fd_call(fd, lambda i: self._wind(i, "finodelk", volume, fd, cmd,
                                                            flock, xdata))

    async def entrylk(self, volume, loc, basename, cmd, type, xdata=None):
        loc, ctx = await self._inode(loc)
        return await self._on_inode(loc, ctx, lambda i: self._wind(
            i, "entrylk", volume, loc, basename, cmd, type, xdata))

    async def fentrylk(self, volume, fd, basename, cmd, type, xdata=None):
        if self._fd_is_dir(fd):
            return await self._wind(await self._dir_fd_lead(fd), "fentrylk", volume, fd,
                                    basename, cmd, type, xdata)
        return await self._fd_call(fd, lambda i: self._wind(i, "fentrylk", volume, fd, basename,
                                                            cmd, type, xdata))

    async def lk(self, fd, cmd, flock, xdata=None):
        return await self._fd_call(fd, lambda i: self._wind(i, "lk", fd, cmd, flock, xdata))

    async def lease(self, loc, lease, xdata=None):
        loc, ctx = await self._inode(loc)
        if isinstance(ctx, DirCtx):
            raise FopError(errno.EINVAL, "leases are taken on files")
        return await self._on_file(loc, ctx, lambda i: self._wind(i, "lease", loc, lease, xdata))

    async def getactivelk(self, loc, xdata=None):
        loc, ctx = await self._inode(loc)
        return await self._on_inode(loc, ctx, lambda i: self._wind(i, "getactivelk", loc,
                                                                     xdata))

    async def setactivelk(self, loc, locks, xdata=None):
        loc, ctx = await self._inode(loc)
        return await self._on_inode(loc, ctx, lambda i: self._wind(i, "setactivelk", loc, locks,
                                                                     xdata))

    # ======================================================================
    # open files

    async def open(self, loc, flags, fd, xdata=None):
        """dht_open: on the data subvolume; the fd remembers which."""
        loc, ctx = await self._inode(loc)
        if isinstance(ctx, DirCtx):
            return await self.opendir(loc, fd, xdata)

        async def do_open(i: int):
            reply = await self._wind(i, "open", loc, flags, fd, xdata)
            fd.ctx[self] = FileFd(i, {i})
            return reply

        reply = await self._on_file(loc, ctx, do_open)
        if fd.gfid is None:
            fd.gfid = loc.gfid
        return OpenReply(reply.fd, xdata=reply.xdata)

    async def readv(self, fd, size, offset, flags, xdata=None):
        reply = await self._fd_call(fd, lambda i: self._wind(i, "readv", fd, size, offset, flags,
                                                             xdata))
        if reply.iatt is not None:
            reply.iatt = strip_phase1(reply.iatt)
        return reply

    async def flush(self, fd, xdata=None):
        if self._fd_is_dir(fd):
            return Reply()
        return await self._fd_call(fd, lambda i: self._wind(i, "flush", fd, xdata))

    async def fsync(self, fd, datasync, xdata=None):
        return prepost(await self._fd_call(fd, lambda i: self._wind(i, "fsync", fd, datasync,
                                                                     xdata)))

    async def seek(self, fd, offset, what, xdata=None):
        return await self._fd_call(fd, lambda i: self._wind(i, "seek", fd, offset, what, xdata))

    async def rchecksum(self, fd, offset, length, xdata=None):
        return await self._fd_call(fd, lambda i: self._wind(i, "rchecksum", fd, offset, length,
                                                            xdata))

    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags, xdata=None):
        """Both files on one brick: wound there, so the brick copies (and
        reflinks where its filesystem can).  On two bricks, an empty
        destination (what `cp` and `vm clone` copy into) first moves to the
        source's brick (`_colocate`), leaving a linkto file where its name
        hashes - then the copy is on one brick and no data crosses the
        client.  Otherwise (a destination with data, or one that cannot
        move) the data moves here, through this translator (`_copy_across`).
        A clone made through gfapi's `copy_file` is created beside its
        source in the first place (COLOCATE_KEY)."""
        if flags:
            raise FopError(errno.EINVAL, "copy_file_range takes no flags")
        if length < 0 or off_in < 0 or off_out < 0:
            raise FopError(errno.EINVAL)
        src = await self._fd_subvol(fd_in)
        dst = await self._fd_subvol(fd_out)
        if src != dst and length:
            dst = await self._colocate(fd_out, dst, src)
        if src == dst:
            return await self._wind(src, "copy_file_range", fd_in, off_in, fd_out, off_out,
                                    length, flags, xdata)
        return await self._copy_across(fd_in, off_in, fd_out, off_out, length)

    async def _colocate(self, fd: Fd, where: int, to: int) -> int:
        """Move the empty file open as `fd` from subvolume `where` to `to`
        and open `fd` there: the data subvolume it has afterwards.

        Why a move and not a brick pulling from another brick: DHT already
        knows a name whose data is off its hashed brick - a linkto file, as
        rebalance leaves behind - so every client (GlusterFS's too), a
        fresh lookup, unlink and a later rebalance all handle the result,
        and the move of an empty file is a few metadata fops through
        `migrate_file`, with its phases guarding writers of other clients.
        A brick-to-brick pull would need bricks to be each other's clients
        (connections, auth, a new fop).  The move needs the file's one name
        from its trusted.gfid2path xattr (storage/posix's gfid2path, on by
        default); a file with data, several names, no recorded name, or not
        on its hashed brick stays where it is."""
        try:
            st = (await self._wind(where, "fstat", fd, None)).iatt
            if not st.is_reg or st.size or st.nlink != 1:
                return where
            # the one name (nlink 1, so no separator to split on), as a path
            raw = (await self._wind(where, "fgetxattr", fd, GFID2PATH_VIRT_KEY, None)) \
                .dict.get(GFID2PATH_VIRT_KEY)
            path = os.fsdecode(raw).rstrip("\0") if isinstance(raw, bytes) else str(raw or "")
            if not path.startswith("/") or path == "/":
                return where
            loc, parent = await self._entry(Loc(path=path, gfid=GFID(st.gfid)))
            if self._hashed(parent, loc.name) != where or not self._usable(to, parent):
                return where
            if not await self.migrate_file(loc, to):
                return where
        except (FopError, ValueError) as e:
            self.log.info("copy_file_range: <gfid:%s> not moved beside its source: %s",
                          fd.gfid, e)
            return where
        await self._fd_open_on(fd, to)
        here = fd.ctx.get(self)
        if isinstance(here, FileFd):
            here.cached = to
        return to

    async def _copy_across(self, fd_in: Fd, off_in: int, fd_out: Fd, off_out: int,
                           length: int) -> CopyRangeReply:
        """readv and writev through this translator, the source's data
        extents only (SEEK_DATA/SEEK_HOLE): holes stay holes in the copy.
        The count covers a trailing hole too, as copy_file_range(2)'s does;
        the destination is extended over it."""
        pre = (await self.fstat(fd_out, None)).iatt
        end = min(off_in + length, (await self.fstat(fd_in, None)).iatt.size)
        pos, post = off_in, pre
        while pos < end:
            data_at = min(end, await self._next_extent(fd_in, pos, SeekWhat.DATA, end))
            # a hole of the source over data of the destination: punched
            hole_end = min(off_out + data_at - off_in, pre.size)
            if hole_end > off_out + pos - off_in:
                await self.discard(fd_out, off_out + pos - off_in,
                                   hole_end - (off_out + pos - off_in), None)
            if data_at >= end:
                break
            stop = min(end, await self._next_extent(fd_in, data_at, SeekWhat.HOLE, end))
            while data_at < stop:
                chunk = await self.readv(fd_in, min(_COPY_CHUNK, stop - data_at), data_at, 0,
                                         None)
                if not len(chunk.data):     # the source shrank meanwhile
                    end = stop = data_at
                    break
                wrote = await self.writev(fd_out, chunk.data, off_out + data_at - off_in, 0,
                                          None)
                post = wrote.postbuf or post
                data_at += wrote.count
                if wrote.count < len(chunk.data):
                    end = stop = data_at
                    break
            pos = stop
        copied = max(0, end - off_in)
        if copied and (post.size if post is not None else 0) < off_out + copied:
            post = (await self.ftruncate(fd_out, off_out + copied, None)).postbuf
        src = (await self.fstat(fd_in, None)).iatt
        return CopyRangeReply(src, pre, post, copied)

    async def _next_extent(self, fd: Fd, offset: int, what: SeekWhat, end: int) -> int:
        """seek's answer; `end` when there is no more data, `offset` (for
        data) or `end` (for a hole) when the brick cannot say."""
        try:
            return (await self.seek(fd, offset, what, None)).offset
        except FopError as e:
            if e.errno == errno.ENXIO:
                return end
            if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL):
                return offset if what == SeekWhat.DATA else end
            raise

    async def release(self, fd, xdata=None):
        where = fd.ctx.pop(self, None)
        if isinstance(where, DirFd):
            return await self._release_dir(fd, where, xdata)
        if where is None:
            return Reply()
        for i in sorted(where.opened):
            if self._up[i]:
                try:
                    await self.children[i].release(fd, xdata)
                except FopError as e:
                    self.log.debug("release on %s: %s", self.names[i], e)
        return Reply()

    # ======================================================================
    # helpers: files

    async def _on_inode(self, loc: Loc, ctx, call: Callable[[int], Awaitable]):
        """A single-brick fop: a directory's first subvolume, a file's data."""
        if isinstance(ctx, DirCtx):
            return await call(self._dir_first(ctx))
        return await self._on_file(loc, ctx, call)

    async def _on_file(self, loc: Loc, ctx: FileCtx, call: Callable[[int], Awaitable]):
        """`call` on the file's data subvolume; if that brick no longer has
        it (ENOENT/ESTALE: migrated, or the context was stale), rediscover
        the gfid and try once more where it is now."""
        try:
            return await call(ctx.cached)
        except FopError as e:
            if e.errno not in MISSING or loc.gfid is None or self.count == 1:
                raise
            first = e
        try:
            await self._discover(Loc(gfid=loc.gfid, path=loc.path), None)
        except FopError:
            raise first from None
        now = self.itable.ctx(self, loc.gfid)
        if not isinstance(now, FileCtx) or now.cached == ctx.cached:
            raise first
        return await call(now.cached)

    async def _fd_subvol(self, fd: Fd) -> int:
        where = fd.ctx.get(self)
        if isinstance(where, FileFd):
            return where.cached
        if isinstance(where, DirFd) or fd.gfid is None:
            raise FopError(errno.EBADF)
        ctx = self.itable.ctx(self, GFID(fd.gfid))
        if ctx is None:
            await self._discover(Loc(gfid=GFID(fd.gfid)), None)
            ctx = self.itable.ctx(self, GFID(fd.gfid))
        if isinstance(ctx, DirCtx):
            raise FopError(errno.EISDIR)
        if not isinstance(ctx, FileCtx):
            raise FopError(errno.ESTALE)
        return ctx.cached

    async def _fd_call(self, fd: Fd, call: Callable[[int], Awaitable]):
        """An fd fop on the fd's subvolume; an anonymous fd (never opened
        here) goes where its gfid's data is.  A file migrated away from
        under the fd - the fop fails with ENOENT/ESTALE/EBADF, or its reply
        shows the old copy turned into a linkto file (migration phase 2,
        dht_rebalance_complete_check) - is reopened on its new brick and
        the fop is sent there."""
        i = await self._fd_subvol(fd)
        try:
            reply = await call(i)
        except FopError as e:
            if e.errno not in (*MISSING, errno.EBADF) or fd.gfid is None or self.count == 1:
                raise
            moved = await self._follow_migration(fd, i)
            if moved is None:
                raise
            return await call(moved)
        post = post_iatt(reply)
        if post is not None and dl.is_linkto_mode(post.mode) and self.count > 1:
            moved = await self._follow_migration(fd, i)
            if moved is not None:
                return await call(moved)
        return reply

    async def _follow_migration(self, fd: Fd, old: int) -> int | None:
        """The fd's file is no longer on `old`: find it, open the fd there."""
        if fd.gfid is None:
            return None
        gfid = GFID(fd.gfid)
        try:
            await self._discover(Loc(gfid=gfid), None)
        except FopError:
            return None
        ctx = self.itable.ctx(self, gfid)
        if not isinstance(ctx, FileCtx) or ctx.cached == old:
            return None
        await self._fd_open_on(fd, ctx.cached)
        where = fd.ctx.get(self)
        if isinstance(where, FileFd):
            where.cached = ctx.cached
        return ctx.cached

    async def _fd_open_on(self, fd: Fd, i: int) -> None:
        """Open an fd this translator opened elsewhere on subvolume i too
        (an anonymous fd needs nothing: the bricks open those on demand)."""
        where = fd.ctx.get(self)
        if not isinstance(where, FileFd) or i in where.opened:
            return
        flags = fd.flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_APPEND)
        await self._wind(i, "open", Loc(gfid=GFID(fd.gfid)), flags, fd, None)
        where.opened.add(i)

"""cluster/distribute's rename: of files by dht-rename.c's steps (a linkto on
the new hashed brick, a hard link on the data brick, the rename, then the
old names removed), of directories on every brick, undone if one fails
(dht-rename.c)."""

from __future__ import annotations

import dataclasses
import errno

from glusterpy.fops import Fd, FopError, Loc, RenameReply, UInt
from glusterpy.keys import INTERNAL_FOP

from .common import (MISSING, DirCtx, FileCtx, as_root, fixed_dir, merge_dir_iatts,
                     strip_phase1)


class DhtRename:
    """The rename fop and its helpers."""

    async def rename(self, oldloc, newloc, xdata=None):
        """dht_rename: a directory on every brick (new hashed brick first,
        undone on failure), a file by dht-rename.c's steps."""
        src, sparent = await self._entry(oldloc)
        src, sctx = await self._existing(src, sparent)
        dst, dparent = await self._entry(newloc)
        dst_ctx = None
        try:
            dst, dst_ctx = await self._existing(dst, dparent)
        except FopError as e:
            if e.errno not in MISSING:
                raise
            dst = dataclasses.replace(dst, gfid=None)
        if dst_ctx is not None and dst.gfid == src.gfid:
            # the same inode under both names: POSIX says do nothing
            reply = await self.lookup(src, None)
            return RenameReply(reply.iatt, reply.postparent, reply.postparent,
                               reply.postparent, reply.postparent)
        if isinstance(dst_ctx, DirCtx) and src.path and dst.path and \
                src.path.startswith(dst.path.rstrip("/") + "/"):
            # the kernel's order: a target that holds the source is ENOTEMPTY
            raise FopError(errno.ENOTEMPTY)
        if isinstance(sctx, DirCtx):
            # a file in the way, or a target inside the source: the bricks
            # answer as the kernel does (ENOTDIR, EINVAL)
            return await self._rename_dir(src, sctx, dst, dparent, dst_ctx, xdata)
        if isinstance(dst_ctx, DirCtx):
            raise FopError(errno.EISDIR)
        return await self._rename_file(src, sparent, sctx, dst, dparent, dst_ctx, xdata)

    # ======================================================================
    # helpers: rename

    async def _rename_file(self, src: Loc, sparent: DirCtx, sctx: FileCtx, dst: Loc,
                           dparent: DirCtx, dst_ctx: FileCtx | None, xdata) -> RenameReply:
        """dht_rename_create_links, dht_do_rename, dht_rename_cbk and
        dht_rename_unlink, for src_hashed SH, src_cached SC, dst_hashed DH,
        dst_cached DC."""
        sh = self._hashed(sparent, src.name)
        sc = sctx.cached
        dh = self._hashed(dparent, dst.name)
        if sh is None or dh is None:
            raise FopError(errno.EINVAL, "no hashed subvolume in the layout")
        dc = dst_ctx.cached if dst_ctx is not None else None
        self._require_up(sc)
        self._require_up(dh)
        linked = added_link = False
        if sc == dc:
            if dh != dc:
                with as_root():
                    try:
                        await self._wind(dh, "unlink", dst, 0, {INTERNAL_FOP: "yes"})
                    except FopError as e:
                        if e.errno not in MISSING:
                            raise
        elif sc != dh:
            if dh != sh:
                # a linkto for the *old* name on the new hashed brick: the
                # rename there then turns it into the new name's linkto
                await self._create_linkto(dh, sc, src, src.gfid)
                linked = True
            try:
                await self._link_replacing_linkto(sc, src, dst)
                added_link = True
            except FopError:
                if linked:
                    await self._drop_linkto(dh, src)
                raise
        where = sc if sc == dc else dh
        try:
            reply = await self._wind(where, "rename", src, dst, xdata)
        except FopError:
            if linked and dh != sh and dh != sc:
                await self._drop_linkto(dh, src)
            if added_link and sc != dh:
                with as_root():
                    try:
                        await self._wind(sc, "unlink", dst, 0, {INTERNAL_FOP: "yes"})
                    except FopError as e:
                        self.log.warning("%s: link left after a failed rename: %s", dst, e)
            raise
        if sc == dc and dh != dc:
            try:
                await self._create_linkto(dh, sc, dst, src.gfid)
            except FopError as e:
                self.log.info("%s: linkto file on %s not created: %s", dst, self.names[dh], e)
        cleanups = []
        if sc != dh and sc != dc:
            cleanups.append((sc, src))      # the old name of the data file
        if sh != where and sh != sc:
            cleanups.append((sh, src))      # the old name's linkto file
        if dc is not None and dc != dh and dc != sc:
            cleanups.append((dc, dst))      # the replaced file's data
        for i, loc in cleanups:
            try:
                with as_root():
                    await self._wind(i, "unlink", dataclasses.replace(loc, gfid=None), 0,
                                     {INTERNAL_FOP: "yes"})
            except FopError as e:
                if e.errno not in MISSING:
                    self.log.warning("%s: rename left %s on %s: %s", src, loc,
                                     self.names[i], e)
        iatt = reply.iatt
        if where != sc:
            # the rename moved a linkto file: the file is described by its data
            try:
                iatt = (await self._wind(sc, "stat", Loc(gfid=src.gfid), None)).iatt
            except FopError as e:
                self.log.debug("%s: stat after rename: %s", dst, e)
        self._remember_file(src.gfid, sc)
        return RenameReply(strip_phase1(iatt), fixed_dir(reply.preoldparent),
                           fixed_dir(reply.postoldparent), fixed_dir(reply.prenewparent),
                           fixed_dir(reply.postnewparent), xdata=reply.xdata)

    async def _link_replacing_linkto(self, i: int, src: Loc, dst: Loc):
        """link src to dst on brick i; a stale linkto file in the way is
        removed first (GlusterFS's force-replace)."""
        try:
            with as_root():
                return await self._wind(i, "link", src, dataclasses.replace(dst, gfid=None),
                                        {INTERNAL_FOP: "yes"})
        except FopError as e:
            if e.errno != errno.EEXIST:
                raise
        existing = await self._wind(i, "lookup", dataclasses.replace(dst, gfid=None),
                                    {self.linkto_key: UInt(256)})
        if not self._is_linkto(existing.iatt, existing.xdata):
            raise FopError(errno.EEXIST)
        await self._unlink_stale_linkto(i, dst)
        with as_root():
            return await self._wind(i, "link", src, dataclasses.replace(dst, gfid=None),
                                    {INTERNAL_FOP: "yes"})

    async def _rename_dir(self, src: Loc, sctx: DirCtx, dst: Loc, dparent: DirCtx,
                          dst_ctx: DirCtx | None, xdata) -> RenameReply:
        """dht_rename_dir: every brick must be up; an existing target must be
        empty everywhere; the new name's hashed brick first, then the
        others; a failure anywhere is undone where it succeeded."""
        for i in range(self.count):
            self._require_up(i)
        if isinstance(dst_ctx, DirCtx):
            try:
                await self._check_target_empty(dst)
            except FopError as e:
                # the kernel's order: a target inside the source is EINVAL first
                if e.errno == errno.ENOTEMPTY and src.path and dst.path and \
                        dst.path.startswith(src.path.rstrip("/") + "/"):
                    raise FopError(errno.EINVAL) from None
                raise
        dh = self._hashed(dparent, dst.name)
        if dh is None:
            raise FopError(errno.EIO, f"{dst}: no subvolume in the layout for this name")
        dst_plain = dataclasses.replace(dst, gfid=dst.gfid if dst_ctx is not None else None)
        first = await self._wind(dh, "rename", src, dst_plain, xdata)
        others = [i for i in range(self.count) if i != dh]
        results = await self._each(others, lambda i: self._wind(i, "rename", src, dst_plain,
                                                               xdata))
        failed = {i: r for i, r in results.items() if isinstance(r, FopError)}
        if failed:
            done = [dh] + [i for i in others if i not in failed]
            back_src = dataclasses.replace(dst, gfid=src.gfid)
            back_dst = dataclasses.replace(src, gfid=None)
            for i in done:
                try:
                    await self._wind(i, "rename", back_src, back_dst, None)
                except FopError as e:
                    self.log.error("%s: rename not undone on %s: %s", src, self.names[i], e)
            raise next(iter(failed.values()))
        if isinstance(dst_ctx, DirCtx):
            self._forget(dst.gfid)
        replies = [first] + [results[i] for i in others]
        return RenameReply(merge_dir_iatts([r.iatt for r in replies]),
                           fixed_dir(first.preoldparent), fixed_dir(first.postoldparent),
                           fixed_dir(first.prenewparent), fixed_dir(first.postnewparent))

    async def _check_target_empty(self, dst: Loc) -> None:
        """dht_rename_readdir_cbk: a directory being replaced must be empty
        on every brick (linkto files count)."""
        for i in range(self.count):
            fd = Fd(gfid=dst.gfid, is_dir=True)
            try:
                await self._wind(i, "opendir", dst, fd, None)
            except FopError as e:
                if e.errno in MISSING:
                    continue
                raise
            try:
                entries = (await self._wind(i, "readdir", fd, 4096, 0, None)).entries
                if any(e.name not in (".", "..") for e in entries):
                    raise FopError(errno.ENOTEMPTY)
            finally:
                try:
                    await self.children[i].releasedir(fd, None)
                except FopError:
                    pass

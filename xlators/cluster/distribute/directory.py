"""cluster/distribute's directories: mkdir on the hashed subvolume then the
others, rmdir of a directory empty but for stale linkto files, opendir on
every brick and readdir(p) brick after brick with the brick in each d_off
(dht-common.c's dht_mkdir, dht_rmdir, dht_opendir, dht_do_readdir), and
the directory-fd helpers the fd fops share."""

from __future__ import annotations

import dataclasses
import errno

from glusterpy.fops import (GFID, NULL_GFID, DirReply, EntryReply, Fd, FopError, Loc, OpenReply,
                            ParentReply, Reply, UInt)
from glusterpy.keys import GFID_REQ, READDIR_SKIP_DIRS

from . import layout as dl
from .common import (MISSING, DirCtx, DirFd, FileCtx, FileFd, fixed_dir,
                     merge_dir_iatts, strip_phase1, with_gfid_req)
from .layout import Layout


class DhtDirectory:
    """mkdir, rmdir, opendir, readdir(p), fsyncdir and directory fds."""

    # ======================================================================
    # directory fops

    async def mkdir(self, loc, mode, umask, xdata=None):
        """dht_mkdir: the hashed subvolume first, marked as the directory's
        mds, then every other, then the new layout on all of them."""
        eloc, parent = await self._entry(loc)
        hashed = self._hashed_for_new(parent, eloc)
        xd = with_gfid_req(xdata)
        gfid = xd[GFID_REQ]
        await self._refresh_du()
        first = await self._wind(hashed, "mkdir", eloc, mode, umask,
                                 {**xd, self.mds_key: bytes(4)})
        gfid = first.iatt.gfid
        layout = Layout([], commit_hash=self.vol_commit_hash if self.opts.lookup_optimize
                        else dl.LAYOUT_HASH_INVALID, spread=self._spread())
        layout.merge(hashed, self.names[hashed], errno.ENOSPC if self._filled(hashed) else 0,
                     None)
        others = [i for i in range(self.count) if i != hashed]
        results = await self._each(others, lambda i: self._wind(
            i, "mkdir", eloc, mode, umask, {**xd, GFID_REQ: gfid}))
        iatts = [first.iatt]
        for i in others:
            r = results[i]
            if isinstance(r, FopError):
                if r.errno == errno.EEXIST:
                    layout.merge(i, self.names[i], 0, None)   # a racing heal made it
                else:
                    self.log.warning("%s: mkdir on %s failed: %s", eloc, self.names[i], r)
                    layout.merge(i, self.names[i], r.errno, None)
                continue
            layout.merge(i, self.names[i], errno.ENOSPC if self._filled(i) else 0, None)
            iatts.append(r.iatt)
        self._new_layout(layout, eloc, gfid)
        dloc = dataclasses.replace(eloc, gfid=gfid)
        await self._write_layout(dloc, layout, [e.index for e in layout.entries
                                                if e.err in (-1, errno.ENOSPC)], idle_commit=0)
        self._remember_dir(gfid, layout, mds=hashed)
        return EntryReply(merge_dir_iatts(iatts), fixed_dir(first.preparent),
                          fixed_dir(first.postparent))

    async def rmdir(self, loc, xflags, xdata=None):
        """dht_rmdir: every brick must hold nothing but stale linkto files
        (removed here); the directory goes from the non-hashed bricks, then
        from the hashed one."""
        eloc, parent = await self._entry(loc)
        eloc, ctx = await self._existing(eloc, parent)
        if not isinstance(ctx, DirCtx):
            raise FopError(errno.ENOTDIR)
        for i in range(self.count):
            self._require_up(i)
        await self._check_empty(eloc)
        hashed = self._hashed(parent, eloc.name)
        first = [i for i in range(self.count) if i != hashed]
        results = await self._each(first, lambda i: self._wind(i, "rmdir", eloc, xflags, xdata))
        failed = {i: r for i, r in results.items()
                  if isinstance(r, FopError) and r.errno not in MISSING}
        done = [i for i, r in results.items() if not isinstance(r, FopError)]
        if failed:
            if done:
                await self._restore_dir(eloc, ctx)
            raise next(iter(failed.values()))
        replies = [r for r in results.values() if not isinstance(r, FopError)]
        if hashed is not None:
            try:
                replies.append(await self._wind(hashed, "rmdir", eloc, xflags, xdata))
            except FopError as e:
                if e.errno not in MISSING or not replies:
                    if replies:
                        await self._restore_dir(eloc, ctx)
                    raise
        if not replies:
            raise FopError(errno.ENOENT)
        self._forget(eloc.gfid)
        reply = replies[-1]
        return ParentReply(fixed_dir(reply.preparent), fixed_dir(reply.postparent))

    async def opendir(self, loc, fd, xdata=None):
        """dht_opendir: on every subvolume that is up."""
        loc, ctx = await self._inode(loc)
        if not isinstance(ctx, DirCtx):
            raise FopError(errno.ENOTDIR)
        req = dict(xdata or {})
        req[self.linkto_key] = UInt(256)
        ups = [i for i in range(self.count) if self._up[i]]
        results = await self._each(ups, lambda i: self._wind(i, "opendir", loc, fd, req))
        opened = {i for i in ups if not isinstance(results[i], FopError)}
        if not opened:
            errors = [r for r in results.values() if isinstance(r, FopError)]
            raise errors[0] if errors else FopError(errno.ENOTCONN)
        fd.ctx[self] = DirFd(opened)
        if fd.gfid is None:
            fd.gfid = loc.gfid
        fd.is_dir = True
        return OpenReply(fd)

    async def readdir(self, fd, size, offset, xdata=None):
        if self.opts.use_readdirp:
            reply = await self._readdir(fd, size, offset, xdata, plus=True)
            for entry in reply.entries:
                entry.iatt = None
                entry.xdata = None
            return reply
        return await self._readdir(fd, size, offset, xdata, plus=False)

    async def readdirp(self, fd, size, offset, xdata=None):
        return await self._readdir(fd, size, offset, xdata, plus=True)

    async def fsyncdir(self, fd, datasync, xdata=None):
        where = self._dir_fd(fd)
        opened = [i for i in range(self.count)
                  if self._up[i] and await self._ensure_open(fd, where, i)]
        results = await self._each(opened, lambda i: self._wind(i, "fsyncdir", fd, datasync,
                                                               xdata))
        for r in results.values():
            if isinstance(r, FopError):
                raise r
        return Reply()

    async def releasedir(self, fd, xdata=None):
        where = fd.ctx.pop(self, None)
        if isinstance(where, DirFd):
            return await self._release_dir(fd, where, xdata)
        return Reply()

    # ======================================================================
    # helpers: rmdir

    async def _check_empty(self, loc: Loc) -> None:
        """dht_rmdir_is_subvol_empty on every brick: ENOTEMPTY for anything
        but stale linkto files, which are removed."""
        req = {self.linkto_key: UInt(256)}
        for i in range(self.count):
            fd = Fd(gfid=loc.gfid, is_dir=True)
            try:
                await self._wind(i, "opendir", loc, fd, req)
            except FopError as e:
                if e.errno in MISSING:
                    continue
                raise
            try:
                offset = 0
                while True:
                    entries = (await self._wind(i, "readdirp", fd, 64 * 1024, offset,
                                                req)).entries
                    if not entries:
                        break
                    for ent in entries:
                        if ent.name in (".", ".."):
                            continue
                        if ent.iatt is None or not self._is_linkto(ent.iatt, ent.xdata):
                            raise FopError(errno.ENOTEMPTY)
                        await self._check_linkto_in_rmdir(i, loc, ent)
                    offset = entries[-1].off
            finally:
                try:
                    await self.children[i].releasedir(fd, None)
                except FopError:
                    pass

    async def _check_linkto_in_rmdir(self, i: int, dloc: Loc, ent) -> None:
        """A linkto file in a directory being removed: ENOTEMPTY when its
        data exists, else it is stale and goes."""
        eloc = Loc(path=_join(dloc.path, ent.name), pargfid=dloc.gfid, name=ent.name)
        target = self._linkto_subvol(ent.xdata)
        if target is not None and target != i:
            try:
                data = await self._wind(target, "lookup", eloc, {self.linkto_key: UInt(256)})
            except FopError as e:
                if e.errno not in MISSING:
                    raise FopError(errno.ENOTEMPTY) from None
            else:
                if not self._is_linkto(data.iatt, data.xdata) and \
                        data.iatt.gfid == ent.iatt.gfid:
                    raise FopError(errno.ENOTEMPTY)
        await self._unlink_stale_linkto(i, eloc)

    # ======================================================================
    # helpers: readdir and directory fds

    def _fd_is_dir(self, fd: Fd) -> bool:
        return isinstance(fd.ctx.get(self), DirFd) or \
            (fd.is_dir and not isinstance(fd.ctx.get(self), FileFd))

    def _dir_fd(self, fd: Fd) -> DirFd:
        """A directory fd's context; an fd never opened here (anonymous) is
        opened on each brick when first used."""
        where = fd.ctx.get(self)
        if isinstance(where, DirFd):
            return where
        if isinstance(where, FileFd):
            raise FopError(errno.ENOTDIR)
        where = fd.ctx[self] = DirFd(set())
        return where

    async def _ensure_open(self, fd: Fd, where: DirFd, i: int) -> bool:
        if i in where.opened:
            return True
        try:
            await self._wind(i, "opendir", Loc(gfid=GFID(fd.gfid)), fd,
                             {self.linkto_key: UInt(256)})
        except FopError:
            return False
        where.opened.add(i)
        return True

    async def _readdir(self, fd: Fd, size: int, offset: int, xdata, plus: bool) -> DirReply:
        """dht_do_readdir and its callbacks: one brick after another, from
        the brick and offset the d_off names."""
        where = self._dir_fd(fd)
        if fd.gfid is None:
            raise FopError(errno.EBADF)
        ctx = await self._dir_ctx(GFID(fd.gfid), None)
        first_up = self._first_up()
        index, child_offset = dl.deitransform(offset, self.count) if offset else (0, 0)
        if index >= self.count:
            raise FopError(errno.EINVAL, f"readdir offset {offset:#x} names no subvolume")
        req = dict(xdata or {})
        if plus:
            req[self.linkto_key] = UInt(256)
        while index < self.count:
            if not self._up[index] or not await self._ensure_open(fd, where, index):
                index, child_offset = index + 1, 0
                continue
            child_req = req
            if self.opts.readdir_optimize and index != first_up:
                child_req = {**req, READDIR_SKIP_DIRS: UInt(1)}
            try:
                reply = await self._wind(index, "readdirp" if plus else "readdir", fd, size,
                                         child_offset, child_req)
            except FopError as e:
                self.log.debug("readdir on %s failed: %s", self.names[index], e)
                index, child_offset = index + 1, 0
                continue
            entries = reply.entries
            if not entries:
                index, child_offset = index + 1, 0
                continue
            if plus:
                kept = self._show_entries(entries, index, ctx, first_up, xdata)
            else:
                kept = [e for e in entries
                        if self._show_entry(e, index, ctx, plus, first_up, xdata)]
            if self.count > 1:  # one subvolume's offsets are its own (itransform)
                for e in kept:
                    e.off = dl.itransform(e.off, index, self.count)
            if kept:
                return DirReply(kept)
            child_offset = entries[-1].off
        return DirReply([])

    def _show_entries(self, entries: list, index: int, ctx: DirCtx, first_up,
                      xdata) -> list:
        """_show_entry(plus=True) of a whole readdirp reply in one loop, the
        per-entry tests written out: a listing is where distribute sees the
        most entries per call, and each helper call per entry (linkto test,
        phase-1 strip, remembering the file's subvolume, the xdata filter)
        cost more than the test itself.  What an entry becomes is
        _show_entry's (tests/test_distribute_readdir.py compares the two)."""
        if self.count > 1:
            return [e for e in entries if self._show_entry(e, index, ctx, True, first_up, xdata)]
        # one subvolume: no directory is shown by another brick and nothing
        # reads the unhashed count, so only linkto files are hidden
        kept = []
        linkto_key = self.linkto_key
        store, visible = self._store, self._visible_xdata
        # every entry's context in one pass of the table (a hard link listed
        # twice is stored twice, the same FileCtx)
        for entry, known in zip(entries, self.itable.listed_ctx(self, entries)):
            iatt = entry.iatt
            xd = entry.xdata
            if iatt is not None:
                mode = iatt.mode
                fmt = mode & 0o170000
                if fmt == 0o040000:                                    # S_IFDIR
                    entry.iatt = fixed_dir(iatt)
                else:
                    if fmt == 0o100000 and mode & 0o1000:
                        if mode & 0o7777 == 0o1000 and xd and linkto_key in xd:
                            continue                                   # a linkto file
                        if mode & 0o2000:                              # migration phase 1
                            entry.iatt = strip_phase1(iatt)
                    gfid = iatt.gfid
                    if gfid is not None and gfid != NULL_GFID and \
                            entry.name not in (".", ".."):
                        if type(known) is not FileCtx or known.cached != index:
                            store(gfid, FileCtx(index))
            if xd:
                entry.xdata = visible(xd, xdata)
            kept.append(entry)
        return kept

    def _show_entry(self, entry, index: int, ctx: DirCtx, plus: bool, first_up,
                    xdata) -> bool:
        """dht_readdirp_cbk / dht_readdir_cbk: which brick shows an entry."""
        if not plus:
            if self.count == 1:
                return True
            if entry.type == 4 and self.opts.readdir_optimize:       # DT_DIR
                return index == first_up
            hashed = self._hashed(ctx, entry.name)
            return hashed is None or hashed == index
        iatt = entry.iatt
        if iatt is not None and self._is_linkto(iatt, entry.xdata):
            return False
        if iatt is not None and self.count > 1 and iatt.is_dir:
            if self.opts.readdir_optimize:
                if index != first_up:
                    return False
            else:
                hashed = self._hashed(ctx, entry.name)
                if hashed != index and ((hashed is not None and self._up[hashed])
                                        or index != first_up):
                    return False
        # with one subvolume nothing reads the count (lookup.py never looks
        # "everywhere" then): no hash of every listed name
        if self.count > 1 and self.opts.lookup_unhashed == "auto":
            hashed = self._hashed(ctx, entry.name)
            if hashed is None or hashed != index:
                ctx.search_unhashed += 1
        if iatt is not None:
            if iatt.is_dir:
                entry.iatt = fixed_dir(iatt)
            else:
                entry.iatt = strip_phase1(iatt)
                if iatt.gfid is not None and not iatt.gfid.is_null and \
                        entry.name not in (".", ".."):
                    self._remember_file(iatt.gfid, index)
        entry.xdata = self._visible_xdata(entry.xdata, xdata)
        return True

    async def _dir_fd_open(self, fd: Fd) -> list[int]:
        """The bricks a directory fd is open on (opened where it was not yet,
        as for an anonymous fd), up ones only; ENOTCONN when none."""
        where = self._dir_fd(fd)
        for i in range(self.count):
            if self._up[i] and i not in where.opened:
                await self._ensure_open(fd, where, i)
        opened = sorted(i for i in where.opened if self._up[i])
        if not opened:
            raise FopError(errno.ENOTCONN, "the directory is open on no brick that is up")
        return opened

    async def _dir_fd_lead(self, fd: Fd, mds: bool = False) -> int:
        """The brick a single-brick fop on a directory fd goes to: its mds
        (with `mds`) or its first subvolume, as for the directory's loc;
        the fd's first brick when the directory is gone from the context
        (removed while open)."""
        opened = await self._dir_fd_open(fd)
        ctx = self.itable.ctx(self, GFID(fd.gfid)) if fd.gfid is not None else None
        if isinstance(ctx, DirCtx):
            if mds and ctx.mds in opened:
                return ctx.mds
            lead = self._dir_first(ctx)
            if lead in opened:
                return lead
        return opened[0]

    async def _dir_fd_all(self, fd: Fd, call) -> list:
        """`call` on every brick the directory fd is open on: the answers of
        those that succeeded; the first error when none did."""
        opened = await self._dir_fd_open(fd)
        results = await self._each(opened, call)
        replies = [results[i] for i in opened if not isinstance(results[i], FopError)]
        if not replies:
            raise results[opened[0]]
        return replies

    async def _dir_fd_mds_then_all(self, fd: Fd, call) -> list:
        """A change through a directory fd: the mds brick first, then the rest."""
        lead = await self._dir_fd_lead(fd, mds=True)
        first = await call(lead)
        others = [i for i in await self._dir_fd_open(fd) if i != lead]
        results = await self._each(others, call)
        replies = [first]
        for i in others:
            r = results[i]
            if isinstance(r, FopError):
                self.log.info("directory fd: not applied on %s: %s", self.names[i], r)
                continue
            replies.append(r)
        return replies

    async def _release_dir(self, fd: Fd, where: DirFd, xdata) -> Reply:
        for i in sorted(where.opened):
            if not self._up[i]:
                continue
            try:
                await self.children[i].releasedir(fd, xdata)
            except FopError as e:
                self.log.debug("releasedir on %s: %s", self.names[i], e)
        return Reply()


def _join(path: str | None, name: str) -> str | None:
    if path is None:
        return None
    return path.rstrip("/") + "/" + name

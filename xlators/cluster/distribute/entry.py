"""cluster/distribute's entry fops on files: mknod, create, symlink, link,
put and unlink by the hashed subvolume, with a linkto file where the data
is elsewhere (dht-common.c's dht_mknod, dht_create, dht_symlink, dht_link,
dht_unlink)."""

from __future__ import annotations

import dataclasses
import errno
import os

from glusterpy.fops import GFID, CreateReply, EntryReply, Fd, FopError, Loc, ParentReply
from glusterpy.keys import COLOCATE_KEY, GFID_REQ

from . import layout as dl
from .common import (MISSING, DirCtx, FileFd, as_root, fixed_dir, strip_phase1,
                     with_gfid_req)


class DhtEntry:
    """Creating and removing the names of files."""

    # ======================================================================
    # entry fops

    async def mknod(self, loc, mode, rdev, umask, xdata=None):
        """dht_mknod: on the hashed subvolume, or - when it is short of space -
        on the roomiest one with a linkto file on the hashed one."""
        eloc, parent = await self._entry(loc)
        hashed = self._hashed_for_new(parent, eloc)
        xd = with_gfid_req(xdata)
        near = xd.pop(COLOCATE_KEY, None)
        target = await self._colocated(near, parent) if near is not None else None
        if target is None:
            target = await self._placement(hashed, parent)
        if target != hashed:
            await self._create_linkto(hashed, target, eloc, xd[GFID_REQ])
            try:
                reply = await self._wind(target, "mknod", eloc, mode, rdev, umask, xd)
            except FopError:
                await self._drop_linkto(hashed, eloc)
                raise
        else:
            reply = await self._wind(hashed, "mknod", eloc, mode, rdev, umask, xd)
        self._remember_file(reply.iatt.gfid, target)
        return _entry_reply(reply)

    async def unlink(self, loc, xflags, xdata=None):
        """dht_unlink: the name on the data subvolume, then the linkto file
        on the hashed one."""
        eloc, parent = await self._entry(loc)
        eloc, ctx = await self._existing(eloc, parent)
        if isinstance(ctx, DirCtx):
            raise FopError(errno.EISDIR)
        reply = await self._on_file(eloc, ctx, lambda i: self._wind(
            i, "unlink", eloc, xflags, xdata))
        hashed = self._hashed(parent, eloc.name)
        cached = self._file_subvol(eloc.gfid)
        if hashed is not None and hashed != cached:
            try:
                with as_root():
                    await self._wind(hashed, "unlink", eloc, xflags, xdata)
            except FopError as e:
                if e.errno not in (*MISSING, errno.ENOTCONN):
                    raise
        return ParentReply(fixed_dir(reply.preparent), fixed_dir(reply.postparent),
                           xdata=reply.xdata)

    async def symlink(self, linkname, loc, umask, xdata=None):
        """dht_symlink: on the hashed subvolume."""
        eloc, parent = await self._entry(loc)
        hashed = self._hashed_for_new(parent, eloc)
        reply = await self._wind(hashed, "symlink", linkname, eloc, umask, xdata)
        self._remember_file(reply.iatt.gfid, hashed)
        return _entry_reply(reply)

    async def link(self, oldloc, newloc, xdata=None):
        """dht_link: a linkto file on the new name's hashed brick, then the
        hard link on the data brick."""
        src, ctx = await self._inode(oldloc)
        dst, parent = await self._entry(newloc)
        if isinstance(ctx, DirCtx):
            try:
                await self._lookup_named(dst, parent, None)
            except FopError as e:
                if e.errno not in MISSING:
                    raise
            else:
                raise FopError(errno.EEXIST)
            raise FopError(errno.EPERM)
        hashed = self._hashed_for_new(parent, dst)

        async def do_link(cached: int):
            if hashed != cached:
                await self._create_linkto(hashed, cached, dst, src.gfid, accept_existing=False)
                try:
                    return await self._wind(cached, "link", src, dst, xdata)
                except FopError:
                    await self._drop_linkto(hashed, dst)
                    raise
            return await self._wind(cached, "link", src, dst, xdata)

        reply = await self._on_file(src, ctx, do_link)
        return _entry_reply(reply)

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        """dht_create: as mknod, then the fd is the data subvolume's."""
        eloc, parent = await self._entry(loc)
        hashed = self._hashed_for_new(parent, eloc)
        xd = with_gfid_req(xdata)
        near = xd.pop(COLOCATE_KEY, None)
        target = await self._colocated(near, parent) if near is not None else None
        if target is None:
            target = await self._placement(hashed, parent)
        if target != hashed:
            await self._create_linkto(hashed, target, eloc, xd[GFID_REQ])
            try:
                reply = await self._wind(target, "create", eloc, flags, mode, umask, fd, xd)
            except FopError:
                await self._drop_linkto(hashed, eloc)
                raise
        else:
            reply = await self._wind(hashed, "create", eloc, flags, mode, umask, fd, xd)
            if dl.is_linkto_mode(reply.iatt.mode) and not flags & os.O_EXCL:
                # an existing name whose data is elsewhere: open that instead
                await self._wind(hashed, "release", fd, None)
                return await self._open_existing(eloc, parent, flags, fd)
        fd.ctx[self] = FileFd(target, {target})
        if fd.gfid is None:
            fd.gfid = reply.iatt.gfid
        self._remember_file(reply.iatt.gfid, target)
        return CreateReply(reply.fd, strip_phase1(reply.iatt), fixed_dir(reply.preparent),
                           fixed_dir(reply.postparent), xdata=reply.xdata)

    async def put(self, loc, mode, umask, flags, data, offset, xattrs, xdata=None):
        """put (create, write, set xattrs, close) on the hashed subvolume."""
        eloc, parent = await self._entry(loc)
        hashed = self._hashed_for_new(parent, eloc)
        reply = await self._wind(hashed, "put", eloc, mode, umask, flags, data, offset, xattrs,
                                 with_gfid_req(xdata))
        self._remember_file(reply.iatt.gfid, hashed)
        return _entry_reply(reply)

    async def icreate(self, loc, mode, xdata=None):
        raise FopError(errno.ENOTSUP, "icreate: distribute places entries by name")

    async def namelink(self, loc, xdata=None):
        raise FopError(errno.ENOTSUP, "namelink: distribute places entries by name")

    async def _colocated(self, gfid, parent: DirCtx) -> int | None:
        """COLOCATE_KEY's brick: where that file's data is, if it can take
        a new file now; None (the usual placement) otherwise."""
        try:
            gfid = GFID(gfid)
            where = self._file_subvol(gfid)
            if where is None:
                await self._discover(Loc(gfid=gfid), None)
                where = self._file_subvol(gfid)
        except (FopError, ValueError, TypeError) as e:
            self.log.debug("%s: no colocation (%s)", COLOCATE_KEY, e)
            return None
        if where is None or not self._usable(where, parent):
            return None
        return where

    async def _open_existing(self, loc: Loc, parent: DirCtx, flags: int, fd: Fd):
        """create without O_EXCL found the name's linkto file: open the data."""
        reply = await self._lookup_named(loc, parent, None)
        if reply.iatt.is_dir:
            raise FopError(errno.EISDIR)
        loc = dataclasses.replace(loc, gfid=reply.iatt.gfid)
        await self.open(loc, flags & ~(os.O_CREAT | os.O_EXCL), fd, None)
        fd.gfid = reply.iatt.gfid
        return CreateReply(fd, reply.iatt, reply.postparent, reply.postparent)


def _entry_reply(reply: EntryReply) -> EntryReply:
    return EntryReply(strip_phase1(reply.iatt), fixed_dir(reply.preparent),
                      fixed_dir(reply.postparent), xdata=reply.xdata)

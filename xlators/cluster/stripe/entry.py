"""cluster/stripe: the entry, inode, directory and xattr fops - a regular
file or a directory exists on every child, a symlink or special file on the
first only; names are made on the first child first and removed from it
last (stripe.c's stripe_lookup .. stripe_create, stripe_stat ..
stripe_fsetattr, stripe_opendir, stripe_readdirp, stripe_setxattr ..)."""

from __future__ import annotations

import errno
import functools
import os
import stat

import trio

from glusterpy.fops import (SET_ATTR_SIZE, CreateReply, DirReply, FopError, LookupReply, Loc,
                            OpenReply, ParentReply, PrePostReply, RenameReply, StatfsReply,
                            StatReply, Statvfs)
from glusterpy.keys import PATHINFO_KEYS

from .layout import DIRECTORY, SINGLE, FdCtx, Geometry

#: how many per-entry lookups one readdirp keeps in flight
_READDIRP_LOOKUPS = 64


class StripeEntry:
    """Names and attributes, on every child that holds the inode."""

    # -- entry fops -----------------------------------------------------------

    async def lookup(self, loc, xdata=None):
        """Every child, asking for the geometry xattrs; a regular file's reply
        merges all pieces."""
        self._check_up()
        req = self._ask_geometry(xdata)
        results = await self._fan([functools.partial(c.lookup, loc, req)
                                   for c in self.children])
        replies, shape = self._settle_by_iatt(results, lambda r: r.iatt, loc)
        geometry = self._learn(replies, loc, shape)
        first = replies[0]
        return LookupReply(self._merge([r.iatt if r else None for r in replies], geometry),
                           self._merge([r.postparent if r else None for r in replies], None),
                           xdata=self._reply_xdata(first.xdata, xdata))

    async def mknod(self, loc, mode, rdev, umask, xdata=None):
        """A regular file gets a piece on every child, with its geometry;
        other types live on the first child only."""
        self._check_up()
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            return await self.first_child.mknod(loc, mode, rdev, umask, xdata)
        geometry = self._new_geometry(loc)
        xdata, _ = self._with_gfid_req(xdata)
        first = await self.first_child.mknod(loc, mode, rdev, umask,
                                             self._with_geometry(xdata, geometry, 0))
        rest = await self._fan([
            functools.partial(c.mknod, loc, mode, rdev, umask,
                              self._with_geometry(self._gfid_req(xdata, first.iatt.gfid),
                                                  geometry, i))
            for i, c in enumerate(self.children) if i])
        replies = await self._new_entry_made(first, rest, loc, first.iatt.gfid)
        self._remember(first.iatt.gfid, geometry)
        return self._entry_reply(replies, geometry)

    async def mkdir(self, loc, mode, umask, xdata=None):
        """The first child, then the others with the same gfid."""
        self._check_up()
        xdata, _ = self._with_gfid_req(xdata)
        first = await self.first_child.mkdir(loc, mode, umask, xdata)
        xdata = self._gfid_req(xdata, first.iatt.gfid)
        rest = await self._fan([functools.partial(c.mkdir, loc, mode, umask, xdata)
                                for c in self.children[1:]])
        replies = await self._new_entry_made(first, rest, loc, first.iatt.gfid, rmdir=True)
        self._remember(first.iatt.gfid, DIRECTORY)
        return self._entry_reply(replies, None)

    async def unlink(self, loc, xflags, xdata=None):
        """The other children first (a name they lack is fine: symlinks and
        special files live on the first child only), then the first child,
        as GlusterFS orders it: a failure leaves the name to retry with."""
        self._check_up()
        rest = await self._fan([functools.partial(c.unlink, loc, xflags, xdata)
                                for c in self.children[1:]])
        self._raise_unless_missing(rest)
        return await self.first_child.unlink(loc, xflags, xdata)

    async def rmdir(self, loc, xflags, xdata=None):
        """The first child first: it holds every name of the directory, so
        its ENOTEMPTY leaves the other children as they were."""
        self._check_up()
        first = await self.first_child.rmdir(loc, xflags, xdata)
        rest = await self._fan([functools.partial(c.rmdir, loc, xflags, xdata)
                                for c in self.children[1:]])
        self._raise_unless_missing(rest, f"rmdir {loc}")
        if loc.gfid is not None:
            self.itable.del_ctx(self, loc.gfid)
        replies = [first] + [r if not isinstance(r, FopError) else None for r in rest]
        return ParentReply(self._merge([r.preparent if r else None for r in replies], None),
                           self._merge([r.postparent if r else None for r in replies], None),
                           xdata=first.xdata)

    async def rename(self, oldloc, newloc, xdata=None):
        """The first child, then the others.  A name only the first child
        holds may replace a regular file: the victim's pieces are unlinked
        from the others."""
        self._check_up()
        first = await self.first_child.rename(oldloc, newloc, xdata)
        rest = await self._fan([functools.partial(c.rename, oldloc, newloc, xdata)
                                for c in self.children[1:]])
        moved = first.iatt
        if moved.is_reg or moved.is_dir:
            replies = [first] + self._settle_rest(
                rest, moved.is_reg, f"rename {oldloc} -> {newloc}")
        else:
            replies = [first] + [None] * len(rest)
            leftovers = await self._fan([functools.partial(c.unlink, newloc, 0, None)
                                         for c in self.children[1:]])
            self._raise_unless_missing(leftovers, f"rename {oldloc} -> {newloc}")
        shape = await self._shape_for_merge(moved)
        geometry = shape if isinstance(shape, Geometry) else None
        parents = [(r.preoldparent, r.postoldparent, r.prenewparent, r.postnewparent)
                   if r else (None,) * 4 for r in replies]
        return RenameReply(
            self._merge([r.iatt if r else None for r in replies], geometry),
            *(self._merge([p[k] for p in parents], None) for k in range(4)),
            xdata=first.xdata)

    async def link(self, oldloc, newloc, xdata=None):
        """The first child, then (for a regular file) the others; a link
        that fails on one of them is removed again from the rest."""
        self._check_up()
        first = await self.first_child.link(oldloc, newloc, xdata)
        if not first.iatt.is_reg:
            return first
        rest = await self._fan([functools.partial(c.link, oldloc, newloc, xdata)
                                for c in self.children[1:]])
        replies = await self._new_entry_made(first, rest, newloc, first.iatt.gfid)
        shape = await self._shape_for_merge(first.iatt)
        return self._entry_reply(replies, shape if isinstance(shape, Geometry) else None)

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        """The first child decides (O_EXCL, an existing file); a new file then
        gets its pieces on the other children, an existing one is opened
        there.  O_APPEND is kept here and never sent down: each piece must be
        written at its own offsets."""
        self._check_up()
        if not flags:
            flags = os.O_CREAT | os.O_RDWR | os.O_EXCL   # GlusterFS's meaning of 0
        flags |= os.O_CREAT
        down_flags = flags & ~os.O_APPEND
        geometry = self._new_geometry(loc)
        xdata, gfid_req = self._with_gfid_req(xdata)
        first = await self.first_child.create(loc, down_flags, mode, umask, fd,
                                              self._with_geometry(xdata, geometry, 0))
        gfid = first.iatt.gfid
        if not first.iatt.is_reg:          # an existing fifo or device
            fd.ctx[self] = FdCtx(None, False, (0,))
            return first
        entry = Loc(path=loc.path, gfid=gfid, pargfid=loc.pargfid, name=loc.name)
        if gfid == gfid_req:
            # a new file: every piece is new too (O_EXCL: a stale piece is an error)
            rest = await self._fan([
                functools.partial(c.create, loc, down_flags | os.O_EXCL, mode, umask, fd,
                                  self._with_geometry(self._gfid_req(xdata, gfid), geometry, i))
                for i, c in enumerate(self.children) if i])
            replies = await self._new_entry_made(first, rest, entry, gfid, fd=fd)
            iatts = [r.iatt for r in replies]
        else:
            # it existed: open its pieces, then read their geometry and sizes
            rest = await self._fan([
                functools.partial(c.open, entry, down_flags & ~(os.O_CREAT | os.O_EXCL), fd,
                                  None)
                for c in self.children[1:]])
            await self._opened_everywhere(rest, fd, entry)
            found = await self._lookup_all(entry)
            geometry = self._learn(found, entry, self._kind_of(found[0].iatt))
            replies = [first] + [None] * (len(self.children) - 1)
            iatts = [r.iatt for r in found]
        self._remember(gfid, geometry)
        fd.ctx[self] = FdCtx(geometry, bool(flags & os.O_APPEND), self._all)
        return CreateReply(fd, self._merge(iatts, geometry),
                           self._merge([r.preparent if r else None for r in replies], None),
                           self._merge([r.postparent if r else None for r in replies], None),
                           xdata=first.xdata)

    # -- inode fops ---------------------------------------------------------

    async def stat(self, loc, xdata=None):
        self._check_up()
        req = self._ask_geometry(xdata)
        results = await self._fan([functools.partial(c.stat, loc, req) for c in self.children])
        replies, shape = self._settle_by_iatt(results, lambda r: r.iatt, loc)
        geometry = self._learn(replies, loc, shape)
        return StatReply(self._merge([r.iatt if r else None for r in replies], geometry),
                         xdata=self._reply_xdata(replies[0].xdata, xdata))

    async def fstat(self, fd, xdata=None):
        self._check_up()
        ctx = await self._ctx_of(fd)
        results = await self._fan([functools.partial(self.children[i].fstat, fd, xdata)
                                   for i in ctx.children])
        replies = self._settle_fd(results, ctx, f"fstat {fd}")
        return StatReply(self._merge([r.iatt if r else None for r in replies], ctx.geometry),
                         xdata=replies[0].xdata)

    async def truncate(self, loc, offset, xdata=None):
        """Each piece to its share of the new size."""
        self._check_up()
        if offset < 0:
            raise FopError(errno.EINVAL)
        shape = await self._shape_of(loc)
        if not isinstance(shape, Geometry):
            return await self.first_child.truncate(loc, offset, xdata)
        results = await self._fan([
            functools.partial(c.truncate, loc, shape.share(i, offset), xdata)
            for i, c in enumerate(self.children)])
        return self._prepost(self._settle_file(results, f"truncate {loc}"), shape)

    async def ftruncate(self, fd, offset, xdata=None):
        self._check_up()
        if offset < 0:
            raise FopError(errno.EINVAL)
        ctx = await self._ctx_of(fd)
        geometry = ctx.geometry
        if geometry is None:
            return await self.first_child.ftruncate(fd, offset, xdata)
        results = await self._fan([
            functools.partial(c.ftruncate, fd, geometry.share(i, offset), xdata)
            for i, c in enumerate(self.children)])
        return self._prepost(self._settle_file(results, f"ftruncate {fd}"), geometry)

    async def setattr(self, loc, stbuf, valid, xdata=None):
        """Every child that holds the inode.  A size change is a truncate
        (each piece has its own share), then the other attributes."""
        self._check_up()
        if valid & SET_ATTR_SIZE:
            cut = await self.truncate(loc, stbuf.size, None)
            valid &= ~SET_ATTR_SIZE
            if not valid:
                return cut
            reply = await self.setattr(loc, stbuf, valid, xdata)
            return PrePostReply(cut.prebuf, reply.postbuf, xdata=reply.xdata)
        req = self._ask_geometry(xdata)
        results = await self._fan([functools.partial(c.setattr, loc, stbuf, valid, req)
                                   for c in self.children])
        replies, shape = self._settle_by_iatt(results, lambda r: r.postbuf, loc)
        geometry = self._learn(replies, loc, shape)
        reply = self._prepost(replies, geometry)
        reply.xdata = self._reply_xdata(replies[0].xdata, xdata)
        return reply

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        self._check_up()
        if valid & SET_ATTR_SIZE:
            cut = await self.ftruncate(fd, stbuf.size, None)
            valid &= ~SET_ATTR_SIZE
            if not valid:
                return cut
            reply = await self.fsetattr(fd, stbuf, valid, xdata)
            return PrePostReply(cut.prebuf, reply.postbuf, xdata=reply.xdata)
        ctx = await self._ctx_of(fd)
        results = await self._fan([
            functools.partial(self.children[i].fsetattr, fd, stbuf, valid, xdata)
            for i in ctx.children])
        return self._prepost(self._settle_fd(results, ctx, f"fsetattr {fd}"), ctx.geometry)

    async def statfs(self, loc, xdata=None):
        """The sum over the children, in the first child's fragment size."""
        self._check_up()
        results = await self._fan([functools.partial(c.statfs, loc, xdata)
                                   for c in self.children])
        self._raise_first(results)
        first = results[0].statvfs
        unit = first.frsize or first.bsize or 1
        total = Statvfs(bsize=first.bsize, frsize=first.frsize, fsid=first.fsid,
                        flag=first.flag, namemax=first.namemax)
        for reply in results:
            sv = reply.statvfs
            scale = (sv.frsize or sv.bsize or 1)
            total.blocks += sv.blocks * scale // unit
            total.bfree += sv.bfree * scale // unit
            total.bavail += sv.bavail * scale // unit
            total.files += sv.files
            total.ffree += sv.ffree
            total.favail += sv.favail
        return StatfsReply(total, xdata=results[0].xdata)
    # -- directories ------------------------------------------------------------

    async def opendir(self, loc, fd, xdata=None):
        self._check_up()
        results = await self._fan([functools.partial(c.opendir, loc, fd, xdata)
                                   for c in self.children])
        if isinstance(results[0], FopError):
            await self._release_opened(results, fd, directory=True)
            raise results[0]
        failed = [(i, r) for i, r in enumerate(results) if isinstance(r, FopError)]
        bad = [r for _, r in failed if r.errno != errno.ENOENT]
        if bad:
            await self._release_opened(results, fd, directory=True)
            raise bad[0]
        held = tuple(i for i, r in enumerate(results) if not isinstance(r, FopError))
        fd.ctx[self] = FdCtx(None, False, held)
        return OpenReply(fd, xdata=results[0].xdata)

    async def readdirp(self, fd, size, offset, xdata=None):
        """The first child's listing; each regular file's attributes merged
        with its other pieces' (looked up by gfid, in parallel).  An entry
        whose pieces are gone meanwhile is left out, as posix leaves out an
        entry removed since getdents; one whose pieces disagree keeps no
        attributes (its own lookup tells why)."""
        self._check_up()
        req = self._ask_geometry(xdata)
        reply = await self.first_child.readdirp(fd, size, offset, req)
        files = [e for e in reply.entries if e.iatt is not None and e.iatt.is_reg]
        found: dict[int, list] = {}
        if files and len(self.children) > 1:
            limiter = trio.CapacityLimiter(_READDIRP_LOOKUPS)

            async def pieces_of(entry):
                async with limiter:
                    found[id(entry)] = await self._fan([
                        functools.partial(c.lookup, Loc(gfid=entry.iatt.gfid), req)
                        for c in self.children[1:]])
            async with trio.open_nursery() as nursery:
                for entry in files:
                    nursery.start_soon(pieces_of, entry)
        entries = []
        for entry in reply.entries:
            if entry.iatt is None or not entry.iatt.is_reg:
                entry.xdata = self._reply_xdata(entry.xdata, xdata)
                entries.append(entry)
                continue
            rest = found.get(id(entry), [])
            if any(isinstance(r, FopError) and r.errno in (errno.ENOENT, errno.ESTALE)
                   for r in rest):
                continue
            self._raise_first(rest)
            where = Loc(path=None, gfid=entry.iatt.gfid, name=entry.name)
            try:
                geometry = self._geometry_from([entry.xdata] + [r.xdata for r in rest], where)
            except FopError as e:
                self.log.error("readdirp: %s", e)
                entry.iatt = entry.xdata = None
                entries.append(entry)
                continue
            self._remember(entry.iatt.gfid, geometry)
            entry.iatt = self._merge([entry.iatt] + [r.iatt for r in rest], geometry)
            entry.xdata = self._reply_xdata(entry.xdata, xdata)
            entries.append(entry)
        return DirReply(entries, xdata=reply.xdata)

    async def fsyncdir(self, fd, datasync, xdata=None):
        self._check_up()
        ctx = await self._ctx_of(fd)
        results = await self._fan([
            functools.partial(self.children[i].fsyncdir, fd, datasync, xdata)
            for i in ctx.children])
        self._raise_first(results)
        return results[0]

    # -- extended attributes ------------------------------------------------------

    async def setxattr(self, loc, xattrs, flags, xdata=None):
        """The first child decides (XATTR_CREATE/REPLACE); then every other
        child holding the inode."""
        self._check_up()
        self._refuse_geometry_keys(xattrs)
        first = await self.first_child.setxattr(loc, xattrs, flags, xdata)
        rest = await self._fan([functools.partial(c.setxattr, loc, xattrs, flags, xdata)
                                for c in self.children[1:]])
        self._raise_unless_missing(rest, f"setxattr {loc}")
        return first

    async def fsetxattr(self, fd, xattrs, flags, xdata=None):
        self._check_up()
        self._refuse_geometry_keys(xattrs)
        ctx = await self._ctx_of(fd)
        first = await self.first_child.fsetxattr(fd, xattrs, flags, xdata)
        rest = await self._fan([
            functools.partial(self.children[i].fsetxattr, fd, xattrs, flags, xdata)
            for i in ctx.children if i])
        self._raise_first(rest)
        return first

    async def removexattr(self, loc, name, xdata=None):
        self._check_up()
        self._refuse_geometry_keys({name: None} if name else xdata or {})
        first = await self.first_child.removexattr(loc, name, xdata)
        rest = await self._fan([functools.partial(c.removexattr, loc, name, xdata)
                                for c in self.children[1:]])
        self._raise_unless_missing(rest, f"removexattr {loc}")
        return first

    async def fremovexattr(self, fd, name, xdata=None):
        self._check_up()
        self._refuse_geometry_keys({name: None} if name else xdata or {})
        ctx = await self._ctx_of(fd)
        first = await self.first_child.fremovexattr(fd, name, xdata)
        rest = await self._fan([
            functools.partial(self.children[i].fremovexattr, fd, name, xdata)
            for i in ctx.children if i])
        self._raise_first(rest)
        return first

    async def getxattr(self, loc, name, xdata=None):
        """The first child's, geometry keys hidden; pathinfo gathers every
        child's, as GlusterFS's stripe_fill_pathinfo_xattr writes it."""
        self._check_up()
        if name in PATHINFO_KEYS:
            results = await self._fan([functools.partial(c.getxattr, loc, name, xdata)
                                       for c in self.children])
            shape = await self._shape_of(loc)
            return self._pathinfo(name, results, shape)
        return self._hide_geometry(name, await self.first_child.getxattr(loc, name, xdata))

    async def fgetxattr(self, fd, name, xdata=None):
        self._check_up()
        if name in PATHINFO_KEYS:
            ctx = await self._ctx_of(fd)
            results = await self._fan([
                functools.partial(self.children[i].fgetxattr, fd, name, xdata)
                for i in ctx.children])
            return self._pathinfo(name, results, ctx.geometry or SINGLE)
        return self._hide_geometry(name, await self.first_child.fgetxattr(fd, name, xdata))

"""cluster/distribute's xattr fops: a directory's changes to its mds
subvolume first, user xattrs read from it, others merged from all bricks,
distribute's own keys hidden or refused, pathinfo and linkinfo answered, and
the keys of GlusterFS's rebalance process (fix-layout, commit hash,
migrate-data) run (dht-common.c's dht_setxattr, dht_getxattr,
dht_vgetxattr)."""

from __future__ import annotations

import dataclasses
import errno

from glusterpy import fops
from glusterpy.fops import ROOT_GFID, DictReply, FopError, Loc, Reply
from glusterpy.keys import LINKINFO_KEY, PATHINFO_KEYS

from . import layout as dl
from .common import (FIX_LAYOUT_KEYS, HEALED_XATTR_PREFIXES, MIGRATE_KEYS, NEW_COMMIT_HASH_KEY,
                     DirCtx, parent_path)


class DhtXattr:
    """setxattr, getxattr, removexattr and their fd forms."""

    # ======================================================================
    # xattr fops

    async def setxattr(self, loc, xattrs, flags, xdata=None):
        """A directory: the mds subvolume, then the others.  The keys of
        GlusterFS's rebalance process run fix-layout or a migration."""
        if not isinstance(xattrs, dict):
            raise FopError(errno.EINVAL)
        loc, ctx = await self._inode(loc)
        if any(k in FIX_LAYOUT_KEYS for k in xattrs):
            if not isinstance(ctx, DirCtx):
                raise FopError(errno.ENOTSUP)
            new_hash = xattrs.get(NEW_COMMIT_HASH_KEY)
            await self.fix_layout(loc, None if new_hash is None else _as_uint(new_hash))
            return Reply()
        if self.commithash_key in xattrs and loc.gfid == ROOT_GFID:
            await self.set_volume_commit_hash(_as_uint(xattrs[self.commithash_key]))
            return Reply()
        if any(k in MIGRATE_KEYS for k in xattrs):
            if isinstance(ctx, DirCtx):
                raise FopError(errno.EISDIR)
            await self.migrate_file(loc)
            return Reply()
        self._refuse_internal_keys(xattrs)
        if isinstance(ctx, DirCtx):
            replies = await self._dir_mds_then_all(
                loc, ctx, lambda i: self._wind(i, "setxattr", loc, xattrs, flags, xdata))
            return Reply(xdata=replies[0].xdata)
        return await self._on_file(loc, ctx, lambda i: self._wind(i, "setxattr", loc, xattrs,
                                                                    flags, xdata))

    async def fsetxattr(self, fd, xattrs, flags, xdata=None):
        if not isinstance(xattrs, dict):
            raise FopError(errno.EINVAL)
        if self._fd_is_dir(fd) and any(k in FIX_LAYOUT_KEYS or k == self.commithash_key
                                       for k in xattrs):
            return await self.setxattr(Loc(gfid=fd.gfid), xattrs, flags, xdata)
        self._refuse_internal_keys(xattrs)
        if self._fd_is_dir(fd):
            replies = await self._dir_fd_mds_then_all(
                fd, lambda i: self._wind(i, "fsetxattr", fd, xattrs, flags, xdata))
            return Reply(xdata=replies[0].xdata)
        return await self._fd_call(fd, lambda i: self._wind(i, "fsetxattr", fd, xattrs, flags,
                                                            xdata))

    async def getxattr(self, loc, name, xdata=None):
        """dht_getxattr: see the package docstring."""
        loc, ctx = await self._inode(loc)
        self._check_readable_key(name)
        if name in PATHINFO_KEYS:
            return await self._pathinfo(loc, ctx, name, xdata)
        if name == LINKINFO_KEY:
            return await self._linkinfo(loc, ctx, xdata)
        if isinstance(ctx, DirCtx):
            if name and name.startswith(HEALED_XATTR_PREFIXES):
                mds = ctx.mds if ctx.mds is not None and self._up[ctx.mds] \
                    else self._dir_first(ctx)
                reply = await self._wind(mds, "getxattr", loc, name, xdata)
                return DictReply(self._visible(reply.dict), xdata=reply.xdata)
            replies = await self._dir_each(
                ctx, lambda i: self._wind(i, "getxattr", loc, name, xdata))
            merged: dict = {}
            for r in replies:
                for k, v in self._visible(r.dict).items():
                    merged.setdefault(k, v)
            if name and name not in merged:
                raise FopError(errno.ENODATA)
            return DictReply(merged, xdata=replies[0].xdata if replies else None)
        reply = await self._on_file(loc, ctx, lambda i: self._wind(i, "getxattr", loc, name,
                                                                     xdata))
        return DictReply(self._visible(reply.dict), xdata=reply.xdata)

    async def fgetxattr(self, fd, name, xdata=None):
        self._check_readable_key(name)
        if self._fd_is_dir(fd):
            if name in PATHINFO_KEYS:
                return await self.getxattr(Loc(gfid=fd.gfid), name, xdata)
            if name and name.startswith(HEALED_XATTR_PREFIXES):
                i = await self._dir_fd_lead(fd, mds=True)
                reply = await self._wind(i, "fgetxattr", fd, name, xdata)
                return DictReply(self._visible(reply.dict), xdata=reply.xdata)
            replies = await self._dir_fd_all(fd, lambda i: self._wind(i, "fgetxattr", fd, name,
                                                                      xdata))
            merged: dict = {}
            for r in replies:
                for k, v in self._visible(r.dict).items():
                    merged.setdefault(k, v)
            if name and name not in merged:
                raise FopError(errno.ENODATA)
            return DictReply(merged, xdata=replies[0].xdata)
        if name in PATHINFO_KEYS or name == LINKINFO_KEY:
            return await self.getxattr(Loc(gfid=fd.gfid), name, xdata)
        reply = await self._fd_call(fd, lambda i: self._wind(i, "fgetxattr", fd, name, xdata))
        return DictReply(self._visible(reply.dict), xdata=reply.xdata)

    async def removexattr(self, loc, name, xdata=None):
        loc, ctx = await self._inode(loc)
        if name in (self.layout_key, self.mds_key, self.linkto_key, self.commithash_key):
            raise FopError(errno.EPERM, f"{name} belongs to distribute")
        if isinstance(ctx, DirCtx):
            replies = await self._dir_mds_then_all(
                loc, ctx, lambda i: self._wind(i, "removexattr", loc, name, xdata))
            return Reply(xdata=replies[0].xdata)
        return await self._on_file(loc, ctx, lambda i: self._wind(i, "removexattr", loc, name,
                                                                    xdata))

    async def fremovexattr(self, fd, name, xdata=None):
        if name in (self.layout_key, self.mds_key, self.linkto_key, self.commithash_key):
            raise FopError(errno.EPERM, f"{name} belongs to distribute")
        if self._fd_is_dir(fd):
            replies = await self._dir_fd_mds_then_all(
                fd, lambda i: self._wind(i, "fremovexattr", fd, name, xdata))
            return Reply(xdata=replies[0].xdata)
        return await self._fd_call(fd, lambda i: self._wind(i, "fremovexattr", fd, name, xdata))

    # ======================================================================
    # helpers: xattrs

    def _check_readable_key(self, name) -> None:
        if name == self.mds_key:
            raise FopError(errno.ENOTSUP, f"{name} is distribute's own")
        if name in (self.layout_key, self.commithash_key):
            raise FopError(errno.ENODATA)

    def _refuse_internal_keys(self, xattrs: dict) -> None:
        for key in xattrs:
            if key in (self.layout_key, self.mds_key, self.commithash_key, self.linkto_key):
                raise FopError(errno.EPERM, f"{key} belongs to distribute")

    def _visible(self, xattrs: dict) -> dict:
        """dht_getxattr_cbk: the layout, mds and commit-hash keys are not
        shown; nor quota and pgfid keys to clients (pid >= 0)."""
        hidden = (self.layout_key, self.mds_key, self.commithash_key)
        internal = fops.caller.get().pid < 0
        return {k: v for k, v in xattrs.items()
                if k not in hidden and (internal or not k.startswith(
                    ("trusted.glusterfs.quota", "trusted.pgfid")))}

    async def _pathinfo(self, loc: Loc, ctx, name: str, xdata) -> DictReply:
        """dht_vgetxattr: `(<DISTRIBUTE:name> brick-pathinfo ...)`; a directory
        lists every brick's and its layout."""
        if isinstance(ctx, DirCtx):
            replies = await self._dir_each(ctx, lambda i: self._wind(i, "getxattr", loc, name,
                                                                     xdata))
            values = " ".join(_text(r.dict.get(name)) for r in replies) + " "
            layout = " ".join(f"({self.names[e.index]} {e.start} {e.stop})"
                              for e in sorted(ctx.layout.entries, key=dl.start_key))
            text = f"((<DISTRIBUTE:{self.name}> {values}) ({self.name}-layout {layout}))"
        else:
            reply = await self._on_file(loc, ctx, lambda i: self._wind(i, "getxattr", loc, name,
                                                                         xdata))
            text = f"(<DISTRIBUTE:{self.name}> {_text(reply.dict.get(name))} )"
        return DictReply({name: text})

    async def _linkinfo(self, loc: Loc, ctx, xdata) -> DictReply:
        """trusted.distribute.linkinfo: the pathinfo of the linkto file on
        the hashed brick; ENODATA when the data is on the hashed brick."""
        if isinstance(ctx, DirCtx) or loc.pargfid is None or loc.name is None:
            raise FopError(errno.ENODATA)
        parent = await self._dir_ctx(loc.pargfid, parent_path(loc.path))
        hashed = self._hashed(parent, loc.name)
        if hashed is None or hashed == ctx.cached:
            raise FopError(errno.ENODATA)
        reply = await self._wind(hashed, "getxattr", dataclasses.replace(loc, gfid=None),
                                 PATHINFO_KEYS[0], xdata)
        return DictReply({LINKINFO_KEY: reply.dict.get(PATHINFO_KEYS[0])})


def _as_uint(value) -> int:
    """An xattr value holding a number: 4 big-endian bytes, or its text."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) == 4:
            return int.from_bytes(raw, "big")
        value = raw.rstrip(b"\0").decode()
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FopError(errno.EINVAL, f"{value!r} is not a number") from None


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).rstrip(b"\0").decode("utf-8", "replace")
    return str(value)

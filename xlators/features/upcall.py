"""features/upcall: tells a brick's clients when another client changed an
inode they cached (cache invalidation).

Follows GlusterFS's upcall (xlators/features/upcall/src): with
`cache-invalidation` on (volume set `features.cache-invalidation`, off by
default) the brick records, per inode, every client whose fop touched it
(lookup, stat, open, read, readdirp's entries, ... - fops.caller.client,
which protocol/server sets), and when a client's fop changes the inode
every *other* client that touched it within `cache-invalidation-timeout`
seconds (volume set `features.cache-invalidation-timeout`, 60) gets a
GF_CBK_CACHE_INVALIDATION callback: the gfid, the UP_* flags of what
changed (upcall-utils.h), the new iatt and the parents' iatts.  The
callback travels as `Event.UPCALL` up to protocol/server, which sends it
(see protocol/server's docstring); the client's protocol/client turns it
into Event.UPCALL up its graph, where performance/md-cache drops the inode.

Which fop sends what (up_*_cbk): writes, truncates, fallocate, discard,
zerofill, copy_file_range and put: UP_SIZE|UP_TIMES; setattr: the
attribute flags, plus UP_XATTR when the mode changed (ACLs live in
xattrs); unlink and rmdir: UP_NLINK|UP_TIMES|UP_PARENT_TIMES with the
parent's iatt; rename: UP_RENAME|UP_PARENT_TIMES with both parents';
link: the inode's UP_NLINK; create, mkdir, mknod, symlink: the parent's
UP_TIMES; setxattr/removexattr: UP_XATTR/UP_XATTR_RM with the names.  A
fop that only reads registers its client (UP_ATIME alone is never sent).
Fops without a client (the brick's own: self-heal, rebalance on the
brick) are ignored.  A client that has not touched an inode for twice the
timeout is forgotten; when the brick's inode table drops an inode, its
clients get UP_FORGET, since changes after that could not reach them.

Departures: every xattr change is notified (GlusterFS notifies only the
names a client registered through ipc(GF_IPC_TARGET_UPCALL), which
glusterpy's md-cache does not send) except AFR's own `trusted.afr.*`
keys; xattrop is not notified (only AFR and marker use it).  An unlink,
rmdir or rename whose loc names the inode only by parent and name (a
FUSE client) looks the name up first, while GlusterFS's brick has the
inode from its resolver.  No reaper task: expired clients are dropped
when the inode is next touched, the table's LRU bounds the rest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from glusterpy import fops
from glusterpy.fops import GFID, NULL_GFID, FopError, Iatt, Loc
from glusterpy.options import Option, OptionType
from glusterpy.rpc import CacheInvalidation
from glusterpy.xlator import Event, Translator

# upcall-utils.h
UP_NLINK, UP_MODE, UP_OWN, UP_SIZE, UP_TIMES, UP_ATIME = 0x1, 0x2, 0x4, 0x8, 0x10, 0x20
UP_PERM, UP_RENAME, UP_FORGET, UP_PARENT_TIMES = 0x40, 0x80, 0x100, 0x200
UP_XATTR, UP_XATTR_RM = 0x400, 0x800
UP_UPDATE_CLIENT = UP_ATIME
UP_WRITE_FLAGS = UP_SIZE | UP_TIMES
UP_ATTR_FLAGS = UP_SIZE | UP_TIMES | UP_OWN | UP_MODE | UP_PERM
UP_NLINK_FLAGS = UP_NLINK | UP_TIMES
GF_UPCALL_CACHE_INVALIDATION = 1

#: xattrs whose changes are the replication's own bookkeeping
_UNNOTIFIED_XATTR_PREFIXES = ("trusted.afr.",)


@dataclass
class UpcallNotice:
    """The data of the Event.UPCALL this translator sends towards
    protocol/server: the client's uid and the callback message."""

    client: str
    message: CacheInvalidation


def _client_uid() -> str | None:
    client = fops.caller.get().client
    if client is None:
        return None
    return getattr(client, "client_uid", None) or str(client)


class Upcall(Translator):
    OPTIONS = (
        Option("cache-invalidation", OptionType.BOOL, "off",
               'When "on", sends cache-invalidation notifications.',
               set_keys=("features.cache-invalidation",)),
        Option("cache-invalidation-timeout", OptionType.INT, "60",
               "After 'timeout' seconds since the time client accessed any file, "
               "cache-invalidation notifications are no longer sent to that client.",
               min=0, set_keys=("features.cache-invalidation-timeout",)),
    )

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        #: callbacks sent (for statedumps and tests)
        self.sent = 0

    # -- the per-inode client list (upcall_inode_ctx_t) --------------------------------

    def _touch(self, gfid: GFID | None, flags: int, stat: Iatt | None = None,
               p_stat: Iatt | None = None, oldp_stat: Iatt | None = None,
               xattrs: dict | None = None) -> None:
        """upcall_cache_invalidate: note that the caller touched the inode
        and, when `flags` say it changed, tell the other clients."""
        if not self.opts.cache_invalidation or gfid is None or gfid == NULL_GFID:
            return
        uid = _client_uid()
        if uid is None:
            return  # the brick's own fop
        clients: dict[str, float] | None = self.itable.ctx(self, gfid)
        if clients is None:
            clients = {}
            self.itable.set_ctx(self, gfid, clients)
        now = time.monotonic()
        timeout = self.opts.cache_invalidation_timeout
        if flags & ~UP_ATIME:
            for other, seen in list(clients.items()):
                if other == uid:
                    continue
                if now - seen < timeout:
                    self._send(other, gfid, flags, stat, p_stat, oldp_stat, xattrs, timeout)
                elif now - seen > 2 * timeout:
                    del clients[other]
        clients[uid] = now

    def _send(self, uid: str, gfid: GFID, flags: int, stat: Iatt | None, p_stat: Iatt | None,
              oldp_stat: Iatt | None, xattrs: dict | None, timeout: int) -> None:
        message = CacheInvalidation(
            gfid=str(gfid), event_type=GF_UPCALL_CACHE_INVALIDATION, flags=flags,
            expire_time_attr=timeout, stat=stat or Iatt(), parent_stat=p_stat or Iatt(),
            oldparent_stat=oldp_stat or Iatt(), xdata=xattrs or None)
        self.sent += 1
        self.notify_parents(Event.UPCALL, UpcallNotice(uid, message))

    def forget(self, inode) -> None:
        """upcall_cache_forget: the brick no longer tracks who cached the
        inode, so those clients must not keep it past now."""
        if not self.opts.cache_invalidation:
            return
        now = time.monotonic()
        timeout = self.opts.cache_invalidation_timeout
        for uid, seen in inode.ctx[self].items():
            if now - seen < timeout:
                self._send(uid, inode.gfid, UP_FORGET, None, None, None, None, timeout)

    async def _gfid_of(self, loc: Loc) -> GFID | None:
        if loc.gfid is not None or not self.opts.cache_invalidation or _client_uid() is None:
            return loc.gfid
        try:
            return (await self.first_child.lookup(Loc(path=loc.path, pargfid=loc.pargfid,
                                                      name=loc.name), None)).iatt.gfid
        except FopError:
            return None

    # -- fops that only read: register the client --------------------------------------

    async def lookup(self, loc, xdata=None):
        reply = await self.first_child.lookup(loc, xdata)
        self._touch(reply.iatt.gfid, UP_UPDATE_CLIENT)
        return reply

    async def stat(self, loc, xdata=None):
        reply = await self.first_child.stat(loc, xdata)
        self._touch(reply.iatt.gfid, UP_UPDATE_CLIENT)
        return reply

    async def fstat(self, fd, xdata=None):
        reply = await self.first_child.fstat(fd, xdata)
        self._touch(fd.gfid, UP_UPDATE_CLIENT)
        return reply

    async def access(self, loc, mask, xdata=None):
        reply = await self.first_child.access(loc, mask, xdata)
        self._touch(loc.gfid, UP_UPDATE_CLIENT)
        return reply

    async def readlink(self, loc, size, xdata=None):
        reply = await self.first_child.readlink(loc, size, xdata)
        self._touch(loc.gfid, UP_UPDATE_CLIENT)
        return reply

    async def open(self, loc, flags, fd, xdata=None):
        reply = await self.first_child.open(loc, flags, fd, xdata)
        self._touch(loc.gfid, UP_UPDATE_CLIENT)
        return reply

    async def opendir(self, loc, fd, xdata=None):
        reply = await self.first_child.opendir(loc, fd, xdata)
        self._touch(loc.gfid, UP_UPDATE_CLIENT)
        return reply

    async def readv(self, fd, size, offset, flags, xdata=None):
        reply = await self.first_child.readv(fd, size, offset, flags, xdata)
        self._touch(fd.gfid, UP_UPDATE_CLIENT)
        return reply

    async def readdir(self, fd, size, offset, xdata=None):
        reply = await self.first_child.readdir(fd, size, offset, xdata)
        self._touch(fd.gfid, UP_UPDATE_CLIENT)
        return reply

    async def readdirp(self, fd, size, offset, xdata=None):
        reply = await self.first_child.readdirp(fd, size, offset, xdata)
        self._touch(fd.gfid, UP_UPDATE_CLIENT)
        for entry in reply.entries:
            if entry.iatt is not None and entry.name not in (".", ".."):
                self._touch(entry.iatt.gfid, UP_UPDATE_CLIENT)
        return reply

    async def getxattr(self, loc, name, xdata=None):
        reply = await self.first_child.getxattr(loc, name, xdata)
        self._touch(loc.gfid, UP_UPDATE_CLIENT)
        return reply

    async def fgetxattr(self, fd, name, xdata=None):
        reply = await self.first_child.fgetxattr(fd, name, xdata)
        self._touch(fd.gfid, UP_UPDATE_CLIENT)
        return reply

    async def lk(self, fd, cmd, flock, xdata=None):
        reply = await self.first_child.lk(fd, cmd, flock, xdata)
        self._touch(fd.gfid, UP_UPDATE_CLIENT)
        return reply

    async def seek(self, fd, offset, what, xdata=None):
        reply = await self.first_child.seek(fd, offset, what, xdata)
        self._touch(fd.gfid, UP_UPDATE_CLIENT)
        return reply

    # -- data and attribute changes ----------------------------------------------------

    async def writev(self, fd, data, offset, flags, xdata=None):
        reply = await self.first_child.writev(fd, data, offset, flags, xdata)
        self._touch(fd.gfid, UP_WRITE_FLAGS, reply.postbuf)
        return reply

    async def truncate(self, loc, offset, xdata=None):
        reply = await self.first_child.truncate(loc, offset, xdata)
        self._touch(loc.gfid, UP_WRITE_FLAGS, reply.postbuf)
        return reply

    async def ftruncate(self, fd, offset, xdata=None):
        reply = await self.first_child.ftruncate(fd, offset, xdata)
        self._touch(fd.gfid, UP_WRITE_FLAGS, reply.postbuf)
        return reply

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        reply = await self.first_child.fallocate(fd, mode, offset, length, xdata)
        self._touch(fd.gfid, UP_WRITE_FLAGS, reply.postbuf)
        return reply

    async def discard(self, fd, offset, length, xdata=None):
        reply = await self.first_child.discard(fd, offset, length, xdata)
        self._touch(fd.gfid, UP_WRITE_FLAGS, reply.postbuf)
        return reply

    async def zerofill(self, fd, offset, length, xdata=None):
        reply = await self.first_child.zerofill(fd, offset, length, xdata)
        self._touch(fd.gfid, UP_WRITE_FLAGS, reply.postbuf)
        return reply

    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags, xdata=None):
        reply = await self.first_child.copy_file_range(fd_in, off_in, fd_out, off_out, length,
                                                       flags, xdata)
        self._touch(fd_out.gfid, UP_WRITE_FLAGS, reply.postbuf_dst)
        return reply

    def _attr_flags(self, reply) -> int:
        flags = UP_ATTR_FLAGS
        pre, post = reply.prebuf, reply.postbuf
        if pre is None or post is None or pre.mode != post.mode:
            flags |= UP_XATTR  # posix ACLs follow the mode
        return flags

    async def setattr(self, loc, stbuf, valid, xdata=None):
        reply = await self.first_child.setattr(loc, stbuf, valid, xdata)
        self._touch(loc.gfid, self._attr_flags(reply), reply.postbuf)
        return reply

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        reply = await self.first_child.fsetattr(fd, stbuf, valid, xdata)
        self._touch(fd.gfid, self._attr_flags(reply), reply.postbuf)
        return reply

    # -- xattrs --------------------------------------------------------------------------

    def _xattr_changed(self, gfid, flags: int, xattrs: dict) -> None:
        names = {k: v for k, v in xattrs.items()
                 if not k.startswith(_UNNOTIFIED_XATTR_PREFIXES)}
        if names:
            self._touch(gfid, flags | UP_TIMES, None, xattrs=names)
        else:
            self._touch(gfid, UP_UPDATE_CLIENT)

    async def setxattr(self, loc, xattrs, flags, xdata=None):
        reply = await self.first_child.setxattr(loc, xattrs, flags, xdata)
        self._xattr_changed(loc.gfid, UP_XATTR, xattrs)
        return reply

    async def fsetxattr(self, fd, xattrs, flags, xdata=None):
        reply = await self.first_child.fsetxattr(fd, xattrs, flags, xdata)
        self._xattr_changed(fd.gfid, UP_XATTR, xattrs)
        return reply

    async def removexattr(self, loc, name, xdata=None):
        reply = await self.first_child.removexattr(loc, name, xdata)
        self._xattr_changed(loc.gfid, UP_XATTR_RM, {name: ""})
        return reply

    async def fremovexattr(self, fd, name, xdata=None):
        reply = await self.first_child.fremovexattr(fd, name, xdata)
        self._xattr_changed(fd.gfid, UP_XATTR_RM, {name: ""})
        return reply

    # -- entries ---------------------------------------------------------------------------

    def _created(self, loc, reply) -> None:
        self._touch(loc.pargfid, UP_TIMES, reply.postparent)
        self._touch(reply.iatt.gfid, UP_UPDATE_CLIENT)

    async def mknod(self, loc, mode, rdev, umask, xdata=None):
        reply = await self.first_child.mknod(loc, mode, rdev, umask, xdata)
        self._created(loc, reply)
        return reply

    async def mkdir(self, loc, mode, umask, xdata=None):
        reply = await self.first_child.mkdir(loc, mode, umask, xdata)
        self._created(loc, reply)
        return reply

    async def symlink(self, linkname, loc, umask, xdata=None):
        reply = await self.first_child.symlink(linkname, loc, umask, xdata)
        self._created(loc, reply)
        return reply

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        reply = await self.first_child.create(loc, flags, mode, umask, fd, xdata)
        self._created(loc, reply)
        return reply

    async def put(self, loc, mode, umask, flags, data, offset, xattrs, xdata=None):
        reply = await self.first_child.put(loc, mode, umask, flags, data, offset, xattrs, xdata)
        self._created(loc, reply)
        self._touch(reply.iatt.gfid, UP_WRITE_FLAGS, reply.iatt)
        return reply

    async def link(self, oldloc, newloc, xdata=None):
        reply = await self.first_child.link(oldloc, newloc, xdata)
        self._touch(reply.iatt.gfid, UP_NLINK_FLAGS | UP_PARENT_TIMES, reply.iatt,
                    reply.postparent)
        self._touch(newloc.pargfid, UP_UPDATE_CLIENT)
        return reply

    async def unlink(self, loc, xflags, xdata=None):
        gfid = await self._gfid_of(loc)
        reply = await self.first_child.unlink(loc, xflags, xdata)
        self._touch(gfid, UP_NLINK_FLAGS | UP_PARENT_TIMES, None, reply.postparent)
        self._touch(loc.pargfid, UP_UPDATE_CLIENT)
        return reply

    async def rmdir(self, loc, xflags, xdata=None):
        gfid = await self._gfid_of(loc)
        reply = await self.first_child.rmdir(loc, xflags, xdata)
        self._touch(gfid, UP_NLINK_FLAGS | UP_PARENT_TIMES, None, reply.postparent)
        self._touch(loc.pargfid, UP_UPDATE_CLIENT)
        return reply

    async def rename(self, oldloc, newloc, xdata=None):
        replaced = await self._gfid_of(newloc) if newloc.gfid is None else newloc.gfid
        reply = await self.first_child.rename(oldloc, newloc, xdata)
        self._touch(reply.iatt.gfid, UP_RENAME | UP_PARENT_TIMES, reply.iatt,
                    reply.postnewparent, reply.postoldparent)
        if replaced is not None and replaced != reply.iatt.gfid:
            # the inode the new name used to hold lost a link (not in GlusterFS)
            self._touch(replaced, UP_NLINK_FLAGS | UP_PARENT_TIMES, None, reply.postnewparent)
        self._touch(oldloc.pargfid, UP_UPDATE_CLIENT)
        if newloc.pargfid != oldloc.pargfid:
            self._touch(newloc.pargfid, UP_UPDATE_CLIENT)
        return reply

    def passthrough_fops(self):
        # without cache-invalidation _touch and _gfid_of do nothing: every
        # fop winds unchanged
        if not self.opts.cache_invalidation:
            return fops.BY_NAME.keys()
        return self.default_fops()

    def dump_state(self) -> dict[str, Any]:
        return {"sent": self.sent, "inodes": sum(1 for _ in self.itable.contexts(self))}


TRANSLATOR = Upcall

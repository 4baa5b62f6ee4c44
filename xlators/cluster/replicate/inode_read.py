"""The inode read fops (afr-inode-read.c) and readdir (afr-dir-read.c): each
a read transaction on one readable child.
"""

from __future__ import annotations

import errno

from glusterpy.fops import ROOT_GFID, DictReply, FopError
from glusterpy.keys import (AFR_XATTR_PREFIX, HEAL_INFO_KEY, HEAL_SBRAIN_KEY, NODE_UUID_KEY,
                            PATHINFO_KEY, SBRAIN_STATUS_KEY, USER_PATHINFO_KEY)

from xlators.cluster.replicate.changelog import METADATA_TXN
from xlators.cluster.replicate.state import is_ok


class AfrInodeRead:
    """stat, readv, getxattr, readdir and the other reads."""

    # ======================================================================
    # Inode read fops

    async def stat(self, loc, xdata=None):
        gfid = await self._gfid_of(loc)
        return await self._read_txn(gfid, lambda i: self.children[i].stat(loc, xdata),
                                    op="stat", loc=loc)

    async def fstat(self, fd, xdata=None):
        await self._fix_open(fd)
        return await self._read_txn(fd.gfid, lambda i: self.children[i].fstat(fd, xdata),
                                    op="fstat", fd=fd)

    async def access(self, loc, mask, xdata=None):
        gfid = await self._gfid_of(loc)
        return await self._read_txn(gfid, lambda i: self.children[i].access(loc, mask, xdata),
                                    type_=METADATA_TXN, loc=loc)

    async def readlink(self, loc, size, xdata=None):
        gfid = await self._gfid_of(loc)
        return await self._read_txn(gfid, lambda i: self.children[i].readlink(loc, size, xdata),
                                    loc=loc)

    async def readv(self, fd, size, offset, flags, xdata=None):
        await self._fix_open(fd)
        return await self._read_txn(
            fd.gfid, lambda i: self.children[i].readv(fd, size, offset, flags, xdata), fd=fd)

    async def seek(self, fd, offset, what, xdata=None):
        await self._fix_open(fd)
        return await self._read_txn(
            fd.gfid, lambda i: self.children[i].seek(fd, offset, what, xdata), fd=fd)

    async def rchecksum(self, fd, offset, length, xdata=None):
        await self._fix_open(fd)
        return await self._read_txn(
            fd.gfid, lambda i: self.children[i].rchecksum(fd, offset, length, xdata), fd=fd)

    async def getxattr(self, loc, name, xdata=None):
        """afr_getxattr: the heal keys, pathinfo and node-uuid of every
        child, or a read transaction on the metadata."""
        special = await self._special_getxattr(loc, name, xdata)
        if special is not None:
            return special
        gfid = await self._gfid_of(loc)
        reply = await self._read_txn(
            gfid, lambda i: self.children[i].getxattr(loc, name, xdata),
            type_=METADATA_TXN, loc=loc)
        return self._filter_xattrs(reply, name)

    async def fgetxattr(self, fd, name, xdata=None):
        if name in (PATHINFO_KEY, USER_PATHINFO_KEY, NODE_UUID_KEY):
            return await self._aggregate_xattr(name, lambda i: self.children[i].fgetxattr(
                fd, name, xdata), self._fd_targets(fd))
        await self._fix_open(fd)
        reply = await self._read_txn(
            fd.gfid, lambda i: self.children[i].fgetxattr(fd, name, xdata),
            type_=METADATA_TXN, fd=fd)
        return self._filter_xattrs(reply, name)

    def _filter_xattrs(self, reply, name):
        """afr_filter_xattrs: the changelogs stay inside replicate unless
        named."""
        if name:
            return reply
        kept = {k: v for k, v in reply.dict.items()
                if not k.startswith(AFR_XATTR_PREFIX + ".")}
        return DictReply(kept, xdata=reply.xdata)

    async def _special_getxattr(self, loc, name, xdata):
        if not name:
            return None
        if name == HEAL_INFO_KEY:
            gfid = await self._gfid_of(loc)
            return DictReply({"heal-info": await self.heal_info(gfid)})
        if name == SBRAIN_STATUS_KEY:
            gfid = await self._gfid_of(loc)
            return DictReply({name: await self.split_brain_status(gfid)})
        if name == HEAL_SBRAIN_KEY:
            gfid = await self._gfid_of(loc)
            return await self._heal_sbrain_xattr(gfid, xdata or {})
        if name in (PATHINFO_KEY, USER_PATHINFO_KEY, NODE_UUID_KEY):
            up = self._up_or_enotconn()
            return await self._aggregate_xattr(
                name, lambda i: self.children[i].getxattr(loc, name, xdata),
                [i for i in range(self.child_count) if up[i]])
        return None

    async def _aggregate_xattr(self, name, call, targets):
        """afr_getxattr_pathinfo_cbk: ``(<REPLICATE:name> <child 1> <child 2>)``;
        node-uuid answers the first child's."""
        replies = await self.fan(targets, call)
        good = [(i, r) for i, r in enumerate(replies) if is_ok(r) and name in r.dict]
        if not good:
            raise FopError(self._final_errno(replies) or errno.ENODATA)
        if name == NODE_UUID_KEY:
            return DictReply({name: good[0][1].dict[name]})
        parts = []
        for _, r in good:
            v = r.dict[name]
            parts.append(v.rstrip(b"\0").decode() if isinstance(v, bytes) else str(v))
        return DictReply({name: f"(<REPLICATE:{self.name}> {' '.join(parts)})"})

    async def readdir(self, fd, size, offset, xdata=None):
        return await self._readdir("readdir", fd, size, offset, xdata)

    async def readdirp(self, fd, size, offset, xdata=None):
        return await self._readdir("readdirp", fd, size, offset, xdata)

    async def _readdir(self, name, fd, size, offset, xdata):
        """afr_do_readdir: a listing that starts at offset 0 may pick and
        fail over to any readable child; continuing it sticks to that child."""
        ctx = self._fd_ctx(fd)

        async def wind(i):
            ctx.readdir_subvol = i
            reply = await getattr(self.children[i], name)(fd, size, offset, xdata)
            if fd.gfid == ROOT_GFID:
                reply.entries = [e for e in reply.entries if not self.is_private_dir(e.name)]
            return reply

        if offset == 0 or ctx.readdir_subvol < 0:
            await self._fix_open(fd)
            return await self._read_txn(fd.gfid, wind, fd=fd)
        sub = ctx.readdir_subvol
        if not self.child_up[sub]:
            raise FopError(errno.ENOTCONN, f"{self.children[sub].name} went away during "
                                           f"the listing")
        return await wind(sub)

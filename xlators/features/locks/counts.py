"""features/locks: lock counts in xdata.

GlusterFS's pl_has_xdata_requests, pl_get_xdata_requests and
pl_set_xdata_response (posix.c): a count requested in a fop's xdata is
taken out before winding and answered in the reply's xdata.  The fops
here only wind.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from glusterpy.fops import Loc
from glusterpy.keys import (ENTRYLK_COUNT, INODELK_COUNT, INODELK_DOM_COUNT, INODELK_DOM_PREFIX,
                            MULTI_DOM_LK_CNT_REQUESTS, PARENT_ENTRYLK, POSIXLK_COUNT)

from .common import LockedInode, as_text


_COUNT_KEYS = (INODELK_COUNT, ENTRYLK_COUNT, POSIXLK_COUNT, PARENT_ENTRYLK,
               INODELK_DOM_COUNT, MULTI_DOM_LK_CNT_REQUESTS)
_COUNT_KEY_SET = frozenset(_COUNT_KEYS)

_ABSENT = object()


@dataclass(slots=True)
class _CountRequest:
    """The lock counts a fop's xdata asked for."""

    inodelk: bool = False
    entrylk: bool = False
    posixlk: bool = False
    parent_entrylk: bool = False
    inodelk_domain: str | None = None
    domain_keys: tuple[str, ...] = ()


class LockCounts:
    """The fops that only wind, answering the counts their xdata asks for."""

    async def lookup(self, loc, xdata=None):
        def targets(reply):
            gfid = loc.gfid if loc.gfid is not None else reply.iatt.gfid
            return [(loc.pargfid, gfid, loc.name)]
        return await self._wind_counting("lookup", (loc,), xdata, targets)

    async def readdirp(self, fd, size, offset, xdata=None):
        request, wind_xdata = self._count_requests(xdata)
        reply = await self.first_child.readdirp(fd, size, offset, wind_xdata)
        if request is not None:
            for entry in reply.entries:
                entry.xdata = dict(entry.xdata or {})
                self._fill_counts(request, entry.xdata, fd.gfid,
                                  entry.iatt.gfid if entry.iatt is not None else None,
                                  entry.name, keep_max=False)
            self._reply_counts(request, reply, fd_target(fd)(reply))
        return reply

    async def stat(self, loc, xdata=None):
        return await self._wind_counting("stat", (loc,), xdata, parent_target(loc))

    async def fstat(self, fd, xdata=None):
        return await self._wind_counting("fstat", (fd,), xdata, fd_target(fd))

    async def opendir(self, loc, fd, xdata=None):
        return await self._wind_counting("opendir", (loc, fd), xdata, fd_target(fd, loc))

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        return await self._wind_counting("create", (loc, flags, mode, umask, fd), xdata,
                                         fd_target(fd))

    # readv and writev, the brick's most frequent fops, wind straight down
    # when no count is asked for: a frame and an argument tuple fewer
    async def readv(self, fd, size, offset, flags, xdata=None):
        if not xdata or _COUNT_KEY_SET.isdisjoint(xdata):
            return await self.first_child.readv(fd, size, offset, flags, xdata)
        return await self._wind_counting("readv", (fd, size, offset, flags), xdata,
                                         fd_target(fd))

    async def writev(self, fd, data, offset, flags, xdata=None):
        if not xdata or _COUNT_KEY_SET.isdisjoint(xdata):
            return await self.first_child.writev(fd, data, offset, flags, xdata)
        return await self._wind_counting("writev", (fd, data, offset, flags), xdata,
                                         fd_target(fd))

    async def setxattr(self, loc, xattrs, flags, xdata=None):
        return await self._wind_counting("setxattr", (loc, xattrs, flags), xdata,
                                         parent_target(loc))

    async def fsetxattr(self, fd, xattrs, flags, xdata=None):
        return await self._wind_counting("fsetxattr", (fd, xattrs, flags), xdata,
                                         fd_target(fd))

    async def removexattr(self, loc, name, xdata=None):
        return await self._wind_counting("removexattr", (loc, name), xdata,
                                         parent_target(loc))

    async def fremovexattr(self, fd, name, xdata=None):
        return await self._wind_counting("fremovexattr", (fd, name), xdata, fd_target(fd))

    async def xattrop(self, loc, optype, xattrs, xdata=None):
        return await self._wind_counting("xattrop", (loc, optype, xattrs), xdata,
                                         parent_target(loc))

    async def fxattrop(self, fd, optype, xattrs, xdata=None):
        return await self._wind_counting("fxattrop", (fd, optype, xattrs), xdata,
                                         fd_target(fd))

    async def setattr(self, loc, stbuf, valid, xdata=None):
        return await self._wind_counting("setattr", (loc, stbuf, valid), xdata,
                                         parent_target(loc))

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        return await self._wind_counting("fsetattr", (fd, stbuf, valid), xdata, fd_target(fd))

    async def mkdir(self, loc, mode, umask, xdata=None):
        return await self._wind_counting("mkdir", (loc, mode, umask), xdata, parent_target(loc))

    async def mknod(self, loc, mode, rdev, umask, xdata=None):
        return await self._wind_counting("mknod", (loc, mode, rdev, umask), xdata,
                                         parent_target(loc))

    async def symlink(self, linkname, loc, umask, xdata=None):
        return await self._wind_counting("symlink", (linkname, loc, umask), xdata,
                                         parent_target(loc))

    async def link(self, oldloc, newloc, xdata=None):
        return await self._wind_counting("link", (oldloc, newloc), xdata,
                                         parent_target(oldloc) + parent_target(newloc))

    async def fsync(self, fd, datasync, xdata=None):
        return await self._wind_counting("fsync", (fd, datasync), xdata, fd_target(fd))

    async def readdir(self, fd, size, offset, xdata=None):
        return await self._wind_counting("readdir", (fd, size, offset), xdata, fd_target(fd))

    async def fsyncdir(self, fd, datasync, xdata=None):
        return await self._wind_counting("fsyncdir", (fd, datasync), xdata, fd_target(fd))

    async def statfs(self, loc, xdata=None):
        return await self._wind_counting("statfs", (loc,), xdata, parent_target(loc))

    async def rchecksum(self, fd, offset, length, xdata=None):
        return await self._wind_counting("rchecksum", (fd, offset, length), xdata,
                                         fd_target(fd))

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        return await self._wind_counting("fallocate", (fd, mode, offset, length), xdata,
                                         fd_target(fd))

    async def readlink(self, loc, size, xdata=None):
        return await self._wind_counting("readlink", (loc, size), xdata, parent_target(loc))

    async def access(self, loc, mask, xdata=None):
        return await self._wind_counting("access", (loc, mask), xdata, parent_target(loc))

    async def seek(self, fd, offset, what, xdata=None):
        return await self._wind_counting("seek", (fd, offset, what), xdata, fd_target(fd))

    # ======================================================================
    # Helpers: counts

    async def _wind_counting(self, fop_name, args, xdata, targets):
        """Wind a fop with the count requests taken out of its xdata and
        answer them in the reply (PL_LOCAL_GET_REQUESTS / PL_STACK_UNWIND).
        `targets` is a list of (parent gfid, inode gfid, name), or a
        function of the reply giving one."""
        request, wind_xdata = self._count_requests(xdata)
        reply = await getattr(self.first_child, fop_name)(*args, wind_xdata)
        if request is not None:
            self._reply_counts(request, reply, targets(reply) if callable(targets) else targets)
        return reply

    def _reply_counts(self, request, reply, targets) -> None:
        out = dict(reply.xdata or {})
        for i, (parent, inode, name) in enumerate(targets):
            self._fill_counts(request, out, parent, inode, name, keep_max=i > 0)
        reply.xdata = out

    @staticmethod
    def _count_requests(xdata) -> tuple[_CountRequest | None, dict | None]:
        """pl_has_xdata_requests + pl_get_xdata_requests: the counts asked
        for, and the xdata to wind without the request keys."""
        if not xdata or not any(key in xdata for key in _COUNT_KEYS):
            return None, xdata
        wind = dict(xdata)
        request = _CountRequest(
            inodelk=wind.pop(INODELK_COUNT, _ABSENT) is not _ABSENT,
            entrylk=wind.pop(ENTRYLK_COUNT, _ABSENT) is not _ABSENT,
            posixlk=wind.pop(POSIXLK_COUNT, _ABSENT) is not _ABSENT,
            parent_entrylk=wind.pop(PARENT_ENTRYLK, _ABSENT) is not _ABSENT)
        if wind.pop(MULTI_DOM_LK_CNT_REQUESTS, _ABSENT) is not _ABSENT:
            request.domain_keys = tuple(key for key in xdata
                                        if fnmatch.fnmatchcase(key, INODELK_DOM_PREFIX + "*"))
            for key in request.domain_keys:
                del wind[key]
        domain = wind.pop(INODELK_DOM_COUNT, None)
        if domain is not None:
            request.inodelk_domain = as_text(domain)
        return request, wind

    def _fill_counts(self, request, out, parent, inode, name, keep_max) -> None:
        """pl_set_xdata_response; with keep_max a count already in `out`
        that is larger stays."""
        def put(key, count):
            if not keep_max or not isinstance(out.get(key), int) or out[key] < count:
                out[key] = count
        if request.parent_entrylk and parent is not None and name:
            put(PARENT_ENTRYLK, self._entrylk_on_name(parent, name))
        if inode is None:
            return
        pinode = self._inodes.get(inode)
        if request.entrylk:
            put(ENTRYLK_COUNT, 0 if pinode is None else sum(
                len(d.entrylks) + len(d.blocked_entrylks) for d in pinode.domains.values()))
        if request.inodelk_domain is not None:
            put(INODELK_COUNT, _inodelk_count(pinode, request.inodelk_domain))
        if request.inodelk:
            put(INODELK_COUNT, _inodelk_count(pinode, None))
        if request.posixlk:
            put(POSIXLK_COUNT, 0 if pinode is None else
                len(pinode.posixlks) + len(pinode.blocked_posixlks))
        for key in request.domain_keys:
            _, sep, domain = key.partition(":")
            if sep and domain:
                put(key, _inodelk_count(pinode, domain))

    def _entrylk_on_name(self, parent, name) -> int:
        """check_entrylk_on_basename: 1 when a granted entrylk of the parent
        names exactly `name` (a whole-directory lock does not count)."""
        pinode = self._inodes.get(parent)
        if pinode is None:
            return 0
        return int(any(lk.basename == name for dom in pinode.domains.values()
                       for lk in dom.entrylks))


def fd_target(fd, loc: Loc | None = None):
    """The counts of an fd fop describe the fd's inode (known after opendir
    or create even when the caller's fd had no gfid yet)."""
    def targets(reply):
        gfid = fd.gfid
        if gfid is None and loc is not None:
            gfid = loc.gfid
        if gfid is None and getattr(reply, "iatt", None) is not None:
            gfid = reply.iatt.gfid
        return [(None, gfid, None)]
    return targets


def parent_target(loc: Loc) -> list:
    """pl_get_xdata_rsp_args: for loc fops other than lookup GlusterFS counts
    the locks of the loc's parent."""
    return [(None, loc.pargfid, None)] if loc.pargfid is not None else []


def _inodelk_count(pinode: LockedInode | None, domain: str | None) -> int:
    """__get_inodelk_count: granted and waiting, in one domain or all."""
    if pinode is None:
        return 0
    doms = pinode.domains.values() if domain is None else \
        [pinode.domains[domain]] if domain in pinode.domains else []
    return sum(len(d.inodelks) + len(d.blocked_inodelks) for d in doms)
